//! `macaroon-interop`: Gatehouse's macaroon library behind a JSON pipe, so the interop suite
//! (tests/python/test_macaroons.py) can have pymacaroons and Gatehouse mint and verify each
//! other's tokens. One JSON request on stdin, one JSON answer on stdout.
//!
//! {"op":"mint","key":K,"id":I,"location":L?,"caveats":[C...],"discharges":[{"key","id","caveats"}]}
//!   C is {"first":P} or {"third":{"location","key","id"}}; answers every encoding of the root
//!   and of each discharge bound to it.
//! {"op":"verify","key":K,"token":T,"discharges":[T...]} -> {"ok":true,"predicates":[..]} or
//!   {"ok":false,"error":".."}.

use std::io::{Read, Write};

use gatehouse_tokens::macaroon::{Encoding, Limits, Macaroon};
use serde_json::{Value, json};

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or_default()
}

fn build(spec: &Value) -> Macaroon {
    let loc = spec.get("location").and_then(Value::as_str);
    let mut m = Macaroon::new(s(spec, "key").as_bytes(), s(spec, "id"), loc);
    for c in spec.get("caveats").and_then(Value::as_array).into_iter().flatten() {
        if let Some(p) = c.get("first").and_then(Value::as_str) {
            m.add_first_party(p);
        } else if let Some(t) = c.get("third") {
            m.add_third_party(s(t, "location"), s(t, "key").as_bytes(), s(t, "id"));
        }
    }
    m
}

fn encodings(m: &Macaroon) -> Value {
    json!({
        "url": m.encode(Encoding::Base64Url),
        "std": m.encode(Encoding::Base64Std),
        "json": m.encode(Encoding::Json),
    })
}

fn run(req: &Value) -> Value {
    let limits = Limits::default();
    match s(req, "op") {
        "mint" => {
            let root = build(req);
            let discharges: Vec<Value> = req
                .get("discharges")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|d| encodings(&root.bind(&build(d))))
                .collect();
            json!({"root": encodings(&root), "discharges": discharges})
        }
        "verify" => {
            let decoded = std::iter::once(s(req, "token"))
                .chain(req.get("discharges").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str))
                .map(|t| Macaroon::decode(t, &limits))
                .collect::<Result<Vec<_>, _>>();
            let all = match decoded {
                Ok(all) => all,
                Err(e) => return json!({"ok": false, "error": e.to_string()}),
            };
            let Some((root, discharges)) = all.split_first() else {
                return json!({"ok": false, "error": "no token"});
            };
            match root.verify(s(req, "key").as_bytes(), discharges, &limits) {
                Ok(p) => {
                    json!({"ok": true, "predicates": p.iter().map(|b| String::from_utf8_lossy(b)).collect::<Vec<_>>()})
                }
                Err(e) => json!({"ok": false, "error": e.to_string()}),
            }
        }
        other => json!({"ok": false, "error": format!("unknown op {other:?}")}),
    }
}

fn main() -> std::process::ExitCode {
    let mut input = String::new();
    if std::io::stdin().take(1 << 20).read_to_string(&mut input).is_err() {
        return std::process::ExitCode::FAILURE;
    }
    let Ok(req) = serde_json::from_str::<Value>(&input) else {
        return std::process::ExitCode::FAILURE;
    };
    let _ = writeln!(std::io::stdout(), "{}", run(&req));
    std::process::ExitCode::SUCCESS
}
