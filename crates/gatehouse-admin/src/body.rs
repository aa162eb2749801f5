//! A strict JSON body extractor for admin requests: size-capped, `application/json` only,
//! unknown fields rejected by the target type, and a fixed error body on any failure.

use axum::extract::{FromRequest, Request};
use gatehouse_core::{Denial, DenyCode};
use serde::de::DeserializeOwned;

/// Admin bodies are small; anything larger is a mistake or an attack.
const MAX_ADMIN_BODY: usize = 64 * 1024;

pub struct StrictJson<T>(pub T);

impl<T: DeserializeOwned> StrictJson<T> {
    pub async fn read(req: Request) -> Result<Self, Denial> {
        let (parts, body) = req.into_parts();
        let bytes = gatehouse_http::read_body(&parts.headers, body, "application/json", MAX_ADMIN_BODY)
            .await
            .map_err(Denial::new)?;
        strict(&bytes).map(StrictJson)
    }
}

/// Bytes already within the size cap, as `T`: admin bodies are flat, so deep nesting is
/// refused before serde builds anything; unknown fields are refused by `T`.
fn strict<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Denial> {
    gatehouse_providers::check_depth(bytes, 8).map_err(|_| Denial::new(DenyCode::RequestTooComplex))?;
    serde_json::from_slice(bytes).map_err(|_| Denial::new(DenyCode::InvalidRequest))
}

/// The strict reading of an admin body (depth, then serde with unknown fields refused) into
/// every body type the control plane takes, and the spec checks that need no store. For the
/// fuzz targets: whatever the bytes, nothing panics. Returns how many types accepted them.
#[doc(hidden)]
pub fn reads_admin_body(bytes: &[u8]) -> usize {
    fn takes<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
        strict(bytes).ok()
    }
    if bytes.len() > MAX_ADMIN_BODY {
        return 0;
    }
    let mut n = 0;
    n += usize::from(takes::<crate::members::AddMember>(bytes).is_some());
    n += usize::from(takes::<crate::members::UpdateMember>(bytes).is_some());
    n += usize::from(takes::<crate::webhooks::CreateWebhook>(bytes).is_some());
    n += usize::from(takes::<crate::keys::CreateKey>(bytes).is_some());
    n += usize::from(takes::<crate::keys::Rotate>(bytes).is_some());
    n += usize::from(takes::<crate::tokens::CreateToken>(bytes).is_some());
    n += usize::from(takes::<crate::capabilities::CreateCapability>(bytes).is_some());
    n += usize::from(takes::<crate::capabilities::RotateKey>(bytes).is_some());
    n += usize::from(takes::<crate::orgs::NameBody>(bytes).is_some());
    n += usize::from(takes::<crate::orgs::ProjectBody>(bytes).is_some());
    n += usize::from(takes::<crate::orgs::ProjectMemberBody>(bytes).is_some());
    if let Some(spec) = takes::<gatehouse_guardrails::policy::PolicySpec>(bytes) {
        n += usize::from(spec.validate().is_ok());
    }
    if let Some(spec) = takes::<gatehouse_limits::spec::LimitSpec>(bytes) {
        n += usize::from(spec.compile().is_ok());
    }
    n
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for StrictJson<T> {
    type Rejection = Denial;

    async fn from_request(req: Request, _: &S) -> Result<Self, Denial> {
        StrictJson::read(req).await
    }
}

#[cfg(test)]
mod tests {
    use super::reads_admin_body;

    #[test]
    fn every_body_type_is_read_strictly() {
        assert!(reads_admin_body(br#"{"name": "acme"}"#) >= 1, "an org or project name");
        assert_eq!(reads_admin_body(br#"{"name": "acme", "surprise": 1}"#), 0, "unknown fields");
        assert_eq!(reads_admin_body(b"[[[[[[[[[1]]]]]]]]]"), 0, "nine levels");
        assert_eq!(reads_admin_body(&vec![b' '; 64 * 1024 + 1]), 0, "over the cap");
        assert_eq!(reads_admin_body(b"\xff\xfe"), 0);
    }
}
