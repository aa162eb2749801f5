use gatehouse_testkit::{FakeProvider, GatewayBuilder, TestGateway};

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
