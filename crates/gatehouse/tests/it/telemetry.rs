//! OpenTelemetry: one span per gate under each request's span, exported over OTLP to a local
//! collector and decoded as a collector decodes them; the caller's W3C trace continued, and the
//! provider told its parent only when propagation is on.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind, status::StatusCode};
use prost::Message;
use serde_json::json;
use tokio::sync::Mutex;

use crate::common::{PROVIDER_SECRET, gateway, upstream_config};

type Spans = Arc<Mutex<Vec<Span>>>;

/// An OTLP/HTTP collector: decodes every export and keeps its spans.
async fn collector() -> (String, Spans) {
    let spans: Spans = Spans::default();
    let app = axum::Router::new()
        .route(
            "/v1/traces",
            axum::routing::post(
                |axum::extract::State(s): axum::extract::State<Spans>, body: axum::body::Bytes| async move {
                    let req = ExportTraceServiceRequest::decode(body).unwrap();
                    let mut s = s.lock().await;
                    for r in req.resource_spans {
                        for scope in r.scope_spans {
                            s.extend(scope.spans);
                        }
                    }
                },
            ),
        )
        .with_state(spans.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1/traces"), spans)
}

fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes.iter().find(|a| a.key == key).and_then(|a| match a.value.as_ref()?.value.as_ref()? {
        AnyValue::StringValue(s) => Some(s.clone()),
        AnyValue::IntValue(i) => Some(i.to_string()),
        _ => None,
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The request span carrying `request_id`, and its children in time order, once exported.
async fn request_spans(spans: &Spans, request_id: &str) -> (Span, Vec<Span>) {
    let found = gatehouse_testkit::eventually(Duration::from_secs(30), || async {
        let s = spans.lock().await;
        s.iter().find(|x| attr(x, "gatehouse.request_id").as_deref() == Some(request_id)).is_some_and(|server| {
            s.iter()
                .any(|c| c.parent_span_id == server.span_id && attr(c, "gatehouse.gate").as_deref() == Some("meter"))
        })
    })
    .await;
    assert!(found, "the request's spans reached the collector");
    let s = spans.lock().await;
    let server = s.iter().find(|x| attr(x, "gatehouse.request_id").as_deref() == Some(request_id)).unwrap().clone();
    let mut children: Vec<Span> = s.iter().filter(|c| c.parent_span_id == server.span_id).cloned().collect();
    children.sort_by_key(|c| (c.start_time_unix_nano, c.end_time_unix_nano));
    (server, children)
}

/// A gateway in front of `fake` exporting to `endpoint`, with `extra` `[telemetry]` lines.
async fn traced(fake: &gatehouse_testkit::FakeProvider, endpoint: &str, extra: &str) -> gatehouse_testkit::TestGateway {
    let telemetry = format!("[telemetry]\notlp_endpoint = \"{endpoint}\"\notlp_export_interval_ms = 100\n{extra}");
    gateway().config(&upstream_config(fake)).config(&telemetry).env("FAKE_UPSTREAM_KEY", PROVIDER_SECRET).spawn().await
}

/// A chat request sending `traceparent`.
async fn chat_traced(gw: &gatehouse_testkit::TestGateway, key: &str, traceparent: &str) -> reqwest::Response {
    let body = json!({"model": "fake-model", "messages": [{"role": "user", "content": "hello"}]});
    let url = format!("{}/v1/chat/completions", gw.data_url);
    gw.http.post(url).bearer_auth(key).header("traceparent", traceparent).json(&body).send().await.unwrap()
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test]
async fn each_gate_is_a_span_under_the_callers_trace_and_the_provider_is_told_its_parent() {
    let (endpoint, spans) = collector().await;
    let fake = gatehouse_testkit::FakeProvider::spawn().await;
    let gw = traced(&fake, &endpoint, "propagate_trace_context = true\n").await;
    let key = gw.key().to_owned();
    let resp = chat_traced(&gw, &key, &format!("00-{TRACE}-{CALLER_SPAN}-01")).await;
    assert_eq!(resp.status(), 200);
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();

    // the provider hears our trace, with our provider step as its parent (not the caller's span)
    let sent = fake.last_request().unwrap().headers["traceparent"].to_str().unwrap().to_owned();
    let parts: Vec<&str> = sent.split('-').collect();
    assert_eq!((parts.len(), parts[0], parts[1], parts[3]), (4, "00", TRACE, "01"), "{sent}");
    assert_ne!(parts[2], CALLER_SPAN);

    let (server, steps) = request_spans(&spans, &request_id).await;
    assert_eq!(hex(&server.trace_id), TRACE, "the caller's trace continues");
    assert_eq!(hex(&server.parent_span_id), CALLER_SPAN, "under the caller's span");
    assert_eq!(server.kind, SpanKind::Server as i32);
    let names: Vec<String> = steps.iter().map(|s| attr(s, "gatehouse.gate").unwrap()).collect();
    let order: Vec<&str> = gatehouse_gates::chain::ORDER.iter().map(|g| g.as_str()).collect();
    assert_eq!(names, order, "every gate of a served request, in the chain's order");
    for (s, name) in steps.iter().zip(&names) {
        assert_eq!(s.name, format!("gate {name}"));
        assert_eq!(hex(&s.trace_id), TRACE);
        assert_eq!(attr(s, "gatehouse.outcome").as_deref(), Some("pass"), "{name}");
        assert!(
            s.start_time_unix_nano >= server.start_time_unix_nano && s.end_time_unix_nano <= server.end_time_unix_nano
        );
        assert!(s.start_time_unix_nano <= s.end_time_unix_nano);
    }
    for pair in steps.windows(2) {
        assert_eq!(pair[0].end_time_unix_nano, pair[1].start_time_unix_nano, "each step starts where the last ended");
    }
    let provider = steps.iter().find(|s| attr(s, "gatehouse.gate").as_deref() == Some("provider")).unwrap();
    assert_eq!(hex(&provider.span_id), parts[2], "the provider's parent is our provider step");
    assert_eq!(provider.kind, SpanKind::Client as i32);

    // a refusal: a new trace (no traceparent sent), the deciding gate marked with its code
    let body = json!({"model": "fake-model", "messages": [{"role": "user", "content": "hello"}]});
    let resp = gw.post("/v1/chat/completions", Some("gth_wrong"), &body).await;
    assert_eq!(resp.status(), 401);
    let refused_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let (server, steps) = request_spans(&spans, &refused_id).await;
    assert!(server.parent_span_id.is_empty() && hex(&server.trace_id) != TRACE);
    let names: Vec<String> = steps.iter().map(|s| attr(s, "gatehouse.gate").unwrap()).collect();
    assert_eq!(names, ["authenticate", "meter"], "a gate that did not run has no span");
    assert_eq!(attr(&steps[0], "gatehouse.outcome").as_deref(), Some("deny"));
    assert_eq!(attr(&steps[0], "gatehouse.code").as_deref(), Some("invalid_api_key"));
    assert_eq!(steps[0].status.as_ref().unwrap().code, StatusCode::Error as i32);
    assert_eq!(server.status.as_ref().unwrap().code, StatusCode::Error as i32);

    // a malformed traceparent starts a new trace; nothing of it is echoed anywhere
    let resp = chat_traced(&gw, &key, "00-NOT-A-TRACE-01").await;
    assert_eq!(resp.status(), 200);
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let (server, _) = request_spans(&spans, &id).await;
    assert!(server.parent_span_id.is_empty());
    let sent = fake.last_request().unwrap().headers["traceparent"].to_str().unwrap().to_owned();
    assert_eq!(sent.split('-').nth(1), Some(hex(&server.trace_id).as_str()));
}

/// Off by default: tracing on without propagation tells the provider nothing, and the caller's
/// own `traceparent` never passes through.
#[tokio::test]
async fn without_propagation_the_provider_hears_no_trace_context() {
    let (endpoint, spans) = collector().await;
    let fake = gatehouse_testkit::FakeProvider::spawn().await;
    let gw = traced(&fake, &endpoint, "").await;
    // the caller chose not to sample this one: nothing of it is exported
    let unsampled = chat_traced(&gw, gw.key(), &format!("00-{TRACE}-{CALLER_SPAN}-00")).await;
    assert_eq!(unsampled.status(), 200);
    let unsampled = unsampled.headers()["x-request-id"].to_str().unwrap().to_owned();
    let resp = chat_traced(&gw, gw.key(), &format!("00-{TRACE}-{CALLER_SPAN}-01")).await;
    assert_eq!(resp.status(), 200);
    let recorded = fake.last_request().unwrap();
    assert!(recorded.headers.get("traceparent").is_none() && recorded.headers.get("tracestate").is_none());
    // the spans still continue the caller's trace
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let (server, steps) = request_spans(&spans, &id).await;
    assert_eq!(hex(&server.trace_id), TRACE);
    assert_eq!(steps.len(), gatehouse_gates::chain::ORDER.len());
    let s = spans.lock().await;
    assert!(!s.iter().any(|x| attr(x, "gatehouse.request_id").as_deref() == Some(unsampled.as_str())));
}
