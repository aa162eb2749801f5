//! The file as written. Every struct rejects unknown fields so a typo is an error, not a
//! silently ignored setting.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub audit: RawAudit,
    #[serde(default)]
    pub webhooks: RawWebhooks,
    #[serde(default)]
    pub cache: RawCache,
    #[serde(default)]
    pub mcp: crate::mcp::RawMcp,
    #[serde(default)]
    pub console: crate::console::RawConsole,
    #[serde(default)]
    pub telemetry: RawTelemetry,
    #[serde(default)]
    pub mock: RawMock,
    #[serde(default)]
    pub providers: Vec<RawProvider>,
    #[serde(default)]
    pub models: Vec<RawModel>,
    #[serde(default)]
    pub oidc: Vec<crate::oidc::RawOidc>,
    #[serde(default)]
    pub exchange: Vec<crate::oidc::RawExchange>,
    #[serde(default)]
    pub oauth: Vec<crate::oauth::RawOAuth>,
    #[serde(default)]
    pub guardrails: gatehouse_guardrails::settings::Section,
    #[serde(default)]
    pub redis: crate::redis::RawRedis,
    #[serde(default)]
    pub tls: crate::tls::RawTls,
    #[serde(default)]
    pub prices: std::collections::BTreeMap<String, crate::budgets::RawPrice>,
    #[serde(default)]
    pub budgets: crate::budgets::RawBudgets,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub data_listen: Option<String>,
    pub admin_listen: Option<String>,
    pub data_dir: Option<String>,
    pub database_url: Option<String>,
    pub master_key: Option<String>,
    pub previous_master_key: Option<String>,
    pub bootstrap_admin_token: Option<String>,
    pub log_format: Option<String>,
    pub header_read_timeout_ms: Option<u64>,
    pub body_read_timeout_ms: Option<u64>,
    pub body_min_bytes_per_second: Option<u64>,
    pub admin_allowed_hosts: Option<Vec<String>>,
    pub admin_cors_origins: Option<Vec<String>>,
    pub shutdown_grace_ms: Option<u64>,
    pub max_connections: Option<u64>,
    pub admin_mutations_per_minute: Option<u64>,
    pub admin_requests_per_minute_per_source: Option<u64>,
    pub key_stale_if_error_ms: Option<u64>,
    /// How many replicas serve this deployment together (declared, so start-up can refuse a
    /// setup whose limits would silently become per replica).
    pub replicas: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    pub data_plane: Option<String>,
    pub on_store_failure: Option<String>,
    pub checkpoint_every_events: Option<u64>,
    pub checkpoint_interval_ms: Option<u64>,
    pub retention_days: Option<u64>,
    pub file: Option<String>,
    pub spool_max_mb: Option<u64>,
    pub queue_capacity: Option<u64>,
    pub batch_linger_ms: Option<u64>,
    pub verify_interval_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    pub max_bytes: Option<u64>,
    pub max_entry_bytes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhooks {
    pub allow_private_targets: Option<Vec<String>>,
    pub max_attempts: Option<u64>,
    pub retry_base_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    pub otlp_endpoint: Option<String>,
    pub otlp_timeout_ms: Option<u64>,
    pub otlp_export_interval_ms: Option<u64>,
    pub propagate_trace_context: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_body_bytes: Option<u64>,
    pub max_json_depth: Option<u64>,
    pub max_messages: Option<u64>,
    pub max_embedding_inputs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMock {
    pub enabled: Option<bool>,
    pub stream_delay_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub name: Option<String>,
    pub kind: Option<String>,
    pub base_url: Option<String>,
    pub api_key: Option<String>,
    pub connect_timeout_ms: Option<u64>,
    pub first_byte_timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub max_stream_duration_ms: Option<u64>,
    pub max_response_bytes: Option<u64>,
    pub max_idle_connections: Option<u64>,
    /// Signed identity headers to this provider: the key id and a secret reference.
    pub identity_key_id: Option<String>,
    pub identity_key: Option<String>,
    /// PEM file of CA certificates trusted for this provider beside the system's roots.
    pub ca_file: Option<String>,
    /// Azure OpenAI: the `api-version` query parameter.
    pub api_version: Option<String>,
    /// Azure OpenAI: `"api-key"` (the default) or `"bearer"` (an Entra ID token).
    pub auth: Option<String>,
    /// Each of its deployments' circuit breaker: failures in a row that open it, and for how long.
    pub breaker_failures: Option<u64>,
    pub breaker_cooldown_ms: Option<u64>,
    /// ... and the error rate over ten seconds that opens it, with the requests needed to judge.
    pub breaker_error_rate: Option<f64>,
    /// Active health checks: `GET <base_url><path>` every interval (off without a path).
    pub health_check_path: Option<String>,
    pub health_check_interval_ms: Option<u64>,
    pub breaker_min_requests: Option<u64>,
    /// Bedrock: the AWS region, and SigV4 credentials as secret references.
    pub region: Option<String>,
    pub aws_access_key_id: Option<String>,
    pub aws_secret_access_key: Option<String>,
    pub aws_session_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    pub name: Option<String>,
    pub provider: Option<String>,
    pub provider_model: Option<String>,
    pub kind: Option<String>,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// The first deployment's place among the others (`provider` and `provider_model` above),
    /// and its first-byte timeout when not the provider's.
    pub priority: Option<u64>,
    pub weight: Option<u64>,
    pub connect_timeout_ms: Option<u64>,
    pub first_byte_timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub max_stream_duration_ms: Option<u64>,
    /// The first deployment's upstream quota.
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    /// Retries after every deployment failed, and the share of requests that may retry.
    pub retries: Option<u64>,
    pub retry_budget: Option<f64>,
    /// Ask a second deployment when the first has not answered by this percentile of the
    /// model's recent first-byte times (whole answers only; off when absent).
    pub hedge_percentile: Option<u64>,
    pub cache_ttl_seconds: Option<u64>,
    /// `"gateway"` (the default: configured or stored credentials) or `"caller"` (the caller's
    /// own key in `x-gatehouse-provider-key`, forwarded and never kept).
    pub provider_key: Option<String>,
    /// Other models to try, in order, when every deployment of this one failed.
    #[serde(default)]
    pub fallbacks: Vec<String>,
    /// More deployments of the same model (`[[models.deployments]]`).
    #[serde(default)]
    pub deployments: Vec<RawDeployment>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeployment {
    pub provider: Option<String>,
    pub provider_model: Option<String>,
    pub priority: Option<u64>,
    pub weight: Option<u64>,
    /// Override the provider's timeouts for this deployment.
    pub connect_timeout_ms: Option<u64>,
    pub first_byte_timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub max_stream_duration_ms: Option<u64>,
    /// The provider's quota for this deployment, which the gateway keeps under.
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
}
