//! `/admin/v1/mcp/servers`: upstream MCP servers registered by the platform (platform admins),
//! an org or one of its projects (its admins), by name (docs/MCP.md). The URL passes the
//! outbound-address guard; the credential the gateway presents to the server is write-only
//! (sealed, shown as a fingerprint); the identity key the server verifies the gateway's signed
//! identity headers with is generated here and shown once, in the answer to the registration.

use gatehouse_core::{Denial, DenyCode};
use gatehouse_gates::control::RegisterError;
use gatehouse_gates::mcp::Registration;
use gatehouse_store::McpServerRow;
use http::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::credentials::tenant;
use crate::rbac::Permission;
use crate::reply::{bad, store_err};
use crate::service::{Call, Pending};

/// Longest credential value accepted.
const MAX_SECRET: usize = 8192;
/// Headers a server credential may not be sent in: the gateway's own, the transport's and
/// MCP's.
const RESERVED: &[&str] = &["host", "content-type", "content-length", "accept", "transfer-encoding", "connection"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewServer {
    name: String,
    url: String,
    org: Option<String>,
    project: Option<String>,
    #[serde(default)]
    platform: bool,
    /// The header value the gateway sends the server (e.g. `Bearer ...`), write-only.
    credential: Option<String>,
    /// The header it goes in (default `authorization`).
    credential_header: Option<String>,
    timeout_ms: Option<u64>,
    max_request_bytes: Option<u32>,
    max_response_bytes: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Addressed {
    org: Option<String>,
    #[serde(default)]
    platform: bool,
}

fn view(r: &McpServerRow) -> Value {
    let opt = |s: &str| if s.is_empty() { Value::Null } else { json!(s) };
    json!({
        "id": r.id, "name": r.name, "url": r.url, "org_id": opt(&r.org_id), "project_id": opt(&r.project_id),
        "credential_header": opt(&r.auth_header), "credential_hint": opt(&r.hint),
        "timeout_ms": r.timeout_ms, "max_request_bytes": r.max_request_bytes,
        "max_response_bytes": r.max_response_bytes, "created_at": r.created_at, "created_by": r.created_by,
    })
}

/// One segment of a scope (`mcp:tool:<server>/...`) and of a URL path.
fn name_ok(n: &str) -> bool {
    (1..=64).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn header_ok(h: &str) -> bool {
    let lower = h.to_ascii_lowercase();
    http::HeaderName::from_bytes(h.as_bytes()).is_ok()
        && !RESERVED.contains(&lower.as_str())
        && !lower.starts_with("x-gatehouse-")
        && !lower.starts_with("mcp-")
}

pub fn create(c: &mut Call) -> Pending<'_> {
    Box::pin(async move {
        let b: NewServer = c.body().await?;
        let org = tenant(c, b.org.as_deref(), b.platform, Permission::OrgUpdate).await?;
        let project = match (&b.project, org) {
            (None, _) => None,
            (Some(_), None) => return Err(bad("project")),
            (Some(p), Some(o)) => {
                crate::policies::scope(&c.s, &c.op, &o.to_string(), Some(p), Permission::ProjectWrite).await?.1
            }
        };
        if !name_ok(&b.name) {
            return Err(bad("name"));
        }
        let limits = c.s.control.mcp_settings().clone();
        let max_ms = u64::try_from(limits.max_timeout.as_millis()).unwrap_or(u64::MAX);
        let timeout_ms = b.timeout_ms.unwrap_or(30_000.min(max_ms));
        if !(100..=max_ms).contains(&timeout_ms) {
            return Err(bad("timeout_ms"));
        }
        let within = |v: Option<u32>, cap: u32, field| match v {
            None => Ok(cap),
            Some(v) if (1024..=cap).contains(&v) => Ok(v),
            Some(_) => Err(bad(field)),
        };
        let max_request_bytes = within(b.max_request_bytes, limits.max_message_bytes.get(), "max_request_bytes")?;
        let max_response_bytes = within(b.max_response_bytes, limits.max_response_bytes.get(), "max_response_bytes")?;
        let credential = match b.credential {
            None => None,
            Some(v) if v.is_empty() || v.len() > MAX_SECRET || v.chars().any(char::is_control) => {
                return Err(bad("credential"));
            }
            Some(v) => Some(SecretString::from(v)),
        };
        let auth_header = match (&credential, b.credential_header) {
            (None, None) => String::new(),
            (None, Some(_)) => return Err(bad("credential_header")),
            (Some(_), h) => {
                let h = h.unwrap_or_else(|| "authorization".to_owned());
                if !header_ok(&h) {
                    return Err(bad("credential_header"));
                }
                h.to_ascii_lowercase()
            }
        };
        let row = McpServerRow {
            id: gatehouse_core::McpServerId::generate().to_string(),
            org_id: org.map(|o| o.to_string()).unwrap_or_default(),
            project_id: project.map(|p| p.to_string()).unwrap_or_default(),
            name: b.name,
            url: b.url,
            auth_header,
            key_version: 0,
            sealed: String::new(),
            hint: String::new(),
            timeout_ms: i64::try_from(timeout_ms).unwrap_or(i64::MAX),
            max_request_bytes: i64::from(max_request_bytes),
            max_response_bytes: i64::from(max_response_bytes),
            created_at: gatehouse_store::now_ms(),
            created_by: c.op.actor().render(),
        };
        let (row, identity) =
            c.s.control.register_mcp_server(Registration { row, credential }).await.map_err(|e| match e {
                RegisterError::Url(_) => bad("url"),
                RegisterError::Vault(gatehouse_gates::credentials::VaultError::Store(
                    gatehouse_store::Error::Conflict,
                )) => bad("name"),
                RegisterError::Vault(e) => {
                    tracing::warn!(error = %e, "registering an MCP server failed");
                    Denial::new(DenyCode::Unavailable)
                }
            })?;
        c.target = Some(row.id.clone());
        let mut v = view(&row);
        // shown once: the server verifies the gateway's identity headers with it
        v["identity_key_id"] = json!(row.id);
        v["identity_key"] = json!(identity.expose_secret());
        Ok((StatusCode::CREATED, v))
    })
}

pub fn list(c: &mut Call) -> Pending<'_> {
    Box::pin(async move {
        let q: Addressed = c.query()?;
        let org = tenant(c, q.org.as_deref(), q.platform, Permission::OrgRead).await?;
        let rows = c.s.store.mcp_servers(org).await.map_err(store_err)?;
        let data: Vec<Value> = rows.iter().map(view).collect();
        Ok((StatusCode::OK, json!({"object": "list", "data": data})))
    })
}

pub fn delete(c: &mut Call) -> Pending<'_> {
    Box::pin(async move {
        c.target_path("id");
        let q: Addressed = c.query()?;
        let org = tenant(c, q.org.as_deref(), q.platform, Permission::OrgUpdate).await?;
        let id = c.path("id").to_owned();
        if !c.s.store.delete_mcp_server(org, &id).await.map_err(store_err)? {
            return Err(Denial::new(DenyCode::NotFound));
        }
        c.s.control.reload_mcp_servers().await.map_err(store_err)?;
        Ok((StatusCode::OK, json!({"id": id, "deleted": true})))
    })
}
