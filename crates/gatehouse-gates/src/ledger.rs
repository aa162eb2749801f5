//! Settlement: what a request really used goes back to its budgets and into the usage ledger.
//!
//! The limits gate hands every admitted request a [`Hold`]; the request's end (a whole answer,
//! a stream that completed, failed, was cut or was cancelled by the client, a refusal after
//! admission) settles it exactly once — explicitly, or by dropping it. Settling is queued to
//! one background task per process ([`Ledger`]), so the request path never waits on the
//! limits store or the database for it:
//! - each reservation is settled to the real amount (retried while the limits store is down,
//!   for as long as the store keeps an expired hold's receipt), and a budget whose spend
//!   crossed one of its soft thresholds emits a `budget.threshold` audit event (webhook-able);
//! - the request's usage and cost are written to the usage ledger in batches (retried while
//!   the database is down; the request id makes a retried write change nothing).

use std::sync::Arc;
use std::time::Duration;

use gatehouse_audit::{Actor, Auditor, Event, EventKind, Outcome};
use gatehouse_config::budgets::{BudgetSettings, Price};
use gatehouse_core::{OrgId, ProjectId, RequestCx};
use gatehouse_limits::spec::{CompiledBudget, Unit, crossed};
use gatehouse_limits::{Adjust, Limits, Rate, Reservation, Settle};
use gatehouse_providers::{ApiRequest, Usage};
use gatehouse_store::{BudgetSpend, Store, UsageRecord, now_ms};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

/// What a reserved budget is, for logs and threshold events.
#[derive(Clone, Debug)]
pub struct BudgetMeta {
    /// `project:<id>/monthly/usd`
    pub label: String,
    pub unit: Unit,
    pub limit: u64,
    pub alert_at: Vec<u8>,
    /// The budget belongs to a project or a key of the request's project (not the org).
    below_org: bool,
    /// Counts requests in flight: released when the request ends, never spent.
    in_flight: bool,
}

impl BudgetMeta {
    pub(crate) fn new(scope: &str, b: &CompiledBudget) -> BudgetMeta {
        BudgetMeta {
            label: format!("{scope}/{}/{}", b.period.as_str(), b.unit.as_str()),
            unit: b.unit,
            limit: b.limit,
            alert_at: b.alert_at.clone(),
            below_org: !scope.starts_with("org:"),
            in_flight: false,
        }
    }

    pub(crate) fn in_flight(name: &str, limit: u64) -> BudgetMeta {
        BudgetMeta {
            label: name.to_owned(),
            unit: Unit::Tokens,
            limit,
            alert_at: vec![],
            below_org: true,
            in_flight: true,
        }
    }

    pub(crate) fn is_in_flight(&self) -> bool {
        self.in_flight
    }
}

/// How much of a request's use is known when it ends.
#[derive(Clone, Copy, Debug)]
pub enum Used {
    /// The provider's own count.
    Reported(Usage),
    /// No count from the provider (a stream cancelled or cut before its usage chunk, an answer
    /// without usage): the completion tokens estimated by the caller (streamed events, one
    /// token each as providers stream them), and the prompt at four bytes per token.
    Estimated { completion_tokens: u64 },
    /// Nothing reached a provider (or it failed before answering): release the reservation.
    Nothing,
    /// Answered from the response cache: nothing is charged (budgets and token rates get
    /// their reservation back); the ledger records the hit, with the tokens the kept answer
    /// reported, under provider `cache` at no cost.
    CacheHit(Option<Usage>),
    /// A priced call (an MCP tool call) the server answered: charged its flat price, recorded
    /// in the ledger with no tokens.
    Call,
}

/// The provider name the usage ledger records cache hits under.
pub const CACHE_PROVIDER: &str = "cache";

struct Pending {
    request_id: String,
    org: OrgId,
    project: ProjectId,
    credential: String,
    model: Arc<str>,
    /// The provider of the deployment that served the request (or was tried last).
    provider: Arc<str>,
    /// The stored provider credential presented (`<id>:v<version>`), if one was.
    provider_credential: Option<Arc<str>>,
    price: Option<Price>,
    /// A call's flat price in micro-USD (an MCP tool call), instead of a per-token price.
    flat: Option<u64>,
    body_bytes: u64,
    output_reserved: u64,
    /// Events of a stream that carry no tokens: each choice's first (the role) and last (the
    /// finish reason), and a little slack.
    framing_events: u64,
    reservations: Vec<(Reservation, Vec<Arc<BudgetMeta>>)>,
    /// Token rates charged the request's estimate: (rate key, rate, estimate).
    token_charges: Vec<(String, Rate, u64)>,
    /// Other models that may answer instead (configured fallbacks), with their prices.
    stand_ins: Vec<(Arc<str>, Option<Price>)>,
}

impl Pending {
    /// The request's identity with nothing reserved or priced yet (`None`: no principal).
    fn of(cx: &RequestCx, model: Arc<str>, provider: Arc<str>) -> Option<Pending> {
        let p = cx.principal.as_ref()?;
        Some(Pending {
            request_id: cx.request_id.to_string(),
            org: p.org,
            project: p.project,
            credential: Actor::of(&p.credential).render(),
            model,
            provider,
            provider_credential: None,
            price: None,
            flat: None,
            body_bytes: 0,
            output_reserved: 0,
            framing_events: 0,
            reservations: Vec::new(),
            token_charges: Vec::new(),
            stand_ins: Vec::new(),
        })
    }
}

/// An admitted request's reservations and identity, settled once when the request ends.
/// Dropping an unsettled hold releases it (nothing used), so no exit path can leak one.
pub struct Hold {
    ledger: Option<Ledger>,
    pending: Option<Box<Pending>>,
}

impl Hold {
    /// For requests that reach no limits gate (refused earlier) and for tests.
    pub fn none() -> Hold {
        Hold { ledger: None, pending: None }
    }

    pub(crate) fn new(
        ledger: Option<Ledger>,
        cx: &RequestCx,
        model: Arc<str>,
        price: Option<Price>,
        req: &ApiRequest,
        settings: &BudgetSettings,
    ) -> Hold {
        let provider = cx.route.as_ref().map_or_else(|| Arc::from(""), |r| r.provider.clone());
        let Some(mut pending) = Pending::of(cx, model, provider) else { return Hold::none() };
        pending.price = price;
        pending.body_bytes = req.body_bytes as u64;
        pending.output_reserved = req.max_output.unwrap_or(settings.default_max_tokens);
        pending.framing_events = 2 * req.choices + 2;
        Hold { ledger, pending: Some(Box::new(pending)) }
    }

    /// A call at a flat price (an MCP message, `name` = `server/tool` or `server/method`,
    /// recorded under provider `provider`), settled with [`Used::Call`] when the server answered.
    pub(crate) fn for_call(
        ledger: Option<Ledger>,
        cx: &RequestCx,
        name: Arc<str>,
        provider: Arc<str>,
        micro_usd: u64,
    ) -> Hold {
        let Some(mut pending) = Pending::of(cx, name, provider) else { return Hold::none() };
        pending.flat = Some(micro_usd);
        Hold { ledger, pending: Some(Box::new(pending)) }
    }

    /// The stored provider credential presented.
    pub(crate) fn presented_credential(&mut self, credential: Arc<str>) {
        if let Some(p) = self.pending.as_mut() {
            p.provider_credential = Some(credential);
        }
    }

    /// Other models that may answer the request, with their prices.
    pub(crate) fn may_be_served_by(&mut self, stand_ins: Vec<(Arc<str>, Option<Price>)>) {
        if let Some(p) = self.pending.as_mut() {
            p.stand_ins = stand_ins;
        }
    }

    /// Another deployment than the route gate's first served the request (of another model:
    /// the ledger records that model, at its price).
    pub(crate) fn served_by(&mut self, model: &Arc<str>, provider: Arc<str>) {
        if let Some(p) = self.pending.as_mut() {
            p.provider = provider;
            if let Some((m, price)) = p.stand_ins.iter().find(|(m, _)| m == model) {
                (p.model, p.price) = (m.clone(), *price);
            }
        }
    }

    pub(crate) fn model(&self) -> &str {
        self.pending.as_ref().map_or("", |p| &p.model)
    }

    /// The request's worst case: (prompt tokens, output tokens). The prompt is bounded by its
    /// body's size (a byte-level BPE token is at least one byte).
    pub(crate) fn worst_case(&self) -> (u64, u64) {
        self.pending.as_ref().map_or((0, 0), |p| (p.body_bytes, p.output_reserved))
    }

    pub(crate) fn add(&mut self, r: Reservation, meta: Vec<Arc<BudgetMeta>>) {
        if let Some(p) = self.pending.as_mut() {
            p.reservations.push((r, meta));
        }
    }

    pub(crate) fn charged(&mut self, rate_key: String, rate: Rate, estimate: u64) {
        if let Some(p) = self.pending.as_mut() {
            p.token_charges.push((rate_key, rate, estimate));
        }
    }

    /// How many data events a stream may send when a budget applies: one per reserved output
    /// token plus each choice's framing events. A stream running past it is cut, so it cannot
    /// spend beyond its reservation (providers stream at most one token per content event).
    pub fn output_cap(&self) -> Option<u64> {
        self.pending
            .as_ref()
            .filter(|p| p.reservations.iter().any(|(_, m)| m.iter().any(|m| !m.in_flight)))
            .map(|p| p.output_reserved.saturating_add(p.framing_events))
    }

    /// Settles the reservations to what was used and records it in the ledger.
    pub fn settle(mut self, used: Used) {
        self.finish(used);
    }

    fn finish(&mut self, used: Used) {
        let Some(p) = self.pending.take() else { return };
        let Some(ledger) = self.ledger.take() else { return };
        let hit = matches!(used, Used::CacheHit(_));
        let call = matches!(used, Used::Call);
        let usage = match used {
            Used::Call => Some(Usage::default()),
            Used::Reported(u) => Some(u),
            Used::Estimated { completion_tokens } => {
                Some(Usage { prompt_tokens: p.body_bytes.div_ceil(4), completion_tokens, cached_tokens: 0 })
            }
            Used::Nothing => None,
            Used::CacheHit(u) => Some(u.unwrap_or_default()),
        };
        let cost = match (call, p.flat) {
            (true, flat) => flat.unwrap_or(0),
            (false, _) => usage.filter(|_| !hit).map_or(0, |u| {
                p.price.map_or(0, |price| price.cost(u.prompt_tokens, u.cached_tokens, u.completion_tokens))
            }),
        };
        // what was spent at a provider: a hit spent nothing
        let tokens = usage.filter(|_| !hit).map_or(0, |u| u.prompt_tokens.saturating_add(u.completion_tokens));
        let record = usage.map(|u| UsageRecord {
            request_id: p.request_id.clone(),
            at: now_ms(),
            org_id: p.org.to_string(),
            project_id: p.project.to_string(),
            credential: p.credential.clone(),
            model: p.model.to_string(),
            provider: if hit { CACHE_PROVIDER.to_owned() } else { p.provider.to_string() },
            provider_credential: if hit {
                String::new()
            } else {
                p.provider_credential.as_deref().unwrap_or_default().to_owned()
            },
            prompt_tokens: i64::try_from(u.prompt_tokens).unwrap_or(i64::MAX),
            completion_tokens: i64::try_from(u.completion_tokens).unwrap_or(i64::MAX),
            cached_tokens: i64::try_from(u.cached_tokens).unwrap_or(i64::MAX),
            cost_micro_usd: i64::try_from(cost).unwrap_or(i64::MAX),
        });
        let reservations = p
            .reservations
            .into_iter()
            .map(|(r, meta)| {
                let actual = match meta.first() {
                    Some(m) if m.in_flight => 0,
                    Some(m) if m.unit == Unit::Tokens => tokens,
                    _ => cost,
                };
                (r, meta, actual)
            })
            .collect();
        let corrections = p
            .token_charges
            .into_iter()
            .map(|(key, rate, estimate)| {
                let delta = i128::from(tokens) - i128::from(estimate);
                (key, rate, i64::try_from(delta).unwrap_or(if delta < 0 { i64::MIN } else { i64::MAX }))
            })
            .filter(|c| c.2 != 0)
            .collect();
        ledger.submit(Box::new(Settlement { org: p.org, project: p.project, reservations, corrections, record }));
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.finish(Used::Nothing);
    }
}

struct Settlement {
    org: OrgId,
    project: ProjectId,
    reservations: Vec<(Reservation, Vec<Arc<BudgetMeta>>, u64)>,
    /// Token rates to correct from the estimate to the count: (rate key, rate, difference).
    corrections: Vec<(String, Rate, i64)>,
    record: Option<UsageRecord>,
}

enum Msg {
    /// To settle (Redis).
    Settle(Box<Settlement>),
    /// Settled where the request ended (in-process store): what is left to write.
    Settled {
        record: Option<Box<UsageRecord>>,
        spends: Spends,
    },
    Flush(oneshot::Sender<()>),
}

/// The process's settlement queue. Cheap to clone.
///
/// On the in-process limits store a request is settled where it ends (a few map updates, no
/// waiting) and only its ledger row and spend are queued; the task takes them every
/// [`LOCAL_TICK`] instead of being woken per request (on a 2-core machine each wake-up of
/// another task is a hand-off between threads the request pays for). On Redis the task
/// settles what is queued at once, one round trip for all of it.
#[derive(Clone)]
pub struct Ledger {
    tx: mpsc::UnboundedSender<Msg>,
    limits: Arc<Limits>,
    auditor: Option<Auditor>,
    /// Wakes the task for a flush (it is not woken per message on the in-process store).
    urgent: Arc<tokio::sync::Notify>,
}

/// Batches of ledger rows are written at this size or this often, whichever comes first.
const BATCH: usize = 256;
const LINGER: Duration = Duration::from_millis(200);
/// How often the task takes what the in-process store's requests queued.
const LOCAL_TICK: Duration = Duration::from_millis(50);
/// Settlements taken off the queue at once. The task does not linger for more: a request's
/// in-flight reservation is released by its settlement, so a delay here would refuse the next
/// request of a client with a concurrency limit.
const QUEUE_TAKE: usize = 1024;
/// Rows kept while the database is down; beyond this the oldest are dropped (and counted).
const MAX_UNWRITTEN: usize = 1_000_000;
/// How long a settle is retried while the limits store is down: a little less than the hour
/// the store keeps an expired hold's receipt.
const SETTLE_RETRY_FOR: Duration = Duration::from_secs(55 * 60);

impl Ledger {
    /// Starts the settlement task. `auditor` receives threshold events.
    /// On the in-process limits store, each settled spend is also written to the database
    /// (`budget_spend`), so a restart keeps the budgets' periods' spend.
    pub fn start(store: Store, limits: Arc<Limits>, auditor: Option<Auditor>) -> Ledger {
        let (tx, rx) = mpsc::unbounded_channel();
        let urgent = Arc::new(tokio::sync::Notify::new());
        tokio::spawn(run(rx, store, limits.clone(), auditor.clone(), urgent.clone()));
        Ledger { tx, limits, auditor, urgent }
    }

    fn submit(&self, s: Box<Settlement>) {
        let msg = match &*self.limits {
            Limits::Local(local) => {
                let Settlement { org, project, reservations, corrections, record } = *s;
                let mut batch = Batch::default();
                batch.add(org, project, reservations, corrections);
                Msg::Settled { record: record.map(Box::new), spends: batch.settle_local(local, self.auditor.as_ref()) }
            }
            Limits::Redis(_) => Msg::Settle(s),
        };
        if self.tx.send(msg).is_err() {
            metrics::counter!("gatehouse_ledger_dropped_total").increment(1);
            tracing::error!("settlement queue closed; a request's settlement was dropped");
        }
    }

    /// Waits until everything submitted before has been settled and written (or, for a limits
    /// store that is down, given up by the caller's deadline). For shutdown and tests.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Flush(done)).is_ok() {
            self.urgent.notify_one();
            let _ = wait.await;
        }
    }
}

/// Restores the in-process store's budget spend from the database (at start).
pub async fn restore_spend(store: &Store, limits: &Limits) -> Result<usize, gatehouse_store::Error> {
    let Limits::Local(local) = limits else { return Ok(0) };
    let now = now_ms();
    let rows = store.budget_spends(now).await?;
    for r in &rows {
        let left = r.expires_at.map(|t| Duration::from_millis(u64::try_from(t - now).unwrap_or(0)));
        local.seed(&r.budget, u64::try_from(r.spent).unwrap_or(0), left);
    }
    Ok(rows.len())
}

/// What settling hands back to be persisted (in-process store only).
type Spends = Vec<BudgetSpend>;

/// One reservation owed its settlement.
struct Owed {
    org: OrgId,
    project: ProjectId,
    reservation: Reservation,
    meta: Vec<Arc<BudgetMeta>>,
    actual: u64,
}

/// The settlements and token-rate corrections taken off the queue in one pass, settled in one
/// call to the limits store (one round trip on Redis, however many requests ended).
#[derive(Default)]
struct Batch {
    owed: Vec<Owed>,
    corrections: Vec<(String, Rate, i64)>,
}

impl Batch {
    fn add(
        &mut self,
        org: OrgId,
        project: ProjectId,
        reservations: Vec<(Reservation, Vec<Arc<BudgetMeta>>, u64)>,
        corrections: Vec<(String, Rate, i64)>,
    ) {
        self.owed.extend(reservations.into_iter().map(|(reservation, meta, actual)| Owed {
            org,
            project,
            reservation,
            meta,
            actual,
        }));
        self.corrections.extend(corrections);
    }

    fn is_empty(&self) -> bool {
        self.owed.is_empty() && self.corrections.is_empty()
    }

    /// One attempt. Settled: the spend to persist (in-process store), thresholds crossed
    /// reported. The store unavailable: the batch back, to retry.
    async fn attempt(self, limits: &Limits, auditor: Option<&Auditor>) -> Result<Spends, Batch> {
        let answer = {
            let settles: Vec<Settle<'_>> = self.owed.iter().map(|o| (&o.reservation, o.actual)).collect();
            let adjusts: Vec<Adjust<'_>> = self.corrections.iter().map(|(k, r, d)| (k.as_str(), *r, *d)).collect();
            limits.settle_batch(&settles, &adjusts).await
        };
        let Ok(after) = answer else { return Err(self) };
        Ok(self.settled(after, matches!(limits, Limits::Local(_)), auditor))
    }

    /// Settles on the in-process store, which never waits and is never unavailable.
    fn settle_local(self, local: &gatehouse_limits::Local, auditor: Option<&Auditor>) -> Spends {
        let after = self.owed.iter().map(|o| local.settle(&o.reservation, o.actual)).collect();
        for (key, rate, delta) in &self.corrections {
            local.adjust(key, *rate, *delta);
        }
        self.settled(after, true, auditor)
    }

    /// What the store answered for each settlement: the spend to persist (`persist`: the
    /// in-process store's), thresholds crossed reported.
    fn settled(self, after: Vec<Option<Vec<u64>>>, persist: bool, auditor: Option<&Auditor>) -> Spends {
        let now = now_ms();
        let mut spends = Vec::new();
        for (o, after) in self.owed.into_iter().zip(after) {
            if persist && after.is_some() && o.actual > 0 {
                spends.extend(o.reservation.budgets.iter().map(|b| BudgetSpend {
                    budget: b.key.clone(),
                    spent: i64::try_from(o.actual).unwrap_or(i64::MAX),
                    expires_at:
                        b.retain.map(|keep| now.saturating_add(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX))),
                }));
            }
            // None: settled before (a retry after a lost answer); nothing crossed now
            for (m, spent) in o.meta.iter().zip(after.unwrap_or_default()) {
                for pct in crossed(&m.alert_at, m.limit, spent.saturating_sub(o.actual), spent) {
                    threshold(auditor, o.org, m.below_org.then_some(o.project), m, pct);
                }
            }
        }
        spends
    }
}

/// Settles what is queued now: inline (the in-process store never waits; on Redis waiting one
/// round trip lets the next batch gather), and a batch the store could not take is retried
/// beside the queue, so the queue keeps moving while the store is down.
async fn settle_now(
    batch: &mut Batch,
    limits: &Arc<Limits>,
    auditor: Option<&Auditor>,
    spends: &mut Spends,
    retrying: &mut JoinSet<Spends>,
) {
    if batch.is_empty() {
        return;
    }
    match std::mem::take(batch).attempt(limits, auditor).await {
        Ok(settled) => spends.extend(settled),
        Err(failed) => {
            retrying.spawn(retry(failed, limits.clone(), auditor.cloned()));
        }
    }
}

/// Retries a batch every second for as long as the store keeps an expired hold's receipt.
/// Token-rate corrections are dropped (a rate is a rolling minute: a correction made later
/// would be stale).
async fn retry(mut batch: Batch, limits: Arc<Limits>, auditor: Option<Auditor>) -> Spends {
    if !batch.corrections.is_empty() {
        metrics::counter!("gatehouse_limits_unavailable_total", "kind" => "token_rate_correction", "policy" => "skip")
            .increment(batch.corrections.len() as u64);
        batch.corrections.clear();
    }
    let started = tokio::time::Instant::now();
    loop {
        metrics::counter!("gatehouse_limits_unavailable_total", "kind" => "settle", "policy" => "retry")
            .increment(batch.owed.len() as u64);
        tokio::time::sleep(Duration::from_secs(1)).await;
        match batch.attempt(&limits, auditor.as_ref()).await {
            Ok(spends) => return spends,
            Err(failed) if started.elapsed() < SETTLE_RETRY_FOR => batch = failed,
            Err(failed) => {
                tracing::error!(
                    settlements = failed.owed.len(),
                    "limits store unavailable for too long; settlements were given up"
                );
                return Vec::new();
            }
        }
    }
}

async fn run(
    mut rx: mpsc::UnboundedReceiver<Msg>,
    store: Store,
    limits: Arc<Limits>,
    auditor: Option<Auditor>,
    urgent: Arc<tokio::sync::Notify>,
) {
    let mut rows: Vec<UsageRecord> = Vec::new();
    let mut spends: Spends = Vec::new();
    let mut retrying: JoinSet<Spends> = JoinSet::new();
    // on the in-process store the queue is taken on a tick (or a flush), never woken per message
    let local = matches!(*limits, Limits::Local(_));
    let mut tick = tokio::time::interval(if local { LOCAL_TICK } else { LINGER });
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut written = tokio::time::Instant::now();
    let mut queued: Vec<Msg> = Vec::with_capacity(QUEUE_TAKE);
    let mut batch = Batch::default();
    // a full take on the in-process store: take again at once, so the queue never outgrows a tick
    let mut more = false;
    loop {
        let taken = if more {
            take_queued(&mut rx, &mut queued)
        } else {
            tokio::select! {
                taken = rx.recv_many(&mut queued, QUEUE_TAKE), if !local => taken,
                () = urgent.notified(), if local => take_queued(&mut rx, &mut queued),
                Some(done) = retrying.join_next(), if !retrying.is_empty() => {
                    spends.extend(done.unwrap_or_default());
                    continue;
                }
                _ = tick.tick() => {
                    let taken = if local { take_queued(&mut rx, &mut queued) } else { 0 };
                    if taken == 0 {
                        if due(written, &rows, &spends) {
                            write(&store, &mut rows, &mut spends).await;
                            written = tokio::time::Instant::now();
                        }
                        if !rx.is_closed() {
                            continue;
                        }
                    }
                    taken
                }
            }
        };
        more = local && taken == QUEUE_TAKE;
        if taken == 0 && (rx.is_closed() || !local) {
            while let Some(done) = retrying.join_next().await {
                spends.extend(done.unwrap_or_default());
            }
            write(&store, &mut rows, &mut spends).await;
            return;
        }
        for msg in queued.drain(..) {
            match msg {
                Msg::Settle(s) => {
                    let Settlement { org, project, reservations, corrections, record } = *s;
                    rows.extend(record);
                    batch.add(org, project, reservations, corrections);
                }
                Msg::Settled { record, spends: s } => {
                    rows.extend(record.map(|r| *r));
                    spends.extend(s);
                }
                Msg::Flush(done) => {
                    settle_now(&mut batch, &limits, auditor.as_ref(), &mut spends, &mut retrying).await;
                    while let Some(s) = retrying.join_next().await {
                        spends.extend(s.unwrap_or_default());
                    }
                    write(&store, &mut rows, &mut spends).await;
                    let _ = done.send(());
                }
            }
        }
        settle_now(&mut batch, &limits, auditor.as_ref(), &mut spends, &mut retrying).await;
        if rows.len() >= BATCH || due(written, &rows, &spends) {
            write(&store, &mut rows, &mut spends).await;
            written = tokio::time::Instant::now();
        }
    }
}

/// Whether pending rows or spend have waited [`LINGER`] since the last write.
fn due(written: tokio::time::Instant, rows: &[UsageRecord], spends: &Spends) -> bool {
    written.elapsed() >= LINGER && (!rows.is_empty() || !spends.is_empty())
}

/// Takes what is queued without waiting (the in-process store's tick).
fn take_queued(rx: &mut mpsc::UnboundedReceiver<Msg>, queued: &mut Vec<Msg>) -> usize {
    while queued.len() < QUEUE_TAKE {
        match rx.try_recv() {
            Ok(m) => queued.push(m),
            Err(_) => break,
        }
    }
    queued.len()
}

/// Writes the pending rows; on failure keeps them (bounded) for the next attempt.
async fn write(store: &Store, rows: &mut Vec<UsageRecord>, spends: &mut Spends) {
    if !spends.is_empty() {
        // one row per budget per batch, however many requests spent on it
        let mut summed: Vec<BudgetSpend> = Vec::new();
        for s in spends.drain(..) {
            match summed.iter_mut().find(|x| x.budget == s.budget) {
                Some(x) => x.spent = x.spent.saturating_add(s.spent),
                None => summed.push(s),
            }
        }
        *spends = summed;
        match store.add_budget_spend(spends).await {
            Ok(()) => spends.clear(),
            Err(e) => {
                tracing::warn!(error = %e, pending = spends.len(), "budget spend write failed; will retry");
                if spends.len() > MAX_UNWRITTEN {
                    let over = spends.len() - MAX_UNWRITTEN;
                    spends.drain(..over);
                }
            }
        }
    }
    if rows.is_empty() {
        return;
    }
    match store.record_usage(rows).await {
        Ok(()) => {
            metrics::counter!("gatehouse_ledger_rows_total").increment(rows.len() as u64);
            rows.clear();
        }
        Err(e) => {
            tracing::warn!(error = %e, pending = rows.len(), "usage ledger write failed; will retry");
            if rows.len() > MAX_UNWRITTEN {
                let over = rows.len() - MAX_UNWRITTEN;
                rows.drain(..over);
                metrics::counter!("gatehouse_ledger_dropped_total").increment(over as u64);
                tracing::error!(dropped = over, "usage ledger backlog full; oldest rows dropped");
            }
        }
    }
}

fn threshold(auditor: Option<&Auditor>, org: OrgId, project: Option<ProjectId>, m: &BudgetMeta, pct: u8) {
    metrics::counter!("gatehouse_budget_thresholds_total", "unit" => m.unit.as_str()).increment(1);
    tracing::info!(org = %org, budget = %m.label, percent = pct, "budget threshold crossed");
    if let Some(a) = auditor {
        let mut e = Event::new(EventKind::BudgetThreshold, Outcome::Allowed, 200, "ok", Actor::System);
        e.org = Some(org);
        e.project = project;
        e.target = Some(format!("{}/{pct}%", m.label));
        a.submit(e);
    }
}
