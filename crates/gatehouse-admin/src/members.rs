//! `/admin/v1/orgs/{org}/members`: people and service accounts of an org, each with one role.
//! Nobody grants, changes or removes a role above their own.

use gatehouse_core::{Denial, DenyCode, OrgId, UserId};
use gatehouse_store::MemberRow;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AdminState;
use crate::rbac::{Operator, Permission, Role, check, may_grant};
use crate::reply::{Page, bad, found, page_limit, store_err};
use crate::service::{Call, Pending};

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    email: String,
    name: String,
    role: String,
    /// `human` (default) or `service` (a service account).
    kind: Option<String>,
}

pub fn add(c: &mut Call) -> Pending<'_> {
    Box::pin(async move {
        let org = c.path_org()?;
        check(&c.op, Permission::MembershipWrite, Some(org))?;
        let b: AddMember = c.body().await?;
        if !valid_email(&b.email) {
            return Err(bad("email"));
        }
        if !valid_display_name(&b.name) {
            return Err(bad("name"));
        }
        let role = Role::parse(&b.role).ok_or(bad("role"))?;
        // platform admins are not org members; they act across orgs with their own tokens
        if role == Role::PlatformAdmin || !may_grant(&c.op, role) {
            return Err(Denial::new(DenyCode::PermissionDenied).with_param("role"));
        }
        let kind = match b.kind.as_deref() {
            None | Some("human") => "human",
            Some("service") => "service",
            Some(_) => return Err(bad("kind")),
        };
        if c.s.store.org(org).await.map_err(store_err)?.is_none() {
            return Err(Denial::new(DenyCode::NotFound));
        }
        let user = c.s.store.ensure_user(&b.email, &b.name, kind).await.map_err(store_err)?;
        c.target = Some(user.to_string());
        // changing an existing member's role needs the right to grant the role they have now
        if let Some(existing) = c.s.store.member(org, user).await.map_err(store_err)?
            && !Role::parse(&existing.role).is_some_and(|r| may_grant(&c.op, r))
        {
            return Err(Denial::new(DenyCode::PermissionDenied).with_param("role"));
        }
        c.s.store.set_membership(org, user, role.as_str()).await.map_err(store_err)?;
        let m = c.s.store.member(org, user).await.map_err(store_err)?.ok_or(Denial::new(DenyCode::Internal))?;
        Ok((StatusCode::CREATED, member_json(&m)))
    })
}

pub fn list(c: &mut Call) -> Pending<'_> {
    Box::pin(async move {
        let org = c.path_org()?;
        check(&c.op, Permission::UserRead, Some(org))?;
        let q: Page = c.query()?;
        let limit = page_limit(q.limit)?;
        let after = match q.after.as_deref() {
            None => None,
            Some(a) => Some(UserId::parse(a).ok_or(bad("after"))?),
        };
        let rows = c.s.store.list_members(org, after, limit).await.map_err(store_err)?;
        Ok((StatusCode::OK, json!({"object": "list", "data": rows.iter().map(member_json).collect::<Vec<_>>()})))
    })
}

/// The `{org}` and `{user}` of a member route, checked for `p`; the member is the target.
fn scoped_member(c: &mut Call, p: Permission) -> Result<(OrgId, UserId), Denial> {
    c.target_path("user");
    let org = c.path_org()?;
    check(&c.op, p, Some(org))?;
    let user = UserId::parse(c.path("user")).ok_or(Denial::new(DenyCode::NotFound))?;
    Ok((org, user))
}

/// The member as stored, if the operator may act on their role.
async fn grantable(s: &AdminState, op: &Operator, org: OrgId, user: UserId) -> Result<MemberRow, Denial> {
    let existing = s.store.member(org, user).await.map_err(store_err)?.ok_or(Denial::new(DenyCode::NotFound))?;
    if !Role::parse(&existing.role).is_some_and(|r| may_grant(op, r)) {
        return Err(Denial::new(DenyCode::PermissionDenied).with_param("role"));
    }
    Ok(existing)
}

pub fn remove(c: &mut Call) -> Pending<'_> {
    Box::pin(async move {
        let (org, uid) = scoped_member(c, Permission::MembershipWrite)?;
        let existing = grantable(&c.s, &c.op, org, uid).await?;
        found(c.s.store.remove_membership(org, uid).await.map_err(store_err)?)?;
        Ok((StatusCode::OK, member_json(&existing)))
    })
}

pub fn get(c: &mut Call) -> Pending<'_> {
    Box::pin(async move {
        let (org, uid) = scoped_member(c, Permission::UserRead)?;
        let m = c.s.store.member(org, uid).await.map_err(store_err)?.ok_or(Denial::new(DenyCode::NotFound))?;
        Ok((StatusCode::OK, member_json(&m)))
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateMember {
    name: Option<String>,
    role: Option<String>,
}

/// Changes a member's display name and/or role; the same bounds as granting apply.
pub fn update(c: &mut Call) -> Pending<'_> {
    Box::pin(async move {
        let (org, uid) = scoped_member(c, Permission::MembershipWrite)?;
        let b: UpdateMember = c.body().await?;
        grantable(&c.s, &c.op, org, uid).await?;
        if let Some(name) = &b.name {
            if !valid_display_name(name) {
                return Err(bad("name"));
            }
            found(c.s.store.rename_member(org, uid, name).await.map_err(store_err)?)?;
        }
        if let Some(role) = &b.role {
            let role = Role::parse(role).ok_or(bad("role"))?;
            if role == Role::PlatformAdmin || !may_grant(&c.op, role) {
                return Err(Denial::new(DenyCode::PermissionDenied).with_param("role"));
            }
            c.s.store.set_membership(org, uid, role.as_str()).await.map_err(store_err)?;
        }
        let m = c.s.store.member(org, uid).await.map_err(store_err)?.ok_or(Denial::new(DenyCode::NotFound))?;
        Ok((StatusCode::OK, member_json(&m)))
    })
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
