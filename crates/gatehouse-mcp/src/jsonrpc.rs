//! JSON-RPC 2.0 framing as MCP's Streamable HTTP transport carries it: one message per POST
//! (batches were removed from MCP in 2025-06-18 and are refused), bounded in size and depth
//! before anything reads it. What the gateway decides on is taken from here and nowhere else.

use gatehouse_core::DenyCode;
use serde_json::{Map, Value, json};

/// The deepest nesting accepted in a message (arguments included).
pub const MAX_DEPTH: usize = 64;
/// The longest method name accepted.
const MAX_METHOD: usize = 128;
/// The longest tool or prompt name (MCP says 1-128 characters) or resource URI accepted.
const MAX_NAME: usize = 2048;

/// A request id: a string or an integer (never null, never fractional).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Id {
    Num(i64),
    Str(Box<str>),
}

impl Id {
    pub fn to_value(&self) -> Value {
        match self {
            Id::Num(n) => json!(n),
            Id::Str(s) => json!(s),
        }
    }

    fn of(v: &Value) -> Option<Id> {
        match v {
            Value::String(s) if s.len() <= 256 => Some(Id::Str(s.as_str().into())),
            Value::Number(n) => n.as_i64().map(Id::Num),
            _ => None,
        }
    }
}

/// What one POSTed message is.
#[derive(Debug)]
pub enum Kind {
    /// A call that expects an answer.
    Request(Id),
    /// A one-way message (`notifications/...`).
    Notification,
    /// The client's answer to a request the server sent it (sampling, elicitation, roots).
    Response,
}

/// A parsed client message.
#[derive(Debug)]
pub struct Message {
    pub kind: Kind,
    /// Empty for a response.
    pub method: Box<str>,
    pub params: Option<Map<String, Value>>,
}

/// Why a message was refused before any policy looked at it; each maps to a JSON-RPC error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Not JSON at all (-32700).
    Parse,
    /// JSON, but not one JSON-RPC 2.0 message (-32600).
    Invalid,
    /// An array of messages (-32600): MCP no longer has batches.
    Batch,
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
}

impl FrameError {
    pub fn deny_code(self) -> DenyCode {
        match self {
            FrameError::Parse => DenyCode::InvalidJson,
            FrameError::Invalid | FrameError::Batch => DenyCode::InvalidRequest,
            FrameError::TooDeep => DenyCode::RequestTooComplex,
        }
    }

    pub fn rpc_code(self) -> i64 {
        match self {
            FrameError::Parse => PARSE_ERROR,
            _ => INVALID_REQUEST,
        }
    }
}

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;
/// MCP's code for routing headers that disagree with the body.
pub const HEADER_MISMATCH: i64 = -32020;

/// The deepest nesting of arrays and objects in `bytes`, scanned before parsing so a deep
/// document is refused without building it (serde_json's own limit is 128 and panics nothing,
/// but the gateway's is lower). Strings are skipped, escapes included.
fn depth(bytes: &[u8]) -> usize {
    let (mut d, mut max, mut in_str, mut esc) = (0usize, 0usize, false, false);
    for &b in bytes {
        if in_str {
            match (esc, b) {
                (true, _) => esc = false,
                (false, b'\\') => esc = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                d += 1;
                max = max.max(d);
            }
            b']' | b'}' => d = d.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Parses one client message. Bounded by the caller's size cap and [`MAX_DEPTH`].
pub fn parse(bytes: &[u8]) -> Result<Message, FrameError> {
    if depth(bytes) > MAX_DEPTH {
        return Err(FrameError::TooDeep);
    }
    let v: Value = serde_json::from_slice(bytes).map_err(|_| FrameError::Parse)?;
    let mut obj = match v {
        Value::Object(o) => o,
        Value::Array(_) => return Err(FrameError::Batch),
        _ => return Err(FrameError::Invalid),
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(FrameError::Invalid);
    }
    let params = match obj.remove("params") {
        None => None,
        Some(Value::Object(p)) => Some(p),
        // MCP's params are always objects
        Some(_) => return Err(FrameError::Invalid),
    };
    let id = obj.get("id");
    match obj.get("method") {
        Some(Value::String(m)) => {
            if m.is_empty() || m.len() > MAX_METHOD {
                return Err(FrameError::Invalid);
            }
            let kind = match id {
                None => Kind::Notification,
                Some(i) => Kind::Request(Id::of(i).ok_or(FrameError::Invalid)?),
            };
            Ok(Message { kind, method: m.as_str().into(), params })
        }
        Some(_) => Err(FrameError::Invalid),
        None => {
            // a response: an id (null only for an error about an unreadable request) and
            // exactly one of result / error
            let answered = obj.contains_key("result") != obj.contains_key("error");
            if id.is_none() || !answered {
                return Err(FrameError::Invalid);
            }
            Ok(Message { kind: Kind::Response, method: "".into(), params })
        }
    }
}

impl Message {
    pub fn id(&self) -> Option<&Id> {
        match &self.kind {
            Kind::Request(id) => Some(id),
            _ => None,
        }
    }

    /// A string parameter (`name`, `uri`), bounded.
    pub fn param_str(&self, key: &str) -> Option<&str> {
        self.params.as_ref()?.get(key)?.as_str().filter(|s| !s.is_empty() && s.len() <= MAX_NAME)
    }

    /// The message as JSON again (after a guardrail rewrote its arguments).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = json!({"jsonrpc": "2.0", "method": &*self.method});
        if let Some(id) = self.id() {
            v["id"] = id.to_value();
        }
        if let Some(p) = &self.params {
            v["params"] = Value::Object(p.clone());
        }
        serde_json::to_vec(&v).unwrap_or_default()
    }

    /// The size of `arguments` as JSON (0 when absent).
    pub fn arguments_bytes(&self) -> usize {
        self.params
            .as_ref()
            .and_then(|p| p.get("arguments"))
            .map_or(0, |a| serde_json::to_vec(a).map_or(usize::MAX, |v| v.len()))
    }
}

/// A JSON-RPC error answer. `data.gatehouse` names the gateway's refusal code so clients and
/// operators can tell a gateway refusal from a server's error; the message is fixed (never the
/// request's content).
pub fn error(id: Option<&Id>, code: i64, message: &str, refusal: Option<DenyCode>) -> Value {
    let mut e = json!({"code": code, "message": message});
    if let Some(r) = refusal {
        e["data"] = json!({"gatehouse": r.as_str()});
    }
    json!({"jsonrpc": "2.0", "id": id.map_or(Value::Null, Id::to_value), "error": e})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_classified_and_bad_frames_refused() {
        let m =
            parse(br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"a":1}}}"#)
                .unwrap();
        assert!(matches!(m.kind, Kind::Request(Id::Num(3))));
        assert_eq!(m.param_str("name"), Some("echo"));
        assert_eq!(m.arguments_bytes(), 7);
        assert!(matches!(
            parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap().kind,
            Kind::Notification
        ));
        assert!(matches!(parse(br#"{"jsonrpc":"2.0","id":"a","result":{}}"#).unwrap().kind, Kind::Response));
        for (bad, want) in [
            (&br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#[..], FrameError::Batch),
            (br#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#, FrameError::Invalid),
            (br#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#, FrameError::Invalid),
            (br#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#, FrameError::Invalid),
            (br#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#, FrameError::Invalid),
            (br#"{"jsonrpc":"2.0","id":1,"method":"x","params":[1]}"#, FrameError::Invalid),
            (br#"{"jsonrpc":"2.0","id":1,"result":{},"error":{}}"#, FrameError::Invalid),
            (br#"{"jsonrpc":"2.0","id":1,"method":""}"#, FrameError::Invalid),
            (br#"{"jsonrpc":"2.0""#, FrameError::Parse),
            (b"\xff\xfe", FrameError::Parse),
            (b"42", FrameError::Invalid),
        ] {
            assert_eq!(parse(bad).err(), Some(want), "{}", String::from_utf8_lossy(bad));
        }
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert_eq!(parse(deep.as_bytes()).err(), Some(FrameError::TooDeep));
        // brackets inside strings do not count
        let quoted = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"m","params":{{"s":"{}"}}}}"#, "[".repeat(500));
        assert!(parse(quoted.as_bytes()).is_ok());
    }

    #[test]
    fn errors_carry_the_refusal_code_and_no_content() {
        let e = error(Some(&Id::Str("x".into())), -32003, "not permitted", Some(DenyCode::PermissionDenied));
        assert_eq!(e["id"], "x");
        assert_eq!(e["error"]["data"]["gatehouse"], "permission_denied");
        assert_eq!(error(None, PARSE_ERROR, "parse error", None)["id"], Value::Null);
    }
}
