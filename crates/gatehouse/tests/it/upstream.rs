//! A configured OpenAI-compatible upstream, reached over real HTTP, including the ways it
//! can misbehave.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use gatehouse_testkit::{Behavior, FakeProvider, UPSTREAM_SECRET_IN_ERRORS, eventually};
use serde_json::{Value, json};

use crate::common::{PROVIDER_SECRET, gateway_with, json};

fn chat_body(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hello"}],
           "temperature": 0.3, "x_vendor_field": {"nested": [1, 2, 3]}})
}

/// Reads a whole SSE response as text.
async fn sse_text(resp: reqwest::Response) -> String {
    let mut out = String::new();
    let mut s = resp.bytes_stream();
    while let Some(c) = s.next().await {
        match c {
            Ok(b) => out.push_str(&String::from_utf8_lossy(&b)),
            Err(_) => break,
        }
    }
    out
}

#[tokio::test]
async fn forwards_with_the_provider_credential_and_untouched_fields() {
    let fake = FakeProvider::spawn().await;
    let gw = gateway_with(&fake).await;
    let resp = gw.post("/v1/chat/completions", Some(gw.key()), &chat_body("fast", false)).await;
    assert_eq!(resp.status(), 200);
    let v = json(resp).await;
    assert_eq!(v["choices"][0]["message"]["content"], gatehouse_testkit::FAKE_REPLY);
    assert_eq!(v["system_fingerprint"], "fp_fake", "unknown response fields pass through");

    let seen = fake.last_request().unwrap();
    assert_eq!(seen.body["model"], "upstream-model-v1", "alias -> canonical -> provider model");
    assert_eq!(seen.body["x_vendor_field"]["nested"][2], 3, "unknown request fields pass through");
    assert_eq!(seen.body["temperature"], 0.3);
    assert_eq!(seen.headers["authorization"], format!("Bearer {PROVIDER_SECRET}"));
    let forwarded = format!("{:?}", seen.headers);
    assert!(!forwarded.contains(gw.key()), "the client credential is never forwarded");
    assert!(seen.headers.contains_key("x-request-id"));
}

#[tokio::test]
async fn streams_pass_through_and_end_with_done() {
    let fake = FakeProvider::spawn().await;
    let gw = gateway_with(&fake).await;
    let resp = gw.post("/v1/chat/completions", Some(gw.key()), &chat_body("fake-model", true)).await;
    assert_eq!(resp.status(), 200);
    let text = sse_text(resp).await;
    assert!(text.contains("tok0 ") && text.contains("tok7 "), "{text}");
    assert!(text.trim_end().ends_with("data: [DONE]"));
    assert_eq!(fake.last_request().unwrap().body["stream_options"]["include_usage"], true);
    // usage from the final chunk is metered, and the audit line says how the stream ended
    assert!(
        eventually(Duration::from_secs(30), || async {
            let logs = gw.logs();
            logs.contains("stream_end=\"completed\"") && logs.contains("completion_tokens=8")
        })
        .await,
        "{}",
        gw.logs()
    );
}

#[tokio::test]
async fn a_client_that_hangs_up_mid_stream_is_metered_as_cancelled() {
    let fake = FakeProvider::spawn().await;
    fake.set(Behavior::SlowStream(Duration::from_millis(100)));
    let gw = gateway_with(&fake).await;
    let resp = gw.post("/v1/chat/completions", Some(gw.key()), &chat_body("fake-model", true)).await;
    let mut stream = resp.bytes_stream();
    assert!(stream.next().await.is_some());
    drop(stream);
    assert!(
        eventually(Duration::from_secs(30), || async { gw.logs().contains("stream_end=\"cancelled\"") }).await,
        "{}",
        gw.logs()
    );
}

#[tokio::test]
async fn embeddings_are_forwarded() {
    let fake = FakeProvider::spawn().await;
    let gw = gateway_with(&fake).await;
    let resp =
        gw.post("/v1/embeddings", Some(gw.key()), &json!({"model": "fake-embed", "input": ["a", "b", "c"]})).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(json(resp).await["data"].as_array().unwrap().len(), 3);
    assert_eq!(fake.last_request().unwrap().path, "/v1/embeddings");
    // a chat model is not an embedding model
    let wrong = gw.post("/v1/embeddings", Some(gw.key()), &json!({"model": "fake-model", "input": "a"})).await;
    assert_eq!(wrong.status(), 404);
}

#[tokio::test]
async fn upstream_errors_map_to_fixed_refusals_without_echo() {
    let fake = FakeProvider::spawn().await;
    let gw = gateway_with(&fake).await;
    for (upstream, status, code) in [
        (400, 400, "upstream_rejected"),
        (401, 502, "upstream_error"),
        (429, 429, "upstream_rate_limited"),
        (500, 502, "upstream_error"),
        (503, 502, "upstream_error"),
    ] {
        fake.set(Behavior::Status(upstream));
        let resp = gw.chat(gw.key(), "fake-model").await;
        assert_eq!(resp.status(), status, "upstream {upstream}");
        if upstream == 429 {
            assert_eq!(resp.headers()["retry-after"], "7", "the provider's retry-after is kept");
        }
        let text = resp.text().await.unwrap();
        assert!(!text.contains(UPSTREAM_SECRET_IN_ERRORS), "upstream error text leaked: {text}");
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["error"]["code"], code);
    }
    let logs = gw.logs_once("provider refused the request").await;
    assert!(logs.contains("provider refused the request"));
    assert!(!logs.contains(UPSTREAM_SECRET_IN_ERRORS), "upstream error text must not reach the log");
}

#[tokio::test]
async fn a_silent_provider_times_out_at_first_byte() {
    let fake = FakeProvider::spawn().await;
    let gw = gateway_with(&fake).await;
    fake.set(Behavior::Hang);
    let started = Instant::now();
    let resp = gw.chat(gw.key(), "fake-model").await;
    assert_eq!(resp.status(), 504);
    assert_eq!(json(resp).await["error"]["code"], "upstream_timeout");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn huge_bodies_and_redirects_are_refused() {
    let fake = FakeProvider::spawn().await;
    let gw = gateway_with(&fake).await;
    fake.set(Behavior::HugeBody(200_000));
    let resp = gw.chat(gw.key(), "fake-model").await;
    assert_eq!(resp.status(), 502, "bodies over max_response_bytes are not relayed");

    fake.set(Behavior::Redirect);
    let calls = fake.calls();
    let resp = gw.chat(gw.key(), "fake-model").await;
    assert_eq!(resp.status(), 502, "redirects are never followed");
    assert_eq!(fake.calls(), calls + 1);
}

#[tokio::test]
async fn broken_streams_end_with_an_error_event() {
    let fake = FakeProvider::spawn().await;
    let gw = gateway_with(&fake).await;
    for (behavior, code) in [
        (Behavior::OversizedEvent, "upstream_error"),
        (Behavior::Disconnect, "upstream_error"),
        (Behavior::Stall, "upstream_timeout"),
        (Behavior::Endless, "upstream_timeout"),
    ] {
        fake.set(behavior.clone());
        let started = Instant::now();
        let resp = gw.post("/v1/chat/completions", Some(gw.key()), &chat_body("fake-model", true)).await;
        assert_eq!(resp.status(), 200, "{behavior:?}: headers were already sent");
        let text = sse_text(resp).await;
        let last = text.trim_end().rsplit("\n\n").next().unwrap_or("");
        let event: Value = serde_json::from_str(last.trim_start_matches("data: ")).unwrap_or(Value::Null);
        assert_eq!(event["error"]["code"], code, "{behavior:?}: last event was {last}");
        assert!(started.elapsed() < Duration::from_secs(6), "{behavior:?} took {:?}", started.elapsed());
    }
    // the gateway is still healthy afterwards
    fake.set(Behavior::Ok);
    assert_eq!(gw.chat(gw.key(), "fake-model").await.status(), 200);
}

#[tokio::test]
async fn an_unreachable_provider_is_a_502() {
    let fake = FakeProvider::spawn().await;
    let cfg = crate::common::upstream_config(&fake);
    drop(fake);
    let gw = crate::common::gateway().config(&cfg).env("FAKE_UPSTREAM_KEY", PROVIDER_SECRET).spawn().await;
    let resp = gw.chat(gw.key(), "fake-model").await;
    assert_eq!(resp.status(), 502);
}

/// A provider behind a private CA: reached over HTTPS once its `ca_file` is configured (whole
/// and streamed answers), refused as an unknown issuer without it, and a `ca_file` that is not
/// a PEM bundle stops the start with the file named and its content unprinted.
#[tokio::test]
async fn a_provider_behind_a_private_ca_is_reached_over_tls_with_its_ca_only() {
    let (fake, ca) = FakeProvider::spawn_tls().await.unwrap();
    assert!(fake.base_url().starts_with("https://127.0.0.1:"));
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("provider-ca.pem");
    std::fs::write(&ca_file, &ca).unwrap();
    let provider = |extra: &str| {
        format!(
            "[[providers]]\nname = \"private\"\nbase_url = \"{}\"\napi_key = \"env:FAKE_UPSTREAM_KEY\"\n{extra}\n\
             [[models]]\nname = \"private-model\"\nprovider = \"private\"\n",
            fake.base_url()
        )
    };
    let trusted = crate::common::gateway()
        .config(&provider(&format!("ca_file = \"{}\"", ca_file.display())))
        .env("FAKE_UPSTREAM_KEY", PROVIDER_SECRET)
        .spawn()
        .await;
    let resp = trusted.post("/v1/chat/completions", Some(trusted.key()), &chat_body("private-model", false)).await;
    assert_eq!(resp.status(), 200);
    let resp = trusted.post("/v1/chat/completions", Some(trusted.key()), &chat_body("private-model", true)).await;
    assert_eq!(resp.status(), 200);
    assert!(sse_text(resp).await.trim_end().ends_with("data: [DONE]"));
    assert_eq!(fake.calls(), 2);
    let seen = fake.last_request().unwrap();
    assert_eq!(seen.headers["authorization"], format!("Bearer {PROVIDER_SECRET}"), "the credential went over TLS");

    // the system's roots alone do not vouch for a private CA
    let untrusted =
        crate::common::gateway().config(&provider("")).env("FAKE_UPSTREAM_KEY", PROVIDER_SECRET).spawn().await;
    let resp = untrusted.post("/v1/chat/completions", Some(untrusted.key()), &chat_body("private-model", false)).await;
    assert_eq!(resp.status(), 502);
    assert_eq!(json(resp).await["error"]["code"], "upstream_error");
    assert_eq!(fake.calls(), 2, "no request got through");

    // not a CA bundle: refused at start, naming the file, never echoing it
    std::fs::write(&ca_file, "not a certificate: sk-should-not-echo").unwrap();
    let err = crate::common::gateway()
        .config(&provider(&format!("ca_file = \"{}\"", ca_file.display())))
        .env("FAKE_UPSTREAM_KEY", PROVIDER_SECRET)
        .start_error()
        .await;
    assert!(err.contains("ca_file") && !err.contains("sk-should-not-echo"), "{err}");
}

/// A provider's whole answer that is not JSON cannot be checked by the output guardrail: it is
/// refused (502), never passed through unscanned.
#[tokio::test]
async fn an_unparsable_answer_is_refused_not_passed_through() {
    let fake = FakeProvider::spawn().await;
    let gw = gateway_with(&fake).await;
    fake.set(Behavior::NotJson);
    let resp = gw.post("/v1/chat/completions", Some(gw.key()), &chat_body("fake-model", false)).await;
    assert_eq!(resp.status(), 502);
    let text = resp.text().await.unwrap();
    assert!(text.contains("\"upstream_error\"") && !text.contains("not json"), "{text}");
}
