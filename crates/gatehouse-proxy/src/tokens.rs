//! Token endpoints of the data plane: `POST /v1/tokens/delegate` mints a registered child of
//! the presented capability token. Decisions are audited and acknowledged before the answer
//! (a token whose minting was not recorded is not handed out).

use std::net::{IpAddr, SocketAddr};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use gatehouse_audit::{Actor, Event, EventKind, Outcome};
use gatehouse_core::{Denial, DenyCode, OrgId, Presented, ProjectId, RequestId};
use gatehouse_tokens::{DelegateBody, actions};
use http::StatusCode;
use http::request::Parts;
use secrecy::ExposeSecret;

use crate::AppState;
use crate::handlers::credential;
use gatehouse_http::read_body;

/// Delegation bodies are a handful of short fields.
const MAX_DELEGATE_BODY: usize = 16 * 1024;

/// Who asked and what was decided, for the audit event.
struct Decision {
    org: Option<OrgId>,
    project: Option<ProjectId>,
    actor: Actor,
    target: Option<String>,
}

fn e_wider() -> Denial {
    Denial::new(DenyCode::PermissionDenied).with_param("caveats")
}

pub async fn delegate(State(app): State<AppState>, Extension(id): Extension<RequestId>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let source = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let mut d = Decision { org: None, project: None, actor: Actor::Anonymous, target: None };
    let result = delegate_inner(&app, &parts, body, source, &mut d).await;
    let (outcome, status, code) = match &result {
        Ok(_) => (Outcome::Allowed, 201, "ok"),
        Err((den, _)) => (Outcome::Denied, den.code.status(), den.code.as_str()),
    };
    let mut e = Event::new(EventKind::CapabilityDelegate, outcome, status, code, d.actor);
    e.org = d.org;
    e.project = d.project;
    e.target = d.target;
    e.request_id = Some(id);
    e.source = source;
    e.endpoint = Some("tokens.delegate");
    let recorded = match &app.services.audit.auditor {
        Some(a) => a.record(e).await.is_ok(),
        None => true,
    };
    match result {
        Ok(v) if recorded => (StatusCode::CREATED, Json(v)).into_response(),
        Ok(_) => Denial::new(DenyCode::Unavailable).into_response(),
        Err((den, None)) => den.into_response(),
        Err((den, Some(why))) => explained(den, &why),
    }
}

/// The refusal table's shape with a specific message: used only for "wider than the parent",
/// whose message names the holder's own requested fields (never a secret or content).
fn explained(den: Denial, why: &str) -> Response {
    let mut body = serde_json::to_value(den.body()).unwrap_or_default();
    body["error"]["message"] = format!("the requested token is wider than its parent: {why}").into();
    (StatusCode::from_u16(den.code.status()).unwrap_or(StatusCode::FORBIDDEN), Json(body)).into_response()
}

async fn delegate_inner(
    app: &AppState,
    parts: &Parts,
    body: Body,
    source: Option<IpAddr>,
    d: &mut Decision,
) -> Result<serde_json::Value, (Denial, Option<String>)> {
    let plain = |den: Denial| (den, None);
    let rt = app.runtime.load_full();
    let Some(tokens) = rt.gates.authenticate.creds.tokens.clone() else {
        return Err(plain(Denial::new(DenyCode::NotFound)));
    };
    let presented = match credential(parts) {
        Presented::One(c) => c,
        Presented::Nothing => return Err(plain(Denial::new(DenyCode::MissingCredentials))),
        Presented::Ambiguous => return Err(plain(Denial::new(DenyCode::AmbiguousCredentials))),
    };
    let parent = tokens.verify(presented.expose_secret(), source).await.map_err(|e| match e {
        // An API key or garbage here is simply not a capability token.
        gatehouse_tokens::Error::Invalid => plain(Denial::new(DenyCode::InvalidToken)),
        other => plain(other.denial()),
    })?;
    d.org = Some(parent.principal.org);
    d.project = Some(parent.principal.project);
    d.actor = Actor::of(&parent.principal.credential);
    if !parent.principal.may(actions::DELEGATE) {
        return Err(plain(Denial::new(DenyCode::PermissionDenied)));
    }
    let bytes = read_body(&parts.headers, body, "application/json", MAX_DELEGATE_BODY)
        .await
        .map_err(|c| plain(Denial::new(c)))?;
    let req: DelegateBody = serde_json::from_slice(&bytes).map_err(|_| plain(Denial::new(DenyCode::InvalidJson)))?;
    let req = req.into_request().map_err(|e| plain(e.denial()))?;
    let child = tokens.delegate(&parent, req).await.map_err(|e| match e {
        // The one refusal that explains itself: which field asks for more than the parent has.
        gatehouse_tokens::Error::Wider(why) => (e_wider(), Some(why)),
        other => plain(other.denial()),
    })?;
    d.target = Some(child.id.to_string());
    Ok(serde_json::json!({
        "id": child.id.to_string(),
        "parent_id": child.parent.map(|p| p.to_string()),
        "org_id": child.org.to_string(),
        "project_id": child.project.to_string(),
        "caveats": child.caveats,
        "expires_at": child.expires_at,
        "token": child.token,
    }))
}
