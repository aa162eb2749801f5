use gatehouse_testkit::{FakeProvider, GatewayBuilder, TestGateway};
use reqwest::Method;
use serde_json::{Value, json};

pub const PROVIDER_SECRET: &str = "sk-provider-secret-for-tests-000";

pub fn gateway() -> GatewayBuilder {
    TestGateway::builder(env!("CARGO_BIN_EXE_gatehouse"))
}

/// A config with one OpenAI-compatible provider pointing at `fake`, with tight bounds so
/// failure tests finish fast.
pub fn upstream_config(fake: &FakeProvider) -> String {
    format!(
        r#"
[[providers]]
name = "fake"
kind = "openai_compatible"
base_url = "{}"
api_key = "env:FAKE_UPSTREAM_KEY"
first_byte_timeout_ms = 1500
idle_timeout_ms = 800
max_stream_duration_ms = 2500
max_response_bytes = 65536

[[models]]
name = "fake-model"
provider = "fake"
provider_model = "upstream-model-v1"
aliases = ["fast"]

[[models]]
name = "fake-embed"
provider = "fake"
kind = "embedding"
"#,
        fake.base_url()
    )
}

pub async fn gateway_with(fake: &FakeProvider) -> TestGateway {
    gateway().config(&upstream_config(fake)).env("FAKE_UPSTREAM_KEY", PROVIDER_SECRET).spawn().await
}

pub async fn json(resp: reqwest::Response) -> serde_json::Value {
    resp.json().await.unwrap()
}

pub async fn call(gw: &TestGateway, token: &str, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut rb = gw.http.request(method, format!("{}{path}", gw.admin_url)).bearer_auth(token);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let resp = rb.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A control-plane call as the platform root (the bootstrap admin token).
pub async fn as_root(gw: &TestGateway, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    call(gw, &root(gw), method, path, body).await
}

pub fn root(gw: &TestGateway) -> String {
    gw.admin_token.clone().unwrap()
}

pub async fn new_org(gw: &TestGateway, name: &str) -> String {
    let (st, v) = as_root(gw, Method::POST, "/admin/v1/orgs", Some(json!({"name": name}))).await;
    assert_eq!(st, 201, "{v}");
    v["id"].as_str().unwrap().to_owned()
}

pub async fn mint(gw: &TestGateway, as_token: &str, role: &str, org: Option<&str>) -> (u16, Value) {
    let mut body = json!({"name": format!("{role}-token"), "role": role});
    if let Some(o) = org {
        body["org"] = json!(o);
    }
    call(gw, as_token, Method::POST, "/admin/v1/tokens", Some(body)).await
}

/// Sends `request` (head and any body, as raw bytes) on a fresh connection to `base` and
/// returns the status and body of the answer (the connection is read until the server closes
/// it or 10 s pass).
pub async fn raw(base: &str, request: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sock = tokio::net::TcpStream::connect(base.trim_start_matches("http://")).await.unwrap();
    sock.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), sock.read_to_end(&mut buf)).await;
    parse_response(&buf)
}

pub fn parse_response(buf: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(buf);
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// What an OpenAI client makes of a stream: text, tool-call arguments, finish reason, usage.
pub fn openai_stream(body: &str) -> (String, String, String, serde_json::Value) {
    let (mut text, mut args, mut finish, mut usage) =
        (String::new(), String::new(), String::new(), serde_json::Value::Null);
    for line in body.lines().filter_map(|l| l.strip_prefix("data: ")).filter(|l| *l != "[DONE]") {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if !v["usage"].is_null() {
            usage = v["usage"].clone();
        }
        let Some(c) = v["choices"].get(0) else { continue };
        text.push_str(c["delta"]["content"].as_str().unwrap_or_default());
        for t in c["delta"]["tool_calls"].as_array().into_iter().flatten() {
            args.push_str(t["function"]["arguments"].as_str().unwrap_or_default());
        }
        if let Some(f) = c["finish_reason"].as_str() {
            finish = f.to_owned();
        }
    }
    (text, args, finish, usage)
}

/// The Redis the shared-store tests use.
pub fn redis_url() -> String {
    std::env::var("GATEHOUSE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".to_owned())
}

/// `gatehouse validate` on a config text: whether it passed, and everything it printed.
pub fn validate(toml: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.toml");
    std::fs::write(&path, toml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["validate", path.to_str().unwrap()])
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

/// `gatehouse <args>` as an operator runs it beside the gateway, with only PATH and `env`
/// set: its exit code and everything it printed.
pub fn cli(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}
