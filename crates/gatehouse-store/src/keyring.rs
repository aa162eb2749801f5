//! What a master-key rotation touches (issue #19): the pinned root secrets, and every column
//! that holds a value sealed under a master-derived key. Each value is re-sealed by itself
//! with a compare-and-set, so a rotation killed at any point leaves every row either under the
//! old master or the new one, never lost, and running it again finishes the rest.

use crate::{Error, Store};

/// A column of values sealed under a master-derived key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SealedColumn {
    /// `root_secrets.sealed`: key hashing peppers, the checkpoint seed.
    RootSecrets,
    /// `data_keys.wrapped`: tenants' data keys (provider credentials are sealed under those).
    DataKeys,
    /// `capability_root_keys.sealed`: orgs' macaroon root keys.
    CapabilityRootKeys,
    /// `webhooks.secret`: generic webhooks' signing secrets.
    WebhookSecrets,
}

impl SealedColumn {
    pub const ALL: [SealedColumn; 4] = [
        SealedColumn::RootSecrets,
        SealedColumn::DataKeys,
        SealedColumn::CapabilityRootKeys,
        SealedColumn::WebhookSecrets,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SealedColumn::RootSecrets => "root secrets",
            SealedColumn::DataKeys => "tenant data keys",
            SealedColumn::CapabilityRootKeys => "capability root keys",
            SealedColumn::WebhookSecrets => "webhook secrets",
        }
    }
}

/// One sealed value and the row it belongs to: `owner` is the purpose, tenant, org or (for a
/// platform webhook) empty; `id` the webhook id; `version` the key version (0 where none).
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct SealedValue {
    pub owner: String,
    pub id: String,
    pub version: i64,
    pub sealed: String,
}

impl Store {
    /// A pinned root secret, sealed.
    pub async fn root_secret(&self, purpose: &str) -> Result<Option<String>, Error> {
        Ok(fetch!(self, query_scalar, fetch_optional, "SELECT sealed FROM root_secrets WHERE purpose = $1"; purpose)?)
    }

    /// Pins a root secret unless one is already pinned (two replicas starting together keep
    /// the first; callers read it back).
    pub async fn insert_root_secret(&self, purpose: &str, sealed: &str) -> Result<(), Error> {
        execute!(self,
            "INSERT INTO root_secrets (purpose, sealed) VALUES ($1, $2) ON CONFLICT (purpose) DO NOTHING";
            purpose, sealed)?;
        Ok(())
    }

    /// Every value in one sealed column (the rotation's work list; a few rows per tenant).
    pub async fn sealed_values(&self, column: SealedColumn) -> Result<Vec<SealedValue>, Error> {
        Ok(match column {
            SealedColumn::RootSecrets => fetch!(
                self,
                query_as,
                fetch_all,
                "SELECT purpose AS owner, '' AS id, CAST(0 AS BIGINT) AS version, sealed FROM root_secrets \
                 ORDER BY purpose"
            )?,
            SealedColumn::DataKeys => fetch!(
                self,
                query_as,
                fetch_all,
                "SELECT tenant AS owner, '' AS id, version, wrapped AS sealed FROM data_keys ORDER BY tenant, version"
            )?,
            SealedColumn::CapabilityRootKeys => fetch!(
                self,
                query_as,
                fetch_all,
                "SELECT org_id AS owner, '' AS id, version, sealed FROM capability_root_keys \
                 ORDER BY org_id, version"
            )?,
            SealedColumn::WebhookSecrets => fetch!(
                self,
                query_as,
                fetch_all,
                "SELECT COALESCE(org_id, '') AS owner, id, CAST(0 AS BIGINT) AS version, secret AS sealed \
                 FROM webhooks WHERE secret IS NOT NULL ORDER BY id"
            )?,
        })
    }

    /// Replaces one sealed value if it is still `value.sealed` (compare-and-set): returns
    /// whether it was replaced (false: another rotation got there first, or the row is gone).
    pub async fn reseal(&self, column: SealedColumn, value: &SealedValue, sealed: &str) -> Result<bool, Error> {
        let v = value;
        let n = match column {
            SealedColumn::RootSecrets => execute!(self,
                "UPDATE root_secrets SET sealed = $1 WHERE purpose = $2 AND sealed = $3"; sealed, &v.owner, &v.sealed)?,
            SealedColumn::DataKeys => execute!(self,
                "UPDATE data_keys SET wrapped = $1 WHERE tenant = $2 AND version = $3 AND wrapped = $4";
                sealed, &v.owner, v.version, &v.sealed)?,
            SealedColumn::CapabilityRootKeys => execute!(self,
                "UPDATE capability_root_keys SET sealed = $1 WHERE org_id = $2 AND version = $3 AND sealed = $4";
                sealed, &v.owner, v.version, &v.sealed)?,
            SealedColumn::WebhookSecrets => execute!(self,
                "UPDATE webhooks SET secret = $1 WHERE id = $2 AND secret = $3"; sealed, &v.id, &v.sealed)?,
        };
        Ok(n > 0)
    }
}
