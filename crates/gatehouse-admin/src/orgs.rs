//! `/admin/v1/orgs` and `/admin/v1/orgs/{org}/projects`: create, list, get, update, disable
//! and enable. Disabling an org or project disables all its keys on every replica within the
//! key-change poll interval.

use gatehouse_core::{Denial, DenyCode, OrgId, ProjectId};
use gatehouse_store::{OrgRow, ProjectRow};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AdminState;
use crate::rbac::{Permission, check};
use crate::reply::{Page, bad, found, page_limit, store_err};
use crate::service::{Call, Pending, Reply};

const MAX_NAME: usize = 64;

pub fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_NAME && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn org_json(o: &OrgRow) -> Value {
    json!({"id": o.id.to_string(), "name": o.name, "created_at": o.created_at, "disabled_at": o.disabled_at})
}

fn project_json(p: &ProjectRow) -> Value {
    json!({"id": p.id.to_string(), "org_id": p.org.to_string(), "name": p.name, "models": p.allowed_models,
           "default_limits": p.default_limits, "cors_origins": p.cors_origins,
           "created_at": p.created_at, "disabled_at": p.disabled_at})
}

async fn org_view(s: &AdminState, org: OrgId) -> Reply {
    let row = s.store.org(org).await.map_err(store_err)?.ok_or(Denial::new(DenyCode::NotFound))?;
    Ok((StatusCode::OK, org_json(&row)))
}

async fn project_view(s: &AdminState, org: OrgId, id: ProjectId) -> Reply {
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
pub struct NameBody {
    name: String,
}

pub fn create_org(c: &mut Call) -> Pending<'_> {
    Box::pin(async move {
        check(&c.op, Permission::OrgCreate, None)?;
        let b: NameBody = c.body().await?;
        if !valid_name(&b.name) {
            return Err(bad("name"));
        }
        let id = c.s.store.create_org(&b.name).await.map_err(store_err)?;
        (c.org, c.target) = (Some(id), Some(id.to_string()));
        let row = c.s.store.org(id).await.map_err(store_err)?.ok_or(Denial::new(DenyCode::Internal))?;
        Ok((StatusCode::CREATED, org_json(&row)))
    })
}

pub fn list_orgs(c: &mut Call) -> Pending<'_> {
    Box::pin(async move {
        c.org = c.op.org;
        let q: Page = c.query()?;
        let limit = page_limit(q.limit)?;
        let rows = match c.op.org {
            // a scoped operator sees exactly its own org
            Some(own) => {
                check(&c.op, Permission::OrgRead, Some(own))?;
                c.s.store.org(own).await.map_err(store_err)?.into_iter().collect::<Vec<_>>()
            }
            None => {
                let after = q.after.as_deref().map(org_id).transpose().map_err(|_| bad("after"))?;
                c.s.store.list_orgs(after, limit).await.map_err(store_err)?
            }
        };
        Ok((StatusCode::OK, json!({"object": "list", "data": rows.iter().map(org_json).collect::<Vec<_>>()})))
    })
}

pub fn get_org(c: &mut Call) -> Pending<'_> {
    Box::pin(async move {
        c.target_path("org");
        let org = c.path_org()?;
        check(&c.op, Permission::OrgRead, Some(org))?;
        org_view(&c.s, org).await
    })
}

pub fn update_org(c: &mut Call) -> Pending<'_> {
    Box::pin(async move {
        c.target_path("org");
        let org = c.path_org()?;
        check(&c.op, Permission::OrgUpdate, Some(org))?;
        let b: NameBody = c.body().await?;
        if !valid_name(&b.name) {
            return Err(bad("name"));
        }
        found(c.s.store.rename_org(org, &b.name).await.map_err(store_err)?)?;
        org_view(&c.s, org).await
    })
}

async fn set_org_disabled(c: &mut Call, disabled: bool) -> Reply {
    c.target_path("org");
    let org = c.path_org()?;
    // Cross-tenant first (404), then the right: only platform admins switch orgs on and off.
    check(&c.op, Permission::OrgRead, Some(org))?;
    check(&c.op, Permission::OrgCreate, None)?;
    found(c.s.store.set_org_disabled(org, disabled).await.map_err(store_err)?)?;
    org_view(&c.s, org).await
}

pub fn disable_org(c: &mut Call) -> Pending<'_> {
    Box::pin(set_org_disabled(c, true))
}

pub fn enable_org(c: &mut Call) -> Pending<'_> {
    Box::pin(set_org_disabled(c, false))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectBody {
    name: String,
    models: Option<Vec<String>>,
    default_limits: Option<DefaultLimits>,
    /// Browser origins whose pages may read the data plane's answers to this project's
    /// credentials (exact `scheme://host[:port]`; never a wildcard).
    cors_origins: Option<Vec<String>>,
}

/// Default limits for each of a project's keys, enforced by the limits gate.
#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rpm: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tpm: Option<u32>,
}

const MAX_LIMIT: u32 = 100_000_000;
/// Origins one project may allow on the data plane.
const MAX_CORS_ORIGINS: usize = 16;

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
    let cors_origins = match b.cors_origins {
        None => None,
        Some(list) if list.is_empty() || list.len() > MAX_CORS_ORIGINS => return Err(bad("cors_origins")),
        Some(list) => {
            let mut out = list
                .iter()
                .map(|o| gatehouse_config::origin(o))
                .collect::<Option<Vec<_>>>()
                .ok_or(bad("cors_origins"))?;
            out.sort();
            out.dedup();
            Some(out)
        }
    };
    Ok(gatehouse_store::ProjectSettings {
        name: b.name,
        allowed_models: b.models,
        default_limits: b.default_limits.map(|l| serde_json::to_value(l).unwrap_or(Value::Null)),
        cors_origins,
    })
}

fn valid_models(s: &AdminState, models: Option<&[String]>) -> Result<(), Denial> {
    let Some(models) = models else { return Ok(()) };
    if models.is_empty() || models.len() > 256 || !s.control.serves_models(models) {
        return Err(bad("models"));
    }
    Ok(())
}

pub fn create_project(c: &mut Call) -> Pending<'_> {
    Box::pin(async move {
        let org = c.path_org()?;
        check(&c.op, Permission::ProjectWrite, Some(org))?;
        let b: ProjectBody = c.body().await?;
        let settings = settings(&c.s, b)?;
        if c.s.store.org(org).await.map_err(store_err)?.is_none() {
            return Err(Denial::new(DenyCode::NotFound));
        }
        let id = c.s.store.create_project(org, &settings.name).await.map_err(store_err)?;
        c.target = Some(id.to_string());
        c.s.store.update_project(org, id, &settings).await.map_err(store_err)?;
        let row = c.s.store.project(org, id).await.map_err(store_err)?.ok_or(Denial::new(DenyCode::Internal))?;
        Ok((StatusCode::CREATED, project_json(&row)))
    })
}

pub fn list_projects(c: &mut Call) -> Pending<'_> {
    Box::pin(async move {
        let org = c.path_org()?;
        check(&c.op, Permission::ProjectRead, Some(org))?;
        let q: Page = c.query()?;
        let limit = page_limit(q.limit)?;
        let after = q.after.as_deref().map(project_id).transpose().map_err(|_| bad("after"))?;
        let rows = c.s.store.list_projects(org, after, limit).await.map_err(store_err)?;
        Ok((StatusCode::OK, json!({"object": "list", "data": rows.iter().map(project_json).collect::<Vec<_>>()})))
    })
}

/// The `{org}` and `{project}` of a project route, checked for `p`; the project is the target.
fn scoped_project(c: &mut Call, p: Permission) -> Result<(OrgId, &str), Denial> {
    c.target_path("project");
    let org = c.path_org()?;
    check(&c.op, p, Some(org))?;
    Ok((org, c.path("project")))
}

pub fn get_project(c: &mut Call) -> Pending<'_> {
    Box::pin(async move {
        let (org, id) = scoped_project(c, Permission::ProjectRead)?;
        let pid = project_id(id)?;
        project_view(&c.s, org, pid).await
    })
}

pub fn update_project(c: &mut Call) -> Pending<'_> {
    Box::pin(async move {
        let (org, id) = scoped_project(c, Permission::ProjectWrite)?;
        let pid = project_id(id)?;
        let b: ProjectBody = c.body().await?;
        let settings = settings(&c.s, b)?;
        found(c.s.store.update_project(org, pid, &settings).await.map_err(store_err)?)?;
        project_view(&c.s, org, pid).await
    })
}

async fn set_project_disabled(c: &mut Call, disabled: bool) -> Reply {
    let (org, id) = scoped_project(c, Permission::ProjectWrite)?;
    let pid = project_id(id)?;
    found(c.s.store.set_project_disabled(org, pid, disabled).await.map_err(store_err)?)?;
    project_view(&c.s, org, pid).await
}

pub fn disable_project(c: &mut Call) -> Pending<'_> {
    Box::pin(set_project_disabled(c, true))
}

pub fn enable_project(c: &mut Call) -> Pending<'_> {
    Box::pin(set_project_disabled(c, false))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectMemberBody {
    user_id: String,
}

/// Adds an org member to a project; members with `key.write_own` may then mint their own keys
/// in it. Idempotent.
pub fn add_project_member(c: &mut Call) -> Pending<'_> {
    Box::pin(async move {
        let (org, id) = scoped_project(c, Permission::ProjectWrite)?;
        let pid = project_id(id)?;
        let b: ProjectMemberBody = c.body().await?;
        let user =
            gatehouse_core::UserId::parse(&b.user_id).ok_or(Denial::new(DenyCode::NotFound).with_param("user_id"))?;
        // false: no such project in this org, or the user is not a member of the org
        if !c.s.store.add_project_member(org, pid, user).await.map_err(store_err)? {
            return Err(Denial::new(DenyCode::NotFound).with_param("user_id"));
        }
        Ok((StatusCode::CREATED, json!({"project_id": pid.to_string(), "user_id": user.to_string()})))
    })
}
