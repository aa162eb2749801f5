//! Who is asking ([`Principal`]) and what has been decided so far ([`RequestCx`]).

use std::sync::Arc;
use std::time::Instant;

use secrecy::SecretString;

use crate::scope::ScopeSet;
use crate::{DenyCode, KeyId, OrgId, ProjectId, RequestId, TokenId};

/// Which credential authenticated the caller (by public id; never the secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    Key(KeyId),
    /// A capability token: the registered token whose chain was presented (the last
    /// delegation, or the root).
    Token(TokenId),
    /// A federated identity: the configured issuer's name and the token's subject.
    Federated {
        issuer: Arc<str>,
        subject: Arc<str>,
    },
}

/// What a token or federated identity was granted beyond the key-style model allow-list.
#[derive(Clone, Debug, Default)]
pub struct Grant {
    /// The scopes the caller may act in (API keys: unrestricted).
    pub scopes: ScopeSet,
    /// Registered tokens from the root to the presented one (delegations in order).
    pub chain: Arc<[TokenId]>,
    /// Spend caps in micro-USD, each for the chain node at that index and its descendants.
    pub budgets_micro_usd: Arc<[(usize, u64)]>,
    /// Requests-per-minute caps, by chain node.
    pub rpm: Arc<[(usize, u32)]>,
    /// Roles of a federated identity (already checked against the issuer's mapping).
    pub roles: Arc<[Box<str>]>,
}

/// The authenticated caller. Built only by the authenticate gate.
#[derive(Clone, Debug)]
pub struct Principal {
    pub org: OrgId,
    pub project: ProjectId,
    pub credential: Credential,
    /// `None`: every model the gateway serves; `Some`: only these (canonical names).
    pub allowed_models: Option<Arc<[Box<str>]>>,
    /// `None` for API keys (their whole project's data plane).
    pub grant: Option<Arc<Grant>>,
    /// Requests per minute for this credential itself (an API key: its project's
    /// `default_limits.rpm`); token rates are in the grant, per delegation node.
    pub rpm: Option<u32>,
    /// Tokens per minute for this credential itself (an API key: `default_limits.tpm`).
    pub tpm: Option<u64>,
    /// Browser origins that may read the data plane's answers to this credential: its
    /// project's CORS allow-list (`None`: none, the default).
    pub cors_origins: Option<Arc<[Box<str>]>>,
}

/// Whether a CORS allow-list (exact origins, as browsers send `Origin`) holds `origin`.
pub fn lists_origin(list: &[Box<str>], origin: &[u8]) -> bool {
    list.iter().any(|o| o.as_bytes() == origin)
}

impl Principal {
    /// Whether this principal may use a model, by canonical name.
    pub fn may_use_model(&self, canonical: &str) -> bool {
        match &self.allowed_models {
            None => true,
            Some(list) => list.iter().any(|m| &**m == canonical),
        }
    }

    /// Whether a page of `origin` may read the answers to this principal's requests.
    pub fn allows_origin(&self, origin: &[u8]) -> bool {
        self.cors_origins.as_deref().is_some_and(|list| lists_origin(list, origin))
    }

    /// Whether this principal may perform an action (`chat:completions`, ...).
    pub fn may(&self, action: &str) -> bool {
        self.grant.as_ref().is_none_or(|g| g.scopes.allows(action))
    }
}

/// Where a resolved model is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The built-in offline mock provider.
    Mock,
    /// The configured provider at this index of the policy's provider list.
    Upstream(usize),
}

/// A model resolved to the deployment that serves it.
#[derive(Clone, Debug)]
pub struct Route {
    /// Canonical model name (aliases resolve to it).
    pub model: Arc<str>,
    pub provider: Arc<str>,
    pub target: Target,
    /// The provider's own name for the model.
    pub provider_model: Arc<str>,
    /// This deployment's health, shared by every request routed to it.
    pub breaker: Arc<crate::Breaker>,
    /// The model's retries, shared by its deployments.
    pub retries: Arc<crate::Retries>,
    /// The model's hedging, when configured (shared by its deployments).
    pub hedge: Option<Arc<crate::Hedge>>,
    /// The provider is called with the caller's own key (non-custodial), not the gateway's.
    pub caller_key: bool,
    /// This deployment's connect timeout, when not its provider's.
    pub connect_timeout: Option<std::time::Duration>,
    /// This deployment's first-byte timeout, when not its provider's.
    pub first_byte_timeout: Option<std::time::Duration>,
    /// This deployment's longest gap between stream events, when not its provider's.
    pub idle_timeout: Option<std::time::Duration>,
    /// This deployment's longest answer (whole or streamed), when not its provider's.
    pub max_stream_duration: Option<std::time::Duration>,
    /// Where the deployment's provider runs (its configured region label), for tenant routing
    /// rules.
    pub region: Option<Arc<str>>,
    /// The upstream quota the gateway keeps this deployment under, if it has one.
    pub quota: Option<Quota>,
    /// The model's cap on how long the response cache keeps its answers (zero: never kept);
    /// `None`: the tenant's TTL alone.
    pub cache_ttl: Option<std::time::Duration>,
    /// The provider gets signed identity headers (who is asking): its answers may be the
    /// caller's own, so they are never cached.
    pub identity_headers: bool,
}

impl Route {
    /// A deployment with none of the per-deployment options set (no hedging, timeouts,
    /// region, quota or cache cap; the gateway's own key; no identity headers).
    pub fn new(
        model: Arc<str>,
        provider: Arc<str>,
        target: Target,
        provider_model: Arc<str>,
        breaker: Arc<crate::Breaker>,
        retries: Arc<crate::Retries>,
    ) -> Route {
        Route {
            model,
            provider,
            target,
            provider_model,
            breaker,
            retries,
            hedge: None,
            caller_key: false,
            connect_timeout: None,
            first_byte_timeout: None,
            idle_timeout: None,
            max_stream_duration: None,
            region: None,
            quota: None,
            cache_ttl: None,
            identity_headers: false,
        }
    }
}

/// A deployment's upstream quota: requests and tokens per minute, counted in the limits store
/// (shared by the replicas on Redis) under `deployment:<model>/<provider>/<provider_model>`.
#[derive(Clone, Debug)]
pub struct Quota {
    pub rpm: Option<u32>,
    pub tpm: Option<u64>,
    pub requests_key: Box<str>,
    pub tokens_key: Box<str>,
}

/// A stable name for each step of the request path: recorded in the trail, logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GateName {
    Authenticate,
    Parse,
    Authorize,
    GuardrailsIn,
    Route,
    Limits,
    Cache,
    Provider,
    GuardrailsOut,
    Meter,
}

impl GateName {
    pub const fn as_str(self) -> &'static str {
        match self {
            GateName::Authenticate => "authenticate",
            GateName::Parse => "parse",
            GateName::Authorize => "authorize",
            GateName::GuardrailsIn => "guardrails_in",
            GateName::Route => "route",
            GateName::Limits => "limits",
            GateName::Cache => "cache",
            GateName::Provider => "provider",
            GateName::GuardrailsOut => "guardrails_out",
            GateName::Meter => "meter",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GateOutcome {
    Pass,
    Deny(DenyCode),
    Serve,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrailEntry {
    pub gate: GateName,
    pub outcome: GateOutcome,
    /// When the step finished, from the request's start (a step starts where the one before
    /// it finished): per-gate spans are drawn from this. Read only while tracing is on (zero
    /// otherwise: the clock is not read for nothing).
    pub at: std::time::Duration,
}

/// The credential a request presents: none, exactly one, or more than one place holding one
/// (refused as ambiguous, never served with whichever was read first).
#[derive(Debug, Default)]
pub enum Presented {
    #[default]
    Nothing,
    One(SecretString),
    Ambiguous,
}

impl From<Option<SecretString>> for Presented {
    fn from(c: Option<SecretString>) -> Self {
        c.map_or(Presented::Nothing, Presented::One)
    }
}

/// What the data plane knows about one request as it moves through the gates.
/// Holds no prompt content: gates that need content get the request separately.
#[derive(Debug)]
pub struct RequestCx {
    pub request_id: RequestId,
    pub started: Instant,
    /// The presented credential, taken from the headers (which are then never forwarded).
    pub credential: Presented,
    pub principal: Option<Principal>,
    /// The model name as the caller asked for it, once parsed.
    pub requested_model: Option<Box<str>>,
    /// Set by the route gate: the deployment to try first (then the one that served).
    pub route: Option<Arc<Route>>,
    /// Set by the route gate: the model's other deployments, in the order to fall back to.
    pub fallbacks: Vec<Arc<Route>>,
    pub trail: Vec<TrailEntry>,
    /// The W3C trace context, only while tracing is on (`[telemetry]`).
    pub trace: Option<crate::TraceContext>,
    /// The peer address, for the audit trail.
    pub source: Option<std::net::IpAddr>,
    /// What the guardrails did, in and out: detector names and actions, never content.
    pub guardrails: Vec<GuardrailHit>,
    /// The tightest request rate that applied (for the `x-ratelimit-*` headers).
    pub rate_limit: Option<RateLimitInfo>,
    /// The tightest token rate (tokens per minute) that applied, for `x-ratelimit-*-tokens`.
    pub token_rate_limit: Option<RateLimitInfo>,
    /// A limit check could not be made (its store was down) and passed by policy (fail open):
    /// the request is audited whatever the audit level.
    pub limits_degraded: bool,
    /// How long the client said it will wait (`X-Stainless-Timeout`, as the official SDKs
    /// send it): the request's deadline, within what the deployment allows.
    pub timeout_hint: Option<std::time::Duration>,
    /// The caller asked (`x-gatehouse-debug: routing`) to be told which deployment served it;
    /// honoured only for a credential granted `debug:routing`.
    pub debug_routing: bool,
    /// The stored provider credential presented to the provider that answered (`<id>:v<n>`).
    pub provider_credential: Option<Arc<str>>,
    /// The caller's own provider key (`x-gatehouse-provider-key`), for models served with the
    /// caller's key: forwarded, never stored, logged, cached or audited.
    pub caller_provider_key: Option<SecretString>,
    /// The caller's `Cache-Control` directives for the response cache.
    pub cache_control: CacheControl,
    /// The answer came from the response cache (no provider was called).
    pub cache_hit: bool,
    /// An MCP message: what it asked of which server (names and sizes only).
    pub mcp: Option<Box<McpCall>>,
}

/// What an MCP message asked (docs/MCP.md): the JSON-RPC method, the server's name, the tool or
/// prompt named (never a resource URI, which can carry data; never arguments or results) and
/// the sizes each way.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct McpCall {
    pub method: Box<str>,
    pub server: Box<str>,
    pub name: Option<Box<str>>,
    pub request_bytes: u64,
    pub response_bytes: u64,
}

/// What the caller's `Cache-Control` asked for (directives that can only make caching do less).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheControl {
    /// `no-store`: neither served from nor written to the cache.
    pub no_store: bool,
    /// `no-cache`: not served from the cache (a fresh answer may be kept).
    pub no_cache: bool,
}

impl CacheControl {
    /// From a `Cache-Control` header value (unknown directives ignored).
    pub fn parse(v: &[u8]) -> CacheControl {
        let mut c = CacheControl::default();
        for d in v.split(|b| *b == b',') {
            let d = d.trim_ascii();
            let name = d.split(|b| *b == b'=').next().unwrap_or_default();
            if name.eq_ignore_ascii_case(b"no-store") {
                c.no_store = true;
            } else if name.eq_ignore_ascii_case(b"no-cache") {
                c.no_cache = true;
            }
        }
        c
    }
}

/// One rate's standing after this request, in OpenAI's header terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimitInfo {
    /// Requests (or tokens) per minute.
    pub limit: u64,
    pub remaining: u64,
    /// Until the rate is back to a full burst.
    pub reset: std::time::Duration,
}

/// The tightest request rate and token rate that applied to a request, for OpenAI's
/// `x-ratelimit-*` headers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rates {
    pub requests: Option<RateLimitInfo>,
    pub tokens: Option<RateLimitInfo>,
}

/// One guardrail detector's effect on a request. Content-free: a name, an action, a count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuardrailHit {
    /// `in` or `out`.
    pub direction: &'static str,
    /// `flag`, `redact` or `block`.
    pub action: &'static str,
    /// `pii.email`, `secret.openai`, `prompt_injection.role_confusion`, `custom.<name>`.
    pub detector: std::borrow::Cow<'static, str>,
    pub count: u32,
}

impl RequestCx {
    pub fn new(request_id: RequestId, credential: Presented) -> Self {
        Self {
            request_id,
            started: Instant::now(),
            credential,
            principal: None,
            requested_model: None,
            route: None,
            fallbacks: Vec::new(),
            trail: Vec::with_capacity(10),
            trace: None,
            source: None,
            guardrails: Vec::new(),
            rate_limit: None,
            token_rate_limit: None,
            limits_degraded: false,
            timeout_hint: None,
            debug_routing: false,
            provider_credential: None,
            caller_provider_key: None,
            cache_control: CacheControl::default(),
            cache_hit: false,
            mcp: None,
        }
    }

    pub fn record(&mut self, gate: GateName, outcome: GateOutcome) {
        let at = if self.trace.is_some() { self.started.elapsed() } else { std::time::Duration::ZERO };
        self.trail.push(TrailEntry { gate, outcome, at });
    }

    pub fn rates(&self) -> Rates {
        Rates { requests: self.rate_limit, tokens: self.token_rate_limit }
    }

    /// The gates passed so far, for logs: "authenticate,parse,authorize".
    pub fn trail_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.trail.iter().map(|e| e.gate.as_str())
    }
}
