//! The control plane (`/admin/v1`, `/metrics`, health) on its own port, loopback by default.
//! Handlers are thin: authenticate the admin token, validate the body strictly, call the
//! store, map the result. Responses never contain a key digest; a key's secret appears once,
//! in the answer to its creation.
//!
//! Authorization is [`rbac`]: one permission per route, one matrix, one check that also
//! scopes by organization (another tenant's objects answer 404). Every decision is audited.

mod audit;
mod auth;
mod body;
mod keys;
mod members;
mod orgs;
pub mod rbac;
mod reply;
mod tokens;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use gatehouse_core::{Denial, DenyCode};
use gatehouse_gates::authenticate::KeyVerifier;
use gatehouse_proxy::AppState;
use gatehouse_security::KeyHasher;
use gatehouse_store::Store;
use metrics_exporter_prometheus::PrometheusHandle;

#[derive(Clone)]
pub struct AdminState {
    pub app: AppState,
    pub store: Store,
    pub verifier: Arc<KeyVerifier>,
    pub hasher: Arc<KeyHasher>,
    pub metrics: Option<PrometheusHandle>,
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/admin/v1/keys", post(keys::create).get(keys::list))
        .route("/admin/v1/keys/{id}", get(keys::get))
        .route("/admin/v1/keys/{id}/revoke", post(keys::revoke))
        .route("/admin/v1/tokens", post(tokens::create))
        .route("/admin/v1/audit", get(orgs::list_audit))
        .route("/admin/v1/orgs", post(orgs::create_org).get(orgs::list_orgs))
        .route("/admin/v1/orgs/{org}", get(orgs::get_org).patch(orgs::update_org))
        .route("/admin/v1/orgs/{org}/disable", post(orgs::disable_org))
        .route("/admin/v1/orgs/{org}/enable", post(orgs::enable_org))
        .route("/admin/v1/orgs/{org}/members", post(members::add).get(members::list))
        .route("/admin/v1/orgs/{org}/members/{user}", axum::routing::delete(members::remove))
        .route("/admin/v1/orgs/{org}/projects", post(orgs::create_project).get(orgs::list_projects))
        .route("/admin/v1/orgs/{org}/projects/{project}", get(orgs::get_project).patch(orgs::update_project))
        .route("/admin/v1/orgs/{org}/projects/{project}/disable", post(orgs::disable_project))
        .route("/admin/v1/orgs/{org}/projects/{project}/enable", post(orgs::enable_project))
        .route("/metrics", get(metrics))
        .route("/healthz", get(gatehouse_proxy::healthz))
        .route("/readyz", get(readyz))
        .fallback(|| async { Denial::new(DenyCode::NotFound) })
        .method_not_allowed_fallback(|| async { Denial::new(DenyCode::MethodNotAllowed) })
        .with_state(state)
}

async fn metrics(State(s): State<AdminState>) -> Response {
    match &s.metrics {
        Some(h) => ([(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], h.render()).into_response(),
        None => Denial::new(DenyCode::NotFound).into_response(),
    }
}

async fn readyz(State(s): State<AdminState>) -> Response {
    gatehouse_proxy::ready(&s.store).await
}
