//! Anthropic's Messages API, both ways.
//!
//! In: `POST /v1/messages`. The request is read into the internal chat shape and goes through
//! the chain as the chat request it is (every gate, the same route table: any model the caller
//! may use is reachable from either door); the answer, the stream and every refusal are
//! written back in the Messages API's format.
//!
//! Out (an `anthropic` provider) is in [`crate::translate`], with the other families.

use axum::Extension;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use gatehouse_core::{Denial, DenyCode, RequestId};
use gatehouse_gates::{Admitted, Incoming, Lookup, admit, admit_lookup};
use gatehouse_http::read_body;
use gatehouse_providers::chat::{Origin, anthropic, openai};
use gatehouse_providers::{ApiRequest, Endpoint, SseEvent, SseScanner, check_depth};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use crate::AppState;
use crate::handlers::{dispatch, request_cx, with_caller_headers};

/// Our own answers and refusals are small; a provider's whole answer is bounded upstream.
const MAX_TRANSLATED_BYTES: usize = 64 * 1024 * 1024;

pub async fn messages(State(app): State<AppState>, Extension(id): Extension<RequestId>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let rt = app.runtime.load_full();
    let cx = request_cx(id, &parts, &rt.gates.audit);
    let origin = crate::cors::origin_of(&parts.headers);
    let limit = rt.limits.max_body_bytes.get() as usize;
    let depth = rt.limits.max_json_depth.get();
    let body = async move {
        let bytes = read_body(&parts.headers, body, "application/json", limit).await?;
        as_chat_request(&bytes, depth)
    };
    match admit(&rt.gates, cx, Endpoint::ChatCompletions, body).await {
        Ok(Admitted { request, answer }) => {
            let (rates, allowed) =
                (answer.rates(), origin.as_ref().is_some_and(|o| answer.allows_origin(o.as_bytes())));
            let (id, model) = (answer.request_id().to_string(), request.model.clone());
            let resp = to_messages(dispatch(rt, request, answer).await, &id, &model).await;
            with_caller_headers(resp, rates, origin, allowed)
        }
        Err(stopped) => {
            let allowed = origin.as_ref().is_some_and(|o| stopped.allows_origin(o.as_bytes()));
            with_caller_headers(error(&stopped.denial), stopped.rates, origin, allowed)
        }
    }
}

/// `POST /v1/messages/count_tokens`: the prompt's input tokens as the gateway estimates them
/// for the model's provider (the estimate the limits gate reserves by). Identity, the chat
/// scope and the model's visibility are checked and the call is audited; nothing reaches a
/// provider and nothing is spent.
pub async fn count_tokens(State(app): State<AppState>, Extension(id): Extension<RequestId>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let rt = app.runtime.load_full();
    let cx = request_cx(id, &parts, &rt.gates.audit);
    let lookup = match admit_lookup(&rt.gates, cx, Lookup::CountTokens).await {
        Ok(l) => l,
        Err(d) => return error(&d),
    };
    let limit = rt.limits.max_body_bytes.get() as usize;
    let parsed = async {
        let bytes = read_body(&parts.headers, body, "application/json", limit).await?;
        // the same body as a message, less the output cap it does not need
        let chat = as_chat_request_with(&bytes, rt.limits.max_json_depth.get(), |b| {
            b.entry("max_tokens").or_insert(Value::from(1));
        })?;
        ApiRequest::parse(Endpoint::ChatCompletions, &chat.bytes, rt.gates.parse.bounds).map_err(|e| e.denial())
    };
    let req = match parsed.await {
        Ok(r) => r,
        Err(d) => return error(&lookup.refuse(d)),
    };
    let Some(entry) = rt.gates.table.resolve(&req.model).filter(|e| lookup.may_use(&e.route.model)) else {
        return error(&lookup.not_found());
    };
    let tokens = gatehouse_gates::tokens::prompt_estimate(&req, &entry.route.provider_model);
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        json!({"input_tokens": tokens}).to_string(),
    )
        .into_response()
}

/// A Messages request as the Chat Completions request the chain checks, with what only the
/// Messages API can say (`thinking`, `top_k`, tool-answer errors, cache marks) beside it for
/// the route gate. The depth is bounded before anything is parsed; the chain bounds the rest
/// (size, message count) on the result.
fn as_chat_request(bytes: &[u8], max_depth: u32) -> Result<Incoming, Denial> {
    as_chat_request_with(bytes, max_depth, |_| {})
}

fn as_chat_request_with(
    bytes: &[u8],
    max_depth: u32,
    amend: impl FnOnce(&mut serde_json::Map<String, Value>),
) -> Result<Incoming, Denial> {
    check_depth(bytes, max_depth).map_err(|e| e.denial())?;
    let Ok(Value::Object(mut body)) = serde_json::from_slice::<Value>(bytes) else {
        return Err(Denial::new(DenyCode::InvalidJson));
    };
    amend(&mut body);
    let mut shape = anthropic::request_from(&body).map_err(|e| e.denial())?;
    let origin = Origin::split(&mut shape).map(Box::new);
    let chat = openai::request_to(&shape, &shape.model).map_err(|e| e.denial())?;
    Ok(Incoming { bytes: Bytes::from(serde_json::to_vec(&chat).unwrap_or_default()), origin })
}

/// The chain's answer (Chat Completions: whole, streamed, or a refusal) in the Messages format.
async fn to_messages(resp: Response, id: &str, model: &str) -> Response {
    let (parts, body) = resp.into_parts();
    let sse = parts.headers.get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if parts.status.is_success() && sse {
        let events = translate_stream(body, anthropic::MessagesStream::new(id, model));
        let mut resp = Response::from_parts(parts, Body::from_stream(events));
        resp.headers_mut().remove(header::CONTENT_LENGTH);
        return resp;
    }
    let Ok(bytes) = axum::body::to_bytes(body, MAX_TRANSLATED_BYTES).await else {
        return error(&Denial::new(DenyCode::UpstreamError));
    };
    if parts.status.is_success() {
        return whole(&bytes);
    }
    // a refusal: ours, in OpenAI's shape, with its status and Retry-After
    let message = serde_json::from_slice::<Value>(&bytes).ok().and_then(|v| {
        let e = v.get("error")?;
        let text = e.get("message")?.as_str()?.to_owned();
        Some(match e.get("param").and_then(Value::as_str) {
            Some(p) => format!("{text} ({p})"),
            None => text,
        })
    });
    let mut out = error_body(parts.status, message.as_deref().unwrap_or("the request was refused"));
    if let Some(r) = parts.headers.get(header::RETRY_AFTER) {
        out.headers_mut().insert(header::RETRY_AFTER, r.clone());
    }
    out
}

/// A whole Chat Completions answer as a Messages answer.
fn whole(bytes: &[u8]) -> Response {
    let translated = match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(o)) => openai::response_from(&o).and_then(|r| anthropic::response_to(&r)),
        _ => Err(gatehouse_providers::Error::Answer("body")),
    };
    match translated {
        Ok(v) => {
            ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], v.to_string()).into_response()
        }
        Err(_) => error(&Denial::new(DenyCode::UpstreamError)),
    }
}

/// The chain's (already checked and metered) Chat Completions stream, event by event, as
/// Messages events. Dropping this drops the inner stream, which finishes the request.
fn translate_stream(
    body: Body,
    writer: anthropic::MessagesStream,
) -> impl futures_util::Stream<Item = Result<Bytes, std::convert::Infallible>> {
    let state = (body.into_data_stream(), SseScanner::new(gatehouse_providers::chat::MAX_EVENT_BYTES), writer, false);
    futures_util::stream::unfold(state, |(mut inner, mut scanner, mut writer, ended)| async move {
        if ended {
            return None;
        }
        let mut out = Vec::new();
        let ended = loop {
            match inner.next().await {
                Some(Ok(chunk)) => {
                    let mut failed = false;
                    let fed = scanner.feed(&chunk, |ev| match ev {
                        SseEvent::Data(d) => failed |= writer.chunk(d, &mut out).is_err(),
                        SseEvent::Done => writer.finish(&mut out),
                    });
                    if fed.is_err() || failed {
                        writer.error("api_error", "the provider's stream could not be read", &mut out);
                        break true;
                    }
                    if !out.is_empty() {
                        break false;
                    }
                }
                Some(Err(_)) => {
                    writer.error("api_error", "the stream failed", &mut out);
                    break true;
                }
                None => {
                    writer.finish(&mut out);
                    break true;
                }
            }
        };
        Some((Ok(Bytes::from(out)), (inner, scanner, writer, ended)))
    })
}

/// A refusal in Anthropic's error shape: the same status, headers (`Retry-After`) and fixed
/// message as the OpenAI ingress, nothing of the request in it.
fn error(d: &Denial) -> Response {
    let (parts, _) = d.into_response().into_parts();
    let message = match d.param {
        Some(p) => format!("{} ({p})", d.code.row().message),
        None => d.code.row().message.to_owned(),
    };
    let (_, body) = error_body(parts.status, &message).into_parts();
    Response::from_parts(parts, body)
}

/// Anthropic's error types by status (its SDKs pick the exception class by status).
fn error_body(status: StatusCode, message: &str) -> Response {
    let kind = match status.as_u16() {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 | 405 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    };
    let body = json!({"type": "error", "error": {"type": kind, "message": message}});
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body.to_string()).into_response()
}
