//! `gatehouse mcp servers add|list|remove`: upstream MCP servers through the admin API
//! (docs/MCP.md). A credential for the server is read from standard input (`--credential-stdin`),
//! never from the command line; the identity key a registration returns is printed once.

use std::io::Write;

use clap::Subcommand;
use serde_json::{Value, json};

use crate::cli::Output;
use crate::client::AdminClient;
use crate::credentials_cmd::{Tenant, print, query, secret_from_stdin};

#[derive(Subcommand, Debug)]
pub enum McpAction {
    /// Upstream MCP servers callers reach at `/mcp/{name}`.
    #[command(subcommand)]
    Servers(ServersAction),
}

#[derive(Subcommand, Debug)]
pub enum ServersAction {
    /// Register a server; prints its identity key once (the server verifies the gateway's
    /// signed identity headers with it).
    Add {
        /// The name callers use (`/mcp/{name}`, scopes `mcp:tool:{name}/...`).
        name: String,
        /// The server's Streamable HTTP endpoint.
        #[arg(long)]
        url: String,
        #[command(flatten)]
        tenant: Tenant,
        /// Only for this project of the org (its id).
        #[arg(long)]
        project: Option<String>,
        /// Read the header value the gateway presents to the server (e.g. `Bearer ...`) from
        /// standard input.
        #[arg(long)]
        credential_stdin: bool,
        /// The header the credential goes in (default `authorization`).
        #[arg(long, requires = "credential_stdin")]
        credential_header: Option<String>,
        /// The longest a call may take (e.g. `30s`).
        #[arg(long)]
        timeout: Option<humantime::Duration>,
        #[arg(long)]
        max_request_bytes: Option<u32>,
        #[arg(long)]
        max_response_bytes: Option<u32>,
    },
    List {
        #[command(flatten)]
        tenant: Tenant,
    },
    Remove {
        id: String,
        #[command(flatten)]
        tenant: Tenant,
    },
}

fn line(v: &Value) -> String {
    let s = |k: &str| v[k].as_str().unwrap_or("-").to_owned();
    format!(
        "{}  {}  {}  project={}  timeout={}ms  credential={}",
        s("id"),
        s("name"),
        s("url"),
        s("project_id"),
        v["timeout_ms"],
        s("credential_hint")
    )
}

impl AdminClient {
    pub async fn mcp(&self, action: McpAction, output: Output) -> anyhow::Result<()> {
        let McpAction::Servers(action) = action;
        let mut out = std::io::stdout().lock();
        let v = match action {
            ServersAction::Add {
                name,
                url,
                tenant,
                project,
                credential_stdin,
                credential_header,
                timeout,
                max_request_bytes,
                max_response_bytes,
            } => {
                let mut body = json!({"name": name, "url": url});
                match (&tenant.org, tenant.platform) {
                    (_, true) => body["platform"] = json!(true),
                    (Some(o), false) => body["org"] = json!(o),
                    (None, false) => {}
                }
                let fields = [
                    ("project", project.map(|p| json!(p))),
                    ("credential", if credential_stdin { Some(json!(secret_from_stdin()?)) } else { None }),
                    ("credential_header", credential_header.map(|h| json!(h))),
                    ("timeout_ms", timeout.map(|t| json!(std::time::Duration::from(t).as_millis()))),
                    ("max_request_bytes", max_request_bytes.map(|b| json!(b))),
                    ("max_response_bytes", max_response_bytes.map(|b| json!(b))),
                ];
                for (k, v) in fields {
                    if let Some(v) = v {
                        body[k] = v;
                    }
                }
                self.call(reqwest::Method::POST, "/admin/v1/mcp/servers", Some(body), &[]).await?
            }
            ServersAction::List { tenant } => {
                self.call(reqwest::Method::GET, "/admin/v1/mcp/servers", None, &query(&tenant)).await?
            }
            ServersAction::Remove { id, tenant } => {
                let path = format!("/admin/v1/mcp/servers/{id}");
                self.call(reqwest::Method::DELETE, &path, None, &query(&tenant)).await?
            }
        };
        print(&mut out, output, &v, line)?;
        if output == Output::Table
            && let Some(k) = v["identity_key"].as_str()
        {
            writeln!(out, "identity key (shown once; key id {}): {k}", v["identity_key_id"])?;
        }
        Ok(())
    }
}
