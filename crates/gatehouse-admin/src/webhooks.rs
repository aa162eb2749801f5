//! `/admin/v1/webhooks`: per-org audit subscriptions and their delivery logs. The signing
//! secret of a generic webhook is shown once, at creation; it is stored sealed.

use axum::extract::{Path, Query, State};
use axum::response::Response;
use gatehouse_audit::EventKind as K;
use gatehouse_core::{Denial, DenyCode, OrgId};
use gatehouse_store::{DeliveryRow, WebhookRow};
use gatehouse_webhooks::NewWebhook;
use http::StatusCode;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AdminState;
use crate::audit::{AuditCx, respond};
use crate::body::StrictJson;
use crate::rbac::{Operator, Permission, Role, check};
use crate::reply::{bad, store_err};

/// The org a webhook call addresses: by id or name; none means the operator's own, or for
/// platform admins the platform itself (webhooks on platform-chain events).
async fn org_of(s: &AdminState, op: &Operator, org: Option<&str>, p: Permission) -> Result<Option<OrgId>, Denial> {
    let target = match org {
        Some(o) => match OrgId::parse(o) {
            Some(id) => Some(id),
            None => Some(
                s.store
                    .org_by_name(o)
                    .await
                    .map_err(store_err)?
                    .ok_or(Denial::new(DenyCode::NotFound).with_param("org"))?,
            ),
        },
        None if op.role == Role::PlatformAdmin => None,
        None => op.org,
    };
    check(op, p, target.or(op.org))?;
    Ok(target)
}

fn view(w: &WebhookRow) -> Value {
    let parse = |s: &str| serde_json::from_str::<Value>(s).unwrap_or(Value::Null);
    json!({"id": w.id, "org_id": w.org_id, "name": w.name, "kind": w.kind, "url": w.url,
           "events": parse(&w.events), "outcomes": w.outcomes.as_deref().map_or(Value::Null, parse),
           "created_at": w.created_at})
}

fn delivery_view(d: &DeliveryRow) -> Value {
    json!({"id": d.id, "webhook_id": d.webhook_id, "event_id": d.event_id, "action": d.action,
           "status": d.status, "attempts": d.attempts, "next_at": d.next_at, "last_status": d.last_status,
           "last_error": d.last_error, "created_at": d.created_at, "updated_at": d.updated_at})
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    name: String,
    kind: String,
    url: String,
    events: Vec<String>,
    #[serde(default)]
    outcomes: Option<Vec<String>>,
    #[serde(default)]
    org: Option<String>,
}

pub async fn create(
    State(s): State<AdminState>,
    op: Operator,
    acx: AuditCx,
    body: Result<StrictJson<CreateWebhook>, Denial>,
) -> Response {
    let mut scoped = op.org;
    let mut target = None;
    let r = async {
        let StrictJson(b) = body?;
        let org = org_of(&s, &op, b.org.as_deref(), Permission::OrgUpdate).await?;
        scoped = org;
        let w = NewWebhook { org, name: b.name, kind: b.kind, url: b.url, events: b.events, outcomes: b.outcomes };
        let (row, secret) = s.webhooks.create(w).await.map_err(|e| match e {
            gatehouse_webhooks::CreateError::Store => Denial::new(DenyCode::Unavailable),
            other => bad(other.param()),
        })?;
        target = Some(row.id.clone());
        let mut v = view(&row);
        if let Some(sec) = secret {
            v["secret"] = json!(sec.expose_secret());
        }
        Ok((StatusCode::CREATED, v))
    }
    .await;
    respond(&s, &acx, &op, K::WebhookCreate, scoped, target, r).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgQuery {
    #[serde(default)]
    org: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
}

type Q = Result<Query<OrgQuery>, axum::extract::rejection::QueryRejection>;

pub async fn list(State(s): State<AdminState>, op: Operator, acx: AuditCx, q: Q) -> Response {
    let mut scoped = op.org;
    let r = async {
        let Query(q) = q.map_err(|_| bad("query"))?;
        let org = org_of(&s, &op, q.org.as_deref(), Permission::AuditRead).await?;
        scoped = org;
        let rows = s.store.list_webhooks(org).await.map_err(store_err)?;
        Ok((StatusCode::OK, json!({"object": "list", "data": rows.iter().map(view).collect::<Vec<_>>()})))
    }
    .await;
    respond(&s, &acx, &op, K::WebhookList, scoped, None, r).await
}

pub async fn delete(State(s): State<AdminState>, op: Operator, acx: AuditCx, Path(id): Path<String>, q: Q) -> Response {
    let mut scoped = op.org;
    let r = async {
        let Query(q) = q.map_err(|_| bad("query"))?;
        let org = org_of(&s, &op, q.org.as_deref(), Permission::OrgUpdate).await?;
        scoped = org;
        if !s.webhooks.delete(org, &id).await.map_err(store_err)? {
            return Err(Denial::new(DenyCode::NotFound));
        }
        Ok((StatusCode::OK, json!({"id": id, "deleted": true})))
    }
    .await;
    respond(&s, &acx, &op, K::WebhookDelete, scoped, Some(id.clone()), r).await
}

pub async fn deliveries(
    State(s): State<AdminState>,
    op: Operator,
    acx: AuditCx,
    Path(id): Path<String>,
    q: Q,
) -> Response {
    let mut scoped = op.org;
    let r = async {
        let Query(q) = q.map_err(|_| bad("query"))?;
        let limit = match q.limit.unwrap_or(100) {
            l @ 1..=1000 => l,
            _ => return Err(bad("limit")),
        };
        let org = org_of(&s, &op, q.org.as_deref(), Permission::AuditRead).await?;
        scoped = org;
        if s.store.webhook(org, &id).await.map_err(store_err)?.is_none() {
            return Err(Denial::new(DenyCode::NotFound));
        }
        let rows = s.store.list_deliveries(org, &id, limit).await.map_err(store_err)?;
        Ok((StatusCode::OK, json!({"object": "list", "data": rows.iter().map(delivery_view).collect::<Vec<_>>()})))
    }
    .await;
    respond(&s, &acx, &op, K::WebhookDeliveries, scoped, Some(id.clone()), r).await
}
