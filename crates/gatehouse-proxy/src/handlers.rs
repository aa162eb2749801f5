//! Data-plane handlers: parse the transport, call the chain ([`admit`]), move the bytes to the
//! mock or an upstream, finish through the chain's [`Answer`], write the response. Policy and
//! metering live in `gatehouse-gates`; every exit path is finished there exactly once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json};
use bytes::Bytes;
use gatehouse_core::{Denial, DenyCode, Presented, Rates, RequestCx, RequestId, Route, Target};
use gatehouse_gates::route;
use gatehouse_gates::{Admitted, Answer, Listing, Stop, Stopped, admit, admit_listing};
use gatehouse_providers::chat::{Family, chunk_decoder, request_for};
use gatehouse_providers::{ApiRequest, Endpoint, mock, usage_from_body};
use http::{HeaderValue, header};

use serde_json::json;

use crate::stream::{Inspected, StreamBounds};
use crate::upstream::{Call, refusal_for_status, retry_after};
use crate::{AppState, Runtime, Upstream};
use gatehouse_http::read_body;

/// The data-plane router (without transport layers).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/messages", post(crate::anthropic::messages))
        .route("/v1/messages/count_tokens", post(crate::anthropic::count_tokens))
        .route("/v1/models", get(list_models))
        .route("/v1/models/{model}", get(get_model))
        .route("/v1/tokens/delegate", post(crate::tokens::delegate))
        .route("/v1/token", post(crate::exchange::token))
        .route("/healthz", get(gatehouse_http::healthz))
        .route("/readyz", get(readyz))
        .fallback(|| async { Denial::new(DenyCode::NotFound) })
        .method_not_allowed_fallback(|| async { Denial::new(DenyCode::MethodNotAllowed) })
        .with_state(state)
}

/// The presented credential: `Authorization: Bearer <key>` (OpenAI) or `x-api-key` (Anthropic);
/// more than one place holding one is ambiguous and refused by the authenticate gate.
pub(crate) fn credential(parts: &http::request::Parts) -> Presented {
    gatehouse_http::presented(&parts.headers, parts.uri.query(), gatehouse_http::Accept::BearerOrApiKey)
}

/// A request's context from its head: the presented credential, the peer and the client's
/// timeout hint.
pub(crate) fn request_cx(id: RequestId, parts: &http::request::Parts) -> RequestCx {
    let mut cx = RequestCx::new(id, credential(parts));
    cx.source = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    cx.timeout_hint = timeout_hint(&parts.headers);
    cx
}

/// `X-Stainless-Timeout`: the seconds the official OpenAI and Anthropic SDKs will wait, which
/// they send with every request. A hint only: one that is not a positive number of seconds
/// (at most a day) is ignored, and it can shorten the request's deadline, never lengthen it.
fn timeout_hint(headers: &http::HeaderMap) -> Option<Duration> {
    let v = headers.get("x-stainless-timeout")?.to_str().ok()?;
    let secs: f64 = v.trim().parse().ok().filter(|s: &f64| s.is_finite() && *s > 0.0 && *s <= 86_400.0)?;
    Some(Duration::from_secs_f64(secs))
}

async fn chat_completions(State(app): State<AppState>, Extension(id): Extension<RequestId>, req: Request) -> Response {
    handle(app, id, Endpoint::ChatCompletions, req).await
}

async fn embeddings(State(app): State<AppState>, Extension(id): Extension<RequestId>, req: Request) -> Response {
    handle(app, id, Endpoint::Embeddings, req).await
}

async fn handle(app: AppState, id: RequestId, endpoint: Endpoint, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let rt = app.runtime.load_full();
    let cx = request_cx(id, &parts);
    let limit = rt.limits.max_body_bytes.get() as usize;
    match admit(&rt.gates, cx, endpoint, read_body(&parts.headers, body, "application/json", limit)).await {
        Ok(Admitted { request, answer }) => {
            let rates = answer.rates();
            with_rate_headers(dispatch(rt, request, answer).await, rates)
        }
        Err(Stopped { stop: Stop::Deny(d), rates }) => with_rate_headers(d.into_response(), rates),
        Err(Stopped { stop: Stop::Serve(hit), rates }) => with_rate_headers(json_response(hit.body), rates),
    }
}

/// To the deployment the route gate chose: the built-in mock, or an upstream.
pub(crate) async fn dispatch(rt: Arc<Runtime>, request: ApiRequest, answer: Answer) -> Response {
    let Some(route) = answer.route().cloned() else {
        // admit() sets a route on success; fail closed if that ever breaks
        return answer.fail(Denial::new(DenyCode::Internal)).into_response();
    };
    match route.target {
        Target::Mock => serve_mock(rt, &request, answer).await,
        Target::Upstream(_) => forward(rt, request, answer, route).await,
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
pub(crate) fn with_rate_headers(mut resp: Response, Rates { requests, tokens }: Rates) -> Response {
    let h = resp.headers_mut();
    let names = [
        ("x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests"),
        ("x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"),
    ];
    for (r, (limit, remaining, reset)) in [requests, tokens].into_iter().zip(names) {
        let Some(r) = r else { continue };
        h.insert(http::HeaderName::from_static(limit), HeaderValue::from(r.limit));
        h.insert(http::HeaderName::from_static(remaining), HeaderValue::from(r.remaining));
        if let Ok(v) = HeaderValue::from_str(&reset_text(r.reset)) {
            h.insert(http::HeaderName::from_static(reset), v);
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

pub(crate) fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

async fn serve_mock(rt: Arc<Runtime>, req: &ApiRequest, answer: Answer) -> Response {
    let id = answer.request_id().to_string();
    match req.endpoint {
        Endpoint::Embeddings => {
            let (body, usage) = mock::embeddings(req);
            whole(answer, body, Some(usage)).await
        }
        Endpoint::ChatCompletions if req.stream => {
            let (frames, _) = mock::chat_stream(req, &id, unix_now());
            let inner = futures_util::stream::iter(frames.into_iter().map(Ok::<_, std::convert::Infallible>));
            let bounds = StreamBounds { idle: Duration::from_secs(60), max_duration: Duration::from_secs(600) };
            sse_response(Body::from_stream(Inspected::new(inner, rt, answer.stream(), bounds)))
        }
        Endpoint::ChatCompletions => {
            let (body, usage) = mock::chat(req, &id, unix_now());
            whole(answer, body, Some(usage)).await
        }
    }
}

/// A whole answer through the response half of the chain.
async fn whole(answer: Answer, body: Bytes, usage: Option<gatehouse_providers::Usage>) -> Response {
    match answer.whole(body, usage).await {
        Ok(body) => json_response(body),
        Err(d) => d.into_response(),
    }
}

/// To the route's deployments in order: the first, then each fallback while the failure is
/// one another deployment may not have; when every deployment failed, another round after a
/// full-jitter backoff while the model's retries, its retry budget and the deadline allow
/// (docs/ROUTING.md), all before the client's deadline when it gave one. Nothing has reached
/// the client before a response is chosen, so a fallback or retry never splices or repeats an
/// answer.
async fn forward(rt: Arc<Runtime>, mut req: ApiRequest, mut answer: Answer, first: Arc<Route>) -> Response {
    let fallbacks = answer.take_fallbacks();
    let id_text = answer.request_id().to_string();
    let client = answer.deadline();
    // retries happen within the first deployment's first-byte timeout, counted from the start
    let first_byte = match first.target {
        Target::Upstream(i) => {
            first.first_byte_timeout.or(rt.upstreams.get(i).map(|u| u.first_byte_timeout)).unwrap_or(Duration::ZERO)
        }
        Target::Mock => Duration::ZERO,
    };
    let retry_deadline = earliest(Instant::now() + first_byte, client);
    let (mut k, mut round, mut attempt) = (0usize, 0u8, 0u32);
    let (resp, up, route) = loop {
        let route = if k == 0 { &first } else { &fallbacks[k - 1] };
        let (kind, denial) = match try_deployment(&rt, &mut req, route, attempt, &answer, &id_text, client).await {
            Ok((resp, up)) => {
                if !req.stream {
                    answer.attempt_answered(route);
                }
                break (resp, up, route.clone());
            }
            Err(failure) => failure,
        };
        let next = answer.attempt_failed(route, kind);
        // any failure that ends it releases the hold: the provider answered nothing billable;
        // the audit names the deployment that failed last
        if next == route::Next::Return {
            if attempt > 0 {
                answer.served_by(route.clone());
            }
            return answer.fail(denial).into_response();
        }
        attempt += 1;
        if k < fallbacks.len() {
            metrics::counter!("gatehouse_upstream_fallbacks_total", "provider" => route.provider.to_string())
                .increment(1);
            tracing::info!(request_id = %id_text, from = %route.provider, to = %fallbacks[k].provider, "falling back to the next deployment");
            k += 1;
            continue;
        }
        // every deployment failed this round
        let retries = &first.retries;
        let wait = backoff(round, denial.retry_after_secs);
        if round >= retries.max || Instant::now() + wait >= retry_deadline || !retries.withdraw() {
            answer.served_by(route.clone());
            return answer.fail(denial).into_response();
        }
        metrics::counter!("gatehouse_upstream_retries_total", "model" => first.model.to_string()).increment(1);
        tracing::info!(request_id = %id_text, round = round + 1, wait_ms = wait.as_millis() as u64, "every deployment failed: retrying");
        tokio::time::sleep(wait).await;
        (k, round) = (0, round + 1);
    };
    if attempt > 0 {
        answer.served_by(route.clone());
    }
    answered(rt.clone(), resp, up, answer, &route, req.stream, &id_text, client).await
}

/// The earlier of a deadline and the client's, if it gave one.
fn earliest(at: Instant, client: Option<Instant>) -> Instant {
    client.map_or(at, |c| c.min(at))
}

/// Full jitter: uniform in [0, min(2 s, 100 ms x 2^round)], and never sooner than a provider's
/// `Retry-After`.
fn backoff(round: u8, retry_after_secs: Option<u32>) -> Duration {
    let cap = Duration::from_millis(100u64.saturating_mul(1 << round.min(5))).min(Duration::from_secs(2));
    let jitter = Duration::from_millis(fastrand::u64(0..=u64::try_from(cap.as_millis()).unwrap_or(2000)));
    jitter.max(Duration::from_secs(u64::from(retry_after_secs.unwrap_or(0))))
}

/// One attempt at one deployment, up to its response headers. A failure says what kind it
/// was (for the failure matrix) and what the caller is told if it is the last.
async fn try_deployment<'a>(
    rt: &'a Runtime,
    req: &mut ApiRequest,
    route: &Route,
    attempt: u32,
    answer: &Answer,
    id_text: &str,
    client: Option<Instant>,
) -> Result<(reqwest::Response, &'a Upstream), (route::Failure, Denial)> {
    let timed_out = || (route::Failure::Deadline, Denial::new(DenyCode::UpstreamTimeout));
    let now = Instant::now();
    if client.is_some_and(|c| c <= now) {
        return Err(timed_out());
    }
    let internal = || (route::Failure::Connect, Denial::new(DenyCode::Internal));
    let Target::Upstream(i) = route.target else { return Err(internal()) };
    let Some(up) = rt.upstreams.get(i) else { return Err(internal()) };
    // the deployment's own upstream quota: a request it has no room for is not sent
    if let Err(wait) = route::within_quota(&rt.gates.limits.backend.limits, route, req).await {
        tracing::info!(request_id = %id_text, provider = %up.name, "deployment quota spent; not sent");
        let secs = u32::try_from(wait.as_secs().max(1)).unwrap_or(u32::MAX);
        return Err((route::Failure::Quota, Denial::new(DenyCode::UpstreamRateLimited).retry_after(secs)));
    }
    let family = up.family;
    let provider_model = &*route.provider_model;
    let body = if attempt == 0 {
        // the route gate wrote the body of a provider of another API family; fail closed if it
        // ever did not
        if family != Family::OpenAi && req.translated.is_none() {
            return Err(internal());
        }
        req.upstream_body(provider_model)
    } else if family == Family::OpenAi && req.origin.is_none() {
        req.openai_body(provider_model)
    } else {
        match request_for(req.body(), req.origin.as_deref(), family, provider_model) {
            Ok(b) => Bytes::from(serde_json::to_vec(&b).unwrap_or_default()),
            Err(e) => return Err((route::Failure::Untranslatable, e.denial())),
        }
    };
    let started = Instant::now();
    let call = Call { endpoint: req.endpoint, model: provider_model, stream: req.stream, request_id: id_text };
    let send = up.request(call, body, answer.principal()).send();
    // the deployment's first-byte timeout, or the client's deadline if that comes first (then
    // it is not the deployment's failure)
    let own = started + route.first_byte_timeout.unwrap_or(up.first_byte_timeout);
    let wait = earliest(own, client);
    let resp = match tokio::time::timeout_at(wait.into(), send).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::warn!(request_id = %id_text, provider = %up.name, connect = e.is_connect(), timeout = e.is_timeout(), "provider request failed");
            return Err(if e.is_timeout() {
                (route::Failure::FirstByteTimeout, Denial::new(DenyCode::UpstreamTimeout))
            } else {
                (route::Failure::Connect, Denial::new(DenyCode::UpstreamError))
            });
        }
        Err(_) if wait < own => {
            tracing::info!(request_id = %id_text, provider = %up.name, "the client's deadline passed before the provider answered");
            return Err(timed_out());
        }
        Err(_) => {
            tracing::warn!(request_id = %id_text, provider = %up.name, "provider did not answer before the first-byte timeout");
            return Err((route::Failure::FirstByteTimeout, Denial::new(DenyCode::UpstreamTimeout)));
        }
    };
    metrics::histogram!("gatehouse_upstream_first_byte_seconds", "provider" => up.name.to_string())
        .record(started.elapsed().as_secs_f64());
    let status = resp.status();
    if !status.is_success() {
        // The provider's body is not read into anything we return; its status is logged.
        tracing::warn!(request_id = %id_text, provider = %up.name, status = status.as_u16(), "provider refused the request");
        let mut d = Denial::new(refusal_for_status(status.as_u16()));
        if let Some(s) = retry_after(resp.headers()) {
            d = d.retry_after(s);
        }
        return Err((route::Failure::Status(status.as_u16()), d));
    }
    Ok((resp, up))
}

/// A provider's success, whole or streamed, through the response half of the chain: within
/// the deployment's idle and total timeouts, and the client's deadline.
#[expect(clippy::too_many_arguments, reason = "one call site; the pieces of one attempt")]
async fn answered(
    rt: Arc<Runtime>,
    resp: reqwest::Response,
    up: &Upstream,
    answer: Answer,
    route: &Route,
    stream: bool,
    id_text: &str,
    client: Option<Instant>,
) -> Response {
    let family = up.family;
    let total = route.max_stream_duration.unwrap_or(up.max_stream_duration);
    let total = client.map_or(total, |c| total.min(c.saturating_duration_since(Instant::now())));
    let bounds = StreamBounds { idle: route.idle_timeout.unwrap_or(up.idle_timeout), max_duration: total };
    let provider_model = &*route.provider_model;
    let request_id = id_text;
    if stream {
        // Bedrock streams AWS event-stream frames; every other family streams SSE
        let media = if family == Family::Bedrock { "application/vnd.amazon.eventstream" } else { "text/event-stream" };
        let is_stream = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with(media));
        if !is_stream {
            tracing::warn!(request_id = %request_id, provider = %up.name, "provider answered a stream request without an event stream");
            return answer.fail(Denial::new(DenyCode::UpstreamError)).into_response();
        }
        let inner = resp.bytes_stream();
        if let Some(decoder) = chunk_decoder(family, id_text, provider_model, unix_now()) {
            let chunks = crate::translate::chat_chunks(inner, decoder);
            return sse_response(Body::from_stream(Inspected::new(chunks, rt.clone(), answer.stream(), bounds)));
        }
        return sse_response(Body::from_stream(Inspected::new(inner, rt.clone(), answer.stream(), bounds)));
    }
    let body = match tokio::time::timeout(total, read_limited(resp, up, bounds.idle)).await {
        Ok(Ok(b)) => b,
        Ok(Err(code)) => {
            tracing::warn!(request_id = %request_id, provider = %up.name, code = code.as_str(), "provider response unusable");
            return answer.fail(Denial::new(code)).into_response();
        }
        Err(_) => return answer.fail(Denial::new(DenyCode::UpstreamTimeout)).into_response(),
    };
    let (body, usage) = match family {
        Family::OpenAi => {
            let usage = usage_from_body(&body);
            (body, usage)
        }
        _ => match crate::translate::chat_answer(family, &body, id_text, provider_model, unix_now()) {
            Ok((body, usage)) => (body, Some(usage)),
            Err(code) => {
                tracing::warn!(request_id = %request_id, provider = %up.name, "provider answer not in its API's format");
                return answer.fail(Denial::new(code)).into_response();
            }
        },
    };
    whole(answer, body, usage).await
}

/// The whole upstream body, at most `max_response_bytes`, with no gap longer than `idle`.
async fn read_limited(mut resp: reqwest::Response, up: &Upstream, idle: Duration) -> Result<Bytes, DenyCode> {
    if resp.content_length().is_some_and(|n| n > up.max_response_bytes) {
        return Err(DenyCode::UpstreamError);
    }
    let mut buf = Vec::with_capacity(resp.content_length().map_or(8 * 1024, |n| n as usize));
    loop {
        let Ok(next) = tokio::time::timeout(idle, resp.chunk()).await else { return Err(DenyCode::UpstreamTimeout) };
        match next {
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

/// The request half of `/v1/models` (authenticate; a refusal is audited) as an extractor, so
/// both listing handlers start from what the caller may see.
struct Listed {
    rt: Arc<Runtime>,
    listing: Listing,
}

impl FromRequestParts<AppState> for Listed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut http::request::Parts, app: &AppState) -> Result<Listed, Response> {
        let id = parts.extensions.get::<RequestId>().cloned().unwrap_or_else(RequestId::generate);
        let cx = request_cx(id, parts);
        let rt = app.runtime.load_full();
        match admit_listing(&rt.gates, cx).await {
            Ok(listing) => Ok(Listed { rt, listing }),
            Err(d) => Err(d.into_response()),
        }
    }
}

/// Only the models this credential may use; others do not exist for it.
async fn list_models(Listed { rt, listing }: Listed) -> Response {
    let data: Vec<_> = rt
        .gates
        .table
        .models()
        .iter()
        .filter(|e| listing.may_use(&e.route.model))
        .map(|e| model_json(&e.route.model, &e.route.provider))
        .collect();
    Json(json!({"object": "list", "data": data})).into_response()
}

async fn get_model(Path(model): Path<String>, Listed { rt, listing }: Listed) -> Response {
    match rt.gates.table.resolve(&model) {
        Some(e) if e.route.model.as_ref() == model && listing.may_use(&e.route.model) => {
            Json(model_json(&e.route.model, &e.route.provider)).into_response()
        }
        _ => listing.not_found().into_response(),
    }
}

async fn readyz(State(app): State<AppState>) -> Response {
    gatehouse_http::ready(&app.store).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_times_read_like_openais() {
        assert_eq!(reset_text(Duration::from_millis(250)), "250ms");
        assert_eq!(reset_text(Duration::from_secs(6)), "6s");
        assert_eq!(reset_text(Duration::from_millis(1500)), "1.5s");
        assert_eq!(reset_text(Duration::from_millis(60_010)), "60.01s");
    }
}
