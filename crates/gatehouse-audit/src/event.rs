//! The event catalogue and the canonical event line.
//!
//! An [`Event`] is built from ids, codes and counts only: no field can hold a prompt, a
//! response, tool arguments or a secret, so content cannot reach the audit trail by mistake.
//! The writer renders it once into its canonical line (compact JSON, fixed field order) and
//! that exact byte string is what is stored, exported and hashed.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gatehouse_core::{Credential, KeyId, OrgId, ProjectId, RequestId, TokenId};
use serde::{Deserialize, Serialize};

macro_rules! catalogue {
    ($($variant:ident => ($name:literal, $category:ident)),* $(,)?) => {
        /// Every kind of audit event. The name (`noun.verb`) is the `action` of the line.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum EventKind { $($variant),* }

        impl EventKind {
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant),*];

            pub const fn as_str(self) -> &'static str {
                match self { $(EventKind::$variant => $name),* }
            }

            pub const fn category(self) -> Category {
                match self { $(EventKind::$variant => Category::$category),* }
            }

            pub fn parse(s: &str) -> Option<EventKind> {
                match s { $($name => Some(EventKind::$variant),)* _ => None }
            }
        }
    };
}

catalogue! {
    // authentication
    AuthApiKey => ("auth.api_key", Authentication),
    AuthAdminToken => ("auth.admin_token", Authentication),
    // console sign-in and sessions
    ConsoleSignIn => ("console.sign_in", Authentication),
    ConsoleSignOut => ("console.sign_out", Authentication),
    ConsoleLockout => ("console.lockout", Authentication),
    ConsoleConfirm => ("console.confirm", Authentication),
    PasskeyRegister => ("passkey.register", Authentication),
    PasskeyRemove => ("passkey.remove", Authentication),
    SessionList => ("session.list", Authentication),
    SessionRevoke => ("session.revoke", Authentication),
    // authorization of data-plane requests
    RequestAllowed => ("request.allowed", Authorization),
    RequestDenied => ("request.denied", Authorization),
    RequestInvalid => ("request.invalid", Authorization),
    // keys
    KeyCreate => ("key.create", Keys),
    KeyList => ("key.list", Keys),
    KeyRead => ("key.read", Keys),
    KeyRevoke => ("key.revoke", Keys),
    KeyRotate => ("key.rotate", Keys),
    // admin tokens
    TokenCreate => ("token.create", Tokens),
    TokenList => ("token.list", Tokens),
    TokenRevoke => ("token.revoke", Tokens),
    // capability tokens (macaroons) and federated identities
    CapabilityMint => ("capability.mint", Tokens),
    CapabilityList => ("capability.list", Tokens),
    CapabilityRevoke => ("capability.revoke", Tokens),
    CapabilityDelegate => ("capability.delegate", Tokens),
    CapabilityKeyList => ("capability.key_list", Tokens),
    CapabilityKeyRotate => ("capability.key_rotate", Tokens),
    TokenExchange => ("token.exchange", Tokens),
    // organizations, projects, users
    OrgCreate => ("org.create", Tenancy),
    OrgList => ("org.list", Tenancy),
    OrgRead => ("org.read", Tenancy),
    OrgUpdate => ("org.update", Tenancy),
    OrgDisable => ("org.disable", Tenancy),
    OrgEnable => ("org.enable", Tenancy),
    MemberSet => ("member.set", Tenancy),
    MemberList => ("member.list", Tenancy),
    MemberRead => ("member.read", Tenancy),
    MemberUpdate => ("member.update", Tenancy),
    MemberRemove => ("member.remove", Tenancy),
    ProjectCreate => ("project.create", Tenancy),
    ProjectList => ("project.list", Tenancy),
    ProjectRead => ("project.read", Tenancy),
    ProjectUpdate => ("project.update", Tenancy),
    ProjectDisable => ("project.disable", Tenancy),
    ProjectEnable => ("project.enable", Tenancy),
    ProjectMemberAdd => ("project.member_add", Tenancy),
    // providers
    ProviderNoRoute => ("provider.no_route", Providers),
    ProviderFailed => ("provider.failed", Providers),
    DeploymentList => ("deployment.list", Providers),
    CredentialCreate => ("credential.create", Providers),
    CredentialList => ("credential.list", Providers),
    CredentialDelete => ("credential.delete", Providers),
    RoutingOrgPolicyRead => ("routing.org_policy_read", Providers),
    RoutingOrgPolicySet => ("routing.org_policy_set", Providers),
    RoutingOrgPolicyDelete => ("routing.org_policy_delete", Providers),
    RoutingProjectPolicyRead => ("routing.project_policy_read", Providers),
    RoutingProjectPolicySet => ("routing.project_policy_set", Providers),
    RoutingProjectPolicyDelete => ("routing.project_policy_delete", Providers),
    // MCP servers and tool policies
    McpServerCreate => ("mcp.server_create", Providers),
    McpServerList => ("mcp.server_list", Providers),
    McpServerDelete => ("mcp.server_delete", Providers),
    McpOrgPolicyRead => ("mcp.org_policy_read", Providers),
    McpOrgPolicySet => ("mcp.org_policy_set", Providers),
    McpOrgPolicyDelete => ("mcp.org_policy_delete", Providers),
    McpProjectPolicyRead => ("mcp.project_policy_read", Providers),
    McpProjectPolicySet => ("mcp.project_policy_set", Providers),
    McpProjectPolicyDelete => ("mcp.project_policy_delete", Providers),
    DeploymentBreakerOpened => ("deployment.breaker_opened", Providers),
    DeploymentBreakerClosed => ("deployment.breaker_closed", Providers),
    // guardrails
    GuardrailBlocked => ("guardrail.blocked", Guardrails),
    GuardrailFlagged => ("guardrail.flagged", Guardrails),
    GuardrailOrgPolicySet => ("guardrail.org_policy_set", Guardrails),
    GuardrailOrgPolicyRead => ("guardrail.org_policy_read", Guardrails),
    GuardrailOrgPolicyDelete => ("guardrail.org_policy_delete", Guardrails),
    GuardrailProjectPolicySet => ("guardrail.project_policy_set", Guardrails),
    GuardrailProjectPolicyRead => ("guardrail.project_policy_read", Guardrails),
    GuardrailProjectPolicyDelete => ("guardrail.project_policy_delete", Guardrails),
    // limits and budgets
    LimitExceeded => ("limit.exceeded", Limits),
    LimitFailOpen => ("limit.fail_open", Limits),
    BudgetThreshold => ("budget.threshold", Limits),
    LimitOrgRead => ("limit.org_policy_read", Limits),
    LimitOrgSet => ("limit.org_policy_set", Limits),
    LimitOrgDelete => ("limit.org_policy_delete", Limits),
    LimitProjectRead => ("limit.project_policy_read", Limits),
    LimitProjectSet => ("limit.project_policy_set", Limits),
    LimitProjectDelete => ("limit.project_policy_delete", Limits),
    LimitKeyRead => ("limit.key_policy_read", Limits),
    LimitKeySet => ("limit.key_policy_set", Limits),
    LimitKeyDelete => ("limit.key_policy_delete", Limits),
    UsageRead => ("usage.read", Limits),
    AdminRateLimited => ("ratelimit.admin", Limits),
    // configuration
    ConfigReload => ("config.reload", Configuration),
    WebhookCreate => ("webhook.create", Configuration),
    WebhookList => ("webhook.list", Configuration),
    WebhookDelete => ("webhook.delete", Configuration),
    WebhookDeliveries => ("webhook.deliveries", Configuration),
    // the audit trail itself
    AuditRead => ("audit.read", Exports),
    AuditExport => ("audit.export", Exports),
    AuditKey => ("audit.key", Exports),
    AuditVerify => ("audit.verify", Exports),
    // the gateway itself
    SystemStart => ("system.start", System),
    SystemStop => ("system.stop", System),
    AuditReplayed => ("audit.replayed", System),
    AuditRecovered => ("audit.recovered", System),
    AuditPruned => ("audit.pruned", System),
    AuditBroken => ("audit.broken", System),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Category {
    Authentication,
    Authorization,
    Keys,
    Tokens,
    Tenancy,
    Providers,
    Guardrails,
    Limits,
    Configuration,
    Exports,
    System,
}

impl Category {
    pub const fn as_str(self) -> &'static str {
        match self {
            Category::Authentication => "authentication",
            Category::Authorization => "authorization",
            Category::Keys => "keys",
            Category::Tokens => "tokens",
            Category::Tenancy => "tenancy",
            Category::Providers => "providers",
            Category::Guardrails => "guardrails",
            Category::Limits => "limits",
            Category::Configuration => "configuration",
            Category::Exports => "exports",
            Category::System => "system",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    Denied,
    /// Admitted, but the provider (or the stream) failed.
    Failed,
}

impl Outcome {
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
            Outcome::Failed => "failed",
        }
    }
}

/// Who acted. Never a credential: keys and tokens by their public id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Actor {
    Key(KeyId),
    /// A capability token, by registered id.
    Token(TokenId),
    /// A federated (OIDC) identity: configured issuer name and subject.
    Federated(String),
    /// An admin token's id.
    AdminToken(String),
    Anonymous,
    System,
}

impl Actor {
    pub fn of(c: &Credential) -> Actor {
        match c {
            Credential::Key(k) => Actor::Key(*k),
            Credential::Token(t) => Actor::Token(*t),
            Credential::Federated { issuer, subject } => Actor::Federated(format!("{issuer}:{subject}")),
        }
    }

    pub fn render(&self) -> String {
        match self {
            Actor::Key(k) => format!("key:{k}"),
            Actor::Token(t) => format!("capability:{t}"),
            Actor::Federated(s) => format!("oidc:{s}"),
            Actor::AdminToken(t) => format!("token:{t}"),
            Actor::Anonymous => "anonymous".to_owned(),
            Actor::System => "system".to_owned(),
        }
    }
}

/// One decision. Built on the request path from `Copy` ids and static codes (cheap); the
/// canonical line is rendered later by the writer.
#[derive(Clone, Debug)]
pub struct Event {
    pub at: SystemTime,
    pub kind: EventKind,
    pub outcome: Outcome,
    pub status: u16,
    /// `ok` or the refusal's code from the DenyCode table.
    pub code: &'static str,
    pub org: Option<OrgId>,
    pub project: Option<ProjectId>,
    pub actor: Actor,
    /// The object acted on, by id.
    pub target: Option<String>,
    pub request_id: Option<RequestId>,
    pub source: Option<IpAddr>,
    pub endpoint: Option<&'static str>,
    /// The gate that decided a refusal.
    pub gate: Option<&'static str>,
    pub model: Option<Arc<str>>,
    /// The provider of the deployment that answered (or failed last), for a request that
    /// reached one.
    pub provider: Option<Arc<str>>,
    /// The stored provider credential that was presented, as `<id>:v<version>` (never the
    /// value); absent when the provider's configured one was.
    pub provider_credential: Option<Arc<str>>,
    /// For streams: how it ended.
    pub stream_end: Option<&'static str>,
    /// `hit` when the response cache answered (no provider was called).
    pub cache: Option<&'static str>,
    pub latency: Option<Duration>,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    /// What the guardrails did: detector names, actions, counts (never the matched text).
    pub guardrails: Vec<gatehouse_core::GuardrailHit>,
    /// An MCP message: method, server, tool or prompt name, sizes (never arguments or results).
    pub mcp: Option<Box<gatehouse_core::McpCall>>,
}

impl Event {
    pub fn new(kind: EventKind, outcome: Outcome, status: u16, code: &'static str, actor: Actor) -> Event {
        Event {
            at: SystemTime::now(),
            kind,
            outcome,
            status,
            code,
            org: None,
            project: None,
            actor,
            target: None,
            request_id: None,
            source: None,
            endpoint: None,
            gate: None,
            model: None,
            provider: None,
            provider_credential: None,
            stream_end: None,
            cache: None,
            latency: None,
            prompt_tokens: None,
            completion_tokens: None,
            guardrails: Vec::new(),
            mcp: None,
        }
    }

    /// The chain the event belongs to: its org's, or the platform's.
    pub fn chain(&self) -> String {
        chain_of(self.org)
    }

    /// Renders everything but the chain position, which the writer adds at append time.
    /// Runs in the writer, so the event's id (a UUIDv7, which costs a random draw) is minted
    /// off the request path.
    pub fn pending(&self) -> Pending {
        let id = uuid::Uuid::now_v7();
        let at_ms = self.at.duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let actor = self.actor.render();
        let body = Body {
            id,
            at: humantime::format_rfc3339_millis(self.at).to_string(),
            action: self.kind.as_str(),
            category: self.kind.category().as_str(),
            outcome: self.outcome.as_str(),
            status: self.status,
            code: self.code,
            org_id: self.org,
            project_id: self.project,
            actor: &actor,
            target: self.target.as_deref(),
            request_id: self.request_id,
            source: self.source,
            endpoint: self.endpoint,
            gate: self.gate,
            model: self.model.as_deref(),
            provider: self.provider.as_deref(),
            provider_credential: self.provider_credential.as_deref(),
            stream_end: self.stream_end,
            cache: self.cache,
            latency_us: self.latency.map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            guardrails: self
                .guardrails
                .iter()
                .map(|h| HitLine { dir: h.direction, action: h.action, detector: &h.detector, count: h.count })
                .collect(),
            mcp: self.mcp.as_deref().map(|m| McpLine {
                method: &m.method,
                server: &m.server,
                name: m.name.as_deref(),
                request_bytes: m.request_bytes,
                response_bytes: m.response_bytes,
            }),
        };
        // Serialising a struct of strings, ids and integers cannot fail.
        let body = serde_json::to_string(&body).unwrap_or_default();
        Pending {
            id: id.to_string(),
            chain: self.chain(),
            at_ms,
            actor,
            action: self.kind.as_str().to_owned(),
            body: body.strip_prefix('{').unwrap_or(&body).to_owned(),
        }
    }
}

pub fn chain_of(org: Option<OrgId>) -> String {
    org.map_or_else(|| PLATFORM_CHAIN.to_owned(), |o| format!("org/{o}"))
}

/// The chain of events that belong to no org (platform actions, anonymous refusals, system).
pub const PLATFORM_CHAIN: &str = "platform";

#[derive(Serialize)]
struct McpLine<'a> {
    method: &'a str,
    server: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    request_bytes: u64,
    response_bytes: u64,
}

#[derive(Serialize)]
struct HitLine<'a> {
    dir: &'static str,
    action: &'static str,
    detector: &'a str,
    count: u32,
}

/// The line's fields after `v`, `seq` and `chain`, in their fixed order. Absent values are
/// omitted (not `null`) so a line only says what is known.
#[derive(Serialize)]
struct Body<'a> {
    id: uuid::Uuid,
    at: String,
    action: &'static str,
    category: &'static str,
    outcome: &'static str,
    status: u16,
    code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    org_id: Option<OrgId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    project_id: Option<ProjectId>,
    actor: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<RequestId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    endpoint: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gate: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider_credential: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_end: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_us: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    completion_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    guardrails: Vec<HitLine<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mcp: Option<McpLine<'a>>,
}

/// An event rendered but not yet placed in its chain: what the queue carries past a
/// failure and what the spool file holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub id: String,
    pub chain: String,
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    /// The body's JSON members without the opening brace (ends with `}`).
    pub body: String,
}

/// The version of the line format.
pub const LINE_VERSION: u32 = 1;

impl Pending {
    /// The canonical line at position `seq` of its chain: the bytes that are stored and hashed.
    pub fn line(&self, seq: u64) -> String {
        // the chain name is ours ("platform" or "org/<uuid>"), JSON-safe as is
        let chain = serde_json::to_string(&self.chain).unwrap_or_default();
        format!("{{\"v\":{LINE_VERSION},\"seq\":{seq},\"chain\":{chain},{}", self.body)
    }
}

/// The fields of a stored line that the store also keeps as columns, read back to
/// cross-check them (and to list events).
#[derive(Debug, Deserialize)]
pub struct LineHead {
    pub v: u32,
    pub seq: u64,
    pub chain: String,
    pub id: String,
    pub at: String,
    pub action: String,
    pub actor: String,
}

/// Bounded: a line is a few hundred bytes; anything much larger is not ours.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn the_documented_catalogue_is_the_code_catalogue() {
        let doc = include_str!("../../../docs/AUDIT.md");
        let section = doc.split("## What is recorded").nth(1).unwrap().split("\n\n").nth(2).unwrap();
        let mut documented = std::collections::BTreeSet::new();
        for row in section.lines().skip(2) {
            let mut cells = row.split('|').filter(|c| !c.trim().is_empty());
            let category = cells.next().unwrap().trim();
            let actions = cells.next().unwrap();
            // the action names are the backticked `noun.verb` words, before any explanation
            for name in actions.split('`').skip(1).step_by(2).filter(|w| w.contains('.') && !w.contains(' ')) {
                let kind =
                    EventKind::parse(name).unwrap_or_else(|| panic!("AUDIT.md lists {name}, which is not emitted"));
                assert_eq!(kind.category().as_str(), category, "{name} is listed under the wrong category");
                documented.insert(name);
            }
        }
        let code: std::collections::BTreeSet<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
        let undocumented: Vec<_> = code.difference(&documented).collect();
        assert!(undocumented.is_empty(), "AUDIT.md lacks {undocumented:?}");
    }

    #[test]
    fn the_catalogue_is_unique_and_round_trips() {
        let mut names = HashSet::new();
        for k in EventKind::ALL {
            assert!(names.insert(k.as_str()), "{} listed twice", k.as_str());
            assert_eq!(EventKind::parse(k.as_str()), Some(*k));
            let (noun, verb) = k.as_str().split_once('.').unwrap();
            assert!(!noun.is_empty() && !verb.is_empty());
        }
        assert_eq!(EventKind::parse("nope"), None);
    }

    #[test]
    fn a_line_is_compact_ordered_json_without_absent_fields() {
        let mut e = Event::new(EventKind::KeyCreate, Outcome::Allowed, 201, "ok", Actor::AdminToken("t1".into()));
        e.at = UNIX_EPOCH + Duration::from_millis(1_764_000_000_123);
        e.target = Some("k\"1".into());
        let p = e.pending();
        assert_eq!(p.chain, "platform");
        let line = p.line(7);
        let id = &p.id;
        assert_eq!(
            line,
            format!(
                "{{\"v\":1,\"seq\":7,\"chain\":\"platform\",\"id\":\"{id}\",\"at\":\"2025-11-24T16:00:00.123Z\",\
                 \"action\":\"key.create\",\"category\":\"keys\",\"outcome\":\"allowed\",\"status\":201,\"code\":\"ok\",\
                 \"actor\":\"token:t1\",\"target\":\"k\\\"1\"}}"
            )
        );
        let head: LineHead = serde_json::from_str(&line).unwrap();
        assert_eq!((head.seq, head.chain.as_str(), head.action.as_str()), (7, "platform", "key.create"));
        assert_eq!(p.line(7), line, "rendering is deterministic");
    }

    #[test]
    fn org_events_go_to_their_org_chain() {
        let org = OrgId::generate();
        let mut e = Event::new(EventKind::RequestAllowed, Outcome::Allowed, 200, "ok", Actor::Key(KeyId::generate()));
        e.org = Some(org);
        assert_eq!(e.chain(), format!("org/{org}"));
        let v: serde_json::Value = serde_json::from_str(&e.pending().line(1)).unwrap();
        assert_eq!(v["org_id"], org.to_string());
        assert!(v["actor"].as_str().unwrap().starts_with("key:"));
    }
}
