//! Federated (OIDC) callers on the data plane: a verified JWT's identity becomes a principal
//! of the org and project its claims name, with the scopes its roles map to. Org and project
//! names are resolved through a one-second cache, so disabling either reaches JWT callers
//! within a second without a store round trip per request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse_core::scope::{ScopePattern, ScopeSet};
use gatehouse_core::{Credential, Denial, DenyCode, Grant, HasDenyCode, OrgId, Principal, ProjectId};
use gatehouse_oidc::{Federation, Identity, Plane};
use gatehouse_store::Store;
use quick_cache::sync::Cache;

const TENANT_TTL: Duration = Duration::from_secs(1);

/// An enabled org and project, with the project's model allow-list.
/// An org and project by name, with the project's model allow-list and CORS origins.
pub type Tenant = (OrgId, ProjectId, Option<Arc<[Box<str>]>>, Option<Arc<[Box<str>]>>);

#[derive(Clone)]
struct TenantEntry {
    /// `None`: no such (enabled) org/project.
    found: Option<Tenant>,
    at: Instant,
}

pub struct FederatedVerifier {
    pub federation: Arc<Federation>,
    store: Store,
    tenants: Cache<(String, String), TenantEntry>,
}

impl FederatedVerifier {
    pub fn new(federation: Arc<Federation>, store: Store) -> FederatedVerifier {
        FederatedVerifier { federation, store, tenants: Cache::new(4096) }
    }

    /// The org and project an identity acts in (enabled ones only).
    pub async fn tenant(&self, org: &str, project: &str) -> Result<Option<Tenant>, Denial> {
        let key = (org.to_owned(), project.to_owned());
        if let Some(e) = self.tenants.get(&key)
            && e.at.elapsed() < TENANT_TTL
        {
            return Ok(e.found);
        }
        self.tenants.remove(&key);
        let store = &self.store;
        let e = self
            .tenants
            .get_or_insert_async(&key, async {
                let unavailable = |_| Denial::new(DenyCode::Unavailable);
                let found = match store.org_by_name(org).await.map_err(unavailable)? {
                    None => None,
                    Some(o) => match store.org(o).await.map_err(unavailable)? {
                        Some(row) if row.disabled_at.is_none() => {
                            match store.project_by_name(o, project).await.map_err(unavailable)? {
                                None => None,
                                Some(p) => match store.project(o, p).await.map_err(unavailable)? {
                                    Some(pr) if pr.disabled_at.is_none() => Some((
                                        o,
                                        p,
                                        pr.allowed_models.map(|m| m.into_iter().map(String::into_boxed_str).collect()),
                                        pr.cors_origins.map(|m| m.into_iter().map(String::into_boxed_str).collect()),
                                    )),
                                    _ => None,
                                },
                            }
                        }
                        _ => None,
                    },
                };
                Ok::<_, Denial>(TenantEntry { found, at: Instant::now() })
            })
            .await?;
        Ok(e.found)
    }

    /// A data-plane principal from a JWT access token.
    pub async fn verify(&self, token: &str) -> Result<Principal, Denial> {
        let id = self.federation.verify(token, Plane::Data).await.map_err(|e| Denial::new(e.deny_code()))?;
        self.principal(&id).await
    }

    pub async fn principal(&self, id: &Identity) -> Result<Principal, Denial> {
        let Some(cfg) = self.federation.issuer(&id.issuer) else {
            return Err(Denial::new(DenyCode::InvalidToken));
        };
        // Every role must be known: an unmapped role is a configuration the operator has not
        // reviewed, and it denies rather than being ignored.
        if id.roles.is_empty() {
            return Err(Denial::new(DenyCode::PermissionDenied));
        }
        let mut patterns = Vec::new();
        for r in &id.roles {
            let scopes = cfg.roles.get(r).ok_or(Denial::new(DenyCode::PermissionDenied))?;
            for s in scopes {
                patterns.push(ScopePattern::parse(s).ok_or(Denial::new(DenyCode::PermissionDenied))?);
            }
        }
        if patterns.is_empty() {
            return Err(Denial::new(DenyCode::PermissionDenied));
        }
        let project = id.project.as_deref().unwrap_or("default");
        let (org, project, models, cors) =
            self.tenant(&id.org, project).await?.ok_or(Denial::new(DenyCode::InvalidToken))?;
        let mut scopes = ScopeSet::unrestricted();
        scopes.restrict(patterns);
        Ok(Principal {
            rpm: None,
            tpm: None,
            org,
            project,
            credential: Credential::Federated { issuer: id.issuer.clone(), subject: id.subject.clone() },
            allowed_models: models,
            cors_origins: cors,
            grant: Some(Arc::new(Grant {
                scopes,
                roles: id.roles.iter().map(|r| r.as_str().into()).collect(),
                ..Grant::default()
            })),
        })
    }
}
