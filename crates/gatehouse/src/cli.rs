//! The command line. `serve` runs the gateway; `validate` checks a config file; `keys` talks
//! to a running gateway's admin API with an admin token, like kubectl talks to its API server.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use gatehouse_config::Config;

use crate::client::AdminClient;

/// The release and the commit it was built from (build.rs).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("GATEHOUSE_COMMIT"), ")");

#[derive(Parser, Debug)]
#[command(name = "gatehouse", version = VERSION, about = "A self-hosted, security-first AI gateway")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum ProvidersAction {
    /// Every deployment: provider, model, provider model, region, priority, weight, breaker.
    List,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the gateway (data plane and control plane).
    Serve(ServeArgs),
    /// Scan the posture of the config `serve` would run with, its host and its store:
    /// findings with ids, severity, evidence and the fix. Exit code: the worst severity
    /// (0 none or info, 2 low, 3 medium, 4 high, 5 critical; 1 the scan failed).
    Doctor {
        #[command(flatten)]
        serve: ServeArgs,
        /// `table` for people, `json` for programs.
        #[arg(long, value_enum, default_value_t)]
        format: crate::doctor::Format,
        /// A RustSec advisory database checkout (offline) to check this binary's dependencies
        /// against; without one they are not checked.
        #[arg(long, env = "GATEHOUSE_ADVISORY_DB")]
        advisory_db: Option<PathBuf>,
        /// An active admin token not used for this long is reported (`admin_tokens.unused`).
        #[arg(long, default_value = "90days", value_parser = humantime::parse_duration)]
        unused_after: std::time::Duration,
    },
    /// Back up the embedded store into a sealed archive, online (`backup verify`: check one).
    #[command(args_conflicts_with_subcommands = true)]
    Backup {
        #[command(subcommand)]
        action: Option<crate::backup_cmd::BackupAction>,
        #[command(flatten)]
        create: crate::backup_cmd::CreateArgs,
    },
    /// Restore the embedded store from a backup archive, into an empty data directory, after
    /// checking the whole archive and its audit chains.
    Restore {
        /// The archive.
        file: PathBuf,
        #[command(flatten)]
        local: crate::audit_cmd::Local,
    },
    /// Check a config file and report every problem with its path.
    Validate {
        /// The config file (TOML).
        file: PathBuf,
    },
    /// Manage API keys through a running gateway's admin API.
    Keys {
        #[command(flatten)]
        conn: AdminConn,
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Manage organizations (platform admins create, disable and enable them).
    Orgs {
        #[command(flatten)]
        conn: AdminConn,
        #[command(subcommand)]
        action: OrgsAction,
    },
    /// Manage the projects of an organization.
    Projects {
        #[command(flatten)]
        conn: AdminConn,
        #[command(subcommand)]
        action: ProjectsAction,
    },
    /// Save the control plane's URL and an admin token (read from standard input) to the
    /// profile file (0600) that `keys`, `orgs`, `projects` and `members` fall back to.
    Login {
        /// The control plane's URL.
        #[arg(long, default_value = "http://127.0.0.1:8081")]
        admin_url: String,
    },
    /// Manage the members (people and service accounts) of an organization.
    Members {
        #[command(flatten)]
        conn: AdminConn,
        #[command(subcommand)]
        action: MembersAction,
    },
    /// Capability tokens (macaroons): mint, list, revoke, rotate the root key (admin API);
    /// delegate (data plane); attenuate and inspect (offline).
    Token {
        #[command(flatten)]
        conn: AdminConn,
        #[command(subcommand)]
        action: crate::token_cmd::TokenAction,
    },
    /// Rate limits and budgets of an org, a project or a key (docs/LIMITS.md).
    Limits {
        #[command(flatten)]
        conn: AdminConn,
        #[command(subcommand)]
        action: LimitsAction,
    },
    /// What was used and spent, from the usage ledger: one row per UTC day, project,
    /// credential and model.
    Usage {
        #[command(flatten)]
        conn: AdminConn,
        #[command(flatten)]
        q: UsageArgs,
    },
    /// Provider credentials stored sealed per tenant (write-only; the value is read from
    /// standard input).
    Credentials {
        #[command(flatten)]
        conn: AdminConn,
        #[command(subcommand)]
        action: crate::credentials_cmd::CredentialsAction,
    },
    /// The MCP gateway: upstream MCP servers callers reach at `/mcp/{name}`.
    Mcp {
        #[command(flatten)]
        conn: AdminConn,
        #[command(subcommand)]
        action: crate::mcp_cmd::McpAction,
    },
    /// Print a fresh admin token for `server.bootstrap_admin_token`: put it in your secret
    /// store, and an empty store takes it as its first platform admin token instead of
    /// generating one and printing it in the log. Nothing is stored here.
    BootstrapToken,
    /// The master key: generate one, stage a new one, rotate every stored secret onto it
    /// (run beside the store, like `audit verify`).
    MasterKey {
        #[command(subcommand)]
        action: crate::master_key_cmd::MasterKeyAction,
    },
    /// The configured providers' deployments and their circuit breakers.
    Providers {
        #[command(flatten)]
        conn: AdminConn,
        #[command(subcommand)]
        action: ProvidersAction,
    },
    /// Measure the guardrails on your own labelled data.
    Guardrails {
        #[command(subcommand)]
        action: crate::guardrails_cmd::GuardrailsAction,
    },
    /// Mint a platform-admin token directly in the store, without any token: the way back in
    /// when every admin token and console passkey is lost (run beside the store, like
    /// `audit verify`; needs the master key).
    RecoverAdmin {
        #[command(flatten)]
        local: crate::audit_cmd::Local,
        /// The new token's name, as token lists show it.
        #[arg(long, default_value = "recovery")]
        name: String,
    },
    /// Verify, export and inspect the tamper-evident audit trail.
    Audit {
        #[command(subcommand)]
        action: crate::audit_cmd::AuditAction,
    },
}

#[derive(Subcommand, Debug)]
pub enum OrgsAction {
    Create {
        name: String,
    },
    List,
    /// Disables the org and every key in it (within a second on every replica).
    Disable {
        org: String,
    },
    Enable {
        org: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ProjectsAction {
    Create {
        /// Org id or name.
        #[arg(long)]
        org: String,
        name: String,
        /// Comma-separated model allow-list (canonical names).
        #[arg(long, value_delimiter = ',')]
        models: Option<Vec<String>>,
    },
    List {
        #[arg(long)]
        org: String,
    },
    /// Disables the project and every key in it.
    Disable {
        #[arg(long)]
        org: String,
        project: String,
    },
    Enable {
        #[arg(long)]
        org: String,
        project: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum MembersAction {
    /// Adds a person (or, with --service, a service account) with a role, or changes the role.
    Add {
        #[arg(long)]
        org: String,
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// viewer, member or org_admin.
        #[arg(long)]
        role: String,
        #[arg(long)]
        service: bool,
    },
    List {
        #[arg(long)]
        org: String,
    },
    /// Removes a member and revokes the admin tokens that acted for them in the org.
    Remove {
        #[arg(long)]
        org: String,
        user_id: String,
    },
}

/// Which scope a `limits` command addresses: the org, or one of its projects or keys.
#[derive(Args, Debug, Clone)]
pub struct LimitTarget {
    /// Org id or name.
    #[arg(long)]
    pub org: String,
    /// Project id or name (else the org itself).
    #[arg(long, conflicts_with = "key")]
    pub project: Option<String>,
    /// Key id (else the org itself).
    #[arg(long)]
    pub key: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum LimitsAction {
    /// The scope's limits and each budget's standing this period.
    Show {
        #[command(flatten)]
        target: LimitTarget,
    },
    /// Replaces the scope's limits, e.g.
    /// --spec '{"rpm":600,"budgets":[{"period":"monthly","usd":250,"alert_at":[80]}]}'.
    Set {
        #[command(flatten)]
        target: LimitTarget,
        #[arg(long)]
        spec: String,
    },
    /// Removes the scope's own limits.
    Clear {
        #[command(flatten)]
        target: LimitTarget,
    },
}

#[derive(Args, Debug, Clone)]
pub struct UsageArgs {
    /// Org id or name.
    #[arg(long)]
    pub org: String,
    /// Project id or name.
    #[arg(long)]
    pub project: Option<String>,
    /// An API key's id.
    #[arg(long, conflicts_with = "token")]
    pub key: Option<String>,
    /// A capability token's id.
    #[arg(long)]
    pub token: Option<String>,
    #[arg(long)]
    pub model: Option<String>,
    /// First UTC day, YYYY-MM-DD.
    #[arg(long)]
    pub from: Option<String>,
    /// Last UTC day, YYYY-MM-DD.
    #[arg(long)]
    pub to: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Config file; without one the embedded defaults apply (SQLite, mock provider).
    #[arg(long, env = "GATEHOUSE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data plane listen address (default 127.0.0.1:8080).
    #[arg(long, env = "GATEHOUSE_DATA_LISTEN")]
    pub data_listen: Option<String>,
    /// Control plane listen address (default 127.0.0.1:8081).
    #[arg(long, env = "GATEHOUSE_ADMIN_LISTEN")]
    pub admin_listen: Option<String>,
    /// Directory for the SQLite database and the generated master key (default ./gatehouse-data).
    #[arg(long, env = "GATEHOUSE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log format.
    #[arg(long, env = "GATEHOUSE_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormatArg>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormatArg {
    Text,
    Json,
}

#[derive(Args, Debug, Clone)]
pub struct AdminConn {
    /// The control plane's URL (default: the profile's, else http://127.0.0.1:8081).
    #[arg(long, env = "GATEHOUSE_ADMIN_URL", global = true)]
    pub admin_url: Option<String>,
    /// An admin token (gtha_...). Prefer the environment variable over the flag: flags show
    /// up in process listings.
    #[arg(long, env = "GATEHOUSE_ADMIN_TOKEN", hide_env_values = true, global = true)]
    pub admin_token: Option<String>,
    /// Output format.
    #[arg(long, short, value_enum, default_value = "table", global = true)]
    pub output: Output,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum KeysAction {
    /// Create an API key; its secret is printed once.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        org: Option<String>,
        #[arg(long)]
        project: Option<String>,
        /// Comma-separated model allow-list (canonical names); default: every model.
        #[arg(long, value_delimiter = ',')]
        models: Option<Vec<String>>,
        /// Lifetime, e.g. 30d, 12h.
        #[arg(long)]
        expires_in: Option<humantime::Duration>,
    },
    /// List API keys (never their secrets).
    List {
        #[arg(long)]
        org: Option<String>,
        #[arg(long)]
        project: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
    },
    /// Revoke an API key by id; takes effect on the data plane within a second.
    Revoke {
        id: String,
        /// The key's org (name); default: your own, or `default` for platform admins.
        #[arg(long)]
        org: Option<String>,
    },
    /// Replace a key's secret, keeping its settings; the old secret stops at once or after --grace.
    Rotate {
        id: String,
        #[arg(long)]
        org: Option<String>,
        /// How long the old secret keeps working, e.g. 10m (at most 24h).
        #[arg(long)]
        grace: Option<humantime::Duration>,
    },
}

/// Prints an error to stderr and returns the failure exit code.
pub fn fail(msg: &str) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "error: {msg}");
    ExitCode::FAILURE
}

/// Runs one admin-API command and maps its result to an exit code.
async fn admin<F, Fut>(conn: &AdminConn, f: F) -> ExitCode
where
    F: FnOnce(AdminClient, Output) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let client = match AdminClient::new(conn) {
        Ok(c) => c,
        Err(e) => return fail(&format!("{e:#}")),
    };
    match f(client, conn.output).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&format!("{e:#}")),
    }
}

pub async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve(args) => match crate::serve::run(args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&format!("{e:#}")),
        },
        Command::Backup { action, create } => {
            let done = match action {
                None => crate::backup_cmd::create(create).await,
                Some(crate::backup_cmd::BackupAction::Verify { file, local }) => {
                    crate::backup_cmd::verify(&file, &local).await
                }
            };
            match done {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&format!("{e:#}")),
            }
        }
        Command::Restore { file, local } => match crate::backup_cmd::restore(&file, &local).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&format!("{e:#}")),
        },
        Command::Doctor { serve, format, advisory_db, unused_after } => {
            match crate::doctor::run(&serve, format, advisory_db.as_deref(), unused_after).await {
                Ok(code) => ExitCode::from(code),
                Err(e) => fail(&format!("{e:#}")),
            }
        }
        // the TLS files too: an expired certificate is found before the deploy, not at it
        Command::Validate { file } => {
            let checked = match Config::load(&file) {
                Ok(c) => crate::serve::listener_tls(&c.server.tls).await.map(drop).map_err(|e| format!("{e:#}")),
                Err(e) => Err(e.to_string()),
            };
            match checked {
                Ok(()) => {
                    let _ = writeln!(std::io::stdout(), "{}: ok", file.display());
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&format!("{}: {e}", file.display())),
            }
        }
        Command::Login { admin_url } => match crate::profile::login(&admin_url).await {
            Ok(path) => {
                let _ = writeln!(std::io::stdout(), "logged in; profile written to {}", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => fail(&format!("{e:#}")),
        },
        Command::Keys { conn, action } => admin(&conn, |c, out| async move { c.keys(action, out).await }).await,
        Command::Orgs { conn, action } => admin(&conn, |c, out| async move { c.orgs(action, out).await }).await,
        Command::Projects { conn, action } => admin(&conn, |c, out| async move { c.projects(action, out).await }).await,
        Command::Members { conn, action } => admin(&conn, |c, out| async move { c.members(action, out).await }).await,
        Command::Limits { conn, action } => admin(&conn, |c, out| async move { c.limits(action, out).await }).await,
        Command::Usage { conn, q } => admin(&conn, |c, out| async move { c.usage(q, out).await }).await,
        Command::Token { conn, action } => crate::token_cmd::run(conn, action).await,
        Command::Credentials { conn, action } => {
            admin(&conn, |c, out| async move { c.credentials(action, out).await }).await
        }
        Command::Mcp { conn, action } => admin(&conn, |c, out| async move { c.mcp(action, out).await }).await,
        Command::Providers { conn, action: ProvidersAction::List } => {
            admin(&conn, |c, out| async move { c.providers(out).await }).await
        }
        Command::BootstrapToken => {
            use secrecy::ExposeSecret;
            let token = gatehouse_security::generate_key(gatehouse_security::KeyKind::Admin);
            match writeln!(std::io::stdout(), "{}", token.expose_secret()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&format!("cannot write the token: {e}")),
            }
        }
        Command::MasterKey { action } => match crate::master_key_cmd::run(action).await {
            Ok(code) => code,
            Err(e) => fail(&format!("{e:#}")),
        },
        Command::Audit { action } => audit(action).await,
        Command::RecoverAdmin { local, name } => match crate::recover_cmd::run(&local, &name).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&format!("{e:#}")),
        },
        Command::Guardrails { action } => match crate::guardrails_cmd::run(action) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&format!("{e:#}")),
        },
    }
}

async fn audit(action: crate::audit_cmd::AuditAction) -> ExitCode {
    use crate::audit_cmd::AuditAction;
    match action {
        AuditAction::Verify(a) => match crate::audit_cmd::verify(a).await {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => fail(&format!("{e:#}")),
        },
        AuditAction::Key { local } => match crate::audit_cmd::key(&local).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&format!("{e:#}")),
        },
        AuditAction::Export { conn, q } => admin(&conn, |c, _| async move { c.audit_export(q).await }).await,
    }
}
