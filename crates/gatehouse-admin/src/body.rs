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
        // Admin bodies are flat: refuse deep nesting before serde builds anything.
        gatehouse_providers::check_depth(&bytes, 8).map_err(|_| Denial::new(DenyCode::RequestTooComplex))?;
        serde_json::from_slice(&bytes).map(StrictJson).map_err(|_| Denial::new(DenyCode::InvalidRequest))
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for StrictJson<T> {
    type Rejection = Denial;

    async fn from_request(req: Request, _: &S) -> Result<Self, Denial> {
        StrictJson::read(req).await
    }
}
