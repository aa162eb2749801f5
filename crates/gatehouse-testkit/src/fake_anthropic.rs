//! A fake Anthropic Messages API over real HTTP: `POST /v1/messages` with `x-api-key` and
//! `anthropic-version` checked, whole answers and event streams in the documented wire
//! format (usage with prompt-cache counts), Anthropic's error bodies, and scripted tool use
//! and failures.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::Recorded;

/// The text of every answer.
pub const ANTHROPIC_REPLY: &str = "Hello from the fake Anthropic provider. anthropic-canary-7b2c";
/// Usage every answer reports: cache reads and writes apart from `input_tokens`, as the API
/// does (so the prompt is 11 + 7 + 2 = 20 tokens).
pub const ANTHROPIC_USAGE: (u64, u64, u64, u64) = (11, 7, 2, 6);

/// How the fake answers the next requests.
#[derive(Clone, Debug, Default)]
pub enum AnthropicBehavior {
    #[default]
    Ok,
    /// The answer ends in a `tool_use` block with this input (JSON text), after the text.
    ToolUse(String),
    /// This status with Anthropic's error body (`overloaded_error` for 529, ...).
    Status(u16),
}

struct Shared {
    key: String,
    behavior: ArcSwap<AnthropicBehavior>,
    last: ArcSwap<Option<Recorded>>,
}

pub struct FakeAnthropic {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeAnthropic {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeAnthropic {
    /// Starts on 127.0.0.1:0, accepting `key` only.
    pub async fn spawn(key: &str) -> FakeAnthropic {
        let listener = match TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(e) => panic!("fake anthropic failed to start: {e}"),
        };
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("no address: {e}"));
        let shared = Arc::new(Shared {
            key: key.to_owned(),
            behavior: ArcSwap::from_pointee(AnthropicBehavior::Ok),
            last: ArcSwap::from_pointee(None),
        });
        let app = Router::new().route("/v1/messages", post(messages)).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app.into_make_service()).await;
        });
        FakeAnthropic { addr, shared, task }
    }

    /// The base URL, e.g. `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn set(&self, b: AnthropicBehavior) {
        self.shared.behavior.store(Arc::new(b));
    }

    pub fn last_request(&self) -> Option<Recorded> {
        (**self.shared.last.load()).clone()
    }
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    (status, axum::Json(json!({"type": "error", "error": {"type": kind, "message": message}}))).into_response()
}

async fn messages(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    s.last.store(Arc::new(Some(Recorded {
        path: "/v1/messages".to_owned(),
        headers: headers.clone(),
        body: v.clone(),
        raw: body.clone(),
    })));
    if headers.get("x-api-key").and_then(|k| k.to_str().ok()) != Some(s.key.as_str()) {
        return error(StatusCode::UNAUTHORIZED, "authentication_error", "invalid x-api-key");
    }
    if !headers.contains_key("anthropic-version") {
        return error(StatusCode::BAD_REQUEST, "invalid_request_error", "anthropic-version header is required");
    }
    if !v["model"].is_string() || !v["max_tokens"].is_u64() || !v["messages"].is_array() {
        return error(StatusCode::BAD_REQUEST, "invalid_request_error", "model, max_tokens and messages are required");
    }
    let tool = match &**s.behavior.load() {
        AnthropicBehavior::Status(code) => {
            let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let kind = match code {
                429 => "rate_limit_error",
                529 => "overloaded_error",
                _ => "api_error",
            };
            return error(status, kind, "scripted failure");
        }
        AnthropicBehavior::ToolUse(input) => Some(serde_json::from_str::<Value>(input).unwrap_or_else(|_| json!({}))),
        AnthropicBehavior::Ok => None,
    };
    render(v["model"].as_str().unwrap_or_default(), ANTHROPIC_REPLY, tool.as_ref(), v["stream"] == json!(true))
}

/// The fake provider's Messages door: the same checks, answering as its behaviour says.
pub(crate) async fn on_provider(
    State(s): State<Arc<crate::fake::Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let v = crate::fake::record(&s, "/v1/messages", &headers, &body);
    if headers.get("x-api-key").is_none_or(|k| k.is_empty()) || headers.contains_key(header::AUTHORIZATION) {
        return error(StatusCode::UNAUTHORIZED, "authentication_error", "invalid x-api-key");
    }
    if !headers.contains_key("anthropic-version") {
        return error(StatusCode::BAD_REQUEST, "invalid_request_error", "anthropic-version header is required");
    }
    if !v["model"].is_string() || !v["max_tokens"].is_u64() || !v["messages"].is_array() {
        return error(StatusCode::BAD_REQUEST, "invalid_request_error", "model, max_tokens and messages are required");
    }
    let (text, tool) = match (**s.behavior.load()).clone() {
        crate::Behavior::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut resp = error(status, "rate_limit_error", crate::UPSTREAM_SECRET_IN_ERRORS);
            if code == 429 {
                resp.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("7"));
            }
            return resp;
        }
        crate::Behavior::Reply { text, tool_args, .. } => {
            (text, tool_args.map(|a| serde_json::from_str::<Value>(&a).unwrap_or_else(|_| json!({}))))
        }
        _ => (crate::FAKE_REPLY.to_owned(), None),
    };
    render(v["model"].as_str().unwrap_or_default(), &text, tool.as_ref(), v["stream"] == json!(true))
}

/// A Messages answer with this text (and a `lookup` tool call with this input), whole or as
/// the documented event stream.
fn render(model: &str, text: &str, tool: Option<&Value>, stream: bool) -> Response {
    let (input, read, write, output) = ANTHROPIC_USAGE;
    let stop = if tool.is_some() { "tool_use" } else { "end_turn" };
    if !stream {
        let mut content = vec![json!({"type": "text", "text": text})];
        if let Some(input) = tool {
            content.push(json!({"type": "tool_use", "id": "toolu_fake1", "name": "lookup", "input": input}));
        }
        return axum::Json(json!({
            "id": "msg_fake1", "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": stop, "stop_sequence": null,
            "usage": {"input_tokens": input, "output_tokens": output,
                      "cache_read_input_tokens": read, "cache_creation_input_tokens": write},
        }))
        .into_response();
    }
    let mut events = vec![
        (
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_fake1", "type": "message",
            "role": "assistant", "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": input, "output_tokens": 1, "cache_read_input_tokens": read,
                      "cache_creation_input_tokens": write}}}),
        ),
        ("ping", json!({"type": "ping"})),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
    ];
    for piece in text.split_inclusive(' ') {
        events.push((
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": piece}}),
        ));
    }
    events.push(("content_block_stop", json!({"type": "content_block_stop", "index": 0})));
    if let Some(input) = tool {
        events.push((
            "content_block_start",
            json!({"type": "content_block_start", "index": 1,
            "content_block": {"type": "tool_use", "id": "toolu_fake1", "name": "lookup", "input": {}}}),
        ));
        let text = input.to_string();
        let (a, b) = text.split_at(text.len() / 2);
        for part in [a, b] {
            events.push((
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": part}}),
            ));
        }
        events.push(("content_block_stop", json!({"type": "content_block_stop", "index": 1})));
    }
    events.push((
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
        "usage": {"output_tokens": output}}),
    ));
    events.push(("message_stop", json!({"type": "message_stop"})));
    let frames = events
        .into_iter()
        .map(|(name, data)| Ok::<_, Infallible>(Bytes::from(format!("event: {name}\ndata: {data}\n\n"))));
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from_stream(futures_util::stream::iter(frames)))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
