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

/// A credential in more than one place is refused (400), whichever of them is valid, on
/// both planes, and the refusal names neither.
#[tokio::test]
async fn an_ambiguous_credential_is_refused_on_both_planes() {
    let fake = FakeProvider::spawn().await;
    let gw = gateway_with(&fake).await;
    let key = gw.key().to_owned();
    let root = gw.admin_token.clone().unwrap();
    let body = json!({"model": "fake-model", "messages": [{"role": "user", "content": "x"}]});
    let bearer = |t: &str| format!("Bearer {t}");
    let cases: Vec<(Vec<(&str, String)>, &str)> = vec![
        (vec![("authorization", bearer(&key)), ("authorization", bearer(&key))], ""),
        (vec![("authorization", bearer(&key)), ("authorization", bearer("gth_other"))], ""),
        (vec![("authorization", bearer("gth_other")), ("authorization", bearer(&key))], ""),
        (vec![("authorization", bearer(&key)), ("x-api-key", key.clone())], ""),
        (vec![("x-api-key", key.clone()), ("x-api-key", key.clone())], ""),
        (vec![("authorization", bearer(&key)), ("api-key", key.clone())], ""),
        (vec![("authorization", format!("Bearer {key}, Bearer {key}"))], ""),
        (vec![("authorization", bearer(&key))], "?access_token=other"),
        (vec![("x-api-key", key.clone())], "?api_key=other"),
    ];
    for (headers, query) in &cases {
        for path in ["/v1/chat/completions", "/v1/models"] {
            let mut rb = if path == "/v1/models" {
                gw.http.get(format!("{}{path}{query}", gw.data_url))
            } else {
                gw.http.post(format!("{}{path}{query}", gw.data_url)).json(&body)
            };
            for (k, v) in headers {
                rb = rb.header(*k, v);
            }
            let r = rb.send().await.unwrap();
            assert_eq!(r.status(), 400, "{path} {headers:?} {query}");
            let text = r.text().await.unwrap();
            assert!(!text.contains(&key) && !text.contains("gth_other"), "a refusal never echoes a credential");
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["error"]["code"], "invalid_request");
            assert_eq!(v["error"]["type"], "invalid_request_error");
        }
    }
    assert_eq!(fake.calls(), 0, "an ambiguous request never reaches the provider");
    // the same request with the credential once is served: the refusal is about ambiguity
    assert_eq!(gw.chat(&key, "fake-model").await.status(), 200);

    let url = format!("{}/admin/v1/keys", gw.admin_url);
    for extra in [("authorization", bearer(&root)), ("x-api-key", root.clone()), ("authorization", bearer("gtha_x"))] {
        let r = gw.http.get(&url).bearer_auth(&root).header(extra.0, &extra.1).send().await.unwrap();
        assert_eq!(r.status(), 400, "{extra:?}");
        assert!(!r.text().await.unwrap().contains(&root));
    }
    let r = gw.http.get(format!("{url}?access_token={root}")).bearer_auth(&root).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = gw.http.get(&url).header("authorization", format!("Bearer {root},Bearer {root}")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    // a query parameter of the admin API that happens to be called `key` is not a credential
    let org = crate::common::new_org(&gw, "acme").await;
    let usage = format!("{}/admin/v1/orgs/{org}/usage?key=k_1", gw.admin_url);
    let v = json(gw.http.get(usage).bearer_auth(&root).send().await.unwrap()).await;
    assert!(v["error"].is_null() || v["error"]["param"] == "key", "judged as a key id, not as a credential: {v}");

    // each refusal is audited as an authentication failure, without the credential
    let audit = gw.admin(reqwest::Method::GET, "/admin/v1/audit?limit=200", None).await.text().await.unwrap();
    assert!(!audit.contains(&key) && !audit.contains(&root));
    let audit: serde_json::Value = serde_json::from_str(&audit).unwrap();
    let denied = |action: &str| {
        audit["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == action && e["outcome"] == "denied" && e["status"] == 400)
            .count()
    };
    assert!(denied("auth.admin_token") >= 5, "{audit}");
    assert!(denied("request.denied") + denied("auth.api_key") >= cases.len(), "{audit}");

    // token exchange: the subject token is the credential; a header beside it is ambiguous
    let r = gw
        .http
        .post(format!("{}/v1/token", gw.data_url))
        .bearer_auth(&key)
        .form(&[("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"), ("subject_token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
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
