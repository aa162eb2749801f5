//! To an upstream: the route's deployments in order (fallbacks, retries, hedging, each
//! attempt's timeouts and quota), then the chosen answer through the response half of the
//! chain (docs/ROUTING.md). Nothing reaches the client before one attempt's success status
//! is chosen, so no answer is ever spliced or repeated.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use gatehouse_core::{Denial, DenyCode, Route, Target};
use gatehouse_gates::credentials::Opened;
use gatehouse_gates::{Answer, route};
use gatehouse_providers::chat::{Family, chunk_decoder, request_for};
use gatehouse_providers::{ApiRequest, usage_from_body};
use http::header;

use crate::handlers::{sse_response, unix_now, whole};
use crate::stream::{Inspected, StreamBounds};
use crate::upstream::{Call, refusal_for_status, retry_after};
use crate::{Runtime, Upstream};

/// To the route's deployments in order: the first, then each fallback while the failure is
/// one another deployment may not have; when every deployment failed, another round after a
/// full-jitter backoff while the model's retries, its retry budget and the deadline allow
/// (docs/ROUTING.md), all before the client's deadline when it gave one. Nothing has reached
/// the client before a response is chosen, so a fallback or retry never splices or repeats an
/// answer.
pub(crate) async fn forward(rt: Arc<Runtime>, mut req: ApiRequest, mut answer: Answer, first: Arc<Route>) -> Response {
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
    // hedging: a whole answer, a second deployment to ask, and enough answers to know when
    // (the model's own: a stand-in model is tried only when every one of them failed)
    let hedge_after = match (&first.hedge, req.stream, fallbacks.first()) {
        (Some(h), false, Some(second)) if second.model == first.model => h.delay(),
        _ => None,
    };
    let (mut k, mut round, mut attempt) = (0usize, 0u8, 0u32);
    let (resp, up, route) = loop {
        let route = if k == 0 { &first } else { &fallbacks[k - 1] };
        let tried = match hedge_after.filter(|_| k == 0 && round == 0) {
            Some(after) => hedged(&rt, &mut req, [&first, &fallbacks[0]], after, &answer, &id_text, client).await,
            None => try_deployment(&rt, &mut req, route, attempt, &answer, &id_text, client)
                .await
                .map(|(r, u)| (r, u, 0))
                .map_err(|(f, d)| (f, d, 0)),
        };
        // a hedge that ended on the second deployment tried both: go on from the second
        let i = match &tried {
            Ok((_, _, i)) | Err((_, _, i)) => *i,
        };
        if i == 1 {
            (k, attempt) = (1, 1);
        }
        let route = if k == 0 { route } else { &fallbacks[k - 1] };
        let (kind, denial) = match tried {
            // its breaker hears how it went once the answer is read (`answered`)
            Ok((resp, up, _)) => break (resp, up, route.clone()),
            Err((f, d, _)) => (f, d),
        };
        let next = answer.attempt_failed(route, kind);
        // any failure that ends it releases the hold: the provider answered nothing billable;
        // the audit names the deployment that failed last
        if next == route::Next::Return {
            if attempt > 0 {
                answer.served_by(route.clone());
            }
            note_credential(&rt, &mut answer, route);
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
            note_credential(&rt, &mut answer, route);
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
    note_credential(&rt, &mut answer, &route);
    let reveal = answer.reveals_routing();
    let mut resp = answered(rt.clone(), resp, up, answer, &route, req.stream, &id_text, client).await;
    if reveal {
        // names only: the caller may see which model and provider answered, never more
        for (name, value) in [("x-gatehouse-model", &route.model), ("x-gatehouse-provider", &route.provider)] {
            if let Ok(v) = http::HeaderValue::from_str(value) {
                resp.headers_mut().insert(http::HeaderName::from_static(name), v);
            }
        }
    }
    resp
}

/// The stored credential presented to the deployment that answered (or failed last), by id and
/// version, for the audit and the usage ledger (never the value).
fn note_credential(rt: &Runtime, answer: &mut Answer, route: &Route) {
    if let Some(o) = stored_credential(rt, answer, route) {
        answer.presented_credential(format!("{}:v{}", o.id, o.version).into());
    }
}

/// The tenant's own stored credential for `route`'s provider, if it has one and the model is
/// not served with the caller's own key.
fn stored_credential(rt: &Runtime, answer: &Answer, route: &Route) -> Option<Arc<Opened>> {
    if route.caller_key {
        return None;
    }
    answer.principal().and_then(|p| rt.credentials.resolve(p.org, p.project, &route.provider))
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

/// An attempt's outcome: the response (with the deployment and which of the attempted it was),
/// or the failure (its kind for the failure matrix, what the caller is told if it is the last,
/// and which it was).
type Tried<'a> = Result<(reqwest::Response, &'a Upstream, usize), (route::Failure, Denial, usize)>;

fn internal() -> (route::Failure, Denial) {
    (route::Failure::Connect, Denial::new(DenyCode::Internal))
}

/// The upstream a deployment is on.
fn upstream_of<'a>(rt: &'a Runtime, route: &Route) -> Result<&'a Upstream, (route::Failure, Denial)> {
    match route.target {
        Target::Upstream(i) => rt.upstreams.get(i).ok_or_else(internal),
        Target::Mock => Err(internal()),
    }
}

/// The body for `route`'s deployment: the first attempt's as the route gate wrote it, a later
/// one's written for its deployment's API family (or untranslatable).
fn body_for(
    req: &mut ApiRequest,
    family: Family,
    route: &Route,
    attempt: u32,
) -> Result<Bytes, (route::Failure, Denial)> {
    let provider_model = &*route.provider_model;
    if attempt == 0 {
        // the route gate wrote the body of a provider of another API family; fail closed if it
        // ever did not
        if family != Family::OpenAi && req.translated.is_none() {
            return Err(internal());
        }
        return Ok(req.upstream_body(provider_model));
    }
    if family == Family::OpenAi && req.origin.is_none() {
        return Ok(req.openai_body(provider_model));
    }
    match request_for(req.body(), req.origin.as_deref(), family, provider_model) {
        Ok(b) => Ok(Bytes::from(serde_json::to_vec(&b).unwrap_or_default())),
        Err(e) => Err((route::Failure::Untranslatable, e.denial())),
    }
}

/// One attempt at one deployment, up to its response headers.
async fn try_deployment<'a>(
    rt: &'a Runtime,
    req: &mut ApiRequest,
    route: &Route,
    attempt: u32,
    answer: &Answer,
    id_text: &str,
    client: Option<Instant>,
) -> Result<(reqwest::Response, &'a Upstream), (route::Failure, Denial)> {
    let up = upstream_of(rt, route)?;
    let body = body_for(req, up.family, route, attempt)?;
    send(rt, up, req, route, body, answer, id_text, client).await
}

/// Sends `body` to `route`'s deployment and waits for its response headers: within its quota,
/// its first-byte timeout and the client's deadline. A failure says what kind it was (for the
/// failure matrix) and what the caller is told if it is the last.
#[expect(clippy::too_many_arguments, reason = "the pieces of one attempt; two call sites")]
async fn send<'a>(
    rt: &Runtime,
    up: &'a Upstream,
    req: &ApiRequest,
    route: &Route,
    body: Bytes,
    answer: &Answer,
    id_text: &str,
    client: Option<Instant>,
) -> Result<(reqwest::Response, &'a Upstream), (route::Failure, Denial)> {
    let timed_out = || (route::Failure::Deadline, Denial::new(DenyCode::UpstreamTimeout));
    if client.is_some_and(|c| c <= Instant::now()) {
        return Err(timed_out());
    }
    // the caller's own key for a model served with it; else the tenant's own stored
    // credential for this provider, if it has one (one that does not open here is refused, not
    // replaced by a wider one)
    let stored = stored_credential(rt, answer, route);
    let key = match (route.caller_key, stored.as_ref()) {
        (true, _) => answer.caller_provider_key(),
        (false, Some(o)) => match &o.secret {
            Some(s) => Some(s),
            None => return Err((route::Failure::Credential, Denial::new(DenyCode::Unavailable))),
        },
        (false, None) => None,
    };
    // the deployment's own upstream quota: a request it has no room for is not sent
    if let Err(wait) = route::within_quota(&rt.gates.limits.backend.limits, route, req).await {
        tracing::info!(request_id = %id_text, provider = %up.name, "deployment quota spent; not sent");
        let secs = u32::try_from(wait.as_secs().max(1)).unwrap_or(u32::MAX);
        return Err((route::Failure::Quota, Denial::new(DenyCode::UpstreamRateLimited).retry_after(secs)));
    }
    let started = Instant::now();
    let traceparent = answer.traceparent();
    let call = Call {
        endpoint: req.endpoint,
        model: &route.provider_model,
        stream: req.stream,
        request_id: id_text,
        traceparent: traceparent.as_deref(),
        connect_timeout: route.connect_timeout,
    };
    let send = up.request(call, body, answer.principal(), key).send();
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
    let first_byte = started.elapsed();
    metrics::histogram!("gatehouse_upstream_first_byte_seconds", "provider" => up.name.to_string())
        .record(first_byte.as_secs_f64());
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
    if let Some(h) = route.hedge.as_ref() {
        h.record(first_byte);
    }
    Ok((resp, up))
}

/// Hedging (docs/ROUTING.md): the first deployment is asked; if it has not answered (its
/// headers) after `after`, the second is asked too, and the first success wins: the other
/// request is dropped, its connection closed, and nothing of it is charged or relayed. A
/// failure waits for the other; a failure that would fail everywhere ends it. Index 1 in the
/// outcome means both were tried.
async fn hedged<'a>(
    rt: &'a Runtime,
    req: &mut ApiRequest,
    pair: [&Route; 2],
    after: Duration,
    answer: &Answer,
    id_text: &str,
    client: Option<Instant>,
) -> Tried<'a> {
    let at = |i: usize| move |(f, d): (route::Failure, Denial)| (f, d, i);
    let up0 = upstream_of(rt, pair[0]).map_err(at(0))?;
    let body0 = body_for(req, up0.family, pair[0], 0).map_err(at(0))?;
    // the second's body is written now: the race cannot wait for it, and `req` is shared below
    let second = upstream_of(rt, pair[1]).and_then(|up| Ok((up, body_for(req, up.family, pair[1], 1)?)));
    let req = &*req;
    let first = send(rt, up0, req, pair[0], body0, answer, id_text, client);
    tokio::pin!(first);
    let Ok((up1, body1)) = second else {
        return first.await.map(|(r, u)| (r, u, 0)).map_err(at(0));
    };
    tokio::select! {
        r = &mut first => return r.map(|(resp, up)| (resp, up, 0)).map_err(at(0)),
        () = tokio::time::sleep(after) => {}
    }
    metrics::counter!("gatehouse_upstream_hedges_total", "model" => pair[0].model.to_string()).increment(1);
    tracing::info!(request_id = %id_text, first = %pair[0].provider, second = %pair[1].provider, after_ms = after.as_millis() as u64, "hedging: asking a second deployment");
    let second = send(rt, up1, req, pair[1], body1, answer, id_text, client);
    tokio::pin!(second);
    let mut failed: [Option<(route::Failure, Denial)>; 2] = [None, None];
    loop {
        let (i, outcome) = tokio::select! {
            r = &mut first, if failed[0].is_none() => (0, r),
            r = &mut second, if failed[1].is_none() => (1, r),
        };
        match outcome {
            Ok((resp, up)) => {
                // the other one, if it failed first, failed as a deployment
                if let Some((f, _)) = failed[1 - i].take() {
                    answer.attempt_failed(pair[1 - i], f);
                }
                metrics::counter!("gatehouse_upstream_hedge_wins_total", "provider" => pair[i].provider.to_string())
                    .increment(1);
                return Ok((resp, up, i));
            }
            Err((f, d)) if route::after(f) == route::Next::Return => return Err((f, d, i)),
            Err(e) => failed[i] = Some(e),
        }
        if let [Some(_), Some(_)] = &failed {
            // both failed: the first is heard here, the second by the caller, who goes on from it
            if let [Some((f0, _)), Some((f1, d1))] = failed {
                answer.attempt_failed(pair[0], f0);
                return Err((f1, d1, 1));
            }
        }
    }
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
            route::deployment_failed(route, answer.audit());
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
            route::deployment_failed(route, answer.audit());
            return answer.fail(Denial::new(code)).into_response();
        }
        Err(_) => {
            route::deployment_failed(route, answer.audit());
            return answer.fail(Denial::new(DenyCode::UpstreamTimeout)).into_response();
        }
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
                route::deployment_failed(route, answer.audit());
                return answer.fail(Denial::new(code)).into_response();
            }
        },
    };
    answer.attempt_answered(route);
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
