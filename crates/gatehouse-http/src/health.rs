//! `/healthz` (the process answers) and `/readyz` (the store answers), on both planes.

use std::time::Duration;

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::json;

pub async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// Ready when the store answers within a second.
pub async fn ready(store: &gatehouse_store::Store) -> Response {
    match tokio::time::timeout(Duration::from_secs(1), store.ping()).await {
        Ok(Ok(())) => Json(json!({"status": "ready"})).into_response(),
        _ => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "unavailable"}))).into_response(),
    }
}
