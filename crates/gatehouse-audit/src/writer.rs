//! The single writer: one task owns appending, so events never interleave within a process
//! and the request path never takes a lock. Callers hand events to a bounded queue; the
//! writer drains it in batches, extends each event's chain inside one transaction per batch
//! (the chain heads are locked rows, so replicas sharing PostgreSQL extend one sequence per
//! chain), signs checkpoints, and mirrors to the optional JSONL file.
//!
//! When the store fails, events are spooled to a local file (fsync'd before they are
//! acknowledged) and replayed, in order and without duplicates, once the store is back. With
//! `fail_closed`, nothing is spooled: callers waiting for an acknowledgement get an error and
//! [`Auditor::accepting`] turns false so the data plane refuses new requests.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gatehouse_security::chain::{Anchor, link};
use gatehouse_security::checkpoint::{CheckpointSigner, CheckpointVerifier};
use gatehouse_store::{AnchorRow, ChainHead, NewAuditRecord, Store, now_ms};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};

use crate::event::{Actor, Event, EventKind, Outcome, Pending};
use crate::export;
use crate::spool::Spool;

/// What happens when the store cannot take events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Spool to a local file and replay; requests keep flowing.
    Spool,
    /// Refuse: acknowledgements fail and the data plane answers 503 until the store is back.
    FailClosed,
}

#[derive(Clone, Debug)]
pub struct WriterConfig {
    pub queue: usize,
    pub batch_max: usize,
    /// How long the writer waits for more events before committing a partial batch.
    pub linger: Duration,
    /// Sign a checkpoint after this many events on a chain...
    pub checkpoint_every: u64,
    /// ...or after this long, whichever comes first.
    pub checkpoint_interval: Duration,
    pub failure: FailurePolicy,
    pub spool: PathBuf,
    pub spool_max_bytes: u64,
    /// Mirror every record and checkpoint to this JSONL file (the export format).
    pub file: Option<PathBuf>,
    /// Prune records older than this, keeping a signed anchor.
    pub retention: Option<Duration>,
    /// Webhook deliveries to create with each event, in the same transaction.
    pub outbox: Option<Arc<dyn Outbox>>,
}

/// What an event announces to subscribers: decided per event when it is appended, so a
/// delivery exists exactly when its event does (the outbox commits with the chain).
pub trait Outbox: Send + Sync {
    fn deliveries(&self, chain: &str, action: &str, line: &str) -> Vec<Delivery>;
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub webhook_id: String,
    pub org_id: Option<String>,
    pub payload: String,
}

impl std::fmt::Debug for dyn Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Outbox")
    }
}

impl WriterConfig {
    pub fn new(spool: PathBuf) -> WriterConfig {
        WriterConfig {
            queue: 16_384,
            batch_max: 2048,
            linger: Duration::from_millis(50),
            checkpoint_every: 1_000,
            checkpoint_interval: Duration::from_secs(10),
            failure: FailurePolicy::Spool,
            spool,
            spool_max_bytes: 64 * 1024 * 1024,
            file: None,
            retention: Some(Duration::from_secs(90 * 24 * 3600)),
            outbox: None,
        }
    }
}

/// The origin line of a chain's checkpoints.
pub fn origin(chain: &str) -> String {
    format!("gatehouse/audit/{chain}")
}

/// The name the checkpoint key signs under.
pub const KEY_NAME: &str = "gatehouse-audit";

/// The label the checkpoint seed is first derived from the master key under.
pub const CHECKPOINT_LABEL: &[u8] = b"gatehouse/v1/audit-checkpoint";

/// The checkpoint signing key from its seed: first a purpose-bound subkey of the master key
/// ([`CHECKPOINT_LABEL`]), then pinned sealed in the store so it outlives a master-key rotation
/// (every checkpoint signed before still verifies).
pub fn signer(seed: &[u8; 32]) -> Result<CheckpointSigner, gatehouse_security::checkpoint::CheckpointError> {
    CheckpointSigner::from_seed(KEY_NAME, seed)
}

/// The event could not be recorded durably (fail-closed, or the spool failed too).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("audit trail unavailable")]
pub struct Unavailable;

type Ack = oneshot::Sender<Result<(), Unavailable>>;

#[expect(
    clippy::large_enum_variant,
    reason = "events move into the channel's slots; boxing would add an allocation per request"
)]
enum Msg {
    Event(Event, Option<Ack>),
    Flush(oneshot::Sender<()>),
    Stop(oneshot::Sender<()>),
}

struct Shared {
    healthy: AtomicBool,
    /// Wakes a lingering writer when someone waits for an acknowledgement.
    urgent: tokio::sync::Notify,
    failure: FailurePolicy,
    verifier: CheckpointVerifier,
    /// Shared with the writer: exports sign their manifest with the checkpoint key.
    signer: Arc<CheckpointSigner>,
}

/// The handle every producer holds. Cheap to clone.
#[derive(Clone)]
pub struct Auditor {
    tx: mpsc::Sender<Msg>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Auditor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Auditor")
    }
}

impl Auditor {
    /// Records an event and waits until it is durable (committed, or spooled and fsync'd).
    /// Used where the caller's answer depends on it: control-plane decisions.
    pub async fn record(&self, e: Event) -> Result<(), Unavailable> {
        let (ack, done) = oneshot::channel();
        // a full queue makes the caller wait: back-pressure, never a silent drop
        self.tx.send(Msg::Event(e, Some(ack))).await.map_err(|_| Unavailable)?;
        self.shared.urgent.notify_one();
        done.await.map_err(|_| Unavailable)?
    }

    /// Queues an event without waiting: the data plane's path (also from `Drop`). When the
    /// queue is full the event is handed to a task that waits for room, so it is delayed,
    /// not dropped.
    pub fn submit(&self, e: Event) {
        match self.tx.try_send(Msg::Event(e, None)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(m)) => {
                metrics::counter!("gatehouse_audit_queue_full_total").increment(1);
                let tx = self.tx.clone();
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    rt.spawn(async move {
                        if tx.send(m).await.is_err() {
                            tracing::error!(target: "gatehouse::audit", "audit writer stopped; event lost");
                        }
                    });
                } else {
                    tracing::error!(target: "gatehouse::audit", "audit queue full outside a runtime; event lost");
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                metrics::counter!("gatehouse_audit_events_total", "result" => "lost").increment(1);
                tracing::error!(target: "gatehouse::audit", "audit writer stopped; event lost");
            }
        }
    }

    /// Whether the data plane may admit a request: false while the queue is full (so its
    /// overflow stays bounded by the requests already in flight), and with `fail_closed` while
    /// the store cannot take events. The data plane then answers 503 instead of serving
    /// requests it could not audit.
    pub fn accepting(&self) -> bool {
        self.tx.capacity() > 0
            && (self.shared.failure == FailurePolicy::Spool || self.shared.healthy.load(Ordering::Relaxed))
    }

    /// Waits until everything queued before this call is written.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).await.is_ok() {
            self.shared.urgent.notify_one();
            let _ = rx.await;
        }
    }

    /// Writes what is queued, signs a final checkpoint and stops the writer.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Stop(tx)).await.is_ok() {
            self.shared.urgent.notify_one();
            let _ = rx.await;
        }
    }

    /// The public key checkpoints verify under.
    pub fn verifier(&self) -> &CheckpointVerifier {
        &self.shared.verifier
    }

    /// The checkpoint key: exports sign their manifest with it.
    pub fn signer(&self) -> Arc<CheckpointSigner> {
        self.shared.signer.clone()
    }
}

/// Starts the writer task. The store must be migrated.
pub async fn start(store: Store, signer: CheckpointSigner, cfg: WriterConfig) -> std::io::Result<Auditor> {
    let signer = Arc::new(signer);
    let spool = Spool::open(cfg.spool.clone(), cfg.spool_max_bytes).await?;
    let file = match &cfg.file {
        Some(p) => Some(export::open_append(p).await?),
        None => None,
    };
    let (tx, rx) = mpsc::channel(cfg.queue.max(1));
    let shared = Arc::new(Shared {
        healthy: AtomicBool::new(true),
        urgent: tokio::sync::Notify::new(),
        failure: cfg.failure,
        verifier: signer.verifier(),
        signer: signer.clone(),
    });
    let w = Writer {
        store,
        signer,
        cfg,
        rx,
        shared: shared.clone(),
        spool,
        file,
        last_retention: None,
        last_store_try: None,
    };
    tokio::spawn(w.run());
    Ok(Auditor { tx, shared })
}

struct Writer {
    store: Store,
    signer: Arc<CheckpointSigner>,
    cfg: WriterConfig,
    rx: mpsc::Receiver<Msg>,
    shared: Arc<Shared>,
    spool: Spool,
    file: Option<tokio::fs::File>,
    last_retention: Option<Instant>,
    last_store_try: Option<Instant>,
}

/// What one turn of the loop took off the queue.
#[derive(Default)]
struct Batch {
    events: Vec<Pending>,
    acks: Vec<Ack>,
    flushes: Vec<oneshot::Sender<()>>,
    stop: Option<oneshot::Sender<()>>,
}

impl Batch {
    fn take(&mut self, m: Msg) {
        match m {
            Msg::Event(e, ack) => {
                self.events.push(e.pending());
                self.acks.extend(ack);
            }
            Msg::Flush(f) => self.flushes.push(f),
            Msg::Stop(s) => self.stop = Some(s),
        }
    }
}

/// A record as committed, for the file mirror.
struct Written {
    chain: String,
    seq: u64,
    prev_hash: [u8; 32],
    hash: [u8; 32],
    line: String,
}

/// What one commit produced.
#[derive(Default)]
struct Committed {
    records: Vec<Written>,
    checkpoints: Vec<(String, u64, String)>,
}

impl Writer {
    async fn run(mut self) {
        let mut tick = tokio::time::interval(Duration::from_secs(1).min(self.cfg.checkpoint_interval));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_checkpoint = Instant::now();
        loop {
            let first = tokio::select! {
                m = self.rx.recv() => m,
                _ = tick.tick() => {
                    self.periodic(&mut last_checkpoint).await;
                    continue;
                }
            };
            let Some(first) = first else { break };
            let mut b = Batch::default();
            b.take(first);
            self.fill(&mut b).await;
            let result = if b.events.is_empty() { Ok(()) } else { self.write(std::mem::take(&mut b.events)).await };
            for a in b.acks {
                let _ = a.send(result);
            }
            for f in b.flushes {
                let _ = f.send(());
            }
            if let Some(s) = b.stop {
                self.checkpoint_all().await;
                let _ = s.send(());
                break;
            }
        }
    }

    /// Takes what is queued; if that is a small batch of data-plane events, sleeps once for
    /// `linger` and takes what arrived meanwhile. One transaction for many events costs far
    /// less than one each, and one timer wake-up per batch less than a wake-up per event.
    async fn fill(&mut self, b: &mut Batch) {
        self.drain(b);
        // someone waiting for an acknowledgement (the control plane) is never made to linger
        let small = b.events.len() < self.cfg.batch_max / 2;
        let waiting = !b.acks.is_empty() || b.stop.is_some() || !b.flushes.is_empty();
        if small && !b.events.is_empty() && !waiting && !self.cfg.linger.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(self.cfg.linger) => {}
                () = self.shared.urgent.notified() => {}
            }
            self.drain(b);
        }
    }

    fn drain(&mut self, b: &mut Batch) {
        while b.events.len() < self.cfg.batch_max {
            match self.rx.try_recv() {
                Ok(m) => b.take(m),
                Err(_) => return,
            }
        }
    }

    /// Writes one batch: spooled events first (order), then these; spools on failure.
    async fn write(&mut self, events: Vec<Pending>) -> Result<(), Unavailable> {
        let n = events.len() as u64;
        metrics::histogram!("gatehouse_audit_batch_size").record(n as f64);
        // while the store is failing, try it at most once a second (the tick retries too):
        // a dead store must not cost every batch a connection timeout
        let try_store = self.shared.healthy.load(Ordering::Relaxed)
            || self.last_store_try.is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if try_store && self.spool.has_pending() {
            self.last_store_try = Some(Instant::now());
            self.replay().await;
        }
        if try_store && !self.spool.has_pending() {
            self.last_store_try = Some(Instant::now());
            match self.commit(&events, None).await {
                Ok(c) => {
                    self.set_healthy(true);
                    metrics::counter!("gatehouse_audit_events_total", "result" => "written").increment(n);
                    self.mirror(c).await;
                    return Ok(());
                }
                Err(e) => {
                    self.set_healthy(false);
                    tracing::error!(target: "gatehouse::audit", error = %e, events = n, "audit store write failed");
                }
            }
        }
        if self.cfg.failure == FailurePolicy::FailClosed {
            metrics::counter!("gatehouse_audit_events_total", "result" => "refused").increment(n);
            return Err(Unavailable);
        }
        match self.spool.append(&events).await {
            Ok(()) => {
                metrics::counter!("gatehouse_audit_events_total", "result" => "spooled").increment(n);
                tracing::warn!(target: "gatehouse::audit", events = n, "audit events spooled until the store is back");
                Ok(())
            }
            Err(e) => {
                metrics::counter!("gatehouse_audit_events_total", "result" => "refused").increment(n);
                tracing::error!(target: "gatehouse::audit", error = %e, events = n, "audit spool failed; events refused");
                Err(Unavailable)
            }
        }
    }

    fn set_healthy(&self, ok: bool) {
        self.shared.healthy.store(ok, Ordering::Relaxed);
        metrics::gauge!("gatehouse_audit_store_healthy").set(if ok { 1.0 } else { 0.0 });
    }

    /// Moves spooled events into the store, in chunks, skipping any that a commit before a
    /// crash already stored. The spool is removed only after all of it is committed.
    async fn replay(&mut self) {
        let (spool_id, pending) = match self.spool.read().await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(target: "gatehouse::audit", error = %e, "audit spool unreadable; kept for inspection");
                return;
            }
        };
        let total = pending.len();
        let done = match self.spool_done(&spool_id).await {
            Ok(d) => usize::try_from(d).unwrap_or(usize::MAX).min(total),
            Err(e) => {
                self.set_healthy(false);
                tracing::warn!(target: "gatehouse::audit", error = %e, "audit store still unavailable; spool kept");
                return;
            }
        };
        let mut at = done;
        for chunk in pending[done..].chunks(self.cfg.batch_max.max(1)) {
            at += chunk.len();
            match self.commit(chunk, Some((&spool_id, at as u64))).await {
                Ok(c) => self.mirror(c).await,
                Err(e) => {
                    self.set_healthy(false);
                    tracing::warn!(target: "gatehouse::audit", error = %e, "audit store still unavailable; spool kept");
                    return;
                }
            }
        }
        if let Err(e) = self.spool.clear().await {
            tracing::error!(target: "gatehouse::audit", error = %e, "audit spool could not be cleared");
            return;
        }
        self.set_healthy(true);
        tracing::info!(target: "gatehouse::audit", events = total, "spooled audit events replayed");
        let mut e = Event::new(EventKind::AuditReplayed, Outcome::Allowed, 200, "ok", Actor::System);
        e.target = Some(total.to_string());
        if let Ok(c) = self.commit(&[e.pending()], None).await {
            self.mirror(c).await;
        }
    }

    async fn spool_done(&self, spool_id: &str) -> Result<u64, gatehouse_store::Error> {
        let mut tx = self.store.begin_audit().await?;
        let n = tx.spool_progress(spool_id).await?;
        tx.commit().await?;
        Ok(n)
    }

    /// One transaction: lock each touched chain's head (in name order, so concurrent
    /// writers cannot deadlock), link and insert the events, sign where a checkpoint is due.
    /// `replay`: the spool and how many of its lines are done once this commits.
    async fn commit(
        &self,
        events: &[Pending],
        replay: Option<(&str, u64)>,
    ) -> Result<Committed, gatehouse_store::Error> {
        let mut by_chain: BTreeMap<&str, Vec<&Pending>> = BTreeMap::new();
        for p in events {
            by_chain.entry(p.chain.as_str()).or_default().push(p);
        }
        let mut out = Committed::default();
        let mut tx = self.store.begin_audit().await?;
        let mut meta: Vec<&Pending> = Vec::with_capacity(events.len());
        for (chain, evs) in by_chain {
            let mut head = tx.lock_head(chain).await?;
            for p in evs {
                let seq = head.seq + 1;
                let line = p.line(seq);
                let hash = link(&head.hash, line.as_bytes());
                if let Some(ob) = &self.cfg.outbox {
                    for d in ob.deliveries(chain, &p.action, &line) {
                        tx.insert_delivery(&gatehouse_store::NewDelivery {
                            webhook_id: &d.webhook_id,
                            org_id: d.org_id.as_deref(),
                            event_id: &p.id,
                            action: &p.action,
                            payload: &d.payload,
                        })
                        .await?;
                    }
                }
                out.records.push(Written { chain: chain.to_owned(), seq, prev_hash: head.hash, hash, line });
                meta.push(p);
                head.seq = seq;
                head.hash = hash;
            }
            if head.seq >= head.checkpoint_seq + self.cfg.checkpoint_every.max(1) {
                self.sign_into(&mut tx, chain, &mut head, &mut out).await?;
            }
            tx.set_head(chain, head).await?;
        }
        let rows: Vec<NewAuditRecord<'_>> = out
            .records
            .iter()
            .zip(&meta)
            .map(|(r, p)| NewAuditRecord {
                chain: &r.chain,
                seq: r.seq,
                prev_hash: &r.prev_hash,
                hash: &r.hash,
                line: &r.line,
                event_id: &p.id,
                at: p.at_ms,
                actor: &p.actor,
                action: &p.action,
            })
            .collect();
        tx.insert_many(&rows).await?;
        if let Some((spool_id, done)) = replay {
            tx.set_spool_progress(spool_id, done).await?;
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn sign_into(
        &self,
        tx: &mut gatehouse_store::AuditTx,
        chain: &str,
        head: &mut ChainHead,
        out: &mut Committed,
    ) -> Result<(), gatehouse_store::Error> {
        let at = Anchor { next_seq: head.seq + 1, hash: head.hash };
        let note = self.signer.sign(&origin(chain), at).map_err(|_| gatehouse_store::Error::Corrupt("chain name"))?;
        tx.insert_checkpoint(chain, head.seq, now_ms(), &note).await?;
        metrics::counter!("gatehouse_audit_checkpoints_total").increment(1);
        head.checkpoint_seq = head.seq;
        out.checkpoints.push((chain.to_owned(), head.seq, note));
        Ok(())
    }

    /// Signs every chain that moved since its last checkpoint.
    async fn checkpoint_all(&mut self) {
        let r = async {
            let mut out = Committed::default();
            let mut tx = self.store.begin_audit().await?;
            for chain in tx.unsigned_chains().await? {
                let mut head = tx.lock_head(&chain).await?;
                if head.seq > head.checkpoint_seq {
                    self.sign_into(&mut tx, &chain, &mut head, &mut out).await?;
                    tx.set_head(&chain, head).await?;
                }
            }
            tx.commit().await?;
            Ok::<_, gatehouse_store::Error>(out)
        }
        .await;
        match r {
            Ok(c) => self.mirror(c).await,
            Err(e) => tracing::warn!(target: "gatehouse::audit", error = %e, "audit checkpoint failed; will retry"),
        }
    }

    async fn periodic(&mut self, last_checkpoint: &mut Instant) {
        if self.spool.has_pending() {
            self.replay().await;
        } else if !self.shared.healthy.load(Ordering::Relaxed) {
            // fail-closed and down: probe with a real append, which also records the recovery
            let e = Event::new(EventKind::AuditRecovered, Outcome::Allowed, 200, "ok", Actor::System);
            if let Ok(c) = self.commit(&[e.pending()], None).await {
                self.set_healthy(true);
                tracing::info!(target: "gatehouse::audit", "audit store writable again");
                self.mirror(c).await;
            }
        }
        if last_checkpoint.elapsed() >= self.cfg.checkpoint_interval {
            *last_checkpoint = Instant::now();
            self.checkpoint_all().await;
        }
        if let Some(keep) = self.cfg.retention
            && self.last_retention.is_none_or(|t| t.elapsed() >= RETENTION_EVERY.min(keep / 4))
        {
            self.last_retention = Some(Instant::now());
            self.prune(keep).await;
        }
    }

    /// Drops each chain's prefix older than `keep`, replacing it with a signed anchor.
    async fn prune(&mut self, keep: Duration) {
        let cutoff = now_ms().saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX));
        let r = async {
            let mut pruned = 0u64;
            for chain in self.store.audit_chains().await? {
                let Some(last) = self.store.audit_prunable_through(&chain, cutoff).await? else { continue };
                let (_, hash) = last.hashes()?;
                let seq = last.seq_u64()?;
                let note = self
                    .signer
                    .sign(&origin(&chain), Anchor { next_seq: seq + 1, hash })
                    .map_err(|_| gatehouse_store::Error::Corrupt("chain name"))?;
                let mut tx = self.store.begin_audit().await?;
                pruned += tx
                    .prune(&AnchorRow { chain: chain.clone(), seq: last.seq, hash: hash.to_vec(), note, at: now_ms() })
                    .await?;
                tx.commit().await?;
            }
            Ok::<_, gatehouse_store::Error>(pruned)
        }
        .await;
        match r {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(target: "gatehouse::audit", records = n, "audit retention pruned");
                let mut e = Event::new(EventKind::AuditPruned, Outcome::Allowed, 200, "ok", Actor::System);
                e.target = Some(n.to_string());
                let _ = self.write(vec![e.pending()]).await;
            }
            Err(e) => tracing::warn!(target: "gatehouse::audit", error = %e, "audit retention failed; will retry"),
        }
    }

    /// Appends what was committed to the JSONL mirror, if configured. The store is the
    /// record; a mirror failure is logged and counted.
    async fn mirror(&mut self, c: Committed) {
        let Some(f) = self.file.as_mut() else { return };
        let mut buf = String::new();
        for r in &c.records {
            buf.push_str(&export::record_line(&r.chain, r.seq, &r.prev_hash, &r.hash, &r.line));
        }
        for (chain, seq, note) in &c.checkpoints {
            buf.push_str(&export::checkpoint_line(chain, *seq, note));
        }
        if buf.is_empty() {
            return;
        }
        if let Err(e) = async {
            f.write_all(buf.as_bytes()).await?;
            f.flush().await
        }
        .await
        {
            metrics::counter!("gatehouse_audit_file_errors_total").increment(1);
            tracing::error!(target: "gatehouse::audit", error = %e, "audit file mirror write failed");
        }
    }
}

/// How often retention runs at most (it is cheap when nothing is due); short retentions
/// (tests) run every quarter of the retention.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Actor, EventKind, Outcome};

    fn auditor(queue: usize, failure: FailurePolicy, healthy: bool) -> (Auditor, mpsc::Receiver<Msg>) {
        let signer = CheckpointSigner::from_seed(KEY_NAME, &[1; 32]).unwrap();
        let (tx, rx) = mpsc::channel(queue);
        let shared = Arc::new(Shared {
            healthy: AtomicBool::new(healthy),
            urgent: tokio::sync::Notify::new(),
            failure,
            verifier: signer.verifier(),
            signer: Arc::new(signer),
        });
        (Auditor { tx, shared }, rx)
    }

    fn event() -> Event {
        Event::new(EventKind::RequestAllowed, Outcome::Allowed, 200, "ok", Actor::System)
    }

    #[tokio::test]
    async fn a_full_queue_stops_admission_until_it_drains() {
        let (a, mut rx) = auditor(2, FailurePolicy::Spool, true);
        assert!(a.accepting());
        a.submit(event());
        a.submit(event());
        assert!(!a.accepting(), "no room: new requests are refused, not served unaudited");
        // an event of a request already in flight waits for room instead of being dropped
        a.submit(event());
        assert!(rx.recv().await.is_some());
        assert!(rx.recv().await.is_some());
        assert!(rx.recv().await.is_some(), "the overflowing event arrives once there is room");
        assert!(a.accepting());
    }

    #[test]
    fn fail_closed_refuses_only_while_unhealthy() {
        assert!(!auditor(4, FailurePolicy::FailClosed, false).0.accepting());
        assert!(auditor(4, FailurePolicy::FailClosed, true).0.accepting());
        assert!(auditor(4, FailurePolicy::Spool, false).0.accepting(), "spooling keeps serving");
    }
}
