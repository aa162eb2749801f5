//! The recorded trail of real requests, for every endpoint and every way a request ends, is the
//! chain's order ([`gatehouse_gates::ORDER`]) cut where the request stopped: a step that did not
//! run never appears as passed. The trail is what the chain hands to its span sink when the
//! request is metered, so each case also proves the request was finished exactly once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gatehouse_config::Config;
use gatehouse_core::{GateOutcome, TrailEntry};
use gatehouse_gates::ORDER;
use gatehouse_gates::authenticate::{Credentials, KeyVerifier};
use gatehouse_gates::chain::follows_order;
use gatehouse_gates::guardrails::Policies;
use gatehouse_gates::limits::LimitsBackend;
use gatehouse_gates::meter::{AuditHook, SpanSink};
use gatehouse_http::with_transport_layers;
use gatehouse_proxy::{AppState, Services, build_runtime, router};
use gatehouse_testkit::{Behavior, FakeProvider};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tokio::sync::mpsc;

struct Sink(mpsc::UnboundedSender<Vec<TrailEntry>>);

impl SpanSink for Sink {
    fn request(&self, _: &gatehouse_audit::Event, trail: &[TrailEntry], _: Option<&gatehouse_core::TraceContext>) {
        let _ = self.0.send(trail.to_vec());
    }
}

struct DataPlane {
    url: String,
    key: String,
    http: reqwest::Client,
    trails: mpsc::UnboundedReceiver<Vec<TrailEntry>>,
    fake: FakeProvider,
    _store: gatehouse_testkit::stores::TestStore,
}

const CONFIG: &str = r#"
[[providers]]
name = "fake"
kind = "openai_compatible"
base_url = "BASE_URL"
api_key = "env:FAKE_KEY"
first_byte_timeout_ms = 1500
idle_timeout_ms = 800
max_stream_duration_ms = 2500

[[models]]
name = "fake-model"
provider = "fake"

[[models]]
name = "fake-embed"
provider = "fake"
kind = "embedding"

[guardrails]
custom = [{ name = "forbidden", keywords = ["forbidden-word"], output = "block" }]
"#;

async fn data_plane() -> DataPlane {
    let fake = FakeProvider::spawn().await;
    let keyed = gatehouse_testkit::stores::keyed(None).await;
    let (store, hasher) = (keyed.test.store.clone(), keyed.hasher.clone());

    let config = Config::from_toml(&CONFIG.replace("BASE_URL", &fake.base_url())).unwrap();
    let creds =
        Credentials { keys: Arc::new(KeyVerifier::new(store.clone(), hasher, 100)), tokens: None, federated: None };
    let (tx, trails) = mpsc::unbounded_channel();
    let audit = AuditHook { spans: Some(Arc::new(Sink(tx))), ..AuditHook::off() };
    let guardrails = Arc::new(Policies::builtin().unwrap());
    let env = |name: &str| (name == "FAKE_KEY").then(|| "sk-fake".to_owned());
    let limits = Arc::new(LimitsBackend::local());
    let services = Services {
        creds,
        guardrails,
        limits,
        routing: Arc::default(),
        credentials: Arc::default(),
        cache: Arc::default(),
        audit,
        cors: Arc::default(),
    };
    let runtime = build_runtime(&config.policy, &services, &env).unwrap();
    let app = with_transport_layers(
        router(AppState::new(runtime, services, store, None)),
        gatehouse_http::Plane::Data,
        gatehouse_http::BodyPace::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap();
    });
    DataPlane {
        url,
        key: keyed.key.expose_secret().to_owned(),
        http: reqwest::Client::builder().build().unwrap(),
        trails,
        fake,
        _store: keyed.test,
    }
}

/// The chain's whole order (pinned to its literal names by the chain's own unit test).
const WHOLE: [&str; 10] = {
    let mut names = [""; 10];
    let mut i = 0;
    while i < ORDER.len() {
        names[i] = ORDER[i].as_str();
        i += 1;
    }
    names
};

impl DataPlane {
    async fn post(&self, path: &str, key: Option<&str>, body: &Value) -> reqwest::Response {
        let mut rb = self.http.post(format!("{}{path}", self.url)).json(body);
        if let Some(k) = key {
            rb = rb.bearer_auth(k);
        }
        rb.send().await.unwrap()
    }

    async fn chat(&self, model: &str, stream: bool) -> reqwest::Response {
        let body = json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]});
        self.post("/v1/chat/completions", Some(&self.key), &body).await
    }

    /// The next finished request's trail, checked against the chain's order; exactly one.
    async fn trail(&mut self) -> Vec<(&'static str, bool)> {
        let t = tokio::time::timeout(Duration::from_secs(5), self.trails.recv())
            .await
            .expect("the request was finished")
            .unwrap();
        assert!(follows_order(&t), "{t:?}");
        assert!(
            tokio::time::timeout(Duration::from_millis(50), self.trails.recv()).await.is_err(),
            "a request was finished twice"
        );
        t.iter().map(|e| (e.gate.as_str(), e.outcome == GateOutcome::Pass)).collect()
    }

    async fn names(&mut self) -> Vec<&'static str> {
        self.trail().await.into_iter().map(|(n, _)| n).collect()
    }
}

fn upto(gate: &str) -> Vec<&'static str> {
    let i = WHOLE.iter().position(|g| *g == gate).unwrap();
    [&WHOLE[..=i], &["meter"]].concat()
}

#[tokio::test]
async fn every_endpoint_served_records_the_whole_chain() {
    let mut dp = data_plane().await;
    for (model, stream) in [("mock", false), ("mock", true), ("fake-model", false), ("fake-model", true)] {
        let resp = dp.chat(model, stream).await;
        assert_eq!(resp.status(), 200, "{model} {stream}");
        let _ = resp.bytes().await.unwrap();
        let t = dp.trail().await;
        assert!(t.iter().all(|(_, pass)| *pass), "{model} {stream}: {t:?}");
        assert_eq!(t.iter().map(|(n, _)| *n).collect::<Vec<_>>(), WHOLE, "{model} {stream}");
    }
    for model in ["mock-embedding", "fake-embed"] {
        let resp = dp.post("/v1/embeddings", Some(&dp.key.clone()), &json!({"model": model, "input": "hi"})).await;
        assert_eq!(resp.status(), 200, "{model}");
        assert_eq!(dp.names().await, WHOLE, "{model}");
    }
    // listings: identity and the listing scope, answered by the gateway itself
    let resp = dp.http.get(format!("{}/v1/models", dp.url)).bearer_auth(&dp.key).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(dp.names().await, ["authenticate", "authorize", "meter"]);
    let resp = dp.http.get(format!("{}/v1/models/nope", dp.url)).bearer_auth(&dp.key).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(dp.trail().await, [("authenticate", true), ("authorize", true), ("meter", false)]);
}

#[tokio::test]
async fn a_refusal_stops_the_trail_where_it_happened() {
    let mut dp = data_plane().await;
    let hello = json!({"model": "mock", "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(dp.post("/v1/chat/completions", None, &hello).await.status(), 401);
    assert_eq!(dp.trail().await, [("authenticate", false), ("meter", false)]);

    let resp = dp.http.post(format!("{}/v1/chat/completions", dp.url)).bearer_auth(&dp.key).body("{}").send().await;
    assert_eq!(resp.unwrap().status(), 415, "no content type");
    assert_eq!(dp.trail().await, [("authenticate", true), ("parse", false), ("meter", false)]);

    let unknown = json!({"model": "nope", "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(dp.post("/v1/chat/completions", Some(&dp.key.clone()), &unknown).await.status(), 404);
    assert_eq!(dp.names().await, upto("route"));

    let wrong_kind = json!({"model": "mock", "input": "hi"});
    assert_eq!(dp.post("/v1/embeddings", Some(&dp.key.clone()), &wrong_kind).await.status(), 404);
    assert_eq!(dp.names().await, upto("route"));
    assert_eq!(dp.fake.calls(), 0, "no refusal reached the provider");
}

#[tokio::test]
async fn a_failed_provider_is_the_last_step_before_meter() {
    let mut dp = data_plane().await;
    for (behavior, stream) in
        [(Behavior::Status(500), false), (Behavior::Status(429), true), (Behavior::Redirect, false)]
    {
        dp.fake.set(behavior.clone());
        let resp = dp.chat("fake-model", stream).await;
        assert!(resp.status().is_client_error() || resp.status().is_server_error(), "{behavior:?}");
        let t = dp.trail().await;
        assert_eq!(t.iter().map(|(n, _)| *n).collect::<Vec<_>>(), upto("provider"), "{behavior:?}");
        assert_eq!(t[t.len() - 2], ("provider", false), "{behavior:?}");
    }
    // a stream whose provider goes away mid-way: the answer as a whole never reached the
    // output guardrail
    dp.fake.set(Behavior::Disconnect);
    let resp = dp.chat("fake-model", true).await;
    assert_eq!(resp.status(), 200);
    let _ = resp.bytes().await;
    assert_eq!(dp.names().await, upto("provider"));
}

#[tokio::test]
async fn a_cancelled_stream_is_finished_once_with_what_ran() {
    let mut dp = data_plane().await;
    dp.fake.set(Behavior::Endless);
    let mut resp = dp.chat("fake-model", true).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.chunk().await.unwrap().is_some());
    drop(resp);
    let t = dp.trail().await;
    assert!(t.iter().all(|(_, pass)| *pass), "{t:?}");
    assert_eq!(t.iter().map(|(n, _)| *n).collect::<Vec<_>>(), WHOLE);
}

#[tokio::test]
async fn an_answer_the_output_guardrail_blocks_records_its_refusal() {
    let mut dp = data_plane().await;
    for stream in [false, true] {
        let reply = Behavior::Reply { text: "this is a forbidden-word here".into(), tool_args: None, chunk: 4 };
        dp.fake.set(reply);
        let resp = dp.chat("fake-model", stream).await;
        let body = resp.text().await.unwrap();
        assert!(!body.contains("forbidden-word"), "{body}");
        assert!(body.contains("content_blocked"), "{body}");
        let t = dp.trail().await;
        assert_eq!(t.iter().map(|(n, _)| *n).collect::<Vec<_>>(), WHOLE, "stream {stream}");
        assert_eq!(&t[7..], [("provider", true), ("guardrails_out", false), ("meter", false)], "stream {stream}");
    }
}
