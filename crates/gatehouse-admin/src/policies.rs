//! The policies an org or a project sets for itself, one of each kind per scope:
//! `/admin/v1/orgs/{org}[/projects/{project}]/guardrails` (the guardrail policy it layers over
//! the deployment default) and `.../routing` (which providers, regions and pinned deployments
//! its traffic may use) and `.../mcp` (which MCP servers, tools, resources and prompts its callers
//! may use). A spec is checked (a guardrail spec compiled on top of what lies below
//! it, a routing spec against the live config) before it is stored, so a stored policy always
//! works; it applies on this replica at once and on the others within their poll interval.

use gatehouse_core::{Denial, DenyCode, OrgId, ProjectId};
use gatehouse_gates::mcp::McpSpec;
use gatehouse_gates::tenant_routes::RoutingSpec;
use gatehouse_guardrails::PolicySpec;
use gatehouse_store::PolicyTable;
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

/// The scope's own spec (what was stored, or nothing) and what is in force: the guardrail
/// policy after layering, or the deployments the scope's traffic may be routed to.
async fn view(s: &AdminState, kind: PolicyTable, org: OrgId, project: Option<ProjectId>) -> Reply {
    let row = s.store.scoped_policy(kind, org, project).await.map_err(store_err)?;
    let own = row.as_ref().and_then(|r| serde_json::from_str::<Value>(&r.spec).ok()).unwrap_or(Value::Null);
    let effective = match kind {
        PolicyTable::Guardrails => {
            serde_json::to_value(s.control.guardrail_policy(org, project)).unwrap_or(Value::Null)
        }
        PolicyTable::Routing => s
            .control
            .routable(org, project)
            .into_iter()
            .map(|d| json!({"model": d.model, "provider": d.provider, "region": d.region}))
            .collect(),
        // both scopes apply: the org's, and the project's on top of it
        PolicyTable::Mcp => {
            let spec = |p| s.control.mcp_policy(org, p).and_then(|sp| serde_json::to_value(&*sp).ok());
            json!({"org": spec(None), "project": project.and_then(|p| spec(Some(p)))})
        }
    };
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

async fn reload(s: &AdminState, kind: PolicyTable) -> Result<(), Denial> {
    match kind {
        PolicyTable::Guardrails => s.control.reload_guardrail_policies().await,
        PolicyTable::Routing => s.control.reload_routing_policies().await,
        PolicyTable::Mcp => s.control.reload_mcp_policies().await,
    }
    .map_err(store_err)
}

async fn get(c: &mut Call, (kind, project): (PolicyTable, bool)) -> Reply {
    let (org, project) = scoped(c, project, false).await?;
    view(&c.s, kind, org, project).await
}

/// The body as the kind's spec, checked, and written back as JSON (unknown fields refused).
async fn checked(c: &mut Call, kind: PolicyTable, org: OrgId, project: Option<ProjectId>) -> Result<String, Denial> {
    let text = match kind {
        PolicyTable::Guardrails => {
            let spec: PolicySpec = c.body().await?;
            if let Err(e) = c.s.control.check_guardrail_policy(org, project, &spec) {
                tracing::info!(org = %org, field = %e.field, problem = %e.message, "guardrail policy refused");
                return Err(bad(field(&e)));
            }
            serde_json::to_string(&spec)
        }
        PolicyTable::Routing => {
            let spec: RoutingSpec = c.body().await?;
            if let Err(f) = c.s.control.check_routing_policy(&spec) {
                tracing::info!(org = %org, field = f, "routing policy refused: names nothing the config serves");
                return Err(bad(f));
            }
            serde_json::to_string(&spec)
        }
        PolicyTable::Mcp => {
            let spec: McpSpec = c.body().await?;
            spec.check().map_err(bad)?;
            serde_json::to_string(&spec)
        }
    };
    text.map_err(|_| Denial::new(DenyCode::Internal))
}

async fn put(c: &mut Call, (kind, project): (PolicyTable, bool)) -> Reply {
    let (org, project) = scoped(c, project, true).await?;
    let text = checked(c, kind, org, project).await?;
    c.s.store.put_scoped_policy(kind, org, project, &text, &c.op.actor().render()).await.map_err(store_err)?;
    reload(&c.s, kind).await?;
    view(&c.s, kind, org, project).await
}

async fn delete(c: &mut Call, (kind, project): (PolicyTable, bool)) -> Reply {
    let (org, project) = scoped(c, project, true).await?;
    c.s.store.delete_scoped_policy(kind, org, project).await.map_err(store_err)?;
    reload(&c.s, kind).await?;
    view(&c.s, kind, org, project).await
}

use PolicyTable::{Guardrails, Mcp, Routing};

services! {
    get_guardrails_org => get((Guardrails, false));
    put_guardrails_org => put((Guardrails, false));
    delete_guardrails_org => delete((Guardrails, false));
    get_guardrails_project => get((Guardrails, true));
    put_guardrails_project => put((Guardrails, true));
    delete_guardrails_project => delete((Guardrails, true));
    get_routing_org => get((Routing, false));
    put_routing_org => put((Routing, false));
    delete_routing_org => delete((Routing, false));
    get_routing_project => get((Routing, true));
    put_routing_project => put((Routing, true));
    delete_routing_project => delete((Routing, true));
    get_mcp_org => get((Mcp, false));
    put_mcp_org => put((Mcp, false));
    delete_mcp_org => delete((Mcp, false));
    get_mcp_project => get((Mcp, true));
    put_mcp_project => put((Mcp, true));
    delete_mcp_project => delete((Mcp, true));
}
