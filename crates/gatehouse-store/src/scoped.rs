//! Stored per-tenant policies of one shape: at most one per org (`project_id = ''`) and one per
//! project, as the JSON spec the admin API validated. Guardrail, routing and MCP policies each have
//! a table of this shape. Every replica keeps all of them compiled in memory and re-reads the
//! table on a short poll, so the request path never reads it.

use gatehouse_core::{OrgId, ProjectId};

use crate::{Error, Store, now_ms};

/// Which policies: each kind is a table of the same shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyTable {
    /// gatehouse-guardrails `PolicySpec`, layered over the config's default.
    Guardrails,
    /// gatehouse-gates `RoutingSpec`: which providers, regions and pins a tenant's traffic may
    /// use.
    Routing,
    /// gatehouse-mcp `McpSpec`: which tools, resources and prompts of MCP servers a tenant's
    /// callers may use.
    Mcp,
}

/// The statements of one table, written out at compile time (the table name is never a
/// runtime value).
struct Statements {
    upsert: &'static str,
    one: &'static str,
    delete: &'static str,
    all: &'static str,
}

macro_rules! statements {
    ($table:literal) => {
        Statements {
            upsert: concat!(
                "INSERT INTO ",
                $table,
                " (org_id, project_id, spec, updated_at, updated_by) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (org_id, project_id) DO UPDATE SET spec = excluded.spec, \
                 updated_at = excluded.updated_at, updated_by = excluded.updated_by"
            ),
            one: concat!(
                "SELECT org_id, project_id, spec, updated_at, updated_by FROM ",
                $table,
                " WHERE org_id = $1 AND project_id = $2"
            ),
            delete: concat!("DELETE FROM ", $table, " WHERE org_id = $1 AND project_id = $2"),
            all: concat!(
                "SELECT org_id, project_id, spec, updated_at, updated_by FROM ",
                $table,
                " ORDER BY org_id, project_id"
            ),
        }
    };
}

const GUARDRAILS: Statements = statements!("guardrail_policies");
const ROUTING: Statements = statements!("routing_policies");
const MCP: Statements = statements!("mcp_policies");

impl PolicyTable {
    const fn sql(self) -> &'static Statements {
        match self {
            PolicyTable::Guardrails => &GUARDRAILS,
            PolicyTable::Routing => &ROUTING,
            PolicyTable::Mcp => &MCP,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct ScopedPolicyRow {
    pub org_id: String,
    /// Empty for the org's own policy.
    pub project_id: String,
    /// The spec as JSON.
    pub spec: String,
    pub updated_at: i64,
    pub updated_by: String,
}

fn project_key(project: Option<ProjectId>) -> String {
    project.map(|p| p.to_string()).unwrap_or_default()
}

impl Store {
    pub async fn put_scoped_policy(
        &self,
        table: PolicyTable,
        org: OrgId,
        project: Option<ProjectId>,
        spec: &str,
        actor: &str,
    ) -> Result<(), Error> {
        execute!(self, table.sql().upsert; org.to_string(), project_key(project), spec, now_ms(), actor)?;
        Ok(())
    }

    /// Scoped by org: another org's policy is not found.
    pub async fn scoped_policy(
        &self,
        table: PolicyTable,
        org: OrgId,
        project: Option<ProjectId>,
    ) -> Result<Option<ScopedPolicyRow>, Error> {
        Ok(fetch!(self, query_as, fetch_optional, table.sql().one; org.to_string(), project_key(project))?)
    }

    pub async fn delete_scoped_policy(
        &self,
        table: PolicyTable,
        org: OrgId,
        project: Option<ProjectId>,
    ) -> Result<bool, Error> {
        Ok(execute!(self, table.sql().delete; org.to_string(), project_key(project))? > 0)
    }

    /// Every stored policy of a kind, for the in-memory table.
    pub async fn all_scoped_policies(&self, table: PolicyTable) -> Result<Vec<ScopedPolicyRow>, Error> {
        Ok(fetch!(self, query_as, fetch_all, table.sql().all)?)
    }
}
