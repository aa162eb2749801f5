//! `/admin/v1/tokens`: mint admin tokens that act with a role inside one org (or platform
//! scope). Shown once; stored as a keyed hash. Nobody mints a token above their own role.

use gatehouse_core::{Denial, DenyCode, OrgId, UserId};
use gatehouse_security::{KeyKind, generate_key};
use http::StatusCode;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::json;

use crate::orgs::valid_name;
use crate::rbac::{Permission, Role, check, may_grant};
use crate::reply::{bad, page_limit, store_err};
use crate::service::{Call, Pending};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    name: String,
    role: String,
    /// Required for every role but `platform_admin`.
    org: Option<String>,
    /// The member the token acts for; the token's role may not exceed theirs.
    user: Option<String>,
}

pub fn create(c: &mut Call) -> Pending<'_> {
    Box::pin(async move {
        let b: CreateToken = c.body().await?;
        if !valid_name(&b.name) {
            return Err(bad("name"));
        }
        let role = Role::parse(&b.role).ok_or(bad("role"))?;
        let org = match (role, b.org.as_deref()) {
            (Role::PlatformAdmin, None) => None,
            (Role::PlatformAdmin, Some(_)) => return Err(bad("org")),
            (_, Some(o)) => Some(OrgId::parse(o).ok_or(Denial::new(DenyCode::NotFound).with_param("org"))?),
            (_, None) => return Err(bad("org")),
        };
        c.org = org;
        check(&c.op, Permission::MembershipWrite, org)?;
        if !may_grant(&c.op, role) {
            return Err(Denial::new(DenyCode::PermissionDenied).with_param("role"));
        }
        if let Some(o) = org
            && c.s.store.org(o).await.map_err(store_err)?.is_none()
        {
            return Err(Denial::new(DenyCode::NotFound).with_param("org"));
        }
        let user = match (b.user.as_deref(), org) {
            (None, _) => None,
            (Some(_), None) => return Err(bad("user")),
            (Some(u), Some(o)) => {
                let uid = UserId::parse(u).ok_or(Denial::new(DenyCode::NotFound).with_param("user"))?;
                let m = c.s.store.member(o, uid).await.map_err(store_err)?;
                let theirs =
                    m.and_then(|m| Role::parse(&m.role)).ok_or(Denial::new(DenyCode::NotFound).with_param("user"))?;
                if role > theirs {
                    return Err(Denial::new(DenyCode::PermissionDenied).with_param("role"));
                }
                Some(uid)
            }
        };
        let token = generate_key(KeyKind::Admin);
        let id = gatehouse_core::KeyId::generate().to_string();
        c.s.store
            .insert_admin_token(&id, &b.name, &c.s.hasher.digest(KeyKind::Admin, &token).0, role.as_str(), org, user)
            .await
            .map_err(store_err)?;
        Ok((
            StatusCode::CREATED,
            json!({"id": id, "name": b.name, "role": role.as_str(), "org_id": org.map(|o| o.to_string()),
                   "user_id": user.map(|u| u.to_string()),
                   "token": token.expose_secret()}),
        ))
    })
}

fn token_json(t: &gatehouse_store::AdminTokenRow) -> serde_json::Value {
    json!({"id": t.id, "name": t.name, "role": t.role, "org_id": t.org.map(|o| o.to_string()),
           "user_id": t.user.map(|u| u.to_string()), "created_at": t.created_at, "revoked_at": t.revoked_at,
           "last_used_at": t.last_used_at})
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListTokens {
    limit: Option<u32>,
    /// The last id of the previous page.
    before: Option<String>,
}

/// `GET /admin/v1/tokens`: the tokens of the operator's org (platform admins: all), never
/// their secrets or digests.
pub fn list(c: &mut Call) -> Pending<'_> {
    Box::pin(async move {
        c.org = c.op.org;
        let q: ListTokens = c.query()?;
        let limit = page_limit(q.limit)?;
        check(&c.op, Permission::MembershipWrite, c.op.org)?;
        if q.before.as_deref().is_some_and(|b| !gatehouse_core::is_id(b)) {
            return Err(bad("before"));
        }
        let rows = c.s.store.list_admin_tokens(c.op.org, q.before.as_deref(), limit).await.map_err(store_err)?;
        Ok((StatusCode::OK, json!({"object": "list", "data": rows.iter().map(token_json).collect::<Vec<_>>()})))
    })
}

/// `POST /admin/v1/tokens/{id}/revoke`: takes effect on the next call (tokens are checked
/// against the store on every request).
pub fn revoke(c: &mut Call) -> Pending<'_> {
    Box::pin(async move {
        c.target_path("id");
        let id = c.path("id").to_owned();
        let t = c.s.store.admin_token(&id).await.map_err(store_err)?.ok_or(Denial::new(DenyCode::NotFound))?;
        c.org = t.org;
        // a platform token is invisible to everyone but platform admins
        if t.org.is_none() && c.op.role != Role::PlatformAdmin {
            return Err(Denial::new(DenyCode::NotFound));
        }
        check(&c.op, Permission::MembershipWrite, t.org)?;
        if !Role::parse(&t.role).is_some_and(|r| may_grant(&c.op, r)) {
            return Err(Denial::new(DenyCode::PermissionDenied).with_param("role"));
        }
        if !c.s.store.revoke_admin_token(&id).await.map_err(store_err)? {
            return Err(Denial::new(DenyCode::NotFound));
        }
        let t = c.s.store.admin_token(&id).await.map_err(store_err)?.ok_or(Denial::new(DenyCode::NotFound))?;
        Ok((StatusCode::OK, token_json(&t)))
    })
}
