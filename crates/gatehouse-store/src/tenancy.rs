//! Organizations and projects as the control plane manages them. Every project query is
//! scoped by org id: a project of another org is not found.

use gatehouse_core::{OrgId, ProjectId};

use crate::records::{RawOrgRow, RawProjectRow};
use crate::{Error, OrgRow, ProjectRow, ProjectSettings, Store, now_ms};

impl Store {
    pub async fn org(&self, id: OrgId) -> Result<Option<OrgRow>, Error> {
        let row: Option<RawOrgRow> = fetch!(self, query_as, fetch_optional,
            "SELECT id, name, created_at, disabled_at FROM organizations WHERE id = $1";
            id.to_string()
        )?;
        row.map(OrgRow::try_from).transpose()
    }

    /// Organizations by id (time-ordered), after `after` when given, at most `limit`.
    pub async fn list_orgs(&self, after: Option<OrgId>, limit: u32) -> Result<Vec<OrgRow>, Error> {
        let rows: Vec<RawOrgRow> = fetch!(self, query_as, fetch_all,
            "SELECT id, name, created_at, disabled_at FROM organizations WHERE ($1 IS NULL OR id > $1) ORDER BY id LIMIT $2";
            after.map(|a| a.to_string()), i64::from(limit)
        )?;
        rows.into_iter().map(OrgRow::try_from).collect()
    }

    pub async fn rename_org(&self, id: OrgId, name: &str) -> Result<bool, Error> {
        let n = execute!(self, "UPDATE organizations SET name = $1 WHERE id = $2"; name, id.to_string())?;
        Ok(n > 0)
    }

    pub async fn project(&self, org: OrgId, id: ProjectId) -> Result<Option<ProjectRow>, Error> {
        let row: Option<RawProjectRow> = fetch!(self, query_as, fetch_optional,
            "SELECT id, org_id, name, allowed_models, created_at, disabled_at, default_limits, cors_origins FROM projects WHERE org_id = $1 AND id = $2";
            org.to_string(), id.to_string()
        )?;
        row.map(ProjectRow::try_from).transpose()
    }

    pub async fn list_projects(
        &self,
        org: OrgId,
        after: Option<ProjectId>,
        limit: u32,
    ) -> Result<Vec<ProjectRow>, Error> {
        let rows: Vec<RawProjectRow> = fetch!(self, query_as, fetch_all,
            "SELECT id, org_id, name, allowed_models, created_at, disabled_at, default_limits, cors_origins FROM projects \
             WHERE org_id = $1 AND ($2 IS NULL OR id > $2) ORDER BY id LIMIT $3";
            org.to_string(), after.map(|a| a.to_string()), i64::from(limit)
        )?;
        rows.into_iter().map(ProjectRow::try_from).collect()
    }

    /// Sets a project's name and model allow-list (`None`: every model), and marks its keys and
    /// capability tokens changed so every replica re-reads their allow-list. False if the project does not
    /// exist in this org.
    /// Every origin some enabled project of an enabled org lets read its answers: the data
    /// plane answers CORS preflights (which carry no credential) for these alone.
    pub async fn project_cors_origins(&self) -> Result<Vec<String>, Error> {
        let rows: Vec<String> = fetch!(
            self,
            query_scalar,
            fetch_all,
            "SELECT p.cors_origins FROM projects p JOIN organizations o ON o.id = p.org_id \
             WHERE p.cors_origins IS NOT NULL AND p.disabled_at IS NULL AND o.disabled_at IS NULL"
        )?;
        let mut all = Vec::new();
        for r in rows {
            let list: Vec<String> = serde_json::from_str(&r).map_err(|_| Error::Corrupt("projects.cors_origins"))?;
            all.extend(list);
        }
        all.sort();
        all.dedup();
        Ok(all)
    }

    pub async fn update_project(&self, org: OrgId, id: ProjectId, settings: &ProjectSettings) -> Result<bool, Error> {
        let models = settings.allowed_models.as_ref().map(|m| serde_json::to_string(m).unwrap_or_default());
        let limits = settings.default_limits.as_ref().map(ToString::to_string);
        let cors = settings.cors_origins.as_ref().map(|o| serde_json::to_string(o).unwrap_or_default());
        let now = now_ms();
        let n = on_pool!(self, |p| {
            let mut tx = p.begin().await?;
            let n = sqlx::query(
                "UPDATE projects SET name = $1, allowed_models = $2, default_limits = $3, cors_origins = $6 \
                 WHERE org_id = $4 AND id = $5",
            )
            .bind(&settings.name)
            .bind(&models)
            .bind(&limits)
            .bind(org.to_string())
            .bind(id.to_string())
            .bind(&cors)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            // capability tokens carry the project's allow-list in their cached standing too
            mark_credentials_changed!(tx, now, org, Some(id)).await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(n)
        })?;
        Ok(n > 0)
    }
}
