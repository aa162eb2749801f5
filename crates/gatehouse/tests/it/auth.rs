//! Credentials: wrong, revoked and expired keys are refused before any provider sees them.

use std::time::Duration;

use gatehouse_testkit::{FakeProvider, eventually};
use serde_json::json;

use crate::common::{gateway_with, json};

#[tokio::test]
async fn bad_credentials_never_reach_the_provider() {
    let fake = FakeProvider::spawn().await;
    let gw = gateway_with(&fake).await;
    let no_key = gw
        .post(
            "/v1/chat/completions",
            None,
            &json!({"model": "fake-model", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(no_key.status(), 401);
    assert_eq!(json(no_key).await["error"]["code"], "missing_credentials");

    for bad in ["nonsense", "gth_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", gw.admin_token.as_deref().unwrap()]
    {
        let r = gw.chat(bad, "fake-model").await;
        assert_eq!(r.status(), 401, "{bad}");
        assert_eq!(json(r).await["error"]["code"], "invalid_api_key");
    }
    // well formed, right checksum, unknown to the store
    let (_, other_gw_key) = {
        let other = crate::common::gateway().spawn().await;
        (other.admin_token.clone(), other.api_key.clone().unwrap())
    };
    assert_eq!(gw.chat(&other_gw_key, "fake-model").await.status(), 401);
    assert_eq!(fake.calls(), 0, "no refused request may reach the provider");
}

#[tokio::test]
async fn a_revoked_key_stops_within_a_second() {
    let fake = FakeProvider::spawn().await;
    let gw = gateway_with(&fake).await;
    let (id, key) = gw.create_key(json!({"name": "to-revoke"})).await;
    assert_eq!(gw.chat(&key, "fake-model").await.status(), 200, "verified and cached");
    assert_eq!(fake.calls(), 1);

    let revoked = gw.revoke_key(&id).await;
    assert_eq!(revoked.status(), 200);
    assert!(json(revoked).await["revoked_at"].is_i64());
    let started = std::time::Instant::now();
    assert!(
        eventually(Duration::from_secs(1), || async { gw.chat(&key, "fake-model").await.status() == 401 }).await,
        "revoke must take effect within one second"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(fake.calls(), 1, "the revoked key never reached the provider again");
    assert_eq!(gw.revoke_key(&id).await.status(), 404, "revoking twice finds nothing to revoke");
}

#[tokio::test]
async fn an_expired_key_is_refused_as_expired() {
    let fake = FakeProvider::spawn().await;
    let gw = gateway_with(&fake).await;
    let (_, key) = gw.create_key(json!({"name": "short", "expires_in_seconds": 1})).await;
    assert_eq!(gw.chat(&key, "fake-model").await.status(), 200);
    assert!(
        eventually(Duration::from_secs(3), || async {
            let r = gw.chat(&key, "fake-model").await;
            r.status() == 401 && json(r).await["error"]["code"] == "expired_token"
        })
        .await
    );
    let calls = fake.calls();
    assert_eq!(gw.chat(&key, "fake-model").await.status(), 401);
    assert_eq!(fake.calls(), calls, "expired requests never reach the provider");
}

#[tokio::test]
async fn allow_lists_hide_other_models() {
    let fake = FakeProvider::spawn().await;
    let gw = gateway_with(&fake).await;
    let (_, key) = gw.create_key(json!({"name": "mock-only", "models": ["mock"]})).await;

    let r = gw.chat(&key, "fake-model").await;
    assert_eq!(r.status(), 404);
    assert_eq!(json(r).await["error"]["code"], "model_not_found");
    // an alias of a forbidden model is forbidden too
    assert_eq!(gw.chat(&key, "fast").await.status(), 404);
    assert_eq!(gw.chat(&key, "mock").await.status(), 200);
    assert_eq!(fake.calls(), 0);

    let models = json(gw.get("/v1/models", Some(&key)).await).await;
    let ids: Vec<&str> = models["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["mock"]);
    assert_eq!(gw.get("/v1/models/fake-model", Some(&key)).await.status(), 404);

    // the allow-list must name real models
    let bad = gw.admin(reqwest::Method::POST, "/admin/v1/keys", Some(&json!({"name": "x", "models": ["nope"]}))).await;
    assert_eq!(bad.status(), 400);
    assert_eq!(json(bad).await["error"]["param"], "models");
}

#[tokio::test]
async fn the_control_plane_requires_an_admin_token() {
    let gw = crate::common::gateway().spawn().await;
    let url = format!("{}/admin/v1/keys", gw.admin_url);
    let none = gw.http.get(&url).send().await.unwrap();
    assert_eq!(none.status(), 401);
    let api_key_as_admin = gw.http.get(&url).bearer_auth(gw.key()).send().await.unwrap();
    assert_eq!(api_key_as_admin.status(), 401, "a data-plane key is not an admin token");
    let ok = gw.admin(reqwest::Method::GET, "/admin/v1/keys", None).await;
    assert_eq!(ok.status(), 200);
    let text = ok.text().await.unwrap();
    assert!(!text.contains(gw.key()), "listing never shows a secret");
    assert!(!text.contains("digest"), "listing never shows a digest");
    // mass assignment: fields that are not ours to set are rejected
    let r = gw.admin(reqwest::Method::POST, "/admin/v1/keys", Some(&json!({"name": "x", "digest": "00"}))).await;
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn rotation_hands_out_a_new_secret_and_retires_the_old_one() {
    let fake = FakeProvider::spawn().await;
    let gw = gateway_with(&fake).await;
    let (id, old) = gw.create_key(json!({"name": "svc", "models": ["fake-model"]})).await;
    assert_eq!(gw.chat(&old, "fake-model").await.status(), 200);

    // with a grace period both work for a while
    let resp = gw
        .admin(reqwest::Method::POST, &format!("/admin/v1/keys/{id}/rotate"), Some(&json!({"grace_seconds": 60})))
        .await;
    assert_eq!(resp.status(), 201);
    let v = json(resp).await;
    let new = v["key"]["key"].as_str().unwrap().to_owned();
    let new_id = v["key"]["id"].as_str().unwrap().to_owned();
    assert_eq!(v["key"]["models"], json!(["fake-model"]), "settings carry over");
    assert_eq!(gw.chat(&new, "fake-model").await.status(), 200);
    assert_eq!(gw.chat(&old, "fake-model").await.status(), 200, "the old secret works during the grace");

    // without one the old secret stops at once
    let resp = gw.admin(reqwest::Method::POST, &format!("/admin/v1/keys/{new_id}/rotate"), None).await;
    assert_eq!(resp.status(), 201);
    let newest = json(resp).await["key"]["key"].as_str().unwrap().to_owned();
    assert_eq!(gw.chat(&newest, "fake-model").await.status(), 200);
    assert!(eventually(Duration::from_secs(1), || async { gw.chat(&new, "fake-model").await.status() == 401 }).await);
    let bad = gw
        .admin(reqwest::Method::POST, &format!("/admin/v1/keys/{id}/rotate"), Some(&json!({"grace_seconds": 999999})))
        .await;
    assert_eq!(bad.status(), 400);
}
