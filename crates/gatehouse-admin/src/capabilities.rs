//! `/admin/v1/capabilities` and `/admin/v1/capability-keys`: mint capability tokens
//! (macaroons) for a project, list and revoke them (a revoke takes the whole delegation
//! subtree), and rotate the org's root key.

use std::time::Duration;

use gatehouse_core::{Denial, DenyCode, TokenId};
use gatehouse_store::CapabilityRow;
use gatehouse_tokens::{MintRequest, Minted, Rotation, narrowing};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::keys::OrgQuery;
use crate::rbac::Permission;
use crate::reply::{bad, page_limit, project_named, store_err};
use crate::service::{Call, Pending};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateCapability {
    name: String,
    org: Option<String>,
    project: Option<String>,
    scopes: Vec<String>,
    models: Option<Vec<String>>,
    expires_in_seconds: u64,
    /// Decimal string or number of US dollars, at most six decimals.
    budget_usd: Option<Value>,
    rpm: Option<u32>,
    ips: Option<Vec<String>>,
}

pub fn minted_json(m: &Minted) -> Value {
    json!({
        "id": m.id.to_string(),
        "org_id": m.org.to_string(),
        "project_id": m.project.to_string(),
        "parent_id": m.parent.map(|p| p.to_string()),
        "caveats": m.caveats,
        "expires_at": m.expires_at,
        "token": m.token,
    })
}

fn row_json(r: &CapabilityRow) -> Value {
    json!({
        "id": r.id,
        "name": r.name,
        "org_id": r.org_id,
        "project_id": r.project_id,
        "parent_id": r.parent_id,
        "key_version": r.key_version,
        "caveats": serde_json::from_str::<Value>(&r.caveats).unwrap_or(Value::Null),
        "minted_by": r.minted_by,
        "created_at": r.created_at,
        "expires_at": r.expires_at,
        "revoked_at": r.revoked_at,
    })
}

pub fn create(c: &mut Call) -> Pending<'_> {
    Box::pin(async move {
        let req: CreateCapability = c.body().await?;
        let org = c.target_org(req.org.as_deref(), Permission::KeyWriteAny).await?;
        if !crate::orgs::valid_name(&req.name) {
            return Err(bad("name"));
        }
        let n = narrowing(
            Some(&req.scopes),
            req.models.as_deref(),
            Some(req.expires_in_seconds),
            req.budget_usd.as_ref(),
            req.rpm,
            req.ips.as_deref(),
        )
        .map_err(|e| e.denial())?;
        let project = project_named(&c.s.store, org, req.project.as_deref().unwrap_or("default")).await?;
        if let Some(models) = &n.models {
            // Only models the gateway serves, by canonical name, inside the project's allow-list.
            if !c.s.control.serves_models(models) {
                return Err(bad("models"));
            }
            let project_models =
                c.s.store.project(org, project).await.map_err(store_err)?.and_then(|p| p.allowed_models);
            if let Some(allowed) = project_models
                && !models.iter().all(|m| allowed.contains(m))
            {
                return Err(Denial::new(DenyCode::PermissionDenied).with_param("models"));
            }
        }
        let minted =
            c.s.tokens
                .mint(MintRequest {
                    org,
                    project,
                    name: req.name,
                    scopes: n.scopes.unwrap_or_default(),
                    models: n.models,
                    ttl: n.ttl.unwrap_or(Duration::from_secs(3600)),
                    budget_micro_usd: n.budget_micro_usd,
                    rpm: n.rpm,
                    ips: n.ips,
                    minted_by: c.op.actor().render(),
                })
                .await
                .map_err(|e| e.denial())?;
        c.target = Some(minted.id.to_string());
        Ok((StatusCode::CREATED, minted_json(&minted)))
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    org: Option<String>,
    limit: Option<u32>,
    /// The last id of the previous page.
    before: Option<String>,
}

pub fn list(c: &mut Call) -> Pending<'_> {
    Box::pin(async move {
        let q: ListQuery = c.query()?;
        let limit = page_limit(q.limit)?;
        let org = c.target_org(q.org.as_deref(), Permission::KeyRead).await?;
        let before = q.before.as_deref().map(|b| TokenId::parse(b).ok_or(bad("before"))).transpose()?;
        let rows = c.s.store.list_capabilities(org, before, limit).await.map_err(store_err)?;
        let data: Vec<Value> = rows.iter().map(row_json).collect();
        Ok((StatusCode::OK, json!({"object": "list", "data": data})))
    })
}

pub fn revoke(c: &mut Call) -> Pending<'_> {
    Box::pin(async move {
        c.target_path("id");
        let id = c.path("id").to_owned();
        let q: OrgQuery = c.query()?;
        let org = c.target_org(q.org.as_deref(), Permission::KeyWriteAny).await?;
        let tid = TokenId::parse(&id).ok_or(Denial::new(DenyCode::NotFound))?;
        match c.s.tokens.revoke(org, tid).await.map_err(|e| e.denial())? {
            None => Err(Denial::new(DenyCode::NotFound)),
            Some(n) => Ok((StatusCode::OK, json!({"id": id, "revoked": n}))),
        }
    })
}

pub fn keys(c: &mut Call) -> Pending<'_> {
    Box::pin(async move {
        let q: OrgQuery = c.query()?;
        let org = c.target_org(q.org.as_deref(), Permission::KeyRead).await?;
        let versions = c.s.tokens.key_versions(org).await.map_err(|e| e.denial())?;
        let data: Vec<Value> = versions
            .iter()
            .map(|v| {
                json!({
                    "version": v.version,
                    "created_at": v.created_at,
                    "current": v.superseded_at.is_none(),
                    "superseded_at": v.superseded_at,
                    "retire_at": v.retire_at,
                })
            })
            .collect();
        Ok((StatusCode::OK, json!({"object": "list", "data": data})))
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    org: Option<String>,
    /// `at_expiry` (default): older versions verify until the last token minted under them
    /// expires. `now`: they stop at once (use after a suspected leak).
    retire: Option<String>,
}

pub fn rotate(c: &mut Call) -> Pending<'_> {
    Box::pin(async move {
        let req: RotateKey = c.body().await?;
        let org = c.target_org(req.org.as_deref(), Permission::OrgUpdate).await?;
        let retire = match req.retire.as_deref() {
            None | Some("at_expiry") => Rotation::AtExpiry,
            Some("now") => Rotation::Now,
            Some(_) => return Err(bad("retire")),
        };
        let version = c.s.tokens.rotate(org, retire).await.map_err(|e| e.denial())?;
        Ok((StatusCode::OK, json!({"version": version})))
    })
}
