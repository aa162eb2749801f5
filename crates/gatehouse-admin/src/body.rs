//! A strict JSON body extractor for admin requests: size-capped, `application/json` only,
//! unknown fields rejected by the target type, and a fixed error body on any failure.

use axum::extract::{FromRequest, Request};
use gatehouse_core::{Denial, DenyCode};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;

/// Admin bodies are small; anything larger is a mistake or an attack.
const MAX_ADMIN_BODY: usize = 64 * 1024;

pub struct StrictJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for StrictJson<T> {
    type Rejection = Denial;

    async fn from_request(req: Request, _: &S) -> Result<Self, Denial> {
        let json = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Err(Denial::new(DenyCode::UnsupportedMediaType));
        }
        let bytes = match http_body_util::Limited::new(req.into_body(), MAX_ADMIN_BODY).collect().await {
            Ok(c) => c.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(Denial::new(DenyCode::RequestTooLarge)),
            Err(_) => return Err(Denial::new(DenyCode::InvalidRequest)),
        };
        // Admin bodies are flat: refuse deep nesting before serde builds anything.
        gatehouse_providers::check_depth(&bytes, 8).map_err(|_| Denial::new(DenyCode::RequestTooComplex))?;
        serde_json::from_slice(&bytes).map(StrictJson).map_err(|_| Denial::new(DenyCode::InvalidRequest))
    }
}
