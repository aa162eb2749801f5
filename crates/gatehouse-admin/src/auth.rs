//! Admin-token authentication for the control plane. Not on the data plane's hot path, so
//! every call asks the store (a revoked token stops working at once).

use axum::extract::FromRequestParts;
use gatehouse_core::{Denial, DenyCode};
use gatehouse_security::{KeyKind, check_format};
use http::request::Parts;
use secrecy::{ExposeSecret, SecretString};

use crate::AdminState;

/// An authenticated operator. Today every admin token acts as a platform admin.
#[derive(Debug, Clone)]
pub struct Operator {
    pub token_id: String,
}

impl FromRequestParts<AdminState> for Operator {
    type Rejection = Denial;

    async fn from_request_parts(parts: &mut Parts, s: &AdminState) -> Result<Self, Denial> {
        let Some(v) = parts.headers.get(http::header::AUTHORIZATION) else {
            audit_denied("missing_credentials");
            return Err(Denial::new(DenyCode::MissingCredentials));
        };
        let token = v
            .to_str()
            .ok()
            .and_then(|s| s.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| SecretString::from(t.trim().to_owned()));
        let Some(token) = token.filter(|t| check_format(t.expose_secret()) == Some(KeyKind::Admin)) else {
            audit_denied("invalid_token");
            return Err(Denial::new(DenyCode::InvalidToken));
        };
        let digest = s.hasher.digest(KeyKind::Admin, &token);
        match s.store.admin_token_by_digest(&digest.0).await {
            Ok(Some(row)) if row.revoked_at.is_none() => Ok(Operator { token_id: row.id }),
            Ok(_) => {
                audit_denied("invalid_token");
                Err(Denial::new(DenyCode::InvalidToken))
            }
            Err(e) => {
                tracing::warn!(error = %e, "admin token lookup failed");
                Err(Denial::new(DenyCode::Unavailable))
            }
        }
    }
}

fn audit_denied(code: &'static str) {
    tracing::info!(target: "gatehouse::audit", plane = "control", outcome = "denied", code, "admin authentication failed");
}
