//! The MCP door of the data plane (docs/MCP.md): `/mcp/{server}` speaks MCP's Streamable HTTP
//! transport to clients and fronts the upstream MCP server of that name that the caller's
//! project, org or the platform registered. Every message passes the same kind of ordered steps
//! as a model request ([`gateway`] reads top to bottom): authenticate, parse, authorize (per tool,
//! resource and prompt), route, provider, meter & audit.
//!
//! Policy (the tool policies, the server registry) lives in `gatehouse_gates::mcp`; this crate
//! moves messages. It never forwards a client credential or a client header the server does not
//! need, and never passes a server's answer on unread: what a caller may not use is removed from
//! listings.

mod counters;
mod gateway;
pub mod jsonrpc;
pub mod sessions;
mod upstream;

use std::sync::Arc;

use axum::Router;
use axum::routing::post;
use gatehouse_config::mcp::McpSettings;
use gatehouse_egress::AddressPolicy;
use gatehouse_gates::authenticate::AuthenticateGate;
use gatehouse_gates::guardrails::Policies;
use gatehouse_gates::limits::LimitsBackend;
use gatehouse_gates::mcp::{McpPolicies, McpServers};
use gatehouse_gates::meter::AuditHook;

pub use gateway::run_sweeper;

/// What the MCP door shares across messages. Cloned per message: one reference count.
#[derive(Clone)]
pub struct McpState(Arc<Inner>);

pub struct Inner {
    pub authenticate: AuthenticateGate,
    pub audit: AuditHook,
    pub servers: Arc<McpServers>,
    pub policies: Arc<McpPolicies>,
    /// The guardrail policies of every scope (the same as the model path's).
    pub guardrails: Arc<Policies>,
    /// Rates and budgets (the same store as the model path's).
    pub limits: Arc<LimitsBackend>,
    pub sessions: sessions::Sessions,
    /// Connects only where the outbound-address policy allows (no redirects, no proxy).
    pub client: reqwest::Client,
    pub egress: Arc<AddressPolicy>,
    pub settings: McpSettings,
}

impl std::ops::Deref for McpState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// The parts the binary wires in.
pub struct Parts {
    pub authenticate: AuthenticateGate,
    pub audit: AuditHook,
    pub servers: Arc<McpServers>,
    pub policies: Arc<McpPolicies>,
    pub guardrails: Arc<Policies>,
    pub limits: Arc<LimitsBackend>,
    pub settings: McpSettings,
}

impl McpState {
    pub fn new(p: Parts) -> Result<McpState, reqwest::Error> {
        let egress = Arc::new(AddressPolicy { allow: p.settings.allow_private_targets.clone() });
        let client = gatehouse_egress::client(egress.clone())
            .connect_timeout(std::time::Duration::from_secs(5))
            .pool_idle_timeout(std::time::Duration::from_secs(60))
            .user_agent(concat!("gatehouse/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(McpState(Arc::new(Inner {
            authenticate: p.authenticate,
            audit: p.audit,
            servers: p.servers,
            policies: p.policies,
            guardrails: p.guardrails,
            limits: p.limits,
            sessions: sessions::Sessions::new(p.settings.clone()),
            client,
            egress,
            settings: p.settings,
        })))
    }
}

/// `/mcp/{server}`: POST a message, DELETE a session; GET (a server-to-client stream) is not
/// offered (405).
pub fn router(state: McpState) -> Router {
    Router::new()
        .route("/mcp/{server}", post(gateway::post).delete(gateway::delete).get(gateway::get))
        .with_state(state)
}
