//! Gatehouse configuration: parse, don't validate.
//!
//! `Raw*` types mirror the TOML file and reject unknown fields; [`Config::from_toml`] turns
//! them into validated types, collecting every problem with its path. Errors name the field
//! and the rule, never the value (a misplaced secret must not end up in a log).
//!
//! Static settings ([`ServerConfig`]) are read once at start. The dynamic part ([`Policy`])
//! may be reloaded; building and swapping it is the binary's job. This crate does no I/O
//! except reading a config file or a `file:` secret reference when asked to.

pub mod budgets;
pub mod console;
mod error;
pub mod mcp;
pub mod oauth;
pub mod oidc;
mod raw;
pub mod redis;
mod secret;
pub mod tls;
mod validate;

pub use error::{ConfigError, Issue, SecretError};
pub use secret::{EnvLookup, SecretRef};
pub use validate::{
    AuditFailure, AuditSettings, AwsCredentials, AwsKeys, CacheSettings, Config, DataPlaneAudit, DeploymentConfig,
    LogFormat, MAX_CACHE_TTL_SECONDS, MAX_DEPLOYMENTS, MOCK_PROVIDER, ModelConfig, ModelKind, Policy, ProviderConfig,
    ProviderKind, RequestLimits, ServerConfig, StoreUrl, TelemetrySettings, WebhookSettings, origin,
};
