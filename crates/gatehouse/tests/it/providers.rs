//! Provider kinds on the wire (issue #17): `azure_openai` and `gemini` reached through the real
//! binary over real HTTP, against the fake provider's doors that speak each wire format. What
//! each provider is sent (URL, credential header, body), what the caller gets back (whole,
//! streamed, tool calls, usage), and how the provider's failures are mapped. The SDK x provider
//! matrix runs in the Python suite (`tests/python/test_provider_matrix.py`).

use gatehouse_testkit::{BEDROCK_ACCESS_KEY_ID, BEDROCK_SECRET_ACCESS_KEY, Behavior, FakeProvider, TestGateway};
use serde_json::{Value, json};

use crate::common::{PROVIDER_SECRET, gateway, json, openai_stream};

fn config(fake: &FakeProvider, azure_auth: &str) -> String {
    let addr = fake.addr();
    format!(
        r#"
[[providers]]
name = "azure"
kind = "azure_openai"
base_url = "http://{addr}"
api_key = "env:PROVIDER_KEY"
{azure_auth}
first_byte_timeout_ms = 1500

[[providers]]
name = "google"
kind = "gemini"
base_url = "http://{addr}/v1beta"
api_key = "env:PROVIDER_KEY"
first_byte_timeout_ms = 1500

[[models]]
name = "gpt-azure"
provider = "azure"
provider_model = "prod-gpt4o"

[[models]]
name = "gemini-flash"
provider = "google"
provider_model = "gemini-2.5-flash"
"#
    )
}

async fn spawn(fake: &FakeProvider, azure_auth: &str) -> TestGateway {
    gateway().config(&config(fake, azure_auth)).env("PROVIDER_KEY", PROVIDER_SECRET).spawn().await
}

async fn chat(gw: &TestGateway, body: &Value) -> reqwest::Response {
    gw.http.post(format!("{}/v1/chat/completions", gw.data_url)).bearer_auth(gw.key()).json(body).send().await.unwrap()
}

fn ask(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "max_tokens": 50, "messages": [{"role": "user", "content": "hello"}]})
}

/// A tool-call turn through the OpenAI door, whole or streamed, with the fake scripted to
/// call `lookup`: the text, the call's arguments and the finish reason the client sees.
async fn tool_turn(gw: &TestGateway, fake: &FakeProvider, model: &str, stream: bool) -> (String, Value, String) {
    fake.set(Behavior::Reply { text: "Checking.".into(), tool_args: Some("{\"q\":\"Oslo\"}".into()), chunk: 3 });
    let mut body = ask(model, stream);
    body["tools"] = json!([{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]);
    let resp = chat(gw, &body).await;
    assert_eq!(resp.status(), 200);
    let (text, args, finish) = if stream {
        let (t, a, f, _) = openai_stream(&resp.text().await.unwrap());
        (t, a, f)
    } else {
        let v = json(resp).await;
        let m = &v["choices"][0]["message"];
        assert_eq!(m["tool_calls"][0]["function"]["name"], "lookup");
        let args = m["tool_calls"][0]["function"]["arguments"].as_str().unwrap().to_owned();
        (m["content"].as_str().unwrap().to_owned(), args, v["choices"][0]["finish_reason"].as_str().unwrap().to_owned())
    };
    (text, serde_json::from_str(&args).unwrap(), finish)
}

#[tokio::test]
async fn azure_openai_gets_deployment_urls_an_api_version_and_its_key_header() {
    let fake = FakeProvider::spawn().await;
    let gw = spawn(&fake, "").await;
    let resp = chat(&gw, &ask("gpt-azure", false)).await;
    assert_eq!(resp.status(), 200);
    assert!(json(resp).await["choices"][0]["message"]["content"].as_str().unwrap().contains("fake provider"));
    let seen = fake.last_request().unwrap();
    assert_eq!(seen.path, "/v1/chat/completions", "the Azure door hands on to the OpenAI answer");
    assert_eq!(seen.headers["api-key"], PROVIDER_SECRET);
    assert!(!seen.headers.contains_key("authorization"), "one credential, in Azure's header");

    let resp = chat(&gw, &ask("gpt-azure", true)).await;
    assert_eq!(resp.status(), 200);
    let (text, _, _, usage) = openai_stream(&resp.text().await.unwrap());
    assert!(text.contains("tok0"), "{text}");
    assert_eq!(usage["prompt_tokens"], 7);
    gw.stop().await;

    // an Entra ID token goes as a bearer instead
    let gw = spawn(&fake, "auth = \"bearer\"").await;
    assert_eq!(chat(&gw, &ask("gpt-azure", false)).await.status(), 200);
    let seen = fake.last_request().unwrap();
    assert_eq!(seen.headers["authorization"], format!("Bearer {PROVIDER_SECRET}"));
    assert!(!seen.headers.contains_key("api-key"));
}

/// The exact request-target each call sent, as a listener of our own saw it (the fake routes
/// by pattern and decodes).
#[tokio::test]
async fn model_names_stay_in_their_percent_encoded_url_segment() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(tokio::sync::Mutex::new(Vec::<String>::new()));
    let record = seen.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let record = record.clone();
        async move {
            record.lock().await.push(uri.to_string());
            axum::http::StatusCode::SERVICE_UNAVAILABLE
        }
    });
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let cfg = format!(
        r#"
[[providers]]
name = "azure"
kind = "azure_openai"
base_url = "http://{addr}"
api_key = "env:K"
api_version = "2025-04-01-preview"

[[providers]]
name = "google"
kind = "gemini"
base_url = "http://{addr}/v1beta"
api_key = "env:K"

[[models]]
name = "a"
provider = "azure"
provider_model = "my deploy/../x"

[[models]]
name = "g"
provider = "google"
provider_model = "tuned/../../x?key=1"

[[providers]]
name = "aws"
kind = "bedrock"
base_url = "http://{addr}"
region = "eu-west-1"
api_key = "env:K"

[[models]]
name = "b"
provider = "aws"
provider_model = "arn:aws:bedrock:eu-west-1:123:inference-profile/eu.anthropic.claude-v1:0"
"#
    );
    let gw = gateway().config(&cfg).env("K", PROVIDER_SECRET).spawn().await;
    for model in ["a", "g", "b"] {
        assert_eq!(chat(&gw, &ask(model, false)).await.status(), 502, "the provider's 503 is its failure");
    }
    assert_eq!(
        *seen.lock().await,
        [
            "/openai/deployments/my%20deploy%2F..%2Fx/chat/completions?api-version=2025-04-01-preview",
            "/v1beta/models/tuned%2F..%2F..%2Fx%3Fkey=1:generateContent",
            "/model/arn%3Aaws%3Abedrock%3Aeu-west-1%3A123%3Ainference-profile%2Feu.anthropic.claude-v1%3A0/converse",
        ]
    );
    server.abort();
}

#[tokio::test]
async fn gemini_answers_openai_clients_whole_and_streamed_with_usage() {
    let fake = FakeProvider::spawn().await;
    let gw = spawn(&fake, "").await;
    let resp = chat(&gw, &ask("gemini-flash", false)).await;
    assert_eq!(resp.status(), 200);
    let v = json(resp).await;
    assert!(v["choices"][0]["message"]["content"].as_str().unwrap().contains("fake provider"), "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!((v["usage"]["prompt_tokens"].as_u64(), v["usage"]["completion_tokens"].as_u64()), (Some(7), Some(5)));
    let seen = fake.last_request().unwrap();
    assert_eq!(seen.path, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(seen.headers["x-goog-api-key"], PROVIDER_SECRET, "the key goes in a header, never the URL");
    assert!(!seen.headers.contains_key("authorization"));
    assert_eq!(seen.body["contents"][0], json!({"role": "user", "parts": [{"text": "hello"}]}));
    assert_eq!(seen.body["generationConfig"]["maxOutputTokens"], 50);

    let resp = chat(&gw, &ask("gemini-flash", true)).await;
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    assert!(body.ends_with("data: [DONE]\n\n"), "{body}");
    let (text, _, finish, usage) = openai_stream(&body);
    assert!(text.starts_with("reply-canary-5d1e tok0"), "{text}");
    assert_eq!(finish, "stop");
    assert_eq!(usage["completion_tokens"], 8);
    assert_eq!(fake.last_request().unwrap().path, "/v1beta/models/gemini-2.5-flash:streamGenerateContent");
}

#[tokio::test]
async fn gemini_tool_calls_round_trip_and_what_it_cannot_do_is_refused() {
    let fake = FakeProvider::spawn().await;
    let gw = spawn(&fake, "").await;
    for stream in [false, true] {
        let turn = tool_turn(&gw, &fake, "gemini-flash", stream).await;
        assert_eq!(turn, ("Checking.".to_owned(), json!({"q": "Oslo"}), "tool_calls".to_owned()));
    }
    // the tool's answer goes back by the call's name
    fake.set(Behavior::Ok);
    let mut body = ask("gemini-flash", false);
    body["tools"] = json!([{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]);
    body["messages"] = json!([{"role": "user", "content": "hello"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_0", "type": "function",
            "function": {"name": "lookup", "arguments": "{\"q\":\"Oslo\"}"}}]},
        {"role": "tool", "tool_call_id": "call_0", "content": "rain"}]);
    assert_eq!(chat(&gw, &body).await.status(), 200);
    let sent = fake.last_request().unwrap().body;
    assert_eq!(sent["contents"][2]["parts"][0]["functionResponse"]["name"], "lookup");

    let calls = fake.calls();
    let mut seeded = ask("gemini-flash", false);
    seeded["seed"] = json!(7);
    let resp = chat(&gw, &seeded).await;
    assert_eq!(resp.status(), 400);
    let v = json(resp).await;
    assert_eq!(
        (v["error"]["type"].as_str(), v["error"]["param"].as_str()),
        (Some("invalid_request_error"), Some("seed"))
    );
    assert_eq!(fake.calls(), calls, "a refused request never reaches the provider");

    // refused at the route gate, before limits: a key allowed one request a minute still has it
    let (id, key) = gw.create_key(json!({"name": "one-a-minute"})).await;
    let limits = json!({"rpm": 1});
    assert!(
        gw.admin(reqwest::Method::PUT, &format!("/admin/v1/keys/{id}/limits"), Some(&limits))
            .await
            .status()
            .is_success()
    );
    let send =
        |body: Value| gw.http.post(format!("{}/v1/chat/completions", gw.data_url)).bearer_auth(&key).json(&body).send();
    assert_eq!(send(seeded.clone()).await.unwrap().status(), 400);
    assert_eq!(send(ask("gemini-flash", false)).await.unwrap().status(), 200, "the refusal spent nothing");
    assert_eq!(send(ask("gemini-flash", false)).await.unwrap().status(), 429, "the limit holds");
}

#[tokio::test]
async fn gemini_failures_are_mapped_without_their_bodies() {
    let fake = FakeProvider::spawn().await;
    let gw = spawn(&fake, "").await;
    fake.set(Behavior::Status(429));
    let resp = chat(&gw, &ask("gemini-flash", false)).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    let text = resp.text().await.unwrap();
    assert!(!text.contains("sk-upstream"), "the provider's body is never copied: {text}");
    fake.set(Behavior::Status(503));
    assert_eq!(chat(&gw, &ask("gemini-flash", true)).await.status(), 502);
}

#[tokio::test]
async fn count_tokens_estimates_for_visible_models_only() {
    let fake = FakeProvider::spawn().await;
    let gw = spawn(&fake, "").await;
    let count = |model: &str, key: &str| {
        let body = json!({"model": model, "system": "be brief", "messages": [{"role": "user", "content": "hello there, how are you today?"}]});
        gw.http
            .post(format!("{}/v1/messages/count_tokens", gw.data_url))
            .header("x-api-key", key)
            .header("anthropic-version", "2023-06-01")
            .json(&body)
            .send()
    };
    let calls = fake.calls();
    let resp = count("gemini-flash", gw.key()).await.unwrap();
    assert_eq!(resp.status(), 200);
    let n = json(resp).await["input_tokens"].as_u64().unwrap();
    assert!((8..=40).contains(&n), "{n}");
    assert_eq!(fake.calls(), calls, "counting reaches no provider");
    let resp = count("no-such-model", gw.key()).await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(json(resp).await["error"]["type"], "not_found_error");
    let resp = count("mock", "gth_not_a_key").await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(json(resp).await["error"]["type"], "authentication_error");
}

fn bedrock_config(fake: &FakeProvider, session: bool) -> String {
    let token = if session { "aws_session_token = \"env:AWS_TOKEN\"\n" } else { "" };
    format!(
        r#"
[[providers]]
name = "aws"
kind = "bedrock"
base_url = "http://{}"
region = "eu-west-1"
aws_access_key_id = "env:AWS_ID"
aws_secret_access_key = "env:AWS_SECRET"
{token}first_byte_timeout_ms = 1500

[[models]]
name = "claude-bedrock"
provider = "aws"
provider_model = "anthropic.claude-3-5-sonnet-20240620-v1:0"
"#,
        fake.addr()
    )
}

async fn bedrock(fake: &FakeProvider, secret: &str, session: bool) -> TestGateway {
    gateway()
        .config(&bedrock_config(fake, session))
        .env("AWS_ID", BEDROCK_ACCESS_KEY_ID)
        .env("AWS_SECRET", secret)
        .env("AWS_TOKEN", "session-token-for-tests")
        .spawn()
        .await
}

#[tokio::test]
async fn bedrock_answers_signed_requests_whole_and_streamed_with_tools() {
    let fake = FakeProvider::spawn().await;
    let gw = bedrock(&fake, BEDROCK_SECRET_ACCESS_KEY, false).await;
    let resp = chat(&gw, &ask("claude-bedrock", false)).await;
    assert_eq!(resp.status(), 200, "the fake verified the SigV4 signature");
    let v = json(resp).await;
    assert!(v["choices"][0]["message"]["content"].as_str().unwrap().contains("fake provider"), "{v}");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["model"], "anthropic.claude-3-5-sonnet-20240620-v1:0");
    assert_eq!((v["usage"]["prompt_tokens"].as_u64(), v["usage"]["completion_tokens"].as_u64()), (Some(7), Some(5)));
    let seen = fake.last_request().unwrap();
    assert_eq!(seen.path, "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse");
    let auth = seen.headers["authorization"].to_str().unwrap();
    assert!(
        auth.starts_with(&format!("AWS4-HMAC-SHA256 Credential={BEDROCK_ACCESS_KEY_ID}/"))
            && auth.contains("/eu-west-1/bedrock/aws4_request")
    );
    assert!(!format!("{:?}", seen.headers).contains(BEDROCK_SECRET_ACCESS_KEY), "the secret signs, it is never sent");
    assert_eq!(seen.body["inferenceConfig"]["maxTokens"], 50);

    let resp = chat(&gw, &ask("claude-bedrock", true)).await;
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    assert!(body.ends_with("data: [DONE]\n\n"), "{body}");
    let (text, _, finish, usage) = openai_stream(&body);
    assert!(text.starts_with("reply-canary-5d1e tok0"), "{text}");
    assert_eq!((finish.as_str(), usage["completion_tokens"].as_u64()), ("stop", Some(8)));
    assert_eq!(fake.last_request().unwrap().path, "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream");

    for stream in [false, true] {
        let turn = tool_turn(&gw, &fake, "claude-bedrock", stream).await;
        assert_eq!(turn, ("Checking.".to_owned(), json!({"q": "Oslo"}), "tool_calls".to_owned()));
    }
}

#[tokio::test]
async fn bedrock_signatures_carry_session_tokens_and_a_wrong_key_fails_closed() {
    let fake = FakeProvider::spawn().await;
    let gw = bedrock(&fake, BEDROCK_SECRET_ACCESS_KEY, true).await;
    assert_eq!(chat(&gw, &ask("claude-bedrock", false)).await.status(), 200);
    assert_eq!(fake.last_request().unwrap().headers["x-amz-security-token"], "session-token-for-tests");
    gw.stop().await;

    let gw = bedrock(&fake, "not-the-secret", false).await;
    let resp = chat(&gw, &ask("claude-bedrock", false)).await;
    assert_eq!(resp.status(), 502, "the provider refusing our credential is the provider's failure");
    let text = resp.text().await.unwrap();
    assert!(!text.contains("sk-upstream") && !text.contains("not-the-secret"), "{text}");
    fake.set(Behavior::Status(429));
    let gw2 = bedrock(&fake, BEDROCK_SECRET_ACCESS_KEY, false).await;
    assert_eq!(chat(&gw2, &ask("claude-bedrock", true)).await.status(), 429);
}

#[tokio::test]
async fn an_orgs_stored_aws_key_pair_signs_its_bedrock_requests() {
    let fake = FakeProvider::spawn().await;
    let gw = bedrock(&fake, BEDROCK_SECRET_ACCESS_KEY, false).await;
    let (_, orgs) = crate::common::as_root(&gw, reqwest::Method::GET, "/admin/v1/orgs", None).await;
    let org = orgs["data"][0]["id"].as_str().unwrap().to_owned();
    let store = |secret: String| {
        let (gw, org) = (&gw, org.clone());
        async move {
            let body = json!({"provider": "aws", "secret": secret, "org": org});
            crate::common::as_root(gw, reqwest::Method::POST, "/admin/v1/credentials", Some(body)).await
        }
    };
    // not an AWS key pair: refused when stored, not by AWS later
    let (st, v) = store("sk-not-an-aws-key".into()).await;
    assert_eq!((st, v["error"]["param"].clone()), (400, json!("secret")));
    let pair = format!(
        "{}:{}",
        gatehouse_testkit::BEDROCK_TENANT_ACCESS_KEY_ID,
        gatehouse_testkit::BEDROCK_TENANT_SECRET_ACCESS_KEY
    );
    assert_eq!(store(pair).await.0, 201);
    let signed_by = |id: &'static str| {
        let (gw, fake) = (&gw, &fake);
        async move {
            chat(gw, &ask("claude-bedrock", false)).await.status() == 200
                && fake.last_request().is_some_and(|r| {
                    r.headers["authorization"].to_str().unwrap_or_default().contains(&format!("Credential={id}/"))
                })
        }
    };
    assert!(
        gatehouse_testkit::eventually(std::time::Duration::from_secs(10), || signed_by(
            gatehouse_testkit::BEDROCK_TENANT_ACCESS_KEY_ID
        ))
        .await,
        "the org's own key pair signs (and the fake verified the signature)"
    );
    let seen = format!("{:?}", fake.last_request().unwrap().headers);
    assert!(!seen.contains(gatehouse_testkit::BEDROCK_TENANT_SECRET_ACCESS_KEY), "the secret signs, it is never sent");
}

/// The output guardrail sees every provider's answer after its family's decoder: an email a
/// provider writes is redacted, whole and streamed, whichever API family wrote it.
#[tokio::test]
async fn output_guardrails_hold_for_every_provider_family() {
    let fake = FakeProvider::spawn().await;
    let addr = fake.addr();
    let cfg = format!(
        r#"
[guardrails]
detectors = {{ pii = {{ output = "redact" }} }}

[[providers]]
name = "claude"
kind = "anthropic"
base_url = "http://{addr}/v1"
api_key = "env:PROVIDER_KEY"

[[providers]]
name = "google"
kind = "gemini"
base_url = "http://{addr}/v1beta"
api_key = "env:PROVIDER_KEY"

[[providers]]
name = "aws"
kind = "bedrock"
base_url = "http://{addr}"
region = "us-east-1"
api_key = "env:PROVIDER_KEY"

[[models]]
name = "m-anthropic"
provider = "claude"

[[models]]
name = "m-gemini"
provider = "google"

[[models]]
name = "m-bedrock"
provider = "aws"
"#
    );
    let gw = gateway().config(&cfg).env("PROVIDER_KEY", PROVIDER_SECRET).spawn().await;
    let leak = "jane.doe@example.com";
    fake.set(Behavior::Reply { text: format!("Write to {leak} today, she knows."), tool_args: None, chunk: 5 });
    for model in ["m-anthropic", "m-gemini", "m-bedrock"] {
        let v = json(chat(&gw, &ask(model, false)).await).await;
        let text = v["choices"][0]["message"]["content"].as_str().unwrap_or_default().to_owned();
        assert!(text.starts_with("Write to ") && !text.contains(leak), "{model}: {text}");
        let body = chat(&gw, &ask(model, true)).await.text().await.unwrap();
        let (text, _, finish, _) = openai_stream(&body);
        assert!(text.starts_with("Write to ") && !text.contains(leak) && finish == "stop", "{model}: {body}");
    }
}
