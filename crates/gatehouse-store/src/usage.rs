//! The usage ledger: what each request really used and cost, once per request (the request id
//! is the key, so a retried write changes nothing), summed per day for usage queries, and
//! pruned by age.

use gatehouse_core::OrgId;

use crate::{Error, Store};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageRecord {
    pub request_id: String,
    /// Milliseconds since the epoch; `day` is derived from it (UTC).
    pub at: i64,
    pub org_id: String,
    pub project_id: String,
    /// `key:<id>`, `capability:<id>`, `oidc:<issuer>:<subject>`.
    pub credential: String,
    pub model: String,
    /// The provider of the deployment that served it (empty: recorded before deployments).
    pub provider: String,
    /// The stored provider credential presented, `<id>:v<version>` (empty: the configured one).
    pub provider_credential: String,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
    pub cost_micro_usd: i64,
}

/// Which rows a usage query sums. `org` is always required: usage is tenant data.
#[derive(Clone, Debug, Default)]
pub struct UsageFilter {
    pub project_id: Option<String>,
    pub credential: Option<String>,
    pub model: Option<String>,
    pub provider: Option<String>,
    /// Inclusive UTC days, `YYYY-MM-DD`.
    pub from_day: Option<String>,
    pub to_day: Option<String>,
}

/// One line of a usage report: a day x project x credential x model x provider.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct UsageTotal {
    pub day: String,
    pub project_id: String,
    pub credential: String,
    pub model: String,
    pub provider: String,
    pub requests: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
    pub cost_micro_usd: i64,
}

/// `YYYY-MM-DD` (UTC) of a millisecond timestamp (times before 1970 count as 1970-01-01).
pub fn utc_day(at_ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(at_ms).unwrap_or(0));
    let mut s = humantime::format_rfc3339_seconds(t).to_string();
    s.truncate(10);
    s
}

/// Rows per usage insert, largest first: a batch is cut into pieces of these sizes only, so a
/// connection prepares (and keeps in its statement cache) at most five distinct statements
/// however the batches vary. Cut at any size, every remainder would be a statement of its own,
/// and a 200-row insert prepared once per size held megabytes per connection. 13 binds a row:
/// 256 rows stay far below SQLite's and PostgreSQL's bind limits.
const USAGE_ROWS_PER_INSERT: [usize; 5] = [256, 64, 16, 4, 1];

/// The statement sizes `n` rows are written with (see [`USAGE_ROWS_PER_INSERT`]).
fn insert_sizes(mut n: usize) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        let size = USAGE_ROWS_PER_INSERT.into_iter().find(|s| *s <= n)?;
        n -= size;
        Some(size)
    })
}

impl Store {
    /// Writes settled requests in one transaction, as multi-row inserts (up to 256 rows a
    /// statement, [`USAGE_ROWS_PER_INSERT`]: a batch is a few database round trips, not one per
    /// request); a request already in the ledger is left as it is (settlement is exactly once
    /// even if the write is retried).
    pub async fn record_usage(&self, rows: &[UsageRecord]) -> Result<(), Error> {
        const INSERT: &str = "INSERT INTO usage_ledger (request_id, at, day, org_id, project_id, credential, \
             model, provider, provider_credential, prompt_tokens, completion_tokens, cached_tokens, cost_micro_usd) ";
        macro_rules! write_all {
            ($pool:expr) => {{
                let mut tx = $pool.begin().await?;
                let mut rest = rows;
                for size in insert_sizes(rows.len()) {
                    let (chunk, after) = rest.split_at(size);
                    rest = after;
                    let mut q = sqlx::QueryBuilder::new(INSERT);
                    q.push_values(chunk, |mut b, r| {
                        b.push_bind(&r.request_id)
                            .push_bind(r.at)
                            .push_bind(utc_day(r.at))
                            .push_bind(&r.org_id)
                            .push_bind(&r.project_id)
                            .push_bind(&r.credential)
                            .push_bind(&r.model)
                            .push_bind(&r.provider)
                            .push_bind(&r.provider_credential)
                            .push_bind(r.prompt_tokens)
                            .push_bind(r.completion_tokens)
                            .push_bind(r.cached_tokens)
                            .push_bind(r.cost_micro_usd);
                    });
                    q.push(" ON CONFLICT (request_id) DO NOTHING");
                    q.build().execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }};
        }
        match &self.pool {
            crate::store::Pool::Sqlite(p) => write_all!(p),
            crate::store::Pool::Postgres(p) => write_all!(p),
        }
        Ok(())
    }

    /// Usage of one org, summed per day, project, credential, model and provider, newest day
    /// first.
    pub async fn usage(&self, org: OrgId, f: &UsageFilter) -> Result<Vec<UsageTotal>, Error> {
        Ok(fetch!(self, query_as, fetch_all,
            "SELECT day, project_id, credential, model, provider, COUNT(*) AS requests, \
             CAST(SUM(prompt_tokens) AS BIGINT) AS prompt_tokens, \
             CAST(SUM(completion_tokens) AS BIGINT) AS completion_tokens, \
             CAST(SUM(cached_tokens) AS BIGINT) AS cached_tokens, \
             CAST(SUM(cost_micro_usd) AS BIGINT) AS cost_micro_usd \
             FROM usage_ledger WHERE org_id = $1 \
             AND ($2 IS NULL OR project_id = $2) AND ($3 IS NULL OR credential = $3) \
             AND ($4 IS NULL OR model = $4) AND ($5 IS NULL OR day >= $5) AND ($6 IS NULL OR day <= $6) \
             AND ($7 IS NULL OR provider = $7) \
             GROUP BY day, project_id, credential, model, provider \
             ORDER BY day DESC, project_id, credential, model, provider LIMIT 10000";
            org.to_string(), f.project_id.as_deref(), f.credential.as_deref(), f.model.as_deref(),
            f.from_day.as_deref(), f.to_day.as_deref(), f.provider.as_deref()
        )?)
    }

    /// Deletes ledger rows older than `before_ms`; returns how many.
    pub async fn prune_usage(&self, before_ms: i64) -> Result<u64, Error> {
        Ok(execute!(self, "DELETE FROM usage_ledger WHERE at < $1"; before_ms)?)
    }
}

#[cfg(test)]
mod tests {
    use super::{insert_sizes, utc_day};

    #[test]
    fn batches_are_written_with_five_statement_sizes_at_most() {
        let mut used = std::collections::BTreeSet::new();
        for n in 0..=2000 {
            let sizes: Vec<usize> = insert_sizes(n).collect();
            assert_eq!(sizes.iter().sum::<usize>(), n);
            assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "largest first: {sizes:?}");
            assert!(sizes.len() <= n / 256 + 12, "{n} rows in {} statements", sizes.len());
            used.extend(sizes);
        }
        assert_eq!(used.into_iter().collect::<Vec<_>>(), vec![1, 4, 16, 64, 256]);
    }

    #[test]
    fn utc_days_match_the_calendar() {
        assert_eq!(utc_day(0), "1970-01-01");
        assert_eq!(utc_day(951_782_400_000), "2000-02-29");
        assert_eq!(utc_day(1_795_996_799_999), "2026-11-29");
        assert_eq!(utc_day(1_795_996_800_000), "2026-11-30");
        assert_eq!(utc_day(-1), "1970-01-01");
    }
}
