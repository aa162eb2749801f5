//! End-to-end tests: the real `gatehouse` binary on ephemeral ports, real HTTP, a real fake
//! upstream. Each test gets its own data dir.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::print_stderr,
    reason = "test harness code: a failed setup must fail the test loudly"
)]

mod admin;
mod anthropic;
mod audit;
mod auth;
mod backup;
mod bad_input;
mod browser_apps;
mod budgets;
mod cache;
mod capabilities;
mod common;
mod config;
mod console;
mod console_oauth;
mod credentials;
mod doctor;
mod guardrails;
mod identity;
mod lifecycle;
mod limits;
mod master_key;
mod matrix;
mod mcp;
mod oidc;
mod postgres;
mod providers;
mod quickstart;
mod routing;
mod telemetry;
mod tls;
mod upstream;
mod webhooks;
