//! THE order of an MCP message through the gateway, top to bottom (docs/MCP.md):
//!
//!   [audit trail accepting] -> authenticate -> parse (one JSON-RPC message, bounded)
//!     -> authorize (session binding, routing headers, method, tool/resource/prompt policy and
//!        token scopes, argument size) -> guardrails in (arguments, by the output rules)
//!     -> route (the caller's server of that name) -> limits (MCP rates, a tool's price on the
//!        budgets) -> provider (the upstream server, identity signed, deadline)
//!     -> guardrails out (the answer filtered to what the caller may see; a result checked by
//!        the input rules) -> meter & audit
//!
//! Each step is recorded in the request's trail with the same names as the model path
//! (`gatehouse_gates::ORDER`); a step that did not run is absent. A refusal after parsing is a
//! JSON-RPC error in a normal response (never a dropped message); before it, an HTTP status.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use gatehouse_core::{DenyCode, GateName, GateOutcome, McpCall, Presented, Principal, RequestCx, RequestId};
use gatehouse_gates::chain::{finish, run};
use gatehouse_gates::limits::CallLimits;
use gatehouse_gates::mcp::{McpServer, Use};
use gatehouse_gates::meter::Finished;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use secrecy::ExposeSecret;
use serde_json::Value;

use crate::McpState;
use crate::jsonrpc::{self, Id, Kind, Message};
use crate::sessions::{Binding, Full, binding};
use crate::upstream::{Exchange, Filter};

/// The endpoint name in metrics and the audit trail.
pub(crate) const ENDPOINT: &str = "mcp";
/// The session header of the handshake era.
pub(crate) const SESSION: &str = "mcp-session-id";

/// JSON-RPC codes of the gateway's own refusals (docs/MCP.md): in the range JSON-RPC leaves to
/// servers, each with `data.gatehouse` naming the refusal.
pub(crate) fn rpc_code(code: DenyCode) -> i64 {
    match code {
        DenyCode::PermissionDenied | DenyCode::ModelNotFound => -32003,
        DenyCode::ContentBlocked => -32004,
        DenyCode::RateLimitExceeded | DenyCode::InsufficientQuota => -32029,
        DenyCode::UpstreamTimeout => -32001,
        DenyCode::UpstreamError | DenyCode::UpstreamRejected | DenyCode::UpstreamRateLimited => -32005,
        DenyCode::RequestTooLarge | DenyCode::RequestTooComplex => jsonrpc::INVALID_PARAMS,
        DenyCode::InvalidJson => jsonrpc::PARSE_ERROR,
        DenyCode::NotFound => jsonrpc::INVALID_REQUEST,
        DenyCode::Unavailable | DenyCode::Internal => jsonrpc::INTERNAL_ERROR,
        _ => jsonrpc::INVALID_REQUEST,
    }
}

/// One message on its way through; finishes (meters and audits) exactly once.
pub(crate) struct Call {
    pub s: McpState,
    pub cx: RequestCx,
    done: bool,
}

impl Call {
    /// Refuses the message: a JSON-RPC error with the refusal's fixed message, in an HTTP
    /// response of `status`, metered and audited.
    fn refuse(mut self, id: Option<&Id>, code: DenyCode, rpc: i64, status: StatusCode) -> Response {
        if self.cx.trail.last().is_none_or(|e| e.outcome == GateOutcome::Pass) {
            // a refusal decided outside a gate's own check (routing headers, a session) is the
            // step's that was running
            let step = next_step(&self.cx);
            self.cx.record(step, GateOutcome::Deny(code));
        }
        self.finish(Finished::refused(ENDPOINT, code));
        let body = jsonrpc::error(id, rpc, code.row().message, Some(code));
        let mut resp = (status, axum::Json(body)).into_response();
        if matches!(
            code,
            DenyCode::MissingCredentials
                | DenyCode::InvalidApiKey
                | DenyCode::InvalidToken
                | DenyCode::ExpiredCredential
        ) {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"gatehouse\""));
        }
        resp
    }

    /// A refusal of a message that was read: a JSON-RPC error in a 200 (the DESIGN's rule for
    /// MCP), unless the message was a notification, which gets no answer (202, audited).
    fn refuse_message(self, msg: &Message, code: DenyCode) -> Response {
        let id = msg.id().cloned();
        let resp = self.refuse(id.as_ref(), code, rpc_code(code), StatusCode::OK);
        if id.is_some() { resp } else { StatusCode::ACCEPTED.into_response() }
    }

    pub(crate) fn finish(&mut self, done: Finished) {
        if !self.done {
            self.done = true;
            if let Some(m) = self.cx.mcp.as_deref() {
                let outcome = done.code.map_or("ok", DenyCode::as_str);
                // labels from a caller's words only once the server resolved (bounded values)
                let routed = self.cx.trail.iter().any(|e| e.gate == GateName::Route && e.outcome == GateOutcome::Pass);
                let tool = m.name.as_deref().filter(|_| &*m.method == "tools/call");
                crate::counters::message(routed.then_some(&*m.server), &m.method, tool, outcome);
            }
            finish(&self.s.audit, &mut self.cx, done);
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        // a client that went away mid-exchange: the message still ends in the trail
        if !self.done {
            self.finish(Finished {
                stream_end: Some("cancelled"),
                ..Finished::refused(ENDPOINT, DenyCode::UpstreamError)
            });
        }
    }
}

/// The step after the last one recorded (where a refusal outside a gate's check belongs).
fn next_step(cx: &RequestCx) -> GateName {
    match cx.trail.last().map(|e| e.gate) {
        None => GateName::Authenticate,
        Some(GateName::Authenticate) => GateName::Parse,
        Some(GateName::Parse) => GateName::Authorize,
        Some(GateName::Authorize) => GateName::Route,
        Some(_) => GateName::Provider,
    }
}

fn request_cx(id: RequestId, parts: &http::request::Parts, s: &McpState) -> RequestCx {
    let presented =
        gatehouse_http::presented(&parts.headers, parts.uri.query(), gatehouse_http::Accept::BearerOrApiKey);
    let mut cx = RequestCx::new(id, presented);
    cx.source = parts.extensions.get::<ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
    cx.trace = s.audit.trace(|| parts.headers.get("traceparent").map(http::HeaderValue::as_bytes));
    cx
}

fn presented_binding(cx: &RequestCx) -> Option<Binding> {
    match &cx.credential {
        Presented::One(k) => Some(binding(k.expose_secret())),
        _ => None,
    }
}

/// The steps every message begins with: the audit trail accepting, then authenticate (from
/// headers only). A credential that stopped authenticating (revoked, expired) closes the session
/// it presents: only its holder can present it.
async fn begin(s: McpState, parts: &http::request::Parts) -> Result<(Call, Principal, Binding), Response> {
    let id = parts.extensions.get::<RequestId>().copied().unwrap_or_else(RequestId::generate);
    let cx = request_cx(id, parts, &s);
    let bind = presented_binding(&cx);
    let mut call = Call { s, cx, done: false };
    // A deployment that requires an audit trail serves nothing it cannot record.
    if !call.s.audit.accepting() {
        return Err(call.refuse(None, DenyCode::Unavailable, jsonrpc::INTERNAL_ERROR, StatusCode::SERVICE_UNAVAILABLE));
    }
    if let Err(stop) = run(&call.s.authenticate, &mut call.cx, &mut ()).await {
        let code = gatehouse_core::Denial::from(stop).code;
        if let (Some(sid), Some(b)) = (single(&parts.headers, SESSION), bind.as_ref())
            && call.s.sessions.belongs_to(&sid, b)
            && let Some(closed) = call.s.sessions.close(&sid)
        {
            crate::upstream::close_upstream(&call.s, &closed);
        }
        let status = StatusCode::from_u16(code.status()).unwrap_or(StatusCode::UNAUTHORIZED);
        return Err(call.refuse(None, code, jsonrpc::INVALID_REQUEST, status));
    }
    match (call.cx.principal.clone(), bind) {
        (Some(p), Some(b)) => Ok((call, p, b)),
        _ => Err(call.refuse(None, DenyCode::Internal, jsonrpc::INTERNAL_ERROR, StatusCode::INTERNAL_SERVER_ERROR)),
    }
}

/// `POST /mcp/{server}`: one client message.
pub(crate) async fn post(State(s): State<McpState>, Path(server): Path<String>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let session_id = single(&parts.headers, SESSION);
    let (mut call, principal, bind) = match begin(s, &parts).await {
        Ok(started) => started,
        Err(refused) => return refused,
    };

    // Parse: the body is read (capped) only for an authenticated caller.
    let limit = call.s.settings.max_message_bytes.get() as usize;
    let bytes = match gatehouse_http::read_body(&parts.headers, body, "application/json", limit).await {
        Ok(b) => b,
        Err(code) => {
            call.cx.record(GateName::Parse, GateOutcome::Deny(code));
            let status = StatusCode::from_u16(code.status()).unwrap_or(StatusCode::BAD_REQUEST);
            return call.refuse(None, code, rpc_code(code), status);
        }
    };
    let msg = match jsonrpc::parse(&bytes) {
        Ok(m) => m,
        Err(e) => {
            call.cx.record(GateName::Parse, GateOutcome::Deny(e.deny_code()));
            return call.refuse(None, e.deny_code(), e.rpc_code(), StatusCode::BAD_REQUEST);
        }
    };
    call.cx.record(GateName::Parse, GateOutcome::Pass);
    let what = match classify(&msg) {
        Ok(w) => w,
        Err(code) => {
            call.cx.mcp = Some(Box::new(McpCall {
                method: msg.method.clone(),
                server: server.as_str().into(),
                ..McpCall::default()
            }));
            return call.refuse_message(&msg, code);
        }
    };
    call.cx.mcp = Some(Box::new(McpCall {
        method: msg.method.clone(),
        server: server.as_str().into(),
        name: match what {
            Use::Tool(n) | Use::Prompt(n) => Some(n.into()),
            Use::Server | Use::Resource(_) => None,
        },
        request_bytes: bytes.len() as u64,
        response_bytes: 0,
    }));

    // Route before the policy only to know whether the name exists for this caller: a server
    // of another tenant is "not found", exactly like a missing one.
    let Some(target) = call.s.servers.resolve(principal.org, principal.project, &server) else {
        call.cx.record(GateName::Authorize, GateOutcome::Pass);
        call.cx.record(GateName::Route, GateOutcome::Deny(DenyCode::NotFound));
        return call.refuse(
            msg.id().cloned().as_ref(),
            DenyCode::NotFound,
            jsonrpc::INVALID_REQUEST,
            StatusCode::NOT_FOUND,
        );
    };

    // Authorize: the session is the caller's own on this server; the routing headers say what
    // the body says; the policies and the token allow this use; arguments within the cap.
    let session = match session_id.as_deref() {
        None => None,
        Some(sid) => match call.s.sessions.get(sid, &bind, &target.id) {
            Some(sess) => Some((sid.to_owned(), sess)),
            None => {
                // unknown, expired, another credential's or another server's: all alike
                call.cx.record(GateName::Authorize, GateOutcome::Deny(DenyCode::NotFound));
                return call.refuse(
                    msg.id().cloned().as_ref(),
                    DenyCode::NotFound,
                    jsonrpc::INVALID_REQUEST,
                    StatusCode::NOT_FOUND,
                );
            }
        },
    };
    if let Err(()) = headers_agree(&parts.headers, &msg) {
        call.cx.record(GateName::Authorize, GateOutcome::Deny(DenyCode::InvalidRequest));
        let id = msg.id().cloned();
        return call.refuse(id.as_ref(), DenyCode::InvalidRequest, jsonrpc::HEADER_MISMATCH, StatusCode::BAD_REQUEST);
    }
    if !call.s.policies.allows(&principal, &server, what) {
        call.cx.record(GateName::Authorize, GateOutcome::Deny(DenyCode::PermissionDenied));
        return call.refuse_message(&msg, DenyCode::PermissionDenied);
    }
    if let Use::Tool(_) | Use::Prompt(_) = what {
        let cap = call.s.policies.max_argument_bytes(&principal).map_or(usize::MAX, |b| b as usize);
        if msg.arguments_bytes() > cap {
            call.cx.record(GateName::Authorize, GateOutcome::Deny(DenyCode::RequestTooLarge));
            return call.refuse_message(&msg, DenyCode::RequestTooLarge);
        }
    }
    call.cx.record(GateName::Authorize, GateOutcome::Pass);
    // what the later steps need of the decision, owned: the guardrail may rewrite the message
    let carries_arguments = matches!(what, Use::Tool(_) | Use::Prompt(_));
    let tool: Option<Box<str>> = match what {
        Use::Tool(t) => Some(t.into()),
        _ => None,
    };
    let timeout = match what {
        Use::Tool(t) => {
            call.s.policies.timeout(&principal, &server, t).map_or(target.timeout, |t| t.min(target.timeout))
        }
        _ => target.timeout,
    };

    // Guardrails (in): tool and prompt arguments are a model's words leaving for a tool, so the
    // policy's output rules apply (secrets redacted by default); redacted in place.
    let mut msg = msg;
    let mut guard = call.s.guardrails.session(principal.org, principal.project);
    let mut bytes = bytes;
    let mut rewritten = false;
    if carries_arguments && let Some(args) = msg.params.as_mut().and_then(|p| p.get_mut("arguments")) {
        let scanned = guard.scan_outgoing(args).await;
        guard.report_to(&mut call.cx);
        match scanned {
            Ok(changed) => {
                call.cx.record(GateName::GuardrailsIn, GateOutcome::Pass);
                if changed {
                    bytes = Bytes::from(msg.to_bytes());
                    rewritten = true;
                }
            }
            Err(d) => {
                call.cx.record(GateName::GuardrailsIn, GateOutcome::Deny(d.code));
                return call.refuse_message(&msg, d.code);
            }
        }
    }

    // Route: the server answers only if its sealed values opened here, and takes this size.
    if !target.usable() {
        call.cx.record(GateName::Route, GateOutcome::Deny(DenyCode::Unavailable));
        return call.refuse_message(&msg, DenyCode::Unavailable);
    }
    if bytes.len() > target.max_request_bytes as usize {
        call.cx.record(GateName::Route, GateOutcome::Deny(DenyCode::RequestTooLarge));
        return call.refuse_message(&msg, DenyCode::RequestTooLarge);
    }
    call.cx.record(GateName::Route, GateOutcome::Pass);

    // Limits: the MCP policies' rates for this message (`server/tool`, or `server/<method>`),
    // the token's rate caveats, and a tool call's price reserved on every USD budget.
    let subject = format!("{server}/{}", tool.as_deref().unwrap_or(&*msg.method));
    let limits = CallLimits {
        rates: call.s.policies.rates(&principal, &subject),
        micro_usd: if tool.is_some() { call.s.policies.price(&principal, &subject) } else { 0 },
        record: tool.is_some(),
        name: subject.into(),
        provider: format!("mcp:{server}").into(),
    };
    // the reservation outlives the call's deadline by a margin (a replica dying mid-call)
    let hold = match call.s.limits.reserve_call(&mut call.cx, limits, timeout + Duration::from_secs(60)).await {
        Ok(h) => {
            call.cx.record(GateName::Limits, GateOutcome::Pass);
            h
        }
        Err(d) => {
            call.cx.record(GateName::Limits, GateOutcome::Deny(d.code));
            return call.refuse_message(&msg, d.code);
        }
    };

    // Provider: the upstream server, within the tool's deadline; its answer to a call, a read
    // or a prompt passes the guardrail's input rules on the way back (guardrails out).
    let filter = Filter::for_method(&msg.method);
    let scans_answer = matches!(&*msg.method, "tools/call" | "resources/read" | "prompts/get");
    let exchange = Exchange {
        target: target.clone(),
        principal,
        bind,
        session,
        initialize: &*msg.method == "initialize" && matches!(msg.kind, Kind::Request(_)),
        request_id: msg.id().cloned(),
        filter,
        guard: scans_answer.then_some(guard),
        hold: Some(hold),
        rewritten,
        deadline: Instant::now() + timeout,
    };
    crate::upstream::forward(call, exchange, &parts.headers, bytes).await
}

/// What a method uses on the server, or why the gateway refuses it outright. Methods the
/// gateway does not know are refused (a new method is allowed only once it is governed).
fn classify(msg: &Message) -> Result<Use<'_>, DenyCode> {
    let name = |k| msg.param_str(k).ok_or(DenyCode::InvalidRequest);
    Ok(match (&msg.kind, &*msg.method) {
        (Kind::Response, _) => Use::Server,
        (_, "tools/call") => Use::Tool(name("name")?),
        (_, "prompts/get") => Use::Prompt(name("name")?),
        (_, "resources/read" | "resources/subscribe" | "resources/unsubscribe") => Use::Resource(name("uri")?),
        (_, "completion/complete") => {
            let r = msg.params.as_ref().and_then(|p| p.get("ref")).ok_or(DenyCode::InvalidRequest)?;
            let field = |k: &str| r.get(k).and_then(Value::as_str).filter(|s| !s.is_empty() && s.len() <= 2048);
            match r.get("type").and_then(Value::as_str) {
                Some("ref/prompt") => Use::Prompt(field("name").ok_or(DenyCode::InvalidRequest)?),
                Some("ref/resource") => Use::Resource(field("uri").ok_or(DenyCode::InvalidRequest)?),
                _ => return Err(DenyCode::InvalidRequest),
            }
        }
        (
            _,
            "initialize"
            | "ping"
            | "server/discover"
            | "tools/list"
            | "prompts/list"
            | "resources/list"
            | "resources/templates/list"
            | "logging/setLevel",
        ) => Use::Server,
        (Kind::Notification, m) if m.starts_with("notifications/") => Use::Server,
        _ => return Err(DenyCode::PermissionDenied),
    })
}

/// One value of a header that must appear at most once; `None` when absent or repeated (a
/// repeated one is refused by [`headers_agree`] for the routing headers).
fn single(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut it = headers.get_all(name).iter();
    let v = it.next()?;
    if it.next().is_some() {
        return None;
    }
    v.to_str().ok().map(str::to_owned)
}

/// The routing headers of the current MCP revision (`Mcp-Method`, `Mcp-Name`) must say what the
/// body says, since a server may route on them: the gateway decided on the body. Absent is
/// fine (the older revisions have none); repeated or different is refused.
fn headers_agree(headers: &HeaderMap, msg: &Message) -> Result<(), ()> {
    for (h, want) in [("mcp-method", Some(&*msg.method)), ("mcp-name", name_of(msg))] {
        let mut values = headers.get_all(h).iter();
        let Some(v) = values.next() else { continue };
        if values.next().is_some() {
            return Err(());
        }
        let got = v.to_str().map_err(|_| ())?;
        let got = decode_header(got).ok_or(())?;
        if Some(got.as_str()) != want {
            return Err(());
        }
    }
    Ok(())
}

fn name_of(msg: &Message) -> Option<&str> {
    match &*msg.method {
        "tools/call" | "prompts/get" => msg.param_str("name"),
        "resources/read" => msg.param_str("uri"),
        _ => None,
    }
}

/// MCP's header value encoding: plain printable ASCII, or `=?base64?<utf-8 as base64>?=`.
fn decode_header(v: &str) -> Option<String> {
    use base64::Engine;
    match v.strip_prefix("=?base64?").and_then(|r| r.strip_suffix("?=")) {
        Some(b) => String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b).ok()?).ok(),
        None => Some(v.to_owned()),
    }
}

/// `DELETE /mcp/{server}`: the client ends its session.
pub(crate) async fn delete(State(s): State<McpState>, Path(server): Path<String>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let (mut call, p, bind) = match begin(s, &parts).await {
        Ok(started) => started,
        Err(refused) => return refused,
    };
    call.cx.mcp = Some(Box::new(McpCall {
        method: "session/delete".into(),
        server: server.as_str().into(),
        ..McpCall::default()
    }));
    let target = call.s.servers.resolve(p.org, p.project, &server);
    let found = match (single(&parts.headers, SESSION), target) {
        (Some(sid), Some(t)) => call.s.sessions.get(&sid, &bind, &t.id).and_then(|_| call.s.sessions.close(&sid)),
        _ => None,
    };
    let Some(closed) = found else {
        call.cx.record(GateName::Authorize, GateOutcome::Deny(DenyCode::NotFound));
        return call.refuse(None, DenyCode::NotFound, jsonrpc::INVALID_REQUEST, StatusCode::NOT_FOUND);
    };
    call.cx.record(GateName::Authorize, GateOutcome::Pass);
    crate::upstream::close_upstream(&call.s, &closed);
    call.finish(Finished::listed(ENDPOINT));
    StatusCode::OK.into_response()
}

/// `GET /mcp/{server}`: the handshake era's server-to-client stream is not offered (the
/// transport allows a server to answer 405; clients go on without it). Everything a server
/// sends reaches the client on the stream of the POST it answers, where it is governed.
pub(crate) async fn get() -> Response {
    let mut r = StatusCode::METHOD_NOT_ALLOWED.into_response();
    r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST, DELETE"));
    r
}

/// A new session for an `initialize` the server accepted, or why there is none.
pub(crate) fn open_session(
    s: &McpState,
    bind: Binding,
    server: &McpServer,
    upstream: Option<HeaderValue>,
) -> Result<HeaderValue, Full> {
    let id = s.sessions.open(bind, &server.id, upstream)?;
    HeaderValue::from_str(&id).map_err(|_| Full::All)
}

/// A JSON-RPC answer as an HTTP response.
pub(crate) fn json_response(status: StatusCode, body: Bytes, session: Option<HeaderValue>) -> Response {
    let mut r = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    if let Some(sid) = session {
        r.headers_mut().insert(SESSION, sid);
    }
    r
}

/// How long the sweeper waits between passes over the sessions.
pub(crate) const SWEEP_EVERY: Duration = Duration::from_secs(15);

/// Closes expired sessions (and tells their servers) for as long as the process runs.
pub async fn run_sweeper(s: McpState) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    loop {
        tick.tick().await;
        for closed in s.sessions.sweep() {
            crate::upstream::close_upstream(&s, &closed);
        }
        metrics::gauge!("gatehouse_mcp_sessions").set(s.sessions.len() as f64);
    }
}
