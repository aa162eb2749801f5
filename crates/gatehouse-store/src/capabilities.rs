//! Capability tokens: each org's sealed root keys (versioned) and the registry of tokens
//! (root and delegated) that verification consults for revocation and the delegation tree.

use gatehouse_core::{OrgId, ProjectId, TokenId};

use crate::{Error, Store, now_ms};

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct RootKeyRow {
    pub org_id: String,
    pub version: i64,
    /// Sealed under the master key; the associated data names org and version.
    pub sealed: String,
    pub created_at: i64,
    pub retire_at: Option<i64>,
    pub superseded_at: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct CapabilityRow {
    pub id: String,
    pub org_id: String,
    pub project_id: String,
    pub parent_id: Option<String>,
    pub key_version: i64,
    pub name: String,
    pub caveats: String,
    pub minted_by: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

/// What the verifier needs to know about one token of a presented chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapabilityStatus {
    pub org: OrgId,
    pub project: ProjectId,
    pub parent: Option<TokenId>,
    pub expires_at: i64,
    /// Revoked, or its org or project disabled.
    pub usable: bool,
    /// The project's model allow-list (a token never reaches past it).
    pub project_models: Option<Vec<String>>,
    /// The project's CORS origins on the data plane.
    pub project_cors: Option<Vec<String>>,
}

#[derive(sqlx::FromRow)]
struct RawStatus {
    org_id: String,
    project_id: String,
    parent_id: Option<String>,
    expires_at: i64,
    revoked_at: Option<i64>,
    org_disabled: Option<i64>,
    project_disabled: Option<i64>,
    project_models: Option<String>,
    project_cors: Option<String>,
}

impl Store {
    /// Root key versions of an org, newest first.
    pub async fn root_keys(&self, org: OrgId) -> Result<Vec<RootKeyRow>, Error> {
        Ok(fetch!(self, query_as, fetch_all,
            "SELECT org_id, version, sealed, created_at, retire_at, superseded_at FROM capability_root_keys \
             WHERE org_id = $1 ORDER BY version DESC";
            org.to_string()
        )?)
    }

    pub async fn root_key(&self, org: OrgId, version: i64) -> Result<Option<RootKeyRow>, Error> {
        Ok(fetch!(self, query_as, fetch_optional,
            "SELECT org_id, version, sealed, created_at, retire_at, superseded_at FROM capability_root_keys \
             WHERE org_id = $1 AND version = $2";
            org.to_string(), version
        )?)
    }

    /// Inserts a root key version unless that version exists (another replica won the race;
    /// the caller re-reads). Returns whether this call inserted it.
    pub async fn insert_root_key(&self, row: &RootKeyRow) -> Result<bool, Error> {
        let n = execute!(self,
            "INSERT INTO capability_root_keys (org_id, version, sealed, created_at, retire_at, superseded_at) \
             VALUES ($1, $2, $3, $4, NULL, NULL) ON CONFLICT (org_id, version) DO NOTHING";
            &row.org_id, row.version, &row.sealed, row.created_at
        )?;
        Ok(n == 1)
    }

    /// Marks every older version superseded and sets when it stops verifying (`retire_at`;
    /// a version already retiring earlier keeps its earlier end).
    pub async fn supersede_root_keys(&self, org: OrgId, below: i64, retire_at: i64) -> Result<(), Error> {
        let now = now_ms();
        on_pool!(self, |p| sqlx::query(
            "UPDATE capability_root_keys SET superseded_at = COALESCE(superseded_at, $3), \
             retire_at = CASE WHEN retire_at IS NULL OR retire_at > $4 THEN $4 ELSE retire_at END \
             WHERE org_id = $1 AND version < $2"
        )
        .bind(org.to_string())
        .bind(below)
        .bind(now)
        .bind(retire_at)
        .execute(p)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    /// The latest expiry of the live tokens minted under a key version (for a grace period
    /// that lasts exactly until the old tokens expire).
    pub async fn latest_expiry_under(&self, org: OrgId, version: i64) -> Result<Option<i64>, Error> {
        Ok(fetch!(self, query_scalar, fetch_one,
            "SELECT MAX(expires_at) FROM capability_tokens WHERE org_id = $1 AND key_version <= $2 \
             AND revoked_at IS NULL";
            org.to_string(), version
        )?)
    }

    pub async fn insert_capability(&self, row: &CapabilityRow) -> Result<(), Error> {
        on_pool!(self, |p| sqlx::query(
            "INSERT INTO capability_tokens (id, org_id, project_id, parent_id, key_version, name, caveats, minted_by, \
             created_at, expires_at, revoked_at, changed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, $9)"
        )
        .bind(&row.id)
        .bind(&row.org_id)
        .bind(&row.project_id)
        .bind(&row.parent_id)
        .bind(row.key_version)
        .bind(&row.name)
        .bind(&row.caveats)
        .bind(&row.minted_by)
        .bind(row.created_at)
        .bind(row.expires_at)
        .execute(p)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    /// Scoped by org: another tenant's token is not found.
    pub async fn capability(&self, org: OrgId, id: TokenId) -> Result<Option<CapabilityRow>, Error> {
        let q = "SELECT id, org_id, project_id, parent_id, key_version, name, caveats, minted_by, created_at, \
                 expires_at, revoked_at FROM capability_tokens WHERE org_id = $1 AND id = $2";
        Ok(fetch!(self, query_as, fetch_optional, q; org.to_string(), id.to_string())?)
    }

    /// Capability tokens of an org, newest first (ids are time-ordered), older than `before`
    /// when given, at most `limit`.
    pub async fn list_capabilities(
        &self,
        org: OrgId,
        before: Option<TokenId>,
        limit: u32,
    ) -> Result<Vec<CapabilityRow>, Error> {
        let q = "SELECT id, org_id, project_id, parent_id, key_version, name, caveats, minted_by, created_at, \
                 expires_at, revoked_at FROM capability_tokens WHERE org_id = $1 AND ($2 IS NULL OR id < $2) \
                 ORDER BY id DESC LIMIT $3";
        Ok(fetch!(self, query_as, fetch_all, q; org.to_string(), before.map(|b| b.to_string()), i64::from(limit))?)
    }

    /// Revokes a token and its whole delegation subtree in one statement; returns how many
    /// were newly revoked (`None`: no such token in this org).
    pub async fn revoke_capability_tree(&self, org: OrgId, id: TokenId) -> Result<Option<u64>, Error> {
        if self.capability(org, id).await?.is_none() {
            return Ok(None);
        }
        let now = now_ms();
        let n = execute!(self,
            "WITH RECURSIVE sub(id) AS (SELECT id FROM capability_tokens WHERE id = $1 AND org_id = $2 \
             UNION SELECT t.id FROM capability_tokens t JOIN sub ON t.parent_id = sub.id) \
             UPDATE capability_tokens SET revoked_at = $3, changed_at = $3 \
             WHERE id IN (SELECT id FROM sub) AND revoked_at IS NULL";
            id.to_string(), org.to_string(), now
        )?;
        Ok(Some(n))
    }

    /// The verifier's view of one token (joined with its org's and project's state).
    pub async fn capability_status(&self, id: TokenId) -> Result<Option<CapabilityStatus>, Error> {
        let raw: Option<RawStatus> = fetch!(self, query_as, fetch_optional,
            "SELECT t.org_id, t.project_id, t.parent_id, t.expires_at, t.revoked_at, \
             o.disabled_at AS org_disabled, pr.disabled_at AS project_disabled, pr.allowed_models AS project_models, \
             pr.cors_origins AS project_cors FROM capability_tokens t \
             JOIN organizations o ON o.id = t.org_id JOIN projects pr ON pr.id = t.project_id WHERE t.id = $1";
            id.to_string()
        )?;
        raw.map(|r| {
            Ok(CapabilityStatus {
                org: OrgId::parse(&r.org_id).ok_or(Error::Corrupt("capability_tokens.org_id"))?,
                project: ProjectId::parse(&r.project_id).ok_or(Error::Corrupt("capability_tokens.project_id"))?,
                parent: match r.parent_id {
                    None => None,
                    Some(p) => Some(TokenId::parse(&p).ok_or(Error::Corrupt("capability_tokens.parent_id"))?),
                },
                expires_at: r.expires_at,
                usable: r.revoked_at.is_none() && r.org_disabled.is_none() && r.project_disabled.is_none(),
                project_models: crate::records::json_column(r.project_models, "projects.allowed_models")?,
                project_cors: crate::records::json_column(r.project_cors, "projects.cors_origins")?,
            })
        })
        .transpose()
    }

    /// Ids of tokens whose standing changed at or after `since_ms` (the revocation feed).
    pub async fn capabilities_changed_since(&self, since_ms: i64) -> Result<Vec<TokenId>, Error> {
        let ids: Vec<String> = fetch!(self, query_scalar, fetch_all,
            "SELECT id FROM capability_tokens WHERE changed_at >= $1";
            since_ms
        )?;
        ids.iter().map(|i| TokenId::parse(i).ok_or(Error::Corrupt("capability_tokens.id"))).collect()
    }
}
