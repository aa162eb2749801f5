//! Upstream MCP servers (issue #20): registered by the platform (org ''), an org (project '')
//! or a project, by name. The credential the gateway presents is sealed (gatehouse-security's
//! `Envelope`, under the tenant's data key); the store holds only the sealed value and a hint.

use gatehouse_core::OrgId;

use crate::{Error, Store};

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct McpServerRow {
    pub id: String,
    /// Empty for the platform's.
    pub org_id: String,
    /// Empty for an org's own (or the platform's).
    pub project_id: String,
    pub name: String,
    pub url: String,
    /// The header the credential is sent in; empty: no credential.
    pub auth_header: String,
    /// The tenant's data key version the credential is sealed under.
    pub key_version: i64,
    pub sealed: String,
    /// A fingerprint for people: never enough to use.
    pub hint: String,
    pub timeout_ms: i64,
    pub max_request_bytes: i64,
    pub max_response_bytes: i64,
    pub created_at: i64,
    pub created_by: String,
}

/// `SELECT <every column> FROM mcp_servers ` as a literal (static SQL only).
macro_rules! select_servers {
    () => {
        "SELECT id, org_id, project_id, name, url, auth_header, key_version, sealed, hint, timeout_ms, \
         max_request_bytes, max_response_bytes, created_at, created_by FROM mcp_servers "
    };
}

impl Store {
    /// Registers a server; a name taken at the same scope is a conflict (`Error` from the
    /// unique constraint: `Error::Conflict`).
    pub async fn insert_mcp_server(&self, r: &McpServerRow) -> Result<(), Error> {
        execute!(self,
            "INSERT INTO mcp_servers (id, org_id, project_id, name, url, auth_header, key_version, sealed, hint, \
             timeout_ms, max_request_bytes, max_response_bytes, created_at, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)";
            &r.id, &r.org_id, &r.project_id, &r.name, &r.url, &r.auth_header, r.key_version, &r.sealed, &r.hint,
            r.timeout_ms, r.max_request_bytes, r.max_response_bytes, r.created_at, &r.created_by)?;
        Ok(())
    }

    /// One tenant's servers (`None`: the platform's), by name, at most 1000.
    pub async fn mcp_servers(&self, org: Option<OrgId>) -> Result<Vec<McpServerRow>, Error> {
        let o = org.map(|o| o.to_string()).unwrap_or_default();
        const SQL: &str = concat!(select_servers!(), "WHERE org_id = $1 ORDER BY name, project_id LIMIT 1000");
        Ok(fetch!(self, query_as, fetch_all, SQL; &o)?)
    }

    /// Every registered server, for the data plane's table.
    pub async fn all_mcp_servers(&self) -> Result<Vec<McpServerRow>, Error> {
        const SQL: &str = concat!(select_servers!(), "ORDER BY org_id, project_id, name");
        Ok(fetch!(self, query_as, fetch_all, SQL)?)
    }

    /// Removes one of a tenant's servers; another tenant's is not found.
    pub async fn delete_mcp_server(&self, org: Option<OrgId>, id: &str) -> Result<bool, Error> {
        let o = org.map(|o| o.to_string()).unwrap_or_default();
        Ok(execute!(self, "DELETE FROM mcp_servers WHERE org_id = $1 AND id = $2"; &o, id)? > 0)
    }
}
