//! `gatehouse credentials set|rotate|list|delete`: stored provider credentials through the
//! admin API (docs/SECURITY.md); `gatehouse providers list`: the configured deployments. The value is read from standard input, never from the command line
//! (where other users of the machine could see it in the process list), and never printed.

use std::io::{Read, Write};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::cli::Output;
use crate::client::AdminClient;

/// Whose: an org (id or name) or the platform.
#[derive(Args, Debug)]
pub struct Tenant {
    /// The org (id or name); the operator's own when absent.
    #[arg(long, conflicts_with = "platform")]
    pub org: Option<String>,
    /// The platform's (platform admins only).
    #[arg(long)]
    pub platform: bool,
}

/// Which credential: a provider's, at a scope.
#[derive(Args, Debug)]
pub struct Slot {
    /// The provider, by its configured name.
    #[arg(long)]
    provider: String,
    #[command(flatten)]
    tenant: Tenant,
    /// Only for this project of the org (its id).
    #[arg(long)]
    project: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum CredentialsAction {
    /// Store a new version of a provider's credential, read from standard input; a rotation
    /// when one exists (the old one serves on for `--overlap`).
    Set {
        #[command(flatten)]
        slot: Slot,
        /// How long older versions keep serving (e.g. `10m`, `1h`; at most a week).
        #[arg(long)]
        overlap: Option<humantime::Duration>,
    },
    /// Store the next version of a provider's stored credential (one must exist at the scope),
    /// read from standard input; the current one serves on for `--overlap` (default 10m).
    Rotate {
        #[command(flatten)]
        slot: Slot,
        /// How long the current version keeps serving.
        #[arg(long, default_value = "10m")]
        overlap: humantime::Duration,
    },
    /// Metadata of the stored credentials: id, provider, project, version, fingerprint.
    List {
        #[command(flatten)]
        tenant: Tenant,
    },
    Delete {
        id: String,
        #[command(flatten)]
        tenant: Tenant,
    },
}

pub(crate) fn secret_from_stdin() -> anyhow::Result<String> {
    let mut s = String::new();
    std::io::stdin()
        .take(64 * 1024)
        .read_to_string(&mut s)
        .context("cannot read the credential from standard input")?;
    let s = s.trim().to_owned();
    if s.is_empty() {
        bail!("no credential on standard input");
    }
    Ok(s)
}

pub(crate) fn query(t: &Tenant) -> Vec<(&'static str, String)> {
    match (&t.org, t.platform) {
        (_, true) => vec![("platform", "true".to_owned())],
        (Some(o), false) => vec![("org", o.clone())],
        (None, false) => Vec::new(),
    }
}

fn line(v: &Value) -> String {
    let s = |k: &str| v[k].as_str().unwrap_or("-").to_owned();
    format!("{}  {}  project={}  v{}  {}", s("id"), s("provider"), s("project_id"), v["version"], s("hint"))
}

impl AdminClient {
    /// A new version from standard input.
    async fn store_credential(&self, slot: &Slot, overlap: Option<humantime::Duration>) -> anyhow::Result<Value> {
        let mut body = json!({"provider": slot.provider, "secret": secret_from_stdin()?});
        match (&slot.tenant.org, slot.tenant.platform) {
            (_, true) => body["platform"] = json!(true),
            (Some(o), false) => body["org"] = json!(o),
            (None, false) => {}
        }
        if let Some(p) = &slot.project {
            body["project"] = json!(p);
        }
        if let Some(d) = overlap {
            body["overlap_seconds"] = json!(std::time::Duration::from(d).as_secs());
        }
        self.call(reqwest::Method::POST, "/admin/v1/credentials", Some(body), &[]).await
    }

    /// `gatehouse providers list`: each configured deployment and its breaker on the replica.
    pub async fn providers(&self, output: Output) -> anyhow::Result<()> {
        let v = self.call(reqwest::Method::GET, "/admin/v1/deployments", None, &[]).await?;
        let mut out = std::io::stdout().lock();
        if output == Output::Json {
            writeln!(out, "{v}")?;
            return Ok(());
        }
        for d in v["data"].as_array().into_iter().flatten() {
            let s = |k: &str| d[k].as_str().unwrap_or("-").to_owned();
            writeln!(
                out,
                "{}  {} -> {}  region={}  priority={} weight={}  breaker={}",
                s("provider"),
                s("model"),
                s("provider_model"),
                s("region"),
                d["priority"],
                d["weight"],
                d["breaker"]["state"].as_str().unwrap_or("-")
            )?;
        }
        Ok(())
    }

    pub async fn credentials(&self, action: CredentialsAction, output: Output) -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        let v = match action {
            CredentialsAction::Set { slot, overlap } => self.store_credential(&slot, overlap).await?,
            CredentialsAction::Rotate { slot, overlap } => {
                let listed =
                    self.call(reqwest::Method::GET, "/admin/v1/credentials", None, &query(&slot.tenant)).await?;
                let at_scope = |r: &&Value| {
                    r["provider"] == json!(slot.provider)
                        && r["project_id"].as_str().unwrap_or("") == slot.project.as_deref().unwrap_or("")
                };
                if !listed["data"].as_array().is_some_and(|rows| rows.iter().any(|r| at_scope(&r))) {
                    bail!(
                        "no stored credential of {} at this scope to rotate; `gatehouse credentials set` stores a first one",
                        slot.provider
                    );
                }
                self.store_credential(&slot, Some(overlap)).await?
            }
            CredentialsAction::List { tenant } => {
                self.call(reqwest::Method::GET, "/admin/v1/credentials", None, &query(&tenant)).await?
            }
            CredentialsAction::Delete { id, tenant } => {
                let path = format!("/admin/v1/credentials/{id}");
                self.call(reqwest::Method::DELETE, &path, None, &query(&tenant)).await?
            }
        };
        print(&mut out, output, &v, line)?;
        Ok(())
    }
}

/// An admin answer on standard output: as JSON, or one line per row (a listing), per deleted
/// object, or for the one object answered.
pub(crate) fn print(out: &mut impl Write, output: Output, v: &Value, line: fn(&Value) -> String) -> anyhow::Result<()> {
    match output {
        Output::Json => writeln!(out, "{v}")?,
        Output::Table => match v["data"].as_array() {
            Some(rows) => {
                for r in rows {
                    writeln!(out, "{}", line(r))?;
                }
            }
            None if v["deleted"] == json!(true) => writeln!(out, "deleted {}", v["id"])?,
            None => writeln!(out, "{}", line(v))?,
        },
    }
    Ok(())
}
