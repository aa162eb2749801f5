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

/// A stored record: one line of a segment, with its position and hashes. `event_id`, `at`,
/// `actor` and `action` are read from the line itself.
#[derive(Clone, Debug, PartialEq, Eq)]
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

/// Where a page of the audit listing stopped: inside the segment `(last_at, chain, first_seq)`,
/// before `below_seq`. Rendered as an opaque string for clients ([`AuditCursor::encode`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditCursor {
    pub last_at: i64,
    pub chain: String,
    pub first_seq: i64,
    pub below_seq: i64,
}

impl AuditCursor {
    pub fn encode(&self) -> String {
        format!("{}.{}.{}.{}", self.last_at, self.first_seq, self.below_seq, self.chain)
    }

    /// The cursor a page gave out; anything else is `None` (a chain is `platform` or
    /// `org/<uuid>`).
    pub fn decode(s: &str) -> Option<AuditCursor> {
        let mut parts = s.splitn(4, '.');
        let n = |p: Option<&str>| p.and_then(|v| v.parse::<i64>().ok()).filter(|v| *v >= 0);
        let (last_at, first_seq, below_seq) = (n(parts.next())?, n(parts.next())?, n(parts.next())?);
        let chain = parts.next()?;
        let ok = chain == "platform" || chain.strip_prefix("org/").is_some_and(gatehouse_core::is_id);
        ok.then(|| AuditCursor { last_at, chain: chain.to_owned(), first_seq, below_seq })
    }
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
        let n: Option<i64> = fetch!(tx self, query_scalar, fetch_optional,
            "SELECT lines_done FROM audit_spool_progress WHERE spool_id = $1";
            spool_id
        )?;
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

    /// One record as a segment of its own.
    pub async fn insert(&mut self, r: &NewAuditRecord<'_>) -> Result<(), Error> {
        self.insert_many(std::slice::from_ref(r)).await
    }

    /// Appends records as one segment per chain: consecutive records of a chain (as the
    /// writer produces them) become one row, so a batch costs a row per chain, not per event.
    pub async fn insert_many(&mut self, rows: &[NewAuditRecord<'_>]) -> Result<(), Error> {
        let mut start = 0;
        while start < rows.len() {
            let chain = rows[start].chain;
            let end = rows[start..].iter().position(|r| r.chain != chain).map_or(rows.len(), |n| start + n);
            self.insert_segment(&rows[start..end]).await?;
            start = end;
        }
        Ok(())
    }

    async fn insert_segment(&mut self, rows: &[NewAuditRecord<'_>]) -> Result<(), Error> {
        let (Some(first), Some(last)) = (rows.first(), rows.last()) else { return Ok(()) };
        let mut hashes = Vec::with_capacity(32 * rows.len());
        let mut lines = String::with_capacity(rows.iter().map(|r| r.line.len() + 1).sum());
        for r in rows {
            hashes.extend_from_slice(r.hash);
            lines.push_str(r.line);
            lines.push('\n');
        }
        let first_at = rows.iter().map(|r| r.at).min().unwrap_or(first.at);
        let last_at = rows.iter().map(|r| r.at).max().unwrap_or(last.at);
        let (first_seq, last_seq) = (i64_of(first.seq)?, i64_of(last.seq)?);
        on_tx!(self, |c| sqlx::query(
            "INSERT INTO audit_log (chain, first_seq, last_seq, prev_hash, hashes, lines, first_at, last_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        )
        .bind(first.chain)
        .bind(first_seq)
        .bind(last_seq)
        .bind(&first.prev_hash[..])
        .bind(&hashes)
        .bind(&lines)
        .bind(first_at)
        .bind(last_at)
        .execute(c)
        .await
        .map(|_| ()))?;
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
        let sql = "SELECT chain FROM audit_heads WHERE seq > checkpoint_seq ORDER BY chain";
        Ok(fetch!(tx self, query_scalar, fetch_all, sql)?)
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
        let n = execute!(tx self,
            "DELETE FROM audit_log WHERE chain = $1 AND last_seq <= $2";
            &anchor.chain, anchor.seq
        )?;
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
        Ok(fetch!(self, query_scalar, fetch_all, "SELECT chain FROM audit_heads ORDER BY chain")?)
    }

    pub async fn audit_head(&self, chain: &str) -> Result<Option<ChainHead>, Error> {
        let row: Option<(i64, Vec<u8>, i64)> = fetch!(self, query_as, fetch_optional,
            "SELECT seq, hash, checkpoint_seq FROM audit_heads WHERE chain = $1";
            chain
        )?;
        row.map(|r| Ok(ChainHead { seq: u64_of(r.0)?, hash: hash32(&r.1)?, checkpoint_seq: u64_of(r.2)? })).transpose()
    }

    /// Records in `(chain, seq)` order after the cursor `(chain, seq)`, narrowed by `f`.
    /// Keyset-paged over segments, so an export streams any size in bounded memory.
    pub async fn audit_page(
        &self,
        f: &AuditFilter,
        after: Option<(&str, i64)>,
        limit: u32,
    ) -> Result<Vec<AuditRow>, Error> {
        let limit = limit as usize;
        let mut out = Vec::new();
        let (mut cur_chain, mut cur_seq) = after.map_or((None, 0), |(c, s)| (Some(c.to_owned()), s));
        loop {
            let segs: Vec<Segment> = fetch!(self, query_as, fetch_all,
                "SELECT chain, first_seq, last_seq, prev_hash, hashes, lines FROM audit_log \
                 WHERE ($1 IS NULL OR chain > $1 OR (chain = $1 AND last_seq > $2)) \
                   AND ($3 IS NULL OR chain = $3) AND ($4 IS NULL OR last_at >= $4) AND ($5 IS NULL OR first_at < $5) \
                 ORDER BY chain, first_seq LIMIT 16";
                cur_chain.as_deref(), cur_seq, &f.chain, f.from_ms, f.to_ms
            )?;
            let Some(last) = segs.last() else { return Ok(out) };
            (cur_chain, cur_seq) = (Some(last.chain.clone()), last.last_seq);
            let n = segs.len();
            for seg in segs {
                let skip_to = if after.is_some_and(|(c, _)| c == seg.chain) { after.map_or(0, |a| a.1) } else { 0 };
                for row in seg.explode() {
                    if row.seq > skip_to && f.admits(&row) {
                        out.push(row);
                        if out.len() == limit {
                            return Ok(out);
                        }
                    }
                }
            }
            if n < 16 {
                return Ok(out);
            }
        }
    }

    /// Newest first (by time), narrowed by `f`: the listing of `GET /admin/v1/audit`.
    pub async fn audit_latest(&self, f: &AuditFilter, limit: u32) -> Result<Vec<AuditRow>, Error> {
        Ok(self.audit_latest_page(f, limit, None, usize::MAX).await?.0)
    }

    /// One page of the listing: at most `limit` events newest first, from `after` on (where
    /// the last page stopped), looking at no more than `max_scan` events, so a filter that
    /// matches little costs one bounded page at a time rather than a walk of the whole trail.
    /// The cursor says where the next page starts; `None` when the trail is exhausted.
    pub async fn audit_latest_page(
        &self,
        f: &AuditFilter,
        limit: u32,
        after: Option<&AuditCursor>,
        max_scan: usize,
    ) -> Result<(Vec<AuditRow>, Option<AuditCursor>), Error> {
        let limit = limit as usize;
        let mut out = Vec::new();
        let mut scanned = 0usize;
        let mut pos = after.cloned();
        // segments per query: a page usually fills from the first few; a filter that matches
        // little reads on in growing strides (a segment holds one event when traffic is slow)
        let mut batch = 16i64;
        loop {
            // keyset paging over segments, newest first: the cursor's own segment comes again,
            // and its rows at or past the cursor are skipped. One statement per case, each a
            // range seek on its index (plans.rs checks them), never `$n IS NULL OR ...`
            let segs: Vec<Segment> = match (&f.chain, &pos) {
                (None, None) => fetch!(self, query_as, fetch_all, LATEST; batch)?,
                (None, Some(c)) => {
                    fetch!(self, query_as, fetch_all, LATEST_AFTER; c.last_at, &c.chain, c.first_seq, batch)?
                }
                (Some(only), None) => fetch!(self, query_as, fetch_all, LATEST_OF_CHAIN; only, batch)?,
                (Some(only), Some(c)) => {
                    // the position within this chain: at the cursor's instant, a chain that
                    // sorts after the cursor's came before it (all read), one before it after
                    let (at, first) = match only.as_str().cmp(c.chain.as_str()) {
                        std::cmp::Ordering::Equal => (c.last_at, c.first_seq),
                        std::cmp::Ordering::Less => (c.last_at, i64::MAX),
                        std::cmp::Ordering::Greater => (c.last_at.saturating_sub(1), i64::MAX),
                    };
                    fetch!(self, query_as, fetch_all, LATEST_OF_CHAIN_AFTER; only, at, first, batch)?
                }
            };
            let n = segs.len();
            for seg in segs {
                let key = (seg.last_at, seg.chain.clone(), seg.first_seq);
                let below = pos
                    .as_ref()
                    .filter(|c| (c.last_at, &c.chain, c.first_seq) == (key.0, &key.1, key.2))
                    .map_or(i64::MAX, |c| c.below_seq);
                let here =
                    |below_seq: i64| AuditCursor { last_at: key.0, chain: key.1.clone(), first_seq: key.2, below_seq };
                for (seq, row) in seg.newest_first(f).filter(|(seq, _)| *seq < below) {
                    scanned += 1;
                    if let Some(row) = row.filter(|r| f.admits(r)) {
                        out.push(row);
                        if out.len() == limit {
                            return Ok((out, Some(here(seq))));
                        }
                    }
                    if scanned >= max_scan {
                        return Ok((out, Some(here(seq))));
                    }
                }
                // the whole segment is read: the next query starts at it and skips it
                pos = Some(here(key.2));
            }
            if i64::try_from(n).unwrap_or(0) < batch {
                return Ok((out, None));
            }
            batch = (batch * 4).min(1024);
        }
    }

    /// A chain's checkpoints in seq order.
    pub async fn audit_checkpoints(&self, chain: &str) -> Result<Vec<CheckpointRow>, Error> {
        Ok(fetch!(self, query_as, fetch_all,
            "SELECT chain, seq, at, note FROM audit_checkpoints WHERE chain = $1 ORDER BY seq";
            chain
        )?)
    }

    pub async fn audit_anchor(&self, chain: &str) -> Result<Option<AnchorRow>, Error> {
        Ok(fetch!(self, query_as, fetch_optional,
            "SELECT chain, seq, hash, note, at FROM audit_anchors WHERE chain = $1";
            chain
        )?)
    }

    /// The last record of `chain` that retention may drop: every segment up to it holds
    /// only events older than `cutoff_ms` (a prefix of whole segments, so the remaining chain
    /// stays contiguous and starts at a segment).
    pub async fn audit_prunable_through(&self, chain: &str, cutoff_ms: i64) -> Result<Option<AuditRow>, Error> {
        let first_kept: Option<i64> = fetch!(self, query_scalar, fetch_one,
            "SELECT MIN(first_seq) FROM audit_log WHERE chain = $1 AND last_at >= $2";
            chain, cutoff_ms
        )?;
        let seg: Option<Segment> = fetch!(self, query_as, fetch_optional,
            "SELECT chain, first_seq, last_seq, prev_hash, hashes, lines FROM audit_log \
             WHERE chain = $1 AND ($2 IS NULL OR first_seq < $2) ORDER BY first_seq DESC LIMIT 1";
            chain, first_kept
        )?;
        Ok(seg.and_then(|s| s.explode().pop()))
    }
}

/// `$where`, newest first, at most `$limit` (the last bind) segments.
macro_rules! latest_segments {
    ($where:literal, $limit:literal) => {
        concat!(
            "SELECT chain, first_seq, last_seq, prev_hash, hashes, lines, last_at FROM audit_log ",
            $where,
            " ORDER BY last_at DESC, chain DESC, first_seq DESC LIMIT ",
            $limit
        )
    };
}

/// The newest segments of every chain (the audit listing's first page)...
pub(crate) const LATEST: &str = latest_segments!("", "$1");
/// ...and those at or before the position `($1, $2, $3)` = `(last_at, chain, first_seq)`.
pub(crate) const LATEST_AFTER: &str = latest_segments!("WHERE (last_at, chain, first_seq) <= ($1, $2, $3)", "$4");
/// The newest segments of the chain `$1`...
pub(crate) const LATEST_OF_CHAIN: &str = latest_segments!("WHERE chain = $1", "$2");
/// ...and those at or before `($2, $3)` = `(last_at, first_seq)`.
pub(crate) const LATEST_OF_CHAIN_AFTER: &str =
    latest_segments!("WHERE chain = $1 AND (last_at, first_seq) <= ($2, $3)", "$4");

/// A stored segment, as read.
#[derive(sqlx::FromRow)]
struct Segment {
    chain: String,
    first_seq: i64,
    last_seq: i64,
    prev_hash: Vec<u8>,
    hashes: Vec<u8>,
    lines: String,
    #[sqlx(default)]
    last_at: i64,
}

/// The fields of a line that reads filter on.
#[derive(serde::Deserialize)]
struct LineFields<'a> {
    id: Option<&'a str>,
    at: Option<&'a str>,
    actor: Option<&'a str>,
    action: Option<&'a str>,
}

impl Segment {
    /// Its records newest first, each with its seq; a record is built (parsed, copied) only if
    /// its line could match `f`. The writer's lines are canonical (compact JSON, fixed field
    /// order), so a line without `"action":"<a>"` cannot be an `a` event; `admits` decides on
    /// the rows that pass.
    fn newest_first<'a>(&'a self, f: &'a AuditFilter) -> impl Iterator<Item = (i64, Option<AuditRow>)> + 'a {
        let needles: Vec<String> = [("action", &f.action), ("actor", &f.actor)]
            .into_iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("\"{k}\":{}", serde_json::Value::String(v.clone()))))
            .collect();
        let lines: Vec<&str> = self.lines.split_terminator('\n').collect();
        (0..lines.len()).rev().map(move |i| {
            let seq = self.first_seq + i64::try_from(i).unwrap_or(i64::MAX);
            let line = lines[i];
            if !needles.iter().all(|n| line.contains(n.as_str())) {
                return (seq, None);
            }
            let prev_hash = if i == 0 { self.prev_hash.clone() } else { self.hash_at(i - 1) };
            let row = self.row(i, line, prev_hash);
            (seq, Some(row))
        })
    }

    /// The stored hash of the `i`th record (empty if the segment was cut short).
    fn hash_at(&self, i: usize) -> Vec<u8> {
        self.hashes.get(32 * i..32 * i + 32).map_or_else(Vec::new, <[u8]>::to_vec)
    }

    /// The `i`th record, from its line.
    fn row(&self, i: usize, line: &str, prev_hash: Vec<u8>) -> AuditRow {
        let fields: Option<LineFields<'_>> = serde_json::from_str(line).ok();
        let f = fields.as_ref();
        AuditRow {
            chain: self.chain.clone(),
            seq: self.first_seq + i64::try_from(i).unwrap_or(i64::MAX),
            prev_hash,
            hash: self.hash_at(i),
            line: line.to_owned(),
            event_id: f.and_then(|f| f.id).unwrap_or("").to_owned(),
            at: f.and_then(|f| f.at).and_then(rfc3339_ms).unwrap_or(0),
            actor: f.and_then(|f| f.actor).unwrap_or("").to_owned(),
            action: f.and_then(|f| f.action).unwrap_or("").to_owned(),
        }
    }

    /// Its lines as records. Leniently: a segment that was tampered with still yields rows
    /// (with whatever hashes it holds), so verification can name the broken seq.
    fn explode(self) -> Vec<AuditRow> {
        let mut prev = self.prev_hash.clone();
        let mut out = Vec::new();
        for (i, line) in self.lines.split_terminator('\n').enumerate() {
            let row = self.row(i, line, std::mem::take(&mut prev));
            prev.clone_from(&row.hash);
            out.push(row);
        }
        out
    }
}

/// Milliseconds of an RFC 3339 UTC time as the lines write it (`2026-11-24T08:00:00.123Z`).
fn rfc3339_ms(s: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339(s).ok()?;
    i64::try_from(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis()).ok()
}

impl AuditFilter {
    fn admits(&self, r: &AuditRow) -> bool {
        self.from_ms.is_none_or(|f| r.at >= f)
            && self.to_ms.is_none_or(|t| r.at < t)
            && self.actor.as_ref().is_none_or(|a| *a == r.actor)
            && self.action.as_ref().is_none_or(|a| *a == r.action)
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
