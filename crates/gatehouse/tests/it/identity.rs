//! Signed identity propagation: a provider configured with an identity key receives
//! `x-gatehouse-*` headers that verify with the published verifier (gatehouse-identity), never
//! the client's own copies, and a replay outside the window fails.

use gatehouse_identity::{Error, Verifier};
use gatehouse_testkit::FakeProvider;
use reqwest::Method;
use serde_json::json;

use crate::common::{PROVIDER_SECRET, as_root, gateway, upstream_config};

const IDENTITY_KEY: &str = "an identity key of at least thirty-two bytes";

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

#[tokio::test]
async fn upstreams_get_signed_identity_headers_that_verify() {
    let fake = FakeProvider::spawn().await;
    let config = upstream_config(&fake).replacen(
        "api_key = \"env:FAKE_UPSTREAM_KEY\"",
        "api_key = \"env:FAKE_UPSTREAM_KEY\"\nidentity_key_id = \"k1\"\nidentity_key = \"env:IDENTITY_KEY\"",
        1,
    );
    let gw = gateway()
        .config(&config)
        .env("FAKE_UPSTREAM_KEY", PROVIDER_SECRET)
        .env("IDENTITY_KEY", IDENTITY_KEY)
        .spawn()
        .await;

    // The client tries to speak for someone else; those headers must not arrive.
    let forged = [("x-gatehouse-subject", "key:someone-else"), ("x-gatehouse-org", "forged")];
    assert_eq!(chat_claiming(&gw, &[forged[0], forged[1], ("x-gatehouse-signature", "v1=forged")]).await, 200);
    let seen = fake.last_request().unwrap();
    assert_eq!(seen.headers.get_all("x-gatehouse-subject").iter().count(), 1);
    assert_ne!(seen.headers["x-gatehouse-org"], "forged");

    let verifier = Verifier::new([("k1".to_owned(), IDENTITY_KEY.as_bytes().to_vec())]);
    let id = verifier.verify(&seen.headers, "POST", &seen.path, &seen.raw, now()).unwrap();
    assert!(id.subject.starts_with("key:"), "{id:?}");
    assert_eq!(id.request_id, seen.headers["x-request-id"].to_str().unwrap());
    let (_, orgs) = as_root(&gw, Method::GET, "/admin/v1/orgs", None).await;
    assert!(orgs.to_string().contains(&id.org), "the org id is the tenant's");

    // A replay: outside the window it fails; inside it, a replay cache refuses the second use.
    assert_eq!(verifier.verify(&seen.headers, "POST", &seen.path, &seen.raw, now() + 61), Err(Error::Stale));
    let cached = Verifier::new([("k1".to_owned(), IDENTITY_KEY.as_bytes().to_vec())]).replay_cache(1024);
    assert!(cached.verify(&seen.headers, "POST", &seen.path, &seen.raw, now()).is_ok());
    assert_eq!(cached.verify(&seen.headers, "POST", &seen.path, &seen.raw, now()), Err(Error::Replayed));
    // The body and the key are covered.
    assert_eq!(verifier.verify(&seen.headers, "POST", &seen.path, b"{}", now()), Err(Error::BadSignature));
    let wrong = Verifier::new([("k1".to_owned(), b"another key entirely, also 32 bytes".to_vec())]);
    assert_eq!(wrong.verify(&seen.headers, "POST", &seen.path, &seen.raw, now()), Err(Error::BadSignature));
}

#[tokio::test]
async fn without_an_identity_key_no_identity_headers_are_sent() {
    let fake = FakeProvider::spawn().await;
    let gw = crate::common::gateway_with(&fake).await;
    assert_eq!(chat_claiming(&gw, &[("x-gatehouse-subject", "key:someone-else")]).await, 200);
    let seen = fake.last_request().unwrap();
    for h in gatehouse_identity::ALL {
        assert!(seen.headers.get(h).is_none(), "{h} reached the provider");
    }
}

/// A chat request whose client sends identity headers of its own (which must never arrive).
async fn chat_claiming(gw: &gatehouse_testkit::TestGateway, headers: &[(&str, &str)]) -> u16 {
    let mut rb = gw.http.post(format!("{}/v1/chat/completions", gw.data_url)).bearer_auth(gw.key());
    for (name, value) in headers {
        rb = rb.header(*name, *value);
    }
    let body = json!({"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]});
    rb.json(&body).send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn an_identity_key_shorter_than_32_bytes_stops_the_start_without_echo() {
    let fake = gatehouse_testkit::FakeProvider::spawn().await;
    let cfg = format!(
        "[[providers]]\nname = \"p\"\nbase_url = \"{}\"\nidentity_key_id = \"k1\"\nidentity_key = \"env:ID_KEY\"\n\
         [[models]]\nname = \"m\"\nprovider = \"p\"\n",
        fake.base_url()
    );
    let err = crate::common::gateway().config(&cfg).env("ID_KEY", "short-secret-0123").start_error().await;
    assert!(err.contains("at least 32 bytes") && !err.contains("short-secret-0123"), "{err}");
}
