//! OpenTelemetry traces over OTLP/HTTP (protobuf), off by default: one server span per
//! data-plane request, built from the request's audit event and nothing else — request id,
//! org, project, key id, model, endpoint, outcome, code, deciding gate, HTTP status, token
//! counts, timing. No prompt, response, header or error text can reach a span because the
//! event cannot hold one. Export runs on the SDK's own thread with a bounded queue (spans are
//! dropped, and counted by the SDK, if the collector cannot keep up: telemetry must never
//! slow or block requests — the audit trail is the record, traces are not).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use gatehouse_audit::{Actor, Event};
use gatehouse_config::TelemetrySettings;
use opentelemetry::KeyValue;
use opentelemetry::trace::{Span, SpanKind, Tracer, TracerProvider};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider};

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
    fn request(&self, e: &Event, _trail: &[gatehouse_core::TrailEntry]) {
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
        let name = format!("gatehouse {}", e.endpoint.unwrap_or("request"));
        let mut span = self
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Server)
            .with_start_time(start)
            .with_attributes(attrs)
            .start(&self.tracer);
        span.end_with_timestamp(end.max(SystemTime::UNIX_EPOCH));
    }
}
