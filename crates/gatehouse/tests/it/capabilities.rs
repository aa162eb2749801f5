//! Capability tokens end to end: minted through the admin API, presented to the data plane,
//! narrowed offline with the CLI, delegated through `/v1/tokens/delegate`, revoked as a
//! subtree.

use std::process::Stdio;

use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::common::{as_root, gateway, json};

async fn mint(gw: &gatehouse_testkit::TestGateway, body: Value) -> Value {
    let (st, v) = as_root(gw, Method::POST, "/admin/v1/capabilities", Some(body)).await;
    assert_eq!(st, 201, "{v}");
    v
}

async fn delegate(gw: &gatehouse_testkit::TestGateway, token: &str, body: Value) -> (u16, Value) {
    let resp = gw.post("/v1/tokens/delegate", Some(token), &body).await;
    let st = resp.status().as_u16();
    (st, json(resp).await)
}

async fn embed(gw: &gatehouse_testkit::TestGateway, token: &str) -> u16 {
    gw.post("/v1/embeddings", Some(token), &json!({"model": "mock-embedding", "input": "hi"})).await.status().as_u16()
}

/// Runs `gatehouse token <args>` with `stdin` piped in; returns stdout (and asserts success).
async fn cli(args: &[&str], stdin: &str) -> String {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .arg("token")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).await.unwrap();
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success(), "gatehouse token {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn a_minted_token_is_a_narrow_credential() {
    let gw = gateway().spawn().await;
    let v = mint(
        &gw,
        json!({"name": "ci", "scopes": ["chat:*", "tokens:delegate"], "models": ["mock"], "expires_in_seconds": 600}),
    )
    .await;
    let token = v["token"].as_str().unwrap().to_owned();
    assert_eq!(v["caveats"].as_array().unwrap().len(), 5, "{v}");
    assert_eq!(gw.chat(&token, "mock").await.status(), 200);
    // Outside its scopes and models the token is refused like any other credential.
    assert_eq!(embed(&gw, &token).await, 403);
    let resp = gw.chat(&token, "mock-embedding").await;
    assert_eq!(resp.status(), 404);
    assert_eq!(json(resp).await["error"]["code"], "model_not_found");
    // /v1/models needs models:read, which this token was not given.
    assert_eq!(gw.get("/v1/models", Some(&token)).await.status(), 403);

    // Tampering: a flipped character, a truncated token, a stripped caveat.
    let mut flipped = token.clone().into_bytes();
    let i = flipped.len() - 5;
    flipped[i] = if flipped[i] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    for bad in [flipped.as_str(), &token[..token.len() - 4]] {
        let resp = gw.chat(bad, "mock").await;
        assert_eq!(resp.status(), 401);
        assert_eq!(json(resp).await["error"]["code"], "invalid_token");
    }

    // Narrowed offline with the CLI, in each text form; the narrower token works narrower.
    for format in ["url", "std", "json"] {
        // (60 per minute: a burst of ten, so the three presentations below all fit; the rate is
        // the token's, shared by every attenuated copy)
        let narrower = cli(&["attenuate", "--caveat", "rpm <= 60", "--format", format], &token).await;
        assert_eq!(gw.chat(narrower.trim(), "mock").await.status(), 200, "{format}");
    }
    let inspected = cli(&["inspect", "-o", "json"], &token).await;
    let inspected: Value = serde_json::from_str(&inspected).unwrap();
    assert_eq!(inspected["token_id"], v["id"]);
    assert_eq!(inspected["caveats"].as_array().unwrap().len(), 5);
    // An unknown caveat is refused by the CLI before it can make a useless token.
    let bad = tokio::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["token", "attenuate", "--caveat", "account = 42"])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(!bad.status.success());
    // Hostile shapes: every one is a clean 401, never a 500 or a hang.
    let nested = format!("{}{}", "[".repeat(2000), "]".repeat(2000));
    let many = format!("[{}]", vec![format!("\"{token}\""); 20].join(","));
    let long_json = format!("{{\"v\":2,\"i\":\"{}\"}}", "x".repeat(7000));
    // (a token followed by itself reads as a token and a discharge that binds nothing)
    for hostile in
        [nested.as_str(), &many, &long_json, "Ag", "AgAAAAAAAAAAAAAAAA", "{}", "[]", &format!("{token},{token}")]
    {
        let resp = gw.chat(hostile, "mock").await;
        assert_eq!(resp.status(), 401, "{}", &hostile[..hostile.len().min(40)]);
    }
    // two credentials joined into one header by an intermediary: refused as ambiguous
    let resp = gw.chat(&format!("{token}, Bearer {}", gw.key()), "mock").await;
    assert_eq!(resp.status(), 400);
    assert_eq!(json(resp).await["error"]["code"], "invalid_request");

    let expired = cli(&["attenuate", "--caveat", "expires < 2001-01-01T00:00:00Z"], &token).await;
    let resp = gw.chat(expired.trim(), "mock").await;
    assert_eq!(resp.status(), 401);
    assert_eq!(json(resp).await["error"]["code"], "expired_token");
}

#[tokio::test]
async fn delegation_narrows_and_revocation_takes_the_subtree() {
    let gw = gateway().spawn().await;
    let parent = mint(
        &gw,
        json!({"name": "agent-root", "scopes": ["chat:*", "embeddings:create", "tokens:delegate"],
               "models": ["mock", "mock-embedding"], "expires_in_seconds": 600, "budget_usd": "5"}),
    )
    .await;
    let ptoken = parent["token"].as_str().unwrap();

    let (st, child) = delegate(
        &gw,
        ptoken,
        json!({"name": "sub", "scopes": ["chat:completions", "tokens:delegate"], "budget_usd": 1}),
    )
    .await;
    assert_eq!(st, 201, "{child}");
    assert_eq!(child["parent_id"], parent["id"]);
    let ctoken = child["token"].as_str().unwrap();
    assert_eq!(gw.chat(ctoken, "mock").await.status(), 200);
    assert_eq!(embed(&gw, ctoken).await, 403, "the child lost embeddings");
    assert_eq!(embed(&gw, ptoken).await, 200, "the parent keeps them");

    let (st, grandchild) = delegate(&gw, ctoken, json!({"name": "leaf"})).await;
    assert_eq!(st, 201, "{grandchild}");
    let gtoken = grandchild["token"].as_str().unwrap();
    assert_eq!(gw.chat(gtoken, "mock").await.status(), 200);

    // Wider than the parent: refused, and the answer says which field.
    for (wide, names) in [
        (json!({"scopes": ["embeddings:create"]}), "embeddings:create"),
        (json!({"models": ["mock-large"]}), "mock-large"),
        (json!({"budget_usd": "2"}), "budget_usd"),
        (json!({"expires_in_seconds": 7200}), "expiry"),
    ] {
        let (st, v) = delegate(&gw, ctoken, wide.clone()).await;
        assert_eq!(st, 403, "{wide}: {v}");
        assert_eq!(v["error"]["code"], "permission_denied");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains("wider than its parent") && msg.contains(names), "{msg}");
    }
    // Without the delegate scope, or with an API key, there is nothing to delegate from.
    let (st, no_scope) = delegate(&gw, ctoken, json!({"scopes": ["chat:completions"]})).await;
    assert_eq!(st, 201);
    let (st, _) = delegate(&gw, no_scope["token"].as_str().unwrap(), json!({})).await;
    assert_eq!(st, 403);
    let (st, v) = delegate(&gw, gw.key(), json!({})).await;
    assert_eq!((st, v["error"]["code"].as_str()), (401, Some("invalid_token")));

    // The registry shows the tree.
    let (_, list) = as_root(&gw, Method::GET, "/admin/v1/capabilities", None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 4);

    // Revoking the child kills it and everything below, on the very next request.
    let cid = child["id"].as_str().unwrap();
    let (st, v) = as_root(&gw, Method::POST, &format!("/admin/v1/capabilities/{cid}/revoke"), None).await;
    assert_eq!((st, v["revoked"].as_u64()), (200, Some(3)), "{v}");
    for dead in [ctoken, gtoken, no_scope["token"].as_str().unwrap()] {
        let resp = gw.chat(dead, "mock").await;
        assert_eq!(resp.status(), 401);
        assert_eq!(json(resp).await["error"]["code"], "invalid_token");
    }
    assert_eq!(gw.chat(ptoken, "mock").await.status(), 200, "the parent is untouched");

    // The audit trail names tokens by id, never by value.
    let (_, trail) = as_root(&gw, Method::GET, "/admin/v1/audit?limit=200", None).await;
    let text = trail.to_string();
    assert!(text.contains("capability.delegate") && text.contains("capability.mint"));
    assert!(text.contains(&format!("capability:{cid}")));
    for t in [ptoken, ctoken, gtoken] {
        assert!(!text.contains(&t[20..60]), "a token value reached the audit trail");
    }
}

/// A third-party caveat the holder added (offline, as macaroons allow) stays on every token
/// delegated from it: the child is useless without a discharge bound to the child itself.
#[tokio::test]
async fn a_delegated_child_keeps_its_parents_third_party_caveats() {
    use gatehouse_tokens::macaroon::{Encoding, Limits, Macaroon};
    const AUTH: &str = "https://auth.example";
    const CAVEAT_KEY: &[u8] = b"shared with the third party only";
    let gw = gateway().spawn().await;
    let minted = mint(
        &gw,
        json!({"name": "tp", "scopes": ["chat:*", "tokens:delegate"], "models": ["mock"], "expires_in_seconds": 600}),
    )
    .await;
    let mut parent = Macaroon::decode(minted["token"].as_str().unwrap(), &Limits::default()).unwrap();
    parent.add_third_party(AUTH, CAVEAT_KEY, "user-is-alice");
    let discharge = Macaroon::new(CAVEAT_KEY, "user-is-alice", Some(AUTH));
    let text = |m: &Macaroon| m.encode(Encoding::Base64Url);
    let with = |m: &Macaroon, bound_to: &Macaroon| format!("{},{}", text(m), text(&bound_to.bind(&discharge)));
    assert_eq!(gw.chat(&text(&parent), "mock").await.status(), 401, "the caveat needs its discharge");
    assert_eq!(gw.chat(&with(&parent, &parent), "mock").await.status(), 200);

    let (st, child) = delegate(&gw, &with(&parent, &parent), json!({"name": "sub"})).await;
    assert_eq!(st, 201, "{child}");
    let child = Macaroon::decode(child["token"].as_str().unwrap(), &Limits::default()).unwrap();
    let third: Vec<_> = child.caveats().iter().filter(|c| !c.is_first_party()).collect();
    assert_eq!(third.len(), 1, "the child carries the parent's third-party caveat");
    assert_eq!((third[0].location.as_deref(), third[0].id.as_slice()), (Some(AUTH), &b"user-is-alice"[..]));
    for (what, presented) in [
        ("alone", text(&child)),
        ("with the parent's bound discharge", format!("{},{}", text(&child), text(&parent.bind(&discharge)))),
        ("with an unbound discharge", format!("{},{}", text(&child), text(&discharge))),
    ] {
        let resp = gw.chat(&presented, "mock").await;
        assert_eq!(resp.status(), 401, "the child {what}");
        assert_eq!(json(resp).await["error"]["code"], "invalid_token", "the child {what}");
    }
    assert_eq!(gw.chat(&with(&child, &child), "mock").await.status(), 200, "with a discharge bound to it");
}

#[tokio::test]
async fn root_key_rotation_keeps_or_kills_old_tokens() {
    let gw = gateway().spawn().await;
    let body = json!({"name": "r", "scopes": ["chat:*"], "expires_in_seconds": 600});
    let old = mint(&gw, body.clone()).await["token"].as_str().unwrap().to_owned();
    let (st, v) = as_root(&gw, Method::POST, "/admin/v1/capability-keys/rotate", Some(json!({}))).await;
    assert_eq!((st, v["version"].as_i64()), (200, Some(2)), "{v}");
    let new = mint(&gw, body.clone()).await["token"].as_str().unwrap().to_owned();
    assert_eq!(gw.chat(&old, "mock").await.status(), 200, "old tokens verify through the grace");
    assert_eq!(gw.chat(&new, "mock").await.status(), 200);
    let (_, keys) = as_root(&gw, Method::GET, "/admin/v1/capability-keys", None).await;
    assert_eq!(keys["data"][0]["current"], true);
    assert!(keys["data"][1]["retire_at"].is_i64());
    let (st, _) = as_root(&gw, Method::POST, "/admin/v1/capability-keys/rotate", Some(json!({"retire": "now"}))).await;
    assert_eq!(st, 200);
    // The key cache of this replica was dropped by the rotation itself.
    assert_eq!(gw.chat(&old, "mock").await.status(), 401);
    assert_eq!(gw.chat(&new, "mock").await.status(), 401);
    let newest = mint(&gw, body).await["token"].as_str().unwrap().to_owned();
    assert_eq!(gw.chat(&newest, "mock").await.status(), 200);
}
