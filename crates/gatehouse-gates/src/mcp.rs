//! The MCP gateway's policy side (docs/MCP.md): the upstream servers tenants registered (opened,
//! in memory) and the tool policies of orgs and projects. The protocol side (JSON-RPC framing,
//! sessions, forwarding) is `gatehouse-mcp`; it asks these tables, which the request path reads
//! without touching the store.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use gatehouse_core::{OrgId, Principal, ProjectId};
use gatehouse_security::seal::SealError;
use gatehouse_store::{McpServerRow, PolicyTable, Store};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::credentials::{Vault, VaultError};
use crate::tenant_routes::Scope;

/// Most entries in each list of a spec, and the longest pattern.
const MAX_ENTRIES: usize = 128;
const MAX_PATTERN: usize = 256;

/// Allow and deny patterns over `server/name` (a tool or prompt name, or a resource URI). `*`
/// stands for any run of characters, `/` included; nothing else is special.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Patterns {
    /// Only what matches one of these (absent: everything not denied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<String>>,
    /// Never what matches one of these (wins over `allow`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

/// Tools that only callers holding one of `roles` may use (the roles a federated identity was
/// mapped to; API keys hold none).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleGate {
    pub tools: String,
    pub roles: Vec<String>,
}

/// The longest a matching tool call may run before the gateway answers with a timeout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolTimeout {
    pub tools: String,
    pub timeout_ms: u64,
}

/// Whose requests one rate counts together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Per {
    /// Each API key or token on its own.
    #[default]
    Key,
    /// All of a project's callers together.
    Project,
    /// All of an org's callers together.
    Org,
}

/// Requests per minute for the messages matching `tools`: `server/tool` for a tool call,
/// `server/<method>` for any other message (`github/tools/list`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolRate {
    pub tools: String,
    pub rpm: u32,
    #[serde(default)]
    pub per: Per,
}

/// What a call of a matching tool costs, charged to the USD budgets (docs/LIMITS.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolPrice {
    pub tools: String,
    /// Micro-USD per call (1 USD = 1 000 000).
    pub micro_usd: u64,
}

/// An org's or a project's MCP policy as the admin API takes and shows it. Both scopes' apply:
/// a call must pass each (a project narrows its org, never widens it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpSpec {
    /// Only these servers (names, patterns allowed); absent: every server the scope can reach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub servers: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Patterns>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Patterns>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompts: Option<Patterns>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<RoleGate>,
    /// The largest `arguments` object a tool call or prompt may carry, in bytes of JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_argument_bytes: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timeouts: Vec<ToolTimeout>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rates: Vec<ToolRate>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prices: Vec<ToolPrice>,
}

/// Whether `pattern` (with `*` for any run of characters) matches `text` whole. Linear in the
/// lengths (the classic greedy match with one back-track point), so no pattern can be slow.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

fn pattern_ok(p: &str) -> bool {
    !p.is_empty() && p.len() <= MAX_PATTERN && !p.chars().any(char::is_control)
}

impl Patterns {
    fn check(&self) -> bool {
        let list_ok = |l: &[String]| l.len() <= MAX_ENTRIES && l.iter().all(|p| pattern_ok(p));
        self.allow.as_deref().is_none_or(list_ok) && list_ok(&self.deny)
    }

    fn allows(&self, subject: &str) -> bool {
        !self.deny.iter().any(|p| glob(p, subject))
            && self.allow.as_ref().is_none_or(|a| a.iter().any(|p| glob(p, subject)))
    }
}

/// What a caller asks to use on a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use<'a> {
    /// The server at all (initialize, ping, listings).
    Server,
    Tool(&'a str),
    Resource(&'a str),
    Prompt(&'a str),
}

impl Use<'_> {
    /// The capability-token scope this use needs: `mcp:tool:<server>/<tool>`,
    /// `mcp:prompt:<server>/<prompt>`, `mcp:resource:<server>` (URIs do not fit the scope
    /// grammar; the policies' resource patterns narrow them). The server itself needs no scope
    /// of its own: any of these for it will do.
    pub fn scope(self, server: &str) -> Option<String> {
        match self {
            Use::Server => None,
            Use::Tool(t) => Some(format!("mcp:tool:{server}/{t}")),
            Use::Prompt(p) => Some(format!("mcp:prompt:{server}/{p}")),
            Use::Resource(_) => Some(format!("mcp:resource:{server}")),
        }
    }
}

impl McpSpec {
    /// Whether every pattern and bound is in range; the field at fault.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.servers.as_ref().is_some_and(|s| s.len() > MAX_ENTRIES || !s.iter().all(|p| pattern_ok(p))) {
            return Err("servers");
        }
        for (field, p) in [("tools", &self.tools), ("resources", &self.resources), ("prompts", &self.prompts)] {
            if p.as_ref().is_some_and(|p| !p.check()) {
                return Err(field);
            }
        }
        let roles_ok = |g: &RoleGate| {
            pattern_ok(&g.tools) && !g.roles.is_empty() && g.roles.len() <= 32 && g.roles.iter().all(|r| pattern_ok(r))
        };
        if self.roles.len() > MAX_ENTRIES || !self.roles.iter().all(roles_ok) {
            return Err("roles");
        }
        if self.max_argument_bytes.is_some_and(|b| b == 0) {
            return Err("max_argument_bytes");
        }
        let timeout_ok = |t: &ToolTimeout| pattern_ok(&t.tools) && (1..=3_600_000).contains(&t.timeout_ms);
        if self.timeouts.len() > MAX_ENTRIES || !self.timeouts.iter().all(timeout_ok) {
            return Err("timeouts");
        }
        let rate_ok = |r: &ToolRate| pattern_ok(&r.tools) && (1..=10_000_000).contains(&r.rpm);
        if self.rates.len() > MAX_ENTRIES || !self.rates.iter().all(rate_ok) {
            return Err("rates");
        }
        // at most 1000 USD a call
        let price_ok = |p: &ToolPrice| pattern_ok(&p.tools) && p.micro_usd <= 1_000_000_000;
        if self.prices.len() > MAX_ENTRIES || !self.prices.iter().all(price_ok) {
            return Err("prices");
        }
        Ok(())
    }

    fn allows(&self, server: &str, what: Use<'_>, roles: &[Box<str>]) -> bool {
        if self.servers.as_ref().is_some_and(|s| !s.iter().any(|p| glob(p, server))) {
            return false;
        }
        let subject = |name: &str| format!("{server}/{name}");
        match what {
            Use::Server => true,
            Use::Tool(t) => {
                let s = subject(t);
                self.tools.as_ref().is_none_or(|p| p.allows(&s))
                    && self
                        .roles
                        .iter()
                        .filter(|g| glob(&g.tools, &s))
                        .all(|g| g.roles.iter().any(|r| roles.iter().any(|have| **have == **r)))
            }
            Use::Resource(uri) => self.resources.as_ref().is_none_or(|p| p.allows(&subject(uri))),
            Use::Prompt(n) => self.prompts.as_ref().is_none_or(|p| p.allows(&subject(n))),
        }
    }

    fn timeout(&self, server: &str, tool: &str) -> Option<Duration> {
        let s = format!("{server}/{tool}");
        self.timeouts.iter().filter(|t| glob(&t.tools, &s)).map(|t| Duration::from_millis(t.timeout_ms)).min()
    }
}

/// Every stored MCP policy, in memory. A scope without one allows everything its servers offer;
/// an unreadable one allows nothing.
#[derive(Default)]
pub struct McpPolicies {
    table: ArcSwap<HashMap<Scope, Arc<McpSpec>>>,
    reload: tokio::sync::Mutex<()>,
}

/// A spec that allows nothing: what an unreadable stored policy stands for.
fn nothing() -> McpSpec {
    McpSpec { servers: Some(Vec::new()), ..McpSpec::default() }
}

impl McpPolicies {
    fn specs(&self, org: OrgId, project: ProjectId) -> [Option<Arc<McpSpec>>; 2] {
        let t = self.table.load();
        [t.get(&Scope::Org(org)).cloned(), t.get(&Scope::Project(project)).cloned()]
    }

    /// Whether the org's and the project's policies both let `p` use `what` on `server`, and
    /// the caller's token (if any) carries the scope for it.
    pub fn allows(&self, p: &Principal, server: &str, what: Use<'_>) -> bool {
        let roles: &[Box<str>] = p.grant.as_ref().map_or(&[], |g| &g.roles);
        let scoped = match what.scope(server) {
            Some(scope) => p.may(&scope),
            // the server itself: any MCP scope of the token that could reach it
            None => p.grant.as_ref().is_none_or(|g| g.scopes.reaches(&["mcp", "*", server])),
        };
        scoped && self.specs(p.org, p.project).iter().flatten().all(|s| s.allows(server, what, roles))
    }

    /// The shortest timeout the policies set for a tool, if any does.
    pub fn timeout(&self, p: &Principal, server: &str, tool: &str) -> Option<Duration> {
        self.specs(p.org, p.project).iter().flatten().filter_map(|s| s.timeout(server, tool)).min()
    }

    /// The rates that count a message (`subject`: `server/tool` or `server/<method>`): each
    /// matching rule of the org's and the project's policy, by a name that is the rule's and
    /// the counted caller's (key, project or org).
    pub fn rates(&self, p: &Principal, subject: &str) -> Vec<(String, u32)> {
        let t = self.table.load();
        let mut out = Vec::new();
        for (scope, name) in [
            (Scope::Org(p.org), format!("org:{}", p.org)),
            (Scope::Project(p.project), format!("project:{}", p.project)),
        ] {
            let Some(spec) = t.get(&scope) else { continue };
            for (i, r) in spec.rates.iter().enumerate().filter(|(_, r)| glob(&r.tools, subject)) {
                let who = match r.per {
                    Per::Key => gatehouse_audit::Actor::of(&p.credential).render(),
                    Per::Project => format!("project:{}", p.project),
                    Per::Org => format!("org:{}", p.org),
                };
                out.push((format!("mcp:{name}:{i}:{who}"), r.rpm));
            }
        }
        out
    }

    /// What a call of `server/tool` costs, in micro-USD: the project's matching price, else the
    /// org's (first matching rule of each), else nothing.
    pub fn price(&self, p: &Principal, subject: &str) -> u64 {
        let [org, project] = self.specs(p.org, p.project);
        let first = |s: &Option<Arc<McpSpec>>| {
            s.as_ref().and_then(|s| s.prices.iter().find(|x| glob(&x.tools, subject)).map(|x| x.micro_usd))
        };
        first(&project).or_else(|| first(&org)).unwrap_or(0)
    }

    /// The smallest argument cap the policies set, if any does.
    pub fn max_argument_bytes(&self, p: &Principal) -> Option<u32> {
        self.specs(p.org, p.project).iter().flatten().filter_map(|s| s.max_argument_bytes).min()
    }

    /// The scope's own spec, if it has one.
    pub fn spec(&self, org: OrgId, project: Option<ProjectId>) -> Option<Arc<McpSpec>> {
        let scope = project.map_or(Scope::Org(org), Scope::Project);
        self.table.load().get(&scope).cloned()
    }

    pub async fn load(&self, store: &Store) -> Result<(), gatehouse_store::Error> {
        let _one_at_a_time = self.reload.lock().await;
        let rows = store.all_scoped_policies(PolicyTable::Mcp).await?;
        let mut table = HashMap::with_capacity(rows.len());
        for r in rows {
            let Some(scope) = Scope::of(&r) else { continue };
            let spec = serde_json::from_str::<McpSpec>(&r.spec).unwrap_or_else(|_| {
                tracing::error!(org = %r.org_id, project = %r.project_id, "stored MCP policy unreadable; its scope may use no MCP server until it is rewritten");
                nothing()
            });
            table.insert(scope, Arc::new(spec));
        }
        self.table.store(Arc::new(table));
        Ok(())
    }

    pub async fn run_poller(self: Arc<Self>, store: Store, every: Duration) {
        gatehouse_store::poll::reload("MCP policies", every, || self.load(&store)).await;
    }
}

/// A registered upstream MCP server, opened for the data plane.
pub struct McpServer {
    pub id: Box<str>,
    pub name: Box<str>,
    /// Checked by the outbound-address guard at registration (and by the client's resolver at
    /// every connection).
    pub url: Box<str>,
    /// The header and value the gateway authenticates to the server with; `None`: none.
    pub auth: Option<(Box<str>, SecretString)>,
    /// The key the identity headers are signed with (its id is the server's id). `None`: the
    /// sealed values did not open here; calls are refused (fail closed).
    pub identity_key: Option<SecretString>,
    pub timeout: Duration,
    pub max_request_bytes: u32,
    pub max_response_bytes: u32,
}

impl McpServer {
    /// Whether the sealed values opened (a server whose did not is refused, never called bare).
    pub fn usable(&self) -> bool {
        self.identity_key.is_some()
    }
}

type ServerKey = (Option<OrgId>, Option<ProjectId>, Box<str>);

/// Every registered server, opened, in memory; re-read on a short poll.
#[derive(Default)]
pub struct McpServers {
    table: ArcSwap<HashMap<ServerKey, Arc<McpServer>>>,
    reload: tokio::sync::Mutex<()>,
}

/// What a server's sealed values are bound to: tenant, scope, name, id and which value.
pub fn record(row: &McpServerRow, field: &str) -> String {
    let tenant = if row.org_id.is_empty() { "platform" } else { &row.org_id };
    format!("mcp-server:{tenant}:{}:{}:{}:{field}", row.project_id, row.name, row.id)
}

/// What [`McpServers::register`] was given beside the row's plain fields.
pub struct Registration {
    pub row: McpServerRow,
    pub credential: Option<SecretString>,
}

impl McpServers {
    /// The server a caller of `org`'s `project` reaches by `name`: the project's, else the
    /// org's, else the platform's.
    pub fn resolve(&self, org: OrgId, project: ProjectId, name: &str) -> Option<Arc<McpServer>> {
        let t = self.table.load();
        let key = |o, p| (o, p, Box::<str>::from(name));
        t.get(&key(Some(org), Some(project)))
            .or_else(|| t.get(&key(Some(org), None)))
            .or_else(|| t.get(&key(None, None)))
            .cloned()
    }

    /// A registered server by id (closing a session it issued).
    pub fn by_id(&self, id: &str) -> Option<Arc<McpServer>> {
        self.table.load().values().find(|s| &*s.id == id).cloned()
    }

    /// Seals the credential and a new identity key under the tenant's data key and stores the
    /// row; returns the row and the identity key (shown once, for the server to verify with).
    pub async fn register(
        vault: &Vault,
        store: &Store,
        mut reg: Registration,
    ) -> Result<(McpServerRow, SecretString), VaultError> {
        let org = OrgId::parse(&reg.row.org_id);
        let (key_version, sealer) = vault.tenant_key(org).await?;
        let identity = gatehouse_security::seal::random_key()?;
        let identity = SecretString::from(hex::encode(*identity));
        reg.row.key_version = key_version;
        let sealed_identity = sealer.seal(&record(&reg.row, "identity"), &identity)?;
        let sealed_credential = match &reg.credential {
            Some(c) => {
                reg.row.hint = gatehouse_security::seal::fingerprint(c);
                sealer.seal(&record(&reg.row, "credential"), c)?
            }
            None => String::new(),
        };
        // one column holds both, newline-separated (base64 never contains one)
        reg.row.sealed = format!("{sealed_identity}\n{sealed_credential}");
        store.insert_mcp_server(&reg.row).await?;
        Ok((reg.row, identity))
    }

    async fn open(vault: &Vault, r: &McpServerRow) -> Result<(SecretString, Option<SecretString>), VaultError> {
        let sealer = vault.tenant_key_version(OrgId::parse(&r.org_id), r.key_version).await?;
        let (identity, credential) = r.sealed.split_once('\n').ok_or(SealError::Open)?;
        let identity = sealer.open(&record(r, "identity"), identity)?;
        let credential = match credential {
            "" => None,
            c => Some(sealer.open(&record(r, "credential"), c)?),
        };
        Ok((identity, credential))
    }

    /// Reads every server and opens the new ones (one already opened is kept). One whose
    /// values do not open stays registered and refuses its calls.
    pub async fn load(&self, vault: &Vault, store: &Store) -> Result<(), gatehouse_store::Error> {
        let _one_at_a_time = self.reload.lock().await;
        let rows = store.all_mcp_servers().await?;
        let old = self.table.load_full();
        let known: HashMap<&str, &Arc<McpServer>> = old.values().map(|s| (&*s.id, s)).collect();
        let mut table = HashMap::with_capacity(rows.len());
        for r in &rows {
            let server = match known.get(r.id.as_str()) {
                Some(s) => Arc::clone(s),
                None => {
                    let (identity_key, credential) = match Self::open(vault, r).await {
                        Ok((i, c)) => (Some(i), c),
                        Err(e) => {
                            tracing::error!(server = %r.id, error = %e, "MCP server's sealed values do not open; its calls are refused");
                            (None, None)
                        }
                    };
                    let auth = credential.map(|c| (r.auth_header.as_str().into(), c));
                    let bytes = |v: i64| u32::try_from(v).unwrap_or(u32::MAX);
                    Arc::new(McpServer {
                        id: r.id.as_str().into(),
                        name: r.name.as_str().into(),
                        url: r.url.as_str().into(),
                        auth,
                        identity_key,
                        timeout: Duration::from_millis(u64::try_from(r.timeout_ms).unwrap_or(30_000)),
                        max_request_bytes: bytes(r.max_request_bytes),
                        max_response_bytes: bytes(r.max_response_bytes),
                    })
                }
            };
            let key = (OrgId::parse(&r.org_id), ProjectId::parse(&r.project_id), r.name.as_str().into());
            table.insert(key, server);
        }
        self.table.store(Arc::new(table));
        Ok(())
    }

    pub async fn run_poller(self: Arc<Self>, vault: Arc<Vault>, store: Store, every: Duration) {
        gatehouse_store::poll::reload("MCP servers", every, || self.load(&vault, &store)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_whole_strings_with_star_only() {
        for (p, t, want) in [
            ("github/*", "github/create_issue", true),
            ("github/*", "gitlab/create_issue", false),
            ("*/delete_*", "github/delete_repo", true),
            ("*", "", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("fs/file:///etc/*", "fs/file:///etc/passwd", true),
        ] {
            assert_eq!(glob(p, t), want, "{p} ~ {t}");
        }
        // no pattern is slow: the worst case for naive back-tracking
        let text = "a".repeat(10_000);
        let pattern = format!("{}b", "*a".repeat(100));
        let t = std::time::Instant::now();
        assert!(!glob(&pattern, &text));
        assert!(t.elapsed() < Duration::from_millis(500));
    }

    #[test]
    fn rates_name_their_rule_and_caller_and_the_project_price_wins() {
        let p = Principal {
            org: OrgId::generate(),
            project: ProjectId::generate(),
            credential: gatehouse_core::Credential::Key(gatehouse_core::KeyId::generate()),
            allowed_models: None,
            grant: None,
            rpm: None,
            tpm: None,
            cors_origins: None,
        };
        let spec = |v: serde_json::Value| Arc::new(serde_json::from_value::<McpSpec>(v).unwrap());
        let policies = McpPolicies::default();
        policies.table.store(Arc::new(HashMap::from([
            (
                Scope::Org(p.org),
                spec(serde_json::json!({
                    "rates": [{"tools": "gh/*", "rpm": 10}, {"tools": "*", "rpm": 100, "per": "org"}],
                    "prices": [{"tools": "gh/*", "micro_usd": 500}],
                })),
            ),
            (
                Scope::Project(p.project),
                spec(serde_json::json!({"prices": [{"tools": "gh/search", "micro_usd": 2000}]})),
            ),
        ])));
        let rates = policies.rates(&p, "gh/search");
        assert_eq!(rates.len(), 2);
        assert!(rates[0].0.starts_with(&format!("mcp:org:{}:0:key:", p.org)) && rates[0].1 == 10);
        assert_eq!(rates[1], (format!("mcp:org:{}:1:org:{}", p.org, p.org), 100));
        assert_eq!(policies.rates(&p, "other/tools/list").len(), 1);
        assert_eq!(policies.price(&p, "gh/search"), 2000, "the project's price wins");
        assert_eq!(policies.price(&p, "gh/create_issue"), 500);
        assert_eq!(policies.price(&p, "other/x"), 0, "unpriced tools are free");
    }

    #[test]
    fn deny_wins_roles_gate_and_both_scopes_narrow() {
        let spec: McpSpec = serde_json::from_value(serde_json::json!({
            "tools": {"allow": ["gh/*"], "deny": ["gh/delete_*"]},
            "roles": [{"tools": "gh/merge_*", "roles": ["maintainer"]}],
            "timeouts": [{"tools": "gh/*", "timeout_ms": 5000}, {"tools": "gh/slow", "timeout_ms": 100}],
        }))
        .unwrap();
        assert_eq!(spec.check(), Ok(()));
        assert!(spec.allows("gh", Use::Tool("create_issue"), &[]));
        assert!(!spec.allows("gh", Use::Tool("delete_repo"), &[]));
        assert!(!spec.allows("other", Use::Tool("create_issue"), &[]));
        assert!(!spec.allows("gh", Use::Tool("merge_pr"), &[]));
        assert!(spec.allows("gh", Use::Tool("merge_pr"), &["maintainer".into()]));
        assert_eq!(spec.timeout("gh", "slow"), Some(Duration::from_millis(100)));
        assert_eq!(spec.timeout("gh", "x"), Some(Duration::from_millis(5000)));
        assert!(!nothing().allows("gh", Use::Server, &[]));
        let bad: McpSpec =
            serde_json::from_value(serde_json::json!({"timeouts": [{"tools": "*", "timeout_ms": 0}]})).unwrap();
        assert_eq!(bad.check(), Err("timeouts"));
        assert!(serde_json::from_value::<McpSpec>(serde_json::json!({"tool": {}})).is_err(), "unknown fields refused");
    }
}
