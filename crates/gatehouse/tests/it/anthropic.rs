//! Anthropic's Messages API end to end, both ways: `POST /v1/messages` on the real binary,
//! served by the mock and by an OpenAI-compatible upstream; an `anthropic` provider (a fake
//! that speaks the real wire format) reached by OpenAI clients and by Anthropic clients;
//! whole and streamed, tool calls, and every refusal in the caller's error shape.

use gatehouse_testkit::{
    ANTHROPIC_REPLY, ANTHROPIC_USAGE, AnthropicBehavior, FakeAnthropic, FakeProvider, REPLY_CANARY,
};
use serde_json::{Value, json};

use crate::common::{PROVIDER_SECRET, gateway, gateway_with, json, openai_stream};

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

const ANTHROPIC_SECRET: &str = "sk-ant-fake-provider-key-5f0a";

fn claude_config(fake: &FakeAnthropic) -> String {
    format!(
        r#"
[[providers]]
name = "claude"
kind = "anthropic"
base_url = "{}"
api_key = "env:ANTHROPIC_KEY"
first_byte_timeout_ms = 1500
idle_timeout_ms = 800
max_stream_duration_ms = 2500

[[models]]
name = "claude-x"
provider = "claude"
provider_model = "claude-sonnet-test"
"#,
        fake.base_url()
    )
}

async fn claude_gateway(fake: &FakeAnthropic) -> gatehouse_testkit::TestGateway {
    gateway().config(&claude_config(fake)).env("ANTHROPIC_KEY", ANTHROPIC_SECRET).spawn().await
}

/// A fake Anthropic provider that accepts the gateway's key, and a gateway routing `claude-x`
/// to it.
async fn claude() -> (FakeAnthropic, gatehouse_testkit::TestGateway) {
    let fake = FakeAnthropic::spawn(ANTHROPIC_SECRET).await;
    let gw = claude_gateway(&fake).await;
    (fake, gw)
}

#[tokio::test]
async fn openai_clients_reach_an_anthropic_model() {
    let (fake, gw) = claude().await;
    let key = gw.key().to_owned();
    let chat = |stream: bool| {
        json!({"model": "claude-x", "stream": stream, "messages": [
            {"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]})
    };
    let resp = gw.post("/v1/chat/completions", Some(&key), &chat(false)).await;
    assert_eq!(resp.status(), 200);
    let v = json(resp).await;
    assert_eq!(v["choices"][0]["message"]["content"], ANTHROPIC_REPLY);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let (input, read, write, output) = ANTHROPIC_USAGE;
    assert_eq!(v["usage"]["prompt_tokens"], input + read + write, "cached input counts as input: {v}");
    assert_eq!(
        (v["usage"]["completion_tokens"].clone(), v["usage"]["prompt_tokens_details"]["cached_tokens"].clone()),
        (json!(output), json!(read))
    );
    // the provider saw its own format, its own credential, and nothing of the client's
    let seen = fake.last_request().unwrap();
    assert_eq!(seen.headers["x-api-key"], ANTHROPIC_SECRET);
    assert!(seen.headers.contains_key("anthropic-version") && !seen.headers.contains_key("authorization"));
    assert_eq!(seen.body["model"], "claude-sonnet-test");
    assert_eq!((seen.body["system"].clone(), seen.body["max_tokens"].clone()), (json!("be brief"), json!(4096)));
    assert_eq!(seen.body["messages"], json!([{"role": "user", "content": [{"type": "text", "text": "hello"}]}]));

    let resp = gw.post("/v1/chat/completions", Some(&key), &chat(true)).await;
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
    let (text, _, finish, usage) = openai_stream(&body);
    assert_eq!((text.as_str(), finish.as_str()), (ANTHROPIC_REPLY, "stop"));
    assert_eq!(usage["prompt_tokens"], input + read + write);

    // a tool call, whole and streamed
    fake.set(AnthropicBehavior::ToolUse(r#"{"q":"weather in Oslo"}"#.to_owned()));
    let v = json(gw.post("/v1/chat/completions", Some(&key), &chat(false)).await).await;
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls", "{v}");
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!((call["id"].as_str(), call["function"]["name"].as_str()), (Some("toolu_fake1"), Some("lookup")));
    assert_eq!(
        serde_json::from_str::<Value>(call["function"]["arguments"].as_str().unwrap()).unwrap(),
        json!({"q": "weather in Oslo"})
    );
    let (_, args, finish, _) =
        openai_stream(&gw.post("/v1/chat/completions", Some(&key), &chat(true)).await.text().await.unwrap());
    assert_eq!(finish, "tool_calls");
    assert_eq!(serde_json::from_str::<Value>(&args).unwrap(), json!({"q": "weather in Oslo"}));
}

#[tokio::test]
async fn what_an_anthropic_model_cannot_do_is_refused_and_its_failures_are_mapped() {
    let (fake, gw) = claude().await;
    let key = gw.key().to_owned();
    let hello = |extra: Value| {
        let mut b = json!({"model": "claude-x", "messages": [{"role": "user", "content": "hello"}]});
        b.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        b
    };
    let before = fake.last_request().map(|r| r.raw);
    for (extra, param) in [
        (json!({"logit_bias": {"1": 5}}), "logit_bias"),
        (json!({"n": 2}), "n"),
        (json!({"temperature": 1.7}), "temperature"),
    ] {
        let resp = gw.post("/v1/chat/completions", Some(&key), &hello(extra)).await;
        assert_eq!(resp.status(), 400);
        let v = json(resp).await;
        assert_eq!(
            (v["error"]["code"].as_str(), v["error"]["param"].as_str()),
            (Some("invalid_request"), Some(param)),
            "{v}"
        );
    }
    assert_eq!(fake.last_request().map(|r| r.raw), before, "nothing was sent");
    for (status, want) in [(529, 502), (429, 429), (401, 502)] {
        fake.set(AnthropicBehavior::Status(status));
        let resp = gw.post("/v1/chat/completions", Some(&key), &hello(json!({}))).await;
        assert_eq!(resp.status(), want, "provider {status}");
        assert!(!resp.text().await.unwrap().contains("scripted failure"), "the provider's body is not passed on");
    }
    // a wrong provider key is the provider's 401, not the caller's
    let wrong = FakeAnthropic::spawn("another-key").await;
    let gw2 = claude_gateway(&wrong).await;
    assert_eq!(gw2.post("/v1/chat/completions", Some(gw2.key()), &hello(json!({}))).await.status(), 502);
}

#[tokio::test]
async fn an_anthropic_client_reaches_an_anthropic_model_through_the_chain_with_all_it_can_say() {
    let (fake, gw) = claude().await;
    let body = json!({"model": "claude-x", "max_tokens": 64, "messages": [{"role": "user", "content": "hello"}]});
    let v = json(messages(&gw, Some(gw.key()), &body).await).await;
    assert_eq!((v["type"].as_str(), v["content"][0]["text"].as_str()), (Some("message"), Some(ANTHROPIC_REPLY)), "{v}");
    assert_eq!(fake.last_request().unwrap().body["max_tokens"], 64);
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let evs = events(&messages(&gw, Some(gw.key()), &streamed).await.text().await.unwrap());
    let text: String = evs.iter().filter_map(|(_, d)| d["delta"]["text"].as_str()).collect();
    assert_eq!(text, ANTHROPIC_REPLY);
    assert_eq!(evs.last().map(|(e, _)| e.as_str()), Some("message_stop"));

    // what only the Messages API can say reaches the Anthropic model unchanged...
    let own = json!({"model": "claude-x", "max_tokens": 64, "top_k": 5, "service_tier": "auto",
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hello", "cache_control": {"type": "ephemeral"}}]}]});
    assert_eq!(messages(&gw, Some(gw.key()), &own).await.status(), 200);
    let sent = fake.last_request().unwrap().body;
    for field in ["top_k", "service_tier", "thinking"] {
        assert_eq!(sent[field], own[field], "{field}");
    }
    assert_eq!(sent["model"], "claude-sonnet-test");
    assert_eq!(sent["messages"][0]["content"][0]["cache_control"], json!({"type": "ephemeral"}));
    // ...and is refused by name for a model of another family, before it is spent
    let mut to_mock = own.clone();
    to_mock["model"] = json!("mock");
    let resp = messages(&gw, Some(gw.key()), &to_mock).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(json(resp).await["error"]["message"].as_str().map(|m| m.ends_with("(top_k)")), Some(true));
}
