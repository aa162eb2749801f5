//! Console sessions: the cookie, the signed-in operator, sign-in and sign-out.
//!
//! The cookie is `__Host-` prefixed (the browser keeps it to this exact origin, path `/`, and
//! only if it is `Secure`), `HttpOnly` and `SameSite=Strict`. Browsers treat `http://localhost`
//! and `http://127.0.0.1` as secure contexts and keep `Secure` cookies there, which is the
//! loopback exception: anywhere else the console needs HTTPS in front of it (docs/CONSOLE.md).
//! The cookie holds a 256-bit random secret; the store holds its digest. A new sign-in always
//! makes a new session and ends the one the browser presented, so a session id planted before
//! sign-in (fixation) never becomes signed in.

use axum::extract::{FromRequestParts, Query, Request, State};
use axum::response::Response;
use gatehouse_admin::audit::{AuditCx, Outcome, record};
use gatehouse_admin::rbac::{Operator, Permission, Role, allows};
use gatehouse_audit::{Actor, EventKind as K};
use gatehouse_config::console::TokenSignIn;
use gatehouse_core::{Denial, DenyCode, SessionId};
use gatehouse_security::{generate_opaque, is_opaque, opaque_digest};
use gatehouse_store::{NewSession, SessionScope, now_ms};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use maud::{Markup, html};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::ConsoleState;
use crate::forms::{read_form, same_origin};
use crate::page::{refusal, render, see_other};
use crate::passkeys::relying_party;
use crate::throttle::Counted;

/// The session cookie's name.
pub const COOKIE: &str = "__Host-gatehouse-session";
const ATTRIBUTES: &str = "Path=/; Secure; HttpOnly; SameSite=Strict";
/// A session is marked used at most this often (its idle deadline moves by this much at worst).
const TOUCH_EVERY_MS: i64 = 60_000;

/// A signed-in operator at the console.
pub struct Signed {
    pub op: Operator,
    pub session_id: String,
    /// The session's synchronizer token: every form of this session carries it.
    pub csrf: String,
    pub acx: AuditCx,
    /// When the operator last proved who they are: the sign-in, or a later passkey
    /// confirmation (milliseconds since the epoch).
    pub authenticated_at: i64,
    /// How the session began: `admin_token`, `oidc` or `passkey`.
    pub method: String,
}

impl Signed {
    pub fn may_read_audit(&self) -> bool {
        allows(self.op.role, Permission::AuditRead)
    }

    pub fn may_manage_tokens(&self) -> bool {
        allows(self.op.role, Permission::MembershipWrite)
    }

    /// Stored provider credentials need `org.update`.
    pub fn may_manage_providers(&self) -> bool {
        allows(self.op.role, Permission::OrgUpdate)
    }
}

/// The session secret the browser presented: exactly one cookie of our name, of our shape.
fn presented(headers: &HeaderMap) -> Option<SecretString> {
    let mut found = None;
    for v in headers.get_all(header::COOKIE) {
        let Ok(v) = v.to_str() else { continue };
        for pair in v.split(';') {
            if let Some(value) = pair.trim().strip_prefix(COOKIE).and_then(|r| r.strip_prefix('=')) {
                if found.is_some() || !is_opaque(value) {
                    return None;
                }
                found = Some(SecretString::from(value.to_owned()));
            }
        }
    }
    found
}

pub(crate) fn set_cookie(secret: &SecretString) -> HeaderValue {
    HeaderValue::from_str(&format!("{COOKIE}={}; {ATTRIBUTES}", secret.expose_secret()))
        .unwrap_or(HeaderValue::from_static(""))
}

fn clear_cookie() -> HeaderValue {
    HeaderValue::from_str(&format!("{COOKIE}=; {ATTRIBUTES}; Max-Age=0")).unwrap_or(HeaderValue::from_static(""))
}

/// Where to go after sign-in: a path on this origin only. Anything that a browser could read
/// as another origin (`//host`, `/\host`, a scheme), or any character outside a plain path and
/// query, goes to the overview instead.
pub fn safe_next(next: Option<&str>) -> &str {
    let Some(n) = next else { return "/" };
    let plain = n.len() <= 512
        && n.starts_with('/')
        && !n.starts_with("//")
        && !n.starts_with("/\\")
        && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~/?=&%+".contains(&b));
    if plain { n } else { "/" }
}

fn to_sign_in(parts: &Parts) -> Response {
    let here = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let next = safe_next(Some(here));
    let q = serde_urlencoded::to_string([("next", next)]).unwrap_or_default();
    let mut resp = see_other(&format!("/sign-in?{q}"));
    resp.headers_mut().insert(header::SET_COOKIE, clear_cookie());
    resp
}

/// The live session the browser presented, marked used when due; `Ok(None)` when there is none.
pub(crate) async fn live(
    s: &ConsoleState,
    headers: &HeaderMap,
) -> Result<Option<(gatehouse_store::SessionRow, Operator)>, Denial> {
    let Some(secret) = presented(headers) else { return Ok(None) };
    let now = now_ms();
    let idle = i64::try_from(s.settings.session_idle_timeout.as_millis()).unwrap_or(i64::MAX);
    let row = s
        .admin
        .store
        .live_console_session(&opaque_digest(&secret), now, now.saturating_sub(idle))
        .await
        .map_err(|_| Denial::new(DenyCode::Unavailable))?;
    let Some(row) = row else { return Ok(None) };
    // a role the code no longer knows ends the session rather than being guessed at
    let Some(role) = Role::parse(&row.role) else { return Ok(None) };
    if role != Role::PlatformAdmin && row.org.is_none() {
        return Ok(None);
    }
    if now - row.last_seen_at >= TOUCH_EVERY_MS {
        let _ = s.admin.store.touch_console_session(&row.id, now).await;
    }
    let op = Operator { token_id: row.actor.clone(), role, org: row.org, user: row.user };
    Ok(Some((row, op)))
}

impl FromRequestParts<ConsoleState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, s: &ConsoleState) -> Result<Self, Response> {
        match live(s, &parts.headers).await {
            Ok(Some((row, op))) => Ok(Signed {
                op,
                authenticated_at: row.verified_at.map_or(row.created_at, |v| v.max(row.created_at)),
                method: row.method,
                session_id: row.id,
                csrf: row.csrf,
                acx: AuditCx::from_parts(parts),
            }),
            Ok(None) => Err(to_sign_in(parts)),
            Err(d) => Err(refusal(&d, None)),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NextQuery {
    next: Option<String>,
}

/// The sign-in choices; `passkeys` when this request has a relying party to scope them to.
pub(crate) fn sign_in_form(s: &ConsoleState, next: &str, problem: Option<&str>, passkeys: bool) -> Markup {
    // (path, name) of every provider people may sign in with: OpenID first, then plain OAuth
    let issuers: Vec<(&str, &str)> = s
        .federation
        .iter()
        .flat_map(|f| {
            let oidc = f.console_issuers().map(|i| ("/sign-in/oidc/", i.name.as_str()));
            oidc.chain(f.oauth_providers().map(|p| ("/sign-in/oauth/", p.name.as_str())))
        })
        .collect();
    html! {
        @if let Some(p) = problem { div.refusal role="alert" { p { (p) } } }
        @if passkeys {
            p {
                button type="button" data-passkey="sign-in" data-next=(next) data-status="passkey-status" hidden {
                    "Sign in with a passkey"
                }
            }
            p id="passkey-status" role="status" {}
        }
        @for (path, name) in &issuers {
            @let q = serde_urlencoded::to_string([("next", next)]).unwrap_or_default();
            p { a.button href={ (path) (name) "?" (q) } { "Sign in with " (name) } }
        }
        @if !issuers.is_empty() && s.settings.token_sign_in != TokenSignIn::Off { h2 { "Or with an admin token" } }
        @if s.settings.token_sign_in == TokenSignIn::Off {
            @if issuers.is_empty() {
                p { "Signing in with an admin token is turned off (" code { "console.token_sign_in" } ")." }
            }
        } @else {
            form method="post" action="/sign-in" {
                input type="hidden" name="next" value=(next);
                label for="token" { "Admin token" }
                input id="token" name="token" type="password" autocomplete="off" required
                    aria-describedby="token-help";
                p id="token-help" .help {
                    @if s.settings.token_sign_in == TokenSignIn::Once {
                        "Each admin token signs in once. The token the gateway printed at first start, or one "
                        "minted with POST /admin/v1/tokens, starts a session here."
                    } @else {
                        "An admin token the gateway printed at first start, or one minted with POST /admin/v1/tokens."
                    }
                }
                button type="submit" { "Sign in" }
            }
        }
    }
}

pub async fn sign_in_page(State(s): State<ConsoleState>, parts: Parts) -> Response {
    let next = Query::<NextQuery>::try_from_uri(&parts.uri).ok().and_then(|Query(q)| q.next);
    let next = safe_next(next.as_deref());
    if let Ok(Some(_)) = live(&s, &parts.headers).await {
        return see_other(next);
    }
    let passkeys = relying_party(&s, &parts.headers).is_some();
    render(StatusCode::OK, "Sign in", None, sign_in_form(&s, next, None, passkeys))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignInForm {
    /// Wrapped as a secret as soon as it is read.
    token: String,
    next: Option<String>,
}

pub async fn sign_in(State(s): State<ConsoleState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let acx = AuditCx::from_parts(&parts);
    // A cross-site form cannot sign a browser in to the sender's account (login CSRF).
    if !same_origin(&parts.headers) {
        refused(&s, &acx, DenyCode::PermissionDenied).await;
        return refusal(&Denial::new(DenyCode::PermissionDenied), None);
    }
    if let Some(refused) = locked_out(&s, &acx).await {
        return refused;
    }
    let form: SignInForm = match read_form(&parts.headers, body).await {
        Ok(f) => f,
        Err(d) => {
            refused(&s, &acx, d.code).await;
            return refusal(&d, None);
        }
    };
    let next = safe_next(form.next.as_deref()).to_owned();
    let passkeys = relying_party(&s, &parts.headers).is_some();

    if s.settings.token_sign_in == TokenSignIn::Off {
        refused(&s, &acx, DenyCode::PermissionDenied).await;
        return render(StatusCode::FORBIDDEN, "Sign in", None, sign_in_form(&s, &next, None, passkeys));
    }
    let token = SecretString::from(form.token);
    let op = match gatehouse_admin::auth::admin_token_operator(&s.admin, &token).await {
        Ok(op) => op,
        Err(DenyCode::Unavailable) => return refusal(&Denial::new(DenyCode::Unavailable), None),
        Err(code) => {
            failed(&s, &acx, code).await;
            let problem = "That token was not accepted.";
            return render(StatusCode::UNAUTHORIZED, "Sign in", None, sign_in_form(&s, &next, Some(problem), passkeys));
        }
    };
    let now = now_ms();
    if s.settings.token_sign_in == TokenSignIn::Once {
        match s.admin.store.claim_console_sign_in(&op.token_id, now).await {
            Ok(true) => {}
            Ok(false) => {
                let _ = record(
                    &s.admin,
                    &acx,
                    op.actor(),
                    K::ConsoleSignIn,
                    op.org,
                    None,
                    Outcome::Denied(DenyCode::PermissionDenied),
                )
                .await;
                let problem = "This admin token has already been used to sign in. Mint a new one to start another \
                               session.";
                return render(
                    StatusCode::FORBIDDEN,
                    "Sign in",
                    None,
                    sign_in_form(&s, &next, Some(problem), passkeys),
                );
            }
            Err(_) => return refusal(&Denial::new(DenyCode::Unavailable), None),
        }
    }
    match start_session(&s, &parts.headers, &op, How::AdminToken, &acx, now).await {
        Ok(cookie) => {
            let mut resp = see_other(&next);
            resp.headers_mut().insert(header::SET_COOKIE, cookie);
            resp
        }
        Err(d) => refusal(&d, None),
    }
}

/// A refused sign-in, audited (by nobody: the caller is not signed in).
async fn refused(s: &ConsoleState, acx: &AuditCx, code: DenyCode) {
    let _ = record(&s.admin, acx, Actor::Anonymous, K::ConsoleSignIn, None, None, Outcome::Denied(code)).await;
}

/// A failed sign-in: audited, and counted against its source (the lockout, once reached, is
/// audited once).
pub(crate) async fn failed(s: &ConsoleState, acx: &AuditCx, code: DenyCode) {
    refused(s, acx, code).await;
    if s.failures.fail(&acx.source) == Counted::LockedOut {
        let _ = record(
            &s.admin,
            acx,
            Actor::Anonymous,
            K::ConsoleLockout,
            None,
            None,
            Outcome::Denied(DenyCode::RateLimitExceeded),
        )
        .await;
    }
}

/// The refusal for a source that is locked out, audited; `None` if it is not.
pub(crate) async fn locked_out(s: &ConsoleState, acx: &AuditCx) -> Option<Response> {
    let wait = s.failures.locked(&acx.source)?;
    refused(s, acx, DenyCode::RateLimitExceeded).await;
    let secs = u32::try_from(wait.as_secs().max(1)).unwrap_or(u32::MAX);
    Some(refusal(&Denial::new(DenyCode::RateLimitExceeded).retry_after(secs), None))
}

/// How an operator signed in.
#[derive(Clone, Copy, Debug)]
pub enum How {
    /// With the admin token the operator's `token_id` names: the session ends with it.
    AdminToken,
    Oidc,
    /// With a plain OAuth 2.0 provider, as the org member its verified email belongs to.
    OAuth,
    /// With a passkey, for the admin token or member account it stands for.
    Passkey,
}

/// Ends the session the browser presented (if any), starts a new one for `op`, audits the
/// sign-in, and gives the new session's cookie.
pub async fn start_session(
    s: &ConsoleState,
    headers: &HeaderMap,
    op: &Operator,
    how: How,
    acx: &AuditCx,
    now: i64,
) -> Result<HeaderValue, Denial> {
    let store = &s.admin.store;
    if let Ok(Some((old, _))) = live(s, headers).await {
        let _ = store.revoke_console_session(SessionScope::All, &old.id, now).await;
    }
    let (Some(secret), Some(csrf)) = (generate_opaque(), generate_opaque()) else {
        return Err(Denial::new(DenyCode::Internal));
    };
    let id = SessionId::generate().to_string();
    let lifetime = i64::try_from(s.settings.session_max_lifetime.as_millis()).unwrap_or(i64::MAX);
    let (method, token_id) = match how {
        How::AdminToken => ("admin_token", Some(op.token_id.as_str())),
        How::Oidc => ("oidc", None),
        How::OAuth => ("oauth", None),
        How::Passkey => ("passkey", gatehouse_admin::rbac::admin_token_of(&op.token_id)),
    };
    let new = NewSession {
        id: &id,
        digest: &opaque_digest(&secret),
        csrf: csrf.expose_secret(),
        method,
        actor: &op.token_id,
        token_id,
        role: op.role.as_str(),
        org: op.org,
        user: op.user,
        source: acx.source.map(|a| a.to_string()),
        now,
        expires_at: now.saturating_add(lifetime),
    };
    store.create_console_session(&new).await.map_err(|_| Denial::new(DenyCode::Unavailable))?;
    record(&s.admin, acx, op.actor(), K::ConsoleSignIn, op.org, Some(id), Outcome::Allowed(StatusCode::SEE_OTHER))
        .await
        .map_err(|_| Denial::new(DenyCode::Unavailable))?;
    Ok(set_cookie(&secret))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsrfOnly {
    pub csrf: String,
}

pub async fn sign_out(State(s): State<ConsoleState>, w: Signed, req: Request) -> Response {
    if let Err(d) = crate::forms::accept::<CsrfOnly>(&w, req, |f| &f.csrf).await {
        return refusal(&d, Some(&w));
    }
    let at_provider = provider_sign_out(&s, &w).await;
    let ended = end(&s, &w, K::ConsoleSignOut).await;
    let Some(url) = at_provider else { return ended };
    // A page that moves on by itself, not a redirect: the page's `form-action 'self'` would
    // stop a form post redirected to another origin.
    let main = html! {
        p { "You are signed out here. Signing you out at your identity provider too… " a href=(url) { "Continue" } }
    };
    let mut resp = render(StatusCode::OK, "Signed out", None, main);
    if let Some(cookie) = ended.headers().get(header::SET_COOKIE) {
        resp.headers_mut().insert(header::SET_COOKIE, cookie.clone());
    }
    if let Ok(refresh) = HeaderValue::from_str(&format!("0; url={url}")) {
        resp.headers_mut().insert(HeaderName::from_static("refresh"), refresh);
    }
    resp
}

/// Where to sign a session that came from an identity provider out there too, if its issuer
/// asks for it (`sign_out_at_provider`) and offers it. Our own session ends either way.
async fn provider_sign_out(s: &ConsoleState, w: &Signed) -> Option<String> {
    if w.method != "oidc" {
        return None;
    }
    let issuer = gatehouse_admin::rbac::federated_issuer(&w.op.token_id)?;
    match s.federation.as_ref()?.end_session_url(issuer).await {
        Ok(url) => url,
        Err(e) => {
            tracing::info!(issuer, reason = %e, "cannot sign out at the identity provider; signed out here");
            None
        }
    }
}

/// Ends the signed-in session (signing out, or revoking one's own), audits it under `kind`,
/// and sends the browser to the sign-in page without its cookie.
pub async fn end(s: &ConsoleState, w: &Signed, kind: K) -> Response {
    let ended = s.admin.store.revoke_console_session(SessionScope::All, &w.session_id, now_ms()).await.is_ok();
    let outcome = if ended { Outcome::Allowed(StatusCode::SEE_OTHER) } else { Outcome::Denied(DenyCode::Unavailable) };
    let _ = record(&s.admin, &w.acx, w.op.actor(), kind, w.op.org, Some(w.session_id.clone()), outcome).await;
    let mut resp = see_other("/sign-in");
    resp.headers_mut().insert(header::SET_COOKIE, clear_cookie());
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_on_this_origin_are_followed_after_sign_in() {
        for ok in ["/", "/keys", "/keys?org=acme&before=0190", "/audit?action=key.create"] {
            assert_eq!(safe_next(Some(ok)), ok);
        }
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example/",
            "javascript:alert(1)",
            "evil.example",
            "/ok\r\nSet-Cookie: x=1",
            "/\t/evil.example",
            "",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(safe_next(Some(&format!("/{}", "a".repeat(600)))), "/");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn one_well_formed_session_cookie_is_read_and_nothing_else() {
        let secret = generate_opaque().unwrap();
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(&format!("a=b; {COOKIE}={}", secret.expose_secret())).unwrap());
        assert_eq!(presented(&h).unwrap().expose_secret(), secret.expose_secret());
        // two of ours: neither is trusted
        h.append(header::COOKIE, HeaderValue::from_str(&format!("{COOKIE}={}", secret.expose_secret())).unwrap());
        assert!(presented(&h).is_none());
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(&format!("{COOKIE}=short")).unwrap());
        assert!(presented(&h).is_none());
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(&format!("x{COOKIE}={}", secret.expose_secret())).unwrap());
        assert!(presented(&h).is_none());
    }

    #[test]
    fn the_cookie_is_host_only_secure_http_only_and_strict() {
        let v = set_cookie(&generate_opaque().unwrap());
        let v = v.to_str().unwrap();
        assert!(v.starts_with("__Host-"));
        for attr in ["Path=/", "Secure", "HttpOnly", "SameSite=Strict"] {
            assert!(v.split("; ").any(|a| a == attr), "{v}");
        }
        assert!(!v.contains("Domain"));
    }
}
