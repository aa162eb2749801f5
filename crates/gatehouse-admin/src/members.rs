//! `/admin/v1/orgs/{org}/members`: people and service accounts of an org, each with one role.
//! Nobody grants, changes or removes a role above their own.

use axum::extract::{Path, Query, State};
use axum::response::Response;
use gatehouse_audit::EventKind as K;
use gatehouse_core::{Denial, DenyCode, OrgId, UserId};
use gatehouse_store::MemberRow;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AdminState;
use crate::audit::{AuditCx, respond};
use crate::body::StrictJson;
use crate::rbac::{Operator, Permission, Role, check, may_grant};
use crate::reply::{bad, found, store_err};

fn member_json(m: &MemberRow) -> Value {
    json!({"user_id": m.user.to_string(), "email": m.email, "name": m.name, "kind": m.kind, "role": m.role,
           "created_at": m.created_at})
}

fn valid_email(s: &str) -> bool {
    let mut parts = s.split('@');
    let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else { return false };
    s.len() <= 254
        && !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && s.chars().all(|c| c.is_ascii_graphic())
}

fn valid_display_name(s: &str) -> bool {
    !s.trim().is_empty() && s.chars().count() <= 128 && !s.chars().any(char::is_control)
}

fn org_id(s: &str) -> Result<OrgId, Denial> {
    OrgId::parse(s).ok_or(Denial::new(DenyCode::NotFound))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    email: String,
    name: String,
    role: String,
    /// `human` (default) or `service` (a service account).
    #[serde(default)]
    kind: Option<String>,
}

pub async fn add(
    State(s): State<AdminState>,
    op: Operator,
    acx: AuditCx,
    Path(org): Path<String>,
    body: Result<StrictJson<AddMember>, Denial>,
) -> Response {
    let mut user_seen = None;
    let r = async {
        let org = org_id(&org)?;
        check(&op, Permission::MembershipWrite, Some(org))?;
        let StrictJson(b) = body?;
        if !valid_email(&b.email) {
            return Err(bad("email"));
        }
        if !valid_display_name(&b.name) {
            return Err(bad("name"));
        }
        let role = Role::parse(&b.role).ok_or(bad("role"))?;
        // platform admins are not org members; they act across orgs with their own tokens
        if role == Role::PlatformAdmin || !may_grant(&op, role) {
            return Err(Denial::new(DenyCode::PermissionDenied).with_param("role"));
        }
        let kind = match b.kind.as_deref() {
            None | Some("human") => "human",
            Some("service") => "service",
            Some(_) => return Err(bad("kind")),
        };
        if s.store.org(org).await.map_err(store_err)?.is_none() {
            return Err(Denial::new(DenyCode::NotFound));
        }
        let user = s.store.ensure_user(&b.email, &b.name, kind).await.map_err(store_err)?;
        user_seen = Some(user);
        // changing an existing member's role needs the right to grant the role they have now
        if let Some(existing) = s.store.member(org, user).await.map_err(store_err)?
            && !Role::parse(&existing.role).is_some_and(|r| may_grant(&op, r))
        {
            return Err(Denial::new(DenyCode::PermissionDenied).with_param("role"));
        }
        s.store.set_membership(org, user, role.as_str()).await.map_err(store_err)?;
        let m = s.store.member(org, user).await.map_err(store_err)?.ok_or(Denial::new(DenyCode::Internal))?;
        Ok((StatusCode::CREATED, member_json(&m)))
    }
    .await;
    respond(&s, &acx, &op, K::MemberSet, OrgId::parse(&org), user_seen.map(|u| u.to_string()), r).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
}

pub async fn list(
    State(s): State<AdminState>,
    op: Operator,
    acx: AuditCx,
    Path(org): Path<String>,
    q: Result<Query<Limit>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let r = async {
        let org = org_id(&org)?;
        check(&op, Permission::UserRead, Some(org))?;
        let Query(q) = q.map_err(|_| bad("query"))?;
        let limit = match q.limit.unwrap_or(100) {
            l @ 1..=1000 => l,
            _ => return Err(bad("limit")),
        };
        let after = match q.after.as_deref() {
            None => None,
            Some(a) => Some(UserId::parse(a).ok_or(bad("after"))?),
        };
        let rows = s.store.list_members(org, after, limit).await.map_err(store_err)?;
        Ok((StatusCode::OK, json!({"object": "list", "data": rows.iter().map(member_json).collect::<Vec<_>>()})))
    }
    .await;
    respond(&s, &acx, &op, K::MemberList, OrgId::parse(&org), None, r).await
}

pub async fn remove(
    State(s): State<AdminState>,
    op: Operator,
    acx: AuditCx,
    Path((org, user)): Path<(String, String)>,
) -> Response {
    let r = async {
        let org = org_id(&org)?;
        check(&op, Permission::MembershipWrite, Some(org))?;
        let uid = UserId::parse(&user).ok_or(Denial::new(DenyCode::NotFound))?;
        let existing = s.store.member(org, uid).await.map_err(store_err)?.ok_or(Denial::new(DenyCode::NotFound))?;
        if !Role::parse(&existing.role).is_some_and(|r| may_grant(&op, r)) {
            return Err(Denial::new(DenyCode::PermissionDenied).with_param("role"));
        }
        found(s.store.remove_membership(org, uid).await.map_err(store_err)?)?;
        Ok((StatusCode::OK, member_json(&existing)))
    }
    .await;
    respond(&s, &acx, &op, K::MemberRemove, OrgId::parse(&org), Some(user.clone()), r).await
}

pub async fn get(
    State(s): State<AdminState>,
    op: Operator,
    acx: AuditCx,
    Path((org, user)): Path<(String, String)>,
) -> Response {
    let r = async {
        let org = org_id(&org)?;
        check(&op, Permission::UserRead, Some(org))?;
        let uid = UserId::parse(&user).ok_or(Denial::new(DenyCode::NotFound))?;
        let m = s.store.member(org, uid).await.map_err(store_err)?.ok_or(Denial::new(DenyCode::NotFound))?;
        Ok((StatusCode::OK, member_json(&m)))
    }
    .await;
    respond(&s, &acx, &op, K::MemberRead, OrgId::parse(&org), Some(user.clone()), r).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateMember {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    role: Option<String>,
}

/// Changes a member's display name and/or role; the same bounds as granting apply.
pub async fn update(
    State(s): State<AdminState>,
    op: Operator,
    acx: AuditCx,
    Path((org, user)): Path<(String, String)>,
    body: Result<StrictJson<UpdateMember>, Denial>,
) -> Response {
    let r = async {
        let org = org_id(&org)?;
        check(&op, Permission::MembershipWrite, Some(org))?;
        let uid = UserId::parse(&user).ok_or(Denial::new(DenyCode::NotFound))?;
        let StrictJson(b) = body?;
        let existing = s.store.member(org, uid).await.map_err(store_err)?.ok_or(Denial::new(DenyCode::NotFound))?;
        if !Role::parse(&existing.role).is_some_and(|r| may_grant(&op, r)) {
            return Err(Denial::new(DenyCode::PermissionDenied).with_param("role"));
        }
        if let Some(name) = &b.name {
            if !valid_display_name(name) {
                return Err(bad("name"));
            }
            found(s.store.rename_member(org, uid, name).await.map_err(store_err)?)?;
        }
        if let Some(role) = &b.role {
            let role = Role::parse(role).ok_or(bad("role"))?;
            if role == Role::PlatformAdmin || !may_grant(&op, role) {
                return Err(Denial::new(DenyCode::PermissionDenied).with_param("role"));
            }
            s.store.set_membership(org, uid, role.as_str()).await.map_err(store_err)?;
        }
        let m = s.store.member(org, uid).await.map_err(store_err)?.ok_or(Denial::new(DenyCode::NotFound))?;
        Ok((StatusCode::OK, member_json(&m)))
    }
    .await;
    respond(&s, &acx, &op, K::MemberUpdate, OrgId::parse(&org), Some(user.clone()), r).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_and_names_are_validated() {
        assert!(valid_email("ann@example.com"));
        for bad in ["", "ann", "@x.com", "ann@", "ann@x", "a b@x.com", "ann@x.com@y.com", "ann@.com", "ann@x.com."] {
            assert!(!valid_email(bad), "{bad}");
        }
        assert!(valid_display_name("Ann Example"));
        assert!(!valid_display_name(" "));
        assert!(!valid_display_name("a\nb"));
    }
}
