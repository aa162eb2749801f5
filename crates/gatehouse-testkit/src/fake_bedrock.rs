//! The fake provider's Bedrock door: `POST /model/{modelId}/converse` and `/converse-stream`.
//! Every request must carry a SigV4 signature that verifies for [`BEDROCK_ACCESS_KEY_ID`] and
//! [`BEDROCK_SECRET_ACCESS_KEY`] over the path, `content-type` and body exactly as received (or
//! a Bedrock API key as a bearer); answers are Converse JSON, streams are AWS event-stream
//! frames, errors carry AWS's `x-amzn-errortype`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::UPSTREAM_SECRET_IN_ERRORS;
use crate::fake::{Shared, plan, record};

/// The AWS access key id the fake's Bedrock door accepts signatures from.
pub const BEDROCK_ACCESS_KEY_ID: &str = "AKIAGATEHOUSEFAKE01";
/// Its secret access key.
pub const BEDROCK_SECRET_ACCESS_KEY: &str = "fake/bedrock/secret+key/for/tests/0000";
/// A second key pair it accepts: a tenant's own AWS credential (stored in the gateway).
pub const BEDROCK_TENANT_ACCESS_KEY_ID: &str = "AKIAGATEHOUSETENANT1";
pub const BEDROCK_TENANT_SECRET_ACCESS_KEY: &str = "tenant/bedrock/secret+key/0001";

fn error(status: u16, kind: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = json!({"message": format!("{kind}: fake says no ({UPSTREAM_SECRET_IN_ERRORS})")});
    (code, [("x-amzn-errortype", kind)], axum::Json(body)).into_response()
}

/// Unix seconds of an `x-amz-date` (`20261206T093000Z`).
fn amz_date(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(4..6)?, n(6..8)?);
    // days from the civil date (Howard Hinnant's algorithm)
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let secs = days * 86_400 + n(9..11)? * 3600 + n(11..13)? * 60 + n(13..15)?;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

/// Whether the request is signed by the fake's key over what arrived (or carries a bearer).
fn verified(uri: &axum::http::Uri, headers: &HeaderMap, body: &[u8]) -> bool {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let Some(auth) = text("authorization") else { return false };
    if let Some(key) = auth.strip_prefix("Bearer ") {
        return !key.is_empty();
    }
    let Some(credential) = auth.strip_prefix("AWS4-HMAC-SHA256 Credential=") else { return false };
    let known = [
        (BEDROCK_ACCESS_KEY_ID, BEDROCK_SECRET_ACCESS_KEY),
        (BEDROCK_TENANT_ACCESS_KEY_ID, BEDROCK_TENANT_SECRET_ACCESS_KEY),
    ];
    let Some((key_id, secret, scope)) =
        known.iter().find_map(|(id, secret)| Some((*id, *secret, credential.strip_prefix(id)?.strip_prefix('/')?)))
    else {
        return false;
    };
    let (Some(time), Some(host)) = (text("x-amz-date").and_then(amz_date), text("host")) else {
        return false;
    };
    let Some(region) = scope.split('/').nth(1) else { return false };
    let credentials = aws_credential_types::Credentials::new(
        key_id,
        secret,
        text("x-amz-security-token").map(str::to_owned),
        None,
        "fake",
    );
    let identity = credentials.into();
    let Ok(params) = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("bedrock")
        .time(time)
        .settings(SigningSettings::default())
        .build()
    else {
        return false;
    };
    let url = format!("http://{host}{}", uri.path_and_query().map_or("/", |p| p.as_str()));
    let signed = [("content-type", text("content-type").unwrap_or_default())];
    let Ok(request) = SignableRequest::new("POST", url, signed.into_iter(), SignableBody::Bytes(body)) else {
        return false;
    };
    let Ok(output) = sign(request, &params.into()) else { return false };
    auth.ends_with(&format!("Signature={}", output.signature()))
}

fn frame(event: &str, payload: &Value) -> Bytes {
    let m = Message::new(serde_json::to_vec(payload).unwrap_or_default())
        .add_header(Header::new(":message-type", HeaderValue::String("event".into())))
        .add_header(Header::new(":event-type", HeaderValue::String(event.to_owned().into())))
        .add_header(Header::new(":content-type", HeaderValue::String("application/json".into())));
    let mut out = Vec::new();
    let _ = aws_smithy_eventstream::frame::write_message_to(&m, &mut out);
    Bytes::from(out)
}

async fn answer(s: Arc<Shared>, uri: axum::http::Uri, headers: HeaderMap, body: Bytes, stream: bool) -> Response {
    let v = record(&s, uri.path(), &headers, &body);
    if !verified(&uri, &headers, &body) {
        return error(403, "UnrecognizedClientException");
    }
    if !v["messages"].is_array() || v.get("modelId").is_some() {
        return error(400, "ValidationException");
    }
    let plan = match plan(&s, |code| {
        let kind = match code {
            429 => "ThrottlingException",
            503 => "ServiceUnavailableException",
            _ => "InternalServerException",
        };
        error(code, kind)
    })
    .await
    {
        Ok(p) => p,
        Err(refused) => return refused,
    };
    let stop = if plan.tool.is_some() { "tool_use" } else { "end_turn" };
    let tool_use = |input: &Value| json!({"toolUseId": "tooluse_fake1", "name": "lookup", "input": input});
    if !stream {
        let mut content = vec![json!({"text": plan.text})];
        content.extend(plan.tool.as_ref().map(|i| json!({"toolUse": tool_use(i)})));
        return axum::Json(json!({
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": stop,
            "usage": {"inputTokens": 7, "outputTokens": 5, "totalTokens": 12},
            "metrics": {"latencyMs": 1},
        }))
        .into_response();
    }
    let n = plan.pieces.len();
    let mut frames = vec![frame("messageStart", &json!({"role": "assistant"}))];
    frames.extend(
        plan.pieces.iter().map(|p| frame("contentBlockDelta", &json!({"contentBlockIndex": 0, "delta": {"text": p}}))),
    );
    frames.push(frame("contentBlockStop", &json!({"contentBlockIndex": 0})));
    if let Some(input) = &plan.tool {
        let start =
            json!({"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "tooluse_fake1", "name": "lookup"}}});
        frames.push(frame("contentBlockStart", &start));
        let text = input.to_string();
        let (a, b) = text.split_at(text.len() / 2);
        for part in [a, b] {
            frames.push(frame(
                "contentBlockDelta",
                &json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": part}}}),
            ));
        }
        frames.push(frame("contentBlockStop", &json!({"contentBlockIndex": 1})));
    }
    frames.push(frame("messageStop", &json!({"stopReason": stop})));
    frames.push(frame(
        "metadata",
        &json!({"usage": {"inputTokens": 7, "outputTokens": n, "totalTokens": 7 + n},
        "metrics": {"latencyMs": 1}}),
    ));
    Response::builder()
        .header(header::CONTENT_TYPE, "application/vnd.amazon.eventstream")
        .body(Body::from_stream(futures_util::stream::iter(frames.into_iter().map(Ok::<_, Infallible>))))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Both doors: `/converse` answers whole, `/converse-stream` in frames.
pub(crate) async fn converse(
    State(s): State<Arc<Shared>>,
    uri: axum::http::Uri,
    Path(_model): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let stream = uri.path().ends_with("/converse-stream");
    answer(s, uri, headers, body, stream).await
}
