//! The Anthropic Messages ingress end to end: `POST /v1/messages` on the real binary, served by
//! the mock and by an OpenAI-compatible upstream (translated both ways), whole and streamed,
//! and every refusal in Anthropic's error shape.

use gatehouse_testkit::{FakeProvider, REPLY_CANARY};
use serde_json::{Value, json};

use crate::common::{PROVIDER_SECRET, gateway, gateway_with, json};

async fn messages(gw: &gatehouse_testkit::TestGateway, key: Option<&str>, body: &Value) -> reqwest::Response {
    let mut req =
        gw.http.post(format!("{}/v1/messages", gw.data_url)).header("anthropic-version", "2023-06-01").json(body);
    if let Some(k) = key {
        req = req.header("x-api-key", k);
    }
    req.send().await.unwrap()
}

fn ask(model: &str, text: &str) -> Value {
    json!({"model": model, "max_tokens": 256, "messages": [{"role": "user", "content": text}]})
}

/// The (event, data) pairs of an SSE body.
fn events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .map(|f| {
            let mut event = String::new();
            let mut data = Value::Null;
            for line in f.lines() {
                if let Some(e) = line.strip_prefix("event: ") {
                    event = e.to_owned();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(d).unwrap();
                }
            }
            (event, data)
        })
        .collect()
}

#[tokio::test]
async fn the_messages_api_is_served_whole_and_streamed() {
    let gw = gateway().spawn().await;
    let resp = messages(&gw, Some(gw.key()), &ask("mock", "hello")).await;
    assert_eq!(resp.status(), 200);
    let v = json(resp).await;
    assert_eq!(
        (v["type"].as_str(), v["role"].as_str(), v["stop_reason"].as_str()),
        (Some("message"), Some("assistant"), Some("end_turn"))
    );
    assert!(v["content"][0]["text"].as_str().unwrap().contains("mock provider"), "{v}");
    assert!(v["usage"]["input_tokens"].as_u64().unwrap() > 0 && v["usage"]["output_tokens"].as_u64().unwrap() > 0);

    let mut body = ask("mock", "hello");
    body["stream"] = json!(true);
    let resp = messages(&gw, Some(gw.key()), &body).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let evs = events(&resp.text().await.unwrap());
    let names: Vec<&str> = evs.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(&names[names.len() - 2..], ["message_delta", "message_stop"]);
    let text: String = evs.iter().filter_map(|(_, d)| d["delta"]["text"].as_str()).collect();
    assert!(text.contains("mock provider"), "{text}");
    assert!(evs.iter().any(|(_, d)| d["usage"]["output_tokens"].as_u64().is_some_and(|n| n > 0)), "usage reported");
}

#[tokio::test]
async fn an_openai_compatible_model_answers_an_anthropic_client() {
    let fake = FakeProvider::spawn().await;
    let gw = gateway_with(&fake).await;
    let body = json!({
        "model": "fake-model", "max_tokens": 100, "system": "be brief",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "weather?"}]}],
        "tools": [{"name": "weather", "input_schema": {"type": "object"}}],
        "metadata": {"user_id": "u-1"},
    });
    let resp = messages(&gw, Some(gw.key()), &body).await;
    assert_eq!(resp.status(), 200);
    let v = json(resp).await;
    assert!(v["content"][0]["text"].as_str().unwrap().contains(REPLY_CANARY.trim()), "{v}");
    assert_eq!((v["type"].as_str(), v["stop_reason"].as_str()), (Some("message"), Some("end_turn")));
    // the provider was spoken to in its own format, with the provider's credential only
    let seen = fake.last_request().unwrap();
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_eq!(seen.body["model"], "upstream-model-v1");
    assert_eq!(seen.body["messages"][0], json!({"role": "system", "content": "be brief"}));
    assert_eq!(seen.body["tools"][0]["function"]["name"], "weather");
    assert_eq!((seen.body["max_completion_tokens"].clone(), seen.body["user"].clone()), (json!(100), json!("u-1")));
    assert_eq!(seen.headers["authorization"], format!("Bearer {PROVIDER_SECRET}").as_str());
    assert!(!seen.headers.contains_key("x-api-key") && !seen.headers.contains_key("anthropic-version"));

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let resp = messages(&gw, Some(gw.key()), &streamed).await;
    assert_eq!(resp.status(), 200);
    let evs = events(&resp.text().await.unwrap());
    let text: String = evs.iter().filter_map(|(_, d)| d["delta"]["text"].as_str()).collect();
    assert!(text.contains(REPLY_CANARY.trim()), "{evs:?}");
    assert_eq!(evs.last().map(|(e, _)| e.as_str()), Some("message_stop"));
}

#[tokio::test]
async fn refusals_come_in_anthropics_error_shape() {
    let gw = gateway().spawn().await;
    let refused = |status: u16, kind: &'static str| {
        move |resp: (u16, Value)| {
            assert_eq!(resp.0, status, "{}", resp.1);
            assert_eq!(
                (resp.1["type"].as_str(), resp.1["error"]["type"].as_str()),
                (Some("error"), Some(kind)),
                "{}",
                resp.1
            );
        }
    };
    let send = |key: Option<String>, body: Value| {
        let gw = &gw;
        async move {
            let r = messages(gw, key.as_deref(), &body).await;
            (r.status().as_u16(), json(r).await)
        }
    };
    let key = Some(gw.key().to_owned());
    refused(401, "authentication_error")(send(None, ask("mock", "hi")).await);
    refused(401, "authentication_error")(send(Some("gth_wrong".into()), ask("mock", "hi")).await);
    refused(404, "not_found_error")(send(key.clone(), ask("no-such-model", "hi")).await);
    let no_cap = json!({"model": "mock", "messages": [{"role": "user", "content": "hi"}]});
    let (st, v) = send(key.clone(), no_cap).await;
    refused(400, "invalid_request_error")((st, v.clone()));
    assert!(v["error"]["message"].as_str().unwrap().contains("max_tokens"), "names the field: {v}");
    let mut top_k = ask("mock", "hi");
    top_k["top_k"] = json!(5);
    let (st, v) = send(key.clone(), top_k).await;
    refused(400, "invalid_request_error")((st, v.clone()));
    assert!(v["error"]["message"].as_str().unwrap().contains("top_k"), "{v}");
    // the input guardrail applies at this door too; the refusal never echoes the prompt
    let secret = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789";
    let (st, v) = send(key.clone(), ask("mock", &format!("my key is {secret}"))).await;
    assert!(st == 400 || st == 403, "{st} {v}");
    assert_eq!(v["type"], "error");
    assert!(!v.to_string().contains(secret));
    let (st, v) = send(key, json!({"model": "mock", "max_tokens": 5, "messages": "not a list"})).await;
    refused(400, "invalid_request_error")((st, v));
}
