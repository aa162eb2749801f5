//! OpenTelemetry traces over OTLP/HTTP (protobuf), off by default: one server span per
//! data-plane request, built from the request's audit event and nothing else — request id,
//! org, project, key id, model, endpoint, outcome, code, deciding gate, HTTP status, token
//! counts, timing — and under it one span per step of the gate chain (name, outcome, code).
//! The trace is the caller's when it sent a W3C `traceparent`; the provider step's span is
//! the parent providers are told about when propagation is on. No prompt, response, header or
//! error text can reach a span because neither the event nor the trail can hold one. Export runs on the SDK's own thread with a bounded queue (spans are
//! dropped, and counted by the SDK, if the collector cannot keep up: telemetry must never
//! slow or block requests — the audit trail is the record, traces are not).

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use gatehouse_audit::{Actor, Event};
use gatehouse_config::TelemetrySettings;
use gatehouse_core::{GateName, GateOutcome, TraceContext, TrailEntry};
use opentelemetry::trace::{
    Span, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState, Tracer,
    TracerProvider,
};
use opentelemetry::{Context as TraceCx, KeyValue};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, IdGenerator, RandomIdGenerator, SdkTracer, SdkTracerProvider,
};

pub struct OtlpSpans {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl OtlpSpans {
    pub fn start(endpoint: &str, t: &TelemetrySettings) -> anyhow::Result<Arc<OtlpSpans>> {
        let (endpoint, timeout, interval) = (endpoint.to_owned(), t.otlp_timeout, t.otlp_export_interval);
        // The OTLP HTTP client is a blocking one living on the exporter's own thread; it must
        // be built and dropped outside the async runtime.
        let provider = std::thread::spawn(move || -> anyhow::Result<SdkTracerProvider> {
            let client = reqwest::blocking::Client::builder()
                .timeout(timeout)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .context("OTLP client")?;
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_http_client(client)
                .with_endpoint(endpoint)
                .with_timeout(timeout)
                .build()
                .context("OTLP exporter")?;
            let batch = BatchConfigBuilder::default().with_scheduled_delay(interval).with_max_queue_size(8192).build();
            Ok(SdkTracerProvider::builder()
                .with_span_processor(BatchSpanProcessor::builder(exporter).with_batch_config(batch).build())
                .with_resource(Resource::builder_empty().with_service_name("gatehouse").build())
                .with_id_generator(PlannedIds::default())
                .build())
        })
        .join()
        .map_err(|_| anyhow::anyhow!("OTLP exporter setup panicked"))??;
        let tracer = provider.tracer("gatehouse");
        tracing::info!("OTLP trace export on");
        Ok(Arc::new(OtlpSpans { provider, tracer }))
    }

    /// Flushes and stops the exporter (off the runtime: the SDK blocks).
    pub async fn shutdown(self: Arc<Self>) {
        let me = self.clone();
        let _ = tokio::task::spawn_blocking(move || me.provider.shutdown_with_timeout(Duration::from_secs(5))).await;
    }
}

impl gatehouse_gates::meter::SpanSink for OtlpSpans {
    /// One server span for the request (the caller's span as its parent when it sent a
    /// `traceparent`), and under it one span per step of its trail: the gate's name, its
    /// outcome and refusal code, from when the step before it finished to when it did.
    fn request(&self, e: &Event, trail: &[TrailEntry], trace: Option<&TraceContext>) {
        let end = e.at;
        let start = e.latency.and_then(|l| end.checked_sub(l)).unwrap_or(end);
        let mut attrs = Vec::with_capacity(14);
        let mut put = |k: &'static str, v: Option<String>| {
            if let Some(v) = v {
                attrs.push(KeyValue::new(k, v));
            }
        };
        put("gatehouse.request_id", e.request_id.map(|r| r.to_string()));
        put("gatehouse.org_id", e.org.map(|o| o.to_string()));
        put("gatehouse.project_id", e.project.map(|p| p.to_string()));
        put("gatehouse.key_id", if let Actor::Key(k) = &e.actor { Some(k.to_string()) } else { None });
        put("gatehouse.outcome", Some(e.outcome.as_str().to_owned()));
        put("gatehouse.code", Some(e.code.to_owned()));
        put("gatehouse.action", Some(e.kind.as_str().to_owned()));
        put("gatehouse.gate", e.gate.map(str::to_owned));
        put("gatehouse.stream_end", e.stream_end.map(str::to_owned));
        put("gen_ai.request.model", e.model.as_deref().map(str::to_owned));
        attrs.push(KeyValue::new("http.response.status_code", i64::from(e.status)));
        if let Some(n) = e.prompt_tokens {
            attrs.push(KeyValue::new("gen_ai.usage.input_tokens", i64::try_from(n).unwrap_or(i64::MAX)));
        }
        if let Some(n) = e.completion_tokens {
            attrs.push(KeyValue::new("gen_ai.usage.output_tokens", i64::try_from(n).unwrap_or(i64::MAX)));
        }
        let parent = match trace.and_then(|t| t.parent.map(|p| (t, p))) {
            Some((t, p)) => {
                let flags = if t.sampled { TraceFlags::SAMPLED } else { TraceFlags::default() };
                let remote = SpanContext::new(
                    TraceId::from_bytes(t.trace_id),
                    SpanId::from_bytes(p),
                    flags,
                    true,
                    TraceState::default(),
                );
                TraceCx::new().with_remote_span_context(remote)
            }
            None => TraceCx::new(),
        };
        let builder = self
            .tracer
            .span_builder(format!("gatehouse {}", e.endpoint.unwrap_or("request")))
            .with_kind(SpanKind::Server)
            .with_start_time(start)
            .with_attributes(attrs);
        let ids = (trace.map(|t| TraceId::from_bytes(t.trace_id)), trace.map(|t| SpanId::from_bytes(t.span)));
        let server = planned(ids, || builder.start_with_context(&self.tracer, &parent));
        let request = TraceCx::new().with_span(server);
        let mut from = start;
        for step in trail {
            let until = start.checked_add(step.at).unwrap_or(end).min(end).max(from);
            let mut attrs = vec![KeyValue::new("gatehouse.gate", step.gate.as_str())];
            let denied = match step.outcome {
                GateOutcome::Pass => {
                    attrs.push(KeyValue::new("gatehouse.outcome", "pass"));
                    None
                }
                GateOutcome::Serve => {
                    attrs.push(KeyValue::new("gatehouse.outcome", "serve"));
                    None
                }
                GateOutcome::Deny(code) => {
                    attrs.push(KeyValue::new("gatehouse.outcome", "deny"));
                    attrs.push(KeyValue::new("gatehouse.code", code.as_str()));
                    Some(code)
                }
            };
            let builder = self
                .tracer
                .span_builder(format!("gate {}", step.gate.as_str()))
                .with_kind(if step.gate == GateName::Provider { SpanKind::Client } else { SpanKind::Internal })
                .with_start_time(from)
                .with_attributes(attrs);
            // the provider step's span is the parent the provider was told about
            let id = trace.filter(|_| step.gate == GateName::Provider).map(|t| SpanId::from_bytes(t.provider_span));
            let mut span = planned((None, id), || builder.start_with_context(&self.tracer, &request));
            if let Some(code) = denied {
                span.set_status(Status::error(code.as_str()));
            }
            span.end_with_timestamp(until);
            from = until;
        }
        if e.code != "ok" {
            request.span().set_status(Status::error(e.code));
        }
        request.span().end_with_timestamp(end.max(SystemTime::UNIX_EPOCH));
    }
}

thread_local! {
    /// The ids the next span started on this thread takes (see [`PlannedIds`]).
    static PLANNED: Cell<(Option<TraceId>, Option<SpanId>)> = const { Cell::new((None, None)) };
}

/// Starts a span (synchronously, on this thread) with the given trace and span ids; `None`
/// takes the parent's trace, or a random id.
fn planned<T>(ids: (Option<TraceId>, Option<SpanId>), start: impl FnOnce() -> T) -> T {
    PLANNED.set(ids);
    let span = start();
    PLANNED.set((None, None));
    span
}

/// The SDK takes a span's ids only from its generator, but a request's ids are chosen when it
/// arrives (the provider was told its parent before any span existed): this generator hands
/// out the ids planned for the span being started on this thread, once, and random ones
/// otherwise.
#[derive(Debug, Default)]
struct PlannedIds(RandomIdGenerator);

impl IdGenerator for PlannedIds {
    fn new_trace_id(&self) -> TraceId {
        let (trace, span) = PLANNED.get();
        PLANNED.set((None, span));
        trace.unwrap_or_else(|| self.0.new_trace_id())
    }

    fn new_span_id(&self) -> SpanId {
        let (trace, span) = PLANNED.get();
        PLANNED.set((trace, None));
        span.unwrap_or_else(|| self.0.new_span_id())
    }
}
