//! The control plane's handle on the data plane's shared services: named operations, nothing
//! else. The control plane sits beside the data plane: it never sees the runtime snapshot
//! (gates, upstreams), only what it needs to validate and apply an administrative change here
//! at once (other replicas follow through their store polls).

use std::sync::Arc;

use gatehouse_core::{OrgId, ProjectId};
use gatehouse_guardrails::{PolicySpec, SpecError};
use gatehouse_limits::{Standing, Unavailable};
use gatehouse_security::KeyDigest;
use gatehouse_store::Store;

use crate::authenticate::KeyVerifier;
use crate::credentials::{Vault, VaultError};
use crate::guardrails::Policies;
use crate::limits::LimitsBackend;
use crate::mcp::{McpPolicies, McpServers, Registration};
use crate::route::{DeploymentStatus, RouteTable};
use crate::tenant_routes::{RoutingRules, RoutingSpec};

/// The route table of the live snapshot, whichever it is: which models are served, and the
/// state of their deployments.
pub type LiveRoutes = Arc<dyn Fn() -> Arc<RouteTable> + Send + Sync>;

#[derive(Clone)]
pub struct ControlHandle {
    store: Store,
    routes: LiveRoutes,
    guardrails: Arc<Policies>,
    limits: Arc<LimitsBackend>,
    routing: Arc<RoutingRules>,
    keys: Arc<KeyVerifier>,
    vault: Arc<Vault>,
    mcp: Arc<McpControl>,
}

/// What the control plane needs of the MCP gateway: its tables (to apply a change here at once)
/// and the bounds and outbound-address policy a registration is checked against.
#[derive(Default)]
pub struct McpControl {
    pub servers: Arc<McpServers>,
    pub policies: Arc<McpPolicies>,
    pub egress: gatehouse_egress::AddressPolicy,
    pub settings: gatehouse_config::mcp::McpSettings,
}

/// Why a server could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("url refused: {0}")]
    Url(#[from] gatehouse_egress::TargetError),
    #[error(transparent)]
    Vault(#[from] VaultError),
}

impl ControlHandle {
    pub fn new(
        store: Store,
        routes: LiveRoutes,
        guardrails: Arc<Policies>,
        limits: Arc<LimitsBackend>,
        routing: Arc<RoutingRules>,
        keys: Arc<KeyVerifier>,
        vault: Arc<Vault>,
    ) -> ControlHandle {
        ControlHandle { store, routes, guardrails, limits, routing, keys, vault, mcp: Arc::default() }
    }

    /// The MCP gateway's tables and bounds (without them, no server can be registered).
    pub fn with_mcp(mut self, mcp: Arc<McpControl>) -> ControlHandle {
        self.mcp = mcp;
        self
    }

    /// The MCP gateway's bounds.
    pub fn mcp_settings(&self) -> &gatehouse_config::mcp::McpSettings {
        &self.mcp.settings
    }

    /// Checks the URL (outbound-address policy), seals the credential and a new identity key,
    /// stores the server and applies it here; returns the row and the identity key (shown once).
    pub async fn register_mcp_server(
        &self,
        reg: Registration,
    ) -> Result<(gatehouse_store::McpServerRow, secrecy::SecretString), RegisterError> {
        self.mcp.egress.check_at_save(&reg.row.url).await?;
        let out = McpServers::register(&self.vault, &self.store, reg).await?;
        self.reload_mcp_servers().await.map_err(VaultError::from)?;
        Ok(out)
    }

    /// Re-reads the registered MCP servers now.
    pub async fn reload_mcp_servers(&self) -> Result<(), gatehouse_store::Error> {
        self.mcp.servers.load(&self.vault, &self.store).await
    }

    /// An org's or a project's own MCP policy.
    pub fn mcp_policy(&self, org: OrgId, project: Option<ProjectId>) -> Option<Arc<crate::mcp::McpSpec>> {
        self.mcp.policies.spec(org, project)
    }

    /// Re-reads the stored MCP policies now.
    pub async fn reload_mcp_policies(&self) -> Result<(), gatehouse_store::Error> {
        self.mcp.policies.load(&self.store).await
    }

    /// Whether every name is a model the gateway serves now, by canonical name: an allow-list
    /// with a typo or an alias would silently allow nothing.
    pub fn serves_models(&self, names: &[String]) -> bool {
        let table = (self.routes)();
        names.iter().all(|m| table.serves(m))
    }

    /// Whether a routing spec names only providers, regions and models the live config has.
    pub fn check_routing_policy(&self, spec: &RoutingSpec) -> Result<(), &'static str> {
        spec.check(&(self.routes)())
    }

    /// The deployments a request of `org` (and `project`) may be routed to now, under the
    /// stored rules of both scopes.
    pub fn routable(&self, org: OrgId, project: Option<ProjectId>) -> Vec<DeploymentStatus> {
        let all = (self.routes)().deployment_status(crate::route::now_ms());
        all.into_iter()
            .filter(|d| self.routing.allows_scope(org, project, &d.model, &d.provider, d.region.as_deref()))
            .collect()
    }

    /// Re-reads the stored routing policies now.
    pub async fn reload_routing_policies(&self) -> Result<(), gatehouse_store::Error> {
        self.routing.load(&self.store).await
    }

    /// Whether a provider serves some model of the live config (by its configured name).
    pub fn serves_provider(&self, name: &str) -> bool {
        (self.routes)().has_provider(name)
    }

    /// Whether a provider signs with AWS SigV4 (its stored credentials are AWS key pairs).
    pub fn signs_sigv4(&self, name: &str) -> bool {
        (self.routes)().signs_sigv4(name)
    }

    /// Seals and stores a new version of a provider credential (docs/SECURITY.md).
    pub async fn store_credential(
        &self,
        org: Option<OrgId>,
        project: Option<ProjectId>,
        provider: &str,
        secret: &secrecy::SecretString,
        actor: &str,
        overlap_ms: i64,
    ) -> Result<gatehouse_store::CredentialRow, VaultError> {
        self.vault.store(org, project, provider, secret, actor, overlap_ms).await
    }

    /// Every configured deployment with its breaker's state now.
    pub fn deployments(&self) -> Vec<DeploymentStatus> {
        (self.routes)().deployment_status(crate::route::now_ms())
    }

    /// The guardrail policy in force for a scope, after layering.
    pub fn guardrail_policy(&self, org: OrgId, project: Option<ProjectId>) -> PolicySpec {
        self.guardrails.effective(org, project)
    }

    /// Whether a spec compiles on top of what lies below the scope.
    pub fn check_guardrail_policy(
        &self,
        org: OrgId,
        project: Option<ProjectId>,
        spec: &PolicySpec,
    ) -> Result<(), SpecError> {
        self.guardrails.check(org, project, spec).map(|_| ())
    }

    /// Re-reads the stored guardrail policies now (after a change through this replica).
    pub async fn reload_guardrail_policies(&self) -> Result<(), gatehouse_store::Error> {
        self.guardrails.load(&self.store).await
    }

    /// Re-reads the stored limit policies now.
    pub async fn reload_limit_policies(&self) -> Result<(), gatehouse_store::Error> {
        self.limits.policies.load(&self.store).await
    }

    /// A budget's spend and reservations this period.
    pub async fn budget_standing(&self, key: &str) -> Result<Standing, Unavailable> {
        self.limits.limits.standing(key).await
    }

    /// Forgets a key this replica verified (revoked or retired).
    pub fn evict_key(&self, digest: &KeyDigest) {
        self.keys.evict(digest);
    }
}
