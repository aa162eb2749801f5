//! Every control-plane decision — each mutation and each denial — becomes one event in the
//! tamper-evident audit log (and a `gatehouse::audit` log line): actor, action, target, org,
//! outcome, status, request id, source address. Content-free: ids and codes only.
//!
//! The response waits for the event to be durable: an allowed mutation whose event cannot be
//! recorded answers 503 (the writer spools when the store is down, so this only happens
//! with `fail_closed` or a failing spool).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::response::{IntoResponse, Response};
use gatehouse_audit::{Actor, Event, EventKind};
use gatehouse_core::{Denial, DenyCode, OrgId, RequestId};
use http::StatusCode;
use http::request::Parts;

use crate::AdminState;
use crate::rbac::Operator;

/// Request facts the audit row needs.
#[derive(Clone, Debug, Default)]
pub struct AuditCx {
    pub request_id: Option<RequestId>,
    pub source: Option<std::net::IpAddr>,
}

impl AuditCx {
    pub fn from_parts(parts: &Parts) -> AuditCx {
        AuditCx {
            request_id: parts.extensions.get::<RequestId>().copied(),
            source: parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AuditCx {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(AuditCx::from_parts(parts))
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Outcome {
    Allowed(StatusCode),
    Denied(DenyCode),
}

/// Records one decision and waits until it is durable.
pub async fn record(
    s: &AdminState,
    cx: &AuditCx,
    actor: Actor,
    kind: EventKind,
    org: Option<OrgId>,
    target: Option<String>,
    outcome: Outcome,
) -> Result<(), gatehouse_audit::Unavailable> {
    let (out, status, code) = match outcome {
        Outcome::Allowed(st) => (gatehouse_audit::Outcome::Allowed, st.as_u16(), "ok"),
        Outcome::Denied(c) => (gatehouse_audit::Outcome::Denied, c.status(), c.as_str()),
    };
    let mut e = Event::new(kind, out, status, code, actor);
    tracing::info!(target: "gatehouse::audit", plane = "control", actor = %e.actor.render(), action = kind.as_str(),
        org = org.map(tracing::field::display), target = target.as_deref(), outcome = out.as_str(), status, code,
        request_id = cx.request_id.map(tracing::field::display), "admin decision");
    e.org = org;
    e.target = target;
    e.request_id = cx.request_id;
    e.source = cx.source;
    s.audit.record(e).await.inspect_err(|_| {
        tracing::error!(target: "gatehouse::audit", action = kind.as_str(), "audit event not recorded");
    })
}

/// Audits the result of a service: an allowed result whose event cannot be recorded becomes
/// 503 (the change may have happened, but unaudited success is not reported as success).
pub async fn audited(
    s: &AdminState,
    cx: &AuditCx,
    op: &Operator,
    kind: EventKind,
    org: Option<OrgId>,
    target: Option<String>,
    result: Result<(StatusCode, serde_json::Value), Denial>,
) -> Result<(StatusCode, serde_json::Value), Denial> {
    let actor = op.actor();
    // A scoped operator's decisions belong to its own org's chain, also when it addressed
    // another org (that org does not learn about the probe; the operator's org does).
    let org = if op.org.is_some() { op.org } else { org };
    match result {
        Ok((status, body)) => match record(s, cx, actor, kind, org, target, Outcome::Allowed(status)).await {
            Ok(()) => Ok((status, body)),
            Err(_) => Err(Denial::new(DenyCode::Unavailable)),
        },
        Err(d) => {
            let _ = record(s, cx, actor, kind, org, target, Outcome::Denied(d.code)).await;
            Err(d)
        }
    }
}

/// Audits the result of a handler and turns it into the response.
pub async fn respond(
    s: &AdminState,
    cx: &AuditCx,
    op: &Operator,
    kind: EventKind,
    org: Option<OrgId>,
    target: Option<String>,
    result: Result<(StatusCode, serde_json::Value), Denial>,
) -> Response {
    match audited(s, cx, op, kind, org, target, result).await {
        Ok((status, body)) => (status, axum::Json(body)).into_response(),
        Err(d) => d.into_response(),
    }
}
