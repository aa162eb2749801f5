//! `/admin/v1/orgs` and `/admin/v1/orgs/{org}/projects`: create, list, get, update, disable
//! and enable. Disabling an org or project disables all its keys on every replica within the
//! key-change poll interval.

use axum::extract::{Path, Query, State};
use axum::response::Response;
use gatehouse_audit::EventKind as K;
use gatehouse_core::{Denial, DenyCode, OrgId, ProjectId};
use gatehouse_store::{OrgRow, ProjectRow};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AdminState;
use crate::audit::{AuditCx, respond};
use crate::body::StrictJson;
use crate::rbac::{Operator, Permission, check};
use crate::reply::{bad, found, store_err};

const MAX_NAME: usize = 64;

pub fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_NAME && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn org_json(o: &OrgRow) -> Value {
    json!({"id": o.id.to_string(), "name": o.name, "created_at": o.created_at, "disabled_at": o.disabled_at})
}

fn project_json(p: &ProjectRow) -> Value {
    json!({"id": p.id.to_string(), "org_id": p.org.to_string(), "name": p.name, "models": p.allowed_models,
           "default_limits": p.default_limits, "guardrail_policy": p.guardrail_policy,
           "created_at": p.created_at, "disabled_at": p.disabled_at})
}

async fn org_view(s: &AdminState, org: OrgId) -> Result<(StatusCode, Value), Denial> {
    let row = s.store.org(org).await.map_err(store_err)?.ok_or(Denial::new(DenyCode::NotFound))?;
    Ok((StatusCode::OK, org_json(&row)))
}

async fn project_view(s: &AdminState, org: OrgId, id: ProjectId) -> Result<(StatusCode, Value), Denial> {
    let row = s.store.project(org, id).await.map_err(store_err)?.ok_or(Denial::new(DenyCode::NotFound))?;
    Ok((StatusCode::OK, project_json(&row)))
}

/// Path ids that do not parse are simply objects that do not exist.
fn org_id(s: &str) -> Result<OrgId, Denial> {
    OrgId::parse(s).ok_or(Denial::new(DenyCode::NotFound))
}

fn project_id(s: &str) -> Result<ProjectId, Denial> {
    ProjectId::parse(s).ok_or(Denial::new(DenyCode::NotFound))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
}

fn limit(p: &Page) -> Result<u32, Denial> {
    match p.limit.unwrap_or(100) {
        l @ 1..=1000 => Ok(l),
        _ => Err(bad("limit")),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameBody {
    name: String,
}

pub async fn create_org(
    State(s): State<AdminState>,
    op: Operator,
    acx: AuditCx,
    body: Result<StrictJson<NameBody>, Denial>,
) -> Response {
    let r = async {
        check(&op, Permission::OrgCreate, None)?;
        let StrictJson(b) = body?;
        if !valid_name(&b.name) {
            return Err(bad("name"));
        }
        let id = s.store.create_org(&b.name).await.map_err(store_err)?;
        let row = s.store.org(id).await.map_err(store_err)?.ok_or(Denial::new(DenyCode::Internal))?;
        Ok((row.id, (StatusCode::CREATED, org_json(&row))))
    }
    .await;
    let (org, r) = split(r);
    respond(&s, &acx, &op, K::OrgCreate, org, org.map(|o| o.to_string()), r).await
}

/// Separates the id an audit row needs from the handler's result.
fn split<I: Copy, T>(r: Result<(I, T), Denial>) -> (Option<I>, Result<T, Denial>) {
    match r {
        Ok((i, t)) => (Some(i), Ok(t)),
        Err(d) => (None, Err(d)),
    }
}

pub async fn list_orgs(
    State(s): State<AdminState>,
    op: Operator,
    acx: AuditCx,
    q: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let r = async {
        let Query(q) = q.map_err(|_| bad("query"))?;
        let limit = limit(&q)?;
        let rows = match op.org {
            // a scoped operator sees exactly its own org
            Some(own) => {
                check(&op, Permission::OrgRead, Some(own))?;
                s.store.org(own).await.map_err(store_err)?.into_iter().collect::<Vec<_>>()
            }
            None => {
                let after = q.after.as_deref().map(org_id).transpose().map_err(|_| bad("after"))?;
                s.store.list_orgs(after, limit).await.map_err(store_err)?
            }
        };
        Ok((StatusCode::OK, json!({"object": "list", "data": rows.iter().map(org_json).collect::<Vec<_>>()})))
    }
    .await;
    respond(&s, &acx, &op, K::OrgList, op.org, None, r).await
}

pub async fn get_org(State(s): State<AdminState>, op: Operator, acx: AuditCx, Path(id): Path<String>) -> Response {
    let org = OrgId::parse(&id);
    let r = async {
        let org = org_id(&id)?;
        check(&op, Permission::OrgRead, Some(org))?;
        org_view(&s, org).await
    }
    .await;
    respond(&s, &acx, &op, K::OrgRead, org, Some(id.clone()), r).await
}

pub async fn update_org(
    State(s): State<AdminState>,
    op: Operator,
    acx: AuditCx,
    Path(id): Path<String>,
    body: Result<StrictJson<NameBody>, Denial>,
) -> Response {
    let org = OrgId::parse(&id);
    let r = async {
        let org = org_id(&id)?;
        check(&op, Permission::OrgUpdate, Some(org))?;
        let StrictJson(b) = body?;
        if !valid_name(&b.name) {
            return Err(bad("name"));
        }
        found(s.store.rename_org(org, &b.name).await.map_err(store_err)?)?;
        org_view(&s, org).await
    }
    .await;
    respond(&s, &acx, &op, K::OrgUpdate, org, Some(id.clone()), r).await
}

async fn set_org_disabled(
    s: &AdminState,
    op: &Operator,
    id: &str,
    disabled: bool,
) -> Result<(StatusCode, Value), Denial> {
    let org = org_id(id)?;
    // Cross-tenant first (404), then the right: only platform admins switch orgs on and off.
    check(op, Permission::OrgRead, Some(org))?;
    check(op, Permission::OrgCreate, None)?;
    found(s.store.set_org_disabled(org, disabled).await.map_err(store_err)?)?;
    org_view(s, org).await
}

pub async fn disable_org(State(s): State<AdminState>, op: Operator, acx: AuditCx, Path(id): Path<String>) -> Response {
    let r = set_org_disabled(&s, &op, &id, true).await;
    respond(&s, &acx, &op, K::OrgDisable, OrgId::parse(&id), Some(id.clone()), r).await
}

pub async fn enable_org(State(s): State<AdminState>, op: Operator, acx: AuditCx, Path(id): Path<String>) -> Response {
    let r = set_org_disabled(&s, &op, &id, false).await;
    respond(&s, &acx, &op, K::OrgEnable, OrgId::parse(&id), Some(id.clone()), r).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectBody {
    name: String,
    #[serde(default)]
    models: Option<Vec<String>>,
    #[serde(default)]
    default_limits: Option<DefaultLimits>,
    #[serde(default)]
    guardrail_policy: Option<String>,
}

/// Default limits for a project's keys. Stored and shown now; enforced by the limits gate
/// (issue #7).
#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rpm: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tpm: Option<u32>,
}

const MAX_LIMIT: u32 = 100_000_000;

/// Validates a project body into the settings the store keeps.
fn settings(s: &AdminState, b: ProjectBody) -> Result<gatehouse_store::ProjectSettings, Denial> {
    if !valid_name(&b.name) {
        return Err(bad("name"));
    }
    valid_models(s, b.models.as_deref())?;
    if let Some(l) = &b.default_limits
        && [l.rpm, l.tpm].into_iter().flatten().any(|v| v == 0 || v > MAX_LIMIT)
    {
        return Err(bad("default_limits"));
    }
    if b.guardrail_policy.as_deref().is_some_and(|p| !valid_name(p)) {
        return Err(bad("guardrail_policy"));
    }
    Ok(gatehouse_store::ProjectSettings {
        name: b.name,
        allowed_models: b.models,
        default_limits: b.default_limits.map(|l| serde_json::to_value(l).unwrap_or(Value::Null)),
        guardrail_policy: b.guardrail_policy,
    })
}

fn valid_models(s: &AdminState, models: Option<&[String]>) -> Result<(), Denial> {
    let Some(models) = models else { return Ok(()) };
    if models.is_empty() || models.len() > 256 || !s.control.serves_models(models) {
        return Err(bad("models"));
    }
    Ok(())
}

pub async fn create_project(
    State(s): State<AdminState>,
    op: Operator,
    acx: AuditCx,
    Path(org): Path<String>,
    body: Result<StrictJson<ProjectBody>, Denial>,
) -> Response {
    let org_parsed = OrgId::parse(&org);
    let r = async {
        let org = org_id(&org)?;
        check(&op, Permission::ProjectWrite, Some(org))?;
        let StrictJson(b) = body?;
        let settings = settings(&s, b)?;
        if s.store.org(org).await.map_err(store_err)?.is_none() {
            return Err(Denial::new(DenyCode::NotFound));
        }
        let id = s.store.create_project(org, &settings.name).await.map_err(store_err)?;
        s.store.update_project(org, id, &settings).await.map_err(store_err)?;
        let row = s.store.project(org, id).await.map_err(store_err)?.ok_or(Denial::new(DenyCode::Internal))?;
        Ok((id, (StatusCode::CREATED, project_json(&row))))
    }
    .await;
    let (id, r) = split(r);
    respond(&s, &acx, &op, K::ProjectCreate, org_parsed, id.map(|i| i.to_string()), r).await
}

pub async fn list_projects(
    State(s): State<AdminState>,
    op: Operator,
    acx: AuditCx,
    Path(org): Path<String>,
    q: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let org_parsed = OrgId::parse(&org);
    let r = async {
        let org = org_id(&org)?;
        check(&op, Permission::ProjectRead, Some(org))?;
        let Query(q) = q.map_err(|_| bad("query"))?;
        let limit = limit(&q)?;
        let after = q.after.as_deref().map(project_id).transpose().map_err(|_| bad("after"))?;
        let rows = s.store.list_projects(org, after, limit).await.map_err(store_err)?;
        Ok((StatusCode::OK, json!({"object": "list", "data": rows.iter().map(project_json).collect::<Vec<_>>()})))
    }
    .await;
    respond(&s, &acx, &op, K::ProjectList, org_parsed, None, r).await
}

pub async fn get_project(
    State(s): State<AdminState>,
    op: Operator,
    acx: AuditCx,
    Path((org, id)): Path<(String, String)>,
) -> Response {
    let org_parsed = OrgId::parse(&org);
    let r = async {
        let org = org_id(&org)?;
        check(&op, Permission::ProjectRead, Some(org))?;
        project_view(&s, org, project_id(&id)?).await
    }
    .await;
    respond(&s, &acx, &op, K::ProjectRead, org_parsed, Some(id.clone()), r).await
}

pub async fn update_project(
    State(s): State<AdminState>,
    op: Operator,
    acx: AuditCx,
    Path((org, id)): Path<(String, String)>,
    body: Result<StrictJson<ProjectBody>, Denial>,
) -> Response {
    let org_parsed = OrgId::parse(&org);
    let r = async {
        let org = org_id(&org)?;
        check(&op, Permission::ProjectWrite, Some(org))?;
        let pid = project_id(&id)?;
        let StrictJson(b) = body?;
        let settings = settings(&s, b)?;
        found(s.store.update_project(org, pid, &settings).await.map_err(store_err)?)?;
        project_view(&s, org, pid).await
    }
    .await;
    respond(&s, &acx, &op, K::ProjectUpdate, org_parsed, Some(id.clone()), r).await
}

async fn set_project_disabled(
    s: &AdminState,
    op: &Operator,
    org: &str,
    id: &str,
    disabled: bool,
) -> Result<(StatusCode, Value), Denial> {
    let org = org_id(org)?;
    check(op, Permission::ProjectWrite, Some(org))?;
    let pid = project_id(id)?;
    found(s.store.set_project_disabled(org, pid, disabled).await.map_err(store_err)?)?;
    project_view(s, org, pid).await
}

pub async fn disable_project(
    State(s): State<AdminState>,
    op: Operator,
    acx: AuditCx,
    Path((org, id)): Path<(String, String)>,
) -> Response {
    let r = set_project_disabled(&s, &op, &org, &id, true).await;
    respond(&s, &acx, &op, K::ProjectDisable, OrgId::parse(&org), Some(id.clone()), r).await
}

pub async fn enable_project(
    State(s): State<AdminState>,
    op: Operator,
    acx: AuditCx,
    Path((org, id)): Path<(String, String)>,
) -> Response {
    let r = set_project_disabled(&s, &op, &org, &id, false).await;
    respond(&s, &acx, &op, K::ProjectEnable, OrgId::parse(&org), Some(id.clone()), r).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectMemberBody {
    user_id: String,
}

/// Adds an org member to a project; members with `key.write_own` may then mint their own keys
/// in it. Idempotent.
pub async fn add_project_member(
    State(s): State<AdminState>,
    op: Operator,
    acx: AuditCx,
    Path((org, id)): Path<(String, String)>,
    body: Result<StrictJson<ProjectMemberBody>, Denial>,
) -> Response {
    let org_parsed = OrgId::parse(&org);
    let r = async {
        let org = org_id(&org)?;
        check(&op, Permission::ProjectWrite, Some(org))?;
        let pid = project_id(&id)?;
        let StrictJson(b) = body?;
        let user =
            gatehouse_core::UserId::parse(&b.user_id).ok_or(Denial::new(DenyCode::NotFound).with_param("user_id"))?;
        // false: no such project in this org, or the user is not a member of the org
        if !s.store.add_project_member(org, pid, user).await.map_err(store_err)? {
            return Err(Denial::new(DenyCode::NotFound).with_param("user_id"));
        }
        Ok((StatusCode::CREATED, json!({"project_id": pid.to_string(), "user_id": user.to_string()})))
    }
    .await;
    respond(&s, &acx, &op, K::ProjectMemberAdd, org_parsed, Some(id.clone()), r).await
}
