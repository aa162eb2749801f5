//! `gatehouse token`: capability tokens (macaroons). Minting, listing, revoking and key
//! rotation go through the admin API; `delegate` asks the data plane for a registered child;
//! `attenuate` and `inspect` work offline on a token read from standard input (never from a
//! flag, which would show in process listings and shell history).

use std::io::{Read, Write};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use comfy_table::Table;
use gatehouse_tokens::macaroon::{Encoding, Limits, Macaroon};
use gatehouse_tokens::{Caveat, TokenIdent};
use serde_json::{Value, json};

use crate::cli::{AdminConn, Output, fail};
use crate::client::AdminClient;

#[derive(Subcommand, Debug)]
pub enum TokenAction {
    /// Mint a capability token for a project (admin API); printed once.
    Mint {
        #[arg(long)]
        name: String,
        #[arg(long)]
        org: Option<String>,
        #[arg(long)]
        project: Option<String>,
        #[command(flatten)]
        narrow: Narrow,
    },
    /// List registered capability tokens of an org (admin API).
    List {
        #[arg(long)]
        org: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
    },
    /// Revoke a token and every token delegated from it (admin API).
    Revoke {
        id: String,
        #[arg(long)]
        org: Option<String>,
    },
    /// Show the org's root key versions (admin API).
    Keys {
        #[arg(long)]
        org: Option<String>,
    },
    /// Make a new root key version current (admin API). Older tokens keep verifying until
    /// they expire, unless --now (after a suspected leak).
    RotateKey {
        #[arg(long)]
        org: Option<String>,
        #[arg(long)]
        now: bool,
    },
    /// Ask the gateway for a registered child of the token on standard input (needs the
    /// `tokens:delegate` scope); the child is printed.
    Delegate {
        /// The data plane's URL.
        #[arg(long, env = "GATEHOUSE_URL", default_value = "http://127.0.0.1:8080")]
        url: String,
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        narrow: Narrow,
    },
    /// Add caveats to the token on standard input, offline; prints the narrower token.
    Attenuate {
        /// A caveat in the documented grammar, e.g. "scope = chat:completions"; repeatable.
        #[arg(long = "caveat", required = true)]
        caveats: Vec<String>,
        #[arg(long, value_enum, default_value = "url")]
        format: TokenFormat,
    },
    /// Print the identifier and caveats of the token on standard input (no verification).
    Inspect,
}

#[derive(Args, Debug, Default)]
pub struct Narrow {
    /// Comma-separated scope patterns, e.g. chat:*,embeddings:create.
    #[arg(long, value_delimiter = ',')]
    scopes: Option<Vec<String>>,
    /// Comma-separated model allow-list (canonical names).
    #[arg(long, value_delimiter = ',')]
    models: Option<Vec<String>>,
    /// Lifetime, e.g. 1h, 7d (at most 90d).
    #[arg(long)]
    expires_in: Option<humantime::Duration>,
    /// Spend cap in US dollars for this token and its descendants.
    #[arg(long)]
    budget_usd: Option<String>,
    #[arg(long)]
    rpm: Option<u32>,
    /// Comma-separated CIDRs the token may be used from.
    #[arg(long, value_delimiter = ',')]
    ips: Option<Vec<String>>,
}

impl Narrow {
    fn into_json(self, mut body: Value) -> Value {
        if let Some(s) = self.scopes {
            body["scopes"] = json!(s);
        }
        if let Some(m) = self.models {
            body["models"] = json!(m);
        }
        if let Some(d) = self.expires_in {
            body["expires_in_seconds"] = json!(Duration::from(d).as_secs());
        }
        if let Some(b) = self.budget_usd {
            body["budget_usd"] = json!(b);
        }
        if let Some(r) = self.rpm {
            body["rpm"] = json!(r);
        }
        if let Some(i) = self.ips {
            body["ips"] = json!(i);
        }
        body
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TokenFormat {
    /// V2 binary, URL-safe base64 (libmacaroons' and pymacaroons' default).
    Url,
    /// V2 binary, standard base64.
    Std,
    /// V2 JSON.
    Json,
}

fn stdin_token() -> anyhow::Result<String> {
    let mut s = String::new();
    std::io::stdin().take(256 * 1024).read_to_string(&mut s).context("cannot read the token from standard input")?;
    let s = s.trim().to_owned();
    if s.is_empty() {
        bail!("no token on standard input");
    }
    Ok(s)
}

pub async fn run(conn: AdminConn, action: TokenAction) -> std::process::ExitCode {
    let r = match action {
        TokenAction::Attenuate { caveats, format } => attenuate(&caveats, format),
        TokenAction::Inspect => inspect(conn.output),
        TokenAction::Delegate { url, name, narrow } => delegate(&url, name, narrow, conn.output).await,
        admin_action => match AdminClient::new(&conn) {
            Ok(c) => admin(&c, admin_action, conn.output).await,
            Err(e) => Err(e),
        },
    };
    match r {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => fail(&format!("{e:#}")),
    }
}

fn attenuate(caveats: &[String], format: TokenFormat) -> anyhow::Result<()> {
    let text = stdin_token()?;
    let mut m = Macaroon::decode(&text, &Limits::default()).context("not a macaroon")?;
    for c in caveats {
        // Only caveats the gateway understands: an unknown one would make the token useless.
        let parsed = Caveat::parse(c.as_bytes()).map_err(|e| anyhow::anyhow!("caveat {c:?}: {e}"))?;
        if matches!(parsed, Caveat::Org(_) | Caveat::Project(_) | Caveat::Delegation(_)) {
            bail!("caveat {c:?}: org, project and delegation caveats are set by the gateway");
        }
        m.add_first_party(parsed.to_string());
    }
    let enc = match format {
        TokenFormat::Url => Encoding::Base64Url,
        TokenFormat::Std => Encoding::Base64Std,
        TokenFormat::Json => Encoding::Json,
    };
    writeln!(std::io::stdout(), "{}", m.encode(enc))?;
    Ok(())
}

fn inspect(output: Output) -> anyhow::Result<()> {
    let text = stdin_token()?;
    let m = Macaroon::decode(&text, &Limits::default()).context("not a macaroon")?;
    let ident = TokenIdent::parse(m.identifier());
    let caveats: Vec<Value> = m
        .caveats()
        .iter()
        .map(|c| match &c.vid {
            None => json!({"caveat": String::from_utf8_lossy(&c.id)}),
            Some(_) => json!({"third_party": c.location, "id": String::from_utf8_lossy(&c.id)}),
        })
        .collect();
    let v = json!({
        "identifier": String::from_utf8_lossy(m.identifier()),
        "org_id": ident.map(|i| i.org.to_string()),
        "key_version": ident.map(|i| i.key_version),
        "token_id": ident.map(|i| i.token.to_string()),
        "location": m.location(),
        "caveats": caveats,
    });
    let mut out = std::io::stdout().lock();
    match output {
        Output::Json => writeln!(out, "{v}")?,
        Output::Table => {
            writeln!(out, "identifier: {}", v["identifier"].as_str().unwrap_or(""))?;
            for c in &caveats {
                match c.get("caveat") {
                    Some(p) => writeln!(out, "  caveat: {}", p.as_str().unwrap_or(""))?,
                    None => writeln!(out, "  third-party caveat at {}", c["third_party"].as_str().unwrap_or("?"))?,
                }
            }
            writeln!(out, "(not verified: only the gateway can check the signature)")?;
        }
    }
    Ok(())
}

async fn delegate(url: &str, name: Option<String>, narrow: Narrow, output: Output) -> anyhow::Result<()> {
    let token = stdin_token()?;
    let mut body = json!({});
    if let Some(n) = name {
        body["name"] = json!(n);
    }
    let body = narrow.into_json(body);
    let resp = crate::client::http_client()?
        .post(format!("{}/v1/tokens/delegate", url.trim_end_matches('/')))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("cannot reach the gateway at {url}"))?;
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("{} {}", status.as_u16(), v["error"]["message"].as_str().unwrap_or("request failed"));
    }
    print_minted(&v, output)
}

fn print_minted(v: &Value, output: Output) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match output {
        Output::Json => writeln!(out, "{v}")?,
        Output::Table => {
            writeln!(out, "id:      {}", v["id"].as_str().unwrap_or(""))?;
            if let Some(p) = v["parent_id"].as_str() {
                writeln!(out, "parent:  {p}")?;
            }
            for c in v["caveats"].as_array().into_iter().flatten() {
                writeln!(out, "caveat:  {}", c.as_str().unwrap_or(""))?;
            }
            writeln!(out, "token:   {}", v["token"].as_str().unwrap_or(""))?;
            writeln!(out, "\nThe token is shown only this once (it is not stored); keep it like a password.")?;
        }
    }
    Ok(())
}

async fn admin(c: &AdminClient, action: TokenAction, output: Output) -> anyhow::Result<()> {
    use reqwest::Method;
    let org_q = |org: Option<String>| org.map(|o| ("org", o)).into_iter().collect::<Vec<_>>();
    let mut out = std::io::stdout().lock();
    match action {
        TokenAction::Mint { name, org, project, narrow } => {
            let mut body = json!({"name": name});
            if let Some(o) = org {
                body["org"] = json!(o);
            }
            if let Some(p) = project {
                body["project"] = json!(p);
            }
            if narrow.expires_in.is_none() {
                body["expires_in_seconds"] = json!(3600);
            }
            let body = narrow.into_json(body);
            let v = c.call(Method::POST, "/admin/v1/capabilities", Some(body), &[]).await?;
            drop(out);
            return print_minted(&v, output);
        }
        TokenAction::List { org, limit } => {
            let mut q = org_q(org);
            if let Some(l) = limit {
                q.push(("limit", l.to_string()));
            }
            let v = c.call(Method::GET, "/admin/v1/capabilities", None, &q).await?;
            match output {
                Output::Json => writeln!(out, "{v}")?,
                Output::Table => {
                    let mut t = Table::new();
                    t.set_header(["ID", "NAME", "PARENT", "CAVEATS", "EXPIRES", "REVOKED"]);
                    for k in v["data"].as_array().into_iter().flatten() {
                        let caveats = k["caveats"].as_array().map_or(String::new(), |c| {
                            c.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("; ")
                        });
                        t.add_row([
                            k["id"].as_str().unwrap_or("").to_owned(),
                            k["name"].as_str().unwrap_or("").to_owned(),
                            k["parent_id"].as_str().unwrap_or("-").to_owned(),
                            caveats,
                            k["expires_at"].as_i64().map_or("-".into(), |t| t.to_string()),
                            k["revoked_at"].as_i64().map_or("-".into(), |t| t.to_string()),
                        ]);
                    }
                    writeln!(out, "{t}")?;
                }
            }
        }
        TokenAction::Revoke { id, org } => {
            let v = c.call(Method::POST, &format!("/admin/v1/capabilities/{id}/revoke"), None, &org_q(org)).await?;
            match output {
                Output::Json => writeln!(out, "{v}")?,
                Output::Table => writeln!(out, "revoked {} token(s) (the token and its delegations)", v["revoked"])?,
            }
        }
        TokenAction::Keys { org } => {
            let v = c.call(Method::GET, "/admin/v1/capability-keys", None, &org_q(org)).await?;
            let columns =
                [("VERSION", "version"), ("CURRENT", "current"), ("CREATED", "created_at"), ("RETIRES", "retire_at")];
            crate::client::print(&v, output, &columns)?;
        }
        TokenAction::RotateKey { org, now } => {
            let mut body = json!({"retire": if now { "now" } else { "at_expiry" }});
            if let Some(o) = org {
                body["org"] = json!(o);
            }
            let v = c.call(Method::POST, "/admin/v1/capability-keys/rotate", Some(body), &[]).await?;
            match output {
                Output::Json => writeln!(out, "{v}")?,
                Output::Table => writeln!(out, "root key version {} is current", v["version"])?,
            }
        }
        TokenAction::Attenuate { .. } | TokenAction::Inspect | TokenAction::Delegate { .. } => {}
    }
    Ok(())
}
