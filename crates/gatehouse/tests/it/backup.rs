//! The restore drill: populate a gateway, back it up while it serves, restore the archive
//! elsewhere, and everything works there: keys, capability tokens, admin tokens, budgets, and an
//! audit trail that verifies and goes on. Damaged archives and non-empty targets are refused
//! whole.

use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{as_root, cli, gateway, new_org};

const MASTER: &str = "3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c";

/// `gatehouse <args>` with only PATH and `master` set: exit code and output.
fn run(args: &[&str], master: &str) -> (i32, String) {
    cli(args, &[("GATEHOUSE_MASTER_KEY", master)])
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test]
async fn a_backup_taken_while_serving_restores_elsewhere_with_everything_working() {
    let a = gateway().env("GATEHOUSE_MASTER_KEY", MASTER).spawn().await;
    let org = new_org(&a, "acme").await;
    let (st, v) = as_root(
        &a,
        Method::PUT,
        &format!("/admin/v1/orgs/{org}/limits"),
        Some(json!({"budgets": [{"period": "monthly", "usd": 25}]})),
    )
    .await;
    assert!(st < 300, "{v}");
    let (_, key) = a.create_key(json!({"name": "web"})).await;
    let body = json!({"name": "ci", "scopes": ["chat:*"], "models": ["mock"], "expires_in_seconds": 600});
    let (st, cap) = as_root(&a, Method::POST, "/admin/v1/capabilities", Some(body)).await;
    assert_eq!(st, 201, "{cap}");
    let cap = cap["token"].as_str().unwrap().to_owned();
    assert_eq!(a.chat(&cap, "mock").await.status(), 200);
    for _ in 0..3 {
        assert_eq!(a.chat(&key, "mock").await.status(), 200);
    }

    // taken online, while the gateway keeps serving
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("gh.backup");
    let serving = {
        let (http, url, key) = (a.http.clone(), a.data_url.clone(), key.clone());
        tokio::spawn(async move {
            let body = json!({"model": "mock", "messages": [{"role": "user", "content": "hello"}]});
            for _ in 0..20 {
                let r = http.post(format!("{url}/v1/chat/completions")).bearer_auth(&key).json(&body).send().await;
                assert_eq!(r.unwrap().status(), 200);
            }
        })
    };
    let (code, out) = run(&["backup", "--config", s(&a.config_path), "--out", s(&archive)], MASTER);
    assert_eq!(code, 0, "{out}");
    serving.await.unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&archive).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let raw = std::fs::read(&archive).unwrap();
    assert!(!String::from_utf8_lossy(&raw).contains("acme"), "the store is sealed in the archive");

    let (code, out) = run(&["backup", "verify", s(&archive), "--config", s(&a.config_path)], MASTER);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("intact") && out.contains("verified"), "{out}");

    // restored into an empty data directory, a gateway starts on it with the same master key
    let there = tempfile::tempdir().unwrap();
    let data = there.path().join("data");
    let (code, out) = run(&["restore", s(&archive), "--data-dir", s(&data)], MASTER);
    assert_eq!(code, 0, "{out}");
    let (code, out) = run(&["restore", s(&archive), "--data-dir", s(&data)], MASTER);
    assert_eq!(code, 1, "a second restore into the same store is refused: {out}");
    assert!(out.contains("empty store"), "{out}");

    let mut b = gateway().data_dir(there).env("GATEHOUSE_MASTER_KEY", MASTER).spawn().await;
    assert!(b.admin_token.is_none(), "not a first start: the restored store has its tokens");
    b.admin_token = a.admin_token.clone();
    assert_eq!(b.chat(&key, "mock").await.status(), 200, "the key works");
    assert_eq!(b.chat(a.key(), "mock").await.status(), 200, "the first key works");
    assert_eq!(b.chat(&cap, "mock").await.status(), 200, "the capability token works");
    let (st, v) = as_root(&b, Method::GET, &format!("/admin/v1/orgs/{org}/limits"), None).await;
    assert_eq!(st, 200, "the admin token works: {v}");
    assert_eq!(v["limits"]["budgets"][0]["usd"].as_f64(), Some(25.0), "{v}");
    let verify = |gw| async move {
        let (st, v): (u16, Value) = as_root(gw, Method::POST, "/admin/v1/audit/verify", None).await;
        assert_eq!((st, v["ok"].as_bool()), (200, Some(true)), "{v}");
        v["chains"].as_array().unwrap().iter().map(|c| c["records"].as_u64().unwrap()).sum::<u64>()
    };
    let restored = verify(&b).await;
    assert!(restored > 5, "{restored}");
    // the trail goes on from where the archive left it
    assert_eq!(b.chat(&key, "mock").await.status(), 200);
    let grown = gatehouse_testkit::eventually(Duration::from_secs(10), || async { verify(&b).await > restored }).await;
    assert!(grown, "new events chain onto the restored trail");
}

#[tokio::test]
async fn a_damaged_archive_or_another_master_key_restores_nothing() {
    let a = gateway().env("GATEHOUSE_MASTER_KEY", MASTER).spawn().await;
    new_org(&a, "acme").await;
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("gh.backup");
    let (code, out) = run(&["backup", "--config", s(&a.config_path), "--out", s(&archive)], MASTER);
    assert_eq!(code, 0, "{out}");
    let (code, out) = run(&["backup", "--config", s(&a.config_path), "--out", s(&archive)], MASTER);
    assert_eq!(code, 1, "an existing archive is not overwritten: {out}");

    let raw = std::fs::read(&archive).unwrap();
    let body = raw.iter().position(|b| *b == b'\n').unwrap() + 1;
    let body = body + raw[body..].iter().position(|b| *b == b'\n').unwrap() + 1;
    let mut flipped = raw.clone();
    flipped[body + (raw.len() - body) / 2] ^= 0x01;
    let mut cut = raw.clone();
    cut.truncate(raw.len() - 10);
    let mut longer = raw.clone();
    longer.extend_from_slice(b"more");
    let manifest = String::from_utf8_lossy(&raw).replacen("\"bytes\":", "\"bytes\": ", 1).into_bytes();
    let other = "4d".repeat(32);
    for (name, bytes, master, expected) in [
        ("flipped", flipped, MASTER, "does not open"),
        ("cut", cut, MASTER, "cut short"),
        ("longer", longer, MASTER, "after its last chunk"),
        ("manifest", manifest, MASTER, "does not open"),
        ("other-key", raw.clone(), other.as_str(), "not sealed under this master key"),
    ] {
        let bad = work.path().join(name);
        std::fs::write(&bad, &bytes).unwrap();
        let (code, out) = run(&["backup", "verify", s(&bad), "--config", s(&a.config_path)], master);
        assert_eq!(code, 1, "{name}: {out}");
        assert!(out.contains(expected), "{name}: {out}");
        let target = work.path().join(format!("{name}-data"));
        let (code, out) = run(&["restore", s(&bad), "--data-dir", s(&target)], master);
        assert_eq!(code, 1, "{name}: {out}");
        assert!(!target.join("gatehouse.db").exists(), "{name}: nothing restored");
    }
    let (code, out) = run(&["restore", s(&work.path().join("absent")), "--data-dir", s(work.path())], MASTER);
    assert_eq!(code, 1, "{out}");
}
