//! The live configuration: one immutable snapshot of gates and upstreams behind an
//! `ArcSwap`. A request loads the snapshot once and uses it to the end, so a reload never
//! changes the rules under a request in flight.

use std::sync::Arc;

use arc_swap::ArcSwap;
use gatehouse_config::{EnvLookup, Policy, RequestLimits};
use gatehouse_gates::Gates;
use gatehouse_gates::authenticate::Credentials;
use gatehouse_gates::guardrails::Policies;
use gatehouse_gates::limits::LimitsBackend;
use gatehouse_gates::meter::AuditHook;
use gatehouse_gates::route::RouteTable;
use gatehouse_gates::tenant_routes::RoutingRules;
use gatehouse_providers::RequestBounds;
use gatehouse_store::Store;

use crate::Upstream;

pub struct Runtime {
    pub gates: Gates,
    /// Indexed like the policy's provider list (`Target::Upstream(i)`).
    pub upstreams: Vec<Upstream>,
    pub limits: RequestLimits,
    /// Stored provider credentials (shared by every snapshot).
    pub credentials: Arc<gatehouse_gates::credentials::CredentialTable>,
    /// The mock's pause between streamed words.
    pub mock_stream_delay: std::time::Duration,
}

/// What every snapshot shares and no reload rebuilds: the credential verifiers and their
/// caches, the policy tables each replica keeps fresh from the store, the limits backend and
/// the audit hook. Lives beside the snapshot, not in it.
#[derive(Clone)]
pub struct Services {
    pub creds: Credentials,
    pub guardrails: Arc<Policies>,
    pub limits: Arc<LimitsBackend>,
    /// Tenants' routing rules.
    pub routing: Arc<RoutingRules>,
    /// Stored provider credentials, opened.
    pub credentials: Arc<gatehouse_gates::credentials::CredentialTable>,
    /// The response cache (shared across config snapshots).
    pub cache: Arc<gatehouse_gates::cache::ResponseCache>,
    pub audit: AuditHook,
    /// Every origin some project lets read its answers (for preflights; crate::cors).
    pub cors: Arc<crate::cors::CorsOrigins>,
}

/// Builds a snapshot; fails (leaving the running one in place) if any provider cannot be
/// built, e.g. a secret reference that does not resolve.
pub fn build_runtime(policy: &Policy, services: &Services, env: EnvLookup<'_>) -> Result<Runtime, crate::Error> {
    let upstreams = policy
        .providers
        .iter()
        .map(|p| {
            let deployments = policy.models.iter().flat_map(|m| &m.deployments).filter(|d| d.provider == p.name);
            let connect: Vec<std::time::Duration> = deployments.filter_map(|d| d.connect_timeout).collect();
            Upstream::build(p, env, &connect)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let table = Arc::new(RouteTable::build(policy));
    let l = policy.limits;
    let bounds = RequestBounds {
        max_depth: l.max_json_depth.get(),
        max_messages: l.max_messages.get(),
        max_embedding_inputs: l.max_embedding_inputs.get(),
    };
    // last: the guardrail default is shared with the running snapshot, so it changes only
    // once nothing else can fail
    services
        .guardrails
        .set_default(&policy.guardrails.spec, policy.guardrails.scan_timeout)
        .map_err(gatehouse_gates::Error::from)?;
    let limits = gatehouse_gates::limits::LimitsGate::new(services.limits.clone(), policy);
    let s = services;
    let gates = Gates::new(
        s.creds.clone(),
        s.guardrails.clone(),
        limits,
        table,
        gatehouse_gates::TenantRouting { rules: s.routing.clone(), cache: s.cache.clone() },
        bounds,
        s.audit.clone(),
    );
    Ok(Runtime {
        gates,
        upstreams,
        limits: l,
        credentials: s.credentials.clone(),
        mock_stream_delay: policy.mock_stream_delay,
    })
}

/// Shared by every handler of the data plane. The router clones it for every request: one
/// reference count, not one per service inside.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub runtime: Arc<ArcSwap<Runtime>>,
    pub store: Store,
    /// Static across reloads; every rebuilt snapshot gets them.
    pub services: Services,
    /// Token exchange (`POST /v1/token`), when `[[exchange]]` rules are configured.
    pub exchange: Option<Arc<crate::exchange::Exchange>>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    pub fn new(
        runtime: Runtime,
        services: Services,
        store: Store,
        exchange: Option<Arc<crate::exchange::Exchange>>,
    ) -> Self {
        Self(Arc::new(Shared { runtime: Arc::new(ArcSwap::from_pointee(runtime)), store, services, exchange }))
    }
}
