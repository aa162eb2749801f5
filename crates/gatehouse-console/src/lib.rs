//! The web console at `/` on the control plane (docs/CONSOLE.md): sign-in, sessions and
//! server-rendered pages. It has no permission table and no store queries of its own for
//! tenant objects: every page runs the admin API's service functions for the session's
//! operator (`gatehouse_admin::service::invoke`), so the console and the API cannot disagree
//! on who may do what, and every action is audited under the same action names.
//!
//! Security model, in order of a request:
//! 1. The control plane's Host check and per-source rate limit (shared with the API).
//! 2. [`session`]: the `__Host-` cookie's secret, looked up by digest; unrevoked, within its
//!    idle and absolute deadlines, and its admin token (if any) still valid.
//! 3. [`forms`]: every state-changing request is same-origin (`Origin`/`Sec-Fetch-Site`) and
//!    carries the session's synchronizer token.
//! 4. [`page`]: a strict CSP (no inline script or style), no framing, no caching.

mod forms;
mod integrations;
mod oauth;
mod oidc;
mod orgs;
mod page;
mod pages;
mod passkeys;
mod policies;
mod projects;
mod session;
mod throttle;
mod tokens;
mod trail;
mod usage;
mod webauthn;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use gatehouse_admin::AdminState;
use gatehouse_config::console::ConsoleSettings;
use policies::Kind;

pub use session::COOKIE;

#[derive(Clone)]
pub struct ConsoleState {
    pub admin: AdminState,
    pub settings: Arc<ConsoleSettings>,
    /// OIDC issuers, of which those with a console client offer sign-in.
    pub federation: Option<Arc<gatehouse_oidc::Federation>>,
    failures: Arc<throttle::Failures<Option<std::net::IpAddr>>>,
    /// Failed passkey proofs per account (the passkey's actor).
    account_failures: Arc<throttle::Failures<String>>,
}

/// The console's router (state applied): mount it as the control plane's fallback so the API
/// keeps its own paths.
pub fn router(
    admin: AdminState,
    settings: ConsoleSettings,
    federation: Option<Arc<gatehouse_oidc::Federation>>,
) -> Router {
    let failures = Arc::new(throttle::Failures::new(settings.sign_in_failures_per_source, settings.lockout));
    let account_failures = Arc::new(throttle::Failures::new(settings.sign_in_failures_per_account, settings.lockout));
    let state =
        ConsoleState { admin: admin.clone(), settings: Arc::new(settings), federation, failures, account_failures };
    Router::new()
        .route("/", get(pages::home))
        .route("/sign-in", get(session::sign_in_page).post(session::sign_in))
        .route("/sign-in/oidc/callback", get(oidc::callback))
        .route("/sign-in/oidc/{issuer}", get(oidc::start))
        .route("/sign-in/oauth/callback", get(oauth::callback))
        .route("/sign-in/oauth/{name}", get(oauth::start))
        .route("/sign-in/passkey/options", post(passkeys::sign_in_options))
        .route("/sign-in/passkey", post(passkeys::sign_in))
        .route("/sign-out", post(session::sign_out))
        .route("/account", get(passkeys::account_page))
        .route("/account/passkeys/options", post(passkeys::register_options))
        .route("/account/passkeys", post(passkeys::register))
        .route("/account/passkeys/{id}/remove", post(passkeys::remove))
        .route("/confirm", get(passkeys::confirm_page).post(passkeys::confirm))
        .route("/confirm/options", post(passkeys::confirm_options))
        .route("/confirm/oidc", get(oidc::confirm_start))
        .route("/orgs", get(orgs::list).post(orgs::create))
        .route("/orgs/{org}", get(orgs::show))
        .route("/orgs/{org}/projects", post(orgs::create_project))
        .route("/orgs/{org}/guardrails", policies::org_routes(Kind::Guardrails))
        .route("/orgs/{org}/limits", policies::org_routes(Kind::Limits))
        .route("/orgs/{org}/projects/{project}", get(projects::show).post(projects::update))
        .route("/orgs/{org}/projects/{project}/guardrails", policies::project_routes(Kind::Guardrails))
        .route("/orgs/{org}/projects/{project}/limits", policies::project_routes(Kind::Limits))
        .route("/orgs/{org}/projects/{project}/{action}", post(projects::set_state))
        .route("/orgs/{org}/members", post(orgs::add_member))
        .route("/orgs/{org}/members/{user}/remove", post(orgs::remove_member))
        .route("/keys", get(pages::keys).post(pages::create_key))
        .route("/keys/{id}/revoke", post(pages::revoke_key))
        .route("/keys/{id}/rotate", post(pages::rotate_key))
        .route("/tokens", get(tokens::admin_tokens).post(tokens::create_admin_token))
        .route("/tokens/{id}/revoke", post(tokens::revoke_admin_token))
        .route("/capabilities", get(tokens::capabilities))
        .route("/capabilities/{id}/revoke", post(tokens::revoke_capability))
        .route("/providers", get(integrations::providers))
        .route("/providers/credentials", post(integrations::create_credential))
        .route("/providers/credentials/{id}/delete", post(integrations::delete_credential))
        .route("/webhooks", get(integrations::webhooks).post(integrations::create_webhook))
        .route("/webhooks/{id}", get(integrations::deliveries))
        .route("/webhooks/{id}/delete", post(integrations::delete_webhook))
        .route("/sessions", get(pages::sessions))
        .route("/sessions/{id}/revoke", post(pages::revoke_session))
        .route("/audit", get(trail::audit))
        .route("/audit/export", get(trail::audit_export))
        .route("/audit/verify", post(trail::verify))
        .route("/usage", get(usage::page))
        .route("/usage.csv", get(usage::csv))
        .route("/assets/{name}", get(page::asset))
        .route_layer(axum::middleware::from_fn_with_state(admin, gatehouse_admin::ratelimit::limit))
        .fallback(page::not_found)
        .with_state(state)
}
