//! Admin-token authentication for the control plane. Not on the data plane's hot path, so
//! every call asks the store (a revoked token stops working at once). Failures are audited.

use axum::extract::FromRequestParts;
use gatehouse_audit::{Actor, EventKind as K};
use gatehouse_core::{Denial, DenyCode, HasDenyCode, Presented};
use gatehouse_http::Accept;
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
        let token = match gatehouse_http::presented(&parts.headers, parts.uri.query(), Accept::Bearer) {
            Presented::One(t) => t,
            Presented::Nothing => return denied(DenyCode::MissingCredentials).await,
            Presented::Ambiguous => return denied(DenyCode::AmbiguousCredentials).await,
        };
        if let Some(f) = &s.federation
            && token.expose_secret().starts_with("eyJ")
        {
            return match federated(s, f, token.expose_secret()).await {
                Ok(op) => Ok(op),
                Err(code) if code == DenyCode::Unavailable => Err(Denial::new(code)),
                Err(code) => denied(code).await,
            };
        }
        match admin_token_operator(s, &token).await {
            Ok(op) => Ok(op),
            Err(DenyCode::Unavailable) => Err(Denial::new(DenyCode::Unavailable)),
            Err(code) => denied(code).await,
        }
    }
}

/// The operator an admin token stands for: `invalid_token` unless it is well formed, known,
/// unrevoked and of a role it can hold; `unavailable` if the store cannot say.
pub async fn admin_token_operator(s: &AdminState, token: &SecretString) -> Result<Operator, DenyCode> {
    if check_format(token.expose_secret()) != Some(KeyKind::Admin) {
        return Err(DenyCode::InvalidToken);
    }
    let digest = s.hasher.digest(KeyKind::Admin, token);
    match s.store.admin_token_by_digest(&digest.0).await {
        Ok(Some(row)) if row.revoked_at.is_none() => match Role::parse(&row.role) {
            // a scoped role without an org, or an unknown role, is refused, never widened
            Some(role) if role == Role::PlatformAdmin || row.org.is_some() => {
                // its last use, to the minute (the doctor's unused tokens): at most one write a
                // minute per token, and a failed write costs the call nothing
                let now = gatehouse_store::now_ms();
                if row.last_used_at.is_none_or(|t| t < now - 60_000)
                    && let Err(e) = s.store.touch_admin_token(&row.id, now).await
                {
                    tracing::debug!(error = %e, "cannot record an admin token's use");
                }
                Ok(Operator { token_id: row.id, role, org: row.org, user: row.user })
            }
            _ => Err(DenyCode::InvalidToken),
        },
        Ok(_) => Err(DenyCode::InvalidToken),
        Err(e) => {
            tracing::warn!(error = %e, "admin token lookup failed");
            Err(DenyCode::Unavailable)
        }
    }
}

/// A federated operator: a JWT from an issuer trusted for the control plane.
async fn federated(s: &AdminState, f: &gatehouse_oidc::Federation, jwt: &str) -> Result<Operator, DenyCode> {
    let id = f.verify(jwt, gatehouse_oidc::Plane::Control).await.map_err(|e| e.deny_code())?;
    let cfg = f.issuer(&id.issuer).ok_or(DenyCode::InvalidToken)?;
    federated_operator(s, cfg, &id).await
}

/// The operator a federated identity stands for. Every role it carries must be mapped
/// (`admin_roles`); the operator acts with the highest one, in the org its claim names
/// (platform admins in none).
pub async fn federated_operator(
    s: &AdminState,
    cfg: &gatehouse_oidc::settings::OidcIssuer,
    id: &gatehouse_oidc::Identity,
) -> Result<Operator, DenyCode> {
    let mut role = None;
    for r in &id.roles {
        let mapped = cfg.admin_roles.get(r).and_then(|n| Role::parse(n)).ok_or(DenyCode::PermissionDenied)?;
        role = role.max(Some(mapped));
    }
    let role = role.ok_or(DenyCode::PermissionDenied)?;
    let org = if role == Role::PlatformAdmin {
        None
    } else {
        match s.store.org_by_name(&id.org).await {
            Ok(Some(o)) => Some(o),
            Ok(None) => return Err(DenyCode::InvalidToken),
            Err(_) => return Err(DenyCode::Unavailable),
        }
    };
    Ok(Operator { token_id: crate::rbac::federated_id(&id.issuer, &id.subject), role, org, user: None })
}
