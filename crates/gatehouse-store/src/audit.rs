//! The audit store: one row per control-plane decision (mutations and denials alike).
//! Content-free by construction: the fields are ids, names of actions and codes. The
//! tamper-evident chain arrives with issue #4 on top of this table.

use gatehouse_core::OrgId;

use crate::{Error, Store};

/// One decision to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    pub at: i64,
    pub org: Option<OrgId>,
    /// Who: an admin token id, `anonymous`, or `system`.
    pub actor: String,
    /// What, as `noun.verb` (e.g. `key.create`, `auth.login`).
    pub action: &'static str,
    /// The object acted on, by id.
    pub target: Option<String>,
    /// `allowed` or `denied`.
    pub outcome: &'static str,
    pub status: u16,
    pub request_id: Option<String>,
    /// The peer address the request came from.
    pub source: Option<String>,
}

/// A stored event.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditRow {
    pub id: String,
    pub at: i64,
    pub org_id: Option<String>,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub outcome: String,
    pub status: i64,
    pub request_id: Option<String>,
    pub source: Option<String>,
}

impl Store {
    pub async fn append_audit(&self, e: &AuditEvent) -> Result<(), Error> {
        // time-ordered ids keep "newest first" an index scan
        let id = uuid::Uuid::now_v7().to_string();
        on_pool!(self, |p| sqlx::query(
            "INSERT INTO audit_events (id, at, org_id, actor, action, target, outcome, status, request_id, source) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        )
        .bind(&id)
        .bind(e.at)
        .bind(e.org.map(|o| o.to_string()))
        .bind(&e.actor)
        .bind(e.action)
        .bind(&e.target)
        .bind(e.outcome)
        .bind(i64::from(e.status))
        .bind(&e.request_id)
        .bind(&e.source)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Newest first; `org = None` lists every org's events (platform scope).
    pub async fn list_audit(&self, org: Option<OrgId>, limit: u32) -> Result<Vec<AuditRow>, Error> {
        Ok(on_pool!(self, |p| sqlx::query_as(
            "SELECT id, at, org_id, actor, action, target, outcome, status, request_id, source FROM audit_events \
             WHERE ($1 IS NULL OR org_id = $1) ORDER BY id DESC LIMIT $2"
        )
        .bind(org.map(|o| o.to_string()))
        .bind(i64::from(limit))
        .fetch_all(p)
        .await)?)
    }
}
