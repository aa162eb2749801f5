//! Data-plane handlers: extract, call the chain, dispatch to the mock or an upstream, map the
//! result. Every exit path goes through `chain::finish` exactly once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json};
use bytes::Bytes;
use gatehouse_core::{Denial, DenyCode, GateName, GateOutcome, RequestCx, RequestId, Target};
use gatehouse_gates::authorize::AuthorizeGate;
use gatehouse_gates::chain::Stop;
use gatehouse_gates::guardrails::Session;
use gatehouse_gates::ledger::{Hold, Used};
use gatehouse_gates::meter::Finished;
use gatehouse_gates::{admit, admit_listing, finish};
use gatehouse_providers::{ApiRequest, Endpoint, mock, usage_from_body};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::BodyExt;
use secrecy::SecretString;
use serde_json::json;

use crate::stream::{Inspected, StreamBounds};
use crate::upstream::{refusal_for_status, retry_after};
use crate::{AppState, Runtime, Upstream};

/// The data-plane router (without transport layers).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/models", get(list_models))
        .route("/v1/models/{model}", get(get_model))
        .route("/v1/tokens/delegate", post(crate::tokens::delegate))
        .route("/v1/token", post(crate::exchange::token))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(|| async { Denial::new(DenyCode::NotFound) })
        .method_not_allowed_fallback(|| async { Denial::new(DenyCode::MethodNotAllowed) })
        .with_state(state)
}

/// Longest credential we consider (capability tokens with delegations and discharges, and
/// federated JWTs, are much longer than keys); anything longer is not one of ours.
const MAX_CREDENTIAL_BYTES: usize = 8192;

/// The presented credential: `Authorization: Bearer <key>` (OpenAI) or `x-api-key` (Anthropic).
/// A header that is present but malformed yields an empty credential, which fails as an
/// invalid key rather than as a missing one.
pub(crate) fn credential(headers: &HeaderMap) -> Option<SecretString> {
    let raw = if let Some(v) = headers.get(header::AUTHORIZATION) {
        let s = v.to_str().unwrap_or("");
        match s.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => "",
        }
    } else if let Some(v) = headers.get("x-api-key") {
        v.to_str().unwrap_or("").trim()
    } else {
        return None;
    };
    let raw = if raw.len() > MAX_CREDENTIAL_BYTES { "" } else { raw };
    Some(SecretString::from(raw.to_owned()))
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// Reads the body, refusing the wrong content type or more than `limit` bytes (checked on
/// Content-Length first, then while reading, so a lying length does not help).
pub(crate) async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, DenyCode> {
    if !is_json(headers) {
        return Err(DenyCode::UnsupportedMediaType);
    }
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(DenyCode::RequestTooLarge);
    }
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(DenyCode::RequestTooLarge),
        Err(_) => Err(DenyCode::InvalidRequest),
    }
}

async fn chat_completions(State(app): State<AppState>, Extension(id): Extension<RequestId>, req: Request) -> Response {
    handle(app, id, Endpoint::ChatCompletions, req).await
}

async fn embeddings(State(app): State<AppState>, Extension(id): Extension<RequestId>, req: Request) -> Response {
    handle(app, id, Endpoint::Embeddings, req).await
}

/// Refuses, metering the refusal first.
fn refuse(rt: &Runtime, mut cx: RequestCx, endpoint: &'static str, denial: Denial, reached_provider: bool) -> Response {
    let mut done = Finished::refused(endpoint, denial.code);
    done.reached_provider = reached_provider;
    finish(&rt.gates.audit, &mut cx, done);
    denial.into_response()
}

async fn handle(app: AppState, id: RequestId, endpoint: Endpoint, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let rt = app.runtime.load_full();
    let mut cx = RequestCx::new(id, credential(&parts.headers));
    cx.source = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let limit = rt.limits.max_body_bytes.get() as usize;
    let admitted = admit(&rt.gates, &mut cx, endpoint, read_body(&parts.headers, body, limit)).await;
    let rates = (cx.rate_limit, cx.token_rate_limit);
    let resp = dispatch(rt, cx, endpoint, admitted).await;
    with_rate_headers(resp, rates)
}

async fn dispatch(
    rt: Arc<Runtime>,
    mut cx: RequestCx,
    endpoint: Endpoint,
    admitted: Result<gatehouse_gates::Admitted, Stop>,
) -> Response {
    let (request, guard, hold) = match admitted {
        Ok(a) => (a.request, a.guard, a.hold),
        Err(Stop::Deny(d)) => return refuse(&rt, cx, endpoint.as_str(), d, false),
        Err(Stop::Serve(hit)) => {
            finish(&rt.gates.audit, &mut cx, Finished::served(endpoint.as_str(), 200, usage_from_body(&hit.body)));
            return json_response(hit.body);
        }
    };
    let Some(route) = cx.route.clone() else {
        // admit() sets a route on success; fail closed if that ever breaks
        return refuse(&rt, cx, endpoint.as_str(), Denial::new(DenyCode::Internal), false);
    };
    match route.target {
        Target::Mock => serve_mock(rt, cx, endpoint, &request, guard, hold).await,
        Target::Upstream(i) => match rt.upstreams.get(i) {
            Some(_) => forward(rt.clone(), cx, endpoint, request, (guard, hold), i, &route.provider_model).await,
            None => refuse(&rt, cx, endpoint.as_str(), Denial::new(DenyCode::Internal), false),
        },
    }
}

/// A reset time as OpenAI writes it: `250ms`, `6s`, `1.5s`.
fn reset_text(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = format!("{}.{:03}", ms / 1000, ms % 1000);
    format!("{}s", secs.trim_end_matches('0').trim_end_matches('.'))
}

/// OpenAI's `x-ratelimit-*-requests` and `x-ratelimit-*-tokens` headers, for the tightest
/// request rate and token rate that applied.
fn with_rate_headers(
    mut resp: Response,
    (requests, tokens): (Option<gatehouse_core::RateLimitInfo>, Option<gatehouse_core::RateLimitInfo>),
) -> Response {
    let h = resp.headers_mut();
    let names = [
        ("x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests"),
        ("x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"),
    ];
    for (r, (limit, remaining, reset)) in [requests, tokens].into_iter().zip(names) {
        let Some(r) = r else { continue };
        for (name, value) in
            [(limit, r.limit.to_string()), (remaining, r.remaining.to_string()), (reset, reset_text(r.reset))]
        {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(http::HeaderName::from_static(name), v);
            }
        }
    }
    resp
}

fn json_response(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}

fn sse_response(body: Body) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            // tell buffering reverse proxies (nginx) to pass events through at once
            (http::HeaderName::from_static("x-accel-buffering"), HeaderValue::from_static("no")),
        ],
        body,
    )
        .into_response()
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

async fn serve_mock(
    rt: Arc<Runtime>,
    cx: RequestCx,
    endpoint: Endpoint,
    req: &ApiRequest,
    guard: Session,
    hold: Hold,
) -> Response {
    let id = cx.request_id.to_string();
    match endpoint {
        Endpoint::Embeddings => {
            let (body, usage) = mock::embeddings(req);
            answer(&rt, cx, endpoint, (guard, hold), body, Some(usage)).await
        }
        Endpoint::ChatCompletions if req.stream => {
            let (frames, _) = mock::chat_stream(req, &id, unix_now());
            let inner = futures_util::stream::iter(frames.into_iter().map(Ok::<_, std::convert::Infallible>));
            let bounds = StreamBounds { idle: Duration::from_secs(60), max_duration: Duration::from_secs(600) };
            sse_response(Body::from_stream(Inspected::new(inner, rt, cx, endpoint.as_str(), bounds, (guard, hold))))
        }
        Endpoint::ChatCompletions => {
            let (body, usage) = mock::chat(req, &id, unix_now());
            answer(&rt, cx, endpoint, (guard, hold), body, Some(usage)).await
        }
    }
}

/// A whole answer: the output guardrail checks it (and may rewrite it), then the budgets are
/// settled (the provider was paid whatever the guardrail decides), then meter & audit.
async fn answer(
    rt: &Runtime,
    mut cx: RequestCx,
    endpoint: Endpoint,
    (mut guard, hold): (Session, Hold),
    body: Bytes,
    usage: Option<gatehouse_providers::Usage>,
) -> Response {
    hold.settle(match usage {
        Some(u) => Used::Reported(u),
        None => Used::Estimated { completion_tokens: (body.len() as u64).div_ceil(4) },
    });
    let checked = guard.response(endpoint, &body).await;
    guard.report_to(&mut cx);
    let body = match checked {
        Ok(Some(rewritten)) => rewritten,
        Ok(None) => body,
        Err(d) => {
            cx.record(GateName::GuardrailsOut, GateOutcome::Deny(d.code));
            return refuse(rt, cx, endpoint.as_str(), d, true);
        }
    };
    finish(&rt.gates.audit, &mut cx, Finished::served(endpoint.as_str(), 200, usage));
    json_response(body)
}

async fn forward(
    rt: Arc<Runtime>,
    cx: RequestCx,
    endpoint: Endpoint,
    req: ApiRequest,
    guard: (Session, Hold),
    i: usize,
    provider_model: &str,
) -> Response {
    // any refusal below drops the hold: the provider answered nothing billable
    let Some(up) = rt.upstreams.get(i) else {
        return refuse(&rt, cx, endpoint.as_str(), Denial::new(DenyCode::Internal), false);
    };
    let stream = req.stream;
    let body = req.into_upstream_body(provider_model);
    let started = std::time::Instant::now();
    let send = up.request(endpoint, &cx.request_id.to_string(), body, cx.principal.as_ref()).send();
    let resp = match tokio::time::timeout(up.first_byte_timeout, send).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            let code = if e.is_timeout() { DenyCode::UpstreamTimeout } else { DenyCode::UpstreamError };
            tracing::warn!(request_id = %cx.request_id, provider = %up.name, connect = e.is_connect(), timeout = e.is_timeout(), "provider request failed");
            return refuse(&rt, cx, endpoint.as_str(), Denial::new(code), true);
        }
        Err(_) => {
            tracing::warn!(request_id = %cx.request_id, provider = %up.name, "provider did not answer before the first-byte timeout");
            return refuse(&rt, cx, endpoint.as_str(), Denial::new(DenyCode::UpstreamTimeout), true);
        }
    };
    metrics::histogram!("gatehouse_upstream_first_byte_seconds", "provider" => up.name.to_string())
        .record(started.elapsed().as_secs_f64());
    let status = resp.status();
    if !status.is_success() {
        // The provider's body is not read into anything we return; its status is logged.
        tracing::warn!(request_id = %cx.request_id, provider = %up.name, status = status.as_u16(), "provider refused the request");
        let mut d = Denial::new(refusal_for_status(status.as_u16()));
        if let Some(s) = retry_after(resp.headers()) {
            d = d.retry_after(s);
        }
        return refuse(&rt, cx, endpoint.as_str(), d, true);
    }
    if stream {
        let is_sse = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/event-stream"));
        if !is_sse {
            tracing::warn!(request_id = %cx.request_id, provider = %up.name, "provider answered a stream request without an event stream");
            return refuse(&rt, cx, endpoint.as_str(), Denial::new(DenyCode::UpstreamError), true);
        }
        let bounds = StreamBounds { idle: up.idle_timeout, max_duration: up.max_stream_duration };
        let inner = resp.bytes_stream();
        return sse_response(Body::from_stream(Inspected::new(
            inner,
            rt.clone(),
            cx,
            endpoint.as_str(),
            bounds,
            guard,
        )));
    }
    let body = match tokio::time::timeout(up.max_stream_duration, read_limited(resp, up)).await {
        Ok(Ok(b)) => b,
        Ok(Err(code)) => {
            tracing::warn!(request_id = %cx.request_id, provider = %up.name, code = code.as_str(), "provider response unusable");
            return refuse(&rt, cx, endpoint.as_str(), Denial::new(code), true);
        }
        Err(_) => return refuse(&rt, cx, endpoint.as_str(), Denial::new(DenyCode::UpstreamTimeout), true),
    };
    let usage = usage_from_body(&body);
    answer(&rt, cx, endpoint, guard, body, usage).await
}

/// The whole upstream body, at most `max_response_bytes`; idle gaps are bounded by the
/// client's read timeout.
async fn read_limited(mut resp: reqwest::Response, up: &Upstream) -> Result<Bytes, DenyCode> {
    if resp.content_length().is_some_and(|n| n > up.max_response_bytes) {
        return Err(DenyCode::UpstreamError);
    }
    let mut buf = Vec::with_capacity(resp.content_length().map_or(8 * 1024, |n| n as usize));
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                if (buf.len() + c.len()) as u64 > up.max_response_bytes {
                    return Err(DenyCode::UpstreamError);
                }
                buf.extend_from_slice(&c);
            }
            Ok(None) => return Ok(Bytes::from(buf)),
            Err(e) if e.is_timeout() => return Err(DenyCode::UpstreamTimeout),
            Err(_) => return Err(DenyCode::UpstreamError),
        }
    }
}

fn model_json(name: &str, owner: &str) -> serde_json::Value {
    json!({"id": name, "object": "model", "created": 0, "owned_by": owner})
}

/// Only the models this credential may use; others do not exist for it.
async fn list_models(
    State(app): State<AppState>,
    Extension(id): Extension<RequestId>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
) -> Response {
    let rt = app.runtime.load_full();
    let mut cx = RequestCx::new(id, credential(&headers));
    cx.source = peer.map(|Extension(c)| c.0.ip());
    if let Err(d) = admit_listing(&rt.gates, &mut cx).await {
        return refuse(&rt, cx, "models", d, false);
    }
    let data: Vec<_> = rt
        .gates
        .table
        .models()
        .iter()
        .filter(|e| AuthorizeGate::may_use(&cx, &e.route.model))
        .map(|e| model_json(&e.route.model, &e.route.provider))
        .collect();
    finish(&rt.gates.audit, &mut cx, Finished::listed());
    Json(json!({"object": "list", "data": data})).into_response()
}

async fn get_model(
    State(app): State<AppState>,
    Extension(id): Extension<RequestId>,
    Path(model): Path<String>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
) -> Response {
    let rt = app.runtime.load_full();
    let mut cx = RequestCx::new(id, credential(&headers));
    cx.source = peer.map(|Extension(c)| c.0.ip());
    if let Err(d) = admit_listing(&rt.gates, &mut cx).await {
        return refuse(&rt, cx, "models", d, false);
    }
    match rt.gates.table.resolve(&model) {
        Some(e) if e.route.model.as_ref() == model && AuthorizeGate::may_use(&cx, &e.route.model) => {
            let body = model_json(&e.route.model, &e.route.provider);
            finish(&rt.gates.audit, &mut cx, Finished::listed());
            Json(body).into_response()
        }
        _ => refuse(&rt, cx, "models", Denial::new(DenyCode::ModelNotFound).with_param("model"), false),
    }
}

pub async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

async fn readyz(State(app): State<AppState>) -> Response {
    ready(&app.store).await
}

/// Ready when the store answers within a second.
pub async fn ready(store: &gatehouse_store::Store) -> Response {
    match tokio::time::timeout(Duration::from_secs(1), store.ping()).await {
        Ok(Ok(())) => Json(json!({"status": "ready"})).into_response(),
        _ => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "unavailable"}))).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        m
    }

    #[test]
    fn credentials_come_from_bearer_or_x_api_key() {
        assert_eq!(credential(&h(&[("authorization", "Bearer abc")])).unwrap().expose_secret(), "abc");
        assert_eq!(credential(&h(&[("authorization", "bearer  abc ")])).unwrap().expose_secret(), "abc");
        assert_eq!(credential(&h(&[("x-api-key", "xyz")])).unwrap().expose_secret(), "xyz");
        assert_eq!(credential(&h(&[("authorization", "Basic abc")])).unwrap().expose_secret(), "");
        assert!(credential(&h(&[])).is_none());
        let long = "a".repeat(8193);
        assert_eq!(credential(&h(&[("authorization", &format!("Bearer {long}"))])).unwrap().expose_secret(), "");
    }

    #[test]
    fn reset_times_read_like_openais() {
        assert_eq!(reset_text(Duration::from_millis(250)), "250ms");
        assert_eq!(reset_text(Duration::from_secs(6)), "6s");
        assert_eq!(reset_text(Duration::from_millis(1500)), "1.5s");
        assert_eq!(reset_text(Duration::from_millis(60_010)), "60.01s");
    }

    #[test]
    fn content_type_must_be_json() {
        assert!(is_json(&h(&[("content-type", "application/json")])));
        assert!(is_json(&h(&[("content-type", "Application/JSON; charset=utf-8")])));
        assert!(!is_json(&h(&[("content-type", "text/plain")])));
        assert!(!is_json(&h(&[])));
    }
}
