//! Meter & audit: metrics, one log event and one audit event per finished request.
//! Content-free by construction: nothing here can reach the prompt or the response, only
//! ids, counts and codes.

use std::sync::Arc;

use gatehouse_audit::{Actor, Auditor, Event, EventKind, Outcome};
use gatehouse_core::{DenyCode, GateName, GateOutcome, OrgId, ProjectId, RequestCx, TraceContext, TrailEntry};
use gatehouse_providers::Usage;
use metrics::{Counter, Histogram};

/// Where data-plane decisions go. `None` only in benchmarks and unit tests of the chain.
#[derive(Clone)]
pub struct AuditHook {
    pub auditor: Option<Auditor>,
    /// Audit allowed requests too, not only refusals and failures.
    pub allowed_too: bool,
    /// Trace export (OTLP), off by default. It receives the audit event — the same
    /// allow-listed fields — and nothing else.
    pub spans: Option<std::sync::Arc<dyn SpanSink>>,
    /// Tell providers each request's W3C trace context (`traceparent`).
    pub propagate: bool,
    /// Metric handles by label set: building a request's labels (seven, three of them owned
    /// strings) and hashing them into the registry cost more than the rest of the meter, and a
    /// deployment sees few label sets. Made after the process's recorder is installed.
    pub meters: Arc<Meters>,
}

/// The cache of [`RequestMeters`] by label set.
pub struct Meters(quick_cache::sync::Cache<MeterKey, Arc<RequestMeters>>);

impl Default for Meters {
    fn default() -> Self {
        // beyond this many label sets, the least used are rebuilt when they come back
        Meters(quick_cache::sync::Cache::new(4096))
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct MeterKey {
    endpoint: &'static str,
    outcome: &'static str,
    code: &'static str,
    gate: &'static str,
    tenant: Option<(OrgId, ProjectId)>,
    model: Option<Arc<str>>,
}

/// The handles one finished request updates.
pub struct RequestMeters {
    requests: Counter,
    duration: Histogram,
    prompt_tokens: Counter,
    completion_tokens: Counter,
}

impl Meters {
    fn get(&self, k: MeterKey) -> Arc<RequestMeters> {
        if let Some(m) = self.0.get(&k) {
            return m;
        }
        let (org, project) =
            k.tenant.map_or_else(|| (String::new(), String::new()), |(o, p)| (o.to_string(), p.to_string()));
        let model = k.model.as_deref().unwrap_or("").to_owned();
        let m = Arc::new(RequestMeters {
            requests: metrics::counter!("gatehouse_requests_total",
                "endpoint" => k.endpoint, "outcome" => k.outcome, "code" => k.code, "gate" => k.gate,
                "org" => org.clone(), "project" => project.clone(), "model" => model.clone()),
            duration: metrics::histogram!("gatehouse_request_duration_seconds", "endpoint" => k.endpoint, "outcome" => k.outcome),
            prompt_tokens: metrics::counter!("gatehouse_tokens_total", "kind" => "prompt", "org" => org.clone(), "project" => project.clone(), "model" => model.clone()),
            completion_tokens: metrics::counter!("gatehouse_tokens_total", "kind" => "completion", "org" => org, "project" => project, "model" => model),
        });
        self.0.insert(k, m.clone());
        m
    }
}

/// Receives one finished request as its (content-free) audit event, with the trail of the
/// steps it went through (gate names, outcomes, when each finished) and its trace context.
pub trait SpanSink: Send + Sync {
    fn request(&self, e: &Event, trail: &[TrailEntry], trace: Option<&TraceContext>);
}

impl std::fmt::Debug for AuditHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditHook").field("allowed_too", &self.allowed_too).finish_non_exhaustive()
    }
}

impl AuditHook {
    pub fn off() -> AuditHook {
        AuditHook { auditor: None, allowed_too: false, spans: None, propagate: false, meters: Arc::default() }
    }

    /// A request's trace context (`incoming`: reads its `traceparent` header), made only when
    /// spans are exported or providers are told it: otherwise tracing costs a request nothing,
    /// not even the header lookup.
    pub fn trace<'a>(&self, incoming: impl FnOnce() -> Option<&'a [u8]>) -> Option<TraceContext> {
        (self.spans.is_some() || self.propagate).then(|| TraceContext::start(incoming(), self.propagate))
    }

    /// False when the trail is fail-closed and cannot record: requests are then refused.
    pub fn accepting(&self) -> bool {
        self.auditor.as_ref().is_none_or(Auditor::accepting)
    }
}

/// The event kind of a refusal, by the gate that decided it.
fn kind(gate: Option<GateName>, done: &Finished) -> EventKind {
    match gate {
        None if done.code.is_some() && done.reached_provider => EventKind::ProviderFailed,
        None if done.code.is_some() => EventKind::RequestDenied,
        None => EventKind::RequestAllowed,
        Some(GateName::Authenticate) => EventKind::AuthApiKey,
        Some(GateName::Parse) => EventKind::RequestInvalid,
        Some(GateName::GuardrailsIn | GateName::GuardrailsOut) => EventKind::GuardrailBlocked,
        Some(GateName::Route) => EventKind::ProviderNoRoute,
        Some(GateName::Limits) => EventKind::LimitExceeded,
        Some(GateName::Provider | GateName::Meter) => EventKind::ProviderFailed,
        Some(GateName::Authorize | GateName::Cache) => EventKind::RequestDenied,
    }
}

/// How a request ended.
#[derive(Clone, Copy, Debug)]
pub struct Finished {
    pub endpoint: &'static str,
    pub status: u16,
    pub code: Option<DenyCode>,
    pub usage: Option<Usage>,
    pub reached_provider: bool,
    /// For streams: "completed", "cancelled", "upstream_failed", "cut".
    pub stream_end: Option<&'static str>,
}

impl Finished {
    pub fn served(endpoint: &'static str, status: u16, usage: Option<Usage>) -> Self {
        Finished { endpoint, status, code: None, usage, reached_provider: true, stream_end: None }
    }

    /// A model listing: answered by the gateway itself.
    /// A lookup answered without a provider (`models`, `count_tokens`).
    pub fn listed(endpoint: &'static str) -> Self {
        Finished { endpoint, status: 200, code: None, usage: None, reached_provider: false, stream_end: None }
    }

    pub fn refused(endpoint: &'static str, code: DenyCode) -> Self {
        Finished {
            endpoint,
            status: code.status(),
            code: Some(code),
            usage: None,
            reached_provider: false,
            stream_end: None,
        }
    }
}

/// Histogram buckets for request latency, in seconds: from 100 µs (gateway overhead) to
/// minutes (long streams). Explicit, so Prometheus gets aggregatable histograms.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0,
];

pub fn record(hook: &AuditHook, cx: &RequestCx, done: &Finished) {
    let elapsed = cx.started.elapsed();
    let outcome = match done.code {
        None => "allowed",
        Some(_) if done.reached_provider => "upstream_failed",
        Some(_) => "denied",
    };
    let code = done.code.map_or("ok", DenyCode::as_str);
    // The gate that decided: the one that refused, or none for an allowed request.
    let deciding = cx
        .trail
        .iter()
        .find(|e| matches!(e.outcome, GateOutcome::Deny(_)) && e.gate != GateName::Meter)
        .map(|e| e.gate);
    let gate = deciding.map_or("none", GateName::as_str);

    let meters = hook.meters.get(MeterKey {
        endpoint: done.endpoint,
        outcome,
        code,
        gate,
        tenant: cx.principal.as_ref().map(|p| (p.org, p.project)),
        model: cx.route.as_ref().map(|r| r.model.clone()),
    });
    meters.requests.increment(1);
    meters.duration.record(elapsed.as_secs_f64());
    if let Some(u) = done.usage {
        meters.prompt_tokens.increment(u.prompt_tokens);
        meters.completion_tokens.increment(u.completion_tokens);
    }

    for h in &cx.guardrails {
        // custom rule names are the operator's: one label value for all of them
        let detector: &'static str = match &h.detector {
            std::borrow::Cow::Borrowed(d) => d,
            std::borrow::Cow::Owned(_) => "custom",
        };
        metrics::counter!("gatehouse_guardrail_hits_total", "direction" => h.direction, "action" => h.action, "detector" => detector)
            .increment(u64::from(h.count));
    }

    let principal = cx.principal.as_ref();
    tracing::info!(
        target: "gatehouse::audit",
        request_id = %cx.request_id,
        org = principal.map(|p| tracing::field::display(p.org)),
        project = principal.map(|p| tracing::field::display(p.project)),
        credential = principal.map(|p| tracing::field::display(Actor::of(&p.credential).render())),
        model = cx.route.as_ref().map(|r| &*r.model),
        provider = cx.route.as_ref().map(|r| &*r.provider),
        endpoint = done.endpoint,
        status = done.status,
        outcome,
        code,
        gate,
        stream_end = done.stream_end,
        cache = cx.cache_hit.then_some("hit"),
        prompt_tokens = done.usage.map(|u| u.prompt_tokens),
        completion_tokens = done.usage.map(|u| u.completion_tokens),
        latency_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        "request finished"
    );

    // a guardrail that flagged or redacted is recorded whatever the data-plane audit level:
    // `flag` means exactly that
    let audit = hook
        .auditor
        .as_ref()
        .filter(|_| done.code.is_some() || hook.allowed_too || !cx.guardrails.is_empty() || cx.limits_degraded);
    if audit.is_none() && hook.spans.is_none() {
        return;
    }
    let out = match outcome {
        "allowed" => Outcome::Allowed,
        "denied" => Outcome::Denied,
        _ => Outcome::Failed,
    };
    let actor = principal.map_or(Actor::Anonymous, |p| Actor::of(&p.credential));
    let kind = match kind(deciding, done) {
        EventKind::RequestAllowed if cx.limits_degraded => EventKind::LimitFailOpen,
        EventKind::RequestAllowed if !cx.guardrails.is_empty() => EventKind::GuardrailFlagged,
        k => k,
    };
    let mut e = Event::new(kind, out, done.status, code, actor);
    e.org = principal.map(|p| p.org);
    e.project = principal.map(|p| p.project);
    e.request_id = Some(cx.request_id);
    e.source = cx.source;
    e.endpoint = Some(done.endpoint);
    e.gate = deciding.map(GateName::as_str);
    e.model = cx.route.as_ref().map(|r| r.model.clone());
    if done.reached_provider {
        // the deployment that answered (a fallback updates the route), or the last that failed
        e.provider = cx.route.as_ref().map(|r| r.provider.clone());
        e.provider_credential = cx.provider_credential.clone();
    }
    e.stream_end = done.stream_end;
    e.cache = cx.cache_hit.then_some("hit");
    e.latency = Some(elapsed);
    e.prompt_tokens = done.usage.map(|u| u.prompt_tokens);
    e.completion_tokens = done.usage.map(|u| u.completion_tokens);
    e.guardrails = cx.guardrails.clone();
    e.mcp = cx.mcp.clone();
    if let Some(s) = &hook.spans {
        s.request(&e, &cx.trail, cx.trace.as_ref());
    }
    if let Some(a) = audit {
        a.submit(e);
    }
}
