//! `/admin/v1/tokens`: mint admin tokens that act with a role inside one org (or platform
//! scope). Shown once; stored as a keyed hash. Nobody mints a token above their own role.

use axum::extract::State;
use axum::response::Response;
use gatehouse_core::{Denial, DenyCode, OrgId, UserId};
use gatehouse_security::{KeyKind, generate_key};
use http::StatusCode;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::json;

use crate::AdminState;
use crate::audit::{AuditCx, respond};
use crate::body::StrictJson;
use crate::orgs::valid_name;
use crate::rbac::{Operator, Permission, Role, check, may_grant};
use crate::reply::{bad, store_err};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    name: String,
    role: String,
    /// Required for every role but `platform_admin`.
    #[serde(default)]
    org: Option<String>,
    /// The member the token acts for; the token's role may not exceed theirs.
    #[serde(default)]
    user: Option<String>,
}

pub async fn create(
    State(s): State<AdminState>,
    op: Operator,
    acx: AuditCx,
    body: Result<StrictJson<CreateToken>, Denial>,
) -> Response {
    let mut org_seen = None;
    let r = async {
        let StrictJson(b) = body?;
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
        org_seen = org;
        check(&op, Permission::MembershipWrite, org)?;
        if !may_grant(&op, role) {
            return Err(Denial::new(DenyCode::PermissionDenied).with_param("role"));
        }
        if let Some(o) = org
            && s.store.org(o).await.map_err(store_err)?.is_none()
        {
            return Err(Denial::new(DenyCode::NotFound).with_param("org"));
        }
        let user = match (b.user.as_deref(), org) {
            (None, _) => None,
            (Some(_), None) => return Err(bad("user")),
            (Some(u), Some(o)) => {
                let uid = UserId::parse(u).ok_or(Denial::new(DenyCode::NotFound).with_param("user"))?;
                let m = s.store.member(o, uid).await.map_err(store_err)?;
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
        s.store
            .insert_admin_token(&id, &b.name, &s.hasher.digest(KeyKind::Admin, &token).0, role.as_str(), org, user)
            .await
            .map_err(store_err)?;
        Ok((
            StatusCode::CREATED,
            json!({"id": id, "name": b.name, "role": role.as_str(), "org_id": org.map(|o| o.to_string()),
                   "user_id": user.map(|u| u.to_string()),
                   "token": token.expose_secret()}),
        ))
    }
    .await;
    respond(&s, &acx, &op, "token.create", org_seen, None, r).await
}
