//! `/admin/v1/sessions`: console sessions, listed and revoked. Everyone sees and ends their
//! own (those they act in, by admin token or federated identity, or of their member in their org); org admins every
//! session in their org; platform admins every session. Another's session outside that reach
//! answers 404, like a missing one.

use gatehouse_core::{Denial, DenyCode};
use gatehouse_store::{SessionRow, SessionScope, now_ms};
use http::StatusCode;
use serde_json::{Value, json};

use crate::rbac::{Operator, Permission, Role, allows, check};
use crate::reply::{Page, bad, page_limit, store_err};
use crate::service::{Call, Pending};

/// The sessions an operator may see and end.
pub fn reach(op: &Operator) -> SessionScope<'_> {
    match (op.role, op.org) {
        (Role::PlatformAdmin, _) => SessionScope::All,
        (role, Some(org)) if allows(role, Permission::MembershipWrite) => SessionScope::Org(org),
        (_, org) => SessionScope::Own { actor: &op.token_id, org, user: op.user },
    }
}

/// A session as the API shows it: never its secret or digest, nor its anti-forgery token.
pub fn view(s: &SessionRow) -> Value {
    json!({
        "id": s.id,
        "method": s.method,
        "actor": s.actor,
        "token_id": s.token_id,
        "role": s.role,
        "org_id": s.org.map(|o| o.to_string()),
        "user_id": s.user.map(|u| u.to_string()),
        "source": s.source,
        "created_at": s.created_at,
        "last_seen_at": s.last_seen_at,
        "expires_at": s.expires_at,
    })
}

pub fn list(c: &mut Call) -> Pending<'_> {
    Box::pin(async move {
        let q: Page = c.query()?;
        let limit = page_limit(q.limit)?;
        if q.after.as_deref().is_some_and(|a| !gatehouse_core::is_id(a)) {
            return Err(bad("after"));
        }
        c.org = c.op.org;
        check(&c.op, Permission::OrgRead, c.op.org)?;
        let rows =
            c.s.store
                .list_console_sessions(reach(&c.op), now_ms(), q.after.as_deref(), limit)
                .await
                .map_err(store_err)?;
        let next = (rows.len() == limit as usize).then(|| rows.last().map(|r| r.id.clone())).flatten();
        Ok((
            StatusCode::OK,
            json!({"object": "list", "data": rows.iter().map(view).collect::<Vec<_>>(), "next_after": next}),
        ))
    })
}

pub fn revoke(c: &mut Call) -> Pending<'_> {
    Box::pin(async move {
        c.target_path("id");
        c.org = c.op.org;
        check(&c.op, Permission::OrgRead, c.op.org)?;
        let id = c.path("id").to_owned();
        if c.s.store.revoke_console_session(reach(&c.op), &id, now_ms()).await.map_err(store_err)? {
            Ok((StatusCode::OK, json!({"id": id, "revoked": true})))
        } else {
            Err(Denial::new(DenyCode::NotFound))
        }
    })
}
