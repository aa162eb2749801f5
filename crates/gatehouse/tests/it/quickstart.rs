//! The embedded default works offline with the mock provider.

use futures_util::StreamExt;
use serde_json::json;

use crate::common::{gateway, json};

#[tokio::test]
async fn first_start_prints_secrets_once_and_the_mock_answers() {
    let gw = gateway().spawn().await;
    let key = gw.api_key.clone().expect("first start prints an api key");
    assert!(key.starts_with("gth_"));
    assert!(gw.admin_token.as_deref().unwrap().starts_with("gtha_"));

    let resp = gw.chat(&key, "mock").await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-request-id"));
    let v = json(resp).await;
    assert!(v["choices"][0]["message"]["content"].as_str().unwrap().contains("mock provider"));
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);

    let emb = gw.post("/v1/embeddings", Some(&key), &json!({"model": "mock-embedding", "input": ["a", "b"]})).await;
    assert_eq!(emb.status(), 200);
    assert_eq!(json(emb).await["data"].as_array().unwrap().len(), 2);

    let models = json(gw.get("/v1/models", Some(&key)).await).await;
    let ids: Vec<&str> = models["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["mock", "mock-embedding"]);
    assert_eq!(gw.get("/v1/models/mock", Some(&key)).await.status(), 200);
    assert_eq!(gw.get("/healthz", None).await.status(), 200);
    assert_eq!(gw.get("/readyz", None).await.status(), 200);

    // a restart on the same data dir keeps the key and prints no new secrets
    let dir = gw.stop().await;
    let again = gateway().data_dir(dir).spawn().await;
    assert!(again.api_key.is_none() && again.admin_token.is_none(), "secrets are shown only once");
    assert_eq!(again.chat(&key, "mock").await.status(), 200);
}

#[tokio::test]
async fn mock_streams_chunk_by_chunk_with_usage() {
    let gw = gateway().spawn().await;
    let body = json!({"model": "mock", "stream": true, "messages": [{"role": "user", "content": "hello"}]});
    let resp = gw.post("/v1/chat/completions", Some(gw.key()), &body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut chunks = 0;
    let mut text = String::new();
    let mut stream = resp.bytes_stream();
    let mut first = None;
    while let Some(c) = stream.next().await {
        first.get_or_insert_with(std::time::Instant::now);
        chunks += 1;
        text.push_str(std::str::from_utf8(&c.unwrap()).unwrap());
    }
    assert!(chunks > 1, "the stream arrives in pieces");
    // ten words, a 25 ms pause between two (`[mock] stream_delay_ms`): seen as a stream
    let spread = first.unwrap().elapsed();
    assert!(spread >= std::time::Duration::from_millis(225), "{spread:?}");
    assert!(text.contains("\"usage\""));
    assert!(text.trim_end().ends_with("data: [DONE]"));
}

#[tokio::test]
async fn metrics_count_outcomes_by_code_without_content() {
    let gw = gateway().spawn().await;
    gw.chat(gw.key(), "mock").await;
    gw.chat("gth_wrong", "mock").await;
    let metrics = gw.http.get(format!("{}/metrics", gw.admin_url)).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("gatehouse_requests_total{endpoint=\"chat_completions\",outcome=\"allowed\""),
        "{metrics}"
    );
    assert!(metrics.contains("code=\"invalid_api_key\",gate=\"authenticate\""), "{metrics}");
    assert!(metrics.contains("gatehouse_request_duration_seconds_bucket"));
    assert!(!metrics.contains("hello"), "no prompt content in metrics");
    assert!(!metrics.contains(gw.key()), "no credential in metrics");
}

/// `server.bootstrap_admin_token`: the operator's token (from `gatehouse bootstrap-token`)
/// becomes the first admin token and no secret is printed; a value that is not an admin token
/// refuses the start without echoing it.
#[tokio::test]
async fn a_given_bootstrap_token_is_the_first_admin_token_and_nothing_is_printed() {
    let (code, out) = crate::common::cli(&["bootstrap-token"], &[]);
    assert_eq!(code, 0, "{out}");
    let token = out.trim().to_owned();
    assert!(token.starts_with("gtha_"));
    let (_, again) = crate::common::cli(&["bootstrap-token"], &[]);
    assert_ne!(again.trim(), token, "fresh each time");

    let gw =
        gateway().server(r#"bootstrap_admin_token = "env:GH_BOOTSTRAP""#).env("GH_BOOTSTRAP", &token).spawn().await;
    assert!(gw.admin_token.is_none() && gw.api_key.is_none(), "no secret in the log");
    assert!(!gw.logs().contains(&token));
    let (status, orgs) = crate::common::call(&gw, &token, reqwest::Method::GET, "/admin/v1/orgs", None).await;
    assert_eq!(status, 200, "{orgs}");
    let (_, tokens) = crate::common::call(&gw, &token, reqwest::Method::GET, "/admin/v1/tokens", None).await;
    assert_eq!(tokens["data"].as_array().unwrap().len(), 1, "{tokens}");
    // later starts take no new bootstrap even with another token configured
    let dir = gw.stop().await;
    let (_, other) = crate::common::cli(&["bootstrap-token"], &[]);
    let gw = gateway()
        .data_dir(dir)
        .server(r#"bootstrap_admin_token = "env:GH_BOOTSTRAP""#)
        .env("GH_BOOTSTRAP", other.trim())
        .spawn()
        .await;
    assert_eq!(crate::common::call(&gw, other.trim(), reqwest::Method::GET, "/admin/v1/orgs", None).await.0, 401);
    assert_eq!(crate::common::call(&gw, &token, reqwest::Method::GET, "/admin/v1/orgs", None).await.0, 200);

    // not an admin token (an API key, a typo): refused, named, never echoed
    let last = if token.ends_with('x') { 'y' } else { 'x' };
    let bad = format!("{}{last}", &token[..token.len() - 1]);
    for wrong in [bad.as_str(), "gth_notanadmintoken"] {
        let err = gateway()
            .server(r#"bootstrap_admin_token = "env:GH_BOOTSTRAP""#)
            .env("GH_BOOTSTRAP", wrong)
            .start_error()
            .await;
        assert!(err.contains("server.bootstrap_admin_token is not an admin token"), "{err}");
        assert!(!err.contains(wrong));
    }
    let err = gateway().server(r#"bootstrap_admin_token = "env:GH_UNSET""#).start_error().await;
    assert!(err.contains("server.bootstrap_admin_token") && err.contains("GH_UNSET"), "{err}");
}

/// A store whose admin tokens were all revoked is not at its first start: a restart mints and
/// prints nothing (`gatehouse recover-admin` is the way back in) and says so.
#[tokio::test]
async fn a_store_whose_admin_tokens_are_all_revoked_is_not_bootstrapped_again() {
    let gw = gateway().spawn().await;
    let root = gw.admin_token.clone().unwrap();
    let path = "/admin/v1/tokens/00000000-0000-0000-0000-000000000000/revoke";
    let (status, v) = crate::common::call(&gw, &root, reqwest::Method::POST, path, None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(crate::common::call(&gw, &root, reqwest::Method::GET, "/admin/v1/orgs", None).await.0, 401);
    let dir = gw.stop().await;
    let again = gateway().data_dir(dir).spawn().await;
    assert!(again.admin_token.is_none() && again.api_key.is_none());
    assert!(again.logs().contains("every admin token is revoked"), "{}", again.logs());
}
