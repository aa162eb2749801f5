//! Test and benchmark harness. [`FakeProvider`] is a real HTTP server on an ephemeral port
//! that speaks OpenAI's API (JSON and SSE) and can be scripted to misbehave; on the same port
//! it speaks Anthropic's Messages API, Azure OpenAI's deployment URLs, Gemini's
//! `generateContent` and Bedrock's SigV4-signed Converse (event-stream framed), each in its own wire format and scripted by the same behaviour
//! ([`FakeAnthropic`] is a Messages-only fake with its own script); [`TestGateway`]
//! starts the real `gatehouse` binary on ephemeral ports with its own data dir; [`stores`]
//! gives each test a fresh SQLite file or PostgreSQL schema; [`oidc`] runs a real OpenID
//! Provider (node `oidc-provider`).
//!
//! A dev-dependency only: nothing in the product depends on this crate.

#![expect(clippy::panic, reason = "a test harness whose setup fails must stop the test loudly")]

mod fake;
mod fake_anthropic;
mod fake_bedrock;
mod fake_gemini;
mod fake_mcp;
mod gateway;
pub mod oauth;
pub mod oidc;
pub mod pki;
pub mod proxy;
pub mod stores;
#[expect(
    clippy::expect_used,
    reason = "a test authenticator: a key it cannot make or a value it cannot encode is a broken test"
)]
pub mod webauthn;

pub use fake::{Behavior, FAKE_REPLY, FakeProvider, REPLY_CANARY, Recorded, UPSTREAM_SECRET_IN_ERRORS};
pub use fake_anthropic::{ANTHROPIC_REPLY, ANTHROPIC_USAGE, AnthropicBehavior, FakeAnthropic};
pub use fake_bedrock::{
    BEDROCK_ACCESS_KEY_ID, BEDROCK_SECRET_ACCESS_KEY, BEDROCK_TENANT_ACCESS_KEY_ID, BEDROCK_TENANT_SECRET_ACCESS_KEY,
};
pub use gateway::{GatewayBuilder, TestGateway};

/// Polls `f` every 20 ms until it returns true or `within` passes. Tests wait on conditions,
/// never on bare sleeps.
pub async fn eventually<F, Fut>(within: std::time::Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
