//! Stored provider credentials (docs/SECURITY.md, "Provider credentials"): sealed per tenant
//! under its data key (envelope encryption), in versions with an overlap window. This is the
//! writing side; the values are never returned, only a fingerprint.

use std::sync::Arc;

use gatehouse_core::{CredentialId, OrgId, ProjectId};
use gatehouse_security::seal::{Envelope, SealError, Sealer};
use gatehouse_store::{CredentialRow, Store};
use secrecy::SecretString;

/// Why a credential could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("store: {0}")]
    Store(#[from] gatehouse_store::Error),
    #[error("sealing: {0}")]
    Seal(#[from] SealError),
}

pub struct Vault {
    store: Store,
    envelope: Envelope,
}

/// The tenant a scope's secrets are sealed for: the org, or the platform.
fn tenant(org: Option<OrgId>) -> String {
    org.map_or_else(|| "platform".to_owned(), |o| o.to_string())
}

/// What a credential's seal is bound to: its tenant, scope, provider, id and version. A sealed
/// value copied to another row, scope or tenant does not open.
pub fn record(row: &CredentialRow) -> String {
    let tenant = if row.org_id.is_empty() { "platform" } else { &row.org_id };
    format!("credential:{tenant}:{}:{}:{}:{}", row.project_id, row.provider, row.id, row.version)
}

impl Vault {
    pub fn new(store: Store, envelope: Envelope) -> Vault {
        Vault { store, envelope }
    }

    /// An org's current data key, for sealing its other data (response cache entries):
    /// (version, sealer).
    pub async fn org_key(&self, org: OrgId) -> Result<(i64, Sealer), VaultError> {
        self.data_key(&tenant(Some(org))).await
    }

    /// A tenant's current data key (`None`: the platform's), for sealing what it owns beside
    /// provider credentials (MCP servers' credentials): (version, sealer).
    pub async fn tenant_key(&self, org: Option<OrgId>) -> Result<(i64, Sealer), VaultError> {
        self.data_key(&tenant(org)).await
    }

    /// One version of a tenant's data key (`None`: the platform's).
    pub async fn tenant_key_version(&self, org: Option<OrgId>, version: i64) -> Result<Sealer, VaultError> {
        let t = tenant(org);
        let wrapped = self.store.data_key_version(&t, version).await?.ok_or(SealError::Open)?;
        Ok(self.envelope.open_data_key(&t, u32::try_from(version).unwrap_or(0), &wrapped)?)
    }

    /// One version of an org's data key, for opening what was sealed under it.
    pub async fn org_key_version(&self, org: OrgId, version: i64) -> Result<Sealer, VaultError> {
        self.tenant_key_version(Some(org), version).await
    }

    /// The tenant's current data key (made on first use; two replicas racing keep the first).
    async fn data_key(&self, tenant: &str) -> Result<(i64, Sealer), VaultError> {
        if let Some((v, wrapped)) = self.store.data_key(tenant).await? {
            return Ok((v, self.envelope.open_data_key(tenant, u32::try_from(v).unwrap_or(0), &wrapped)?));
        }
        let wrapped = self.envelope.new_data_key(tenant, 1)?;
        self.store.insert_data_key(tenant, 1, &wrapped).await?;
        let (v, wrapped) = self.store.data_key(tenant).await?.ok_or(SealError::Open)?;
        Ok((v, self.envelope.open_data_key(tenant, u32::try_from(v).unwrap_or(0), &wrapped)?))
    }

    /// Seals and stores a new version of `provider`'s credential at the scope; older versions
    /// keep serving for `overlap_ms`.
    pub async fn store(
        &self,
        org: Option<OrgId>,
        project: Option<ProjectId>,
        provider: &str,
        secret: &SecretString,
        actor: &str,
        overlap_ms: i64,
    ) -> Result<CredentialRow, VaultError> {
        let tenant = tenant(org);
        let (key_version, sealer) = self.data_key(&tenant).await?;
        let mut row = CredentialRow {
            id: CredentialId::generate().to_string(),
            org_id: org.map(|o| o.to_string()).unwrap_or_default(),
            project_id: project.map(|p| p.to_string()).unwrap_or_default(),
            provider: provider.to_owned(),
            version: self.store.next_credential_version(org, project, provider).await?,
            key_version,
            sealed: String::new(),
            hint: gatehouse_security::seal::fingerprint(secret),
            created_at: gatehouse_store::now_ms(),
            created_by: actor.to_owned(),
            retire_at: None,
        };
        row.sealed = sealer.seal(&record(&row), secret)?;
        self.store.insert_credential(&row, overlap_ms).await?;
        Ok(row)
    }

    /// Opens a stored credential (for the data plane; bound to its row, scope and tenant).
    pub async fn open(&self, row: &CredentialRow) -> Result<SecretString, VaultError> {
        let tenant = if row.org_id.is_empty() { "platform".to_owned() } else { row.org_id.clone() };
        let wrapped = self.store.data_key_version(&tenant, row.key_version).await?.ok_or(SealError::Open)?;
        let sealer = self.envelope.open_data_key(&tenant, u32::try_from(row.key_version).unwrap_or(0), &wrapped)?;
        Ok(sealer.open(&record(row), &row.sealed)?)
    }
}

/// Shared by the control plane (writes) and, later, the data plane (reads).
pub type SharedVault = Arc<Vault>;

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[tokio::test]
    async fn a_sealed_credential_opens_only_in_its_own_row_and_tenant() {
        let t = gatehouse_testkit::stores::sqlite().await;
        let master = gatehouse_security::MasterKey::from_bytes([3; 32]);
        let vault = Vault::new(t.store.clone(), Envelope::new(&master).unwrap_or_else(|e| panic!("{e}")));
        let (a, b) = (
            t.store.create_org("va").await.unwrap_or_else(|e| panic!("{e}")),
            t.store.create_org("vb").await.unwrap_or_else(|e| panic!("{e}")),
        );
        let secret = SecretString::from("sk-org-a-canary-1234".to_owned());
        let row = vault.store(Some(a), None, "openai", &secret, "test", 0).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(!row.sealed.contains("canary") && !row.hint.contains("canary") && row.hint.starts_with("sha256:"));
        assert_eq!(vault.open(&row).await.unwrap_or_else(|e| panic!("{e}")).expose_secret(), "sk-org-a-canary-1234");
        // the same sealed value in another row, version, scope or org does not open
        let moved = |f: &dyn Fn(&mut CredentialRow)| {
            let mut r = row.clone();
            f(&mut r);
            r
        };
        let b_row = vault
            .store(Some(b), None, "openai", &SecretString::from("sk-b".to_owned()), "test", 0)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        for (what, r) in [
            ("another id", moved(&|r| r.id = CredentialId::generate().to_string())),
            ("another version", moved(&|r| r.version = 2)),
            ("another project", moved(&|r| r.project_id = ProjectId::generate().to_string())),
            ("another provider", moved(&|r| r.provider = "anthropic".into())),
            ("another org", moved(&|r| r.org_id = b.to_string())),
            ("the platform", moved(&|r| r.org_id = String::new())),
            ("another org's row", CredentialRow { sealed: row.sealed.clone(), ..b_row.clone() }),
        ] {
            assert!(vault.open(&r).await.is_err(), "{what}");
        }
        // under another master key nothing opens
        let other = Vault::new(
            t.store.clone(),
            Envelope::new(&gatehouse_security::MasterKey::from_bytes([4; 32])).unwrap_or_else(|e| panic!("{e}")),
        );
        assert!(other.open(&row).await.is_err());

        // and a table read under that other master keeps the org's credential unopened: it
        // still stands for its scope (the org's requests fail closed), the platform's does not
        // take its place
        vault
            .store(None, None, "openai", &SecretString::from("sk-platform".to_owned()), "test", 0)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let table = CredentialTable::default();
        table.load(&other).await.unwrap_or_else(|e| panic!("{e}"));
        let resolved = table.resolve(a, ProjectId::generate(), "openai").unwrap_or_else(|| panic!("a's scope"));
        assert_eq!(&*resolved.id, row.id.as_str());
        assert!(resolved.secret.is_none(), "not opened, and not replaced by a wider credential");
        assert!(table.has_own(a, ProjectId::generate(), "openai"));
    }
}

/// A stored credential opened for the data plane.
pub struct Opened {
    pub id: Box<str>,
    pub version: i64,
    /// `None`: stored but it does not open here (sealed under a master key this process does
    /// not hold, or moved to another row). It still stands for its scope, so the scope's
    /// requests to the provider fail closed instead of falling back to a wider credential.
    pub secret: Option<SecretString>,
}

/// Per provider: the newest serving credential of each scope, `(org, project)` (`None`: the
/// platform's, an org's own).
type ByScope = std::collections::HashMap<(Option<OrgId>, Option<ProjectId>), Arc<Opened>>;

/// Every serving stored credential, opened, in memory: the request path looks one up (two or
/// three hash probes when any exist; one atomic load when none do) and never decrypts. Re-read
/// on a short poll; a credential already opened is kept, not opened again.
#[derive(Default)]
pub struct CredentialTable {
    table: arc_swap::ArcSwap<std::collections::HashMap<Box<str>, ByScope>>,
    reload: tokio::sync::Mutex<()>,
}

impl CredentialTable {
    /// The credential a request of `org`'s `project` uses for `provider`: the project's own,
    /// else the org's, else the platform's; `None`: the provider's configured one.
    pub fn resolve(&self, org: OrgId, project: ProjectId, provider: &str) -> Option<Arc<Opened>> {
        let table = self.table.load();
        let by_scope = table.get(provider)?;
        by_scope
            .get(&(Some(org), Some(project)))
            .or_else(|| by_scope.get(&(Some(org), None)))
            .or_else(|| by_scope.get(&(None, None)))
            .cloned()
    }

    /// Whether the tenant has a stored credential of its own (its project's or its org's, not
    /// the platform's) for `provider`.
    pub fn has_own(&self, org: OrgId, project: ProjectId, provider: &str) -> bool {
        let table = self.table.load();
        table
            .get(provider)
            .is_some_and(|s| s.contains_key(&(Some(org), Some(project))) || s.contains_key(&(Some(org), None)))
    }

    /// Reads the serving credentials and opens the new ones. One that does not open (sealed
    /// under another master key, moved to another row) is logged and kept unopened: its scope
    /// is refused that provider rather than served with the platform's or the configured key.
    pub async fn load(&self, vault: &Vault) -> Result<(), gatehouse_store::Error> {
        let _one_at_a_time = self.reload.lock().await;
        let rows = vault.store.serving_credentials(gatehouse_store::now_ms()).await?;
        let old = self.table.load_full();
        let known: std::collections::HashMap<&str, &Arc<Opened>> =
            old.values().flat_map(|m| m.values()).map(|o| (&*o.id, o)).collect();
        let mut table: std::collections::HashMap<Box<str>, ByScope> = std::collections::HashMap::new();
        // newest version first within each scope: the first one seen serves
        for r in &rows {
            let scope = (OrgId::parse(&r.org_id), ProjectId::parse(&r.project_id));
            let by_scope = table.entry(r.provider.as_str().into()).or_default();
            if by_scope.contains_key(&scope) {
                continue;
            }
            let opened = match known.get(r.id.as_str()) {
                Some(o) => Arc::clone(o),
                None => match vault.open(r).await {
                    Ok(secret) => {
                        Arc::new(Opened { id: r.id.as_str().into(), version: r.version, secret: Some(secret) })
                    }
                    Err(e) => {
                        tracing::error!(credential = %r.id, error = %e, "stored credential does not open; its scope's requests to the provider are refused");
                        Arc::new(Opened { id: r.id.as_str().into(), version: r.version, secret: None })
                    }
                },
            };
            by_scope.insert(scope, opened);
        }
        self.table.store(Arc::new(table));
        Ok(())
    }

    /// Keeps this replica's table in step with the store.
    pub async fn run_poller(self: Arc<Self>, vault: Arc<Vault>, every: std::time::Duration) {
        gatehouse_store::poll::reload("provider credentials", every, || self.load(&vault)).await;
    }
}
