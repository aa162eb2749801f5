//! Payloads. Generic: `{"type": <action>, "timestamp": <at>, "data": <the event line>}` (the
//! Standard Webhooks envelope). Slack (`text`) and Discord (`content`): one line of ids and
//! codes. All three are built from the event line only, which holds no content.

use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Generic,
    Slack,
    Discord,
}

impl Kind {
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "generic" => Some(Kind::Generic),
            "slack" => Some(Kind::Slack),
            "discord" => Some(Kind::Discord),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Generic => "generic",
            Kind::Slack => "slack",
            Kind::Discord => "discord",
        }
    }
}

fn summary(ev: &Value) -> String {
    let s = |k: &str| ev.get(k).and_then(Value::as_str).unwrap_or("-");
    let mut line = format!(
        "[gatehouse] {} {} · status {} ({}) · actor {} · org {}",
        s("outcome"),
        s("action"),
        ev.get("status").and_then(Value::as_u64).unwrap_or(0),
        s("code"),
        s("actor"),
        ev.get("org_id").and_then(Value::as_str).unwrap_or("platform"),
    );
    if let Some(t) = ev.get("target").and_then(Value::as_str) {
        line.push_str(&format!(" · target {t}"));
    }
    if let Some(r) = ev.get("request_id").and_then(Value::as_str) {
        line.push_str(&format!(" · request {r}"));
    }
    line
}

/// The body for one event line. The line is embedded verbatim in generic payloads.
pub fn payload(kind: Kind, line: &str) -> String {
    let ev: Value = serde_json::from_str(line).unwrap_or(Value::Null);
    match kind {
        Kind::Generic => {
            let ty = serde_json::to_string(ev.get("action").and_then(Value::as_str).unwrap_or("")).unwrap_or_default();
            let ts = serde_json::to_string(ev.get("at").and_then(Value::as_str).unwrap_or("")).unwrap_or_default();
            format!("{{\"type\":{ty},\"timestamp\":{ts},\"data\":{line}}}")
        }
        Kind::Slack => json!({ "text": summary(&ev) }).to_string(),
        Kind::Discord => json!({ "content": summary(&ev) }).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"v":1,"seq":3,"chain":"org/o1","id":"e1","at":"2026-11-24T08:00:00.000Z","action":"key.revoke","category":"keys","outcome":"denied","status":403,"code":"permission_denied","org_id":"o1","actor":"token:t1","target":"k9"}"#;

    #[test]
    fn payloads_per_kind() {
        let g: Value = serde_json::from_str(&payload(Kind::Generic, LINE)).unwrap();
        assert_eq!(g["type"], "key.revoke");
        assert_eq!(g["data"]["seq"], 3);
        assert!(payload(Kind::Generic, LINE).ends_with(&format!("\"data\":{LINE}}}")), "the line verbatim");
        let s: Value = serde_json::from_str(&payload(Kind::Slack, LINE)).unwrap();
        assert_eq!(
            s["text"],
            "[gatehouse] denied key.revoke · status 403 (permission_denied) · actor token:t1 · org o1 · target k9"
        );
        let d: Value = serde_json::from_str(&payload(Kind::Discord, LINE)).unwrap();
        assert_eq!(d["content"], s["text"]);
    }
}
