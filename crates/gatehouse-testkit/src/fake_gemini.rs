//! The fake provider's Gemini door: `POST /v1beta/models/{model}:generateContent` and
//! `:streamGenerateContent?alt=sse`, the key in `x-goog-api-key` (a key in the URL is refused,
//! so a test sees the gateway never puts it there), whole answers and SSE streams of
//! `GenerateContentResponse` in the documented shape, Google's error bodies.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::fake::{Shared, record};
use crate::{Behavior, UPSTREAM_SECRET_IN_ERRORS};

fn error(code: u16, status: &str) -> Response {
    let http = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = json!({"error": {"code": code, "message": format!("fake says no ({UPSTREAM_SECRET_IN_ERRORS})"), "status": status}});
    let mut resp = (http, axum::Json(body)).into_response();
    if code == 429 {
        resp.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("7"));
    }
    resp
}

fn usage(prompt: u64, out: u64) -> Value {
    json!({"promptTokenCount": prompt, "candidatesTokenCount": out, "totalTokenCount": prompt + out})
}

pub(crate) async fn generate(
    State(s): State<Arc<Shared>>,
    Path(call): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let v = record(&s, &format!("/v1beta/models/{call}"), &headers, &body);
    let query = query.unwrap_or_default();
    if headers.get("x-goog-api-key").is_none_or(|k| k.is_empty()) || query.split('&').any(|p| p.starts_with("key=")) {
        return error(403, "PERMISSION_DENIED");
    }
    let (model, stream) = match call.rsplit_once(':') {
        Some((m, "generateContent")) => (m.to_owned(), false),
        Some((m, "streamGenerateContent")) if query.split('&').any(|p| p == "alt=sse") => (m.to_owned(), true),
        _ => return error(404, "NOT_FOUND"),
    };
    if !v["contents"].is_array() || v.get("model").is_some() {
        return error(400, "INVALID_ARGUMENT");
    }
    let plan = match crate::fake::plan(&s, |code| {
        let status = match code {
            429 => "RESOURCE_EXHAUSTED",
            503 => "UNAVAILABLE",
            _ => "INTERNAL",
        };
        error(code, status)
    })
    .await
    {
        Ok(p) => p,
        Err(refused) => return refused,
    };
    let function = plan.tool.map(|a| json!({"functionCall": {"name": "lookup", "args": a}}));
    if !stream {
        let mut parts = vec![json!({"text": plan.text})];
        parts.extend(function);
        return axum::Json(json!({
            "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": usage(7, 5), "modelVersion": model, "responseId": "gemini-fake-1",
        }))
        .into_response();
    }
    let texts = plan.pieces;
    let n = texts.len() as u64;
    let mut events: Vec<Value> = texts
        .into_iter()
        .map(|t| {
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": t}]}, "index": 0}],
                        "modelVersion": model, "responseId": "gemini-fake-1"})
        })
        .collect();
    let mut last = json!({"candidates": [{"content": {"role": "model", "parts": []}, "finishReason": "STOP", "index": 0}],
                          "usageMetadata": usage(7, n), "modelVersion": model, "responseId": "gemini-fake-1"});
    if let Some(f) = function {
        last["candidates"][0]["content"]["parts"] = json!([f]);
    }
    events.push(last);
    if matches!(s.behavior.load().as_ref(), Behavior::Disconnect) {
        events.truncate(2);
    }
    let frames = events.into_iter().map(|e| Ok::<_, Infallible>(Bytes::from(format!("data: {e}\r\n\r\n"))));
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from_stream(futures_util::stream::iter(frames)))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
