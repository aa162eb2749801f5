//! Model name or alias -> the deployment that serves it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use gatehouse_audit::{Actor, Event, EventKind, Outcome};
use gatehouse_config::{ModelKind, Policy, ProviderKind};
use gatehouse_core::{
    Breaker, BreakerState, Denial, DenyCode, GateName, Hedge, Quota, RequestCx, Retries, Route, Target,
};
use gatehouse_providers::chat::{Family, request_for};
use gatehouse_providers::{ApiRequest, Endpoint, mock};

use crate::meter::AuditHook;
use crate::tenant_routes::RoutingRules;
use crate::{Gate, Verdict};

#[derive(Debug)]
pub struct RouteEntry {
    /// The first deployment: what listings show.
    pub route: Arc<Route>,
    pub kind: ModelKind,
    /// Every deployment, the first one first, and the API each provider speaks (the mock:
    /// the chain's own, OpenAI's).
    pub deployments: Box<[(Arc<Route>, Family)]>,
    /// The deployments by priority tier, each tier with its selection schedule.
    tiers: Box<[Tier]>,
    /// Each deployment's priority and weight, by its index.
    placement: Box<[(u8, u16)]>,
    /// Other models whose deployments follow this one's (canonical names, validated).
    pub fallback_models: Box<[Box<str>]>,
}

/// The deployments of one priority: a smooth weighted round-robin schedule of them (weights
/// 3 and 1 give `a a b a`, not `a a a b`), walked by a shared counter: lock-free, and exactly
/// proportional over each turn of the schedule.
#[derive(Debug)]
struct Tier {
    members: Box<[usize]>,
    schedule: Box<[u8]>,
    next: AtomicUsize,
}

impl Tier {
    fn new(members: Vec<usize>, weights: &[u16]) -> Tier {
        let total: i64 = weights.iter().map(|w| i64::from(*w)).sum();
        let mut current = vec![0i64; weights.len()];
        let mut schedule = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
        for _ in 0..total {
            for (c, w) in current.iter_mut().zip(weights) {
                *c += i64::from(*w);
            }
            let (best, _) =
                current.iter().enumerate().max_by_key(|(i, c)| (**c, std::cmp::Reverse(*i))).unwrap_or((0, &0));
            current[best] -= total;
            schedule.push(u8::try_from(best).unwrap_or(0));
        }
        Tier { members: members.into(), schedule: schedule.into(), next: AtomicUsize::new(0) }
    }

    /// This request's pick first, then the tier's other deployments in order.
    fn order(&self, out: &mut Vec<usize>) {
        let pick = match self.schedule.len() {
            0 | 1 => 0,
            n => usize::from(self.schedule[self.next.fetch_add(1, Ordering::Relaxed) % n]),
        };
        let n = self.members.len();
        out.extend((0..n).map(|k| self.members[(pick + k) % n]));
    }
}

impl RouteEntry {
    /// Deployment `i`'s priority and weight.
    pub fn placement(&self, i: usize) -> (u8, u16) {
        self.placement.get(i).copied().unwrap_or((0, 1))
    }

    /// The deployments to try for one request, in order: the chosen one of the first tier,
    /// the rest of that tier, then each lower tier the same way.
    pub fn attempts(&self) -> Vec<usize> {
        let mut out = Vec::with_capacity(self.deployments.len());
        for t in &self.tiers {
            t.order(&mut out);
        }
        out
    }

    /// [`RouteEntry::attempts`] with each deployment's breaker heard at `now_ms`: a half-open
    /// one whose probe this request carries goes first (so the probe is sent), an open one goes
    /// last (tried only when every other failed: a breaker moves traffic, it never refuses it).
    pub fn attempts_at(&self, now_ms: u64) -> Vec<usize> {
        self.ranked(now_ms, true)
    }

    /// The order by breaker state, claiming a half-open deployment's probe only when `claim`
    /// (a model's stand-ins are rarely tried: ranking them must not use up a probe unsent).
    fn ranked(&self, now_ms: u64, claim: bool) -> Vec<usize> {
        let mut order = self.attempts();
        if order.len() > 1 {
            let rank = |i: &usize| {
                let b = &self.deployments[*i].0.breaker;
                match b.state(now_ms) {
                    BreakerState::Closed => 1,
                    BreakerState::HalfOpen if claim && b.admits(now_ms) => 0,
                    _ => 2,
                }
            };
            let mut ranked: Vec<(u8, usize)> = order.iter().map(|i| (rank(i), *i)).collect();
            ranked.sort_by_key(|(r, _)| *r);
            order = ranked.into_iter().map(|(_, i)| i).collect();
        }
        order
    }
}

/// The API family a provider kind speaks.
pub const fn family(kind: ProviderKind) -> Family {
    match kind {
        ProviderKind::Anthropic => Family::Anthropic,
        ProviderKind::Gemini => Family::Gemini,
        ProviderKind::Bedrock => Family::Bedrock,
        ProviderKind::OpenAi | ProviderKind::OpenAiCompatible | ProviderKind::AzureOpenAi => Family::OpenAi,
    }
}

/// A deployment as the table is built from it: its route, the API its provider speaks, its
/// priority and weight.
type Deployed = (Route, Family, u8, u16);

/// Built once per config snapshot; lookups are one hash probe.
#[derive(Debug, Default)]
pub struct RouteTable {
    by_name: HashMap<Box<str>, Arc<RouteEntry>>,
    models: Vec<Arc<RouteEntry>>,
    /// Providers that sign with AWS SigV4 (their stored credentials are AWS key pairs).
    sigv4: Vec<Box<str>>,
}

impl RouteTable {
    /// Names were validated unique by the config crate, so later entries never shadow.
    pub fn build(policy: &Policy) -> RouteTable {
        let mut t = RouteTable::default();
        if policy.mock_enabled {
            let none = Arc::new(Retries::new(0, 0.0));
            for (model, kind) in [(mock::CHAT_MODEL, ModelKind::Chat), (mock::EMBEDDING_MODEL, ModelKind::Embedding)] {
                let route = Route::new(
                    model.into(),
                    mock::PROVIDER.into(),
                    Target::Mock,
                    model.into(),
                    // the mock never fails as a provider does: a breaker that never opens
                    Arc::new(Breaker::new(u32::MAX, 0)),
                    none.clone(),
                );
                t.add(&[], vec![(route, Family::OpenAi, 0, 1)], kind, &[]);
            }
        }
        for m in &policy.models {
            let retries = Arc::new(Retries::new(m.retries, m.retry_budget));
            let hedge = m.hedge_percentile.map(|p| Arc::new(Hedge::new(p)));
            let to: Vec<Deployed> = m
                .deployments
                .iter()
                .filter_map(|d| {
                    let i = policy.providers.iter().position(|p| p.name == d.provider)?;
                    let p = &policy.providers[i];
                    let cooldown = u64::try_from(p.breaker_cooldown.as_millis()).unwrap_or(u64::MAX);
                    let route = Route {
                        model: m.name.as_str().into(),
                        provider: d.provider.as_str().into(),
                        target: Target::Upstream(i),
                        provider_model: d.provider_model.as_str().into(),
                        breaker: Arc::new(
                            Breaker::new(p.breaker_failures, cooldown)
                                .with_error_rate(p.breaker_error_rate, p.breaker_min_requests),
                        ),
                        retries: retries.clone(),
                        hedge: hedge.clone(),
                        caller_key: m.caller_key,
                        cache_ttl: m.cache_ttl,
                        identity_headers: p.identity.is_some(),
                        connect_timeout: d.connect_timeout,
                        first_byte_timeout: d.first_byte_timeout,
                        idle_timeout: d.idle_timeout,
                        max_stream_duration: d.max_stream_duration,
                        region: p.region.as_deref().map(Arc::from),
                        quota: (d.rpm.is_some() || d.tpm.is_some()).then(|| Quota {
                            rpm: d.rpm,
                            tpm: d.tpm,
                            requests_key: format!("deployment:{}/{}/{}", m.name, d.provider, d.provider_model).into(),
                            tokens_key: format!("tpm:deployment:{}/{}/{}", m.name, d.provider, d.provider_model).into(),
                        }),
                    };
                    Some((route, family(p.kind), d.priority, d.weight))
                })
                .collect();
            if !to.is_empty() {
                t.add(&m.aliases, to, m.kind, &m.fallbacks);
            }
        }
        t.sigv4 = policy.providers.iter().filter(|p| p.aws_keys.is_some()).map(|p| p.name.as_str().into()).collect();
        t
    }

    /// `to`: each deployment's route, the API it speaks, its priority and weight (validated by
    /// the config crate; at least one, all of one model).
    fn add(&mut self, aliases: &[String], to: Vec<Deployed>, kind: ModelKind, fallbacks: &[String]) {
        let mut priorities: Vec<u8> = to.iter().map(|d| d.2).collect();
        priorities.sort_unstable();
        priorities.dedup();
        let tiers = priorities
            .into_iter()
            .map(|p| {
                let members: Vec<usize> = (0..to.len()).filter(|i| to[*i].2 == p).collect();
                let weights: Vec<u16> = members.iter().map(|i| to[*i].3).collect();
                Tier::new(members, &weights)
            })
            .collect();
        let placement = to.iter().map(|d| (d.2, d.3)).collect();
        let deployments: Box<[(Arc<Route>, Family)]> = to.into_iter().map(|(r, f, _, _)| (Arc::new(r), f)).collect();
        let name = deployments[0].0.model.clone();
        let fallback_models = fallbacks.iter().map(|f| f.as_str().into()).collect();
        let route = deployments[0].0.clone();
        let entry = Arc::new(RouteEntry { route, kind, deployments, tiers, placement, fallback_models });
        self.by_name.insert(Box::from(&*name), entry.clone());
        for a in aliases {
            self.by_name.insert(a.as_str().into(), entry.clone());
        }
        self.models.push(entry);
    }

    /// Whether a provider (by configured name) serves some deployment here.
    /// Whether a provider signs its requests with AWS SigV4.
    pub fn signs_sigv4(&self, name: &str) -> bool {
        self.sigv4.iter().any(|p| &**p == name)
    }

    pub fn has_provider(&self, name: &str) -> bool {
        self.models.iter().any(|e| e.deployments.iter().any(|(r, _)| &*r.provider == name))
    }

    pub fn resolve(&self, name: &str) -> Option<&Arc<RouteEntry>> {
        self.by_name.get(name)
    }

    /// Whether `name` is a model served here by its canonical name (not an alias).
    pub fn serves(&self, name: &str) -> bool {
        self.resolve(name).is_some_and(|e| &*e.route.model == name)
    }

    /// Every canonical model, in config order.
    pub fn models(&self) -> &[Arc<RouteEntry>] {
        &self.models
    }
}

/// Unix milliseconds, for the breakers.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Why an attempt at a deployment failed, before anything reached the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No connection (refused, reset, DNS, TLS).
    Connect,
    /// No response headers within the deployment's first-byte timeout.
    FirstByteTimeout,
    /// The provider answered with this status.
    Status(u16),
    /// A whole answer that broke off or could not be read after a success status.
    UnreadableAnswer,
    /// The request cannot be written for this deployment's API family.
    Untranslatable,
    /// The client's deadline (its timeout hint) passed first: no time is left for anyone.
    Deadline,
    /// The deployment's upstream quota (its `rpm`/`tpm`) is spent for now: not sent.
    Quota,
    /// The tenant's stored credential for the provider does not open here: not sent.
    Credential,
}

/// What follows a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Try the next deployment, if there is one.
    Fallback,
    /// Answer the caller with this failure.
    Return,
}

/// The failure matrix (docs/ROUTING.md, which a test checks against this function).
pub const fn after(f: Failure) -> Next {
    match f {
        Failure::Connect
        | Failure::FirstByteTimeout
        | Failure::Untranslatable
        | Failure::Quota
        | Failure::Credential => Next::Fallback,
        // the provider may have done the work: another deployment would do it again
        Failure::UnreadableAnswer => Next::Return,
        // the client has stopped waiting: nobody else can answer in time
        Failure::Deadline => Next::Return,
        Failure::Status(s) => match s {
            // this deployment's credential, model, quota, overload or failure: another may serve
            401 | 403 | 404 | 408 | 429 | 500..=599 => Next::Fallback,
            // the request itself (invalid, too large, refused by content policy): it would fail
            // everywhere
            _ => Next::Return,
        },
    }
}

/// An attempt at `route` answered: its breaker closes if it was open or half-open (logged,
/// counted and audited once per closing).
pub fn attempt_answered(route: &Route, audit: &AuditHook) {
    if route.breaker.succeeded(now_ms()) {
        metrics::counter!("gatehouse_breaker_closed_total", "provider" => route.provider.to_string()).increment(1);
        tracing::info!(model = %route.model, provider = %route.provider, "circuit breaker closed: the deployment answered");
        breaker_event(route, audit, EventKind::DeploymentBreakerClosed, Outcome::Allowed, 200, "ok");
    }
}

/// An attempt at `route` failed before anything reached the client: what says something about
/// the deployment (not the request, and not that it cannot be written for its API) counts
/// toward its breaker; an opening is logged, counted and audited once. Returns what follows
/// (the failure matrix).
pub(crate) fn attempt_failed(route: &Route, kind: Failure, audit: &AuditHook) -> Next {
    let next = after(kind);
    // not sent at all (untranslatable, over its quota, no credential): nothing learned about
    // the deployment
    if next == Next::Fallback && !matches!(kind, Failure::Untranslatable | Failure::Quota | Failure::Credential) {
        deployment_failed(route, audit);
    }
    next
}

/// A failure that says something about the deployment: it counts toward its breaker; an
/// opening is logged, counted and audited once.
pub fn deployment_failed(route: &Route, audit: &AuditHook) {
    if route.breaker.failed(now_ms()) {
        metrics::counter!("gatehouse_breaker_opened_total", "provider" => route.provider.to_string()).increment(1);
        tracing::warn!(model = %route.model, provider = %route.provider, "circuit breaker opened: the deployment goes last until it answers a probe");
        let code = DenyCode::UpstreamError;
        breaker_event(route, audit, EventKind::DeploymentBreakerOpened, Outcome::Failed, code.status(), code.as_str());
    }
}

/// A breaker's change, on the platform's audit chain: the deployment (`model/provider`), never
/// a request or a tenant.
fn breaker_event(route: &Route, audit: &AuditHook, kind: EventKind, outcome: Outcome, status: u16, code: &'static str) {
    if let Some(a) = audit.auditor.as_ref() {
        let mut e = Event::new(kind, outcome, status, code, Actor::System);
        e.target = Some(format!("{}/{}", route.model, route.provider));
        e.model = Some(route.model.clone());
        e.provider = Some(route.provider.clone());
        a.submit(e);
    }
}

/// Whether `route`'s deployment may take this request under its upstream quota (requests and
/// estimated tokens per minute, in the shared limits store). `Err(wait)` until it would fit.
/// A deployment without a quota costs nothing; a store that cannot answer lets the request
/// through (the provider's own 429 still protects it), counted.
pub async fn within_quota(
    limits: &gatehouse_limits::Limits,
    route: &Route,
    req: &ApiRequest,
) -> Result<(), std::time::Duration> {
    let Some(q) = route.quota.as_ref() else { return Ok(()) };
    let mut checks = Vec::with_capacity(2);
    if let Some(rpm) = q.rpm {
        checks.push((&*q.requests_key, crate::limits::rate(rpm), 1));
    }
    if let Some(tpm) = q.tpm {
        let prompt = crate::tokens::prompt_estimate(req, &route.provider_model);
        checks.push((
            &*q.tokens_key,
            crate::limits::token_rate(tpm),
            prompt.saturating_add(req.max_output.unwrap_or(0)).max(1),
        ));
    }
    match limits.rates(&checks).await {
        Ok(decisions) => match decisions.iter().filter(|d| !d.allowed).map(|d| d.retry_after).max() {
            None => Ok(()),
            Some(wait) => Err(wait),
        },
        Err(_) => {
            metrics::counter!("gatehouse_limits_unavailable_total", "kind" => "quota", "policy" => "open").increment(1);
            Ok(())
        }
    }
}

/// One deployment as the admin API shows it, with its breaker's state now.
#[derive(Clone, Debug)]
pub struct DeploymentStatus {
    pub model: Arc<str>,
    pub provider: Arc<str>,
    pub provider_model: Arc<str>,
    pub region: Option<Arc<str>>,
    pub priority: u8,
    pub weight: u16,
    pub breaker: &'static str,
    /// Failures in a row so far.
    pub failures: u32,
    /// While open or half-open: when the open period ends(ed), unix ms.
    pub open_until: Option<u64>,
}

impl RouteTable {
    /// Every deployment of every configured model (the built-in mock's are left out: it has
    /// no health), in config order.
    pub fn deployment_status(&self, now_ms: u64) -> Vec<DeploymentStatus> {
        let mut out = Vec::new();
        for e in &self.models {
            for (i, (r, _)) in e.deployments.iter().enumerate() {
                if r.target == Target::Mock {
                    continue;
                }
                let (priority, weight) = e.placement(i);
                out.push(DeploymentStatus {
                    model: r.model.clone(),
                    provider: r.provider.clone(),
                    provider_model: r.provider_model.clone(),
                    region: r.region.clone(),
                    priority,
                    weight,
                    breaker: r.breaker.state(now_ms).as_str(),
                    failures: r.breaker.failures(),
                    open_until: r.breaker.open_until(),
                });
            }
        }
        out
    }
}

pub struct RouteGate {
    pub table: Arc<RouteTable>,
    /// Tenants' routing rules (shared by every snapshot).
    pub rules: Arc<RoutingRules>,
}

fn serves(kind: ModelKind, endpoint: Endpoint) -> bool {
    matches!(
        (kind, endpoint),
        (ModelKind::Chat, Endpoint::ChatCompletions) | (ModelKind::Embedding, Endpoint::Embeddings)
    )
}

impl Gate for RouteGate {
    type Pass = ();
    const NAME: GateName = GateName::Route;

    async fn check(&self, cx: &mut RequestCx, req: &mut ApiRequest) -> Verdict {
        match self.table.resolve(&req.model) {
            // A model of the wrong kind for this endpoint does not exist *here*.
            Some(e) if serves(e.kind, req.endpoint) => {
                // one deployment (the common case): no order to compute, nothing to fall back to
                let mut order = if e.deployments.len() > 1 { e.attempts_at(now_ms()) } else { Vec::new() };
                // the tenant's routing rules keep only the deployments it may use; a route
                // that would leave them is refused, never taken elsewhere
                let rules = cx.principal.as_ref().and_then(|p| self.rules.applying(p.org, p.project));
                if let Some(rules) = &rules {
                    if order.is_empty() {
                        order.push(0);
                    }
                    order.retain(|i| rules.allows(&e.deployments[*i].0));
                    if order.is_empty() {
                        return Verdict::Deny(Denial::new(DenyCode::PermissionDenied).with_param("model"));
                    }
                }
                let mut attempts = order.iter().map(|i| &e.deployments[*i]);
                let Some((first, family)) = attempts.next().or(e.deployments.first()) else {
                    return Verdict::Deny(Denial::new(DenyCode::Internal));
                };
                // a provider of another API family gets the request in its own format (and a
                // caller of another family's own fields go back on it), written here so what the
                // provider cannot honour is refused before anything is reserved or spent
                if *family != Family::OpenAi || req.origin.is_some() {
                    match request_for(req.body(), req.origin.as_deref(), *family, &first.provider_model) {
                        Ok(body) => req.translated = Some(Bytes::from(serde_json::to_vec(&body).unwrap_or_default())),
                        Err(err) => return Verdict::Deny(err.denial()),
                    }
                }
                // a model served with the caller's own provider key needs one
                if first.caller_key && cx.caller_provider_key.is_none() {
                    return Verdict::Deny(Denial::new(DenyCode::InvalidRequest).with_param("x-gatehouse-provider-key"));
                }
                first.retries.deposit();
                cx.route = Some(first.clone());
                // the others, in order, for when this one fails before answering (docs/ROUTING.md)
                cx.fallbacks = attempts.map(|(r, _)| r.clone()).collect();
                // then the models configured to stand in for this one: only those the caller may
                // use, and only their deployments its routing rules allow
                for name in &e.fallback_models {
                    let Some(other) = self.table.resolve(name) else { continue };
                    if !cx.principal.as_ref().is_some_and(|p| p.may_use_model(&other.route.model)) {
                        continue;
                    }
                    let order = if other.deployments.len() > 1 { other.ranked(now_ms(), false) } else { vec![0] };
                    let allowed = |r: &&Arc<Route>| rules.as_ref().is_none_or(|x| x.allows(r));
                    cx.fallbacks.extend(order.into_iter().map(|i| &other.deployments[i].0).filter(allowed).cloned());
                }
                Verdict::Pass(())
            }
            _ => Verdict::Deny(Denial::new(DenyCode::ModelNotFound).with_param("model")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(toml: &str) -> RouteTable {
        let cfg = match gatehouse_config::Config::from_toml(toml) {
            Ok(c) => c,
            Err(e) => panic!("config: {e:?}"),
        };
        RouteTable::build(&cfg.policy)
    }

    const THREE: &str = r#"
[[providers]]
name = "a"
base_url = "http://127.0.0.1:1/v1"
[[providers]]
name = "b"
base_url = "http://127.0.0.1:2/v1"
[[providers]]
name = "c"
base_url = "http://127.0.0.1:3/v1"
[[models]]
name = "m"
provider = "a"
weight = 3
[[models.deployments]]
provider = "b"
[[models.deployments]]
provider = "c"
provider_model = "m-backup"
priority = 1
"#;

    #[test]
    fn weights_share_a_tier_smoothly_and_lower_tiers_come_last() {
        let t = table(THREE);
        let e = t.resolve("m").unwrap_or_else(|| panic!("m"));
        let providers =
            |order: Vec<usize>| order.iter().map(|i| e.deployments[*i].0.provider.to_string()).collect::<Vec<_>>();
        let orders: Vec<Vec<String>> = (0..8).map(|_| providers(e.attempts())).collect();
        let firsts: Vec<&str> = orders.iter().map(|o| o[0].as_str()).collect();
        assert_eq!(firsts, ["a", "a", "b", "a", "a", "a", "b", "a"], "3:1, interleaved");
        assert_eq!(orders[2], ["b", "a", "c"], "the pick, the rest of its tier, then the next tier");
        assert_eq!(&*e.deployments[2].0.provider_model, "m-backup");
        let single = table(
            "[[providers]]\nname = \"a\"\nbase_url = \"http://127.0.0.1:1/v1\"\n[[models]]\nname = \"s\"\nprovider = \"a\"\n",
        );
        assert_eq!(single.resolve("s").map(|e| e.attempts()), Some(vec![0]));
    }

    #[test]
    fn an_open_breaker_sends_its_deployment_last_and_a_probe_first() {
        let t = table(&THREE.replace(
            "name = \"a\"\nbase_url = \"http://127.0.0.1:1/v1\"\n",
            "name = \"a\"\nbase_url = \"http://127.0.0.1:1/v1\"\nbreaker_failures = 2\nbreaker_cooldown_ms = 1000\n",
        ));
        let e = t.resolve("m").unwrap_or_else(|| panic!("m"));
        let name = |i: usize| e.deployments[i].0.provider.to_string();
        let a = &e.deployments[0].0.breaker;
        let now = 50_000;
        assert!(!a.failed(now) && a.failed(now), "two in a row open it");
        for _ in 0..4 {
            let order: Vec<String> = e.attempts_at(now + 10).into_iter().map(name).collect();
            assert_eq!(order.last().map(String::as_str), Some("a"), "open: tried only when the rest failed");
            assert_eq!(order.len(), 3);
        }
        let probe: Vec<String> = e.attempts_at(now + 1_000).into_iter().map(name).collect();
        assert_eq!(probe[0], "a", "half-open: this request carries the probe, first");
        let other: Vec<String> = e.attempts_at(now + 1_001).into_iter().map(name).collect();
        assert_eq!(other.last().map(String::as_str), Some("a"), "one probe at a time");
        a.succeeded(now);
        let firsts: Vec<String> = (0..4).map(|_| name(e.attempts_at(now + 1_002)[0])).collect();
        assert!(firsts.iter().filter(|p| *p == "a").count() == 3, "closed: its share again: {firsts:?}");
    }

    #[test]
    fn a_schedule_is_exactly_proportional_over_each_turn() {
        let tier = Tier::new(vec![0, 1, 2], &[5, 2, 1]);
        let mut counts = [0usize; 3];
        for _ in 0..80 {
            let mut out = Vec::new();
            tier.order(&mut out);
            counts[out[0]] += 1;
        }
        assert_eq!(counts, [50, 20, 10]);
    }

    /// docs/ROUTING.md's failure matrix, row by row, against [`after`].
    #[test]
    fn the_failure_matrix_in_routing_md_is_the_code() {
        let doc = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/ROUTING.md"));
        let table = doc.split("## The failure matrix").nth(1).unwrap_or_default();
        let mut rows = 0;
        let mut covered = std::collections::HashSet::new();
        for line in
            table.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| failure") && !l.starts_with("| ---"))
        {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let (what, next) = (cells[1], cells[2]);
            let want = match next {
                "fallback" => Next::Fallback,
                "return" => Next::Return,
                other => panic!("unknown next {other:?}"),
            };
            let mut failures: Vec<Failure> = what
                .split(|c: char| !c.is_ascii_digit())
                .filter(|w| w.len() == 3)
                .filter_map(|w| w.parse().ok())
                .map(Failure::Status)
                .collect();
            if what.contains("every other 5xx") {
                failures.extend([505, 520, 599].map(Failure::Status));
            }
            if what.contains("every other 4xx") {
                failures.extend([402, 405, 410, 418, 451].map(Failure::Status));
            }
            for (words, f) in [
                ("connection", Failure::Connect),
                ("first-byte timeout", Failure::FirstByteTimeout),
                ("broke off", Failure::UnreadableAnswer),
                ("cannot be written", Failure::Untranslatable),
                ("client's deadline", Failure::Deadline),
                ("upstream quota", Failure::Quota),
                ("does not open", Failure::Credential),
            ] {
                if what.contains(words) {
                    failures.push(f);
                }
            }
            assert!(!failures.is_empty(), "row names no failure: {line}");
            for f in failures {
                assert_eq!(after(f), want, "{line}: {f:?}");
                covered.insert(std::mem::discriminant(&f));
            }
            rows += 1;
        }
        assert!(rows >= 9, "the table is there");
        assert_eq!(covered.len(), 8, "every kind of failure has a row");
    }
}
