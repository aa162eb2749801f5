//! Stored limit policies: at most one per org, project and key. Every replica keeps all of
//! them in memory and re-reads the table on a short poll, so the request path never reads it.

use gatehouse_core::{KeyId, OrgId, ProjectId};

use crate::{Error, Store, now_ms};

/// Which scope a limit policy belongs to (the org is always known: it scopes every query).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LimitScope {
    Org,
    Project(ProjectId),
    Key(KeyId),
}

impl LimitScope {
    fn columns(self) -> (String, String) {
        match self {
            LimitScope::Org => (String::new(), String::new()),
            LimitScope::Project(p) => (p.to_string(), String::new()),
            LimitScope::Key(k) => (String::new(), k.to_string()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct LimitPolicyRow {
    pub org_id: String,
    /// Empty unless the policy is a project's.
    pub project_id: String,
    /// Empty unless the policy is a key's.
    pub key_id: String,
    /// The spec as JSON (gatehouse-limits `LimitSpec`).
    pub spec: String,
    pub updated_at: i64,
    pub updated_by: String,
}

impl Store {
    pub async fn put_limit_policy(&self, org: OrgId, scope: LimitScope, spec: &str, actor: &str) -> Result<(), Error> {
        let (project, key) = scope.columns();
        on_pool!(self, |p| sqlx::query(
            "INSERT INTO limit_policies (org_id, project_id, key_id, spec, updated_at, updated_by) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (org_id, project_id, key_id) DO UPDATE SET \
             spec = excluded.spec, updated_at = excluded.updated_at, updated_by = excluded.updated_by"
        )
        .bind(org.to_string())
        .bind(&project)
        .bind(&key)
        .bind(spec)
        .bind(now_ms())
        .bind(actor)
        .execute(p)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    /// Scoped by org: another org's policy is not found.
    pub async fn limit_policy(&self, org: OrgId, scope: LimitScope) -> Result<Option<LimitPolicyRow>, Error> {
        let (project, key) = scope.columns();
        Ok(fetch!(self, query_as, fetch_optional,
            "SELECT org_id, project_id, key_id, spec, updated_at, updated_by FROM limit_policies \
             WHERE org_id = $1 AND project_id = $2 AND key_id = $3";
            org.to_string(), &project, &key
        )?)
    }

    pub async fn delete_limit_policy(&self, org: OrgId, scope: LimitScope) -> Result<bool, Error> {
        let (project, key) = scope.columns();
        let n = execute!(self,
            "DELETE FROM limit_policies WHERE org_id = $1 AND project_id = $2 AND key_id = $3";
            org.to_string(), &project, &key
        )?;
        Ok(n > 0)
    }

    /// Every stored policy, for the in-memory table.
    pub async fn all_limit_policies(&self) -> Result<Vec<LimitPolicyRow>, Error> {
        Ok(fetch!(
            self,
            query_as,
            fetch_all,
            "SELECT org_id, project_id, key_id, spec, updated_at, updated_by FROM limit_policies \
             ORDER BY org_id, project_id, key_id"
        )?)
    }
}

/// Spend added to one budget of the in-process limits store (persisted behind it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BudgetSpend {
    pub budget: String,
    pub spent: i64,
    /// Milliseconds since the epoch; `None`: kept forever (lifetime budgets).
    pub expires_at: Option<i64>,
}

impl Store {
    /// Adds each row's spend to its budget's persisted total (in one transaction).
    pub async fn add_budget_spend(&self, rows: &[BudgetSpend]) -> Result<(), Error> {
        const SQL: &str = "INSERT INTO budget_spend (budget, spent, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (budget) DO UPDATE SET spent = budget_spend.spent + excluded.spent";
        macro_rules! write_all {
            ($pool:expr) => {{
                let mut tx = $pool.begin().await?;
                for r in rows {
                    sqlx::query(SQL).bind(&r.budget).bind(r.spent).bind(r.expires_at).execute(&mut *tx).await?;
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

    /// Every budget whose period is not over at `now_ms`; expired rows are deleted first.
    pub async fn budget_spends(&self, now_ms: i64) -> Result<Vec<BudgetSpend>, Error> {
        on_pool!(self, |p| sqlx::query("DELETE FROM budget_spend WHERE expires_at IS NOT NULL AND expires_at <= $1")
            .bind(now_ms)
            .execute(p)
            .await
            .map(|_| ()))?;
        let rows: Vec<(String, i64, Option<i64>)> =
            fetch!(self, query_as, fetch_all, "SELECT budget, spent, expires_at FROM budget_spend ORDER BY budget")?;
        Ok(rows.into_iter().map(|(budget, spent, expires_at)| BudgetSpend { budget, spent, expires_at }).collect())
    }
}
