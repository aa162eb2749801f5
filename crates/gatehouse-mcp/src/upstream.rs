//! The provider step of an MCP message: the request to the upstream server (only the headers
//! the gateway chooses, its own credential for the server, signed identity headers) and the
//! server's answer back, JSON or an SSE stream, bounded in size and time, the answer to this
//! message filtered to what the caller may see. Notifications the server sends on the stream
//! pass through.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use gatehouse_core::{DenyCode, GateName, GateOutcome, Principal};
use gatehouse_gates::mcp::{McpServer, Use};
use gatehouse_gates::meter::Finished;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use secrecy::ExposeSecret;
use serde_json::Value;

use crate::McpState;
use crate::gateway::{Call, ENDPOINT, SESSION, json_response, open_session, rpc_code};
use crate::jsonrpc::{self, Id};
use crate::sessions::{Binding, Session};

/// What a listing's answer is narrowed to.
pub(crate) enum Filter {
    None,
    /// `tools/list`, `prompts/list`, `resources/list`, `resources/templates/list`: only what the
    /// caller may use.
    List {
        field: &'static str,
        key: &'static str,
        kind: ListKind,
    },
}

#[derive(Clone, Copy)]
pub(crate) enum ListKind {
    Tools,
    Prompts,
    Resources,
}

impl Filter {
    pub(crate) fn for_method(method: &str) -> Filter {
        let (field, key, kind) = match method {
            "tools/list" => ("tools", "name", ListKind::Tools),
            "prompts/list" => ("prompts", "name", ListKind::Prompts),
            "resources/list" => ("resources", "uri", ListKind::Resources),
            "resources/templates/list" => ("resourceTemplates", "uriTemplate", ListKind::Resources),
            _ => return Filter::None,
        };
        Filter::List { field, key, kind }
    }

    /// Narrows a result to what `principal` may use on `server`; `true` when anything was
    /// removed.
    fn apply(&self, s: &McpState, principal: &Principal, server: &str, result: &mut Value) -> bool {
        let Filter::List { field, key, kind } = self else { return false };
        let Some(items) = result.get_mut(*field).and_then(Value::as_array_mut) else { return false };
        let before = items.len();
        items.retain(|item| {
            let Some(name) = item.get(*key).and_then(Value::as_str) else { return false };
            let what = match kind {
                ListKind::Tools => Use::Tool(name),
                ListKind::Prompts => Use::Prompt(name),
                ListKind::Resources => Use::Resource(name),
            };
            s.policies.allows(principal, server, what)
        });
        items.len() != before
    }
}

pub(crate) struct Exchange {
    pub target: Arc<McpServer>,
    pub principal: Principal,
    pub bind: Binding,
    /// The gateway's session id and the session, when one was presented.
    pub session: Option<(String, Arc<Session>)>,
    pub initialize: bool,
    pub request_id: Option<Id>,
    pub filter: Filter,
    /// The guardrail session that checks the answer (a call's result, a resource, a prompt).
    pub guard: Option<gatehouse_gates::guardrails::Session>,
    /// The message's reservation (a tool's price) and ledger row: settled when the server
    /// answered the message with a result, released otherwise (dropped).
    pub hold: Option<gatehouse_gates::ledger::Hold>,
    /// The guardrail rewrote the arguments: the `Mcp-Param-*` copies of them are not sent.
    pub rewritten: bool,
    pub deadline: Instant,
}

/// Client headers the server needs to read the message (everything else stays behind: the
/// client's credential above all).
const PASSED: [&str; 4] = ["mcp-protocol-version", "mcp-method", "mcp-name", "accept"];
/// Most `Mcp-Param-*` headers passed on, and their longest value.
const MAX_PARAM_HEADERS: usize = 32;
const MAX_HEADER_VALUE: usize = 4096;

fn upstream_headers(client: &HeaderMap, params: bool) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::ACCEPT, HeaderValue::from_static("application/json, text/event-stream"));
    for name in PASSED {
        if let Some(v) = client.get(name).filter(|v| v.len() <= MAX_HEADER_VALUE) {
            h.insert(http::HeaderName::from_static(name), v.clone());
        }
    }
    // copies of arguments: only as the caller sent them, never beside rewritten ones (a server
    // that needs them then refuses the call; nothing redacted leaks through a header)
    let params = client
        .iter()
        .filter(|(n, v)| params && n.as_str().starts_with("mcp-param-") && v.len() <= MAX_HEADER_VALUE)
        .take(MAX_PARAM_HEADERS);
    for (n, v) in params {
        h.append(n.clone(), v.clone());
    }
    h
}

pub(crate) async fn forward(mut call: Call, mut ex: Exchange, client: &HeaderMap, body: Bytes) -> Response {
    let s = call.s.clone();
    let t = &ex.target;
    // IP-literal URLs skip the client's checking resolver: checked here, every time (the one
    // parse of the URL per message: the request and the signature use it)
    let Ok(url) = s.egress.validate_url(&t.url) else {
        call.cx.record(GateName::Provider, GateOutcome::Deny(DenyCode::UpstreamError));
        return fail(call, ex.request_id.as_ref(), DenyCode::UpstreamError);
    };
    let signed = t.identity_key.as_ref().and_then(|key| {
        let id = gatehouse_gates::identity_of(&ex.principal, &call.cx.request_id.to_string());
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        gatehouse_identity::sign(&t.id, key.expose_secret().as_bytes(), "POST", url.path(), &body, &id, now)
    });
    let mut rb = s.client.post(url).headers(upstream_headers(client, !ex.rewritten));
    if let Some(up) = ex.session.as_ref().and_then(|(_, x)| x.upstream.clone()) {
        rb = rb.header(SESSION, up);
    }
    if let Some((name, value)) = &t.auth {
        rb = rb.header(&**name, value.expose_secret());
    }
    for (n, v) in signed.into_iter().flatten() {
        rb = rb.header(n, v);
    }
    let sent = tokio::time::timeout_at(ex.deadline.into(), rb.body(body).send()).await;
    let resp = match sent {
        Err(_) => {
            call.cx.record(GateName::Provider, GateOutcome::Deny(DenyCode::UpstreamTimeout));
            return fail(call, ex.request_id.as_ref(), DenyCode::UpstreamTimeout);
        }
        Ok(Err(e)) => {
            tracing::info!(server = %t.id, error = %e, "MCP server unreachable");
            call.cx.record(GateName::Provider, GateOutcome::Deny(DenyCode::UpstreamError));
            return fail(call, ex.request_id.as_ref(), DenyCode::UpstreamError);
        }
        Ok(Ok(r)) => r,
    };
    let status = resp.status();
    let upstream_session = resp.headers().get(SESSION).cloned();
    let is_sse = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/event-stream"));

    // the server lost the session: so does the gateway
    if status == StatusCode::NOT_FOUND
        && let Some((sid, _)) = &ex.session
    {
        s.sessions.close(sid);
    }
    let mut session_header = None;
    if ex.initialize && status.is_success() {
        match open_session(&s, ex.bind, t, upstream_session.clone()) {
            Ok(h) => session_header = Some(h),
            Err(_) => {
                // the server opened one the caller will never use: end it there too
                if let Some(up) = upstream_session {
                    end_upstream_session(&s, t.id.clone(), up);
                }
                call.cx.record(GateName::Provider, GateOutcome::Deny(DenyCode::RateLimitExceeded));
                return fail(call, ex.request_id.as_ref(), DenyCode::RateLimitExceeded);
            }
        }
    }
    call.cx.record(GateName::Provider, GateOutcome::Pass);
    let cap = t.max_response_bytes.min(s.settings.max_response_bytes.get()) as usize;
    if status == StatusCode::ACCEPTED {
        call.finish(Finished::served(ENDPOINT, 202, None));
        return StatusCode::ACCEPTED.into_response();
    }
    if is_sse && status.is_success() {
        return stream(call, ex, resp, cap, session_header);
    }
    // a whole JSON answer (or an error status), read within the cap and the deadline
    let read = tokio::time::timeout_at(ex.deadline.into(), read_capped(resp, cap)).await;
    let bytes = match read {
        Err(_) => return fail(call, ex.request_id.as_ref(), DenyCode::UpstreamTimeout),
        Ok(Err(code)) => return fail(call, ex.request_id.as_ref(), code),
        Ok(Ok(b)) => b,
    };
    let answer = match answer_of(&s, &mut ex, &mut call, &bytes).await {
        Ok(a) => a,
        Err(code) => return fail(call, ex.request_id.as_ref(), code),
    };
    if let Some(m) = call.cx.mcp.as_mut() {
        m.response_bytes = answer.len() as u64;
    }
    let code = if status.is_success() { None } else { Some(DenyCode::UpstreamRejected) };
    match code {
        None => call.finish(Finished::served(ENDPOINT, status.as_u16(), None)),
        Some(c) => {
            call.finish(Finished { status: status.as_u16(), reached_provider: true, ..Finished::refused(ENDPOINT, c) })
        }
    }
    json_response(status, answer, session_header)
}

/// A whole answer as the server sent it, re-serialized after filtering and the guardrail: a
/// JSON-RPC message, or a refusal (not one: never passed on as it is, it may be anything).
async fn answer_of(s: &McpState, ex: &mut Exchange, call: &mut Call, bytes: &[u8]) -> Result<Bytes, DenyCode> {
    let mut v: Value = serde_json::from_slice(bytes).map_err(|_| DenyCode::UpstreamError)?;
    if v.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(DenyCode::UpstreamError);
    }
    answer_message(s, ex, call, &mut v).await?;
    serde_json::to_vec(&v).map(Bytes::from).map_err(|_| DenyCode::Internal)
}

/// The answer to this message (matched by id) narrowed by the filter and checked by the
/// guardrail (recorded as `guardrails_out`); other messages pass as they are.
async fn answer_message(s: &McpState, ex: &mut Exchange, call: &mut Call, v: &mut Value) -> Result<(), DenyCode> {
    let ours = ex.request_id.as_ref().is_some_and(|id| v.get("id") == Some(&id.to_value()));
    let Some(result) = v.get_mut("result").filter(|_| ours) else { return Ok(()) };
    // the server did the work: the call is charged, whatever the guardrail then says of it
    if let Some(hold) = ex.hold.take() {
        hold.settle(gatehouse_gates::ledger::Used::Call);
    }
    ex.filter.apply(s, &ex.principal, &ex.target.name, result);
    let Some(guard) = ex.guard.as_mut() else { return Ok(()) };
    let checked = guard.scan_incoming(result).await;
    guard.report_to(&mut call.cx);
    match checked {
        Ok(_) => {
            call.cx.record(GateName::GuardrailsOut, GateOutcome::Pass);
            Ok(())
        }
        Err(d) => {
            call.cx.record(GateName::GuardrailsOut, GateOutcome::Deny(d.code));
            Err(d.code)
        }
    }
}

async fn read_capped(resp: reqwest::Response, cap: usize) -> Result<Bytes, DenyCode> {
    if resp.content_length().is_some_and(|n| n > cap as u64) {
        return Err(DenyCode::UpstreamError);
    }
    let mut out = BytesMut::new();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|_| DenyCode::UpstreamError)?;
        if out.len() + chunk.len() > cap {
            return Err(DenyCode::UpstreamError);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.freeze())
}

/// The message failed at or after the provider step (recorded): the server could not be
/// reached or answered in time, its answer did not arrive whole, or a guardrail refused it.
fn fail(mut call: Call, id: Option<&Id>, code: DenyCode) -> Response {
    let reached_provider = code != DenyCode::ContentBlocked;
    call.finish(Finished { reached_provider, ..Finished::refused(ENDPOINT, code) });
    error_answer(id, code)
}

fn error_answer(id: Option<&Id>, code: DenyCode) -> Response {
    match id {
        Some(id) => {
            let body = jsonrpc::error(Some(id), rpc_code(code), code.row().message, Some(code));
            json_response(StatusCode::OK, Bytes::from(body.to_string()), None)
        }
        // a notification gets no answer, whatever happened to it
        None => StatusCode::ACCEPTED.into_response(),
    }
}

/// Tells a server a session it issued is over (best effort, in the background).
pub(crate) fn close_upstream(s: &McpState, closed: &Session) {
    if let Some(up) = closed.upstream.clone() {
        end_upstream_session(s, closed.server.clone(), up);
    }
}

/// DELETE of a server's session id on the server registered under `server` (by id).
fn end_upstream_session(s: &McpState, server: Box<str>, up: HeaderValue) {
    let s = s.clone();
    tokio::spawn(async move {
        let Some(t) = s.servers.by_id(&server) else { return };
        let Ok(url) = s.egress.validate_url(&t.url) else { return };
        let mut rb = s.client.delete(url).header(SESSION, up);
        if let Some((name, value)) = &t.auth {
            rb = rb.header(&**name, value.expose_secret());
        }
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), rb.send()).await;
    });
}

/// An SSE answer, passed on event by event: the answer to this message filtered, everything
/// else as sent; bounded by the response cap and the deadline (either ends it with a JSON-RPC
/// error event for this message). Metered when the stream ends, however it ends.
fn stream(call: Call, ex: Exchange, resp: reqwest::Response, cap: usize, session: Option<HeaderValue>) -> Response {
    let state = SseState {
        call: Some(call),
        ex,
        body: Box::pin(resp.bytes_stream()),
        buf: BytesMut::new(),
        sent: 0,
        cap,
        answered: false,
    };
    let events = futures_util::stream::unfold(state, |mut st| async move {
        let out = st.next_events().await?;
        Some((Ok::<Bytes, std::convert::Infallible>(out), st))
    });
    let mut r = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(events))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    if let Some(sid) = session {
        r.headers_mut().insert(SESSION, sid);
    }
    r
}

type ByteStream = std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<Bytes>> + Send>>;

struct SseState {
    /// `None` once finished.
    call: Option<Call>,
    ex: Exchange,
    body: ByteStream,
    buf: BytesMut,
    sent: usize,
    cap: usize,
    /// The answer to this message went out.
    answered: bool,
}

/// Where the first event in `buf` ends (after its blank line), `\n\n` or `\r\n\r\n`.
fn event_end(buf: &[u8]) -> Option<usize> {
    let lf = memchr::memmem::find(buf, b"\n\n").map(|i| i + 2);
    let crlf = memchr::memmem::find(buf, b"\r\n\r\n").map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl SseState {
    /// The next bytes to send, or `None` when the stream is over (and metered).
    async fn next_events(&mut self) -> Option<Bytes> {
        self.call.as_ref()?;
        loop {
            if let Some(end) = event_end(&self.buf) {
                let event = self.buf.split_to(end).freeze();
                let out = match self.rewrite(&event).await {
                    Ok(out) => out,
                    // the answer was refused (a guardrail blocked it): an error in its place
                    Err(code) => return Some(self.end(Some(code))),
                };
                self.sent += out.len();
                if self.sent > self.cap {
                    return Some(self.end(Some(DenyCode::UpstreamError)));
                }
                if self.answered {
                    // the answer ends the exchange; the server's stream is not read further
                    let mut out = BytesMut::from(&out[..]);
                    out.extend_from_slice(&self.end(None));
                    return Some(out.freeze());
                }
                if !out.is_empty() {
                    return Some(out);
                }
                continue;
            }
            if self.buf.len() > self.cap {
                return Some(self.end(Some(DenyCode::UpstreamError)));
            }
            match tokio::time::timeout_at(self.ex.deadline.into(), self.body.next()).await {
                Err(_) => return Some(self.end(Some(DenyCode::UpstreamTimeout))),
                Ok(None) | Ok(Some(Err(_))) => {
                    let code = if self.answered { None } else { Some(DenyCode::UpstreamError) };
                    return Some(self.end(code));
                }
                Ok(Some(Ok(chunk))) => self.buf.extend_from_slice(&chunk),
            }
        }
    }

    /// One event as it goes to the client: the answer to this message re-serialized after the
    /// filter and the guardrail, any other event as the server sent it.
    async fn rewrite(&mut self, event: &Bytes) -> Result<Bytes, DenyCode> {
        let text = String::from_utf8_lossy(event);
        let data: Vec<&str> =
            text.lines().filter_map(|l| l.strip_prefix("data:").map(|d| d.strip_prefix(' ').unwrap_or(d))).collect();
        if data.is_empty() {
            return Ok(event.clone());
        }
        let Ok(mut v) = serde_json::from_str::<Value>(&data.join("\n")) else { return Ok(event.clone()) };
        let ours = self.ex.request_id.as_ref().is_some_and(|id| v.get("id") == Some(&id.to_value()))
            && (v.get("result").is_some() || v.get("error").is_some());
        if !ours {
            return Ok(event.clone());
        }
        if let Some(call) = self.call.as_mut() {
            let s = call.s.clone();
            answer_message(&s, &mut self.ex, call, &mut v).await?;
        }
        self.answered = true;
        let mut out = String::new();
        for l in text.lines().filter(|l| l.starts_with("id:")) {
            out.push_str(l);
            out.push('\n');
        }
        out.push_str("event: message\ndata: ");
        out.push_str(&v.to_string());
        out.push_str("\n\n");
        Ok(Bytes::from(out))
    }

    /// Ends the stream: meters it and, when it ends without the answer, sends a JSON-RPC error
    /// event for this message so the client is not left waiting.
    fn end(&mut self, failed: Option<DenyCode>) -> Bytes {
        let Some(mut call) = self.call.take() else { return Bytes::new() };
        if let Some(m) = call.cx.mcp.as_mut() {
            m.response_bytes = self.sent as u64;
        }
        match failed {
            None => {
                call.finish(Finished { stream_end: Some("completed"), ..Finished::served(ENDPOINT, 200, None) });
                Bytes::new()
            }
            Some(code) => {
                call.finish(Finished {
                    stream_end: Some("upstream_failed"),
                    reached_provider: code != DenyCode::ContentBlocked,
                    ..Finished::refused(ENDPOINT, code)
                });
                match &self.ex.request_id {
                    Some(id) if !self.answered => {
                        let e = jsonrpc::error(Some(id), rpc_code(code), code.row().message, Some(code));
                        Bytes::from(format!("event: message\ndata: {e}\n\n"))
                    }
                    _ => Bytes::new(),
                }
            }
        }
    }
}
