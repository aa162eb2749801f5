//! The source of truth: organizations, projects, API keys and admin tokens, in SQLite (the
//! embedded default) or PostgreSQL (production), behind one [`Store`].
//!
//! Every query that touches tenant data takes the org id as a parameter. SQL is static text
//! with `$N` binds (which both SQLite and PostgreSQL accept), never built with `format!`.
//! The store is not on the hot path: the data plane reads keys from a cache in front of it.

/// Runs the same static SQL with the same binds on whichever backend this store has.
macro_rules! on_pool {
    ($store:expr, |$q:ident| $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Sqlite(pool) => {
                let $q = pool;
                $body
            }
            $crate::store::Pool::Postgres(pool) => {
                let $q = pool;
                $body
            }
        }
    };
}

/// One statement with its binds on whichever pool is configured (`tx` first: inside an audit
/// transaction): `execute!(store, SQL; binds)` gives the rows affected; `fetch!(store, query_as
/// | query_scalar, fetch_one | fetch_optional | fetch_all, SQL; binds)` the rows or values. The
/// statement and its binds read on one line, as the SQL does, instead of a builder chain
/// repeated per query.
macro_rules! execute {
    (tx $tx:expr, $sql:expr $(; $($bind:expr),* $(,)?)?) => {
        on_tx!($tx, |c| sqlx::query($sql)$($(.bind($bind))*)?.execute(c).await.map(|r| r.rows_affected()))
    };
    ($store:expr, $sql:expr $(; $($bind:expr),* $(,)?)?) => {
        on_pool!($store, |p| sqlx::query($sql)$($(.bind($bind))*)?.execute(p).await.map(|r| r.rows_affected()))
    };
}

macro_rules! fetch {
    (tx $tx:expr, $kind:ident, $how:ident, $sql:expr $(; $($bind:expr),* $(,)?)?) => {
        on_tx!($tx, |c| sqlx::$kind($sql)$($(.bind($bind))*)?.$how(c).await)
    };
    ($store:expr, $kind:ident, $how:ident, $sql:expr $(; $($bind:expr),* $(,)?)?) => {
        on_pool!($store, |p| sqlx::$kind($sql)$($(.bind($bind))*)?.$how(p).await)
    };
}

/// Like `on_pool!`, inside an audit transaction.
macro_rules! on_tx {
    ($tx:expr, |$c:ident| $body:expr) => {
        match $tx {
            $crate::AuditTx::Sqlite(t) => {
                let $c = &mut **t;
                $body
            }
            $crate::AuditTx::Postgres(t) => {
                let $c = &mut **t;
                $body
            }
        }
    };
}

/// Marks every API key and capability token of an org — or, given `Some(project)`, of one of
/// its projects — changed, inside the caller's transaction (`&mut *tx`), so every replica's
/// change-feed poll evicts them from its verified-credential caches. The one way a tenancy
/// write (disable, enable, allow-list) reaches credentials that were already verified: both
/// kinds, always together.
macro_rules! mark_credentials_changed {
    ($conn:expr, $now:expr, $org:expr, $project:expr) => {
        async {
            let org = $org.to_string();
            let project: Option<String> = $project.map(|p: gatehouse_core::ProjectId| p.to_string());
            for sql in [
                "UPDATE api_keys SET updated_at = $1 WHERE org_id = $2 AND ($3 IS NULL OR project_id = $3)",
                "UPDATE capability_tokens SET changed_at = $1 WHERE org_id = $2 AND ($3 IS NULL OR project_id = $3)",
            ] {
                sqlx::query(sql).bind($now).bind(&org).bind(&project).execute(&mut *$conn).await?;
            }
            Ok::<(), sqlx::Error>(())
        }
    };
}

mod audit;
mod capabilities;
mod credentials;
mod error;
mod keyring;
mod limits;
mod mcp;
mod passkeys;
#[cfg(test)]
mod plans;
pub mod poll;
mod records;
mod scoped;
mod sessions;
mod store;
mod tenancy;
mod usage;
mod users;
mod webhooks;

pub use audit::{AnchorRow, AuditCursor, AuditFilter, AuditRow, AuditTx, ChainHead, CheckpointRow, NewAuditRecord};
pub use capabilities::{CapabilityRow, CapabilityStatus, RootKeyRow};
pub use credentials::CredentialRow;
pub use error::Error;
pub use keyring::{SealedColumn, SealedValue};
pub use limits::{BudgetSpend, LimitPolicyRow, LimitScope};
pub use mcp::McpServerRow;
pub use passkeys::{ChallengeRow, MAX_PASSKEYS_PER_ACTOR, NewPasskey, PasskeyRow};
pub use records::{AdminTokenRow, KeyRow, NewKey, OrgRow, ProjectRow, ProjectSettings, Tenant};
pub use scoped::{PolicyTable, ScopedPolicyRow};
pub use sessions::{LoginRow, NewSession, SessionRow, SessionScope};
pub use store::{Backend, Store};
pub use usage::{UsageFilter, UsageRecord, UsageTotal, utc_day};
pub use users::MemberRow;
pub use webhooks::{Attempt, DeliveryRow, NewDelivery, WebhookRow};

/// Unix time in milliseconds, the one time representation the store uses.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
