//! `POST /v1/token`: OAuth 2.0 Token Exchange (RFC 8693). A workload presents a JWT from a
//! trusted issuer and receives a capability token whose caveats come from the first
//! `[[exchange]]` rule that admits it (issuer, org, subject glob, claim values). The token
//! never outlives the JWT, exchanges are rate-limited per subject, and every decision is
//! audited. Errors use OAuth's shape (`{"error", "error_description"}`), as its clients expect.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::time::Duration;

use axum::Extension;
use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use gatehouse_audit::{Actor, Event, EventKind, Outcome};
use gatehouse_config::oidc::ExchangeRule;
use gatehouse_core::scope::ScopePattern;
use gatehouse_core::{DenyCode, OrgId, Presented, ProjectId, RequestId};
use gatehouse_gates::federated::FederatedVerifier;
use gatehouse_oidc::{Identity, Plane};
use gatehouse_store::now_ms;
use gatehouse_tokens::{Capabilities, MintRequest, narrowing};
use http::{HeaderMap, StatusCode, header};
use quick_cache::sync::Cache;
use serde_json::{Value, json};

use crate::AppState;

const GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const MAX_BODY: usize = 16 * 1024;

/// The exchange policy and what it needs; absent when no `[[exchange]]` rule is configured.
pub struct Exchange {
    pub rules: Vec<ExchangeRule>,
    pub federated: Arc<FederatedVerifier>,
    pub tokens: Arc<Capabilities>,
    windows: Cache<(String, String), Arc<Window>>,
}

/// A fixed one-minute window per subject, lock-free. At the minute boundary two racing
/// requests may both count in the new minute's first slot (at most one extra admission).
struct Window {
    minute: AtomicI64,
    count: AtomicU32,
}

impl Exchange {
    pub fn new(rules: Vec<ExchangeRule>, federated: Arc<FederatedVerifier>, tokens: Arc<Capabilities>) -> Exchange {
        Exchange { rules, federated, tokens, windows: Cache::new(100_000) }
    }

    /// Whether this subject may exchange once more this minute; `Err(seconds to wait)`.
    fn admit(&self, issuer: &str, subject: &str, per_minute: u32) -> Result<(), u64> {
        let now = now_ms();
        let minute = now / 60_000;
        let w = self
            .windows
            .get_or_insert_with(&(issuer.to_owned(), subject.to_owned()), || {
                Ok::<_, ()>(Arc::new(Window { minute: AtomicI64::new(minute), count: AtomicU32::new(0) }))
            })
            .map_err(|()| 60u64)?;
        if w.minute.swap(minute, Ordering::AcqRel) != minute {
            w.count.store(0, Ordering::Release);
        }
        if w.count.fetch_add(1, Ordering::AcqRel) >= per_minute {
            return Err(u64::try_from(60 - (now / 1000) % 60).unwrap_or(60).max(1));
        }
        Ok(())
    }
}

/// `*` matches any run of characters (including none); everything else literally.
fn glob(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == s;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !s.starts_with(first) || !s[first.len()..].ends_with(last) || s.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

fn rule_admits(r: &ExchangeRule, id: &Identity) -> bool {
    r.issuer == *id.issuer
        && r.org == id.org
        && glob(&r.subject, &id.subject)
        && r.claims.iter().all(|(p, want)| id.claims.pointer(p).and_then(Value::as_str) == Some(want.as_str()))
}

/// An OAuth error answer.
struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: &'static str,
    retry_after: Option<u64>,
}

fn oauth(status: StatusCode, error: &'static str, description: &'static str) -> OAuthError {
    OAuthError { status, error, description, retry_after: None }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut r =
            (self.status, Json(json!({"error": self.error, "error_description": self.description}))).into_response();
        if let Some(s) = self.retry_after
            && let Ok(v) = s.to_string().parse()
        {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        r.headers_mut().insert(header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
        r
    }
}

#[derive(Default)]
struct Facts {
    org: Option<OrgId>,
    project: Option<ProjectId>,
    actor: Option<String>,
    target: Option<String>,
}

pub async fn token(State(app): State<AppState>, Extension(id): Extension<RequestId>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let source = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let mut facts = Facts::default();
    let result = match &app.exchange {
        None => Err(oauth(StatusCode::BAD_REQUEST, "unsupported_grant_type", "token exchange is not configured")),
        // the subject token is the credential here; a second one beside it is ambiguous
        Some(_) if !matches!(crate::handlers::credential(&parts), Presented::Nothing) => Err(oauth(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "send the subject token only, with no other credential",
        )),
        Some(x) => {
            let bytes = read_form(&parts.headers, body).await;
            match bytes {
                Ok(b) => exchange(x, &b, &mut facts).await,
                Err(e) => Err(e),
            }
        }
    };
    let (outcome, status, code) = match &result {
        Ok(_) => (Outcome::Allowed, 200, "ok"),
        Err(e) => (Outcome::Denied, e.status.as_u16(), e.error),
    };
    let actor = facts.actor.map_or(Actor::Anonymous, Actor::Federated);
    let mut e = Event::new(EventKind::TokenExchange, outcome, status, code, actor);
    e.org = facts.org;
    e.project = facts.project;
    e.target = facts.target;
    e.request_id = Some(id);
    e.source = source;
    e.endpoint = Some("token.exchange");
    let recorded = match &app.services.audit.auditor {
        Some(a) => a.record(e).await.is_ok(),
        None => true,
    };
    match result {
        Ok(v) if recorded => {
            let mut r = (StatusCode::OK, Json(v)).into_response();
            r.headers_mut().insert(header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
            r
        }
        Ok(_) => oauth(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "the decision could not be audited")
            .into_response(),
        Err(e) => e.into_response(),
    }
}

async fn read_form(headers: &HeaderMap, body: axum::body::Body) -> Result<Bytes, OAuthError> {
    gatehouse_http::read_body(headers, body, "application/x-www-form-urlencoded", MAX_BODY).await.map_err(|code| {
        match code {
            DenyCode::UnsupportedMediaType => {
                oauth(StatusCode::BAD_REQUEST, "invalid_request", "use application/x-www-form-urlencoded")
            }
            DenyCode::RequestTooLarge => {
                oauth(StatusCode::PAYLOAD_TOO_LARGE, "invalid_request", "request body too large")
            }
            DenyCode::RequestTimeout => {
                oauth(StatusCode::REQUEST_TIMEOUT, "invalid_request", "the request body was not received in time")
            }
            _ => oauth(StatusCode::BAD_REQUEST, "invalid_request", "the request body could not be read"),
        }
    })
}

/// The RFC 8693 request, read from the untrusted form: each known parameter at most once,
/// unknown ones refused.
#[derive(Debug, Default)]
struct Form {
    grant: Option<String>,
    subject_token: Option<String>,
    subject_type: Option<String>,
    requested: Option<String>,
    scope: Option<String>,
}

fn parse_form(body: &[u8]) -> Result<Form, OAuthError> {
    let bad = |d| oauth(StatusCode::BAD_REQUEST, "invalid_request", d);
    let mut f = Form::default();
    for (k, v) in url::form_urlencoded::parse(body) {
        let slot = match &*k {
            "grant_type" => &mut f.grant,
            "subject_token" => &mut f.subject_token,
            "subject_token_type" => &mut f.subject_type,
            "requested_token_type" => &mut f.requested,
            "scope" => &mut f.scope,
            // RFC 8693 optional parameters we do not act on.
            "audience" | "resource" => continue,
            _ => return Err(bad("unknown parameter")),
        };
        if slot.replace(v.into_owned()).is_some() {
            return Err(bad("repeated parameter"));
        }
    }
    Ok(f)
}

/// The token-exchange form parser on untrusted bytes: whether it accepts them. For the fuzz
/// targets.
#[doc(hidden)]
pub fn reads_exchange_form(body: &[u8]) -> bool {
    parse_form(body).is_ok()
}

async fn exchange(x: &Exchange, body: &[u8], facts: &mut Facts) -> Result<Value, OAuthError> {
    let bad = |d| oauth(StatusCode::BAD_REQUEST, "invalid_request", d);
    let Form { grant, subject_token, subject_type, requested, scope } = parse_form(body)?;
    if grant.as_deref() != Some(GRANT) {
        return Err(oauth(StatusCode::BAD_REQUEST, "unsupported_grant_type", "grant_type must be token-exchange"));
    }
    let subject_token = subject_token.ok_or(bad("subject_token is required"))?;
    if !matches!(subject_type.as_deref(), Some(JWT_TYPE | ACCESS_TOKEN_TYPE)) {
        return Err(bad("subject_token_type must be jwt or access_token"));
    }
    if requested.as_deref().is_some_and(|r| r != ACCESS_TOKEN_TYPE) {
        return Err(oauth(StatusCode::BAD_REQUEST, "invalid_target", "only access tokens are issued"));
    }
    let id = x.federated.federation.verify(&subject_token, Plane::Data).await.map_err(|e| match e {
        gatehouse_oidc::Error::Unavailable => {
            oauth(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "the issuer's keys are unavailable")
        }
        gatehouse_oidc::Error::Expired => {
            oauth(StatusCode::BAD_REQUEST, "invalid_grant", "the subject token has expired")
        }
        gatehouse_oidc::Error::Invalid(_) => {
            oauth(StatusCode::BAD_REQUEST, "invalid_grant", "the subject token is not acceptable")
        }
    })?;
    facts.actor = Some(format!("{}:{}", id.issuer, id.subject));
    let rule = x.rules.iter().find(|r| rule_admits(r, &id)).ok_or(oauth(
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "no exchange rule admits this subject",
    ))?;
    x.admit(&id.issuer, &id.subject, rule.per_subject_per_minute).map_err(|wait| OAuthError {
        status: StatusCode::TOO_MANY_REQUESTS,
        error: "slow_down",
        description: "too many exchanges for this subject",
        retry_after: Some(wait),
    })?;
    let (org, project, _, _) = x
        .federated
        .tenant(&rule.org, &rule.project)
        .await
        .map_err(|_| oauth(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "store unavailable"))?
        .ok_or(oauth(StatusCode::BAD_REQUEST, "invalid_grant", "the rule's org or project is unavailable"))?;
    facts.org = Some(org);
    facts.project = Some(project);

    // Scopes: the rule's, or the requested subset of them.
    let allowed: Vec<ScopePattern> = rule.scopes.iter().filter_map(|s| ScopePattern::parse(s)).collect();
    let scopes = match scope.as_deref() {
        None => allowed.clone(),
        Some(text) => {
            let asked: Vec<ScopePattern> = text
                .split_whitespace()
                .map(|s| ScopePattern::parse(s).ok_or(oauth(StatusCode::BAD_REQUEST, "invalid_scope", "bad scope")))
                .collect::<Result<_, _>>()?;
            if asked.is_empty() || !asked.iter().all(|a| allowed.iter().any(|p| p.covers(a))) {
                return Err(oauth(StatusCode::BAD_REQUEST, "invalid_scope", "scope is wider than the rule allows"));
            }
            asked
        }
    };
    // Never beyond the JWT's own expiry.
    let jwt_left = id.expires_at.saturating_sub(now_ms() / 1000);
    let ttl_secs = u64::try_from(jwt_left).unwrap_or(0).min(rule.max_ttl.as_secs());
    if ttl_secs == 0 {
        return Err(oauth(StatusCode::BAD_REQUEST, "invalid_grant", "the subject token expires too soon"));
    }
    let caps = narrowing(
        None,
        rule.models.as_deref(),
        None,
        rule.budget_usd.as_ref().map(|b| json!(b)).as_ref(),
        rule.rpm,
        None,
    )
    .map_err(|_| oauth(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "the exchange rule is invalid"))?;
    let minted = x
        .tokens
        .mint(MintRequest {
            org,
            project,
            name: "exchanged".into(),
            scopes: scopes.clone(),
            models: caps.models,
            ttl: Duration::from_secs(ttl_secs),
            budget_micro_usd: caps.budget_micro_usd,
            rpm: caps.rpm,
            ips: None,
            minted_by: format!("oidc:{}:{}", id.issuer, id.subject),
        })
        .await
        .map_err(|_| oauth(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "cannot mint now"))?;
    facts.target = Some(minted.id.to_string());
    let expires_in = (minted.expires_at - now_ms()).max(0) / 1000;
    Ok(json!({
        "access_token": minted.token,
        "issued_token_type": ACCESS_TOKEN_TYPE,
        "token_type": "Bearer",
        "expires_in": expires_in,
        "scope": scopes.iter().map(ScopePattern::as_str).collect::<Vec<_>>().join(" "),
    }))
}

#[cfg(test)]
mod tests {
    use super::{glob, parse_form};

    #[test]
    fn the_form_takes_each_known_parameter_once_and_nothing_else() {
        let Ok(f) = parse_form(b"grant_type=g&subject_token=t%2Bx&subject_token_type=s&audience=a&audience=b") else {
            panic!("a well-formed form is read")
        };
        assert_eq!((f.grant.as_deref(), f.subject_token.as_deref()), (Some("g"), Some("t+x")));
        for bad in [&b"subject_token=a&subject_token=b"[..], b"client_secret=x", b"grant_type=a&grant_type=a"] {
            assert!(parse_form(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        // invalid UTF-8 and stray separators are read, not fatal
        assert!(parse_form(b"%FF=%FE&&=&scope").is_err(), "an unknown (garbled) name is refused");
        assert!(parse_form(b"").is_ok());
    }

    #[test]
    fn globs() {
        assert!(glob("system:serviceaccount:ci:*", "system:serviceaccount:ci:runner"));
        assert!(!glob("system:serviceaccount:ci:*", "system:serviceaccount:prod:runner"));
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxc"));
        assert!(glob("exact", "exact") && !glob("exact", "exact2"));
        assert!(!glob("ab*ba", "aba"), "prefix and suffix may not overlap");
    }
}
