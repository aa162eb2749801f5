//! Data-plane handlers: parse the transport, call the chain ([`admit`]), move the bytes to the
//! mock or an upstream, finish through the chain's [`Answer`], write the response. Policy and
//! metering live in `gatehouse-gates`; every exit path is finished there exactly once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json};
use bytes::Bytes;
use futures_util::StreamExt;
use gatehouse_core::{Denial, DenyCode, Presented, Rates, RequestCx, RequestId, Target};
use gatehouse_gates::meter::AuditHook;
use gatehouse_gates::{Admitted, Answer, Listing, admit, admit_listing};
use gatehouse_providers::{ApiRequest, Endpoint, mock};
use http::{HeaderValue, header};

use serde_json::json;

use crate::stream::{Inspected, StreamBounds};
use crate::{AppState, Runtime};
use gatehouse_http::read_body;

/// The data-plane router (without transport layers).
pub fn router(state: AppState) -> Router {
    use crate::cors::preflight;
    Router::new()
        .route("/v1/chat/completions", post(chat_completions).options(preflight))
        .route("/v1/embeddings", post(embeddings).options(preflight))
        .route("/v1/messages", post(crate::anthropic::messages).options(preflight))
        .route("/v1/messages/count_tokens", post(crate::anthropic::count_tokens).options(preflight))
        .route("/v1/models", get(list_models).options(preflight))
        .route("/v1/models/{model}", get(get_model).options(preflight))
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

/// A request's context from its head: the presented credential, the peer, the client's
/// timeout hint and (while tracing is on) its trace context.
pub(crate) fn request_cx(id: RequestId, parts: &http::request::Parts, audit: &AuditHook) -> RequestCx {
    let mut cx = RequestCx::new(id, credential(parts));
    cx.trace = audit.trace(|| parts.headers.get("traceparent").map(HeaderValue::as_bytes));
    cx.source = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    cx.timeout_hint = timeout_hint(&parts.headers);
    cx.debug_routing = parts.headers.get("x-gatehouse-debug").is_some_and(|v| v.as_bytes() == b"routing");
    if let Some(v) = parts.headers.get(header::CACHE_CONTROL) {
        cx.cache_control = gatehouse_core::CacheControl::parse(v.as_bytes());
    }
    // a caller's own provider key: bounded, printable, held as a secret (never logged)
    cx.caller_provider_key = parts
        .headers
        .get("x-gatehouse-provider-key")
        .filter(|v| (1..=8192).contains(&v.len()) && v.as_bytes().iter().all(|b| b.is_ascii_graphic()))
        .and_then(|v| v.to_str().ok())
        .map(|v| secrecy::SecretString::from(v.to_owned()));
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
    let cx = request_cx(id, &parts, &rt.gates.audit);
    let limit = rt.limits.max_body_bytes.get() as usize;
    let origin = crate::cors::origin_of(&parts.headers);
    match admit(&rt.gates, cx, endpoint, read_body(&parts.headers, body, "application/json", limit)).await {
        Ok(Admitted { request, answer }) => {
            let (rates, allowed) =
                (answer.rates(), origin.as_ref().is_some_and(|o| answer.allows_origin(o.as_bytes())));
            with_caller_headers(dispatch(rt, request, answer).await, rates, origin, allowed)
        }
        Err(stopped) => {
            let allowed = origin.as_ref().is_some_and(|o| stopped.allows_origin(o.as_bytes()));
            with_caller_headers(stopped.denial.into_response(), stopped.rates, origin, allowed)
        }
    }
}

/// To the response cache's kept answer, or the deployment the route gate chose: the built-in
/// mock, or an upstream.
pub(crate) async fn dispatch(rt: Arc<Runtime>, request: ApiRequest, answer: Answer) -> Response {
    if let Some(hit) = answer.cached().cloned() {
        let mut resp = if hit.stream {
            let inner = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(hit.body.clone())]);
            let bounds = StreamBounds { idle: Duration::from_secs(60), max_duration: Duration::from_secs(600) };
            sse_response(Body::from_stream(Inspected::new(inner, rt, answer.stream(), bounds)))
        } else {
            whole(answer, hit.body.clone(), hit.usage).await
        };
        resp.headers_mut().insert(http::HeaderName::from_static("x-gatehouse-cache"), HeaderValue::from_static("hit"));
        return resp;
    }
    let Some(route) = answer.route().cloned() else {
        // admit() sets a route on success; fail closed if that ever breaks
        return answer.fail(Denial::new(DenyCode::Internal)).into_response();
    };
    match route.target {
        Target::Mock => serve_mock(rt, &request, answer).await,
        Target::Upstream(_) => crate::forward::forward(rt, request, answer, route).await,
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

/// The caller-facing headers of an answer from the chain: its rate limits, and CORS for a
/// browser page of an origin the caller's project allows.
pub(crate) fn with_caller_headers(
    resp: Response,
    rates: Rates,
    origin: Option<HeaderValue>,
    allowed: bool,
) -> Response {
    let mut resp = with_rate_headers(resp, rates);
    crate::cors::answer(&mut resp, origin, allowed);
    resp
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

pub(crate) fn json_response(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}

pub(crate) fn sse_response(body: Body) -> Response {
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
            // word by word, a pause between words (`[mock] stream_delay_ms`): what a model's
            // stream looks like to someone trying the quick start
            let delay = rt.mock_stream_delay;
            let inner = futures_util::stream::iter(frames.into_iter().enumerate()).then(move |(i, frame)| async move {
                if i > 0 && !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                Ok::<_, std::convert::Infallible>(frame)
            });
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
pub(crate) async fn whole(answer: Answer, body: Bytes, usage: Option<gatehouse_providers::Usage>) -> Response {
    match answer.whole(body, usage).await {
        Ok(body) => json_response(body),
        Err(d) => d.into_response(),
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
    /// The request's browser origin, and whether the caller's project lets it read the answer.
    origin: Option<HeaderValue>,
    allowed: bool,
}

impl FromRequestParts<AppState> for Listed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut http::request::Parts, app: &AppState) -> Result<Listed, Response> {
        let id = parts.extensions.get::<RequestId>().cloned().unwrap_or_else(RequestId::generate);
        let rt = app.runtime.load_full();
        let cx = request_cx(id, parts, &rt.gates.audit);
        let origin = crate::cors::origin_of(&parts.headers);
        match admit_listing(&rt.gates, cx).await {
            Ok(listing) => {
                let allowed = origin.as_ref().is_some_and(|o| listing.allows_origin(o.as_bytes()));
                Ok(Listed { rt, listing, origin, allowed })
            }
            Err(d) => Err(d.into_response()),
        }
    }
}

/// Only the models this credential may use; others do not exist for it.
async fn list_models(Listed { rt, listing, origin, allowed }: Listed) -> Response {
    let data: Vec<_> = rt
        .gates
        .table
        .models()
        .iter()
        .filter(|e| listing.may_use(&e.route.model))
        .map(|e| model_json(&e.route.model, &e.route.provider))
        .collect();
    let mut resp = Json(json!({"object": "list", "data": data})).into_response();
    crate::cors::answer(&mut resp, origin, allowed);
    resp
}

async fn get_model(Path(model): Path<String>, Listed { rt, listing, origin, allowed }: Listed) -> Response {
    let mut resp = match rt.gates.table.resolve(&model) {
        Some(e) if e.route.model.as_ref() == model && listing.may_use(&e.route.model) => {
            Json(model_json(&e.route.model, &e.route.provider)).into_response()
        }
        _ => listing.not_found().into_response(),
    };
    crate::cors::answer(&mut resp, origin, allowed);
    resp
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
