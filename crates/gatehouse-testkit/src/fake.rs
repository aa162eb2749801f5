//! A scriptable OpenAI-compatible upstream over real HTTP.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// A string the fake puts into its error bodies: a test asserts it never reaches a client.
pub const UPSTREAM_SECRET_IN_ERRORS: &str = "sk-upstream-LEAKED-0123456789";

/// How the fake answers the next requests.
/// A string only provider responses carry (canary tests look for it where it must not be).
pub const REPLY_CANARY: &str = "reply-canary-5d1e ";
/// The content of a non-streamed answer.
pub const FAKE_REPLY: &str = "Hello from the fake provider. reply-canary-5d1e";

#[derive(Clone, Debug, Default)]
pub enum Behavior {
    /// Answer normally.
    #[default]
    Ok,
    /// Answer normally after a delay.
    Latency(Duration),
    /// Answer with this status and an error body that contains [`UPSTREAM_SECRET_IN_ERRORS`].
    Status(u16),
    /// A non-streamed body of this many bytes.
    HugeBody(usize),
    /// Streams: a valid chunk, then one event larger than any sane limit.
    OversizedEvent,
    /// Streams: two chunks, then the connection closes without `[DONE]`.
    Disconnect,
    /// Streams: one chunk, then silence forever.
    Stall,
    /// Streams: chunks every 10 ms, forever.
    Endless,
    /// Never answers at all.
    Hang,
    /// Redirects to another URL (a gateway must not follow).
    Redirect,
    /// Answers 200 with a body that is not JSON (whole answers only).
    NotJson,
    /// Streams slowly: each chunk after this delay (for drain tests).
    SlowStream(Duration),
    /// Answers with this text (and, when set, one tool call with these arguments); streams
    /// split them into pieces of `chunk` bytes, so values straddle chunk boundaries.
    Reply { text: String, tool_args: Option<String>, chunk: usize },
}

/// `s` in pieces of at most `n` bytes, on character boundaries.
pub(crate) fn pieces(s: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in s.chars() {
        if cur.len() + c.len_utf8() > n.max(1) && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        cur.push(c);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn scripted_stream(model: &str, text: &str, tool_args: Option<&str>, n: usize) -> Vec<Bytes> {
    let mut frames: Vec<Bytes> = pieces(text, n).iter().map(|p| frame(&chunk(model, p))).collect();
    if let Some(args) = tool_args {
        let head = json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": model,
            "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                "function": {"name": "lookup", "arguments": ""}}]}, "finish_reason": null}]});
        frames.push(frame(&head));
        for p in pieces(args, n) {
            frames.push(frame(&json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1,
                "model": model, "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0,
                "function": {"arguments": p}}]}, "finish_reason": null}]})));
        }
    }
    let finish = if tool_args.is_some() { "tool_calls" } else { "stop" };
    frames.push(frame(&json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": model,
        "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})));
    frames.push(frame(&json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": model,
        "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}})));
    frames.push(Bytes::from_static(b"data: [DONE]\n\n"));
    frames
}

/// What a non-OpenAI door answers, from the behaviour: the whole text, the pieces a stream
/// sends it in (unscripted: the usual chunks, the canary first, like the OpenAI door), and
/// the `lookup` tool call's input.
pub(crate) struct Plan {
    pub text: String,
    pub pieces: Vec<String>,
    pub tool: Option<Value>,
}

/// The plan for the next answer, or the door's own refusal for a scripted status.
pub(crate) async fn plan(s: &Shared, refuse: impl FnOnce(u16) -> Response) -> Result<Plan, Response> {
    let unscripted = |s: &Shared| Plan {
        text: FAKE_REPLY.to_owned(),
        pieces: (0..s.stream_chunks).map(|i| format!("{}tok{i} ", if i == 0 { REPLY_CANARY } else { "" })).collect(),
        tool: None,
    };
    match (**s.behavior.load()).clone() {
        Behavior::Status(code) => Err(refuse(code)),
        Behavior::Hang => {
            std::future::pending::<()>().await;
            Err(refuse(500))
        }
        Behavior::Latency(d) => {
            tokio::time::sleep(d).await;
            Ok(unscripted(s))
        }
        Behavior::Reply { text, tool_args, chunk } => Ok(Plan {
            pieces: pieces(&text, chunk),
            tool: tool_args.map(|a| serde_json::from_str::<Value>(&a).unwrap_or_else(|_| json!({}))),
            text,
        }),
        _ => Ok(unscripted(s)),
    }
}

/// What the fake saw of the last request.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
    /// The body exactly as received (what a signature covers).
    pub raw: Bytes,
}

pub(crate) struct Shared {
    calls: AtomicUsize,
    /// Chat requests it began answering with a success (what a provider bills).
    served: AtomicUsize,
    /// The next this many chat requests fail with `fail_status`, whatever the behaviour.
    fail_next: AtomicUsize,
    fail_status: std::sync::atomic::AtomicU16,
    pub(crate) behavior: ArcSwap<Behavior>,
    last: ArcSwap<Option<Recorded>>,
    pub(crate) stream_chunks: usize,
    /// When set, chat requests whose `Authorization: Bearer` is not one of these get a 401,
    /// as a provider answers a revoked or unknown key; each refusal is counted.
    accepted: ArcSwap<Option<Vec<String>>>,
    rejected: AtomicUsize,
}

pub struct FakeProvider {
    addr: SocketAddr,
    /// `https` when it serves TLS under a private CA ([`FakeProvider::spawn_tls`]).
    scheme: &'static str,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeProvider {
    /// Starts on 127.0.0.1:0.
    pub async fn spawn() -> FakeProvider {
        match Self::spawn_on("127.0.0.1:0", 8).await {
            Ok(f) => f,
            Err(e) => panic!("fake provider failed to start: {e}"),
        }
    }

    /// Starts on `addr` with `stream_chunks` content chunks per streamed answer.
    pub async fn spawn_on(addr: &str, stream_chunks: usize) -> anyhow::Result<FakeProvider> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (app, shared) = Self::app(stream_chunks);
        let task = tokio::spawn(async move {
            use axum::serve::ListenerExt;
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            let _ = axum::serve(listener, app.into_make_service()).await;
        });
        Ok(FakeProvider { addr, scheme: "http", shared, task })
    }

    /// Starts on 127.0.0.1:0 behind TLS, with a certificate for `127.0.0.1` and `localhost`
    /// issued by a fresh private CA; returns the CA certificate (PEM) a client must trust.
    pub async fn spawn_tls() -> anyhow::Result<(FakeProvider, String)> {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key)?;
        let leaf_key = KeyPair::generate()?;
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?
            .signed_by(&leaf_key, &Issuer::from_params(&ca_params, &ca_key))?;
        let key = rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der())
            .map_err(|e| anyhow::anyhow!("leaf key: {e}"))?;
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone()], key)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (app, shared) = Self::app(8);
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else { return };
                    let svc = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok((FakeProvider { addr, scheme: "https", shared, task }, ca.pem()))
    }

    fn app(stream_chunks: usize) -> (Router, Arc<Shared>) {
        let shared = Arc::new(Shared {
            calls: AtomicUsize::new(0),
            served: AtomicUsize::new(0),
            fail_next: AtomicUsize::new(0),
            fail_status: std::sync::atomic::AtomicU16::new(500),
            behavior: ArcSwap::from_pointee(Behavior::Ok),
            last: ArcSwap::from_pointee(None),
            stream_chunks,
            accepted: ArcSwap::from_pointee(None),
            rejected: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            // the other API families, on the same port and scripted by the same behaviour
            .route("/v1/messages", post(crate::fake_anthropic::on_provider))
            .route("/openai/deployments/{deployment}/chat/completions", post(azure_chat))
            .route("/v1beta/models/{call}", post(crate::fake_gemini::generate))
            .route("/model/{model}/converse", post(crate::fake_bedrock::converse))
            .route("/model/{model}/converse-stream", post(crate::fake_bedrock::converse))
            .route("/v1/embeddings", post(embeddings))
            .route("/v1/models", get(models))
            .route("/mcp", post(crate::fake_mcp::on_message))
            .route("/__fake/behavior", post(script))
            .route("/__fake/calls", get(calls))
            .with_state(shared.clone());
        (app, shared)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The OpenAI-style base URL, e.g. `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("{}://{}/v1", self.scheme, self.addr)
    }

    /// Requests received so far (of any kind).
    pub fn calls(&self) -> usize {
        self.shared.calls.load(Ordering::SeqCst)
    }

    /// Chat Completions requests it began answering with a success status (whole or
    /// streamed, however the stream then ends): what a provider would bill.
    pub fn served(&self) -> usize {
        self.shared.served.load(Ordering::SeqCst)
    }

    pub fn set(&self, b: Behavior) {
        self.shared.behavior.store(Arc::new(b));
    }

    /// The next `n` chat requests fail with `status` (an error body, `Retry-After: 7` for 429),
    /// then the behaviour answers again.
    pub fn fail_next(&self, status: u16, n: usize) {
        self.shared.fail_status.store(status, Ordering::SeqCst);
        self.shared.fail_next.store(n, Ordering::SeqCst);
    }

    /// Accept chat requests only with one of these keys (`None`: any), like a provider whose
    /// keys are rotated and revoked.
    pub fn accept_keys(&self, keys: Option<&[&str]>) {
        self.shared.accepted.store(Arc::new(keys.map(|k| k.iter().map(|s| (*s).to_owned()).collect())));
    }

    /// Chat requests refused for their key ([`FakeProvider::accept_keys`]).
    pub fn rejected(&self) -> usize {
        self.shared.rejected.load(Ordering::SeqCst)
    }

    pub fn last_request(&self) -> Option<Recorded> {
        (**self.shared.last.load()).clone()
    }
}

pub(crate) fn record(s: &Shared, path: &str, headers: &HeaderMap, body: &Bytes) -> Value {
    s.calls.fetch_add(1, Ordering::SeqCst);
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    s.last.store(Arc::new(Some(Recorded {
        path: path.to_owned(),
        headers: headers.clone(),
        body: v.clone(),
        raw: body.clone(),
    })));
    v
}

fn error_response(status: u16) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = json!({"error": {"message": format!("upstream says no; your key {UPSTREAM_SECRET_IN_ERRORS} is bad"), "type": "x", "code": "x"}});
    let mut resp = (code, axum::Json(body)).into_response();
    if status == 429 {
        resp.headers_mut().insert(header::RETRY_AFTER, "7".parse().unwrap_or(header::HeaderValue::from_static("1")));
    }
    resp
}

fn frame(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

fn chunk(model: &str, content: &str) -> Value {
    json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": model,
           "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}]})
}

async fn chat(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let req = record(&s, "/v1/chat/completions", &headers, &body);
    if let Some(keys) = &**s.accepted.load() {
        let presented =
            headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        if !presented.is_some_and(|p| keys.iter().any(|k| k == p)) {
            s.rejected.fetch_add(1, Ordering::SeqCst);
            return error_response(401);
        }
    }
    if s.fail_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
        return error_response(s.fail_status.load(Ordering::SeqCst));
    }
    let model = req["model"].as_str().unwrap_or("fake").to_owned();
    let stream = req["stream"].as_bool().unwrap_or(false);
    let behavior = (**s.behavior.load()).clone();
    match behavior {
        Behavior::Status(code) => return error_response(code),
        Behavior::Hang => {
            std::future::pending::<()>().await;
        }
        Behavior::Redirect => {
            return (StatusCode::FOUND, [(header::LOCATION, "http://127.0.0.1:9/elsewhere")]).into_response();
        }
        Behavior::Latency(d) => tokio::time::sleep(d).await,
        Behavior::NotJson if !stream => {
            return ([(header::CONTENT_TYPE, "application/json")], "{\"choices\": [ not json").into_response();
        }
        Behavior::HugeBody(n) if !stream => {
            let filler = "x".repeat(n);
            return ([(header::CONTENT_TYPE, "application/json")], format!("{{\"filler\":\"{filler}\"}}"))
                .into_response();
        }
        _ => {}
    }
    s.served.fetch_add(1, Ordering::SeqCst);
    if let Behavior::Reply { text, tool_args, chunk: n } = &behavior {
        if stream {
            let frames = scripted_stream(&model, text, tool_args.as_deref(), *n);
            return Response::builder()
                .header(header::CONTENT_TYPE, "text/event-stream")
                .body(Body::from_stream(futures_util::stream::iter(frames.into_iter().map(Ok::<_, Infallible>))))
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
        }
        let mut message = json!({"role": "assistant", "content": text});
        if let Some(args) = tool_args {
            message["tool_calls"] =
                json!([{"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": args}}]);
        }
        return axum::Json(json!({
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": message,
                         "finish_reason": if tool_args.is_some() { "tool_calls" } else { "stop" }}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12},
        }))
        .into_response();
    }
    if !stream {
        let body = json!({
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": FAKE_REPLY}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12},
            "system_fingerprint": "fp_fake",
        });
        return axum::Json(body).into_response();
    }
    let n = s.stream_chunks;
    let m = model.clone();
    let normal = futures_util::stream::iter((0..n).map(move |i| {
        let canary = if i == 0 { REPLY_CANARY } else { "" };
        frame(&chunk(&m, &format!("{canary}tok{i} ")))
    }))
        .chain(futures_util::stream::iter([
            frame(&json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": model,
                          "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": n, "total_tokens": 7 + n}})),
            Bytes::from_static(b"data: [DONE]\n\n"),
        ]));
    let body: futures_util::stream::BoxStream<'static, Bytes> = match behavior {
        Behavior::OversizedEvent => {
            let big = format!("data: {{\"x\":\"{}\"", "y".repeat(2 * 1024 * 1024));
            futures_util::stream::iter([frame(&chunk("m", "ok ")), Bytes::from(big)]).boxed()
        }
        Behavior::Disconnect => normal.take(2).boxed(),
        Behavior::Stall => {
            futures_util::stream::iter([frame(&chunk("m", "ok "))]).chain(futures_util::stream::pending()).boxed()
        }
        Behavior::Endless => futures_util::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Some((frame(&chunk("m", "more ")), ()))
        })
        .boxed(),
        Behavior::SlowStream(d) => normal
            .then(move |b| async move {
                tokio::time::sleep(d).await;
                b
            })
            .boxed(),
        _ => normal.boxed(),
    };
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from_stream(body.map(Ok::<_, Infallible>)))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Azure OpenAI's door: a deployment URL with `api-version`, the key in `api-key` (or an
/// Entra token as a bearer), then the OpenAI answer.
async fn azure_chat(
    state: State<Arc<Shared>>,
    axum::extract::Path(deployment): axum::extract::Path<String>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let keyed = headers.get("api-key").is_some_and(|k| !k.is_empty());
    let bearer = headers.get(header::AUTHORIZATION).is_some_and(|a| a.as_bytes().starts_with(b"Bearer "));
    if keyed == bearer {
        let body = json!({"error": {"code": "401", "message": "Access denied due to invalid subscription key."}});
        return (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    }
    if !query.unwrap_or_default().split('&').any(|p| p.starts_with("api-version=") && p.len() > 12) {
        let body = json!({"error": {"code": "404", "message": "Resource not found"}});
        return (StatusCode::NOT_FOUND, axum::Json(body)).into_response();
    }
    if deployment.is_empty() {
        return StatusCode::NOT_FOUND.into_response();
    }
    chat(state, headers, body).await
}

async fn embeddings(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let req = record(&s, "/v1/embeddings", &headers, &body);
    if let Behavior::Status(code) = **s.behavior.load() {
        return error_response(code);
    }
    let n = match &req["input"] {
        Value::Array(a) => a.len(),
        _ => 1,
    };
    let data: Vec<Value> =
        (0..n).map(|i| json!({"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]})).collect();
    axum::Json(json!({"object": "list", "data": data, "model": req["model"], "usage": {"prompt_tokens": 3, "total_tokens": 3}}))
        .into_response()
}

/// The model list (a health check's target): it fails and hangs as the behaviour says.
async fn models(State(s): State<Arc<Shared>>) -> Response {
    s.calls.fetch_add(1, Ordering::SeqCst);
    match **s.behavior.load() {
        Behavior::Status(code) => return error_response(code),
        Behavior::Hang => std::future::pending::<()>().await,
        _ => {}
    }
    axum::Json(
        json!({"object": "list", "data": [{"id": "fake-model", "object": "model", "created": 1, "owned_by": "fake"}]}),
    )
    .into_response()
}

/// Scripting over HTTP, for the Python suite and load runs that use the binary:
/// `{"kind": "ok" | "status" | "latency" | "hang" | "disconnect" | "stall" | "oversized" | "reply", "status": N,
/// "ms": N, "text": "...", "tool_args": "...", "chunk": N}`.
async fn script(State(s): State<Arc<Shared>>, axum::Json(v): axum::Json<Value>) -> Response {
    let ms = Duration::from_millis(v["ms"].as_u64().unwrap_or(0));
    let b = match v["kind"].as_str() {
        Some("ok") => Behavior::Ok,
        Some("status") => Behavior::Status(u16::try_from(v["status"].as_u64().unwrap_or(500)).unwrap_or(500)),
        Some("latency") => Behavior::Latency(ms),
        Some("hang") => Behavior::Hang,
        Some("disconnect") => Behavior::Disconnect,
        Some("stall") => Behavior::Stall,
        Some("oversized") => Behavior::OversizedEvent,
        Some("reply") => Behavior::Reply {
            text: v["text"].as_str().unwrap_or("").to_owned(),
            tool_args: v["tool_args"].as_str().map(str::to_owned),
            chunk: usize::try_from(v["chunk"].as_u64().unwrap_or(4)).unwrap_or(4),
        },
        _ => return StatusCode::BAD_REQUEST.into_response(),
    };
    s.behavior.store(Arc::new(b));
    StatusCode::NO_CONTENT.into_response()
}

async fn calls(State(s): State<Arc<Shared>>) -> Response {
    axum::Json(json!({"calls": s.calls.load(Ordering::SeqCst)})).into_response()
}
