//! THE admin route table: every `/admin/v1` route with the permission it needs, how it is
//! scoped and the audit action it records. The router is built from this table only, so a
//! route cannot exist without its entry; the end-to-end matrix test walks the same table
//! (every route x every role x own org / other org) and docs/ADMIN-API.md lists it.

use axum::routing::{MethodRouter, get};
use gatehouse_audit::EventKind as K;

use crate::rbac::Permission;
use crate::service::{self, Service};
use crate::{
    AdminState, capabilities, credentials, deployments, keys, limits, mcp, members, orgs, policies, sessions, tokens,
    trail, webhooks,
};

/// Which org a route acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// No org: only platform admins.
    Platform,
    /// The operator's own org (platform admins: all orgs).
    Own,
    /// The org named by the request (path `{org}`, `?org=` or the body); another tenant's org
    /// answers 404.
    Org,
}

#[derive(Clone, Copy, Debug)]
pub struct RouteSpec {
    pub method: &'static str,
    pub path: &'static str,
    pub permission: Permission,
    pub scope: Scope,
    /// The audit event every call writes.
    pub action: K,
}

const fn r(method: &'static str, path: &'static str, permission: Permission, scope: Scope, action: K) -> RouteSpec {
    RouteSpec { method, path, permission, scope, action }
}

use Permission as P;
use Scope::{Org, Own, Platform};

pub const ROUTES: &[RouteSpec] = &[
    r("POST", "/admin/v1/orgs", P::OrgCreate, Platform, K::OrgCreate),
    r("GET", "/admin/v1/orgs", P::OrgRead, Own, K::OrgList),
    r("GET", "/admin/v1/orgs/{org}", P::OrgRead, Org, K::OrgRead),
    r("PATCH", "/admin/v1/orgs/{org}", P::OrgUpdate, Org, K::OrgUpdate),
    r("POST", "/admin/v1/orgs/{org}/disable", P::OrgCreate, Org, K::OrgDisable),
    r("POST", "/admin/v1/orgs/{org}/enable", P::OrgCreate, Org, K::OrgEnable),
    r("POST", "/admin/v1/orgs/{org}/members", P::MembershipWrite, Org, K::MemberSet),
    r("GET", "/admin/v1/orgs/{org}/members", P::UserRead, Org, K::MemberList),
    r("GET", "/admin/v1/orgs/{org}/members/{user}", P::UserRead, Org, K::MemberRead),
    r("PATCH", "/admin/v1/orgs/{org}/members/{user}", P::MembershipWrite, Org, K::MemberUpdate),
    r("DELETE", "/admin/v1/orgs/{org}/members/{user}", P::MembershipWrite, Org, K::MemberRemove),
    r("POST", "/admin/v1/orgs/{org}/projects", P::ProjectWrite, Org, K::ProjectCreate),
    r("GET", "/admin/v1/orgs/{org}/projects", P::ProjectRead, Org, K::ProjectList),
    r("GET", "/admin/v1/orgs/{org}/projects/{project}", P::ProjectRead, Org, K::ProjectRead),
    r("PATCH", "/admin/v1/orgs/{org}/projects/{project}", P::ProjectWrite, Org, K::ProjectUpdate),
    r("POST", "/admin/v1/orgs/{org}/projects/{project}/disable", P::ProjectWrite, Org, K::ProjectDisable),
    r("POST", "/admin/v1/orgs/{org}/projects/{project}/enable", P::ProjectWrite, Org, K::ProjectEnable),
    r("POST", "/admin/v1/orgs/{org}/projects/{project}/members", P::ProjectWrite, Org, K::ProjectMemberAdd),
    r("GET", "/admin/v1/orgs/{org}/guardrails", P::OrgRead, Org, K::GuardrailOrgPolicyRead),
    r("PUT", "/admin/v1/orgs/{org}/guardrails", P::OrgUpdate, Org, K::GuardrailOrgPolicySet),
    r("DELETE", "/admin/v1/orgs/{org}/guardrails", P::OrgUpdate, Org, K::GuardrailOrgPolicyDelete),
    r("GET", "/admin/v1/orgs/{org}/projects/{project}/guardrails", P::ProjectRead, Org, K::GuardrailProjectPolicyRead),
    r("PUT", "/admin/v1/orgs/{org}/projects/{project}/guardrails", P::ProjectWrite, Org, K::GuardrailProjectPolicySet),
    r(
        "DELETE",
        "/admin/v1/orgs/{org}/projects/{project}/guardrails",
        P::ProjectWrite,
        Org,
        K::GuardrailProjectPolicyDelete,
    ),
    r("GET", "/admin/v1/orgs/{org}/routing", P::OrgRead, Org, K::RoutingOrgPolicyRead),
    r("PUT", "/admin/v1/orgs/{org}/routing", P::OrgUpdate, Org, K::RoutingOrgPolicySet),
    r("DELETE", "/admin/v1/orgs/{org}/routing", P::OrgUpdate, Org, K::RoutingOrgPolicyDelete),
    r("GET", "/admin/v1/orgs/{org}/projects/{project}/routing", P::ProjectRead, Org, K::RoutingProjectPolicyRead),
    r("PUT", "/admin/v1/orgs/{org}/projects/{project}/routing", P::ProjectWrite, Org, K::RoutingProjectPolicySet),
    r("DELETE", "/admin/v1/orgs/{org}/projects/{project}/routing", P::ProjectWrite, Org, K::RoutingProjectPolicyDelete),
    r("GET", "/admin/v1/orgs/{org}/limits", P::OrgRead, Org, K::LimitOrgRead),
    r("PUT", "/admin/v1/orgs/{org}/limits", P::OrgUpdate, Org, K::LimitOrgSet),
    r("DELETE", "/admin/v1/orgs/{org}/limits", P::OrgUpdate, Org, K::LimitOrgDelete),
    r("GET", "/admin/v1/orgs/{org}/projects/{project}/limits", P::ProjectRead, Org, K::LimitProjectRead),
    r("PUT", "/admin/v1/orgs/{org}/projects/{project}/limits", P::ProjectWrite, Org, K::LimitProjectSet),
    r("DELETE", "/admin/v1/orgs/{org}/projects/{project}/limits", P::ProjectWrite, Org, K::LimitProjectDelete),
    r("GET", "/admin/v1/orgs/{org}/usage", P::OrgRead, Org, K::UsageRead),
    r("POST", "/admin/v1/tokens", P::MembershipWrite, Org, K::TokenCreate),
    r("GET", "/admin/v1/tokens", P::MembershipWrite, Own, K::TokenList),
    r("POST", "/admin/v1/tokens/{id}/revoke", P::MembershipWrite, Org, K::TokenRevoke),
    r("POST", "/admin/v1/keys", P::KeyWriteAny, Org, K::KeyCreate),
    r("GET", "/admin/v1/keys", P::KeyRead, Org, K::KeyList),
    r("GET", "/admin/v1/keys/{id}", P::KeyRead, Org, K::KeyRead),
    r("POST", "/admin/v1/keys/{id}/revoke", P::KeyWriteAny, Org, K::KeyRevoke),
    r("POST", "/admin/v1/keys/{id}/rotate", P::KeyWriteAny, Org, K::KeyRotate),
    r("GET", "/admin/v1/keys/{id}/limits", P::KeyRead, Org, K::LimitKeyRead),
    r("PUT", "/admin/v1/keys/{id}/limits", P::KeyWriteAny, Org, K::LimitKeySet),
    r("DELETE", "/admin/v1/keys/{id}/limits", P::KeyWriteAny, Org, K::LimitKeyDelete),
    r("POST", "/admin/v1/capabilities", P::KeyWriteAny, Org, K::CapabilityMint),
    r("GET", "/admin/v1/capabilities", P::KeyRead, Org, K::CapabilityList),
    r("POST", "/admin/v1/capabilities/{id}/revoke", P::KeyWriteAny, Org, K::CapabilityRevoke),
    r("GET", "/admin/v1/capability-keys", P::KeyRead, Org, K::CapabilityKeyList),
    r("POST", "/admin/v1/capability-keys/rotate", P::OrgUpdate, Org, K::CapabilityKeyRotate),
    r("GET", "/admin/v1/audit", P::AuditRead, Own, K::AuditRead),
    r("GET", "/admin/v1/audit/export", P::AuditRead, Own, K::AuditExport),
    r("GET", "/admin/v1/audit/key", P::AuditRead, Own, K::AuditKey),
    r("POST", "/admin/v1/audit/verify", P::AuditRead, Own, K::AuditVerify),
    r("POST", "/admin/v1/webhooks", P::OrgUpdate, Org, K::WebhookCreate),
    r("GET", "/admin/v1/webhooks", P::AuditRead, Org, K::WebhookList),
    r("DELETE", "/admin/v1/webhooks/{id}", P::OrgUpdate, Org, K::WebhookDelete),
    r("GET", "/admin/v1/webhooks/{id}/deliveries", P::AuditRead, Org, K::WebhookDeliveries),
    r("GET", "/admin/v1/sessions", P::OrgRead, Own, K::SessionList),
    r("POST", "/admin/v1/sessions/{id}/revoke", P::OrgRead, Own, K::SessionRevoke),
    r("GET", "/admin/v1/deployments", P::OrgCreate, Platform, K::DeploymentList),
    r("POST", "/admin/v1/credentials", P::OrgUpdate, Org, K::CredentialCreate),
    r("GET", "/admin/v1/credentials", P::OrgUpdate, Org, K::CredentialList),
    r("DELETE", "/admin/v1/credentials/{id}", P::OrgUpdate, Org, K::CredentialDelete),
    r("POST", "/admin/v1/mcp/servers", P::OrgUpdate, Org, K::McpServerCreate),
    r("GET", "/admin/v1/mcp/servers", P::OrgRead, Org, K::McpServerList),
    r("DELETE", "/admin/v1/mcp/servers/{id}", P::OrgUpdate, Org, K::McpServerDelete),
    r("GET", "/admin/v1/orgs/{org}/mcp", P::OrgRead, Org, K::McpOrgPolicyRead),
    r("PUT", "/admin/v1/orgs/{org}/mcp", P::OrgUpdate, Org, K::McpOrgPolicySet),
    r("DELETE", "/admin/v1/orgs/{org}/mcp", P::OrgUpdate, Org, K::McpOrgPolicyDelete),
    r("GET", "/admin/v1/orgs/{org}/projects/{project}/mcp", P::ProjectRead, Org, K::McpProjectPolicyRead),
    r("PUT", "/admin/v1/orgs/{org}/projects/{project}/mcp", P::ProjectWrite, Org, K::McpProjectPolicySet),
    r("DELETE", "/admin/v1/orgs/{org}/projects/{project}/mcp", P::ProjectWrite, Org, K::McpProjectPolicyDelete),
];

/// The service of a table entry, wrapped (authenticate, run, audit under the row's action);
/// `None` would be a table row without code (a test forbids it).
pub(crate) fn handler(spec: &'static RouteSpec) -> Option<MethodRouter<AdminState>> {
    match service_of(spec) {
        Some(service) => service::route(spec, service),
        None => legacy_handler(spec),
    }
}

/// The service function of a table entry (`None` for the one streamed route).
pub(crate) fn service_of(spec: &RouteSpec) -> Option<Service> {
    Some(match (spec.method, spec.path) {
        ("POST", "/admin/v1/orgs") => orgs::create_org,
        ("GET", "/admin/v1/orgs") => orgs::list_orgs,
        ("GET", "/admin/v1/orgs/{org}") => orgs::get_org,
        ("PATCH", "/admin/v1/orgs/{org}") => orgs::update_org,
        ("POST", "/admin/v1/orgs/{org}/disable") => orgs::disable_org,
        ("POST", "/admin/v1/orgs/{org}/enable") => orgs::enable_org,
        ("POST", "/admin/v1/orgs/{org}/members") => members::add,
        ("GET", "/admin/v1/orgs/{org}/members") => members::list,
        ("GET", "/admin/v1/orgs/{org}/members/{user}") => members::get,
        ("PATCH", "/admin/v1/orgs/{org}/members/{user}") => members::update,
        ("DELETE", "/admin/v1/orgs/{org}/members/{user}") => members::remove,
        ("POST", "/admin/v1/orgs/{org}/projects") => orgs::create_project,
        ("GET", "/admin/v1/orgs/{org}/projects") => orgs::list_projects,
        ("GET", "/admin/v1/orgs/{org}/projects/{project}") => orgs::get_project,
        ("PATCH", "/admin/v1/orgs/{org}/projects/{project}") => orgs::update_project,
        ("POST", "/admin/v1/orgs/{org}/projects/{project}/disable") => orgs::disable_project,
        ("POST", "/admin/v1/orgs/{org}/projects/{project}/enable") => orgs::enable_project,
        ("POST", "/admin/v1/orgs/{org}/projects/{project}/members") => orgs::add_project_member,
        ("GET", "/admin/v1/orgs/{org}/guardrails") => policies::get_guardrails_org,
        ("PUT", "/admin/v1/orgs/{org}/guardrails") => policies::put_guardrails_org,
        ("DELETE", "/admin/v1/orgs/{org}/guardrails") => policies::delete_guardrails_org,
        ("GET", "/admin/v1/orgs/{org}/projects/{project}/guardrails") => policies::get_guardrails_project,
        ("PUT", "/admin/v1/orgs/{org}/projects/{project}/guardrails") => policies::put_guardrails_project,
        ("DELETE", "/admin/v1/orgs/{org}/projects/{project}/guardrails") => policies::delete_guardrails_project,
        ("POST", "/admin/v1/webhooks") => webhooks::create,
        ("GET", "/admin/v1/webhooks") => webhooks::list,
        ("DELETE", "/admin/v1/webhooks/{id}") => webhooks::delete,
        ("GET", "/admin/v1/webhooks/{id}/deliveries") => webhooks::deliveries,
        ("POST", "/admin/v1/tokens") => tokens::create,
        ("GET", "/admin/v1/tokens") => tokens::list,
        ("POST", "/admin/v1/tokens/{id}/revoke") => tokens::revoke,
        ("POST", "/admin/v1/capabilities") => capabilities::create,
        ("GET", "/admin/v1/capabilities") => capabilities::list,
        ("POST", "/admin/v1/capabilities/{id}/revoke") => capabilities::revoke,
        ("GET", "/admin/v1/capability-keys") => capabilities::keys,
        ("POST", "/admin/v1/capability-keys/rotate") => capabilities::rotate,
        ("GET", "/admin/v1/audit") => trail::list,
        ("GET", "/admin/v1/deployments") => deployments::list,
        ("POST", "/admin/v1/credentials") => credentials::create,
        ("GET", "/admin/v1/credentials") => credentials::list,
        ("DELETE", "/admin/v1/credentials/{id}") => credentials::delete,
        ("POST", "/admin/v1/mcp/servers") => mcp::create,
        ("GET", "/admin/v1/mcp/servers") => mcp::list,
        ("DELETE", "/admin/v1/mcp/servers/{id}") => mcp::delete,
        ("GET", "/admin/v1/orgs/{org}/mcp") => policies::get_mcp_org,
        ("PUT", "/admin/v1/orgs/{org}/mcp") => policies::put_mcp_org,
        ("DELETE", "/admin/v1/orgs/{org}/mcp") => policies::delete_mcp_org,
        ("GET", "/admin/v1/orgs/{org}/projects/{project}/mcp") => policies::get_mcp_project,
        ("PUT", "/admin/v1/orgs/{org}/projects/{project}/mcp") => policies::put_mcp_project,
        ("DELETE", "/admin/v1/orgs/{org}/projects/{project}/mcp") => policies::delete_mcp_project,
        ("POST", "/admin/v1/keys") => keys::create,
        ("GET", "/admin/v1/keys") => keys::list,
        ("GET", "/admin/v1/keys/{id}") => keys::get,
        ("POST", "/admin/v1/keys/{id}/revoke") => keys::revoke,
        ("POST", "/admin/v1/keys/{id}/rotate") => keys::rotate,
        ("GET", "/admin/v1/orgs/{org}/routing") => policies::get_routing_org,
        ("PUT", "/admin/v1/orgs/{org}/routing") => policies::put_routing_org,
        ("DELETE", "/admin/v1/orgs/{org}/routing") => policies::delete_routing_org,
        ("GET", "/admin/v1/orgs/{org}/projects/{project}/routing") => policies::get_routing_project,
        ("PUT", "/admin/v1/orgs/{org}/projects/{project}/routing") => policies::put_routing_project,
        ("DELETE", "/admin/v1/orgs/{org}/projects/{project}/routing") => policies::delete_routing_project,
        ("GET", "/admin/v1/orgs/{org}/limits") => limits::get_org,
        ("PUT", "/admin/v1/orgs/{org}/limits") => limits::put_org,
        ("DELETE", "/admin/v1/orgs/{org}/limits") => limits::delete_org,
        ("GET", "/admin/v1/orgs/{org}/projects/{project}/limits") => limits::get_project,
        ("PUT", "/admin/v1/orgs/{org}/projects/{project}/limits") => limits::put_project,
        ("DELETE", "/admin/v1/orgs/{org}/projects/{project}/limits") => limits::delete_project,
        ("GET", "/admin/v1/orgs/{org}/usage") => limits::get_usage,
        ("GET", "/admin/v1/keys/{id}/limits") => limits::get_key,
        ("PUT", "/admin/v1/keys/{id}/limits") => limits::put_key,
        ("DELETE", "/admin/v1/keys/{id}/limits") => limits::delete_key,
        ("GET", "/admin/v1/audit/key") => trail::key,
        ("POST", "/admin/v1/audit/verify") => trail::verify,
        ("GET", "/admin/v1/sessions") => sessions::list,
        ("POST", "/admin/v1/sessions/{id}/revoke") => sessions::revoke,
        _ => return None,
    })
}

/// The one route whose answer is not a JSON value but a stream (the audit export): its handler
/// authorizes, audits and streams by itself, with the same `rbac::check` and `audit::record`.
fn legacy_handler(spec: &RouteSpec) -> Option<MethodRouter<AdminState>> {
    Some(match (spec.method, spec.path) {
        ("GET", "/admin/v1/audit/export") => get(trail::export),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_route_has_a_handler_and_is_listed_once() {
        let mut seen = HashSet::new();
        for spec in ROUTES {
            assert!(handler(spec).is_some(), "{} {} has no handler", spec.method, spec.path);
            assert!(seen.insert((spec.method, spec.path)), "{} {} listed twice", spec.method, spec.path);
        }
        let actions: HashSet<_> = ROUTES.iter().map(|s| s.action.as_str()).collect();
        assert_eq!(actions.len(), ROUTES.len(), "each route audits under its own action");
    }

    /// The planes sit side by side: below the binary, no crate depends on both, and neither
    /// plane on the other (they share `gatehouse-http` and the services in `gatehouse-gates`).
    #[test]
    fn no_crate_below_the_binary_depends_on_both_planes() {
        let crates = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        for entry in std::fs::read_dir(crates).unwrap() {
            let dir = entry.unwrap().path();
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            let Ok(manifest) = std::fs::read_to_string(dir.join("Cargo.toml")) else { continue };
            if name == "gatehouse" {
                continue;
            }
            let uses = |c: &str| manifest.lines().any(|l| l.trim_start().starts_with(&format!("{c} =")));
            let (data, control) = (uses("gatehouse-proxy"), uses("gatehouse-admin"));
            assert!(!(data && control), "{name} depends on both planes");
            assert!(!(name == "gatehouse-admin" && data), "the control plane depends on the data plane");
            assert!(!(name == "gatehouse-proxy" && control), "the data plane depends on the control plane");
        }
    }

    #[test]
    fn the_documented_routes_are_the_served_ones() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/ADMIN-API.md")).unwrap();
        for spec in ROUTES {
            let row = format!("| {} | `{}` | `{}` |", spec.method, spec.path, spec.permission.as_str());
            assert!(doc.contains(&row), "docs/ADMIN-API.md lacks the row starting {row}");
        }
    }
}
