//! The control plane (`/admin/v1`, `/metrics`, health) on its own port, loopback by default.
//! Beside the data plane, not on top of it: its view of the data plane's services is the
//! `ControlHandle`. Every route runs through one wrapper ([`service`]) driven by the route
//! table: authenticate the admin token, run the route's service function (strict body, the
//! store, the rights check), audit under the table's action, render. Responses never contain a key digest; a key's secret appears once,
//! in the answer to its creation.
//!
//! Authorization is [`rbac`]: one permission per route, one matrix, one check that also
//! scopes by organization (another tenant's objects answer 404). Every decision is audited.

// The OpenAPI component table is one large `json!` literal.
#![recursion_limit = "256"]

pub mod audit;
pub mod auth;
pub mod body;
pub mod capabilities;
mod credentials;
mod deployments;
mod keys;
mod limits;
mod mcp;
mod members;
pub mod openapi;
mod orgs;
mod policies;
pub mod ratelimit;
pub mod rbac;
mod reply;
pub mod routes;
pub mod service;
pub mod sessions;
mod tokens;
pub mod trail;
mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use gatehouse_core::{Denial, DenyCode};
use gatehouse_security::KeyHasher;
use gatehouse_store::Store;
use metrics_exporter_prometheus::PrometheusHandle;

#[derive(Clone)]
pub struct AdminState {
    pub store: Store,
    /// The data plane's shared services, through named operations only.
    pub control: gatehouse_gates::control::ControlHandle,
    pub tokens: Arc<gatehouse_tokens::Capabilities>,
    /// OIDC issuers trusted for the control plane (`planes` includes `control`).
    pub federation: Option<Arc<gatehouse_oidc::Federation>>,
    pub hasher: Arc<KeyHasher>,
    pub metrics: Option<PrometheusHandle>,
    pub limits: Arc<ratelimit::AdminLimits>,
    pub audit: gatehouse_audit::Auditor,
    pub webhooks: Arc<gatehouse_audit::webhooks::Webhooks>,
    /// The Host values this plane answers (DNS rebinding); health probes are exempt.
    pub allowed_hosts: Arc<gatehouse_http::AllowedHosts>,
    /// The last verification of each audit chain here, and the one-at-a-time lock.
    pub verifications: Arc<trail::Verifications>,
}

/// The control plane's router. `console`, when given, answers every path the API does not
/// (the web console at `/`), behind the same Host check.
pub fn router(state: AdminState, console: Option<Router>) -> Router {
    // Built from the route table only: a route cannot exist without its permission entry.
    let mut api = Router::new();
    for spec in routes::ROUTES {
        if let Some(h) = routes::handler(spec) {
            api = api.route(spec.path, h);
        }
    }
    // rate limits before authentication: token guessing is bounded per source address
    let api = api.route_layer(axum::middleware::from_fn_with_state(state.clone(), ratelimit::limit));
    // Everything but the probes answers only an allowed Host, unknown paths included (a probe
    // reveals nothing, and orchestrators probe by pod address).
    let guarded = api
        .route("/admin/v1/openapi.json", get(|| async { axum::Json(openapi::document()) }))
        .route("/metrics", get(metrics))
        .method_not_allowed_fallback(|| async { Denial::new(DenyCode::MethodNotAllowed) });
    let guarded = match console {
        Some(console) => guarded.fallback_service(console),
        None => guarded.fallback(|| async { Denial::new(DenyCode::NotFound) }),
    };
    let guarded = guarded
        .layer(axum::middleware::from_fn_with_state(state.allowed_hosts.clone(), gatehouse_http::require_allowed_host));
    Router::new()
        .route("/healthz", get(gatehouse_http::healthz))
        .route("/readyz", get(readyz))
        .merge(guarded)
        .with_state(state)
}

async fn metrics(State(s): State<AdminState>) -> Response {
    match &s.metrics {
        Some(h) => ([(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], h.render()).into_response(),
        None => Denial::new(DenyCode::NotFound).into_response(),
    }
}

async fn readyz(State(s): State<AdminState>) -> Response {
    gatehouse_http::ready(&s.store).await
}
