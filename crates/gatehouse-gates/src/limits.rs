//! Limits & budgets: rates (GCRA) and budgets (reserve before the call, settle after it).
//!
//! Rates, all checked per request: the credential's own (an API key: its own limit policy,
//! else its project's `default_limits.rpm`), the project's and the org's totals (their limit
//! policies), and each delegation node of a capability token (`rpm` caveats; a parent's rate
//! is shared by all of its descendants).
//!
//! Budgets (USD or tokens; daily, monthly or lifetime) of the org, project and key, and the
//! `budget_usd` caveats of every node of a token's delegation chain: the worst case of the
//! request (its body's size as prompt tokens plus its output cap, priced per model) is
//! reserved on all of them at once or on none; the [`Hold`] settles it to the real use when
//! the request ends ([`crate::ledger`]). Request-size bounds are enforced earlier, at parse.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use gatehouse_config::budgets::{BudgetSettings, Price, Prices, Unpriced};
use gatehouse_core::{Credential, Denial, DenyCode, GateName, KeyId, OrgId, ProjectId, RateLimitInfo, RequestCx};
use gatehouse_limits::spec::{CompiledBudget, LimitSpec, ModelRates, Period, Unit};
use gatehouse_limits::{Ask, Budget, Limits, Rate, Reserved};
use gatehouse_providers::ApiRequest;
use gatehouse_store::{LimitPolicyRow, LimitScope, Store};

use crate::ledger::{BudgetMeta, Hold, Ledger};
use crate::{Gate, Verdict};

/// The limits store of the deployment (in-process, or Redis for several replicas), what a
/// rate check does when that store cannot answer, the per-scope policies and the ledger that
/// settles budgets. Shared by every config snapshot.
pub struct LimitsBackend {
    pub limits: Arc<Limits>,
    /// Pass (counted in `gatehouse_limits_unavailable_total` and audited) rather than refuse.
    /// Budgets always fail closed.
    pub rates_fail_open: bool,
    pub policies: Arc<LimitPolicies>,
    /// `None` in unit tests and benchmarks: holds are then released without a ledger.
    pub ledger: Option<Ledger>,
}

impl LimitsBackend {
    /// In-process limits without a ledger (tests, benchmarks).
    pub fn local() -> LimitsBackend {
        LimitsBackend {
            limits: Arc::new(Limits::Local(gatehouse_limits::Local::new())),
            rates_fail_open: true,
            policies: Arc::new(LimitPolicies::default()),
            ledger: None,
        }
    }
}

/// A scope's limits, compiled, with the names its rates and budgets go by (made once here,
/// not formatted again for every request).
#[derive(Debug, Default)]
pub struct ScopeLimits {
    /// `org:<id>`, `project:<id>`, `key:<id>`.
    pub name: Arc<str>,
    /// One per budget, in order.
    pub budget_meta: Vec<Arc<BudgetMeta>>,
    pub rpm: Option<u32>,
    pub tpm: Option<u64>,
    pub concurrency: Option<u32>,
    pub models: HashMap<String, ModelRates>,
    pub budgets: Vec<CompiledBudget>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Scope {
    Org(OrgId),
    Project(ProjectId),
    Key(KeyId),
}

/// Every stored limit policy, in memory (one hash lookup per scope per request). Re-read from
/// the store on a short poll and after each admin write.
#[derive(Default)]
pub struct LimitPolicies {
    table: ArcSwap<HashMap<Scope, Arc<ScopeLimits>>>,
    reload: tokio::sync::Mutex<()>,
}

impl LimitPolicies {
    fn scope(r: &LimitPolicyRow) -> Option<Scope> {
        match (r.project_id.is_empty(), r.key_id.is_empty()) {
            (true, true) => OrgId::parse(&r.org_id).map(Scope::Org),
            (false, true) => ProjectId::parse(&r.project_id).map(Scope::Project),
            (true, false) => KeyId::parse(&r.key_id).map(Scope::Key),
            (false, false) => None,
        }
    }

    /// Reads every stored policy into the table. A row that does not parse (written by a
    /// newer version, say) is skipped with an error log; the rest still apply.
    pub async fn load(&self, store: &Store) -> Result<(), gatehouse_store::Error> {
        let _one_at_a_time = self.reload.lock().await;
        let rows = store.all_limit_policies().await?;
        let mut table = HashMap::with_capacity(rows.len());
        for r in rows {
            let spec = serde_json::from_str::<LimitSpec>(&r.spec).ok();
            let compiled = spec.and_then(|s| s.compile().ok().map(|b| (s, b)));
            match (Self::scope(&r), compiled) {
                (Some(scope), Some((s, budgets))) => {
                    let name: Arc<str> = match scope {
                        Scope::Org(id) => format!("org:{id}"),
                        Scope::Project(id) => format!("project:{id}"),
                        Scope::Key(id) => format!("key:{id}"),
                    }
                    .into();
                    let limits = ScopeLimits {
                        budget_meta: budgets.iter().map(|b| Arc::new(BudgetMeta::new(&name, b))).collect(),
                        name,
                        rpm: s.rpm,
                        tpm: s.tpm,
                        concurrency: s.concurrency,
                        models: s.models.into_iter().collect(),
                        budgets,
                    };
                    table.insert(scope, Arc::new(limits));
                }
                _ => {
                    tracing::error!(org = %r.org_id, project = %r.project_id, key = %r.key_id, "stored limit policy unreadable; skipped")
                }
            }
        }
        self.table.store(Arc::new(table));
        Ok(())
    }

    /// Keeps this replica's table in step with the store (changes made through another
    /// replica's admin API arrive within one interval).
    pub async fn run_poller(self: Arc<Self>, store: Store, every: Duration) {
        gatehouse_store::poll::reload("limit policies", every, || self.load(&store)).await;
    }
}

/// The scope a stored policy row names, for the admin API.
pub fn store_scope(project: Option<ProjectId>, key: Option<KeyId>) -> LimitScope {
    match (project, key) {
        (_, Some(k)) => LimitScope::Key(k),
        (Some(p), None) => LimitScope::Project(p),
        (None, None) => LimitScope::Org,
    }
}

/// The burst a per-minute rate admits at once: ten seconds' worth, so no 60-second window sees
/// more than `rpm + rpm / 6` requests.
pub(crate) fn rate(rpm: u32) -> Rate {
    let per_minute = u64::from(rpm);
    Rate { per_minute, burst: per_minute.div_ceil(6).max(1) }
}

/// A token rate admits a whole minute's worth at once: one request may use up to the rate
/// (a burst of a sixth would refuse every prompt larger than that, forever).
pub(crate) fn token_rate(tpm: u64) -> Rate {
    Rate { per_minute: tpm, burst: tpm.max(1) }
}

/// One rate a request is checked against.
struct RateCheck {
    name: Arc<str>,
    rate: Rate,
    /// Counts tokens (the request costs its estimate) rather than requests (it costs one).
    tokens: bool,
}

impl RateCheck {
    fn requests(name: Arc<str>, rpm: u32) -> RateCheck {
        RateCheck { name, rate: rate(rpm), tokens: false }
    }

    fn tokens(name: &str, tpm: u64) -> RateCheck {
        RateCheck { name: format!("tpm:{name}").into(), rate: token_rate(tpm), tokens: true }
    }
}

/// A scope's own rates and its rates for `model`.
fn scope_rates(out: &mut Vec<RateCheck>, s: &ScopeLimits, model: &str) {
    if let Some(rpm) = s.rpm {
        out.push(RateCheck::requests(s.name.clone(), rpm));
    }
    if let Some(tpm) = s.tpm {
        out.push(RateCheck::tokens(&s.name, tpm));
    }
    model_rates(out, &s.name, s, model);
}

fn model_rates(out: &mut Vec<RateCheck>, name: &str, s: &ScopeLimits, model: &str) {
    if let Some(m) = s.models.get(model) {
        let name: Arc<str> = format!("{name}:model:{model}").into();
        if let Some(rpm) = m.rpm {
            out.push(RateCheck::requests(name.clone(), rpm));
        }
        if let Some(tpm) = m.tpm {
            out.push(RateCheck::tokens(&name, tpm));
        }
    }
}

/// The UTC day (`YYYY-MM-DD`) of `now`, which names the current daily and monthly periods.
pub fn utc_day(now: SystemTime) -> String {
    let ms = now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    gatehouse_store::utc_day(i64::try_from(ms).unwrap_or(i64::MAX))
}

/// The budget key of a scope for the period that contains `day` ([`utc_day`]), and how long
/// its spend must be kept (the period's rest, rounded up; lifetime budgets forever).
pub fn period_key(scope: &str, b: &CompiledBudget, day: &str) -> Budget {
    let unit = b.unit.as_str();
    let (key, retain) = match b.period {
        Period::Daily => (format!("b:{scope}:d{day}:{unit}"), Some(Duration::from_secs(2 * 86_400))),
        Period::Monthly => {
            (format!("b:{scope}:m{}:{unit}", day.get(..7).unwrap_or(day)), Some(Duration::from_secs(33 * 86_400)))
        }
        Period::Lifetime => (format!("b:{scope}:life:{unit}"), None),
    };
    Budget { key, limit: b.limit, retain }
}

pub struct LimitsGate {
    pub backend: Arc<LimitsBackend>,
    pub prices: Arc<Prices>,
    pub budgets: BudgetSettings,
}

impl LimitsGate {
    pub fn new(backend: Arc<LimitsBackend>, policy: &gatehouse_config::Policy) -> LimitsGate {
        LimitsGate { backend, prices: Arc::new(policy.prices.clone()), budgets: policy.budgets.clone() }
    }

    /// Every rate and every budget of the request, checked in one call to the limits store (one
    /// script, one round trip on Redis) however many limits apply. A refusal releases whatever
    /// was reserved (the hold is dropped). The hold that comes back must reach the end of the request: it settles.
    async fn reserve(&self, cx: &mut RequestCx, req: &ApiRequest) -> Result<Hold, Denial> {
        let Some(p) = cx.principal.as_ref() else { return Ok(Hold::none()) };
        let table = self.backend.policies.table.load();
        let org = table.get(&Scope::Org(p.org)).cloned();
        let project = table.get(&Scope::Project(p.project)).cloned();
        let key = match &p.credential {
            Credential::Key(id) => table.get(&Scope::Key(*id)).cloned(),
            _ => None,
        };
        drop(table);

        let model = cx.route.as_ref().map_or_else(|| Arc::from(req.model.as_str()), |r| r.model.clone());
        let mut rates: Vec<RateCheck> = Vec::new();
        if let Credential::Key(id) = &p.credential {
            // the key's own limits replace its project's per-key defaults
            let own = key.as_ref().map(|k| (k.rpm, k.tpm));
            let rpm = own.and_then(|o| o.0).or(p.rpm);
            let tpm = own.and_then(|o| o.1).or(p.tpm);
            if rpm.is_some() || tpm.is_some() || key.is_some() {
                let name = key.as_ref().map_or_else(|| Arc::from(format!("key:{id}")), |k| k.name.clone());
                if let Some(rpm) = rpm {
                    rates.push(RateCheck::requests(name.clone(), rpm));
                }
                if let Some(tpm) = tpm {
                    rates.push(RateCheck::tokens(&name, tpm));
                }
                if let Some(k) = &key {
                    model_rates(&mut rates, &name, k, &model);
                }
            }
        }
        if let Some(s) = &project {
            scope_rates(&mut rates, s, &model);
        }
        if let Some(s) = &org {
            scope_rates(&mut rates, s, &model);
        }
        let mut budgets: Vec<(Budget, Arc<BudgetMeta>)> = Vec::new();
        let scoped = [org.as_ref(), project.as_ref(), key.as_ref()];
        let grant_budgets = p.grant.as_ref().is_some_and(|g| !g.budgets_micro_usd.is_empty());
        if grant_budgets || scoped.iter().flatten().any(|s| !s.budgets.is_empty()) {
            let day = utc_day(SystemTime::now());
            for s in scoped.into_iter().flatten() {
                for (b, meta) in s.budgets.iter().zip(&s.budget_meta) {
                    budgets.push((period_key(&s.name, b, &day), meta.clone()));
                }
            }
            token_budgets(p, &day, &mut budgets);
        }
        token_rates(p, &mut rates);
        let price = self.prices.get(&*model).copied();
        let (usd, tokens): (Vec<_>, Vec<_>) = budgets.into_iter().partition(|(_, m)| m.unit == Unit::Usd);
        let priced_only = !usd.is_empty() && self.budgets.unpriced != Unpriced::Free;
        // other models configured to stand in for this one may answer: each has its price, and
        // one whose cost a USD budget cannot bound is not tried
        let mut candidates = Vec::new();
        if cx.fallbacks.iter().any(|r| r.model != model) {
            if priced_only {
                cx.fallbacks.retain(|r| r.model == model || self.prices.contains_key(&*r.model));
            }
            // a stand-in with rates of its own for this caller is not tried: they were not
            // checked (checking them would spend them on every request it does not answer)
            let own_rates = |m: &str| {
                [org.as_ref(), project.as_ref(), key.as_ref()].iter().flatten().any(|s| s.models.contains_key(m))
            };
            cx.fallbacks.retain(|r| r.model == model || !own_rates(&r.model));
            for r in &cx.fallbacks {
                if r.model != model && !candidates.iter().any(|(m, _): &(Arc<str>, _)| *m == r.model) {
                    candidates.push((r.model.clone(), self.prices.get(&*r.model).copied()));
                }
            }
        }
        let mut hold = Hold::new(self.backend.ledger.clone(), cx, model, price, req, &self.budgets);
        let price = match price {
            Some(p) => p,
            None if !priced_only => Price::default(),
            None => {
                tracing::info!(request_id = %cx.request_id, model = %hold.model(), "refused: a USD budget applies and the model has no price");
                return Err(Denial::new(DenyCode::PermissionDenied).with_param("model"));
            }
        };
        let (prompt, output) = hold.worst_case();
        // the reservation is for the costliest model that may answer; the settlement is at the
        // price of the one that did
        let price = candidates
            .iter()
            .filter_map(|(_, p)| *p)
            .fold(price, |worst, p| if p.cost(prompt, 0, output) > worst.cost(prompt, 0, output) { p } else { worst });
        hold.may_be_served_by(candidates);
        let mut asks: Vec<(Vec<Budget>, Vec<Arc<BudgetMeta>>, u64)> =
            [(usd, price.cost(prompt, 0, output)), (tokens, prompt.saturating_add(output))]
                .into_iter()
                .filter(|(list, _)| !list.is_empty())
                .map(|(list, amount)| {
                    let (keys, meta): (Vec<Budget>, Vec<Arc<BudgetMeta>>) = list.into_iter().unzip();
                    (keys, meta, amount)
                })
                .collect();
        // requests in flight: a reservation of one against the limit, released (never spent)
        // when the request ends; its hold expires if a replica dies mid-request
        if let (Some(c), Credential::Key(id)) = (key.as_ref().and_then(|k| k.concurrency), &p.credential) {
            let name = format!("inflight:key:{id}");
            let meta = Arc::new(BudgetMeta::in_flight(&name, u64::from(c)));
            asks.push((vec![Budget { key: name, limit: u64::from(c), retain: None }], vec![meta], 1));
        }
        if rates.is_empty() && asks.is_empty() {
            return Ok(hold);
        }
        // a token rate costs the request's estimate: its prompt (tokenized where the model
        // family is known) plus its output cap; corrected to the real count when it ends
        let estimate = if rates.iter().any(|r| r.tokens) {
            let provider_model = cx.route.as_ref().map_or("", |r| &r.provider_model);
            crate::tokens::prompt_estimate(req, provider_model).saturating_add(req.max_output.unwrap_or(0))
        } else {
            0
        };

        self.backend.admit_all(cx, &mut hold, rates, asks, estimate, self.budgets.hold).await.map(|()| hold)
    }
}

impl LimitsBackend {
    /// Every rate and every ask in one call to the limits store (one script, one round trip on
    /// Redis); granted reservations join the hold, so any refusal releases them.
    async fn admit_all(
        &self,
        cx: &mut RequestCx,
        hold: &mut Hold,
        rates: Vec<RateCheck>,
        asks: Vec<(Vec<Budget>, Vec<Arc<BudgetMeta>>, u64)>,
        estimate: u64,
        ttl: Duration,
    ) -> Result<(), Denial> {
        let checks: Vec<(&str, Rate, u64)> =
            rates.iter().map(|r| (&*r.name, r.rate, if r.tokens { estimate.max(1) } else { 1 })).collect();
        let ask: Vec<Ask<'_>> = asks.iter().map(|(budgets, _, amount)| Ask { budgets, amount: *amount }).collect();
        // the store failing fails every rate and every ask
        let (rated, reserved): (Vec<_>, Vec<_>) = match self.limits.admit(&checks, &ask, ttl).await {
            Ok(a) => (a.rates.into_iter().map(Ok).collect(), a.reserved.into_iter().map(Ok).collect()),
            Err(e) => (rates.iter().map(|_| Err(e)).collect(), asks.iter().map(|_| Err(e)).collect()),
        };
        let mut refusal = None;
        for ((_, meta, _), outcome) in asks.into_iter().zip(reserved) {
            match outcome {
                Ok(Reserved::Granted(r)) => hold.add(r, meta),
                Ok(Reserved::Exhausted { budget }) => {
                    let m = meta.get(budget);
                    tracing::info!(request_id = %cx.request_id, budget = m.map(|m| m.label.as_str()), "budget exhausted");
                    refusal.get_or_insert(if m.is_some_and(|m| m.is_in_flight()) {
                        Denial::new(DenyCode::RateLimitExceeded).retry_after(1)
                    } else {
                        Denial::new(DenyCode::InsufficientQuota)
                    });
                }
                Err(_) => {
                    metrics::counter!("gatehouse_limits_unavailable_total", "kind" => "budget", "policy" => "closed")
                        .increment(1);
                    tracing::warn!(request_id = %cx.request_id, "limits store unavailable; budget check failed closed");
                    refusal.get_or_insert(Denial::new(DenyCode::Unavailable));
                }
            }
        }
        for (r, decision) in rates.into_iter().zip(rated) {
            if r.tokens && decision.as_ref().is_ok_and(|d| d.allowed) {
                hold.charged(r.name.to_string(), r.rate, estimate.max(1));
            }
            if let Err(d) = self.rated(cx, &r, decision) {
                // a rate refusal says when to retry: it wins over a budget's
                refusal = Some(d);
            }
        }
        refusal.map_or(Ok(()), Err)
    }

    /// One rate's decision: reported in the headers (the tightest), and a refusal if over.
    fn rated(
        &self,
        cx: &mut RequestCx,
        r: &RateCheck,
        decision: Result<gatehouse_limits::RateDecision, gatehouse_limits::Unavailable>,
    ) -> Result<(), Denial> {
        if let Ok(d) = &decision {
            // report the tightest rate of each kind: the one with the fewest left
            let info = RateLimitInfo { limit: r.rate.per_minute, remaining: d.remaining, reset: d.reset };
            let slot = if r.tokens { &mut cx.token_rate_limit } else { &mut cx.rate_limit };
            if slot.is_none_or(|s| info.remaining < s.remaining) {
                *slot = Some(info);
            }
        }
        match decision {
            Ok(d) if d.allowed => Ok(()),
            Ok(d) => {
                let secs = u32::try_from(d.retry_after.as_millis().div_ceil(1000)).unwrap_or(u32::MAX).max(1);
                Err(Denial::new(DenyCode::RateLimitExceeded).retry_after(secs))
            }
            Err(_) if self.rates_fail_open => {
                metrics::counter!("gatehouse_limits_unavailable_total", "kind" => "rate", "policy" => "open")
                    .increment(1);
                tracing::warn!(request_id = %cx.request_id, "limits store unavailable; rate check passed (fail open)");
                cx.limits_degraded = true;
                Ok(())
            }
            Err(_) => {
                metrics::counter!("gatehouse_limits_unavailable_total", "kind" => "rate", "policy" => "closed")
                    .increment(1);
                Err(Denial::new(DenyCode::Unavailable))
            }
        }
    }

    /// An MCP message's limits (docs/MCP.md): the MCP policies' rates that match it (`rates`:
    /// name, requests per minute), the token's `rpm` caveats, and a tool call's flat price
    /// reserved on every USD budget of the org, the project, the key and the token's chain, all
    /// at once or none. The hold settles with [`crate::ledger::Used::Call`] when the server
    /// answered (charged, one ledger row), and releases otherwise.
    pub async fn reserve_call(&self, cx: &mut RequestCx, call: CallLimits, ttl: Duration) -> Result<Hold, Denial> {
        let Some(p) = cx.principal.as_ref() else { return Ok(Hold::none()) };
        let mut rates: Vec<RateCheck> =
            call.rates.into_iter().map(|(name, rpm)| RateCheck::requests(name.into(), rpm)).collect();
        token_rates(p, &mut rates);
        let mut budgets: Vec<(Budget, Arc<BudgetMeta>)> = Vec::new();
        if call.micro_usd > 0 {
            let table = self.policies.table.load();
            let key = match &p.credential {
                Credential::Key(id) => table.get(&Scope::Key(*id)).cloned(),
                _ => None,
            };
            let scoped = [table.get(&Scope::Org(p.org)).cloned(), table.get(&Scope::Project(p.project)).cloned(), key];
            drop(table);
            let day = utc_day(SystemTime::now());
            for s in scoped.iter().flatten() {
                for (b, meta) in s.budgets.iter().zip(&s.budget_meta).filter(|(b, _)| b.unit == Unit::Usd) {
                    budgets.push((period_key(&s.name, b, &day), meta.clone()));
                }
            }
            token_budgets(p, &day, &mut budgets);
        }
        // a ledger row for tool calls only (listings and pings are not usage)
        let ledger = if call.record { self.ledger.clone() } else { None };
        let mut hold = Hold::for_call(ledger, cx, call.name, call.provider, call.micro_usd);
        let asks: Vec<(Vec<Budget>, Vec<Arc<BudgetMeta>>, u64)> = if budgets.is_empty() {
            Vec::new()
        } else {
            let (keys, meta): (Vec<Budget>, Vec<Arc<BudgetMeta>>) = budgets.into_iter().unzip();
            vec![(keys, meta, call.micro_usd)]
        };
        if rates.is_empty() && asks.is_empty() {
            return Ok(hold);
        }
        self.admit_all(cx, &mut hold, rates, asks, 0, ttl).await.map(|()| hold)
    }
}

/// The `budget_usd` caveats of every node of a token's delegation chain (lifetime, USD).
fn token_budgets(p: &gatehouse_core::Principal, day: &str, out: &mut Vec<(Budget, Arc<BudgetMeta>)>) {
    let Some(grant) = &p.grant else { return };
    for &(node, micro) in grant.budgets_micro_usd.iter() {
        if let Some(token) = grant.chain.get(node) {
            let scope = format!("token:{token}");
            let b = CompiledBudget { period: Period::Lifetime, unit: Unit::Usd, limit: micro, alert_at: vec![] };
            out.push((period_key(&scope, &b, day), Arc::new(BudgetMeta::new(&scope, &b))));
        }
    }
}

/// The `rpm` caveats of every node of a token's delegation chain (a parent's rate is shared by
/// all of its descendants).
fn token_rates(p: &gatehouse_core::Principal, out: &mut Vec<RateCheck>) {
    let Some(grant) = &p.grant else { return };
    for &(node, rpm) in grant.rpm.iter() {
        if let Some(token) = grant.chain.get(node) {
            out.push(RateCheck::requests(format!("token:{token}").into(), rpm));
        }
    }
}

/// What an MCP message asks of the limits: what it is (`server/tool`), where it goes (the usage
/// ledger's provider), the rates that apply (name, per minute) and its flat price.
pub struct CallLimits {
    pub name: Arc<str>,
    pub provider: Arc<str>,
    pub rates: Vec<(String, u32)>,
    pub micro_usd: u64,
    /// Whether the call gets a usage-ledger row (tool calls do; other messages do not).
    pub record: bool,
}

impl Gate for LimitsGate {
    /// The budget reservations, settled to the real use when the request ends.
    type Pass = Hold;
    const NAME: GateName = GateName::Limits;

    async fn check(&self, cx: &mut RequestCx, req: &mut ApiRequest) -> Verdict<Hold> {
        Verdict::from(self.reserve(cx, req).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minute_rate_bursts_ten_seconds_worth() {
        assert_eq!(rate(60).burst, 10);
        assert_eq!(rate(2).burst, 1);
        assert_eq!(rate(1).burst, 1);
        assert_eq!(rate(7).burst, 2);
    }

    #[test]
    fn budget_keys_name_scope_period_and_unit() {
        // 2026-11-24T12:00:00Z
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_521_600);
        let b = |period, unit| CompiledBudget { period, unit, limit: 5, alert_at: vec![] };
        let day = utc_day(now);
        assert_eq!(period_key("org:o", &b(Period::Daily, Unit::Usd), &day).key, "b:org:o:d2026-11-24:usd");
        assert_eq!(period_key("org:o", &b(Period::Monthly, Unit::Tokens), &day).key, "b:org:o:m2026-11:tokens");
        let life = period_key("token:t", &b(Period::Lifetime, Unit::Usd), &day);
        assert_eq!((life.key.as_str(), life.retain), ("b:token:t:life:usd", None));
    }
}
