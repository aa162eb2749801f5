//! Who is asking ([`Principal`]) and what has been decided so far ([`RequestCx`]).

use std::sync::Arc;
use std::time::Instant;

use secrecy::SecretString;

use crate::{DenyCode, KeyId, OrgId, ProjectId, RequestId};

/// The authenticated caller. Built only by the authenticate gate.
#[derive(Clone, Debug)]
pub struct Principal {
    pub org: OrgId,
    pub project: ProjectId,
    pub key: KeyId,
    /// `None`: every model the gateway serves; `Some`: only these (canonical names).
    pub allowed_models: Option<Arc<[Box<str>]>>,
}

impl Principal {
    /// Whether this principal may use a model, by canonical name.
    pub fn may_use_model(&self, canonical: &str) -> bool {
        match &self.allowed_models {
            None => true,
            Some(list) => list.iter().any(|m| &**m == canonical),
        }
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
}

/// What the data plane knows about one request as it moves through the gates.
/// Holds no prompt content: gates that need content get the request separately.
#[derive(Debug)]
pub struct RequestCx {
    pub request_id: RequestId,
    pub started: Instant,
    /// The presented credential, taken from the headers (which are then never forwarded).
    pub credential: Option<SecretString>,
    pub principal: Option<Principal>,
    /// The model name as the caller asked for it, once parsed.
    pub requested_model: Option<Box<str>>,
    /// Set by the route gate.
    pub route: Option<Arc<Route>>,
    pub trail: Vec<TrailEntry>,
    /// The peer address, for the audit trail.
    pub source: Option<std::net::IpAddr>,
}

impl RequestCx {
    pub fn new(request_id: RequestId, credential: Option<SecretString>) -> Self {
        Self {
            request_id,
            started: Instant::now(),
            credential,
            principal: None,
            requested_model: None,
            route: None,
            trail: Vec::with_capacity(10),
            source: None,
        }
    }

    pub fn record(&mut self, gate: GateName, outcome: GateOutcome) {
        self.trail.push(TrailEntry { gate, outcome });
    }

    /// The gates passed so far, for logs: "authenticate,parse,authorize".
    pub fn trail_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.trail.iter().map(|e| e.gate.as_str())
    }
}
