//! Webhook subscriptions and their delivery log. Delivery rows are the outbox: the audit
//! writer inserts them in the same transaction as the events they announce, and delivery
//! workers (one per replica) claim due rows with a lease so each is sent by one of them.

use gatehouse_core::OrgId;

use crate::audit::AuditTx;
use crate::{Error, Store, now_ms};

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct WebhookRow {
    pub id: String,
    pub org_id: Option<String>,
    pub name: String,
    pub kind: String,
    pub url: String,
    /// Sealed signing secret (generic webhooks).
    pub secret: Option<String>,
    /// JSON array of action patterns.
    pub events: String,
    /// JSON array of outcomes, or none for all.
    pub outcomes: Option<String>,
    pub created_at: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct DeliveryRow {
    pub id: String,
    pub webhook_id: String,
    pub org_id: Option<String>,
    pub event_id: String,
    pub action: String,
    pub payload: String,
    pub status: String,
    pub attempts: i64,
    pub next_at: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A delivery to create alongside an audit event.
#[derive(Clone, Debug)]
pub struct NewDelivery<'a> {
    pub webhook_id: &'a str,
    pub org_id: Option<&'a str>,
    pub event_id: &'a str,
    pub action: &'a str,
    pub payload: &'a str,
}

/// The result of one attempt.
#[derive(Clone, Debug)]
pub struct Attempt<'a> {
    /// `delivered`, `pending` (retry at `next_at`), `failed` (gave up) or `blocked`.
    pub status: &'a str,
    pub attempts: i64,
    pub next_at: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<&'a str>,
}

impl AuditTx {
    pub async fn insert_delivery(&mut self, d: &NewDelivery<'_>) -> Result<(), Error> {
        let id = uuid::Uuid::now_v7().to_string();
        let now = now_ms();
        let q = "INSERT INTO webhook_deliveries (id, webhook_id, org_id, event_id, action, payload, status, attempts, \
                 next_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $7, $7)";
        on_tx!(self, |c| sqlx::query(q)
            .bind(&id)
            .bind(d.webhook_id)
            .bind(d.org_id)
            .bind(d.event_id)
            .bind(d.action)
            .bind(d.payload)
            .bind(now)
            .execute(c)
            .await
            .map(|_| ()))?;
        Ok(())
    }
}

impl Store {
    pub async fn create_webhook(&self, w: &WebhookRow) -> Result<(), Error> {
        on_pool!(self, |p| sqlx::query(
            "INSERT INTO webhooks (id, org_id, name, kind, url, secret, events, outcomes, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        )
        .bind(&w.id)
        .bind(&w.org_id)
        .bind(&w.name)
        .bind(&w.kind)
        .bind(&w.url)
        .bind(&w.secret)
        .bind(&w.events)
        .bind(&w.outcomes)
        .bind(w.created_at)
        .execute(p)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    /// An org's webhooks (`None`: the platform's own, for platform-chain events).
    pub async fn list_webhooks(&self, org: Option<OrgId>) -> Result<Vec<WebhookRow>, Error> {
        Ok(fetch!(self, query_as, fetch_all,
            "SELECT id, org_id, name, kind, url, secret, events, outcomes, created_at FROM webhooks \
             WHERE deleted_at IS NULL AND (org_id = $1 OR ($1 IS NULL AND org_id IS NULL)) ORDER BY created_at";
            org.map(|o| o.to_string())
        )?)
    }

    /// Every live webhook, for the in-memory matcher.
    pub async fn all_webhooks(&self) -> Result<Vec<WebhookRow>, Error> {
        Ok(fetch!(
            self,
            query_as,
            fetch_all,
            "SELECT id, org_id, name, kind, url, secret, events, outcomes, created_at FROM webhooks \
             WHERE deleted_at IS NULL ORDER BY created_at"
        )?)
    }

    /// Scoped: another org's webhook is not found.
    pub async fn webhook(&self, org: Option<OrgId>, id: &str) -> Result<Option<WebhookRow>, Error> {
        Ok(self.list_webhooks(org).await?.into_iter().find(|w| w.id == id))
    }

    pub async fn delete_webhook(&self, org: Option<OrgId>, id: &str) -> Result<bool, Error> {
        let n = execute!(self,
            "UPDATE webhooks SET deleted_at = $3 WHERE id = $1 AND deleted_at IS NULL \
             AND (org_id = $2 OR ($2 IS NULL AND org_id IS NULL))";
            id, org.map(|o| o.to_string()), now_ms()
        )?;
        Ok(n > 0)
    }

    /// Claims up to `limit` due deliveries for `lease_ms`; a row claimed by another replica
    /// (lease not expired) is skipped.
    pub async fn claim_deliveries(&self, limit: u32, lease_ms: i64) -> Result<Vec<DeliveryRow>, Error> {
        let now = now_ms();
        let due: Vec<String> = fetch!(self, query_scalar, fetch_all,
            "SELECT id FROM webhook_deliveries WHERE status = 'pending' AND next_at <= $1 \
             AND (claimed_until IS NULL OR claimed_until < $1) ORDER BY next_at LIMIT $2";
            now, i64::from(limit)
        )?;
        let mut out = Vec::new();
        for id in due {
            let claimed = execute!(self,
                "UPDATE webhook_deliveries SET claimed_until = $2 WHERE id = $1 AND status = 'pending' \
                 AND (claimed_until IS NULL OR claimed_until < $3)";
                &id, now + lease_ms, now
            )?;
            if claimed == 1 {
                let row: Option<DeliveryRow> = fetch!(self, query_as, fetch_optional,
                    "SELECT id, webhook_id, org_id, event_id, action, payload, status, attempts, next_at, \
                     last_status, last_error, created_at, updated_at FROM webhook_deliveries WHERE id = $1";
                    &id
                )?;
                out.extend(row);
            }
        }
        Ok(out)
    }

    pub async fn record_attempt(&self, id: &str, a: &Attempt<'_>) -> Result<(), Error> {
        on_pool!(self, |p| sqlx::query(
            "UPDATE webhook_deliveries SET status = $2, attempts = $3, next_at = $4, last_status = $5, \
             last_error = $6, claimed_until = NULL, updated_at = $7 WHERE id = $1"
        )
        .bind(id)
        .bind(a.status)
        .bind(a.attempts)
        .bind(a.next_at)
        .bind(a.last_status)
        .bind(a.last_error)
        .bind(now_ms())
        .execute(p)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    /// A webhook's delivery log, newest first. Scoped by org.
    /// A webhook's deliveries, newest first, older than `before` (the `(created_at, id)` of the
    /// last row of the previous page) when given, at most `limit` (the `(webhook_id,
    /// created_at)` index serves every page).
    pub async fn list_deliveries(
        &self,
        org: Option<OrgId>,
        webhook_id: &str,
        before: Option<(i64, &str)>,
        limit: u32,
    ) -> Result<Vec<DeliveryRow>, Error> {
        let (at, id) = (before.map(|b| b.0), before.map(|b| b.1));
        Ok(fetch!(self, query_as, fetch_all,
            "SELECT id, webhook_id, org_id, event_id, action, payload, status, attempts, next_at, \
             last_status, last_error, created_at, updated_at FROM webhook_deliveries WHERE webhook_id = $1 \
             AND (org_id = $2 OR ($2 IS NULL AND org_id IS NULL)) \
             AND ($4 IS NULL OR created_at < $4 OR (created_at = $4 AND id < $5)) \
             ORDER BY created_at DESC, id DESC LIMIT $3";
            webhook_id, org.map(|o| o.to_string()), i64::from(limit), at, id
        )?)
    }
}
