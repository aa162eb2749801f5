//! THE order of the request path. Read this file top to bottom to know what runs before what;
//! [`ORDER`] names it, and the trail every request records (one entry per gate that actually
//! ran, in this order) is tested against it for every endpoint and every way a request ends.
//!
//!   [audit trail accepting] -> authenticate -> parse -> authorize -> guardrails(in) -> route
//!     -> limits -> cache -> provider -> guardrails(out) -> meter & audit
//!
//! The proxy makes two calls: [`admit`] (the request half), then one of the methods of the
//! [`Answer`] it returns (the response half: provider outcome, output guardrails, settling the
//! budget hold, meter & audit). A refusal by [`admit`] is already metered and audited.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use gatehouse_core::{
    Denial, DenyCode, GateName, GateOutcome, Principal, Rates, RequestCx, RequestId, Route, TrailEntry,
};
use gatehouse_providers::chat::Origin;
use gatehouse_providers::{ApiRequest, Endpoint, RequestBounds, SseEvent, Usage, usage_from_chunk};

use crate::authenticate::{AuthenticateGate, Credentials};
use crate::authorize::AuthorizeGate;
use crate::cache::{CacheGate, CacheLookup, CacheStep, Entry, ResponseCache};
use crate::guardrails::{GuardrailsInGate, GuardrailsOutGate, Policies, Session, WholeAnswer};
use crate::ledger::{Hold, Used};
use crate::limits::LimitsGate;
use crate::meter::{self, AuditHook, Finished};
use crate::route::{RouteGate, RouteTable};
use crate::tenant_routes::RoutingRules;
use crate::{CachedResponse, Gate, Verdict};

/// The order of the steps of a request that runs the whole chain. A request's trail is always
/// this list, cut where the request stopped (a refusal, a failed provider), then `meter`;
/// `provider` and `guardrails_out` appear only if they ran. A cache hit (`cache` serves) skips
/// `provider` and goes on to `guardrails_out`.
pub const ORDER: [GateName; 10] = [
    GateName::Authenticate,
    GateName::Parse,
    GateName::Authorize,
    GateName::GuardrailsIn,
    GateName::Route,
    GateName::Limits,
    GateName::Cache,
    GateName::Provider,
    GateName::GuardrailsOut,
    GateName::Meter,
];

/// Every gate of one config snapshot. Built at start and on each reload.
pub struct Gates {
    pub authenticate: AuthenticateGate,
    pub parse: ParseGate,
    pub authorize: AuthorizeGate,
    pub guardrails_in: GuardrailsInGate,
    pub route: RouteGate,
    pub limits: LimitsGate,
    pub cache: CacheGate,
    pub guardrails_out: GuardrailsOutGate,
    pub table: Arc<RouteTable>,
    pub audit: AuditHook,
}

impl Gates {
    /// The gates for one snapshot: the key verifier is shared across snapshots (its cache
    /// survives reloads); the route table and bounds come from the snapshot's policy.
    pub fn new(
        creds: Credentials,
        policies: Arc<Policies>,
        limits: LimitsGate,
        table: Arc<RouteTable>,
        tenants: TenantRouting,
        bounds: RequestBounds,
        audit: AuditHook,
    ) -> Gates {
        let TenantRouting { rules, cache } = tenants;
        Gates {
            authenticate: AuthenticateGate { creds },
            parse: ParseGate { bounds },
            authorize: AuthorizeGate { table: table.clone() },
            guardrails_in: GuardrailsInGate { policies },
            route: RouteGate { table: table.clone(), rules: rules.clone() },
            limits,
            cache: CacheGate { cache, rules },
            guardrails_out: GuardrailsOutGate,
            table,
            audit,
        }
    }
}

/// What tenants set for the route and cache steps (kept across config snapshots): their
/// routing rules, and the response cache their TTLs fill.
#[derive(Default)]
pub struct TenantRouting {
    pub rules: Arc<RoutingRules>,
    pub cache: Arc<ResponseCache>,
}

/// The bounded parse (depth, counts) before any gate walks the body.
pub struct ParseGate {
    pub bounds: RequestBounds,
}

/// A body as read from the client, for the endpoint it was sent to.
pub struct RawBody {
    pub endpoint: Endpoint,
    pub bytes: Bytes,
    pub origin: Option<Box<Origin>>,
}

/// What an ingress hands the chain: the request in Chat Completions' format and, from an
/// ingress of another API family, what its caller said that the format cannot carry.
pub struct Incoming {
    pub bytes: Bytes,
    pub origin: Option<Box<Origin>>,
}

impl From<Bytes> for Incoming {
    fn from(bytes: Bytes) -> Incoming {
        Incoming { bytes, origin: None }
    }
}

impl Gate<RawBody> for ParseGate {
    type Pass = ApiRequest;
    const NAME: GateName = GateName::Parse;

    async fn check(&self, cx: &mut RequestCx, body: &mut RawBody) -> Verdict<ApiRequest> {
        match ApiRequest::parse(body.endpoint, &body.bytes, self.bounds) {
            Ok(mut req) => {
                cx.requested_model = Some(req.model.as_str().into());
                req.origin = body.origin.take();
                Verdict::Pass(req)
            }
            Err(e) => Verdict::Deny(e.denial()),
        }
    }
}

/// Why a gate stopped the request half: a refusal, or an answer to serve instead of the
/// provider's (a cache hit, which goes on to the response half).
#[derive(Debug)]
pub enum Stop {
    Deny(Denial),
    Serve(CachedResponse),
}

impl From<Stop> for Denial {
    fn from(s: Stop) -> Denial {
        match s {
            Stop::Deny(d) => d,
            // only the cache step serves, and admission takes its answer on
            Stop::Serve(_) => Denial::new(DenyCode::Internal),
        }
    }
}

impl From<Denial> for Stop {
    fn from(d: Denial) -> Self {
        Stop::Deny(d)
    }
}

/// A request refused in [`admit`], already metered and audited: the refusal, and the rates
/// that applied (for the `x-ratelimit-*` headers).
#[derive(Debug)]
pub struct Stopped {
    pub denial: Denial,
    pub rates: Rates,
    /// The caller's project's CORS origins, when the refusal came after it was known.
    pub cors: Option<Arc<[Box<str>]>>,
}

impl Stopped {
    /// Whether a page of `origin` may read this refusal (docs/SECURITY.md, "Browser apps").
    pub fn allows_origin(&self, origin: &[u8]) -> bool {
        self.cors.as_deref().is_some_and(|list| gatehouse_core::lists_origin(list, origin))
    }
}

/// A request that passed every gate and may go to its provider.
pub struct Admitted {
    /// The request as the gates left it (redacted by the input guardrail, if need be).
    pub request: ApiRequest,
    /// The response half of the chain for this request.
    pub answer: Answer,
}

/// Runs one gate and records what it decided; the only place the request half writes the trail
/// (the MCP door, `gatehouse-mcp`, runs its steps through it too).
pub async fn run<G, In>(gate: &G, cx: &mut RequestCx, input: &mut In) -> Result<G::Pass, Stop>
where
    G: Gate<In>,
    In: ?Sized + Send,
{
    match gate.check(cx, input).await {
        Verdict::Pass(p) => {
            cx.record(G::NAME, GateOutcome::Pass);
            Ok(p)
        }
        Verdict::Deny(d) => {
            cx.record(G::NAME, GateOutcome::Deny(d.code));
            Err(Stop::Deny(d))
        }
        Verdict::Serve(r) => {
            cx.record(G::NAME, GateOutcome::Serve);
            Err(Stop::Serve(r))
        }
    }
}

/// Everything that must hold before a provider sees the request. Takes the request's context;
/// gives it back inside the [`Answer`], or meters and audits the refusal.
pub async fn admit<B, T, E>(g: &Gates, mut cx: RequestCx, endpoint: Endpoint, body: B) -> Result<Admitted, Stopped>
where
    B: Future<Output = Result<T, E>>,
    T: Into<Incoming>,
    E: Into<Denial>,
{
    match admit_steps(g, &mut cx, endpoint, body).await {
        Ok((request, guard, hold, cached)) => {
            let answer = Answer::new(g.audit.clone(), cx, endpoint, guard, hold, g.cache.cache.clone(), cached);
            Ok(Admitted { request, answer })
        }
        Err(d) => {
            let rates = cx.rates();
            let cors = cx.principal.as_ref().and_then(|p| p.cors_origins.clone());
            finish(&g.audit, &mut cx, Finished::refused(endpoint.as_str(), d.code));
            Err(Stopped { denial: d, rates, cors })
        }
    }
}

async fn admit_steps<B, T, E>(
    g: &Gates,
    cx: &mut RequestCx,
    endpoint: Endpoint,
    body: B,
) -> Result<(ApiRequest, Session, Hold, CacheStep), Denial>
where
    B: Future<Output = Result<T, E>>,
    T: Into<Incoming>,
    E: Into<Denial>,
{
    // A deployment that requires an audit trail (fail-closed) serves nothing it cannot record.
    audit_accepting(g)?;
    // Identity first, from headers only: an anonymous caller learns nothing from the body's
    // validation, and every later gate keys on tenant, project and key.
    run(&g.authenticate, cx, &mut ()).await?;
    // The body is read (size-capped by the transport) only for an authenticated caller, so
    // anonymous traffic cannot make the gateway buffer anything.
    // (an ingress that translates another API family refuses what it cannot read here)
    let Incoming { bytes, origin } = body
        .await
        .map_err(|e| {
            let d: Denial = e.into();
            cx.record(GateName::Parse, GateOutcome::Deny(d.code));
            d
        })?
        .into();
    // Bounded parse (depth, counts) before any gate walks the body.
    let mut req = run(&g.parse, cx, &mut RawBody { endpoint, bytes, origin }).await?;
    // Before routing, so a caller without rights learns nothing about deployments.
    run(&g.authorize, cx, &mut req).await?;
    // The prompt is checked before a cache or provider can see it: a blocked prompt is never
    // stored, a redacted one is stored redacted.
    let guard = run(&g.guardrails_in, cx, &mut req).await?;
    // Resolve model -> deployment; limits and budgets are priced per resolved model.
    run(&g.route, cx, &mut req).await?;
    // Rates, then the worst case reserved on every budget; the hold settles it later.
    let hold = run(&g.limits, cx, &mut req).await?;
    // Last, so a hit is only served to a request that passed every check above; a hit is
    // then answered through the response half like a provider's answer (output guardrails of
    // the current policy, settled as a hit, metered and audited).
    let lookup = &mut CacheLookup { request: &req, policy: guard.policy.fingerprint };
    let cached = match run(&g.cache, cx, lookup).await {
        Ok(step) => step,
        Err(Stop::Serve(hit)) => CacheStep::Hit(hit.0),
        Err(Stop::Deny(d)) => return Err(d),
    };
    Ok((req, guard, hold, cached))
}

/// `GET /v1/models` and `GET /v1/models/{model}`: identity and the listing scope only; the
/// listing itself is filtered by the allow-list ([`Listing::may_use`]).
pub async fn admit_listing(g: &Gates, cx: RequestCx) -> Result<Listing, Denial> {
    admit_lookup(g, cx, Lookup::Models).await
}

/// A read that reaches no provider and spends nothing: the model listing, or counting a
/// prompt's tokens. Identity and the lookup's scope; models by the allow-list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    Models,
    /// `POST /v1/messages/count_tokens`: as much a part of chatting as the chat itself.
    CountTokens,
}

impl Lookup {
    const fn action(self) -> &'static str {
        match self {
            Lookup::Models => LISTING_ACTION,
            Lookup::CountTokens => Endpoint::ChatCompletions.action(),
        }
    }

    const fn endpoint(self) -> &'static str {
        match self {
            Lookup::Models => "models",
            Lookup::CountTokens => "count_tokens",
        }
    }
}

pub async fn admit_lookup(g: &Gates, mut cx: RequestCx, lookup: Lookup) -> Result<Listing, Denial> {
    let checked = match audit_accepting(g) {
        Ok(()) => run(&g.authenticate, &mut cx, &mut ()).await.map_err(|_| ()),
        Err(_) => Err(()),
    };
    let refusal = match checked {
        Err(()) => cx.trail.last().map_or(DenyCode::Unavailable, |e| match e.outcome {
            GateOutcome::Deny(c) => c,
            _ => DenyCode::Internal,
        }),
        Ok(()) if cx.principal.as_ref().is_some_and(|p| !p.may(lookup.action())) => {
            cx.record(GateName::Authorize, GateOutcome::Deny(DenyCode::PermissionDenied));
            DenyCode::PermissionDenied
        }
        Ok(()) => {
            cx.record(GateName::Authorize, GateOutcome::Pass);
            return Ok(Listing { audit: g.audit.clone(), cx, lookup, done: false });
        }
    };
    finish(&g.audit, &mut cx, Finished::refused(lookup.endpoint(), refusal));
    Err(Denial::new(refusal))
}

/// The scope `GET /v1/models` needs from a capability token.
pub const LISTING_ACTION: &str = "models:read";

/// An admitted model listing; metered when answered (or dropped).
pub struct Listing {
    audit: AuditHook,
    cx: RequestCx,
    lookup: Lookup,
    done: bool,
}

impl Listing {
    /// Whether a page of `origin` may read the answer: the caller's project lists it.
    pub fn allows_origin(&self, origin: &[u8]) -> bool {
        self.cx.principal.as_ref().is_some_and(|p| p.allows_origin(origin))
    }

    /// Whether the caller may see a model, by canonical name.
    pub fn may_use(&self, canonical: &str) -> bool {
        AuthorizeGate::may_use(&self.cx, canonical)
    }

    /// The model asked for is not one this caller can see.
    pub fn not_found(self) -> Denial {
        self.refuse(Denial::new(DenyCode::ModelNotFound).with_param("model"))
    }

    /// The lookup is refused (the model is not visible, or the body is bad): audited as such.
    pub fn refuse(mut self, d: Denial) -> Denial {
        self.done = true;
        finish(&self.audit, &mut self.cx, Finished::refused(self.lookup.endpoint(), d.code));
        d
    }
}

impl Drop for Listing {
    fn drop(&mut self) {
        if !self.done {
            finish(&self.audit, &mut self.cx, Finished::listed(self.lookup.endpoint()));
        }
    }
}

fn audit_accepting(g: &Gates) -> Result<(), Stop> {
    if g.audit.accepting() { Ok(()) } else { Err(Stop::Deny(Denial::new(DenyCode::Unavailable))) }
}

/// Meter & audit: the last step of every request, exactly once.
pub fn finish(audit: &AuditHook, cx: &mut RequestCx, done: Finished) {
    cx.record(GateName::Meter, done.code.map_or(GateOutcome::Pass, GateOutcome::Deny));
    // every request of every test (unit and end-to-end, which run debug builds) checks this
    debug_assert!(follows_order(&cx.trail), "trail out of order: {:?}", cx.trail);
    meter::record(audit, cx, &done);
}

/// Whether a recorded trail is one the chain can produce: steps in [`ORDER`], each at most
/// once, ending with `meter`; at most one step before `meter` refuses (or serves), and it is
/// the last one before `meter`, which then carries the same refusal. A step that did not run
/// is absent, never recorded as passed.
pub fn follows_order(trail: &[TrailEntry]) -> bool {
    let Some((last, steps)) = trail.split_last() else { return false };
    if last.gate != GateName::Meter {
        return false;
    }
    let position = |g: GateName| ORDER.iter().position(|o| *o == g);
    let mut prev = None;
    for e in trail {
        let Some(i) = position(e.gate) else { return false };
        if prev.is_some_and(|p| i <= p) {
            return false;
        }
        prev = Some(i);
    }
    if let Some(i) = steps.iter().position(|e| e.outcome == GateOutcome::Serve) {
        // a cache hit reaches no provider: only the output guardrail may follow it
        if steps[i].gate != GateName::Cache || steps[i + 1..].iter().any(|e| e.gate != GateName::GuardrailsOut) {
            return false;
        }
    }
    let stops: Vec<_> = steps
        .iter()
        .enumerate()
        .filter(|(_, e)| !matches!(e.outcome, GateOutcome::Pass | GateOutcome::Serve))
        .collect();
    match stops.as_slice() {
        [] => matches!(last.outcome, GateOutcome::Pass | GateOutcome::Deny(_)),
        [(i, e)] if *i + 1 == steps.len() => match e.outcome {
            GateOutcome::Deny(c) => last.outcome == GateOutcome::Deny(c),
            GateOutcome::Pass | GateOutcome::Serve => false,
        },
        _ => false,
    }
}

/// The scope that lets a caller see which deployment served it.
pub const DEBUG_ROUTING: &str = "debug:routing";

/// The response half of the chain for one admitted request: it owns the request's context,
/// its guardrail session and its budget hold, and finishes the request exactly once, whichever
/// way the provider answers: [`Answer::whole`], [`Answer::stream`] or [`Answer::fail`].
pub struct Answer {
    audit: AuditHook,
    cx: RequestCx,
    endpoint: Endpoint,
    guard: Session,
    hold: Option<Hold>,
    cache: Arc<ResponseCache>,
    cached: CacheStep,
}

impl Answer {
    fn new(
        audit: AuditHook,
        cx: RequestCx,
        endpoint: Endpoint,
        guard: Session,
        hold: Hold,
        cache: Arc<ResponseCache>,
        cached: CacheStep,
    ) -> Answer {
        Answer { audit, cx, endpoint, guard, hold: Some(hold), cache, cached }
    }

    /// The kept answer to serve instead of calling a provider (a cache hit): serve it through
    /// [`Answer::whole`] or [`Answer::stream`] like a provider's.
    pub fn cached(&self) -> Option<&Arc<Entry>> {
        match &self.cached {
            CacheStep::Hit(e) => Some(e),
            _ => None,
        }
    }

    /// Where the provider's answer is to be kept, if it is: (key, ttl). Only the model the key
    /// was made for: a fallback model's answer follows that model's settings, not these.
    fn keep(&self) -> Option<(crate::cache::CacheKey, std::time::Duration)> {
        match &self.cached {
            CacheStep::Keep { key, ttl, model } if self.cx.route.as_ref().is_some_and(|r| r.model == *model) => {
                Some((*key, *ttl))
            }
            _ => None,
        }
    }

    /// What a provider's answer (or a hit) settles the hold with, and how the trail records
    /// where the answer came from: a hit reached no provider and is settled as one.
    fn answered(&mut self, used: Used) {
        let hit = self.cached().map(|e| e.usage);
        if let Some(hold) = self.hold.take() {
            hold.settle(match hit {
                Some(usage) => Used::CacheHit(usage),
                None => used,
            });
        }
        if hit.is_some() {
            self.cx.cache_hit = true;
        } else {
            self.cx.record(GateName::Provider, GateOutcome::Pass);
        }
    }

    pub fn request_id(&self) -> RequestId {
        self.cx.request_id
    }

    /// The `traceparent` to send the provider, when propagation is on.
    pub fn traceparent(&self) -> Option<String> {
        self.cx.trace.as_ref().and_then(gatehouse_core::TraceContext::for_provider)
    }

    pub fn principal(&self) -> Option<&Principal> {
        self.cx.principal.as_ref()
    }

    /// The deployment the route gate chose (set on every admitted request).
    pub fn route(&self) -> Option<&Arc<Route>> {
        self.cx.route.as_ref()
    }

    /// The model's other deployments, in the order to fall back to (taken once).
    pub fn take_fallbacks(&mut self) -> Vec<Arc<Route>> {
        std::mem::take(&mut self.cx.fallbacks)
    }

    /// Whether the caller may be told which deployment served it: it asked, and its credential
    /// is a capability token granted `debug:routing` (API keys never are).
    pub fn reveals_routing(&self) -> bool {
        self.cx.debug_routing
            && self.cx.principal.as_ref().and_then(|p| p.grant.as_ref()).is_some_and(|g| g.scopes.allows(DEBUG_ROUTING))
    }

    /// The audit hook breakers report their changes to.
    pub fn audit(&self) -> &AuditHook {
        &self.audit
    }

    /// The caller's own provider key, for a model served with it.
    pub fn caller_provider_key(&self) -> Option<&secrecy::SecretString> {
        self.cx.caller_provider_key.as_ref()
    }

    /// When the client stops waiting (its timeout hint, counted from arrival), if it said.
    pub fn deadline(&self) -> Option<std::time::Instant> {
        self.cx.timeout_hint.map(|t| self.cx.started + t)
    }

    /// The attempt at `route` answered a whole answer's success status: its breaker hears it
    /// (docs/ROUTING.md). A stream's success is heard when it completes.
    pub fn attempt_answered(&self, route: &Route) {
        crate::route::attempt_answered(route, &self.audit);
    }

    /// The attempt at `route` failed before anything reached the client: its breaker hears
    /// what says something about it; returns what follows by the failure matrix.
    pub fn attempt_failed(&self, route: &Route, kind: crate::route::Failure) -> crate::route::Next {
        crate::route::attempt_failed(route, kind, &self.audit)
    }

    /// A stored provider credential was presented (`<id>:v<version>`): the audit and the
    /// usage ledger name it, never its value.
    pub fn presented_credential(&mut self, credential: Arc<str>) {
        if let Some(h) = self.hold.as_mut() {
            h.presented_credential(credential.clone());
        }
        self.cx.provider_credential = Some(credential);
    }

    /// Another deployment answered (or failed last): the audit names it.
    pub fn served_by(&mut self, route: Arc<Route>) {
        if let Some(h) = self.hold.as_mut() {
            h.served_by(&route.model, route.provider.clone());
        }
        self.cx.route = Some(route);
    }

    pub fn rates(&self) -> Rates {
        self.cx.rates()
    }

    /// Whether a page of `origin` may read this answer: the caller's project lists it.
    pub fn allows_origin(&self, origin: &[u8]) -> bool {
        self.cx.principal.as_ref().is_some_and(|p| p.allows_origin(origin))
    }

    /// The provider could not be reached, timed out, refused or sent something unusable:
    /// nothing billable came back (the hold is released), the request ends with `d`.
    pub fn fail(mut self, d: Denial) -> Denial {
        self.cx.record(GateName::Provider, GateOutcome::Deny(d.code));
        let done = Finished { reached_provider: true, ..Finished::refused(self.endpoint.as_str(), d.code) };
        finish(&self.audit, &mut self.cx, done);
        d
    }

    /// A whole answer: the provider was paid, so the budgets are settled first, whatever the
    /// output guardrail then decides; it may rewrite the body or refuse it; then meter & audit.
    pub async fn whole(mut self, body: Bytes, usage: Option<Usage>) -> Result<Bytes, Denial> {
        self.answered(match usage {
            Some(u) => Used::Reported(u),
            None => Used::Estimated { completion_tokens: (body.len() as u64).div_ceil(4) },
        });
        let keep = self.keep().filter(|_| body.len() <= self.cache.max_entry()).map(|k| (k, body.clone()));
        let cx = &mut self.cx;
        let mut answer = WholeAnswer { session: &mut self.guard, endpoint: self.endpoint, body };
        let checked = run(&GuardrailsOutGate, cx, &mut answer).await;
        let body = answer.body;
        let endpoint = self.endpoint.as_str();
        let reached_provider = !cx.cache_hit;
        match checked {
            Ok(()) => {
                // kept as the provider answered: a hit passes the output guardrail again
                if let (Some(((key, ttl), raw)), Some(p)) = (keep, cx.principal.as_ref()) {
                    self.cache.put(p.org, key, Entry::new(raw, false, usage), ttl);
                }
                // a hit's tokens were spent when it was kept: the meters count providers' tokens
                let usage = usage.filter(|_| reached_provider);
                finish(&self.audit, cx, Finished { reached_provider, ..Finished::served(endpoint, 200, usage) });
                Ok(body)
            }
            Err(stop) => {
                let d = match stop {
                    Stop::Deny(d) => d,
                    Stop::Serve(_) => Denial::new(DenyCode::Internal),
                };
                finish(&self.audit, cx, Finished { reached_provider, ..Finished::refused(endpoint, d.code) });
                Err(d)
            }
        }
    }

    /// A streamed answer: its events go through [`StreamAnswer`], which finishes the request
    /// when it is dropped (completed, cut, failed or abandoned by the client).
    pub fn stream(mut self) -> StreamAnswer {
        let hold = self.hold.take();
        // a replay from the cache spends nothing: no budget cap on it
        let output_cap = hold.as_ref().and_then(Hold::output_cap).filter(|_| self.cached().is_none());
        let rewrite = self.guard.rewrites_stream();
        let recording = self.keep().map(|_| Vec::new());
        StreamAnswer {
            answer: self,
            hold,
            output_cap,
            rewrite,
            usage: None,
            events: 0,
            saw_done: false,
            end: None,
            recording,
        }
    }
}

/// What the output guardrail decided for a stream that ended so: every event released to the
/// client went through it.
fn guardrails_out(end: StreamEnd, code: Option<DenyCode>) -> GateOutcome {
    match (end, code) {
        (StreamEnd::Blocked | StreamEnd::GuardrailFailed, Some(c)) => GateOutcome::Deny(c),
        _ => GateOutcome::Pass,
    }
}

/// How a stream ended, as the audit trail names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamEnd {
    Completed,
    /// The client went away.
    Cancelled,
    /// The output guardrail blocked the answer.
    Blocked,
    /// The output guardrail could not check the answer.
    GuardrailFailed,
    /// Past the budget reservation.
    Budget,
    /// The provider failed, or sent something malformed.
    UpstreamFailed,
    /// The provider went idle.
    UpstreamTimeout,
    /// Past the stream's maximum duration.
    Cut,
}

impl StreamEnd {
    pub const fn as_str(self) -> &'static str {
        match self {
            StreamEnd::Completed => "completed",
            StreamEnd::Cancelled => "cancelled",
            StreamEnd::Blocked => "blocked",
            StreamEnd::GuardrailFailed => "guardrail_failed",
            StreamEnd::Budget => "budget",
            StreamEnd::UpstreamFailed => "upstream_failed",
            StreamEnd::UpstreamTimeout => "upstream_timeout",
            StreamEnd::Cut => "cut",
        }
    }

    /// The end a refusal met mid-stream stands for.
    pub fn of(code: DenyCode) -> StreamEnd {
        match code {
            DenyCode::ContentBlocked => StreamEnd::Blocked,
            DenyCode::InsufficientQuota => StreamEnd::Budget,
            DenyCode::UpstreamError => StreamEnd::UpstreamFailed,
            _ => StreamEnd::GuardrailFailed,
        }
    }

    /// Whether the provider is the one that failed.
    const fn provider_failed(self) -> bool {
        matches!(self, StreamEnd::UpstreamFailed | StreamEnd::UpstreamTimeout | StreamEnd::Cut)
    }
}

/// The response half for a stream, event by event. The proxy moves the bytes (framing,
/// timers, back-pressure); this decides: usage and the budget cap per event, the output
/// guardrail on each event when the policy may change the text, and the end.
pub struct StreamAnswer {
    answer: Answer,
    hold: Option<Hold>,
    /// The data events the budget reservation covers: past it the stream is cut.
    output_cap: Option<u64>,
    rewrite: bool,
    usage: Option<Usage>,
    /// Data events that carried no usage: about one completion token each, the estimate a
    /// stream that ends without the provider's count settles with.
    events: u64,
    saw_done: bool,
    end: Option<(StreamEnd, Option<DenyCode>)>,
    /// The provider's events as they came, to keep once the stream completes (dropped past
    /// the cache's entry bound).
    recording: Option<Vec<u8>>,
}

impl StreamAnswer {
    pub fn request_id(&self) -> RequestId {
        self.answer.cx.request_id
    }

    /// Whether events must be re-framed (the guardrail may change them) rather than passed
    /// through byte for byte.
    pub fn rewrites(&self) -> bool {
        self.rewrite
    }

    /// Whether the provider sent its final `[DONE]`.
    pub fn saw_done(&self) -> bool {
        self.saw_done
    }

    /// One complete SSE event from the provider. `Ok(Some(payload))` replaces a data event's
    /// payload (re-framing path; `[DONE]` may be preceded by text the guardrail held back);
    /// `Ok(None)` sends it as it came. An error ends the stream: [`StreamEnd::of`] its code.
    pub fn event(&mut self, ev: SseEvent<'_>) -> Result<Option<Vec<u8>>, Denial> {
        let out = match ev {
            SseEvent::Data(d) => {
                if let Some(r) = self.recording.as_mut() {
                    if r.len() + d.len() + 8 > self.answer.cache.max_entry() {
                        self.recording = None;
                    } else {
                        r.extend_from_slice(b"data: ");
                        r.extend_from_slice(d);
                        r.extend_from_slice(b"\n\n");
                    }
                }
                match usage_from_chunk(d) {
                    Some(u) => self.usage = Some(u),
                    None => self.events += 1,
                }
                if self.output_cap.is_some_and(|cap| self.events > cap) {
                    // the reservation is spent: what the provider sends beyond it is not paid for
                    return Err(Denial::new(DenyCode::InsufficientQuota));
                }
                if self.rewrite { self.answer.guard.stream_event(d)? } else { None }
            }
            SseEvent::Done => {
                self.saw_done = true;
                if self.rewrite { self.answer.guard.stream_end()? } else { None }
            }
        };
        Ok(out)
    }

    /// Records how the stream ended (the first end wins); a stream dropped without one was
    /// abandoned by the client.
    pub fn end(&mut self, end: StreamEnd, code: Option<DenyCode>) {
        self.end.get_or_insert((end, code));
    }
}

impl Drop for StreamAnswer {
    fn drop(&mut self) {
        let (end, code) = self.end.unwrap_or((StreamEnd::Cancelled, None));
        let hit = self.answer.cached().map(|e| e.usage);
        if let Some(hold) = self.hold.take() {
            hold.settle(match (hit, self.usage) {
                (Some(kept), _) => Used::CacheHit(kept),
                (None, Some(u)) => Used::Reported(u),
                (None, None) => Used::Estimated { completion_tokens: self.events },
            });
        }
        if end == StreamEnd::Completed
            && self.saw_done
            && let (Some(mut events), Some((key, ttl))) = (self.recording.take(), self.answer.keep())
            && let Some(org) = self.answer.cx.principal.as_ref().map(|p| p.org)
        {
            events.extend_from_slice(b"data: [DONE]\n\n");
            self.answer.cache.put(org, key, Entry::new(Bytes::from(events), true, self.usage), ttl);
        }
        let Answer { audit, cx, guard, endpoint, .. } = &mut self.answer;
        guard.report_to(cx);
        if hit.is_some() {
            // replayed from the cache: no provider, no breaker; the output guardrail ran on
            // every event released
            cx.cache_hit = true;
            cx.record(GateName::GuardrailsOut, guardrails_out(end, code));
            let done = Finished {
                endpoint: endpoint.as_str(),
                status: 200,
                code,
                usage: None,
                reached_provider: false,
                stream_end: Some(end.as_str()),
            };
            finish(audit, cx, done);
            return;
        }
        // a stream tells its deployment's breaker how it ended: whole, or broken off or silent
        // mid-way (a failure of the deployment); a stream cut by policy or abandoned by the
        // client says nothing about it
        if let Some(route) = cx.route.as_ref() {
            match end {
                StreamEnd::Completed => crate::route::attempt_answered(route, audit),
                StreamEnd::UpstreamFailed | StreamEnd::UpstreamTimeout => crate::route::deployment_failed(route, audit),
                _ => {}
            }
        }
        match (end.provider_failed(), code) {
            // the provider failed mid-stream: what it sent before was checked, but the answer
            // as a whole never reached the output guardrail
            (true, Some(c)) => cx.record(GateName::Provider, GateOutcome::Deny(c)),
            _ => {
                cx.record(GateName::Provider, GateOutcome::Pass);
                // every event released to the client went through the output guardrail
                cx.record(GateName::GuardrailsOut, guardrails_out(end, code));
            }
        }
        let done = Finished {
            endpoint: endpoint.as_str(),
            status: 200,
            code,
            usage: self.usage,
            reached_provider: true,
            stream_end: Some(end.as_str()),
        };
        finish(audit, cx, done);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;
    use crate::meter::SpanSink;
    use gatehouse_security::{KeyKind, generate_key};
    use secrecy::SecretString;

    /// Sends the trail of every finished request to the test.
    struct Trails(mpsc::Sender<Vec<TrailEntry>>);

    impl SpanSink for Trails {
        fn request(&self, _: &gatehouse_audit::Event, trail: &[TrailEntry], _: Option<&gatehouse_core::TraceContext>) {
            self.0.send(trail.to_vec()).unwrap();
        }
    }

    struct Ended(mpsc::Receiver<Vec<TrailEntry>>);

    impl Ended {
        /// The trail of the request finished last (exactly one since the previous call).
        fn last(&self) -> Vec<&'static str> {
            let t = self.0.try_recv().expect("a finished request");
            assert!(self.0.try_recv().is_err(), "finished twice");
            assert!(follows_order(&t), "{t:?}");
            t.iter().map(|e| e.gate.as_str()).collect()
        }
    }

    struct Fixture {
        gates: Gates,
        trails: Ended,
        key: SecretString,
        _store: gatehouse_testkit::stores::TestStore,
    }

    async fn fixture(allowed: Option<Vec<String>>) -> Fixture {
        let k = gatehouse_testkit::stores::keyed(allowed).await;
        let verifier = Arc::new(crate::authenticate::KeyVerifier::new(k.test.store.clone(), k.hasher, 1000));
        let policy = gatehouse_config::Config::default().policy;
        let table = Arc::new(RouteTable::build(&policy));
        let bounds = RequestBounds { max_depth: 16, max_messages: 8, max_embedding_inputs: 8 };
        let creds = crate::authenticate::Credentials { keys: verifier, tokens: None, federated: None };
        let policies = Arc::new(crate::guardrails::Policies::builtin().unwrap());
        let limits = LimitsGate::new(Arc::new(crate::limits::LimitsBackend::local()), &policy);
        let (tx, rx) = mpsc::channel();
        let audit = AuditHook { spans: Some(Arc::new(Trails(tx))), ..AuditHook::off() };
        let gates = Gates::new(creds, policies, limits, table, TenantRouting::default(), bounds, audit);
        Fixture { gates, trails: Ended(rx), key: k.key, _store: k.test }
    }

    async fn body(b: &'static [u8]) -> Result<Bytes, DenyCode> {
        Ok(Bytes::from_static(b))
    }

    const HELLO: &[u8] = br#"{"model":"mock","messages":[{"role":"user","content":"hi"}]}"#;

    fn cx(key: Option<&SecretString>) -> RequestCx {
        RequestCx::new(RequestId::generate(), key.cloned().into())
    }

    async fn refused(f: &Fixture, key: Option<&SecretString>, b: &'static [u8]) -> DenyCode {
        match admit(&f.gates, cx(key), Endpoint::ChatCompletions, body(b)).await {
            Err(Stopped { denial, .. }) => denial.code,
            _ => panic!("admitted"),
        }
    }

    const WHOLE: [&str; 10] = [
        "authenticate",
        "parse",
        "authorize",
        "guardrails_in",
        "route",
        "limits",
        "cache",
        "provider",
        "guardrails_out",
        "meter",
    ];

    #[test]
    fn the_whole_order_is_the_constant() {
        assert_eq!(ORDER.map(GateName::as_str), WHOLE);
    }

    #[tokio::test]
    async fn order_is_pinned() {
        let f = fixture(None).await;
        let Ok(a) = admit(&f.gates, cx(Some(&f.key)), Endpoint::ChatCompletions, body(HELLO)).await else {
            panic!("refused")
        };
        assert_eq!(a.answer.route().unwrap().model.as_ref(), "mock");
        a.answer.whole(Bytes::from_static(b"{}"), None).await.unwrap();
        assert_eq!(f.trails.last(), WHOLE);
    }

    #[tokio::test]
    async fn the_response_half_records_only_what_ran() {
        let f = fixture(None).await;
        let admitted = || admit(&f.gates, cx(Some(&f.key)), Endpoint::ChatCompletions, body(HELLO));

        // the provider failed: the output guardrail never saw an answer
        let Ok(a) = admitted().await else { panic!() };
        a.answer.fail(Denial::new(DenyCode::UpstreamError));
        assert_eq!(f.trails.last(), [&WHOLE[..8], &["meter"]].concat());

        // a stream the client abandoned, a completed one, one whose provider failed mid-way
        for (end, ran_out) in
            [(None, true), (Some(StreamEnd::Completed), true), (Some(StreamEnd::UpstreamFailed), false)]
        {
            let Ok(a) = admitted().await else { panic!() };
            let mut s = a.answer.stream();
            s.event(SseEvent::Data(br#"{"choices":[{"index":0,"delta":{"content":"x"}}]}"#)).unwrap();
            if let Some(end) = end {
                s.end(end, (end != StreamEnd::Completed).then_some(DenyCode::UpstreamError));
            }
            drop(s);
            let expected = if ran_out { WHOLE.to_vec() } else { [&WHOLE[..8], &["meter"]].concat() };
            assert_eq!(f.trails.last(), expected, "{end:?}");
        }
    }

    #[tokio::test]
    async fn a_denial_stops_the_chain_where_it_happens() {
        let f = fixture(None).await;
        assert_eq!(refused(&f, None, HELLO).await, DenyCode::MissingCredentials);
        assert_eq!(f.trails.last(), ["authenticate", "meter"]);

        assert_eq!(refused(&f, Some(&f.key), b"{not json").await, DenyCode::InvalidJson);
        assert_eq!(f.trails.last(), ["authenticate", "parse", "meter"]);

        let unknown: &[u8] = br#"{"model":"nope","messages":[{"role":"user","content":"hi"}]}"#;
        assert_eq!(refused(&f, Some(&f.key), unknown).await, DenyCode::ModelNotFound);
        assert_eq!(f.trails.last(), ["authenticate", "parse", "authorize", "guardrails_in", "route", "meter"]);
    }

    #[tokio::test]
    async fn allow_list_refuses_like_a_missing_model_before_routing() {
        let f = fixture(Some(vec!["mock-embedding".into()])).await;
        assert_eq!(refused(&f, Some(&f.key), HELLO).await, DenyCode::ModelNotFound);
        assert_eq!(f.trails.last(), ["authenticate", "parse", "authorize", "meter"]);
    }

    #[tokio::test]
    async fn the_credential_leaves_the_context_at_the_first_gate() {
        use crate::gate::Gate;
        let f = fixture(None).await;
        for presented in [f.key.clone(), SecretString::from("gth_wrong".to_owned())] {
            let mut cx = RequestCx::new(RequestId::generate(), gatehouse_core::Presented::One(presented));
            let _ = f.gates.authenticate.check(&mut cx, &mut ()).await;
            // accepted or refused, nothing after the authenticate gate can read the secret
            assert!(matches!(cx.credential, gatehouse_core::Presented::Nothing));
        }
    }

    #[tokio::test]
    async fn wrong_keys_never_touch_the_store_path() {
        let f = fixture(None).await;
        for bad in ["", "sk-123", "gth_short", &generate_key(KeyKind::Admin).expose()] {
            let bad = SecretString::from(bad.to_owned());
            assert_eq!(refused(&f, Some(&bad), HELLO).await, DenyCode::InvalidApiKey);
        }
        // well-formed but unknown
        assert_eq!(refused(&f, Some(&generate_key(KeyKind::Api)), HELLO).await, DenyCode::InvalidApiKey);
    }

    #[test]
    fn trails_the_chain_cannot_produce_are_told_apart() {
        use GateName as G;
        use GateOutcome::{Deny, Pass};
        let t = |steps: &[(GateName, GateOutcome)]| -> Vec<TrailEntry> {
            steps.iter().map(|&(gate, outcome)| TrailEntry { gate, outcome, at: std::time::Duration::ZERO }).collect()
        };
        let no = DenyCode::PermissionDenied;
        assert!(follows_order(&t(&[(G::Authenticate, Pass), (G::Meter, Pass)])));
        assert!(follows_order(&t(&[(G::Authenticate, Deny(no)), (G::Meter, Deny(no))])));
        // out of order, twice, not ending in meter, a pass after a refusal, a refusal the meter lost
        assert!(!follows_order(&t(&[(G::Parse, Pass), (G::Authenticate, Pass), (G::Meter, Pass)])));
        assert!(!follows_order(&t(&[(G::Authenticate, Pass), (G::Authenticate, Pass), (G::Meter, Pass)])));
        assert!(!follows_order(&t(&[(G::Authenticate, Pass)])));
        assert!(!follows_order(&t(&[(G::Authenticate, Deny(no)), (G::Parse, Pass), (G::Meter, Deny(no))])));
        assert!(!follows_order(&t(&[(G::Authenticate, Deny(no)), (G::Meter, Pass)])));
        assert!(!follows_order(&[]));
    }

    trait Expose {
        fn expose(&self) -> String;
    }
    impl Expose for SecretString {
        fn expose(&self) -> String {
            use secrecy::ExposeSecret;
            self.expose_secret().to_owned()
        }
    }
}
