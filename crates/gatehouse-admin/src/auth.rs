//! Admin-token authentication for the control plane. Not on the data plane's hot path, so
//! every call asks the store (a revoked token stops working at once). Failures are audited.

use axum::extract::FromRequestParts;
use gatehouse_audit::{Actor, EventKind as K};
use gatehouse_core::{Denial, DenyCode};
use gatehouse_security::{KeyKind, check_format};
use http::request::Parts;
use secrecy::{ExposeSecret, SecretString};

use crate::AdminState;
use crate::audit::{AuditCx, Outcome, record};
use crate::rbac::{Operator, Role};

impl FromRequestParts<AdminState> for Operator {
    type Rejection = Denial;

    async fn from_request_parts(parts: &mut Parts, s: &AdminState) -> Result<Self, Denial> {
        let acx = AuditCx::from_parts(parts);
        let denied = |code: DenyCode| async move {
            let _ = record(s, &acx, Actor::Anonymous, K::AuthAdminToken, None, None, Outcome::Denied(code)).await;
            Err(Denial::new(code))
        };
        let Some(v) = parts.headers.get(http::header::AUTHORIZATION) else {
            return denied(DenyCode::MissingCredentials).await;
        };
        let token = v
            .to_str()
            .ok()
            .and_then(|s| s.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| SecretString::from(t.trim().to_owned()));
        let Some(token) = token.filter(|t| check_format(t.expose_secret()) == Some(KeyKind::Admin)) else {
            return denied(DenyCode::InvalidToken).await;
        };
        let digest = s.hasher.digest(KeyKind::Admin, &token);
        match s.store.admin_token_by_digest(&digest.0).await {
            Ok(Some(row)) if row.revoked_at.is_none() => match Role::parse(&row.role) {
                // a scoped role without an org, or an unknown role, is refused, never widened
                Some(role) if role == Role::PlatformAdmin || row.org.is_some() => {
                    Ok(Operator { token_id: row.id, role, org: row.org, user: row.user })
                }
                _ => denied(DenyCode::InvalidToken).await,
            },
            Ok(_) => denied(DenyCode::InvalidToken).await,
            Err(e) => {
                tracing::warn!(error = %e, "admin token lookup failed");
                Err(Denial::new(DenyCode::Unavailable))
            }
        }
    }
}
