//! Audit webhooks: per-org subscriptions with event filters, delivered as signed generic
//! (Standard Webhooks), Slack or Discord payloads.
//!
//! - Which events: [`filter`]. The subscriptions live in memory ([`Webhooks`], refreshed from
//!   the store every 2 s and at once on a local change) and act as the audit writer's
//!   [`Outbox`]: a delivery row is written in the same transaction as its event, so every
//!   matching event gets exactly one delivery, also across a crash or a spool replay.
//! - Where to: `gatehouse-egress` (SSRF checks on save, and after DNS at every delivery,
//!   connecting only to the checked addresses; no redirects, no proxy).
//! - How: a delivery worker per replica claims due rows with a lease, signs ([`sign`]),
//!   posts with a timeout and retries with exponential backoff; every attempt is in the
//!   delivery log.

pub mod filter;
pub mod render;
pub mod sign;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{Delivery, Outbox, chain_of};
use arc_swap::ArcSwap;
use gatehouse_core::OrgId;
use gatehouse_security::seal::Sealer;
use gatehouse_store::{Attempt, DeliveryRow, Store, WebhookRow, now_ms};
use secrecy::SecretString;

use self::filter::Filter;
use self::render::Kind;
use gatehouse_egress::{AddressPolicy, BlockedAddress};

#[derive(Clone, Debug)]
pub struct DeliveryConfig {
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub timeout: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig { max_attempts: 8, retry_base: Duration::from_secs(2), timeout: Duration::from_secs(10) }
    }
}

/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
const LEASE_MS: i64 = 60_000;
const CLAIM_BATCH: u32 = 32;
const NAME_MAX: usize = 64;

#[derive(Debug)]
struct Sub {
    id: String,
    org: Option<String>,
    chain: String,
    kind: Kind,
    url: String,
    secret: Option<String>,
    filter: Filter,
}

pub struct Webhooks {
    subs: ArcSwap<Vec<Sub>>,
    store: Store,
    sealer: Sealer,
    policy: Arc<AddressPolicy>,
    cfg: DeliveryConfig,
    http: reqwest::Client,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Webhooks")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CreateError {
    #[error("name")]
    Name,
    #[error("kind")]
    Kind,
    #[error("url")]
    Url,
    #[error("events")]
    Events,
    #[error("outcomes")]
    Outcomes,
    #[error("store")]
    Store,
}

impl CreateError {
    /// The request field at fault, for the refusal's `param`.
    pub fn param(self) -> &'static str {
        match self {
            CreateError::Name => "name",
            CreateError::Kind => "kind",
            CreateError::Url => "url",
            CreateError::Events => "events",
            CreateError::Outcomes => "outcomes",
            CreateError::Store => "store",
        }
    }
}

/// A subscription request, validated by [`Webhooks::create`].
#[derive(Clone, Debug)]
pub struct NewWebhook {
    pub org: Option<OrgId>,
    pub name: String,
    pub kind: String,
    pub url: String,
    pub events: Vec<String>,
    pub outcomes: Option<Vec<String>>,
}

/// The associated data a webhook's sealed secret is bound to (a master-key rotation re-seals
/// under it).
pub fn secret_record(org: Option<&str>, id: &str) -> String {
    record_of(org, id)
}

/// The master-key purpose webhook secrets are sealed under.
pub const SEAL_PURPOSE: &[u8] = b"gatehouse/v1/seal/webhook";

fn record_of(org: Option<&str>, id: &str) -> String {
    format!("webhook:{}:{id}", org.unwrap_or("platform"))
}

#[derive(serde::Deserialize)]
struct OutcomeOnly<'a> {
    #[serde(borrow)]
    outcome: &'a str,
}

impl Webhooks {
    pub fn new(
        store: Store,
        sealer: Sealer,
        policy: AddressPolicy,
        cfg: DeliveryConfig,
    ) -> Result<Arc<Webhooks>, reqwest::Error> {
        let policy = Arc::new(policy);
        let http = gatehouse_egress::client(policy.clone())
            .connect_timeout(cfg.timeout)
            .timeout(cfg.timeout)
            .user_agent(concat!("Gatehouse-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Arc::new(Webhooks { subs: ArcSwap::from_pointee(Vec::new()), store, sealer, policy, cfg, http }))
    }

    /// Reloads the subscriptions from the store.
    pub async fn refresh(&self) -> Result<(), gatehouse_store::Error> {
        let rows = self.store.all_webhooks().await?;
        let subs = rows.into_iter().filter_map(sub_of).collect();
        self.subs.store(Arc::new(subs));
        Ok(())
    }

    /// Keeps the subscriptions fresh (other replicas' changes arrive within 2 s).
    pub async fn run_refresh(self: Arc<Self>) {
        gatehouse_store::poll::reload("webhook subscriptions", Duration::from_secs(2), || self.refresh()).await;
    }

    pub async fn create(&self, w: NewWebhook) -> Result<(WebhookRow, Option<SecretString>), CreateError> {
        let valid_name = !w.name.is_empty()
            && w.name.len() <= NAME_MAX
            && w.name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ' '));
        if !valid_name {
            return Err(CreateError::Name);
        }
        let kind = Kind::parse(&w.kind).ok_or(CreateError::Kind)?;
        self.policy.check_at_save(&w.url).await.map_err(|_| CreateError::Url)?;
        Filter::parse(&w.events, w.outcomes.as_deref()).map_err(|e| match e {
            filter::FilterError::Events => CreateError::Events,
            filter::FilterError::Outcomes => CreateError::Outcomes,
        })?;
        let id = uuid_v7();
        let org = w.org.map(|o| o.to_string());
        let secret = match kind {
            Kind::Generic => Some(sign::generate_secret().map_err(|_| CreateError::Store)?),
            Kind::Slack | Kind::Discord => None,
        };
        let sealed = match &secret {
            Some(s) => Some(self.sealer.seal(&record_of(org.as_deref(), &id), s).map_err(|_| CreateError::Store)?),
            None => None,
        };
        let row = WebhookRow {
            id,
            org_id: org,
            name: w.name,
            kind: kind.as_str().to_owned(),
            url: w.url,
            secret: sealed,
            events: serde_json::to_string(&w.events).map_err(|_| CreateError::Events)?,
            outcomes: w.outcomes.map(|o| serde_json::to_string(&o)).transpose().map_err(|_| CreateError::Outcomes)?,
            created_at: now_ms(),
        };
        self.store.create_webhook(&row).await.map_err(|_| CreateError::Store)?;
        if let Err(e) = self.refresh().await {
            tracing::warn!(error = %e, "webhook subscriptions not refreshed");
        }
        Ok((row, secret))
    }

    pub async fn delete(&self, org: Option<OrgId>, id: &str) -> Result<bool, gatehouse_store::Error> {
        let gone = self.store.delete_webhook(org, id).await?;
        self.refresh().await?;
        Ok(gone)
    }

    /// Delivers due rows until the process stops. Runs on every replica; leases keep one
    /// delivery with one worker.
    pub async fn run_delivery(self: Arc<Self>) {
        loop {
            let due = match self.store.claim_deliveries(CLAIM_BATCH, LEASE_MS).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook deliveries not claimed");
                    Vec::new()
                }
            };
            if due.is_empty() {
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
            let mut set = tokio::task::JoinSet::new();
            for row in due {
                let me = self.clone();
                set.spawn(async move { me.deliver(row).await });
            }
            while set.join_next().await.is_some() {}
        }
    }

    async fn deliver(&self, row: DeliveryRow) {
        let attempts = row.attempts + 1;
        let subs = self.subs.load();
        let result = match subs.iter().find(|s| s.id == row.webhook_id) {
            None => Err(("failed", None, "webhook_deleted")),
            Some(sub) => self.send(sub, &row).await,
        };
        let (status, last_status, last_error, next_at) = match result {
            Ok(code) => ("delivered", Some(code), None, now_ms()),
            Err((terminal @ ("blocked" | "failed"), code, err)) => (terminal, code, Some(err), now_ms()),
            Err((_, code, err)) if attempts >= i64::from(self.cfg.max_attempts) => {
                ("failed", code, Some(err), now_ms())
            }
            Err((_, code, err)) => {
                let exp = u32::try_from(attempts - 1).unwrap_or(u32::MAX).min(20);
                let wait = self.cfg.retry_base.saturating_mul(1 << exp).min(MAX_BACKOFF);
                ("pending", code, Some(err), now_ms() + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX))
            }
        };
        metrics::counter!("gatehouse_webhook_attempts_total", "result" => status).increment(1);
        let a = Attempt { status, attempts, next_at, last_status, last_error };
        if let Err(e) = self.store.record_attempt(&row.id, &a).await {
            tracing::warn!(error = %e, "webhook attempt not recorded; the lease will expire and it is retried");
        }
    }

    /// One POST. Errors carry (disposition, HTTP status, fixed error code).
    async fn send(&self, sub: &Sub, row: &DeliveryRow) -> Result<i64, (&'static str, Option<i64>, &'static str)> {
        // the policy may have changed since the webhook was saved
        if self.policy.validate_url(&sub.url).is_err() {
            return Err(("blocked", None, "blocked_address"));
        }
        let mut req = self.http.post(&sub.url).header("content-type", "application/json");
        if sub.kind == Kind::Generic {
            let sealed = sub.secret.as_deref().ok_or(("failed", None, "no_secret"))?;
            let secret = self
                .sealer
                .open(&record_of(sub.org.as_deref(), &sub.id), sealed)
                .map_err(|_| ("failed", None, "secret_unreadable"))?;
            let ts = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
            let sig =
                sign::signature(&secret, &row.id, ts, &row.payload).ok_or(("failed", None, "secret_unreadable"))?;
            req = req
                .header("webhook-id", &row.id)
                .header("webhook-timestamp", ts.to_string())
                .header("webhook-signature", sig);
        }
        match req.body(row.payload.clone()).send().await {
            Ok(resp) if resp.status().is_success() => Ok(i64::from(resp.status().as_u16())),
            Ok(resp) => Err(("retry", Some(i64::from(resp.status().as_u16())), "http_status")),
            Err(e) if is_blocked(&e) => Err(("blocked", None, "blocked_address")),
            Err(e) if e.is_timeout() => Err(("retry", None, "timeout")),
            Err(_) => Err(("retry", None, "connect")),
        }
    }
}

fn is_blocked(e: &reqwest::Error) -> bool {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = src {
        if s.is::<BlockedAddress>() {
            return true;
        }
        src = s.source();
    }
    false
}

fn uuid_v7() -> String {
    gatehouse_core::RequestId::generate().to_string()
}

fn sub_of(w: WebhookRow) -> Option<Sub> {
    let events: Vec<String> = serde_json::from_str(&w.events).ok()?;
    let outcomes: Option<Vec<String>> = w.outcomes.as_deref().and_then(|o| serde_json::from_str(o).ok());
    let filter = Filter::parse(&events, outcomes.as_deref()).ok()?;
    let chain = chain_of(w.org_id.as_deref().and_then(OrgId::parse));
    Some(Sub { id: w.id, org: w.org_id, chain, kind: Kind::parse(&w.kind)?, url: w.url, secret: w.secret, filter })
}

impl Outbox for Webhooks {
    fn deliveries(&self, chain: &str, action: &str, line: &str) -> Vec<Delivery> {
        let subs = self.subs.load();
        if !subs.iter().any(|s| s.chain == chain) {
            return Vec::new();
        }
        let Ok(o) = serde_json::from_str::<OutcomeOnly<'_>>(line) else { return Vec::new() };
        subs.iter()
            .filter(|s| s.chain == chain && s.filter.matches(action, o.outcome))
            .map(|s| Delivery {
                webhook_id: s.id.clone(),
                org_id: s.org.clone(),
                payload: render::payload(s.kind, line),
            })
            .collect()
    }
}
