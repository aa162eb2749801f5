//! `/admin/v1/orgs/{org}/guardrails` and `/admin/v1/orgs/{org}/projects/{project}/guardrails`:
//! the guardrail policy an org or project layers over the deployment default. A spec is
//! compiled (on top of what lies below it) before it is stored, so a stored policy always
//! works; it applies on this replica at once and on the others within their poll interval.

use axum::extract::{Path, State};
use axum::response::Response;
use gatehouse_audit::EventKind as K;
use gatehouse_core::{Denial, DenyCode, OrgId, ProjectId};
use gatehouse_guardrails::PolicySpec;
use http::StatusCode;
use serde_json::{Value, json};

use crate::AdminState;
use crate::audit::{AuditCx, respond};
use crate::body::StrictJson;
use crate::rbac::{Operator, Permission, check};
use crate::reply::{bad, store_err};

/// Resolves the path to an existing org (and project) the operator may act on; anything
/// else is not found.
pub(crate) async fn scope(
    s: &AdminState,
    op: &Operator,
    org: &str,
    project: Option<&str>,
    permission: Permission,
) -> Result<(OrgId, Option<ProjectId>), Denial> {
    let org = OrgId::parse(org).ok_or(Denial::new(DenyCode::NotFound))?;
    check(op, permission, Some(org))?;
    s.store.org(org).await.map_err(store_err)?.ok_or(Denial::new(DenyCode::NotFound))?;
    let project = match project {
        None => None,
        Some(p) => {
            let id = ProjectId::parse(p).ok_or(Denial::new(DenyCode::NotFound))?;
            s.store.project(org, id).await.map_err(store_err)?.ok_or(Denial::new(DenyCode::NotFound))?;
            Some(id)
        }
    };
    Ok((org, project))
}

/// The scope's own spec (what was stored, or nothing) and the effective one after layering.
async fn view(s: &AdminState, org: OrgId, project: Option<ProjectId>) -> Result<(StatusCode, Value), Denial> {
    let row = s.store.guardrail_policy(org, project).await.map_err(store_err)?;
    let own = row.as_ref().and_then(|r| serde_json::from_str::<Value>(&r.spec).ok()).unwrap_or(Value::Null);
    let effective = serde_json::to_value(s.control.guardrail_policy(org, project)).unwrap_or(Value::Null);
    Ok((
        StatusCode::OK,
        json!({
            "org_id": org,
            "project_id": project,
            "policy": own,
            "effective": effective,
            "updated_at": row.as_ref().map(|r| r.updated_at),
            "updated_by": row.as_ref().map(|r| r.updated_by.clone()),
        }),
    ))
}

/// The top-level field a spec error is about (the refusal's `param` is a fixed name).
fn field(e: &gatehouse_guardrails::SpecError) -> &'static str {
    match e.field.split(['.', '[']).next() {
        Some("detectors") => "detectors",
        Some("custom") => "custom",
        Some("injection_threshold") => "injection_threshold",
        _ => "policy",
    }
}

async fn put(
    s: &AdminState,
    op: &Operator,
    org: &str,
    project: Option<&str>,
    body: Result<StrictJson<PolicySpec>, Denial>,
) -> Result<(StatusCode, Value), Denial> {
    let perm = if project.is_some() { Permission::ProjectWrite } else { Permission::OrgUpdate };
    let (org, project) = scope(s, op, org, project, perm).await?;
    let StrictJson(spec) = body?;
    if let Err(e) = s.control.check_guardrail_policy(org, project, &spec) {
        tracing::info!(org = %org, field = %e.field, problem = %e.message, "guardrail policy refused");
        return Err(bad(field(&e)));
    }
    let json = serde_json::to_string(&spec).map_err(|_| Denial::new(DenyCode::Internal))?;
    s.store.put_guardrail_policy(org, project, &json, &op.actor().render()).await.map_err(store_err)?;
    s.control.reload_guardrail_policies().await.map_err(store_err)?;
    view(s, org, project).await
}

async fn delete(
    s: &AdminState,
    op: &Operator,
    org: &str,
    project: Option<&str>,
) -> Result<(StatusCode, Value), Denial> {
    let perm = if project.is_some() { Permission::ProjectWrite } else { Permission::OrgUpdate };
    let (org, project) = scope(s, op, org, project, perm).await?;
    s.store.delete_guardrail_policy(org, project).await.map_err(store_err)?;
    s.control.reload_guardrail_policies().await.map_err(store_err)?;
    view(s, org, project).await
}

async fn get(s: &AdminState, op: &Operator, org: &str, project: Option<&str>) -> Result<(StatusCode, Value), Denial> {
    let perm = if project.is_some() { Permission::ProjectRead } else { Permission::OrgRead };
    let (org, project) = scope(s, op, org, project, perm).await?;
    view(s, org, project).await
}

pub async fn get_org(State(s): State<AdminState>, op: Operator, acx: AuditCx, Path(org): Path<String>) -> Response {
    let r = get(&s, &op, &org, None).await;
    respond(&s, &acx, &op, K::GuardrailOrgPolicyRead, OrgId::parse(&org), Some(org.clone()), r).await
}

pub async fn put_org(
    State(s): State<AdminState>,
    op: Operator,
    acx: AuditCx,
    Path(org): Path<String>,
    body: Result<StrictJson<PolicySpec>, Denial>,
) -> Response {
    let r = put(&s, &op, &org, None, body).await;
    respond(&s, &acx, &op, K::GuardrailOrgPolicySet, OrgId::parse(&org), Some(org.clone()), r).await
}

pub async fn delete_org(State(s): State<AdminState>, op: Operator, acx: AuditCx, Path(org): Path<String>) -> Response {
    let r = delete(&s, &op, &org, None).await;
    respond(&s, &acx, &op, K::GuardrailOrgPolicyDelete, OrgId::parse(&org), Some(org.clone()), r).await
}

pub async fn get_project(
    State(s): State<AdminState>,
    op: Operator,
    acx: AuditCx,
    Path((org, project)): Path<(String, String)>,
) -> Response {
    let r = get(&s, &op, &org, Some(&project)).await;
    respond(&s, &acx, &op, K::GuardrailProjectPolicyRead, OrgId::parse(&org), Some(project.clone()), r).await
}

pub async fn put_project(
    State(s): State<AdminState>,
    op: Operator,
    acx: AuditCx,
    Path((org, project)): Path<(String, String)>,
    body: Result<StrictJson<PolicySpec>, Denial>,
) -> Response {
    let r = put(&s, &op, &org, Some(&project), body).await;
    respond(&s, &acx, &op, K::GuardrailProjectPolicySet, OrgId::parse(&org), Some(project.clone()), r).await
}

pub async fn delete_project(
    State(s): State<AdminState>,
    op: Operator,
    acx: AuditCx,
    Path((org, project)): Path<(String, String)>,
) -> Response {
    let r = delete(&s, &op, &org, Some(&project)).await;
    respond(&s, &acx, &op, K::GuardrailProjectPolicyDelete, OrgId::parse(&org), Some(project.clone()), r).await
}
