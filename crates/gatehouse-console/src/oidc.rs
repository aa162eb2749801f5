//! Console sign-in with an OpenID Provider: authorization code with PKCE.
//!
//! `GET /sign-in/oidc/{issuer}` starts a sign-in (a link, not a form: a browser holds a form's
//! redirect to another origin to the page's `form-action 'self'`; and starting a sign-in
//! decides nothing, the callback does): the state, nonce and PKCE
//! verifier are stored under the digest of a random secret the browser keeps in a
//! `__Host-gatehouse-login` cookie (`SameSite=Lax`, so it comes back on the provider's
//! top-level redirect; ten minutes). `GET /sign-in/oidc/callback` takes that row exactly once:
//! a replayed or forged callback, or one from another browser, finds nothing. The state must
//! match, the response's `iss` must name the issuer (RFC 9207), the code is exchanged with the
//! verifier, and the ID token must carry our nonce. The person's roles map to an admin role
//! through the issuer's `admin_roles`, as for federated admin API calls.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use gatehouse_admin::audit::{AuditCx, Outcome, record};
use gatehouse_audit::EventKind as K;
use gatehouse_core::{Denial, DenyCode, HasDenyCode};
use gatehouse_security::{generate_opaque, is_opaque, opaque_digest, opaque_eq};
use gatehouse_store::{LoginRow, now_ms};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use maud::html;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::ConsoleState;
use crate::page::{refusal, render};
use crate::session::{How, Signed, failed, locked_out, safe_next, sign_in_form, start_session};

const LOGIN_COOKIE: &str = "__Host-gatehouse-login";
/// How long a sign-in may take at the provider.
pub(crate) const LOGIN_TTL_MS: i64 = 10 * 60_000;

pub(crate) fn login_cookie(value: &str, max_age: i64) -> HeaderValue {
    HeaderValue::from_str(&format!("{LOGIN_COOKIE}={value}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={max_age}"))
        .unwrap_or(HeaderValue::from_static(""))
}

fn presented_login(headers: &HeaderMap) -> Option<SecretString> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|p| p.trim().strip_prefix(LOGIN_COOKIE)?.strip_prefix('='))
        .find(|v| is_opaque(v))
        .map(|v| SecretString::from(v.to_owned()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartQuery {
    pub(crate) next: Option<String>,
}

pub async fn start(State(s): State<ConsoleState>, Path(issuer): Path<String>, parts: http::request::Parts) -> Response {
    let acx = AuditCx::from_parts(&parts);
    if let Some(refused) = locked_out(&s, &acx).await {
        return refused;
    }
    let Ok(Query(form)) = Query::<StartQuery>::try_from_uri(&parts.uri) else {
        return refusal(&Denial::new(DenyCode::InvalidRequest).with_param("query"), None);
    };
    begin(&s, issuer, form.next.as_deref(), None, &acx, None).await
}

/// `GET /confirm/oidc`: a session that came from an OpenID Provider confirms it is still its
/// person by signing in there again (`prompt=login`, `max_age=0`); the callback then marks
/// this session freshly proved instead of starting another.
pub async fn confirm_start(State(s): State<ConsoleState>, w: Signed, parts: http::request::Parts) -> Response {
    let Ok(Query(form)) = Query::<StartQuery>::try_from_uri(&parts.uri) else {
        return refusal(&Denial::new(DenyCode::InvalidRequest).with_param("query"), Some(&w));
    };
    let issuer = match gatehouse_admin::rbac::federated_issuer(&w.op.token_id) {
        Some(i) if w.method == "oidc" => i.to_owned(),
        _ => return refusal(&Denial::new(DenyCode::NotFound), Some(&w)),
    };
    begin(&s, issuer, form.next.as_deref(), Some(w.session_id.clone()), &w.acx, Some(&w)).await
}

/// Sends the browser to the issuer's authorization endpoint, with the sign-in (or, given a
/// session, the confirmation) stored under the login cookie.
async fn begin(
    s: &ConsoleState,
    issuer: String,
    next: Option<&str>,
    session_id: Option<String>,
    acx: &AuditCx,
    w: Option<&Signed>,
) -> Response {
    let Some(federation) = &s.federation else { return refusal(&Denial::new(DenyCode::NotFound), w) };
    let auth = match federation.authorization_request(&issuer, session_id.is_some()).await {
        Ok(a) => a,
        Err(e) if e.deny_code() == DenyCode::Unavailable => return refusal(&Denial::new(DenyCode::Unavailable), w),
        Err(_) => return refusal(&Denial::new(DenyCode::NotFound), w),
    };
    let row = LoginRow {
        issuer,
        state: auth.state,
        nonce: auth.nonce,
        verifier: auth.verifier,
        next: safe_next(next).to_owned(),
        source: acx.source.map(|a| a.to_string()),
        created_at: now_ms(),
        session_id,
    };
    to_provider(s, &row, &auth.url).await
}

/// Stores a sign-in under way under the digest of a new login cookie's secret and sends the
/// browser to the provider with that cookie.
pub(crate) async fn to_provider(s: &ConsoleState, row: &LoginRow, url: &str) -> Response {
    let Some(secret) = generate_opaque() else { return refusal(&Denial::new(DenyCode::Internal), None) };
    if s.admin.store.create_console_login(row, &opaque_digest(&secret)).await.is_err() {
        return refusal(&Denial::new(DenyCode::Unavailable), None);
    }
    let mut resp = StatusCode::SEE_OTHER.into_response();
    let h = resp.headers_mut();
    h.insert(header::SET_COOKIE, login_cookie(secret.expose_secret(), LOGIN_TTL_MS / 1000));
    if let Ok(to) = HeaderValue::from_str(url) {
        h.insert(header::LOCATION, to);
    }
    resp
}

/// The authorization response (RFC 6749 4.1.2 and 4.1.2.1, RFC 9207).
#[derive(Deserialize)]
pub struct CallbackQuery {
    pub(crate) code: Option<String>,
    pub(crate) state: Option<String>,
    pub(crate) iss: Option<String>,
    pub(crate) error: Option<String>,
}

pub async fn callback(State(s): State<ConsoleState>, parts: http::request::Parts) -> Response {
    let acx = AuditCx::from_parts(&parts);
    let mut resp = finish(&s, &parts, &acx).await;
    // the sign-in is over either way: its cookie goes
    resp.headers_mut().append(header::SET_COOKIE, login_cookie("", 0));
    resp
}

/// The sign-in a callback finishes, taken exactly once before anything else is checked
/// (whatever happens next, it cannot be used again), and the provider's answer, whose state
/// must be the sign-in's. Shared by both kinds of provider.
pub(crate) async fn take_login(
    s: &ConsoleState,
    parts: &http::request::Parts,
    acx: &AuditCx,
    now: i64,
) -> Result<(LoginRow, CallbackQuery), Response> {
    if let Some(refused) = locked_out(s, acx).await {
        return Err(refused);
    }
    let q = Query::<CallbackQuery>::try_from_uri(&parts.uri).ok().map(|Query(q)| q);
    let login = match presented_login(&parts.headers) {
        Some(secret) => s.admin.store.take_console_login(&opaque_digest(&secret), now - LOGIN_TTL_MS).await,
        None => Ok(None),
    };
    let login = match login {
        Ok(Some(l)) => l,
        Ok(None) => {
            return Err(again(s, acx, "This sign-in has expired, was already used, or began in another browser.").await);
        }
        Err(_) => return Err(refusal(&Denial::new(DenyCode::Unavailable), None)),
    };
    let Some(q) = q else { return Err(again(s, acx, "The identity provider's answer was not understood.").await) };
    if !q.state.as_deref().is_some_and(|st| opaque_eq(st, &login.state)) {
        return Err(again(s, acx, "The identity provider's answer does not belong to this sign-in.").await);
    }
    if q.error.is_some() {
        return Err(again(s, acx, "The identity provider did not sign you in.").await);
    }
    Ok((login, q))
}

async fn finish(s: &ConsoleState, parts: &http::request::Parts, acx: &AuditCx) -> Response {
    let now = now_ms();
    let (login, q) = match take_login(s, parts, acx, now).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let (Some(federation), Some(code)) = (&s.federation, q.code.as_deref()) else {
        return again(s, acx, "The identity provider's answer was not understood.").await;
    };
    let callback = gatehouse_oidc::Callback { code, iss: q.iss.as_deref() };
    let signed = match federation.complete_sign_in(&login.issuer, callback, &login.verifier, &login.nonce).await {
        Ok(x) => x,
        Err(e) if e.deny_code() == DenyCode::Unavailable => return refusal(&Denial::new(DenyCode::Unavailable), None),
        Err(e) => {
            tracing::info!(issuer = %login.issuer, reason = %e, "console OIDC sign-in refused");
            return again(s, acx, "The identity provider's answer did not verify.").await;
        }
    };
    let Some(cfg) = federation.issuer(&login.issuer) else {
        return again(s, acx, "This identity provider is no longer configured.").await;
    };
    if let Some(session) = &login.session_id {
        return confirmed(s, acx, cfg, &signed, &login, session, now).await;
    }
    let mut op = match gatehouse_admin::auth::federated_operator(&s.admin, cfg, &signed.identity).await {
        Ok(op) => op,
        Err(DenyCode::Unavailable) => return refusal(&Denial::new(DenyCode::Unavailable), None),
        Err(_) => return again(s, acx, "Your account at the identity provider has no role in this gateway.").await,
    };
    // just-in-time membership: the provider says who the person is and what role they hold
    if cfg.console.as_ref().is_some_and(|c| c.jit_membership)
        && let Some(org) = op.org
    {
        let Some(email) = signed.email.as_deref() else {
            return again(s, acx, "The identity provider gave no verified email address.").await;
        };
        let store = &s.admin.store;
        let name = signed.name.as_deref().unwrap_or(email);
        let user = match store.ensure_user(email, name, "human").await {
            Ok(u) => u,
            Err(_) => return refusal(&Denial::new(DenyCode::Unavailable), None),
        };
        if store.set_membership(org, user, op.role.as_str()).await.is_err() {
            return refusal(&Denial::new(DenyCode::Unavailable), None);
        }
        op.user = Some(user);
    }
    match start_session(s, &parts.headers, &op, How::Oidc, acx, now).await {
        Ok(cookie) => continue_to(&login.next, Some(cookie)),
        Err(d) => refusal(&d, None),
    }
}

/// A refused callback: audited and counted, and the sign-in page again.
pub(crate) async fn again(s: &ConsoleState, acx: &AuditCx, problem: &str) -> Response {
    failed(s, acx, DenyCode::InvalidToken).await;
    render(StatusCode::UNAUTHORIZED, "Sign in", None, sign_in_form(s, "/", Some(problem), s.settings.origin.is_some()))
}

/// The answer that completes a sign-in. The browser arrived here on the provider's
/// cross-site redirect, and a `SameSite=Strict` cookie is not sent on a redirect that chain
/// began elsewhere; so the page moves on by itself (a same-origin navigation that does carry
/// it) instead of answering 303.
pub(crate) fn continue_to(next: &str, cookie: Option<HeaderValue>) -> Response {
    let next = safe_next(Some(next));
    let main = html! { p { "Signed in. " a href=(next) { "Continue" } } };
    let mut resp = render(StatusCode::OK, "Signed in", None, main);
    let h = resp.headers_mut();
    if let Some(cookie) = cookie {
        h.insert(header::SET_COOKIE, cookie);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("0;url={next}")) {
        h.insert(HeaderName::from_static("refresh"), v);
    }
    resp
}

/// The end of a confirmation at the provider: the person must have signed in there after we
/// asked (`auth_time`, within the issuer's clock skew) and be the one the session acts as.
async fn confirmed(
    s: &ConsoleState,
    acx: &AuditCx,
    cfg: &gatehouse_oidc::settings::OidcIssuer,
    signed: &gatehouse_oidc::SignedIn,
    login: &LoginRow,
    session: &str,
    now: i64,
) -> Response {
    let skew = i64::try_from(cfg.clock_skew.as_secs()).unwrap_or(0);
    let asked = login.created_at / 1000;
    if signed.auth_time.is_none_or(|t| t < asked - skew) {
        tracing::info!(issuer = %cfg.name, "console confirmation refused: the provider did not authenticate again");
        return not_confirmed(s, acx, "The identity provider did not ask you to sign in again.").await;
    }
    let actor = gatehouse_admin::rbac::federated_id(&cfg.name, &signed.identity.subject);
    let org = match s.admin.store.confirm_console_session(session, &actor, now).await {
        Ok(Some(org)) => org,
        Ok(None) => {
            return not_confirmed(s, acx, "That is not the person this session belongs to, or it has ended.").await;
        }
        Err(_) => return refusal(&Denial::new(DenyCode::Unavailable), None),
    };
    let who = gatehouse_admin::rbac::actor_of(&actor);
    let done = Outcome::Allowed(StatusCode::OK);
    if record(&s.admin, acx, who, K::ConsoleConfirm, org, Some(session.to_owned()), done).await.is_err() {
        return refusal(&Denial::new(DenyCode::Unavailable), None);
    }
    continue_to(&login.next, None)
}

/// A refused confirmation: audited and counted like a failed sign-in; the session stays as it
/// was (not confirmed).
async fn not_confirmed(s: &ConsoleState, acx: &AuditCx, problem: &str) -> Response {
    failed(s, acx, DenyCode::InvalidToken).await;
    let main = html! { div.refusal role="alert" { p { (problem) } } p { a href="/" { "Back to the console" } } };
    render(StatusCode::UNAUTHORIZED, "Confirm it is you", None, main)
}
