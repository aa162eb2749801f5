//! Stored guardrail policies: at most one per org (`project_id = ''`) and one per project.
//! Every replica keeps all of them compiled in memory and re-reads the table on a short poll.

use gatehouse_core::{OrgId, ProjectId};

use crate::{Error, Store, now_ms};

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct GuardrailPolicyRow {
    pub org_id: String,
    /// Empty for the org's own policy.
    pub project_id: String,
    /// The spec as JSON (gatehouse-guardrails `PolicySpec`).
    pub spec: String,
    pub updated_at: i64,
    pub updated_by: String,
}

fn project_key(project: Option<ProjectId>) -> String {
    project.map(|p| p.to_string()).unwrap_or_default()
}

impl Store {
    pub async fn put_guardrail_policy(
        &self,
        org: OrgId,
        project: Option<ProjectId>,
        spec: &str,
        actor: &str,
    ) -> Result<(), Error> {
        on_pool!(self, |p| {
            sqlx::query(
            "INSERT INTO guardrail_policies (org_id, project_id, spec, updated_at, updated_by) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (org_id, project_id) DO UPDATE SET spec = excluded.spec, updated_at = excluded.updated_at, \
             updated_by = excluded.updated_by"
        )
        .bind(org.to_string())
        .bind(project_key(project))
        .bind(spec)
        .bind(now_ms())
        .bind(actor)
        .execute(p)
        .await
        .map(|_| ())
        })?;
        Ok(())
    }

    /// Scoped by org: another org's policy is not found.
    pub async fn guardrail_policy(
        &self,
        org: OrgId,
        project: Option<ProjectId>,
    ) -> Result<Option<GuardrailPolicyRow>, Error> {
        Ok(fetch!(self, query_as, fetch_optional,
            "SELECT org_id, project_id, spec, updated_at, updated_by FROM guardrail_policies \
             WHERE org_id = $1 AND project_id = $2";
            org.to_string(), project_key(project)
        )?)
    }

    pub async fn delete_guardrail_policy(&self, org: OrgId, project: Option<ProjectId>) -> Result<bool, Error> {
        let n = execute!(self,
            "DELETE FROM guardrail_policies WHERE org_id = $1 AND project_id = $2";
            org.to_string(), project_key(project)
        )?;
        Ok(n > 0)
    }

    /// Every stored policy, for the in-memory table.
    pub async fn all_guardrail_policies(&self) -> Result<Vec<GuardrailPolicyRow>, Error> {
        Ok(fetch!(
            self,
            query_as,
            fetch_all,
            "SELECT org_id, project_id, spec, updated_at, updated_by FROM guardrail_policies ORDER BY org_id, project_id"
        )?)
    }
}
