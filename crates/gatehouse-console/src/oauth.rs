//! Console sign-in with a plain OAuth 2.0 provider (`[[oauth]]`, GitHub and its like).
//!
//! The same ceremony as OpenID sign-in (`oidc.rs`): state and PKCE verifier stored under the
//! digest of the `__Host-gatehouse-login` cookie's secret, taken exactly once by the callback,
//! the state compared in constant time. The provider has no ID token, so it only says who the
//! person is (a stable id) and which email address they verified; the role is the one that
//! address holds as a member of the provider's org here. Someone who is not a member, or whose
//! provider vouches for no address, does not get in.

use axum::extract::{Path, Query, State};
use axum::response::Response;
use gatehouse_admin::audit::AuditCx;
use gatehouse_admin::rbac::{Operator, Role, federated_id};
use gatehouse_core::{Denial, DenyCode, HasDenyCode};
use gatehouse_store::{LoginRow, now_ms};
use http::header;

use crate::ConsoleState;
use crate::oidc::{StartQuery, again, continue_to, login_cookie, take_login, to_provider};
use crate::page::refusal;
use crate::session::{How, safe_next, start_session};

/// The stored sign-in's issuer field for an OAuth provider: never an `[[oidc]]` name, so a
/// sign-in begun with one kind cannot be finished at the other's callback.
const KIND: &str = "oauth:";

pub async fn start(State(s): State<ConsoleState>, Path(name): Path<String>, parts: http::request::Parts) -> Response {
    let acx = AuditCx::from_parts(&parts);
    if let Some(refused) = crate::session::locked_out(&s, &acx).await {
        return refused;
    }
    let Ok(Query(form)) = Query::<StartQuery>::try_from_uri(&parts.uri) else {
        return refusal(&Denial::new(DenyCode::InvalidRequest).with_param("query"), None);
    };
    let Some(provider) = s.federation.as_ref().and_then(|f| f.oauth(&name)) else {
        return refusal(&Denial::new(DenyCode::NotFound), None);
    };
    let Ok(auth) = provider.authorization_request() else {
        return refusal(&Denial::new(DenyCode::Internal), None);
    };
    let row = LoginRow {
        issuer: format!("{KIND}{name}"),
        state: auth.state,
        nonce: String::new(),
        verifier: auth.verifier,
        next: safe_next(form.next.as_deref()).to_owned(),
        source: acx.source.map(|a| a.to_string()),
        created_at: now_ms(),
        session_id: None,
    };
    to_provider(&s, &row, &auth.url).await
}

pub async fn callback(State(s): State<ConsoleState>, parts: http::request::Parts) -> Response {
    let acx = AuditCx::from_parts(&parts);
    let mut resp = finish(&s, &parts, &acx).await;
    resp.headers_mut().append(header::SET_COOKIE, login_cookie("", 0));
    resp
}

async fn finish(s: &ConsoleState, parts: &http::request::Parts, acx: &AuditCx) -> Response {
    let now = now_ms();
    let (login, q) = match take_login(s, parts, acx, now).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let provider = login.issuer.strip_prefix(KIND).and_then(|name| s.federation.as_ref()?.oauth(name));
    let (Some(provider), Some(code)) = (provider, q.code.as_deref()) else {
        return again(s, acx, "The provider's answer was not understood.").await;
    };
    let cfg = provider.config();
    let who = match provider.complete(code, &login.verifier).await {
        Ok(w) => w,
        Err(e) if e.deny_code() == DenyCode::Unavailable => return refusal(&Denial::new(DenyCode::Unavailable), None),
        Err(e) => {
            tracing::info!(provider = %cfg.name, reason = %e, "console OAuth sign-in refused");
            return again(s, acx, "The provider's answer did not verify.").await;
        }
    };
    let Some(email) = who.email else {
        return again(s, acx, "The provider vouched for no verified email address.").await;
    };
    let store = &s.admin.store;
    let member = match store.org_by_name(&cfg.org).await {
        Ok(Some(org)) => store.member_by_email(org, &email).await.map(|m| m.map(|m| (org, m))),
        Ok(None) => Ok(None),
        Err(e) => Err(e),
    };
    let (org, member) = match member {
        Ok(Some(m)) => m,
        Ok(None) => return again(s, acx, "Your verified email address is not a member here.").await,
        Err(_) => return refusal(&Denial::new(DenyCode::Unavailable), None),
    };
    // a membership row never makes a platform admin, whatever it says
    let Some(role) = Role::parse(&member.role).filter(|r| *r != Role::PlatformAdmin) else {
        return again(s, acx, "Your verified email address is not a member here.").await;
    };
    let op =
        Operator { token_id: federated_id(&cfg.name, &who.subject), role, org: Some(org), user: Some(member.user) };
    match start_session(s, &parts.headers, &op, How::OAuth, acx, now).await {
        Ok(cookie) => continue_to(&login.next, Some(cookie)),
        Err(d) => refusal(&d, None),
    }
}
