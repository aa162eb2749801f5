//! Stored provider credentials and the tenants' data keys (issue #19): sealed values only; the
//! sealing is gatehouse-security's `Envelope`. A credential belongs to the platform (org ''),
//! an org, or one of its projects (project ''), for one provider, in numbered versions.

use gatehouse_core::{OrgId, ProjectId};

use crate::{Error, Store, now_ms};

/// One stored credential: metadata and the sealed value (which the API never returns).
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct CredentialRow {
    pub id: String,
    /// Empty for the platform's.
    pub org_id: String,
    /// Empty for an org's own (or the platform's).
    pub project_id: String,
    pub provider: String,
    pub version: i64,
    /// The tenant's data key version it is sealed under.
    pub key_version: i64,
    pub sealed: String,
    /// A fingerprint for people: never enough to use.
    pub hint: String,
    pub created_at: i64,
    pub created_by: String,
    /// When an older version stops serving (set when a newer one is stored).
    pub retire_at: Option<i64>,
}

/// The columns of a scope: `(org, project)`, empty for the platform and an org's own.
fn scope_columns(org: Option<OrgId>, project: Option<ProjectId>) -> (String, String) {
    (org.map(|o| o.to_string()).unwrap_or_default(), project.map(|p| p.to_string()).unwrap_or_default())
}

/// `SELECT <every column> FROM provider_credentials ` as a literal (static SQL only).
macro_rules! select_credentials {
    () => {
        "SELECT id, org_id, project_id, provider, version, key_version, sealed, hint, created_at, created_by, \
         retire_at FROM provider_credentials "
    };
}

impl Store {
    /// The tenant's newest data key: (version, wrapped).
    pub async fn data_key(&self, tenant: &str) -> Result<Option<(i64, String)>, Error> {
        Ok(fetch!(self, query_as, fetch_optional,
            "SELECT version, wrapped FROM data_keys WHERE tenant = $1 ORDER BY version DESC LIMIT 1"; tenant)?)
    }

    /// One version of the tenant's data key.
    pub async fn data_key_version(&self, tenant: &str, version: i64) -> Result<Option<String>, Error> {
        Ok(fetch!(self, query_scalar, fetch_optional,
            "SELECT wrapped FROM data_keys WHERE tenant = $1 AND version = $2"; tenant, version)?)
    }

    /// Stores a new data key unless that version exists (two replicas racing keep the first);
    /// returns whether this one was stored.
    pub async fn insert_data_key(&self, tenant: &str, version: i64, wrapped: &str) -> Result<bool, Error> {
        let n = execute!(self,
            "INSERT INTO data_keys (tenant, version, wrapped, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (tenant, version) DO NOTHING"; tenant, version, wrapped, now_ms())?;
        Ok(n > 0)
    }

    /// The version the next credential of this provider at this scope gets.
    pub async fn next_credential_version(
        &self,
        org: Option<OrgId>,
        project: Option<ProjectId>,
        provider: &str,
    ) -> Result<i64, Error> {
        let (o, p) = scope_columns(org, project);
        let max: Option<i64> = fetch!(self, query_scalar, fetch_one,
            "SELECT MAX(version) FROM provider_credentials WHERE org_id = $1 AND project_id = $2 AND provider = $3";
            &o, &p, provider)?;
        Ok(max.unwrap_or(0) + 1)
    }

    /// Stores a new version; the older versions of the same provider at the same scope that are
    /// still serving retire `overlap_ms` from now (a rotation's overlap window). A version taken
    /// meanwhile by another writer is a conflict (`Error` from the unique constraint).
    pub async fn insert_credential(&self, row: &CredentialRow, overlap_ms: i64) -> Result<(), Error> {
        let retire = now_ms().saturating_add(overlap_ms);
        macro_rules! write {
            ($pool:expr) => {{
                let mut tx = $pool.begin().await?;
                sqlx::query(
                    "UPDATE provider_credentials SET retire_at = $1 \
                     WHERE org_id = $2 AND project_id = $3 AND provider = $4 AND (retire_at IS NULL OR retire_at > $1)",
                )
                .bind(retire)
                .bind(&row.org_id)
                .bind(&row.project_id)
                .bind(&row.provider)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO provider_credentials (id, org_id, project_id, provider, version, key_version, sealed, \
                     hint, created_at, created_by, retire_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL)",
                )
                .bind(&row.id)
                .bind(&row.org_id)
                .bind(&row.project_id)
                .bind(&row.provider)
                .bind(row.version)
                .bind(row.key_version)
                .bind(&row.sealed)
                .bind(&row.hint)
                .bind(row.created_at)
                .bind(&row.created_by)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
            }};
        }
        match &self.pool {
            crate::store::Pool::Sqlite(p) => write!(p),
            crate::store::Pool::Postgres(p) => write!(p),
        }
        Ok(())
    }

    /// The credentials of one tenant (`None`: the platform's), newest first, at most 1000.
    pub async fn credentials(&self, org: Option<OrgId>) -> Result<Vec<CredentialRow>, Error> {
        let (o, _) = scope_columns(org, None);
        const SQL: &str =
            concat!(select_credentials!(), "WHERE org_id = $1 ORDER BY provider, project_id, version DESC LIMIT 1000");
        Ok(fetch!(self, query_as, fetch_all, SQL; &o)?)
    }

    /// Every credential still serving at `now_ms` (not retired), for the data plane's table.
    pub async fn serving_credentials(&self, now_ms: i64) -> Result<Vec<CredentialRow>, Error> {
        const SQL: &str = concat!(
            select_credentials!(),
            "WHERE retire_at IS NULL OR retire_at > $1 ORDER BY org_id, project_id, provider, version DESC"
        );
        Ok(fetch!(self, query_as, fetch_all, SQL; now_ms)?)
    }

    /// Deletes one of a tenant's credentials; another tenant's is not found.
    pub async fn delete_credential(&self, org: Option<OrgId>, id: &str) -> Result<bool, Error> {
        let (o, _) = scope_columns(org, None);
        Ok(execute!(self, "DELETE FROM provider_credentials WHERE org_id = $1 AND id = $2"; &o, id)? > 0)
    }
}
