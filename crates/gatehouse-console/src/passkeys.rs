//! Passkeys at the console: registration after a first sign-in, passkey-only sign-in, and
//! confirmation ("re-authentication") before sensitive actions (docs/CONSOLE.md).
//!
//! A passkey stands for an account that lives on in the store, and signs in with what that
//! account holds *now*: an admin token (refused once the token is revoked; the session ends
//! with it), or a member of an org (the member's current role; refused once the membership
//! ends). An identity that exists only in an identity provider's claims has no such account
//! here and keeps signing in through its provider.
//!
//! Ceremonies are JSON calls from the console's script (WebAuthn needs one): same-origin, the
//! session's synchronizer token on every signed-in call, bounded bodies, and a challenge that
//! is stored server-side and taken exactly once, by the session that asked for it.

use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use gatehouse_admin::audit::{AuditCx, Outcome, record};
use gatehouse_admin::rbac::{Operator, Role, admin_token_of};
use gatehouse_audit::EventKind as K;
use gatehouse_core::{DenyCode, PasskeyId};
use gatehouse_security::opaque_eq;
use gatehouse_store::{MAX_PASSKEYS_PER_ACTOR, NewPasskey, PasskeyRow, now_ms};
use http::request::Parts;
use http::{HeaderMap, StatusCode, header};
use maud::html;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::ConsoleState;
use crate::forms::same_origin;
use crate::page::{refusal, render, see_other, when};
use crate::session::{CsrfOnly, How, Signed, failed, locked_out, safe_next, start_session};
use crate::throttle::Counted;
use crate::webauthn::{self, ALGORITHMS, RelyingParty, StoredCredential, b64url_decode, b64url_encode};

/// A ceremony's challenge is good for this long (also the browser's timeout).
const CEREMONY_MS: i64 = 5 * 60_000;
const MAX_JSON: usize = 64 * 1024;
const MAX_NAME: usize = 64;

/// The relying party for this request: the configured `console.origin`, or else a loopback
/// name (`http://localhost:<port>`, which browsers treat as secure). Anything else has none,
/// and passkeys are not offered.
pub(crate) fn relying_party(s: &ConsoleState, headers: &HeaderMap) -> Option<RelyingParty> {
    if let Some(origin) = &s.settings.origin {
        let authority = origin.split_once("://")?.1;
        let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
        return Some(RelyingParty { origin: origin.clone(), rp_id: host.to_owned() });
    }
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let origin = format!("http://{host}");
    let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
    (name == "localhost" && gatehouse_config::console::valid_origin(&origin))
        .then(|| RelyingParty { origin, rp_id: "localhost".to_owned() })
}

/// Whether the operator proved who they are recently enough for a sensitive action.
pub(crate) fn fresh(s: &ConsoleState, w: &Signed) -> bool {
    let window = i64::try_from(s.settings.reauth_window.as_millis()).unwrap_or(i64::MAX);
    now_ms().saturating_sub(w.authenticated_at) < window
}

/// For a sensitive action: `None` if the operator may go on, else the way to the confirmation
/// page, which sends them back to `back` once they have confirmed.
pub(crate) fn require_fresh(s: &ConsoleState, w: &Signed, back: &str) -> Option<Response> {
    if fresh(s, w) {
        return None;
    }
    let q = serde_urlencoded::to_string([("next", safe_next(Some(back)))]).unwrap_or_default();
    Some(see_other(&format!("/confirm?{q}")))
}

/// The account a session's passkeys stand for, if it has one in the store.
fn account(op: &Operator) -> Option<&str> {
    let token = admin_token_of(&op.token_id).is_some();
    (token || (op.user.is_some() && op.org.is_some())).then_some(op.token_id.as_str())
}

/// The WebAuthn user handle for an account: stable, and no identifier in the clear.
fn user_handle(actor: &str) -> Vec<u8> {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(b"gatehouse console passkey account\0");
    ctx.update(actor.as_bytes());
    ctx.finish().as_ref().to_vec()
}

/// A refusal to a ceremony call: the code, and what it means to a person.
fn no(status: StatusCode, code: DenyCode, message: &str) -> Response {
    let body = json!({"error": {"code": code.as_str(), "message": message}});
    (status, [(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
}

fn unavailable() -> Response {
    no(StatusCode::SERVICE_UNAVAILABLE, DenyCode::Unavailable, "A store the gateway needs is not answering.")
}

fn ok(body: Value) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
}

/// A ceremony call's body: same origin, JSON, at most 64 KiB.
async fn read_json<T: DeserializeOwned>(req: Request) -> Result<(Parts, T), Response> {
    let (parts, body) = req.into_parts();
    if !same_origin(&parts.headers) {
        return Err(no(StatusCode::FORBIDDEN, DenyCode::PermissionDenied, "Cross-site requests are refused."));
    }
    let bytes = gatehouse_http::read_body(&parts.headers, body, "application/json", MAX_JSON)
        .await
        .map_err(|c| no(StatusCode::BAD_REQUEST, c, "The request was not a JSON body of a usable size."))?;
    let v = serde_json::from_slice(&bytes).map_err(|_| {
        no(StatusCode::BAD_REQUEST, DenyCode::InvalidJson, "The request body is not what was expected.")
    })?;
    Ok((parts, v))
}

/// A signed-in ceremony call: also the session's synchronizer token. Gives the request's
/// headers (for its relying party) with the body.
async fn read_signed<T: DeserializeOwned>(
    w: &Signed,
    req: Request,
    csrf: impl Fn(&T) -> &str,
) -> Result<(HeaderMap, T), Response> {
    let (parts, body) = read_json::<T>(req).await?;
    if !opaque_eq(csrf(&body), &w.csrf) {
        return Err(no(StatusCode::FORBIDDEN, DenyCode::PermissionDenied, "This page is out of date; reload it."));
    }
    Ok((parts.headers, body))
}

async fn new_challenge(s: &ConsoleState, purpose: &str, session: Option<&str>) -> Result<Vec<u8>, Response> {
    let mut c = vec![0; 32];
    aws_lc_rs::rand::fill(&mut c)
        .map_err(|_| no(StatusCode::INTERNAL_SERVER_ERROR, DenyCode::Internal, "No randomness."))?;
    s.admin.store.create_challenge(&c, purpose, session, now_ms()).await.map_err(|_| unavailable())?;
    Ok(c)
}

/// Takes the challenge `client_data` answers, if it was issued for `purpose` (and `session`)
/// within the ceremony's lifetime.
async fn take_challenge(
    s: &ConsoleState,
    client_data: &[u8],
    purpose: &str,
    session: Option<&str>,
) -> Result<Option<Vec<u8>>, Response> {
    let Ok(challenge) = webauthn::challenge_of(client_data) else { return Ok(None) };
    let row = s.admin.store.take_challenge(&challenge, now_ms() - CEREMONY_MS).await.map_err(|_| unavailable())?;
    Ok(row.filter(|r| r.purpose == purpose && r.session_id.as_deref() == session).map(|_| challenge))
}

#[derive(Deserialize)]
struct Credential {
    #[serde(rename = "rawId")]
    raw_id: String,
    response: CredentialResponse,
}

#[derive(Deserialize)]
struct CredentialResponse {
    #[serde(rename = "clientDataJSON")]
    client_data_json: String,
    #[serde(rename = "attestationObject")]
    attestation_object: Option<String>,
    #[serde(rename = "authenticatorData")]
    authenticator_data: Option<String>,
    signature: Option<String>,
    #[serde(rename = "userHandle")]
    user_handle: Option<String>,
}

fn malformed() -> Response {
    no(StatusCode::BAD_REQUEST, DenyCode::InvalidRequest, "The authenticator's answer was malformed.")
}

// ---- registration ---------------------------------------------------------------------------

pub async fn register_options(State(s): State<ConsoleState>, w: Signed, req: Request) -> Response {
    let headers = match read_signed::<CsrfOnly>(&w, req, |b| &b.csrf).await {
        Ok((headers, _)) => headers,
        Err(r) => return r,
    };
    if !fresh(&s, &w) {
        return no(StatusCode::FORBIDDEN, DenyCode::PermissionDenied, "Confirm it is you first, then add the passkey.");
    }
    let Some(actor) = account(&w.op) else {
        return no(StatusCode::FORBIDDEN, DenyCode::PermissionDenied, NO_ACCOUNT);
    };
    let Some(rp) = relying_party(&s, &headers) else {
        return no(StatusCode::BAD_REQUEST, DenyCode::InvalidRequest, NO_ORIGIN);
    };
    let existing = match s.admin.store.list_passkeys(actor).await {
        Ok(p) => p,
        Err(_) => return unavailable(),
    };
    if existing.len() >= MAX_PASSKEYS_PER_ACTOR as usize {
        return no(StatusCode::CONFLICT, DenyCode::InvalidRequest, "This account has as many passkeys as it may.");
    }
    let challenge = match new_challenge(&s, "register", Some(&w.session_id)).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let label = format!("{} ({})", w.op.role.as_str(), actor);
    let exclude: Vec<Value> =
        existing.iter().map(|p| json!({"type": "public-key", "id": b64url_encode(&p.credential_id)})).collect();
    let params: Vec<Value> = ALGORITHMS.iter().map(|a| json!({"type": "public-key", "alg": a})).collect();
    ok(json!({"publicKey": {
        "rp": {"id": rp.rp_id, "name": "Gatehouse"},
        "user": {"id": b64url_encode(&user_handle(actor)), "name": label, "displayName": label},
        "challenge": b64url_encode(&challenge),
        "pubKeyCredParams": params,
        "timeout": CEREMONY_MS,
        "attestation": "none",
        "excludeCredentials": exclude,
        "authenticatorSelection": {"residentKey": "required", "requireResidentKey": true, "userVerification": "required"},
    }}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterBody {
    csrf: String,
    name: String,
    credential: Credential,
}

pub async fn register(State(s): State<ConsoleState>, w: Signed, req: Request) -> Response {
    let (headers, body) = match read_signed(&w, req, |b: &RegisterBody| &b.csrf).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let (Some(actor), Some(rp)) = (account(&w.op), relying_party(&s, &headers)) else {
        return no(StatusCode::FORBIDDEN, DenyCode::PermissionDenied, NO_ACCOUNT);
    };
    if !fresh(&s, &w) {
        return no(StatusCode::FORBIDDEN, DenyCode::PermissionDenied, "Confirm it is you first, then add the passkey.");
    }
    let name = body.name.trim();
    let name = if name.is_empty() { "Passkey" } else { name };
    if name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return no(StatusCode::BAD_REQUEST, DenyCode::InvalidRequest, "A passkey's name is at most 64 characters.");
    }
    let (Ok(client_data), Some(Ok(attestation))) = (
        b64url_decode(&body.credential.response.client_data_json, 4096),
        body.credential.response.attestation_object.as_deref().map(|a| b64url_decode(a, 16 * 1024)),
    ) else {
        return malformed();
    };
    let challenge = match take_challenge(&s, &client_data, "register", Some(&w.session_id)).await {
        Ok(Some(c)) => c,
        Ok(None) => return expired(),
        Err(r) => return r,
    };
    let cred = match webauthn::register(&rp, &challenge, &client_data, &attestation) {
        Ok(c) => c,
        Err(e) => {
            tracing::info!(reason = %e, "passkey registration refused");
            let _ = record(&s.admin, &w.acx, w.op.actor(), K::PasskeyRegister, w.op.org, None, denied()).await;
            return no(StatusCode::BAD_REQUEST, DenyCode::InvalidRequest, "The passkey could not be verified.");
        }
    };
    let id = PasskeyId::generate().to_string();
    let handle = user_handle(actor);
    let token_id = admin_token_of(actor);
    let new = NewPasskey {
        id: &id,
        credential_id: &cred.id,
        user_handle: &handle,
        actor,
        token_id,
        org: w.op.org,
        user: w.op.user,
        name,
        public_key: &cred.public_key,
        alg: cred.alg,
        sign_count: cred.sign_count,
        backed_up: cred.backed_up,
        now: now_ms(),
    };
    match s.admin.store.create_passkey(&new).await {
        Ok(true) => {}
        Ok(false) => return no(StatusCode::CONFLICT, DenyCode::InvalidRequest, "That passkey is already registered."),
        Err(_) => return unavailable(),
    }
    let created = Outcome::Allowed(StatusCode::CREATED);
    if record(&s.admin, &w.acx, w.op.actor(), K::PasskeyRegister, w.op.org, Some(id.clone()), created).await.is_err() {
        return unavailable();
    }
    ok(json!({"id": id}))
}

fn denied() -> Outcome {
    Outcome::Denied(DenyCode::InvalidToken)
}

fn expired() -> Response {
    no(StatusCode::BAD_REQUEST, DenyCode::InvalidRequest, "That attempt expired or was already used. Try again.")
}

pub async fn remove(State(s): State<ConsoleState>, w: Signed, Path(id): Path<String>, req: Request) -> Response {
    if let Err(d) = crate::forms::accept::<CsrfOnly>(&w, req, |f| &f.csrf).await {
        return refusal(&d, Some(&w));
    }
    if let Some(confirm) = require_fresh(&s, &w, "/account") {
        return confirm;
    }
    let removed = match account(&w.op) {
        Some(actor) => s.admin.store.remove_passkey(actor, &id).await,
        None => Ok(false),
    };
    let outcome = match removed {
        Ok(true) => Outcome::Allowed(StatusCode::SEE_OTHER),
        Ok(false) => Outcome::Denied(DenyCode::NotFound),
        Err(_) => Outcome::Denied(DenyCode::Unavailable),
    };
    let _ = record(&s.admin, &w.acx, w.op.actor(), K::PasskeyRemove, w.op.org, Some(id), outcome).await;
    match outcome {
        Outcome::Allowed(_) => see_other("/account"),
        Outcome::Denied(code) => refusal(&gatehouse_core::Denial::new(code), Some(&w)),
    }
}

// ---- proving with a passkey: sign-in and confirmation ---------------------------------------

fn request_options(rp: &RelyingParty, challenge: &[u8], allow: &[PasskeyRow]) -> Response {
    let allow: Vec<Value> =
        allow.iter().map(|p| json!({"type": "public-key", "id": b64url_encode(&p.credential_id)})).collect();
    ok(json!({"publicKey": {
        "challenge": b64url_encode(challenge),
        "rpId": rp.rp_id,
        "timeout": CEREMONY_MS,
        "userVerification": "required",
        "allowCredentials": allow,
    }}))
}

/// An assertion checked against the passkey it names: the stored row, after its counter moved.
enum Proof {
    Proved(PasskeyRow),
    /// Refused, with a reason for the log; counted against the source (and the account, when
    /// the passkey is known).
    Refused(&'static str, Option<String>),
    Failed(Response),
}

async fn prove(s: &ConsoleState, rp: &RelyingParty, cred: &Credential, purpose: &str, session: Option<&str>) -> Proof {
    let r = &cred.response;
    let decoded = (
        b64url_decode(&cred.raw_id, webauthn::MAX_CREDENTIAL_ID),
        b64url_decode(&r.client_data_json, 4096),
        r.authenticator_data.as_deref().map(|a| b64url_decode(a, 8192)),
        r.signature.as_deref().map(|a| b64url_decode(a, 1024)),
    );
    let (Ok(raw_id), Ok(client_data), Some(Ok(auth_data)), Some(Ok(sig))) = decoded else {
        return Proof::Failed(malformed());
    };
    let challenge = match take_challenge(s, &client_data, purpose, session).await {
        Ok(Some(c)) => c,
        Ok(None) => return Proof::Refused("unknown, used or expired challenge", None),
        Err(r) => return Proof::Failed(r),
    };
    let row = match s.admin.store.passkey_by_credential(&raw_id).await {
        Ok(Some(row)) => row,
        Ok(None) => return Proof::Refused("unknown credential", None),
        Err(_) => return Proof::Failed(unavailable()),
    };
    if let Some(wait) = s.account_failures.locked(&row.actor) {
        let secs = wait.as_secs().max(1);
        let mut resp = no(StatusCode::TOO_MANY_REQUESTS, DenyCode::RateLimitExceeded, LOCKED);
        resp.headers_mut().insert(header::RETRY_AFTER, http::HeaderValue::from(secs));
        return Proof::Failed(resp);
    }
    if let Some(h) = &r.user_handle
        && b64url_decode(h, 64).ok().as_deref() != Some(&row.user_handle[..])
    {
        return Proof::Refused("user handle does not match", Some(row.actor));
    }
    let stored = StoredCredential { public_key: &row.public_key, alg: row.alg, sign_count: row.sign_count };
    let asserted = match webauthn::authenticate(rp, &challenge, stored, &client_data, &auth_data, &sig) {
        Ok(a) => a,
        Err(webauthn::Refused::Counter) => return Proof::Refused("signature counter went back", Some(row.actor)),
        Err(_) => return Proof::Refused("assertion does not verify", Some(row.actor)),
    };
    match s.admin.store.passkey_used(&row.id, row.sign_count, asserted.sign_count, asserted.backed_up, now_ms()).await {
        Ok(true) => Proof::Proved(row),
        Ok(false) => Proof::Refused("counter moved concurrently", Some(row.actor)),
        Err(_) => Proof::Failed(unavailable()),
    }
}

/// A refused proof: logged, audited, counted against the source and the account.
async fn refused_proof(s: &ConsoleState, acx: &AuditCx, reason: &str, actor: Option<String>) -> Response {
    tracing::info!(reason, "passkey proof refused");
    failed(s, acx, DenyCode::InvalidToken).await;
    if let Some(actor) = actor
        && s.account_failures.fail(&actor) == Counted::LockedOut
    {
        let who = gatehouse_admin::rbac::actor_of(&actor);
        let locked = Outcome::Denied(DenyCode::RateLimitExceeded);
        let _ = record(&s.admin, acx, who, K::ConsoleLockout, None, None, locked).await;
    }
    no(StatusCode::UNAUTHORIZED, DenyCode::InvalidToken, "That passkey was not accepted.")
}

/// The operator a passkey signs in as, from what its account holds now.
async fn operator_of(s: &ConsoleState, row: &PasskeyRow) -> Result<Option<Operator>, ()> {
    let store = &s.admin.store;
    if let Some(token) = &row.token_id {
        let Some(t) = store.admin_token(token).await.map_err(|_| ())? else { return Ok(None) };
        let role = Role::parse(&t.role);
        return Ok(match role {
            Some(role) if t.revoked_at.is_none() && (role == Role::PlatformAdmin || t.org.is_some()) => {
                Some(Operator { token_id: t.id, role, org: t.org, user: t.user })
            }
            _ => None,
        });
    }
    let (Some(org), Some(user)) = (row.org, row.user) else { return Ok(None) };
    let Some(m) = store.member(org, user).await.map_err(|_| ())? else { return Ok(None) };
    Ok(Role::parse(&m.role).filter(|r| *r != Role::PlatformAdmin).map(|role| Operator {
        token_id: row.actor.clone(),
        role,
        org: Some(org),
        user: Some(user),
    }))
}

/// A sign-in ceremony call, before anyone is signed in: its body, audit context and relying
/// party, unless the source is locked out or there is no relying party.
struct Anonymous<T> {
    headers: HeaderMap,
    body: T,
    acx: AuditCx,
    rp: RelyingParty,
}

async fn anonymous<T: DeserializeOwned>(s: &ConsoleState, req: Request) -> Result<Anonymous<T>, Response> {
    let (parts, body) = read_json::<T>(req).await?;
    let acx = AuditCx::from_parts(&parts);
    if let Some(refused) = locked_out(s, &acx).await {
        return Err(refused);
    }
    let Some(rp) = relying_party(s, &parts.headers) else {
        return Err(no(StatusCode::BAD_REQUEST, DenyCode::InvalidRequest, NO_ORIGIN));
    };
    Ok(Anonymous { headers: parts.headers, body, acx, rp })
}

pub async fn sign_in_options(State(s): State<ConsoleState>, req: Request) -> Response {
    let rp = match anonymous::<Value>(&s, req).await {
        Ok(a) => a.rp,
        Err(r) => return r,
    };
    match new_challenge(&s, "sign_in", None).await {
        Ok(c) => request_options(&rp, &c, &[]),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignInBody {
    credential: Credential,
    next: Option<String>,
}

pub async fn sign_in(State(s): State<ConsoleState>, req: Request) -> Response {
    let Anonymous { headers, body, acx, rp } = match anonymous::<SignInBody>(&s, req).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let row = match prove(&s, &rp, &body.credential, "sign_in", None).await {
        Proof::Proved(row) => row,
        Proof::Refused(reason, actor) => return refused_proof(&s, &acx, reason, actor).await,
        Proof::Failed(r) => return r,
    };
    let op = match operator_of(&s, &row).await {
        Ok(Some(op)) => op,
        Ok(None) => {
            return refused_proof(&s, &acx, "the passkey's account is revoked or gone", Some(row.actor)).await;
        }
        Err(()) => return unavailable(),
    };
    match start_session(&s, &headers, &op, How::Passkey, &acx, now_ms()).await {
        Ok(cookie) => {
            let mut resp = ok(json!({"next": safe_next(body.next.as_deref())}));
            resp.headers_mut().insert(header::SET_COOKIE, cookie);
            resp
        }
        Err(_) => unavailable(),
    }
}

pub async fn confirm_options(State(s): State<ConsoleState>, w: Signed, req: Request) -> Response {
    let headers = match read_signed::<CsrfOnly>(&w, req, |b| &b.csrf).await {
        Ok((headers, _)) => headers,
        Err(r) => return r,
    };
    let Some(rp) = relying_party(&s, &headers) else {
        return no(StatusCode::BAD_REQUEST, DenyCode::InvalidRequest, NO_ORIGIN);
    };
    let passkeys = match account(&w.op) {
        Some(actor) => match s.admin.store.list_passkeys(actor).await {
            Ok(p) => p,
            Err(_) => return unavailable(),
        },
        None => Vec::new(),
    };
    if passkeys.is_empty() {
        return no(StatusCode::BAD_REQUEST, DenyCode::InvalidRequest, "This account has no passkey to confirm with.");
    }
    match new_challenge(&s, "confirm", Some(&w.session_id)).await {
        Ok(c) => request_options(&rp, &c, &passkeys),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfirmBody {
    csrf: String,
    credential: Credential,
    next: Option<String>,
}

pub async fn confirm(State(s): State<ConsoleState>, w: Signed, req: Request) -> Response {
    let (headers, body) = match read_signed(&w, req, |b: &ConfirmBody| &b.csrf).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(rp) = relying_party(&s, &headers) else {
        return no(StatusCode::BAD_REQUEST, DenyCode::InvalidRequest, NO_ORIGIN);
    };
    let row = match prove(&s, &rp, &body.credential, "confirm", Some(&w.session_id)).await {
        Proof::Proved(row) => row,
        Proof::Refused(reason, actor) => return refused_proof(&s, &w.acx, reason, actor).await,
        Proof::Failed(r) => return r,
    };
    // another account's passkey proves nothing about this session's operator
    if Some(row.actor.as_str()) != account(&w.op) {
        return refused_proof(&s, &w.acx, "passkey of another account", Some(row.actor)).await;
    }
    match s.admin.store.confirm_console_session(&w.session_id, &w.op.token_id, now_ms()).await {
        Ok(Some(_)) => {}
        Ok(None) => return no(StatusCode::UNAUTHORIZED, DenyCode::InvalidToken, "This session has ended."),
        Err(_) => return unavailable(),
    }
    let confirmed = Outcome::Allowed(StatusCode::OK);
    let _ = record(&s.admin, &w.acx, w.op.actor(), K::ConsoleConfirm, w.op.org, Some(w.session_id.clone()), confirmed)
        .await;
    ok(json!({"next": safe_next(body.next.as_deref())}))
}

// ---- pages ----------------------------------------------------------------------------------

const NO_ACCOUNT: &str = "Passkeys stand for an admin token or a member of an organization. This session's \
                          identity exists only at its identity provider: keep signing in there.";
const NO_ORIGIN: &str = "Passkeys need the console's public origin (console.origin in the config), or a visit \
                         through http://localhost.";
const LOCKED: &str = "Too many failed attempts with this account's passkeys. Wait a little and try again.";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NextQuery {
    next: Option<String>,
}

/// The confirmation page a sensitive action sends an operator to when their last proof is older
/// than `console.reauth_window_ms`.
pub async fn confirm_page(State(s): State<ConsoleState>, w: Signed, parts: Parts) -> Response {
    let next = axum::extract::Query::<NextQuery>::try_from_uri(&parts.uri).ok().and_then(|q| q.0.next);
    let next = safe_next(next.as_deref());
    let passkeys = match account(&w.op) {
        Some(actor) => s.admin.store.list_passkeys(actor).await.unwrap_or_default(),
        None => Vec::new(),
    };
    let usable = !passkeys.is_empty() && relying_party(&s, &parts.headers).is_some();
    let minutes = s.settings.reauth_window.as_secs().div_ceil(60);
    // a session from an OpenID Provider may also confirm there, by signing in again
    let provider = gatehouse_admin::rbac::federated_issuer(&w.op.token_id)
        .filter(|i| w.method == "oidc" && s.federation.as_ref().is_some_and(|f| f.issuer(i).is_some()));
    let main = html! {
        p { "This action needs you to have proved who you are in the last " (minutes) " minutes." }
        @if let Some(issuer) = provider {
            @let q = serde_urlencoded::to_string([("next", next)]).unwrap_or_default();
            p { a.button href={ "/confirm/oidc?" (q) } { "Confirm with " (issuer) } }
            p.help { "Your identity provider asks you to sign in again, then brings you back here." }
        }
        @if usable {
            p {
                button type="button" data-passkey="confirm" data-csrf=(w.csrf) data-next=(next) data-status="passkey-status" hidden {
                    "Confirm with a passkey"
                }
            }
            p id="passkey-status" role="status" {}
            noscript { p { "Confirming with a passkey needs JavaScript." } }
        } @else if provider.is_none() {
            p { "This account has no passkey. Sign out and sign in again, then repeat the action; or add a passkey on "
                a href="/account" { "your account" } " right after signing in." }
            form method="post" action="/sign-out" {
                input type="hidden" name="csrf" value=(w.csrf);
                button type="submit" { "Sign out to sign in again" }
            }
        }
        p { a href=(next) { "Back" } }
    };
    render(StatusCode::FORBIDDEN, "Confirm it is you", Some(&w), main)
}

/// The signed-in account: who, how, and its passkeys.
pub async fn account_page(State(s): State<ConsoleState>, w: Signed, parts: Parts) -> Response {
    let actor = account(&w.op);
    let passkeys = match actor {
        Some(a) => match s.admin.store.list_passkeys(a).await {
            Ok(p) => p,
            Err(_) => return refusal(&gatehouse_core::Denial::new(DenyCode::Unavailable), Some(&w)),
        },
        None => Vec::new(),
    };
    let rp = relying_party(&s, &parts.headers);
    let main = html! {
        dl {
            dt { "Signed in as" } dd { code { (w.op.token_id) } }
            dt { "Role" } dd { (w.op.role.as_str()) }
            @if let Some(org) = w.op.org { dt { "Organization" } dd { code { (org) } } }
            dt { "Last proved" } dd { (when(w.authenticated_at)) }
        }
        h2 { "Passkeys" }
        @if actor.is_none() {
            p { (NO_ACCOUNT) }
        } @else {
            @if passkeys.is_empty() {
                p { "No passkeys yet. A passkey lets you sign in without a token or password, and confirms sensitive actions." }
            } @else {
                table {
                    caption { "Your passkeys" }
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Added" } th scope="col" { "Last used" }
                        th scope="col" { "Synced" } th scope="col" { span.sr-only { "Actions" } } } }
                    tbody {
                        @for p in &passkeys {
                            tr {
                                td { (p.name) }
                                td { (when(p.created_at)) }
                                td { @if let Some(t) = p.last_used_at { (when(t)) } @else { "never" } }
                                td { @if p.backed_up { "yes" } @else { "no" } }
                                td {
                                    form method="post" action={ "/account/passkeys/" (p.id) "/remove" } {
                                        input type="hidden" name="csrf" value=(w.csrf);
                                        button type="submit" aria-label={ "Remove passkey " (p.name) } { "Remove" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if rp.is_none() {
                p { (NO_ORIGIN) }
            } @else if !fresh(&s, &w) {
                p { "Adding a passkey needs a recent proof of who you are. "
                    a href="/confirm?next=/account" { "Confirm it is you" } " first." }
            } @else {
                h3 { "Add a passkey" }
                label for="passkey-name" { "Name" }
                input id="passkey-name" name="name" maxlength="64" placeholder="Laptop" autocomplete="off";
                p {
                    button type="button" data-passkey="register" data-csrf=(w.csrf) data-status="passkey-status" hidden {
                        "Add a passkey"
                    }
                }
                p id="passkey-status" role="status" {}
                noscript { p { "Adding a passkey needs JavaScript." } }
            }
        }
    };
    render(StatusCode::OK, "Your account", Some(&w), main)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(token_id: &str, user: bool) -> Operator {
        Operator {
            token_id: token_id.to_owned(),
            role: Role::OrgAdmin,
            org: Some(gatehouse_core::OrgId::generate()),
            user: user.then(gatehouse_core::UserId::generate),
        }
    }

    #[test]
    fn passkeys_stand_only_for_accounts_the_store_holds() {
        assert_eq!(account(&op("adm_123", false)), Some("adm_123"));
        assert_eq!(account(&op("oidc:corp:alice", true)), Some("oidc:corp:alice"));
        assert_eq!(account(&op("oidc:corp:alice", false)), None);
    }

    #[test]
    fn user_handles_are_stable_per_account_and_reveal_nothing() {
        assert_eq!(user_handle("adm_1"), user_handle("adm_1"));
        assert_ne!(user_handle("adm_1"), user_handle("adm_2"));
        assert_eq!(user_handle("adm_1").len(), 32);
        assert!(!user_handle("adm_1").windows(5).any(|w| w == b"adm_1"));
    }
}
