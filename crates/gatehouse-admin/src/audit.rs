//! Every control-plane decision — each mutation and each denial — becomes one row in the audit
//! store (and a `gatehouse::audit` log line): actor, action, target, org, outcome, status,
//! request id, source address. Content-free: ids and codes only.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::response::{IntoResponse, Response};
use gatehouse_core::{Denial, DenyCode, OrgId, RequestId};
use gatehouse_store::{AuditEvent, now_ms};
use http::StatusCode;
use http::request::Parts;

use crate::AdminState;
use crate::rbac::Operator;

/// Request facts the audit row needs.
#[derive(Clone, Debug, Default)]
pub struct AuditCx {
    pub request_id: Option<String>,
    pub source: Option<String>,
}

impl AuditCx {
    pub fn from_parts(parts: &Parts) -> AuditCx {
        AuditCx {
            request_id: parts.extensions.get::<RequestId>().map(ToString::to_string),
            source: parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string()),
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

/// Writes one audit row. A failure to write is logged loudly; the tamper-evident write path
/// with spooling and fail-closed options arrives with issue #4.
pub async fn record(
    s: &AdminState,
    cx: &AuditCx,
    actor: &str,
    action: &'static str,
    org: Option<OrgId>,
    target: Option<String>,
    outcome: Outcome,
) {
    let (outcome, status, code) = match outcome {
        Outcome::Allowed(st) => ("allowed", st.as_u16(), "ok"),
        Outcome::Denied(c) => ("denied", c.status(), c.as_str()),
    };
    tracing::info!(target: "gatehouse::audit", plane = "control", actor, action, org = org.map(tracing::field::display),
        target = target.as_deref(), outcome, status, code, request_id = cx.request_id.as_deref(), "admin decision");
    let event = AuditEvent {
        at: now_ms(),
        org,
        actor: actor.to_owned(),
        action,
        target,
        outcome,
        status,
        request_id: cx.request_id.clone(),
        source: cx.source.clone(),
    };
    if let Err(e) = s.store.append_audit(&event).await {
        tracing::error!(error = %e, action, "audit write failed");
    }
}

/// Audits the result of a handler and turns it into the response.
pub async fn respond(
    s: &AdminState,
    cx: &AuditCx,
    op: &Operator,
    action: &'static str,
    org: Option<OrgId>,
    target: Option<String>,
    result: Result<(StatusCode, serde_json::Value), Denial>,
) -> Response {
    match result {
        Ok((status, body)) => {
            record(s, cx, &op.token_id, action, org, target, Outcome::Allowed(status)).await;
            (status, axum::Json(body)).into_response()
        }
        Err(d) => {
            record(s, cx, &op.token_id, action, org, target, Outcome::Denied(d.code)).await;
            d.into_response()
        }
    }
}
