//! The audit log's storage: chained records, chain heads, signed checkpoints and retention
//! anchors. The chain logic (hashing, signing, verifying) lives in `gatehouse-audit`; this
//! module only moves rows, inside one transaction per appended batch so that a batch and its
//! head update commit together or not at all.

use sqlx::{Postgres, Sqlite, Transaction};

use crate::{Error, Store};

/// The state of one chain: its last record and the last signed checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainHead {
    /// 0 for an empty chain.
    pub seq: u64,
    pub hash: [u8; 32],
    pub checkpoint_seq: u64,
}

/// A record about to be appended.
#[derive(Clone, Debug)]
pub struct NewAuditRecord<'a> {
    pub chain: &'a str,
    pub seq: u64,
    pub prev_hash: &'a [u8; 32],
    pub hash: &'a [u8; 32],
    pub line: &'a str,
    pub event_id: &'a str,
    pub at: i64,
    pub actor: &'a str,
    pub action: &'a str,
}

/// A stored record.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditRow {
    pub chain: String,
    pub seq: i64,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
    pub line: String,
    pub event_id: String,
    pub at: i64,
    pub actor: String,
    pub action: String,
}

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct CheckpointRow {
    pub chain: String,
    pub seq: i64,
    pub at: i64,
    pub note: String,
}

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct AnchorRow {
    pub chain: String,
    pub seq: i64,
    pub hash: Vec<u8>,
    pub note: String,
    pub at: i64,
}

/// What an export or a listing selects. Every field narrows; `chains = None` is every chain.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub chain: Option<String>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub actor: Option<String>,
    pub action: Option<String>,
}

/// One appending transaction. SQLite takes the write lock at `BEGIN IMMEDIATE` (no lock
/// upgrade can fail half-way); PostgreSQL locks each chain's head row `FOR UPDATE`.
pub enum AuditTx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

impl std::fmt::Debug for AuditTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditTx")
    }
}

fn hash32(v: &[u8]) -> Result<[u8; 32], Error> {
    v.try_into().map_err(|_| Error::Corrupt("audit hash"))
}

fn u64_of(v: i64) -> Result<u64, Error> {
    u64::try_from(v).map_err(|_| Error::Corrupt("audit seq"))
}

fn i64_of(v: u64) -> Result<i64, Error> {
    i64::try_from(v).map_err(|_| Error::Corrupt("audit seq"))
}

impl AuditTx {
    /// Locks the chain's head (creating an empty one first) and returns it.
    pub async fn lock_head(&mut self, chain: &str) -> Result<ChainHead, Error> {
        let genesis = [0u8; 32];
        on_tx!(self, |c| {
            sqlx::query(
            "INSERT INTO audit_heads (chain, seq, hash, checkpoint_seq) VALUES ($1, 0, $2, 0) ON CONFLICT (chain) DO NOTHING"
        )
        .bind(chain)
        .bind(&genesis[..])
        .execute(c)
        .await
        .map(|_| ())
        })?;
        let row: (i64, Vec<u8>, i64) = match self {
            AuditTx::Sqlite(t) => {
                sqlx::query_as("SELECT seq, hash, checkpoint_seq FROM audit_heads WHERE chain = $1")
                    .bind(chain)
                    .fetch_one(&mut **t)
                    .await?
            }
            AuditTx::Postgres(t) => {
                sqlx::query_as("SELECT seq, hash, checkpoint_seq FROM audit_heads WHERE chain = $1 FOR UPDATE")
                    .bind(chain)
                    .fetch_one(&mut **t)
                    .await?
            }
        };
        Ok(ChainHead { seq: u64_of(row.0)?, hash: hash32(&row.1)?, checkpoint_seq: u64_of(row.2)? })
    }

    /// How many lines of a spool file were already committed (0 for a new spool).
    pub async fn spool_progress(&mut self, spool_id: &str) -> Result<u64, Error> {
        let n: Option<i64> =
            on_tx!(self, |c| sqlx::query_scalar("SELECT lines_done FROM audit_spool_progress WHERE spool_id = $1")
                .bind(spool_id)
                .fetch_optional(c)
                .await)?;
        n.map_or(Ok(0), u64_of)
    }

    pub async fn set_spool_progress(&mut self, spool_id: &str, lines_done: u64) -> Result<(), Error> {
        let n = i64_of(lines_done)?;
        on_tx!(self, |c| sqlx::query(
            "INSERT INTO audit_spool_progress (spool_id, lines_done) VALUES ($1, $2) \
             ON CONFLICT (spool_id) DO UPDATE SET lines_done = excluded.lines_done"
        )
        .bind(spool_id)
        .bind(n)
        .execute(c)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    pub async fn insert(&mut self, r: &NewAuditRecord<'_>) -> Result<(), Error> {
        let seq = i64_of(r.seq)?;
        on_tx!(self, |c| sqlx::query(
            "INSERT INTO audit_log (chain, seq, prev_hash, hash, line, event_id, at, actor, action) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        )
        .bind(r.chain)
        .bind(seq)
        .bind(&r.prev_hash[..])
        .bind(&r.hash[..])
        .bind(r.line)
        .bind(r.event_id)
        .bind(r.at)
        .bind(r.actor)
        .bind(r.action)
        .execute(c)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    /// Inserts many records with one statement: the rows travel as one JSON array parameter
    /// (static SQL per backend), so a batch costs one round trip instead of one per event.
    pub async fn insert_many(&mut self, rows: &[NewAuditRecord<'_>]) -> Result<(), Error> {
        #[derive(serde::Serialize)]
        struct Row<'a> {
            chain: &'a str,
            seq: i64,
            prev_hash: String,
            hash: String,
            line: &'a str,
            event_id: &'a str,
            at: i64,
            actor: &'a str,
            action: &'a str,
        }
        if rows.is_empty() {
            return Ok(());
        }
        let json: Vec<Row<'_>> = rows
            .iter()
            .map(|r| {
                Ok(Row {
                    chain: r.chain,
                    seq: i64_of(r.seq)?,
                    prev_hash: hex::encode(r.prev_hash),
                    hash: hex::encode(r.hash),
                    line: r.line,
                    event_id: r.event_id,
                    at: r.at,
                    actor: r.actor,
                    action: r.action,
                })
            })
            .collect::<Result<_, Error>>()?;
        let json = serde_json::to_string(&json).map_err(|_| Error::Corrupt("audit batch"))?;
        match self {
            AuditTx::Sqlite(t) => {
                sqlx::query(
                    "INSERT INTO audit_log (chain, seq, prev_hash, hash, line, event_id, at, actor, action) \
                     SELECT value ->> 'chain', value ->> 'seq', unhex(value ->> 'prev_hash'), unhex(value ->> 'hash'), \
                            value ->> 'line', value ->> 'event_id', value ->> 'at', value ->> 'actor', value ->> 'action' \
                     FROM json_each($1)",
                )
                .bind(&json)
                .execute(&mut **t)
                .await?;
            }
            AuditTx::Postgres(t) => {
                sqlx::query(
                    "INSERT INTO audit_log (chain, seq, prev_hash, hash, line, event_id, at, actor, action) \
                     SELECT r.chain, r.seq, decode(r.prev_hash, 'hex'), decode(r.hash, 'hex'), r.line, r.event_id, \
                            r.at, r.actor, r.action \
                     FROM jsonb_to_recordset($1::jsonb) AS r(chain text, seq bigint, prev_hash text, hash text, \
                          line text, event_id text, at bigint, actor text, action text)",
                )
                .bind(&json)
                .execute(&mut **t)
                .await?;
            }
        }
        Ok(())
    }

    pub async fn set_head(&mut self, chain: &str, head: ChainHead) -> Result<(), Error> {
        let (seq, cp) = (i64_of(head.seq)?, i64_of(head.checkpoint_seq)?);
        on_tx!(self, |c| sqlx::query(
            "UPDATE audit_heads SET seq = $2, hash = $3, checkpoint_seq = $4 WHERE chain = $1"
        )
        .bind(chain)
        .bind(seq)
        .bind(&head.hash[..])
        .bind(cp)
        .execute(c)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    pub async fn insert_checkpoint(&mut self, chain: &str, seq: u64, at: i64, note: &str) -> Result<(), Error> {
        let seq = i64_of(seq)?;
        on_tx!(self, |c| {
            sqlx::query(
            "INSERT INTO audit_checkpoints (chain, seq, at, note) VALUES ($1, $2, $3, $4) ON CONFLICT (chain, seq) DO NOTHING"
        )
        .bind(chain)
        .bind(seq)
        .bind(at)
        .bind(note)
        .execute(c)
        .await
        .map(|_| ())
        })?;
        Ok(())
    }

    /// Chains whose head moved past their last checkpoint (for the periodic checkpoint).
    pub async fn unsigned_chains(&mut self) -> Result<Vec<String>, Error> {
        Ok(on_tx!(self, |c| sqlx::query_scalar(
            "SELECT chain FROM audit_heads WHERE seq > checkpoint_seq ORDER BY chain"
        )
        .fetch_all(c)
        .await)?)
    }

    /// Drops a chain's records and checkpoints up to `anchor.seq` and keeps the signed anchor
    /// they are replaced by.
    pub async fn prune(&mut self, anchor: &AnchorRow) -> Result<u64, Error> {
        on_tx!(self, |c| {
            sqlx::query(
            "INSERT INTO audit_anchors (chain, seq, hash, note, at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (chain) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, note = excluded.note, at = excluded.at"
        )
        .bind(&anchor.chain)
        .bind(anchor.seq)
        .bind(&anchor.hash)
        .bind(&anchor.note)
        .bind(anchor.at)
        .execute(c)
        .await
        .map(|_| ())
        })?;
        on_tx!(self, |c| sqlx::query("DELETE FROM audit_checkpoints WHERE chain = $1 AND seq <= $2")
            .bind(&anchor.chain)
            .bind(anchor.seq)
            .execute(c)
            .await
            .map(|_| ()))?;
        let n = on_tx!(self, |c| sqlx::query("DELETE FROM audit_log WHERE chain = $1 AND seq <= $2")
            .bind(&anchor.chain)
            .bind(anchor.seq)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(n)
    }

    pub async fn commit(self) -> Result<(), Error> {
        match self {
            AuditTx::Sqlite(t) => t.commit().await?,
            AuditTx::Postgres(t) => t.commit().await?,
        }
        Ok(())
    }
}

impl Store {
    pub async fn begin_audit(&self) -> Result<AuditTx, Error> {
        Ok(match &self.pool {
            crate::store::Pool::Sqlite(p) => AuditTx::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
            crate::store::Pool::Postgres(p) => AuditTx::Postgres(p.begin().await?),
        })
    }

    /// Every chain, in name order.
    pub async fn audit_chains(&self) -> Result<Vec<String>, Error> {
        Ok(on_pool!(self, |p| sqlx::query_scalar("SELECT chain FROM audit_heads ORDER BY chain").fetch_all(p).await)?)
    }

    pub async fn audit_head(&self, chain: &str) -> Result<Option<ChainHead>, Error> {
        let row: Option<(i64, Vec<u8>, i64)> =
            on_pool!(self, |p| sqlx::query_as("SELECT seq, hash, checkpoint_seq FROM audit_heads WHERE chain = $1")
                .bind(chain)
                .fetch_optional(p)
                .await)?;
        row.map(|r| Ok(ChainHead { seq: u64_of(r.0)?, hash: hash32(&r.1)?, checkpoint_seq: u64_of(r.2)? })).transpose()
    }

    /// Records in `(chain, seq)` order after the cursor `(chain, seq)`, narrowed by `f`.
    /// Keyset-paged, so an export streams any size in bounded memory.
    pub async fn audit_page(
        &self,
        f: &AuditFilter,
        after: Option<(&str, i64)>,
        limit: u32,
    ) -> Result<Vec<AuditRow>, Error> {
        let (after_chain, after_seq) = after.map_or((None, 0), |(c, s)| (Some(c), s));
        Ok(on_pool!(self, |p| sqlx::query_as(
            "SELECT chain, seq, prev_hash, hash, line, event_id, at, actor, action FROM audit_log \
             WHERE ($1 IS NULL OR chain > $1 OR (chain = $1 AND seq > $2)) \
               AND ($3 IS NULL OR chain = $3) AND ($4 IS NULL OR at >= $4) AND ($5 IS NULL OR at < $5) \
               AND ($6 IS NULL OR actor = $6) AND ($7 IS NULL OR action = $7) \
             ORDER BY chain, seq LIMIT $8"
        )
        .bind(after_chain)
        .bind(after_seq)
        .bind(&f.chain)
        .bind(f.from_ms)
        .bind(f.to_ms)
        .bind(&f.actor)
        .bind(&f.action)
        .bind(i64::from(limit))
        .fetch_all(p)
        .await)?)
    }

    /// Newest first (by time), narrowed by `f`: the listing of `GET /admin/v1/audit`.
    pub async fn audit_latest(&self, f: &AuditFilter, limit: u32) -> Result<Vec<AuditRow>, Error> {
        Ok(on_pool!(self, |p| sqlx::query_as(
            "SELECT chain, seq, prev_hash, hash, line, event_id, at, actor, action FROM audit_log \
             WHERE ($1 IS NULL OR chain = $1) AND ($2 IS NULL OR actor = $2) AND ($3 IS NULL OR action = $3) \
             ORDER BY at DESC, seq DESC LIMIT $4"
        )
        .bind(&f.chain)
        .bind(&f.actor)
        .bind(&f.action)
        .bind(i64::from(limit))
        .fetch_all(p)
        .await)?)
    }

    /// A chain's checkpoints in seq order.
    pub async fn audit_checkpoints(&self, chain: &str) -> Result<Vec<CheckpointRow>, Error> {
        Ok(on_pool!(self, |p| sqlx::query_as(
            "SELECT chain, seq, at, note FROM audit_checkpoints WHERE chain = $1 ORDER BY seq"
        )
        .bind(chain)
        .fetch_all(p)
        .await)?)
    }

    pub async fn audit_anchor(&self, chain: &str) -> Result<Option<AnchorRow>, Error> {
        Ok(on_pool!(self, |p| sqlx::query_as("SELECT chain, seq, hash, note, at FROM audit_anchors WHERE chain = $1")
            .bind(chain)
            .fetch_optional(p)
            .await)?)
    }

    /// The last record of `chain` that retention may drop: every record up to it is older
    /// than `cutoff_ms` (a prefix, so the remaining chain stays contiguous).
    pub async fn audit_prunable_through(&self, chain: &str, cutoff_ms: i64) -> Result<Option<AuditRow>, Error> {
        let first_kept: Option<i64> =
            on_pool!(self, |p| sqlx::query_scalar("SELECT MIN(seq) FROM audit_log WHERE chain = $1 AND at >= $2")
                .bind(chain)
                .bind(cutoff_ms)
                .fetch_one(p)
                .await)?;
        Ok(on_pool!(self, |p| sqlx::query_as(
            "SELECT chain, seq, prev_hash, hash, line, event_id, at, actor, action FROM audit_log \
             WHERE chain = $1 AND ($2 IS NULL OR seq < $2) ORDER BY seq DESC LIMIT 1"
        )
        .bind(chain)
        .bind(first_kept)
        .fetch_optional(p)
        .await)?)
    }
}

impl AuditRow {
    pub fn seq_u64(&self) -> Result<u64, Error> {
        u64_of(self.seq)
    }

    pub fn hashes(&self) -> Result<([u8; 32], [u8; 32]), Error> {
        Ok((hash32(&self.prev_hash)?, hash32(&self.hash)?))
    }
}
