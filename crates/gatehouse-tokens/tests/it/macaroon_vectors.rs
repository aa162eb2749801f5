//! libmacaroons' language-independent verification vectors (see tests/data/libmacaroons).

#![expect(clippy::unwrap_used, clippy::panic, reason = "test code")]

use gatehouse_tokens::macaroon::{Limits, Macaroon};

struct Vector {
    authorized: bool,
    key: String,
    exact: Vec<String>,
    macaroons: Vec<String>,
}

fn parse(text: &str) -> Vector {
    let mut lines = text.lines().filter(|l| !l.is_empty() && !l.starts_with('#'));
    assert!(lines.next().unwrap().starts_with("version "));
    let authorized = match lines.next().unwrap() {
        "authorized" => true,
        "unauthorized" => false,
        other => panic!("bad outcome line {other}"),
    };
    let key = lines.next().unwrap().strip_prefix("key ").unwrap().to_owned();
    let (mut exact, mut macaroons) = (Vec::new(), Vec::new());
    for l in lines {
        match l.strip_prefix("exact ") {
            Some(p) => exact.push(p.to_owned()),
            None => {
                assert!(!l.starts_with("general"), "no general caveats in the V2 vectors");
                macaroons.push(l.to_owned());
            }
        }
    }
    Vector { authorized, key, exact, macaroons }
}

#[test]
fn every_v2_vector_gets_its_verdict() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/libmacaroons");
    let mut ran = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("vtest") {
            continue;
        }
        let v = parse(&std::fs::read_to_string(&path).unwrap());
        let limits = Limits::default();
        let all: Vec<Macaroon> = v.macaroons.iter().map(|m| Macaroon::decode(m, &limits).unwrap()).collect();
        let (root, discharges) = all.split_first().unwrap();
        let verdict = match root.verify(v.key.as_bytes(), discharges, &limits) {
            Ok(preds) => preds.iter().all(|p| v.exact.iter().any(|e| e.as_bytes() == *p)),
            Err(_) => false,
        };
        assert_eq!(verdict, v.authorized, "{}", path.display());
        // Our encoder reproduces the vector byte for byte.
        assert_eq!(root.encode(gatehouse_tokens::macaroon::Encoding::Base64Url), v.macaroons[0], "{}", path.display());
        ran += 1;
    }
    assert_eq!(ran, 8);
}
