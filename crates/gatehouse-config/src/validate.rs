//! Raw -> validated. Every rule adds an [`Issue`] with its path; nothing stops at the first.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroU64};
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::raw::{
    RawAudit, RawConfig, RawDeployment, RawLimits, RawModel, RawProvider, RawServer, RawTelemetry, RawWebhooks,
};
use gatehouse_guardrails::settings::{Section as GuardrailSection, Settings as GuardrailSettings};

use crate::{ConfigError, Issue, SecretRef};

/// The name of the built-in offline provider. Reserved: a configured provider may not use it.
pub const MOCK_PROVIDER: &str = "mock";
/// The built-in mock chat and embedding models (when `[mock] enabled`).
pub const MOCK_MODEL: &str = "mock";
pub const MOCK_EMBEDDING_MODEL: &str = "mock-embedding";

/// Largest config file we read: a config is a few KiB; more is a mistake.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// The Azure OpenAI `api-version` when a provider names none (the GA version of the API).
const AZURE_API_VERSION: &str = "2024-10-21";

#[derive(Debug)]
pub struct Config {
    pub server: ServerConfig,
    pub policy: Policy,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where the source of truth lives. A PostgreSQL URL may carry a password, so it is secret.
#[derive(Clone, Debug)]
pub enum StoreUrl {
    /// SQLite in the data dir (the embedded default).
    Embedded,
    Url(SecretRef),
}

/// Read once at start; a reload that changes any of this is refused.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub data_listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub data_dir: PathBuf,
    pub store: StoreUrl,
    pub master_key: Option<SecretRef>,
    /// During a master-key rotation: the old master key, accepted for opening stored secrets
    /// until `gatehouse master-key rotate` has re-sealed them all.
    pub previous_master_key: Option<SecretRef>,
    /// The first platform admin token, given instead of generated and printed on the first
    /// start (so no credential reaches a log); ignored once any admin token exists.
    pub bootstrap_admin_token: Option<SecretRef>,
    pub log_format: LogFormat,
    pub header_read_timeout: Duration,
    /// A request body must have arrived this long after the handler starts reading it.
    pub body_read_timeout: Duration,
    /// After a 1 s grace, a body must arrive at least this fast (0: no rate floor).
    pub body_min_bytes_per_second: u32,
    /// Host names the control plane answers beside loopback and its listen address.
    pub admin_allowed_hosts: Vec<String>,
    /// Browser origins allowed to call the control plane cross-origin (CORS), in the form a
    /// browser sends them (`https://ops.example.com`); none by default.
    pub admin_cors_origins: Vec<String>,
    pub shutdown_grace: Duration,
    pub max_connections: NonZeroU32,
    /// Control-plane mutations one admin token may make per minute (burst: a quarter of it).
    pub admin_mutations_per_minute: NonZeroU32,
    /// Control-plane requests one source address may make per minute, authenticated or not
    /// (bounds token guessing).
    pub admin_requests_per_minute_per_source: NonZeroU32,
    /// How long a known API key is still served, after the store last confirmed it, while the
    /// store does not answer (zero: never past the cache's 30 s).
    pub key_stale_if_error: Duration,
    /// Replicas serving together (declared); more than one needs PostgreSQL and `[redis]`.
    pub replicas: NonZeroU32,
    pub audit: AuditSettings,
    pub webhooks: WebhookSettings,
    /// The response cache's bounds (`[cache]`).
    pub cache: CacheSettings,
    /// The MCP gateway's bounds (`[mcp]`).
    pub mcp: crate::mcp::McpSettings,
    /// The web console's sessions and sign-in (`[console]`).
    pub console: crate::console::ConsoleSettings,
    pub telemetry: TelemetrySettings,
    /// Trusted OIDC issuers (`[[oidc]]`).
    pub oidc: Vec<gatehouse_oidc::settings::OidcIssuer>,
    /// Token-exchange mint policy (`[[exchange]]`).
    pub exchange: Vec<crate::oidc::ExchangeRule>,
    /// Plain OAuth 2.0 providers for console sign-in (`[[oauth]]`).
    pub oauth: Vec<gatehouse_oidc::settings::OAuthProvider>,
    /// The shared limits store (`[redis]`); `None`: limits live in the process.
    pub redis: Option<crate::redis::RedisSettings>,
    /// TLS on the listeners (`[tls.data]`, `[tls.control]`).
    pub tls: crate::tls::TlsSettings,
}

/// The `[telemetry]` section. Static. Traces are off unless an endpoint is set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TelemetrySettings {
    /// OTLP/HTTP traces endpoint, e.g. `http://127.0.0.1:4318/v1/traces`.
    pub otlp_endpoint: Option<String>,
    pub otlp_timeout: Duration,
    pub otlp_export_interval: Duration,
    /// Send providers each request's W3C `traceparent` (the gateway's `provider` step as the
    /// parent), so their traces join ours. Off by default: it tells a provider our trace ids.
    pub propagate_trace_context: bool,
}

/// The `[cache]` section: the response cache's bounds. Static. Tenants turn the cache on
/// (their routing rule's `cache_ttl_seconds`); this only bounds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheSettings {
    /// In process: the most memory kept answers take together.
    pub max_bytes: u64,
    /// The largest answer kept (in process or in Redis); bigger ones are served, not kept.
    pub max_entry_bytes: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings { max_bytes: 64 << 20, max_entry_bytes: 1 << 20 }
    }
}

fn cache(raw: crate::raw::RawCache, issues: &mut Vec<Issue>) -> CacheSettings {
    let d = CacheSettings::default();
    let mut bounded = |v: Option<u64>, default: u64, min: u64, max: u64, path: &str| {
        let v = v.unwrap_or(default);
        if !(min..=max).contains(&v) {
            issue(issues, path, format!("must be between {min} and {max} bytes"));
            return default;
        }
        v
    };
    let max_bytes = bounded(raw.max_bytes, d.max_bytes, 1 << 20, 64 << 30, "cache.max_bytes");
    let max_entry_bytes = bounded(raw.max_entry_bytes, d.max_entry_bytes, 1 << 10, 64 << 20, "cache.max_entry_bytes");
    if max_entry_bytes > max_bytes {
        issue(issues, "cache.max_entry_bytes", "must not exceed cache.max_bytes");
    }
    CacheSettings { max_bytes, max_entry_bytes }
}

/// The `[webhooks]` section. Static.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookSettings {
    /// Non-public ranges webhooks may target anyway (the platform admin's explicit choice).
    pub allow_private_targets: Vec<ipnet::IpNet>,
    pub max_attempts: NonZeroU32,
    pub retry_base: Duration,
    pub timeout: Duration,
}

/// Which data-plane requests become audit events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataPlaneAudit {
    /// Every request, allowed or not.
    All,
    /// Refusals and failures only.
    Denials,
}

/// What the audit writer does when the store cannot take events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditFailure {
    Spool,
    FailClosed,
}

/// The `[audit]` section. Static: the writer starts once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditSettings {
    pub data_plane: DataPlaneAudit,
    pub on_store_failure: AuditFailure,
    pub checkpoint_every_events: NonZeroU32,
    pub checkpoint_interval: Duration,
    /// `None`: keep forever.
    pub retention: Option<Duration>,
    /// The JSONL mirror.
    pub file: Option<PathBuf>,
    pub spool_max_bytes: u64,
    pub queue_capacity: NonZeroU32,
    /// How long the writer waits to fill a small batch.
    pub batch_linger: Duration,
    /// How often each replica re-verifies every chain in the store (`None`: never on its own).
    pub verify_interval: Option<Duration>,
}

impl ServerConfig {
    /// Names of static fields that differ: a reload that touches these is refused by name.
    pub fn changed_fields(&self, o: &Self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.data_listen != o.data_listen {
            v.push("server.data_listen");
        }
        if self.admin_listen != o.admin_listen {
            v.push("server.admin_listen");
        }
        if self.data_dir != o.data_dir {
            v.push("server.data_dir");
        }
        if !matches!((&self.store, &o.store), (StoreUrl::Embedded, StoreUrl::Embedded))
            && !matches!((&self.store, &o.store), (StoreUrl::Url(a), StoreUrl::Url(b)) if a == b)
        {
            v.push("server.database_url");
        }
        if self.master_key != o.master_key {
            v.push("server.master_key");
        }
        if self.previous_master_key != o.previous_master_key {
            v.push("server.previous_master_key");
        }
        if self.bootstrap_admin_token != o.bootstrap_admin_token {
            v.push("server.bootstrap_admin_token");
        }
        if self.log_format != o.log_format {
            v.push("server.log_format");
        }
        if self.header_read_timeout != o.header_read_timeout {
            v.push("server.header_read_timeout_ms");
        }
        if self.body_read_timeout != o.body_read_timeout {
            v.push("server.body_read_timeout_ms");
        }
        if self.body_min_bytes_per_second != o.body_min_bytes_per_second {
            v.push("server.body_min_bytes_per_second");
        }
        if self.admin_allowed_hosts != o.admin_allowed_hosts {
            v.push("server.admin_allowed_hosts");
        }
        if self.admin_cors_origins != o.admin_cors_origins {
            v.push("server.admin_cors_origins");
        }
        if self.shutdown_grace != o.shutdown_grace {
            v.push("server.shutdown_grace_ms");
        }
        if self.max_connections != o.max_connections {
            v.push("server.max_connections");
        }
        if self.admin_mutations_per_minute != o.admin_mutations_per_minute {
            v.push("server.admin_mutations_per_minute");
        }
        if self.admin_requests_per_minute_per_source != o.admin_requests_per_minute_per_source {
            v.push("server.admin_requests_per_minute_per_source");
        }
        if self.replicas != o.replicas {
            v.push("server.replicas");
        }
        if self.key_stale_if_error != o.key_stale_if_error {
            v.push("server.key_stale_if_error_ms");
        }
        if self.audit != o.audit {
            v.push("audit");
        }
        if self.redis != o.redis {
            v.push("redis");
        }
        if self.tls != o.tls {
            v.push("tls");
        }
        if self.webhooks != o.webhooks {
            v.push("webhooks");
        }
        if self.cache != o.cache {
            v.push("cache");
        }
        if self.mcp != o.mcp {
            v.push("mcp");
        }
        if self.console != o.console {
            v.push("console");
        }
        if self.telemetry != o.telemetry {
            v.push("telemetry");
        }
        if self.oidc != o.oidc {
            v.push("oidc");
        }
        if self.exchange != o.exchange {
            v.push("exchange");
        }
        if self.oauth != o.oauth {
            v.push("oauth");
        }
        v
    }
}

/// Bounds on what a caller may send. Dynamic: may change on reload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestLimits {
    pub max_body_bytes: NonZeroU32,
    pub max_json_depth: NonZeroU32,
    pub max_messages: NonZeroU32,
    pub max_embedding_inputs: NonZeroU32,
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: nz32(4 * 1024 * 1024),
            max_json_depth: nz32(32),
            max_messages: nz32(2048),
            max_embedding_inputs: nz32(2048),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProviderKind {
    /// OpenAI itself.
    OpenAi,
    /// Any server that speaks OpenAI's API (vLLM, Ollama, llama.cpp, ...).
    OpenAiCompatible,
    /// Anthropic's Messages API (`x-api-key`, `anthropic-version`); chat models only.
    Anthropic,
    /// Azure OpenAI: deployment URLs, `api-version`, an `api-key` header or an Entra ID
    /// bearer token. The provider model is the deployment name.
    AzureOpenAi,
    /// Google's Gemini API (`x-goog-api-key`); chat models only.
    Gemini,
    /// AWS Bedrock's Converse API: SigV4-signed (or a Bedrock API key as a bearer); chat
    /// models only. The provider model is the Bedrock model or inference-profile id.
    Bedrock,
}

/// SigV4 credentials for a Bedrock provider, as secret references.
#[derive(Clone, Debug)]
pub struct AwsKeys {
    pub access_key_id: SecretRef,
    pub secret_access_key: SecretRef,
    pub session_token: Option<SecretRef>,
}

/// [`AwsKeys`], resolved.
pub struct AwsCredentials {
    pub access_key_id: SecretString,
    pub secret_access_key: SecretString,
    pub session_token: Option<SecretString>,
}

#[derive(Clone, Debug)]
pub struct ProviderConfig {
    pub name: String,
    pub kind: ProviderKind,
    /// Without a trailing slash, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    pub api_key: Option<SecretRef>,
    pub connect_timeout: Duration,
    pub first_byte_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_stream_duration: Duration,
    pub max_response_bytes: NonZeroU64,
    pub max_idle_connections: usize,
    /// Signed identity headers (`x-gatehouse-*`): key id and the shared secret's reference.
    pub identity: Option<(String, SecretRef)>,
    /// A PEM bundle of CAs trusted for this provider in addition to the system's roots (a
    /// provider behind a private CA). Read when the snapshot is built.
    pub ca_file: Option<PathBuf>,
    /// Azure OpenAI: the `api-version` every call names.
    pub api_version: Option<String>,
    /// Azure OpenAI: the key is an Entra ID token, sent as `Authorization: Bearer`.
    pub bearer: bool,
    /// Each deployment on this provider opens its breaker after this many failures in a row
    /// (docs/ROUTING.md) ...
    pub breaker_failures: u32,
    /// ... for this long, then lets one probe through.
    pub breaker_cooldown: Duration,
    /// It also opens when this share of the outcomes over the last ten seconds failed (0: off)
    /// ...
    pub breaker_error_rate: f64,
    /// ... once there were at least this many.
    pub breaker_min_requests: u32,
    /// Active health checks: `GET <base_url><path>` (with the provider's credential) every
    /// interval; a failure counts toward each of its deployments' breakers, a success closes
    /// them. `None`: off.
    pub health_check: Option<(String, Duration)>,
    /// Where the provider's endpoint runs, as a label tenant routing rules select by (data
    /// residency); for Bedrock also the AWS region requests are signed for.
    pub region: Option<String>,
    /// Bedrock: SigV4 credentials (else `api_key` is a Bedrock API key, sent as a bearer).
    pub aws_keys: Option<AwsKeys>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    Chat,
    Embedding,
}

#[derive(Clone, Debug)]
pub struct ModelConfig {
    pub name: String,
    /// The first deployment's provider and its name for the model (also `deployments[0]`).
    pub provider: String,
    pub provider_model: String,
    pub kind: ModelKind,
    pub aliases: Vec<String>,
    /// Every deployment serving the model, the first one first.
    pub deployments: Vec<DeploymentConfig>,
    /// Rounds of attempts after every deployment failed (0-5; default 0) ...
    pub retries: u8,
    /// ... and the average retries per request the model may spend (0-1; default 0.2).
    pub retry_budget: f64,
    /// Non-custodial: the caller's own provider key (`x-gatehouse-provider-key`) is required
    /// and forwarded; the gateway's credentials are never used for this model.
    pub caller_key: bool,
    /// Hedging: ask a second deployment after this percentile (50-99) of the recent first-byte
    /// times; `None`: off.
    pub hedge_percentile: Option<u8>,
    /// The response cache for this model: answers kept at most this long (0: never cached),
    /// whatever a tenant's TTL; `None`: the tenant's TTL.
    pub cache_ttl: Option<Duration>,
    /// Other models (canonical names, of the same kind) whose deployments are tried, in order,
    /// when every deployment of this one failed; theirs are not followed further.
    pub fallbacks: Vec<String>,
}

/// The longest a cached answer may be kept.
pub const MAX_CACHE_TTL_SECONDS: u64 = 7 * 24 * 3600;

/// Most models one model may fall back to.
pub const MAX_MODEL_FALLBACKS: usize = 4;

/// One provider serving a model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeploymentConfig {
    pub provider: String,
    pub provider_model: String,
    /// Tried in ascending priority: a tier is used only when every deployment of the tiers
    /// before it failed.
    pub priority: u8,
    /// Share of the requests within its tier.
    pub weight: u16,
    /// This deployment's timeouts, when not its provider's: opening a connection, before the
    /// response headers, between stream events, and for the whole answer.
    pub connect_timeout: Option<Duration>,
    pub first_byte_timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub max_stream_duration: Option<Duration>,
    /// The upstream quota the gateway keeps the deployment under: requests and tokens per
    /// minute.
    pub rpm: Option<u32>,
    pub tpm: Option<u64>,
}

/// Most deployments one model may have.
pub const MAX_DEPLOYMENTS: usize = 16;

/// The reloadable part of the config.
#[derive(Clone, Debug)]
pub struct Policy {
    pub limits: RequestLimits,
    pub mock_enabled: bool,
    /// The mock's pause between the words of a streamed answer, so streaming shows.
    pub mock_stream_delay: Duration,
    pub providers: Vec<ProviderConfig>,
    pub models: Vec<ModelConfig>,
    pub guardrails: GuardrailSettings,
    /// Canonical model name -> price (`[prices.<model>]`).
    pub prices: crate::budgets::Prices,
    pub budgets: crate::budgets::BudgetSettings,
}

fn guardrails(raw: GuardrailSection, issues: &mut Vec<Issue>) -> GuardrailSettings {
    let (settings, errors) = GuardrailSettings::from_section(raw);
    for e in errors {
        issue(issues, format!("guardrails.{}", e.field), e.message);
    }
    settings
}

impl Default for Config {
    /// The embedded default: the same values an empty file yields.
    fn default() -> Self {
        let mut issues = Vec::new();
        let sections = (RawAudit::default(), RawWebhooks::default(), RawTelemetry::default());
        let server = server(RawServer::default(), sections, &mut issues);
        let limits = limits(&RawLimits::default(), &mut issues);
        debug_assert!(issues.is_empty(), "defaults must satisfy their own rules");
        let guardrails = GuardrailSettings::default();
        Config {
            server,
            policy: Policy {
                limits,
                mock_enabled: true,
                mock_stream_delay: Duration::from_millis(MOCK_STREAM_DELAY_MS),
                providers: vec![],
                models: vec![],
                guardrails,
                prices: [MOCK_MODEL, MOCK_EMBEDDING_MODEL].map(|m| (m.to_owned(), Default::default())).into(),
                budgets: crate::budgets::BudgetSettings::default(),
            },
        }
    }
}

const fn nz32(v: u32) -> NonZeroU32 {
    match NonZeroU32::new(v) {
        Some(n) => n,
        None => NonZeroU32::MIN,
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let read_err = |e: std::io::Error| ConfigError::Read { path: path.display().to_string(), kind: e.kind() };
        let meta = std::fs::metadata(path).map_err(read_err)?;
        if meta.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError::Invalid(vec![Issue {
                path: "<file>".into(),
                rule: format!("must be at most {MAX_CONFIG_BYTES} bytes"),
            }]));
        }
        let text = std::fs::read_to_string(path).map_err(read_err)?;
        Config::from_toml(&text)
    }

    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| syntax_error(text, &e))?;
        Config::from_raw(raw)
    }

    fn from_raw(raw: RawConfig) -> Result<Config, ConfigError> {
        let mut issues = Vec::new();
        let mut server = server(raw.server, (raw.audit, raw.webhooks, raw.telemetry), &mut issues);
        server.oidc = crate::oidc::issuers(raw.oidc, &mut issues);
        server.exchange = crate::oidc::exchange_rules(raw.exchange, &server.oidc, &mut issues);
        server.oauth = crate::oauth::providers(raw.oauth, &server.oidc, &mut issues);
        server.redis = crate::redis::redis(raw.redis, &mut issues);
        server.tls = crate::tls::settings(raw.tls, &mut issues);
        server.cache = cache(raw.cache, &mut issues);
        server.mcp = crate::mcp::settings(raw.mcp, &mut issues);
        server.console = crate::console::settings(raw.console, &mut issues);
        if server.replicas.get() > 1 && server.redis.is_none() {
            // A limit that silently becomes per replica is a security bug (docs/SECURITY.md).
            issue(
                &mut issues,
                "server.replicas",
                "more than one replica needs [redis] (rate limits and budgets would otherwise be per replica)",
            );
        }
        let limits = limits(&raw.limits, &mut issues);
        let mock_enabled = raw.mock.enabled.unwrap_or(true);
        let mock_stream_delay =
            ms(raw.mock.stream_delay_ms, MOCK_STREAM_DELAY_MS, 0, 1000, "mock.stream_delay_ms", &mut issues);
        let providers = providers(raw.providers, &mut issues);
        let models = models(raw.models, &providers, mock_enabled, &mut issues);
        let guardrails = guardrails(raw.guardrails, &mut issues);
        let mut names: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
        if mock_enabled {
            names.extend([MOCK_MODEL, MOCK_EMBEDDING_MODEL]);
        }
        let mut prices = crate::budgets::prices(raw.prices, &names, &mut issues);
        if mock_enabled {
            // the built-in mock costs nothing (a configured price wins)
            for m in [MOCK_MODEL, MOCK_EMBEDDING_MODEL] {
                prices.entry(m.to_owned()).or_default();
            }
        }
        let budgets = crate::budgets::budgets(raw.budgets, &mut issues);
        if issues.is_empty() {
            Ok(Config {
                server,
                policy: Policy {
                    limits,
                    mock_enabled,
                    mock_stream_delay,
                    providers,
                    models,
                    guardrails,
                    prices,
                    budgets,
                },
            })
        } else {
            Err(ConfigError::Invalid(issues))
        }
    }
}

/// TOML's own messages quote the offending line, which may hold a secret: keep only the
/// position and the first line of the message, minus anything quoted.
fn syntax_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let (line, column) = e
        .span()
        .map(|s| {
            let before = &text[..s.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            (line, column)
        })
        .unwrap_or((0, 0));
    let first = e.message().lines().next().unwrap_or("syntax error");
    // field names in "unknown field `x`, expected ..." are ours and safe; values are not.
    let message = if first.starts_with("unknown field")
        || first.starts_with("missing field")
        || first.starts_with("invalid type")
    {
        first.to_owned()
    } else {
        "syntax error".to_owned()
    };
    ConfigError::Syntax { line, column, message }
}

pub(crate) fn issue(issues: &mut Vec<Issue>, path: impl Into<String>, rule: impl Into<String>) {
    issues.push(Issue { path: path.into(), rule: rule.into() });
}

fn socket(v: Option<String>, default: SocketAddr, path: &str, issues: &mut Vec<Issue>) -> SocketAddr {
    match v {
        None => default,
        Some(s) => s.parse().unwrap_or_else(|_| {
            issue(issues, path, "must be an address like 127.0.0.1:8080");
            default
        }),
    }
}

/// The entries in the canonical form the control plane matches `Host` against.
fn allowed_hosts(hosts: Vec<String>, issues: &mut Vec<Issue>) -> Vec<String> {
    if hosts.len() > 64 {
        issue(issues, "server.admin_allowed_hosts", "at most 64 entries");
        return Vec::new();
    }
    match hosts.iter().map(|h| gatehouse_core::host_name(h)).collect::<Option<Vec<_>>>() {
        Some(names) => names,
        None => {
            issue(
                issues,
                "server.admin_allowed_hosts",
                "each entry must be a host name or IP address (no scheme, port or path)",
            );
            Vec::new()
        }
    }
}

/// `o` as a browser sends it in `Origin` (`scheme://host[:port]`, lower case, the scheme's
/// default port left out), if it is an exact http(s) origin: no wildcard, `null`, path, query
/// or credentials. CORS allow-lists (the control plane's, and projects' on the data plane)
/// hold only these.
pub fn origin(o: &str) -> Option<String> {
    if o.len() > 256 {
        return None;
    }
    let u = url::Url::parse(o).ok()?;
    let ok = matches!(u.scheme(), "http" | "https")
        && match u.host() {
            Some(url::Host::Domain(d)) => d.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'),
            Some(_) => true,
            None => false,
        }
        && u.username().is_empty()
        && u.password().is_none()
        && u.path() == "/"
        && u.query().is_none()
        && u.fragment().is_none()
        && !o.trim_end_matches('/').ends_with(':');
    ok.then(|| u.origin().ascii_serialization())
}

/// The entries as a browser sends its `Origin`: an exact list, never a wildcard or `null`.
fn cors_origins(origins: Vec<String>, issues: &mut Vec<Issue>) -> Vec<String> {
    const PATH: &str = "server.admin_cors_origins";
    if origins.len() > 64 {
        issue(issues, PATH, "at most 64 entries");
        return Vec::new();
    }
    let mut out = Vec::with_capacity(origins.len());
    for o in &origins {
        match origin(o) {
            Some(u) => out.push(u),
            None => {
                issue(
                    issues,
                    PATH,
                    "each entry must be an origin like https://ops.example.com (no wildcard, path or credentials)",
                );
                return Vec::new();
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The mock's default pause between streamed words: ten words take a quarter of a second,
/// enough to see streaming in the quick start.
const MOCK_STREAM_DELAY_MS: u64 = 25;

pub(crate) fn ms(v: Option<u64>, default_ms: u64, min: u64, max: u64, path: &str, issues: &mut Vec<Issue>) -> Duration {
    let v = v.unwrap_or(default_ms);
    if !(min..=max).contains(&v) {
        issue(issues, path, format!("must be between {min} and {max} milliseconds"));
    }
    Duration::from_millis(v.clamp(min, max))
}

pub(crate) fn bounded32(v: Option<u64>, default: u32, max: u32, path: &str, issues: &mut Vec<Issue>) -> NonZeroU32 {
    let v = v.unwrap_or(u64::from(default));
    if v == 0 || v > u64::from(max) {
        issue(issues, path, format!("must be between 1 and {max}"));
        return nz32(default);
    }
    nz32(u32::try_from(v).unwrap_or(default))
}

fn audit(raw: RawAudit, issues: &mut Vec<Issue>) -> AuditSettings {
    let data_plane = match raw.data_plane.as_deref() {
        None | Some("all") => DataPlaneAudit::All,
        Some("denials") => DataPlaneAudit::Denials,
        Some(_) => {
            issue(issues, "audit.data_plane", "must be \"all\" or \"denials\"");
            DataPlaneAudit::All
        }
    };
    let on_store_failure = match raw.on_store_failure.as_deref() {
        None | Some("spool") => AuditFailure::Spool,
        Some("fail_closed") => AuditFailure::FailClosed,
        Some(_) => {
            issue(issues, "audit.on_store_failure", "must be \"spool\" or \"fail_closed\"");
            AuditFailure::Spool
        }
    };
    let retention_days = raw.retention_days.unwrap_or(90);
    if retention_days > 36_500 {
        issue(issues, "audit.retention_days", "must be between 0 (keep forever) and 36500");
    }
    let retention = (retention_days > 0).then(|| Duration::from_secs(retention_days.min(36_500) * 86_400));
    let spool_mb = bounded32(raw.spool_max_mb, 64, 1_048_576, "audit.spool_max_mb", issues);
    AuditSettings {
        data_plane,
        on_store_failure,
        checkpoint_every_events: bounded32(
            raw.checkpoint_every_events,
            1_000,
            1_000_000,
            "audit.checkpoint_every_events",
            issues,
        ),
        checkpoint_interval: ms(
            raw.checkpoint_interval_ms,
            10_000,
            100,
            3_600_000,
            "audit.checkpoint_interval_ms",
            issues,
        ),
        retention,
        file: raw.file.map(PathBuf::from),
        spool_max_bytes: u64::from(spool_mb.get()) * 1024 * 1024,
        queue_capacity: bounded32(raw.queue_capacity, 16_384, 1_048_576, "audit.queue_capacity", issues),
        batch_linger: ms(raw.batch_linger_ms, 50, 0, 1_000, "audit.batch_linger_ms", issues),
        verify_interval: match raw.verify_interval_ms {
            Some(0) => None,
            v => Some(ms(v, 86_400_000, 1_000, 604_800_000, "audit.verify_interval_ms", issues)),
        },
    }
}

fn webhooks(raw: RawWebhooks, issues: &mut Vec<Issue>) -> WebhookSettings {
    let allow_private_targets =
        private_ranges(raw.allow_private_targets.unwrap_or_default(), "webhooks.allow_private_targets", issues);
    WebhookSettings {
        allow_private_targets,
        max_attempts: bounded32(raw.max_attempts, 8, 50, "webhooks.max_attempts", issues),
        retry_base: ms(raw.retry_base_ms, 2_000, 10, 3_600_000, "webhooks.retry_base_ms", issues),
        timeout: ms(raw.timeout_ms, 10_000, 100, 60_000, "webhooks.timeout_ms", issues),
    }
}

/// An `allow_private_targets` list: at most 64 CIDR ranges.
pub(crate) fn private_ranges(allow: Vec<String>, path: &str, issues: &mut Vec<Issue>) -> Vec<ipnet::IpNet> {
    if allow.len() > 64 {
        issue(issues, path, "at most 64 ranges");
    }
    allow
        .iter()
        .take(64)
        .filter_map(|c| match c.parse::<ipnet::IpNet>() {
            Ok(n) => Some(n),
            Err(_) => {
                issue(issues, path, "each entry must be a CIDR range like 10.0.0.0/8");
                None
            }
        })
        .collect()
}

fn telemetry(raw: RawTelemetry, issues: &mut Vec<Issue>) -> TelemetrySettings {
    let otlp_endpoint = raw.otlp_endpoint.filter(|u| {
        let ok = (u.starts_with("http://") || u.starts_with("https://")) && u.len() <= 2048;
        if !ok {
            issue(issues, "telemetry.otlp_endpoint", "must be an http(s) URL");
        }
        ok
    });
    TelemetrySettings {
        otlp_endpoint,
        otlp_timeout: ms(raw.otlp_timeout_ms, 5_000, 100, 60_000, "telemetry.otlp_timeout_ms", issues),
        otlp_export_interval: ms(
            raw.otlp_export_interval_ms,
            5_000,
            100,
            600_000,
            "telemetry.otlp_export_interval_ms",
            issues,
        ),
        propagate_trace_context: raw.propagate_trace_context.unwrap_or(false),
    }
}

fn server(raw: RawServer, sections: (RawAudit, RawWebhooks, RawTelemetry), issues: &mut Vec<Issue>) -> ServerConfig {
    let (raw_audit, raw_webhooks, raw_telemetry) = sections;
    let data_listen = socket(raw.data_listen, SocketAddr::from(([127, 0, 0, 1], 8080)), "server.data_listen", issues);
    let admin_listen =
        socket(raw.admin_listen, SocketAddr::from(([127, 0, 0, 1], 8081)), "server.admin_listen", issues);
    let data_dir = PathBuf::from(raw.data_dir.unwrap_or_else(|| "./gatehouse-data".to_owned()));
    let store = match raw.database_url {
        None => StoreUrl::Embedded,
        Some(s) => match SecretRef::parse(&s) {
            Ok(r) => StoreUrl::Url(r),
            Err(rule) => {
                issue(issues, "server.database_url", rule);
                StoreUrl::Embedded
            }
        },
    };
    let master_key =
        raw.master_key.and_then(|s| SecretRef::parse(&s).map_err(|rule| issue(issues, "server.master_key", rule)).ok());
    let previous_master_key = raw
        .previous_master_key
        .and_then(|s| SecretRef::parse(&s).map_err(|rule| issue(issues, "server.previous_master_key", rule)).ok());
    let bootstrap_admin_token = raw
        .bootstrap_admin_token
        .and_then(|s| SecretRef::parse(&s).map_err(|rule| issue(issues, "server.bootstrap_admin_token", rule)).ok());
    let log_format = match raw.log_format.as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(_) => {
            issue(issues, "server.log_format", "must be \"text\" or \"json\"");
            LogFormat::Text
        }
    };
    ServerConfig {
        data_listen,
        admin_listen,
        data_dir,
        store,
        master_key,
        previous_master_key,
        bootstrap_admin_token,
        log_format,
        header_read_timeout: ms(
            raw.header_read_timeout_ms,
            10_000,
            100,
            300_000,
            "server.header_read_timeout_ms",
            issues,
        ),
        body_read_timeout: ms(raw.body_read_timeout_ms, 30_000, 100, 600_000, "server.body_read_timeout_ms", issues),
        body_min_bytes_per_second: match raw.body_min_bytes_per_second {
            None => 1024,
            Some(v) => u32::try_from(v).unwrap_or_else(|_| {
                issue(issues, "server.body_min_bytes_per_second", "must be at most 4294967295");
                1024
            }),
        },
        admin_allowed_hosts: allowed_hosts(raw.admin_allowed_hosts.unwrap_or_default(), issues),
        admin_cors_origins: cors_origins(raw.admin_cors_origins.unwrap_or_default(), issues),
        shutdown_grace: ms(raw.shutdown_grace_ms, 30_000, 0, 3_600_000, "server.shutdown_grace_ms", issues),
        max_connections: bounded32(raw.max_connections, 10_000, 1_000_000, "server.max_connections", issues),
        admin_mutations_per_minute: bounded32(
            raw.admin_mutations_per_minute,
            600,
            1_000_000,
            "server.admin_mutations_per_minute",
            issues,
        ),
        admin_requests_per_minute_per_source: bounded32(
            raw.admin_requests_per_minute_per_source,
            6_000,
            10_000_000,
            "server.admin_requests_per_minute_per_source",
            issues,
        ),
        replicas: bounded32(raw.replicas, 1, 1000, "server.replicas", issues),
        key_stale_if_error: ms(
            raw.key_stale_if_error_ms,
            120_000,
            0,
            3_600_000,
            "server.key_stale_if_error_ms",
            issues,
        ),
        audit: audit(raw_audit, issues),
        webhooks: webhooks(raw_webhooks, issues),
        cache: CacheSettings::default(),
        mcp: crate::mcp::McpSettings::default(),
        console: crate::console::ConsoleSettings::default(),
        telemetry: telemetry(raw_telemetry, issues),
        oidc: Vec::new(),
        exchange: Vec::new(),
        oauth: Vec::new(),
        redis: None,
        tls: crate::tls::TlsSettings::default(),
    }
}

fn limits(raw: &RawLimits, issues: &mut Vec<Issue>) -> RequestLimits {
    let d = RequestLimits::default();
    RequestLimits {
        max_body_bytes: bounded32(
            raw.max_body_bytes,
            d.max_body_bytes.get(),
            256 * 1024 * 1024,
            "limits.max_body_bytes",
            issues,
        ),
        max_json_depth: bounded32(raw.max_json_depth, d.max_json_depth.get(), 128, "limits.max_json_depth", issues),
        max_messages: bounded32(raw.max_messages, d.max_messages.get(), 100_000, "limits.max_messages", issues),
        max_embedding_inputs: bounded32(
            raw.max_embedding_inputs,
            d.max_embedding_inputs.get(),
            100_000,
            "limits.max_embedding_inputs",
            issues,
        ),
    }
}

/// Names appear in URLs, metrics labels and logs: keep them boring.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/'))
}

fn required<'a>(v: &'a Option<String>, path: &str, issues: &mut Vec<Issue>) -> &'a str {
    match v.as_deref() {
        Some(s) => s,
        None => {
            issue(issues, path, "is required");
            ""
        }
    }
}

fn base_url(s: &str, path: &str, issues: &mut Vec<Issue>) -> String {
    match url::Url::parse(s) {
        Ok(u)
            if matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some()
                && u.username().is_empty()
                && u.password().is_none()
                && u.query().is_none()
                && u.fragment().is_none() =>
        {
            u.as_str().trim_end_matches('/').to_owned()
        }
        Ok(_) => {
            issue(issues, path, "must be an http(s) URL with a host and without credentials, query or fragment");
            String::new()
        }
        Err(_) => {
            issue(issues, path, "must be a URL");
            String::new()
        }
    }
}

fn providers(raw: Vec<RawProvider>, issues: &mut Vec<Issue>) -> Vec<ProviderConfig> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, p) in raw.into_iter().enumerate() {
        let at = |f: &str| format!("providers[{i}].{f}");
        let name = required(&p.name, &at("name"), issues).to_owned();
        if !name.is_empty() && !valid_name(&name) {
            issue(issues, at("name"), "must be 1-128 characters of [A-Za-z0-9-_.:/]");
        }
        if name == MOCK_PROVIDER {
            issue(issues, at("name"), "\"mock\" is reserved for the built-in mock provider");
        }
        if !name.is_empty() && !seen.insert(name.clone()) {
            issue(issues, at("name"), "is used by another provider");
        }
        let kind = match p.kind.as_deref() {
            Some("openai") => ProviderKind::OpenAi,
            None | Some("openai_compatible") => ProviderKind::OpenAiCompatible,
            Some("anthropic") => ProviderKind::Anthropic,
            Some("azure_openai") => ProviderKind::AzureOpenAi,
            Some("gemini") => ProviderKind::Gemini,
            Some("bedrock") => ProviderKind::Bedrock,
            Some(_) => {
                let kinds =
                    "\"openai\", \"openai_compatible\", \"anthropic\", \"azure_openai\", \"gemini\" or \"bedrock\"";
                issue(issues, at("kind"), format!("must be {kinds}"));
                ProviderKind::OpenAiCompatible
            }
        };
        let bedrock = kind == ProviderKind::Bedrock;
        // every provider may name its region (data residency: tenant routing rules select by
        // it); bedrock signs its requests for it, so there it is required
        let region = match (&p.region, bedrock) {
            (Some(r), _) => {
                if r.is_empty()
                    || r.len() > 32
                    || !r.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                {
                    issue(
                        issues,
                        at("region"),
                        "must be 1-32 characters of [a-z0-9-], such as \"us-east-1\" or \"eu\"",
                    );
                }
                Some(r.clone())
            }
            (None, true) => {
                issue(issues, at("region"), "is required for bedrock providers");
                None
            }
            (None, false) => None,
        };
        let secret = |v: &Option<String>, f: &str, issues: &mut Vec<Issue>| {
            v.as_deref().and_then(|s| SecretRef::parse(s).map_err(|rule| issue(issues, at(f), rule)).ok())
        };
        let access = secret(&p.aws_access_key_id, "aws_access_key_id", issues);
        let secret_key = secret(&p.aws_secret_access_key, "aws_secret_access_key", issues);
        let session = secret(&p.aws_session_token, "aws_session_token", issues);
        let aws_keys = match (access, secret_key) {
            (Some(access_key_id), Some(secret_access_key)) if bedrock => {
                Some(AwsKeys { access_key_id, secret_access_key, session_token: session })
            }
            (None, None) if p.aws_session_token.is_none() => None,
            _ if !bedrock => {
                issue(issues, at("aws_access_key_id"), "applies to bedrock providers only");
                None
            }
            _ => {
                issue(issues, at("aws_secret_access_key"), "aws_access_key_id and aws_secret_access_key go together");
                None
            }
        };
        if bedrock && aws_keys.is_some() == p.api_key.is_some() {
            issue(
                issues,
                at("api_key"),
                "a bedrock provider takes either api_key or aws_access_key_id and aws_secret_access_key",
            );
        }
        let base_url = match (&p.base_url, kind) {
            (None, ProviderKind::OpenAi) => "https://api.openai.com/v1".to_owned(),
            (None, ProviderKind::Anthropic) => "https://api.anthropic.com/v1".to_owned(),
            (None, ProviderKind::Gemini) => "https://generativelanguage.googleapis.com/v1beta".to_owned(),
            (None, ProviderKind::Bedrock) => {
                format!("https://bedrock-runtime.{}.amazonaws.com", region.as_deref().unwrap_or("us-east-1"))
            }
            (None, _) => {
                issue(issues, at("base_url"), "is required for openai_compatible and azure_openai providers");
                String::new()
            }
            (Some(u), _) => base_url(u, &at("base_url"), issues),
        };
        let api_key = p
            .api_key
            .as_deref()
            .and_then(|s| SecretRef::parse(s).map_err(|rule| issue(issues, at("api_key"), rule)).ok());
        let keyed = !matches!(kind, ProviderKind::OpenAiCompatible | ProviderKind::Bedrock);
        if api_key.is_none() && keyed && p.api_key.is_none() {
            issue(issues, at("api_key"), "is required for every kind but \"openai_compatible\"");
        }
        let azure = kind == ProviderKind::AzureOpenAi;
        let api_version = match (&p.api_version, azure) {
            (None, true) => Some(AZURE_API_VERSION.to_owned()),
            (Some(v), true) => {
                if v.is_empty() || v.len() > 32 || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                    issue(issues, at("api_version"), "must be an API version such as \"2024-10-21\"");
                }
                Some(v.clone())
            }
            (Some(_), false) => {
                issue(issues, at("api_version"), "applies to azure_openai providers only");
                None
            }
            (None, false) => None,
        };
        let bearer = match (p.auth.as_deref(), azure) {
            (None | Some("api-key"), true) | (None, false) => false,
            (Some("bearer"), true) => true,
            (Some(_), true) => {
                issue(issues, at("auth"), "must be \"api-key\" or \"bearer\"");
                false
            }
            (Some(_), false) => {
                issue(issues, at("auth"), "applies to azure_openai providers only");
                false
            }
        };
        out.push(ProviderConfig {
            name,
            kind,
            base_url,
            api_key,
            api_version,
            bearer,
            breaker_failures: u32::try_from(p.breaker_failures.unwrap_or(5))
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .unwrap_or_else(|| {
                    issue(issues, at("breaker_failures"), "must be 1-1000");
                    5
                }),
            breaker_cooldown: ms(p.breaker_cooldown_ms, 30_000, 100, 3_600_000, &at("breaker_cooldown_ms"), issues),
            breaker_error_rate: match p.breaker_error_rate.unwrap_or(0.5) {
                r if (0.0..=1.0).contains(&r) => r,
                _ => {
                    issue(issues, at("breaker_error_rate"), "must be a share of requests, 0 (off) to 1");
                    0.5
                }
            },
            health_check: match (p.health_check_path, p.health_check_interval_ms) {
                (None, None) => None,
                (None, Some(_)) => {
                    issue(issues, at("health_check_path"), "is required with health_check_interval_ms");
                    None
                }
                (Some(_), _) if bedrock => {
                    // a check would have to be signed for a Bedrock control-plane call
                    issue(issues, at("health_check_path"), "is not supported for bedrock providers");
                    None
                }
                (Some(path), interval) => {
                    let ok = path.starts_with('/')
                        && path.len() <= 256
                        && !path.contains("..")
                        && path.bytes().all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b));
                    if !ok {
                        issue(
                            issues,
                            at("health_check_path"),
                            "must be a path such as \"/models\" (1-256 of [A-Za-z0-9/-_.], no \"..\")",
                        );
                    }
                    let every = ms(interval, 10_000, 1_000, 3_600_000, &at("health_check_interval_ms"), issues);
                    Some((path, every))
                }
            },
            breaker_min_requests: u32::try_from(p.breaker_min_requests.unwrap_or(20))
                .ok()
                .filter(|n| (1..=100_000).contains(n))
                .unwrap_or_else(|| {
                    issue(issues, at("breaker_min_requests"), "must be 1-100000");
                    20
                }),
            region,
            aws_keys,
            connect_timeout: ms(p.connect_timeout_ms, 3_000, 10, 60_000, &at("connect_timeout_ms"), issues),
            first_byte_timeout: ms(
                p.first_byte_timeout_ms,
                120_000,
                10,
                3_600_000,
                &at("first_byte_timeout_ms"),
                issues,
            ),
            idle_timeout: ms(p.idle_timeout_ms, 60_000, 10, 3_600_000, &at("idle_timeout_ms"), issues),
            max_stream_duration: ms(
                p.max_stream_duration_ms,
                1_800_000,
                100,
                86_400_000,
                &at("max_stream_duration_ms"),
                issues,
            ),
            max_response_bytes: NonZeroU64::new(p.max_response_bytes.unwrap_or(32 * 1024 * 1024)).unwrap_or_else(
                || {
                    issue(issues, at("max_response_bytes"), "must be at least 1");
                    NonZeroU64::MIN
                },
            ),
            max_idle_connections: usize::try_from(p.max_idle_connections.unwrap_or(256).min(65_536)).unwrap_or(256),
            ca_file: p.ca_file.as_deref().and_then(|f| {
                let path = PathBuf::from(f);
                if path.is_absolute() {
                    Some(path)
                } else {
                    issue(issues, at("ca_file"), "must be an absolute path to a PEM file");
                    None
                }
            }),
            identity: match (p.identity_key_id, p.identity_key.as_deref()) {
                (None, None) => None,
                (Some(id), Some(key)) => {
                    if id.is_empty()
                        || id.len() > 64
                        || !id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                    {
                        issue(issues, at("identity_key_id"), "1 to 64 letters, digits, '-', '_' or '.'");
                    }
                    SecretRef::parse(key).map_err(|rule| issue(issues, at("identity_key"), rule)).ok().map(|r| (id, r))
                }
                _ => {
                    issue(issues, at("identity_key"), "identity_key_id and identity_key go together");
                    None
                }
            },
        });
    }
    out
}

fn models(
    raw: Vec<RawModel>,
    providers: &[ProviderConfig],
    mock_enabled: bool,
    issues: &mut Vec<Issue>,
) -> Vec<ModelConfig> {
    let mut names: HashSet<String> = HashSet::new();
    if mock_enabled {
        names.insert(MOCK_MODEL.to_owned());
        names.insert(MOCK_EMBEDDING_MODEL.to_owned());
    }
    let mut out = Vec::with_capacity(raw.len());
    for (i, m) in raw.into_iter().enumerate() {
        let at = |f: &str| format!("models[{i}].{f}");
        let name = required(&m.name, &at("name"), issues).to_owned();
        if !name.is_empty() && !valid_name(&name) {
            issue(issues, at("name"), "must be 1-128 characters of [A-Za-z0-9-_.:/]");
        }
        if !name.is_empty() && !names.insert(name.clone()) {
            issue(issues, at("name"), "is already a model name or alias");
        }
        let kind = match m.kind.as_deref() {
            None | Some("chat") => ModelKind::Chat,
            Some("embedding") => ModelKind::Embedding,
            Some(_) => {
                issue(issues, at("kind"), "must be \"chat\" or \"embedding\"");
                ModelKind::Chat
            }
        };
        for (j, a) in m.aliases.iter().enumerate() {
            if !valid_name(a) {
                issue(issues, format!("models[{i}].aliases[{j}]"), "must be 1-128 characters of [A-Za-z0-9-_.:/]");
            } else if !names.insert(a.clone()) {
                issue(issues, format!("models[{i}].aliases[{j}]"), "is already a model name or alias");
            }
        }
        let first = RawDeployment {
            provider: m.provider,
            provider_model: m.provider_model,
            priority: m.priority,
            weight: m.weight,
            connect_timeout_ms: m.connect_timeout_ms,
            first_byte_timeout_ms: m.first_byte_timeout_ms,
            idle_timeout_ms: m.idle_timeout_ms,
            max_stream_duration_ms: m.max_stream_duration_ms,
            rpm: m.rpm,
            tpm: m.tpm,
        };
        if m.deployments.len() + 1 > MAX_DEPLOYMENTS {
            issue(issues, at("deployments"), format!("at most {} deployments per model", MAX_DEPLOYMENTS - 1));
        }
        let deployments: Vec<DeploymentConfig> = std::iter::once((String::new(), first))
            .chain(m.deployments.into_iter().enumerate().map(|(j, d)| (format!("deployments[{j}]."), d)))
            .map(|(prefix, d)| deployment(d, &name, kind, providers, &|f: &str| at(&format!("{prefix}{f}")), issues))
            .collect();
        for (j, d) in deployments.iter().enumerate().skip(1) {
            if deployments[..j].iter().any(|e| e.provider == d.provider && e.provider_model == d.provider_model) {
                issue(
                    issues,
                    at(&format!("deployments[{}]", j - 1)),
                    "serves the model by the same provider and provider model as another deployment",
                );
            }
        }
        let (provider, provider_model) = (deployments[0].provider.clone(), deployments[0].provider_model.clone());
        let retries = u8::try_from(m.retries.unwrap_or(0)).ok().filter(|r| *r <= 5).unwrap_or_else(|| {
            issue(issues, at("retries"), "must be 0-5");
            0
        });
        let retry_budget = m.retry_budget.unwrap_or(0.2);
        if !(0.0..=1.0).contains(&retry_budget) {
            issue(issues, at("retry_budget"), "must be a share of requests, 0 to 1");
        }
        out.push(ModelConfig {
            name,
            provider,
            provider_model,
            kind,
            aliases: m.aliases,
            deployments,
            retries,
            retry_budget,
            caller_key: match m.provider_key.as_deref() {
                None | Some("gateway") => false,
                Some("caller") => true,
                Some(_) => {
                    issue(issues, at("provider_key"), "must be \"gateway\" or \"caller\"");
                    false
                }
            },
            hedge_percentile: m.hedge_percentile.map(|p| {
                u8::try_from(p).ok().filter(|p| (50..=99).contains(p)).unwrap_or_else(|| {
                    issue(issues, at("hedge_percentile"), "must be 50-99");
                    95
                })
            }),
            cache_ttl: m.cache_ttl_seconds.map(|s| {
                if s > MAX_CACHE_TTL_SECONDS {
                    issue(issues, at("cache_ttl_seconds"), "at most 604800 (a week)");
                }
                Duration::from_secs(s.min(MAX_CACHE_TTL_SECONDS))
            }),
            fallbacks: m.fallbacks,
        });
    }
    // fallbacks name other models of the same kind, by canonical name (an alias could change
    // what it names); checked once every model is known
    for (i, m) in out.iter().enumerate() {
        let signed =
            |d: &DeploymentConfig| providers.iter().any(|p| p.name == d.provider && p.kind == ProviderKind::Bedrock);
        if m.caller_key && m.deployments.iter().any(signed) {
            // a SigV4-signed call cannot carry the caller's key: it would go out under ours
            issue(issues, format!("models[{i}].provider_key"), "\"caller\" is not supported on bedrock providers");
        }
        if m.fallbacks.len() > MAX_MODEL_FALLBACKS {
            issue(issues, format!("models[{i}].fallbacks"), format!("at most {MAX_MODEL_FALLBACKS} models"));
        }
        for (j, f) in m.fallbacks.iter().enumerate() {
            let ok =
                f != &m.name && out.iter().any(|o| &o.name == f && o.kind == m.kind) && !m.fallbacks[..j].contains(f);
            if !ok {
                issue(
                    issues,
                    format!("models[{i}].fallbacks[{j}]"),
                    "must name another configured model of the same kind",
                );
            }
        }
    }
    out
}

/// One deployment of model `name`: its provider exists and serves the model's kind, its model
/// name fits the provider's URLs, its priority and weight are in range.
fn deployment(
    d: RawDeployment,
    name: &str,
    kind: ModelKind,
    providers: &[ProviderConfig],
    at: &dyn Fn(&str) -> String,
    issues: &mut Vec<Issue>,
) -> DeploymentConfig {
    let provider = required(&d.provider, &at("provider"), issues).to_owned();
    let served_by = providers.iter().find(|p| p.name == provider).map(|p| p.kind);
    if !provider.is_empty() && served_by.is_none() {
        issue(issues, at("provider"), "names no configured provider");
    }
    let chat_only = matches!(served_by, Some(ProviderKind::Anthropic | ProviderKind::Gemini | ProviderKind::Bedrock));
    if kind == ModelKind::Embedding && chat_only {
        issue(issues, at("provider"), "anthropic, gemini and bedrock providers serve chat models only");
    }
    let provider_model = d.provider_model.unwrap_or_else(|| name.to_owned());
    if provider_model.is_empty() || provider_model.len() > 256 {
        issue(issues, at("provider_model"), "must be 1-256 characters");
    }
    let in_url = matches!(served_by, Some(ProviderKind::AzureOpenAi | ProviderKind::Gemini | ProviderKind::Bedrock));
    if in_url && (provider_model == "." || provider_model == ".." || provider_model.chars().any(char::is_control)) {
        // it becomes a URL path segment: a dot segment would climb out of it
        issue(issues, at("provider_model"), "must be a deployment or model name, not a dot segment");
    }
    let priority = u8::try_from(d.priority.unwrap_or(0)).ok().filter(|p| *p <= 100).unwrap_or_else(|| {
        issue(issues, at("priority"), "must be 0-100 (lower is tried first)");
        0
    });
    let weight = u16::try_from(d.weight.unwrap_or(1)).ok().filter(|w| (1..=1000).contains(w)).unwrap_or_else(|| {
        issue(issues, at("weight"), "must be 1-1000");
        1
    });
    // the same ranges as the provider's own
    let mut timeout =
        |v: Option<u64>, min: u64, max: u64, field: &str| v.map(|v| ms(Some(v), 0, min, max, &at(field), issues));
    let connect_timeout = timeout(d.connect_timeout_ms, 10, 60_000, "connect_timeout_ms");
    let first_byte_timeout = timeout(d.first_byte_timeout_ms, 10, 3_600_000, "first_byte_timeout_ms");
    let idle_timeout = timeout(d.idle_timeout_ms, 10, 3_600_000, "idle_timeout_ms");
    let max_stream_duration = timeout(d.max_stream_duration_ms, 100, 86_400_000, "max_stream_duration_ms");
    let rpm = d.rpm.map(|v| {
        u32::try_from(v).ok().filter(|v| (1..=10_000_000).contains(v)).unwrap_or_else(|| {
            issue(issues, at("rpm"), "must be 1-10000000 requests per minute");
            1
        })
    });
    let tpm = d.tpm.map(|v| {
        if !(1..=10_000_000_000).contains(&v) {
            issue(issues, at("tpm"), "must be 1-10000000000 tokens per minute");
        }
        v.max(1)
    });
    DeploymentConfig {
        provider,
        provider_model,
        priority,
        weight,
        connect_timeout,
        first_byte_timeout,
        idle_timeout,
        max_stream_duration,
        rpm,
        tpm,
    }
}

/// Resolves every secret reference of the policy now, so a reload with a missing secret
/// fails before it is swapped in. Errors name the reference, never the value.
impl ProviderConfig {
    /// The identity-signing secret, resolved (at least 32 bytes).
    pub fn resolve_identity_key(
        &self,
        env: crate::EnvLookup<'_>,
    ) -> Result<Option<(String, SecretString)>, crate::SecretError> {
        match &self.identity {
            None => Ok(None),
            Some((id, r)) => {
                let s = r.resolve(env)?;
                if s.expose_secret().len() < 32 {
                    return Err(crate::SecretError::IdentityKeyTooShort(self.name.clone()));
                }
                Ok(Some((id.clone(), s)))
            }
        }
    }

    /// The SigV4 credentials of a Bedrock provider, resolved.
    pub fn resolve_aws_keys(&self, env: crate::EnvLookup<'_>) -> Result<Option<AwsCredentials>, crate::SecretError> {
        let Some(k) = &self.aws_keys else { return Ok(None) };
        let session_token = match &k.session_token {
            Some(r) => Some(r.resolve(env)?),
            None => None,
        };
        Ok(Some(AwsCredentials {
            access_key_id: k.access_key_id.resolve(env)?,
            secret_access_key: k.secret_access_key.resolve(env)?,
            session_token,
        }))
    }

    pub fn resolve_api_key(&self, env: crate::EnvLookup<'_>) -> Result<Option<SecretString>, crate::SecretError> {
        match &self.api_key {
            None => Ok(None),
            Some(r) => {
                let s = r.resolve(env)?;
                if s.expose_secret().len() > 4096 || s.expose_secret().chars().any(|c| c.is_control()) {
                    return Err(crate::SecretError::NotAHeaderValue(self.name.clone()));
                }
                Ok(Some(s))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mocks_stream_delay_defaults_to_a_visible_pause_and_is_bounded() {
        assert_eq!(Config::from_toml("").unwrap().policy.mock_stream_delay, Duration::from_millis(25));
        assert_eq!(Config::default().policy.mock_stream_delay, Duration::from_millis(25));
        let off = Config::from_toml("[mock]\nstream_delay_ms = 0\n").unwrap();
        assert_eq!(off.policy.mock_stream_delay, Duration::ZERO);
        let err = Config::from_toml("[mock]\nstream_delay_ms = 5000\n").unwrap_err();
        assert_eq!(err.issues()[0].path, "mock.stream_delay_ms");
    }

    #[test]
    fn empty_config_is_the_embedded_default() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.server.data_listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.server.admin_listen.to_string(), "127.0.0.1:8081");
        assert!(matches!(c.server.store, StoreUrl::Embedded));
        assert!(c.policy.mock_enabled);
    }

    #[test]
    fn cors_origins_are_exact_origins_in_the_form_browsers_send() {
        let c = Config::from_toml(
            "[server]\nadmin_cors_origins = [\"HTTPS://Ops.Example.com\", \"https://ops.example.com:443/\", \"http://localhost:3000\"]",
        )
        .unwrap();
        assert_eq!(c.server.admin_cors_origins, vec!["http://localhost:3000", "https://ops.example.com"]);
        assert!(Config::default().server.admin_cors_origins.is_empty(), "none by default");
        for bad in [
            "*",
            "null",
            "https://*.example.com",
            "ops.example.com",
            "https://ops.example.com/console",
            "https://ops.example.com?x=1",
            "https://admin:pw@ops.example.com",
            "ftp://ops.example.com",
            "file:///etc/passwd",
            "https://ops.example.com:",
        ] {
            let err = Config::from_toml(&format!("[server]\nadmin_cors_origins = [\"{bad}\"]")).unwrap_err();
            assert!(err.issues().iter().any(|i| i.path == "server.admin_cors_origins"), "{bad}: {:?}", err.issues());
        }
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_name() {
        let err = Config::from_toml("[server]\ndata_listn = \"x\"\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("data_listn"), "{msg}");
        assert!(msg.contains("line 2"), "{msg}");
    }

    #[test]
    fn the_response_cache_bounds_are_checked() {
        let c = Config::from_toml("[cache]\nmax_bytes = 8388608\nmax_entry_bytes = 65536\n").unwrap();
        assert_eq!(c.server.cache, CacheSettings { max_bytes: 8 << 20, max_entry_bytes: 64 << 10 });
        assert_eq!(Config::default().server.cache, CacheSettings::default());
        for (text, path) in [
            ("[cache]\nmax_bytes = 10", "cache.max_bytes"),
            ("[cache]\nmax_entry_bytes = 0", "cache.max_entry_bytes"),
            ("[cache]\nmax_bytes = 2097152\nmax_entry_bytes = 4194304", "cache.max_entry_bytes"),
            (
                "[[models]]\nname = \"m\"\nprovider = \"mock\"\ncache_ttl_seconds = 604801",
                "models[0].cache_ttl_seconds",
            ),
        ] {
            let err = Config::from_toml(text).unwrap_err();
            assert!(err.issues().iter().any(|i| i.path == path), "{text}: {:?}", err.issues());
        }
        assert!(Config::from_toml("[cache]\nttl = 3").is_err(), "unknown fields are errors");
    }

    #[test]
    fn all_errors_are_collected_with_paths() {
        let text = r#"
            [limits]
            max_body_bytes = 0
            [[providers]]
            name = "mock"
            kind = "nope"
            base_url = "ftp://x"
            [[models]]
            name = "m"
            provider = "missing"
            aliases = ["m"]
        "#;
        let err = Config::from_toml(text).unwrap_err();
        let paths: Vec<&str> = err.issues().iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "limits.max_body_bytes",
                "providers[0].name",
                "providers[0].kind",
                "providers[0].base_url",
                "models[0].aliases[0]",
                "models[0].provider",
            ]
        );
    }

    #[test]
    fn anthropic_providers_have_their_defaults_need_a_key_and_serve_chat_only() {
        let ok = Config::from_toml(
            "[[providers]]\nname = \"claude\"\nkind = \"anthropic\"\napi_key = \"env:K\"\n\
             [[models]]\nname = \"c\"\nprovider = \"claude\"\n",
        )
        .unwrap();
        let p = &ok.policy.providers[0];
        assert_eq!((p.kind, p.base_url.as_str()), (ProviderKind::Anthropic, "https://api.anthropic.com/v1"));
        let err = Config::from_toml(
            "[[providers]]\nname = \"claude\"\nkind = \"anthropic\"\n\
             [[models]]\nname = \"e\"\nprovider = \"claude\"\nkind = \"embedding\"\n",
        )
        .unwrap_err();
        let paths: Vec<&str> = err.issues().iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, ["providers[0].api_key", "models[0].provider"]);
    }

    #[test]
    fn model_fallbacks_name_other_models_of_the_same_kind() {
        let base = "[[providers]]\nname = \"a\"\nbase_url = \"http://127.0.0.1:1/v1\"\n\
             [[models]]\nname = \"e\"\nkind = \"embedding\"\nprovider = \"a\"\n\
             [[models]]\nname = \"n\"\nprovider = \"a\"\naliases = [\"n-alias\"]\n";
        let ok = Config::from_toml(&format!("{base}[[models]]\nname = \"m\"\nprovider = \"a\"\nfallbacks = [\"n\"]\n"))
            .unwrap();
        assert_eq!(ok.policy.models[2].fallbacks, ["n"]);
        let err = Config::from_toml(&format!(
            "{base}[[models]]\nname = \"m\"\nprovider = \"a\"\n\
             fallbacks = [\"m\", \"e\", \"n-alias\", \"nope\", \"n\"]\n\
             [[models]]\nname = \"d\"\nprovider = \"a\"\nfallbacks = [\"n\", \"n\"]\n\
             [[models.deployments]]\nprovider = \"a\"\nprovider_model = \"d\"\n"
        ))
        .unwrap_err();
        let paths: Vec<&str> = err.issues().iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "models[3].deployments[0]",
                "models[2].fallbacks",
                "models[2].fallbacks[0]",
                "models[2].fallbacks[1]",
                "models[2].fallbacks[2]",
                "models[2].fallbacks[3]",
                "models[3].fallbacks[1]",
            ],
            "too many; itself, another kind, an alias, an unknown name; the same deployment twice; a model twice"
        );
    }

    #[test]
    fn deployments_name_providers_that_serve_the_model_with_priorities_and_weights_in_range() {
        let ok = Config::from_toml(
            "[[providers]]\nname = \"a\"\nbase_url = \"http://127.0.0.1:1/v1\"\n\
             [[providers]]\nname = \"b\"\nbase_url = \"http://127.0.0.1:2/v1\"\n\
             [[models]]\nname = \"m\"\nprovider = \"a\"\nweight = 3\n\
             [[models.deployments]]\nprovider = \"b\"\nprovider_model = \"m2\"\npriority = 1\n",
        )
        .unwrap();
        let d = &ok.policy.models[0].deployments;
        assert_eq!(d.len(), 2);
        assert_eq!((d[0].provider.as_str(), d[0].weight, d[0].priority), ("a", 3, 0));
        assert_eq!((d[1].provider.as_str(), d[1].provider_model.as_str(), d[1].priority), ("b", "m2", 1));
        let many: String =
            (0..16).map(|i| format!("[[models.deployments]]\nprovider = \"a\"\nprovider_model = \"x{i}\"\n")).collect();
        let err = Config::from_toml(&format!(
            "[[providers]]\nname = \"a\"\nbase_url = \"http://127.0.0.1:1/v1\"\n\
             [[providers]]\nname = \"c\"\nkind = \"anthropic\"\napi_key = \"env:K\"\n\
             [[models]]\nname = \"m\"\nprovider = \"a\"\nweight = 0\n\
             [[models.deployments]]\nprovider = \"nope\"\npriority = 101\n\
             [[models]]\nname = \"e\"\nkind = \"embedding\"\nprovider = \"a\"\n\
             [[models.deployments]]\nprovider = \"c\"\n\
             [[models]]\nname = \"x\"\nprovider = \"a\"\n{many}"
        ))
        .unwrap_err();
        let paths: Vec<&str> = err.issues().iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "models[0].weight",
                "models[0].deployments[0].provider",
                "models[0].deployments[0].priority",
                "models[1].deployments[0].provider",
                "models[2].deployments",
            ]
        );
    }

    #[test]
    fn azure_and_gemini_providers_have_their_defaults_and_rules() {
        let ok = Config::from_toml(
            "[[providers]]\nname = \"az\"\nkind = \"azure_openai\"\nbase_url = \"https://r.openai.azure.com\"\n\
             api_key = \"env:K\"\nauth = \"bearer\"\n\
             [[providers]]\nname = \"g\"\nkind = \"gemini\"\napi_key = \"env:K\"\n\
             [[models]]\nname = \"a\"\nprovider = \"az\"\nprovider_model = \"prod-4o\"\n",
        )
        .unwrap();
        let (az, g) = (&ok.policy.providers[0], &ok.policy.providers[1]);
        assert_eq!(
            (az.kind, az.api_version.as_deref(), az.bearer),
            (ProviderKind::AzureOpenAi, Some("2024-10-21"), true)
        );
        assert_eq!(
            (g.kind, g.base_url.as_str()),
            (ProviderKind::Gemini, "https://generativelanguage.googleapis.com/v1beta")
        );
        let err = Config::from_toml(
            "[[providers]]\nname = \"az\"\nkind = \"azure_openai\"\napi_version = \"x/y\"\nauth = \"basic\"\n\
             [[providers]]\nname = \"g\"\nkind = \"gemini\"\napi_key = \"env:K\"\napi_version = \"1\"\n\
             [[models]]\nname = \"a\"\nprovider = \"az\"\nprovider_model = \"..\"\n\
             [[models]]\nname = \"e\"\nprovider = \"g\"\nkind = \"embedding\"\n",
        )
        .unwrap_err();
        let paths: Vec<&str> = err.issues().iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "providers[0].base_url",
                "providers[0].api_key",
                "providers[0].api_version",
                "providers[0].auth",
                "providers[1].api_version",
                "models[0].provider_model",
                "models[1].provider",
            ]
        );
    }

    #[test]
    fn guardrails_layer_over_the_default_and_report_paths_without_patterns() {
        let c = Config::from_toml("[guardrails]\ndetectors = { pii = { input = \"redact\" } }\n").unwrap();
        let d = &c.policy.guardrails.spec.detectors;
        assert_eq!(d["pii"].input, Some(gatehouse_guardrails::Action::Redact));
        assert_eq!(d["secret"].input, Some(gatehouse_guardrails::Action::Block), "the default stays underneath");
        let err = Config::from_toml(
            "[guardrails]\nscan_timeout_ms = 0\ncustom = [{ name = \"x\", regex = \"(SECRET-PATTERN\" }]\n",
        )
        .unwrap_err();
        let paths: Vec<&str> = err.issues().iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, ["guardrails.custom[0].regex", "guardrails.scan_timeout_ms"]);
        assert!(!err.to_string().contains("SECRET-PATTERN"));
    }

    #[test]
    fn several_replicas_need_shared_limits() {
        let err = Config::from_toml("[server]\nreplicas = 3\n").unwrap_err();
        assert_eq!(err.issues()[0].path, "server.replicas");
        let c = Config::from_toml("[server]\nreplicas = 3\n[redis]\nurl = \"env:REDIS_URL\"\n").unwrap();
        assert_eq!(c.server.replicas.get(), 3);
    }

    #[test]
    fn redis_needs_a_secret_reference_and_sane_bounds() {
        let c = Config::from_toml("[redis]\nurl = \"env:REDIS_URL\"\n").unwrap();
        let r = c.server.redis.unwrap();
        assert_eq!(
            (r.key_prefix.as_str(), r.timeout, r.rates_fail_open),
            ("gatehouse", Duration::from_millis(250), true)
        );
        let err = Config::from_toml(
            "[redis]\nurl = \"redis://:hunter2@db:6379\"\nkey_prefix = \"a b\"\ntimeout_ms = 5\nrates_on_failure = \"maybe\"\n",
        )
        .unwrap_err();
        let paths: Vec<&str> = err.issues().iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, ["redis.url", "redis.key_prefix", "redis.timeout_ms", "redis.rates_on_failure"]);
        assert!(!err.to_string().contains("hunter2"));
        let err = Config::from_toml("[redis]\ntimeout_ms = 100\n").unwrap_err();
        assert_eq!(err.issues()[0].path, "redis.url");
    }

    #[test]
    fn literal_secrets_are_refused_and_never_echoed() {
        let text = "[[providers]]\nname = \"openai\"\nkind = \"openai\"\napi_key = \"sk-live-SECRETSECRET\"\n";
        let err = Config::from_toml(text).unwrap_err().to_string();
        assert!(err.contains("providers[0].api_key"), "{err}");
        assert!(!err.contains("SECRETSECRET"), "{err}");
    }

    #[test]
    fn syntax_errors_do_not_echo_the_file() {
        let text = "[server]\nmaster_key = \"sk-live-SECRETSECRET\nbroken";
        let err = Config::from_toml(text).unwrap_err().to_string();
        assert!(!err.contains("SECRETSECRET"), "{err}");
        assert!(err.contains("line"), "{err}");
    }

    #[test]
    fn static_changes_are_named() {
        let a = Config::from_toml("").unwrap().server;
        let b = Config::from_toml("[server]\ndata_listen = \"127.0.0.1:9999\"").unwrap().server;
        assert_eq!(a.changed_fields(&b), ["server.data_listen"]);
        assert!(a.changed_fields(&a.clone()).is_empty());
    }
}
