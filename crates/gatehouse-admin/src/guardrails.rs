//! `/admin/v1/orgs/{org}/guardrails` and `/admin/v1/orgs/{org}/projects/{project}/guardrails`:
//! the guardrail policy an org or project layers over the deployment default. A spec is
//! compiled (on top of what lies below it) before it is stored, so a stored policy always
//! works; it applies on this replica at once and on the others within their poll interval.

use gatehouse_core::{Denial, DenyCode, OrgId, ProjectId};
use gatehouse_guardrails::PolicySpec;
use http::StatusCode;
use serde_json::{Value, json};

use crate::AdminState;
use crate::rbac::{Operator, Permission, check};
use crate::reply::{bad, store_err};
use crate::service::{Call, Reply, services};

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

/// The org (and project) of the path, checked for the read or write right of that scope; the
/// scope is the audit row's target.
async fn scoped(c: &mut Call, project: bool, write: bool) -> Result<(OrgId, Option<ProjectId>), Denial> {
    c.target_path(if project { "project" } else { "org" });
    c.org = OrgId::parse(c.path("org"));
    let (org, proj) = (c.path("org").to_owned(), project.then(|| c.path("project").to_owned()));
    let perm = match (project, write) {
        (true, true) => Permission::ProjectWrite,
        (true, false) => Permission::ProjectRead,
        (false, true) => Permission::OrgUpdate,
        (false, false) => Permission::OrgRead,
    };
    scope(&c.s, &c.op, &org, proj.as_deref(), perm).await
}

async fn get(c: &mut Call, project: bool) -> Reply {
    let (org, project) = scoped(c, project, false).await?;
    view(&c.s, org, project).await
}

async fn put(c: &mut Call, project: bool) -> Reply {
    let (org, project) = scoped(c, project, true).await?;
    let spec: PolicySpec = c.body().await?;
    if let Err(e) = c.s.control.check_guardrail_policy(org, project, &spec) {
        tracing::info!(org = %org, field = %e.field, problem = %e.message, "guardrail policy refused");
        return Err(bad(field(&e)));
    }
    let json = serde_json::to_string(&spec).map_err(|_| Denial::new(DenyCode::Internal))?;
    c.s.store.put_guardrail_policy(org, project, &json, &c.op.actor().render()).await.map_err(store_err)?;
    c.s.control.reload_guardrail_policies().await.map_err(store_err)?;
    view(&c.s, org, project).await
}

async fn delete(c: &mut Call, project: bool) -> Reply {
    let (org, project) = scoped(c, project, true).await?;
    c.s.store.delete_guardrail_policy(org, project).await.map_err(store_err)?;
    c.s.control.reload_guardrail_policies().await.map_err(store_err)?;
    view(&c.s, org, project).await
}

services! {
    get_org => get(false);
    put_org => put(false);
    delete_org => delete(false);
    get_project => get(true);
    put_project => put(true);
    delete_project => delete(true);
}
