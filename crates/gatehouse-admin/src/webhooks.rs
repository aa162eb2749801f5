//! `/admin/v1/webhooks`: per-org audit subscriptions and their delivery logs. The signing
//! secret of a generic webhook is shown once, at creation; it is stored sealed.

use gatehouse_audit::webhooks::NewWebhook;
use gatehouse_core::{Denial, DenyCode, OrgId};
use gatehouse_store::{DeliveryRow, WebhookRow};
use http::StatusCode;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AdminState;
use crate::rbac::{Operator, Permission, Role, check};
use crate::reply::{bad, page_limit, store_err};
use crate::service::{Call, Pending};

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
    outcomes: Option<Vec<String>>,
    org: Option<String>,
}

pub fn create(c: &mut Call) -> Pending<'_> {
    Box::pin(async move {
        c.org = c.op.org;
        let b: CreateWebhook = c.body().await?;
        let org = org_of(&c.s, &c.op, b.org.as_deref(), Permission::OrgUpdate).await?;
        c.org = org;
        let w = NewWebhook { org, name: b.name, kind: b.kind, url: b.url, events: b.events, outcomes: b.outcomes };
        let (row, secret) = c.s.webhooks.create(w).await.map_err(|e| match e {
            gatehouse_audit::webhooks::CreateError::Store => Denial::new(DenyCode::Unavailable),
            other => bad(other.param()),
        })?;
        c.target = Some(row.id.clone());
        let mut v = view(&row);
        if let Some(sec) = secret {
            v["secret"] = json!(sec.expose_secret());
        }
        Ok((StatusCode::CREATED, v))
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgQuery {
    org: Option<String>,
    limit: Option<u32>,
    /// Deliveries: the previous page's `next_before`.
    before: Option<String>,
}

/// The query's org, checked for `p`; named in the audit row (with the path's `{id}`, if any).
async fn scoped(c: &mut Call, p: Permission) -> Result<(Option<OrgId>, OrgQuery), Denial> {
    c.org = c.op.org;
    if !c.path("id").is_empty() {
        c.target_path("id");
    }
    let q: OrgQuery = c.query()?;
    let org = org_of(&c.s, &c.op, q.org.as_deref(), p).await?;
    c.org = org;
    Ok((org, q))
}

pub fn list(c: &mut Call) -> Pending<'_> {
    Box::pin(async move {
        let (org, _) = scoped(c, Permission::AuditRead).await?;
        let rows = c.s.store.list_webhooks(org).await.map_err(store_err)?;
        Ok((StatusCode::OK, json!({"object": "list", "data": rows.iter().map(view).collect::<Vec<_>>()})))
    })
}

pub fn delete(c: &mut Call) -> Pending<'_> {
    Box::pin(async move {
        let (org, _) = scoped(c, Permission::OrgUpdate).await?;
        let id = c.path("id").to_owned();
        if !c.s.webhooks.delete(org, &id).await.map_err(store_err)? {
            return Err(Denial::new(DenyCode::NotFound));
        }
        Ok((StatusCode::OK, json!({"id": id, "deleted": true})))
    })
}

pub fn deliveries(c: &mut Call) -> Pending<'_> {
    Box::pin(async move {
        c.org = c.op.org;
        c.target_path("id");
        let q: OrgQuery = c.query()?;
        let limit = page_limit(q.limit)?;
        let (org, _) = scoped(c, Permission::AuditRead).await?;
        let id = c.path("id").to_owned();
        if c.s.store.webhook(org, &id).await.map_err(store_err)?.is_none() {
            return Err(Denial::new(DenyCode::NotFound));
        }
        // the cursor is `<created_at>_<id>` of the last delivery shown
        let before = match q.before.as_deref() {
            None => None,
            Some(b) => {
                let (at, did) = b.split_once('_').ok_or(bad("before"))?;
                let at: i64 = at.parse().map_err(|_| bad("before"))?;
                if !gatehouse_core::is_id(did) {
                    return Err(bad("before"));
                }
                Some((at, did))
            }
        };
        let rows = c.s.store.list_deliveries(org, &id, before, limit).await.map_err(store_err)?;
        let next =
            (rows.len() == limit as usize).then(|| rows.last().map(|d| format!("{}_{}", d.created_at, d.id))).flatten();
        let data: Vec<Value> = rows.iter().map(delivery_view).collect();
        Ok((StatusCode::OK, json!({"object": "list", "data": data, "next_before": next})))
    })
}
