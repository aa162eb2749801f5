//! `gatehouse doctor`: a posture scan of the config `serve` would run with (same file, flags and
//! environment), of the host it runs on, and of its store. Each finding has a stable id, a
//! severity, the evidence and the fix; the exit code is the worst severity found
//! (docs/OPERATIONS.md, "Posture"). Evidence names hosts, files and counts, never a secret or
//! a URL that could carry one.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::ValueEnum;
use gatehouse_config::{AuditFailure, Config, SecretRef, StoreUrl};
use gatehouse_guardrails::{Action, Category, DETECTORS, Direction};
use secrecy::ExposeSecret;
use serde::Serialize;

use crate::cli::ServeArgs;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// The process's exit code when this is the worst finding (1 is a scan that failed).
    pub fn exit_code(self) -> u8 {
        match self {
            Severity::Info => 0,
            Severity::Low => 2,
            Severity::Medium => 3,
            Severity::High => 4,
            Severity::Critical => 5,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Finding {
    pub id: &'static str,
    pub severity: Severity,
    pub title: &'static str,
    pub evidence: String,
    pub fix: &'static str,
}

#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub enum Format {
    #[default]
    Table,
    Json,
}

/// What the scan learned outside the config: the host's files and the secrets' values (used
/// to judge, never printed).
#[derive(Debug, Default)]
pub struct Facts {
    /// Bytes free where the audit spool is written.
    pub spool_free: Option<u64>,
    /// The master key's file (when it comes from one) and its permission bits.
    pub master_key_file: Option<(PathBuf, u32)>,
    /// Whether that file is the generated one, beside the embedded store.
    pub master_key_generated: bool,
    pub database_url: Option<String>,
    pub redis_url: Option<String>,
}

/// The host a URL names when it is not this machine; `None` for loopback, `localhost`, a Unix
/// socket or an unparsable URL (the config check reports those).
fn remote_host(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    match u.host()? {
        url::Host::Domain(d) if d.is_empty() || d.eq_ignore_ascii_case("localhost") => None,
        // schemes the URL standard does not know (redis, postgres) keep IPv4 hosts as text
        url::Host::Domain(d) => match d.parse::<std::net::IpAddr>() {
            Ok(ip) => (!ip.is_loopback()).then(|| ip.to_string()),
            Err(_) => Some(d.to_owned()),
        },
        url::Host::Ipv4(ip) => (!ip.is_loopback()).then(|| ip.to_string()),
        url::Host::Ipv6(ip) => (!ip.is_loopback()).then(|| ip.to_string()),
    }
}

/// The findings the config and the host's facts give.
pub fn config_findings(cfg: &Config, facts: &Facts) -> Vec<Finding> {
    let mut out = Vec::new();
    let server = &cfg.server;
    let mut add = |id, severity, title, evidence: String, fix| out.push(Finding { id, severity, title, evidence, fix });

    if let Some((path, mode)) = &facts.master_key_file {
        if mode & 0o077 != 0 {
            add(
                "master_key.file_readable_by_others",
                Severity::Critical,
                "The master key file can be read by other users",
                format!("{} has mode {:o}", path.display(), mode & 0o777),
                "chmod 600 the file (and keep its directory 0700); then rotate the master key, since it may have been read",
            );
        }
        if facts.master_key_generated && matches!(server.store, StoreUrl::Embedded) {
            add(
                "master_key.beside_store",
                Severity::Medium,
                "The master key lives in the data directory, beside the store it protects",
                format!("{} and {}", path.display(), server.data_dir.join("gatehouse.db").display()),
                "give the key from a secret store (server.master_key = \"file:/run/secrets/...\" on a separate mount, or GATEHOUSE_MASTER_KEY), so a copy of the data directory does not carry it",
            );
        }
    }

    if !server.admin_listen.ip().is_loopback() {
        match &server.tls.control {
            None => add(
                "control_plane.plaintext_off_loopback",
                Severity::High,
                "The control plane listens beyond loopback without TLS",
                format!("server.admin_listen = {}", server.admin_listen),
                "configure [tls.control] (with client_ca_file), or bind the control plane to 127.0.0.1 and reach it through a tunnel",
            ),
            Some(t) if t.client_ca_file.is_none() => add(
                "control_plane.no_client_certificates",
                Severity::Medium,
                "The control plane listens beyond loopback and accepts any client that holds a token",
                format!("server.admin_listen = {} with [tls.control] but no client_ca_file", server.admin_listen),
                "set tls.control.client_ca_file so only operators' certificates can connect",
            ),
            Some(_) => {}
        }
    }
    if !server.data_listen.ip().is_loopback() && server.tls.data.is_none() {
        add(
            "data_plane.plaintext_off_loopback",
            Severity::High,
            "The data plane listens beyond loopback without TLS",
            format!("server.data_listen = {}", server.data_listen),
            "configure [tls.data], or terminate TLS in a proxy on the same host and bind the data plane to 127.0.0.1",
        );
    }

    // judged on the compiled policy, as requests meet it (most specific key first)
    if let Ok(policy) = cfg.policy.guardrails.spec.compile() {
        let secrets_blocked = DETECTORS
            .iter()
            .enumerate()
            .filter(|(_, d)| d.category == Category::Secret)
            .all(|(i, _)| policy.builtin(i, Direction::In) == Action::Block);
        if !policy.active(Direction::In) && !policy.active(Direction::Out) {
            add(
                "guardrails.off",
                Severity::High,
                "Every guardrail is off by default",
                "[guardrails] turns every detector off in both directions and sets no custom rule".to_owned(),
                "remove the overrides from [guardrails] (the defaults block secrets in prompts and redact them in answers)",
            );
        } else if !secrets_blocked {
            add(
                "guardrails.secrets_not_blocked",
                Severity::Medium,
                "Prompts that carry credentials reach the providers",
                "[guardrails] does not block every secret detector on input".to_owned(),
                "set guardrails.detectors.secret = { input = \"block\", output = \"redact\" } (the default)",
            );
        }
    }

    if server.audit.on_store_failure == AuditFailure::Spool
        && let Some(free) = facts.spool_free
        && free < server.audit.spool_max_bytes
    {
        add(
            "audit.spool_without_space",
            Severity::High,
            "The audit spool cannot grow to its bound: events would be refused while the store is down",
            format!(
                "{} MiB free in {}, audit.spool_max_mb = {}",
                free >> 20,
                server.data_dir.display(),
                server.audit.spool_max_bytes >> 20
            ),
            "free space in the data directory, lower audit.spool_max_mb, or choose audit.on_store_failure = \"fail_closed\" deliberately",
        );
    }

    if let Some(url) = &facts.database_url
        && let Some(host) = remote_host(url)
    {
        let mode = url::Url::parse(url)
            .ok()
            .and_then(|u| u.query_pairs().find(|(k, _)| k == "sslmode").map(|(_, v)| v.into_owned()));
        match mode.as_deref() {
            Some("verify-full" | "verify-ca") => {}
            Some("require") => add(
                "postgres.tls_unverified",
                Severity::Medium,
                "PostgreSQL is reached over TLS without checking its certificate",
                format!("{host}: sslmode=require"),
                "use sslmode=verify-full with sslrootcert=<the database's CA file> in the database URL",
            ),
            other => add(
                "postgres.plaintext_off_loopback",
                Severity::High,
                "PostgreSQL on another host may be reached in plain text",
                format!("{host}: sslmode={}", other.unwrap_or("prefer (the default)")),
                "use sslmode=verify-full with sslrootcert=<the database's CA file> in the database URL",
            ),
        }
    }
    if let Some(url) = &facts.redis_url
        && let Some(host) = remote_host(url)
        && !url.starts_with("rediss://")
    {
        add(
            "redis.plaintext_off_loopback",
            Severity::High,
            "Redis on another host is reached in plain text",
            format!("{host}: redis://"),
            "use a rediss:// URL (and [redis] ca_file when Redis's certificate is from a private CA)",
        );
    }

    let plain: Vec<String> = cfg
        .policy
        .providers
        .iter()
        .filter(|p| p.base_url.starts_with("http://"))
        .filter_map(|p| remote_host(&p.base_url).map(|h| format!("{} ({h})", p.name)))
        .collect();
    if !plain.is_empty() {
        add(
            "providers.plaintext",
            Severity::High,
            "Providers on other hosts are called over plain HTTP: prompts and provider keys cross the network readable",
            plain.join(", "),
            "use https:// base URLs (with ca_file for a provider behind a private CA)",
        );
    }
    if cfg.policy.mock_enabled {
        add(
            "mock.enabled",
            Severity::Low,
            "The built-in mock provider answers the models mock and mock-embedding",
            "[mock] enabled is not false".to_owned(),
            "set [mock] enabled = false in production",
        );
    }
    out
}

/// The findings the store gives: credentials that never expire, orgs with no budget,
/// webhook receivers reached in plain text.
pub async fn store_findings(store: &gatehouse_store::Store, unused_after: Duration) -> anyhow::Result<Vec<Finding>> {
    let mut out = Vec::new();
    let (mut tokens, mut unused) = (Vec::new(), Vec::new());
    let cutoff = gatehouse_store::now_ms().saturating_sub(i64::try_from(unused_after.as_millis()).unwrap_or(i64::MAX));
    let mut before: Option<String> = None;
    loop {
        let page = store.list_admin_tokens(None, before.as_deref(), 500).await?;
        let done = page.len() < 500;
        before = page.last().map(|t| t.id.clone());
        for t in page.into_iter().filter(|t| t.revoked_at.is_none()) {
            // never used: as old as the token
            if t.last_used_at.unwrap_or(t.created_at) < cutoff {
                unused.push(t.name.clone());
            }
            tokens.push(t.name);
        }
        if done {
            break;
        }
    }
    if !unused.is_empty() {
        out.push(Finding {
            id: "admin_tokens.unused",
            severity: Severity::Medium,
            title: "Active admin tokens nobody used lately: a forgotten credential that still works",
            evidence: format!(
                "{} not used in {}: {}",
                unused.len(),
                humantime::format_duration(unused_after),
                sample(&unused)
            ),
            fix: "revoke them (POST /admin/v1/tokens/{id}/revoke); GET /admin/v1/tokens shows each one's last_used_at",
        });
    }
    if !tokens.is_empty() {
        out.push(Finding {
            id: "admin_tokens.never_expire",
            severity: Severity::Medium,
            title: "Admin tokens are valid until revoked",
            evidence: format!("{} active: {}", tokens.len(), sample(&tokens)),
            fix: "revoke the tokens nobody uses (POST /admin/v1/tokens/{id}/revoke); let people sign in to the console with single sign-on or a passkey instead of holding tokens",
        });
    }
    let keys = store.keys_without_expiry().await?;
    if keys > 0 {
        out.push(Finding {
            id: "keys.no_expiry",
            severity: Severity::Low,
            title: "API keys that never expire",
            evidence: format!("{keys} active keys have no expires_at"),
            fix: "rotate them with an expiry (POST /admin/v1/keys/{id}/rotate with expires_in_seconds), or hand workloads short-lived capability tokens",
        });
    }

    let budgeted: std::collections::HashSet<String> = store
        .all_limit_policies()
        .await?
        .into_iter()
        .filter(|p| p.project_id.is_empty() && p.key_id.is_empty())
        .filter(|p| {
            serde_json::from_str::<gatehouse_limits::spec::LimitSpec>(&p.spec).is_ok_and(|s| !s.budgets.is_empty())
        })
        .map(|p| p.org_id)
        .collect();
    let mut unbudgeted = Vec::new();
    let mut after = None;
    loop {
        let page = store.list_orgs(after, 500).await?;
        let done = page.len() < 500;
        after = page.last().map(|o| o.id);
        unbudgeted.extend(
            page.into_iter()
                .filter(|o| o.disabled_at.is_none() && !budgeted.contains(&o.id.to_string()))
                .map(|o| o.name),
        );
        if done {
            break;
        }
    }
    if !unbudgeted.is_empty() {
        out.push(Finding {
            id: "orgs.no_budget",
            severity: Severity::Low,
            title: "Organizations whose spend has no cap",
            evidence: format!("{} without an org-wide budget: {}", unbudgeted.len(), sample(&unbudgeted)),
            fix: "set a budget per org (PUT /admin/v1/orgs/{org}/limits with budgets, or the console's limits page)",
        });
    }

    let plain: Vec<String> = store
        .all_webhooks()
        .await?
        .into_iter()
        .filter(|w| w.url.starts_with("http://"))
        .filter_map(|w| remote_host(&w.url).map(|h| format!("{} ({h})", w.name)))
        .collect();
    if !plain.is_empty() {
        out.push(Finding {
            id: "webhooks.plaintext",
            severity: Severity::Medium,
            title: "Webhook receivers reached over plain HTTP: audit events cross the network readable",
            evidence: plain.join(", "),
            fix: "re-register the receivers with https:// URLs",
        });
    }
    Ok(out)
}

/// Advisories against the packages this binary was built with, from the RustSec database the
/// operator points at (none given: said so, as information).
fn dependency_findings(db: Option<&Path>) -> anyhow::Result<Vec<Finding>> {
    let Some(db) = db else {
        return Ok(vec![Finding {
            id: "dependencies.not_checked",
            severity: Severity::Info,
            title: "This binary's dependencies were not checked against security advisories",
            evidence: format!("{} packages from the build's Cargo.lock", crate::advisories::dependencies().count()),
            fix: "pass --advisory-db <a checkout of github.com/rustsec/advisory-db> (GATEHOUSE_ADVISORY_DB)",
        }]);
    };
    let report = crate::advisories::scan(db, crate::advisories::dependencies())
        .with_context(|| format!("cannot read the advisory database {}", db.display()))?;
    let mut out = Vec::new();
    let (notices, vulnerable): (Vec<_>, Vec<_>) = report.hits.iter().partition(|h| h.informational.is_some());
    let listed = |hits: &[&crate::advisories::Hit]| {
        let names: Vec<String> = hits
            .iter()
            .map(|h| match &h.informational {
                Some(kind) => format!("{} ({} {}, {kind})", h.id, h.package, h.version),
                None => format!("{} ({} {})", h.id, h.package, h.version),
            })
            .collect();
        sample(&names)
    };
    let kinds = [
        (
            vulnerable,
            "dependencies.vulnerable",
            Severity::High,
            "This binary was built with dependency versions that have security advisories",
            "upgrade to a Gatehouse release built with the patched versions (each advisory names them)",
        ),
        (
            notices,
            "dependencies.advisory_notice",
            Severity::Low,
            "Dependencies with informational advisories (unmaintained, unsound)",
            "track the advisories; upgrade when a release replaces the dependency",
        ),
    ];
    for (hits, id, severity, title, fix) in kinds {
        if !hits.is_empty() {
            out.push(Finding { id, severity, title, evidence: listed(&hits), fix });
        }
    }
    if report.unreadable > 0 {
        out.push(Finding {
            id: "dependencies.advisories_unreadable",
            severity: Severity::Info,
            title: "Advisory files for our dependencies that could not be read were skipped",
            evidence: format!("{} file(s) under {}", report.unreadable, db.join("crates").display()),
            fix: "update the advisory database checkout",
        });
    }
    Ok(out)
}

/// Up to five names, and how many more.
fn sample(names: &[String]) -> String {
    let shown = names.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    match names.len().saturating_sub(5) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

/// Whether the configured Redis keeps budgets across its own restart.
async fn redis_findings(cfg: &Config, url: &str) -> Vec<Finding> {
    let Some(r) = &cfg.server.redis else { return Vec::new() };
    let host = url::Url::parse(url).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default();
    let finding = |id, severity, title, evidence: String, fix| vec![Finding { id, severity, title, evidence, fix }];
    let persists = async {
        let redis = gatehouse_limits::RedisLimits::connect(crate::serve::redis_config(r, url).await?).await?;
        Ok::<_, anyhow::Error>(redis.persists().await?)
    }
    .await;
    match persists {
        Ok(Some(true)) => Vec::new(),
        Ok(Some(false)) => finding(
            "redis.no_persistence",
            Severity::High,
            "Redis keeps budgets in memory only: a Redis restart gives every budget its money back",
            format!("{host}: appendonly is off and save is empty"),
            "turn on appendonly (appendfsync everysec) on the Redis that holds the limits",
        ),
        Ok(None) => finding(
            "redis.persistence_unknown",
            Severity::Info,
            "Redis does not say whether it persists (CONFIG GET is not allowed)",
            host,
            "check the managed service's persistence setting by hand",
        ),
        Err(e) => finding(
            "redis.unreachable",
            Severity::High,
            "Redis does not answer: the gateway would not start",
            format!("{host}: {e:#}"),
            "start Redis, or fix [redis] url",
        ),
    }
}

fn now_s() -> i64 {
    gatehouse_store::now_ms() / 1000
}

/// Each listener's certificate as `serve` would load it: unusable (the gateway would not
/// start), or expiring within 30 days (high within 7).
async fn certificate_findings(tls: &gatehouse_config::tls::TlsSettings, now: i64) -> Vec<Finding> {
    let mut out = Vec::new();
    for (plane, l) in [("data", &tls.data), ("control", &tls.control)] {
        let Some(l) = l else { continue };
        match crate::serve::plane_tls(plane, Some(l)).await {
            Err(e) => out.push(Finding {
                id: "tls.unusable",
                severity: Severity::Critical,
                title: "A listener's TLS files cannot be used: the gateway would not start",
                evidence: format!("tls.{plane}: {e}"),
                fix: "replace the certificate and key (gatehouse validate checks them)",
            }),
            Ok(None) => {}
            Ok(Some(t)) => {
                let days = (t.not_after() - now) / 86_400;
                if days < 30 {
                    out.push(Finding {
                        id: "tls.certificate_expires_soon",
                        severity: if days < 7 { Severity::High } else { Severity::Medium },
                        title: "A listener's certificate expires soon",
                        evidence: format!(
                            "tls.{plane}: {} expires {} (in {days} day(s))",
                            l.cert_file.display(),
                            humantime::format_rfc3339_seconds(
                                std::time::UNIX_EPOCH
                                    + std::time::Duration::from_secs(u64::try_from(t.not_after()).unwrap_or(0))
                            )
                        ),
                        fix: "renew it; the gateway picks up the new files by itself (tls.reload_interval_ms)",
                    });
                }
            }
        }
    }
    out
}

/// Bytes available to this user on the file system holding `dir` (or its nearest existing
/// parent).
fn free_bytes(dir: &Path) -> Option<u64> {
    let mut at = dir;
    while !at.exists() {
        at = at.parent()?;
    }
    let s = rustix::fs::statvfs(at).ok()?;
    Some(s.f_bavail.saturating_mul(s.f_frsize))
}

#[cfg(unix)]
fn mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).ok().map(|m| m.permissions().mode())
}

#[cfg(not(unix))]
fn mode(_: &Path) -> Option<u32> {
    None
}

/// Runs the scan and prints it; the exit code is the worst severity's.
pub async fn run(
    args: &ServeArgs,
    format: Format,
    advisory_db: Option<&Path>,
    unused_after: Duration,
) -> anyhow::Result<u8> {
    let cfg = crate::serve::load_config(args)?;
    let server = &cfg.server;
    let mut facts = Facts { spool_free: free_bytes(&server.data_dir), ..Facts::default() };
    let generated = server.data_dir.join("master.key");
    match &server.master_key {
        Some(SecretRef::File(p)) => facts.master_key_file = mode(p).map(|m| (p.clone(), m)),
        Some(SecretRef::Env(_)) => {}
        None if crate::serve::env("GATEHOUSE_MASTER_KEY").is_some() => {}
        None => {
            facts.master_key_file = mode(&generated).map(|m| (generated.clone(), m));
            facts.master_key_generated = true;
        }
    }
    if let StoreUrl::Url(r) = &server.store {
        let url = r.resolve(&crate::serve::env).map_err(anyhow::Error::msg).context("server.database_url")?;
        facts.database_url = Some(url.expose_secret().to_owned());
    }
    if let Some(r) = &server.redis {
        let url = r.url.resolve(&crate::serve::env).map_err(anyhow::Error::msg).context("redis.url")?;
        facts.redis_url = Some(url.expose_secret().to_owned());
    }

    let mut findings = config_findings(&cfg, &facts);
    findings.extend(dependency_findings(advisory_db)?);
    findings.extend(certificate_findings(&cfg.server.tls, now_s()).await);
    if let Some(url) = &facts.redis_url {
        findings.extend(redis_findings(&cfg, url).await);
    }
    // an embedded store that does not exist is not created just to be scanned
    let embedded_missing = matches!(server.store, StoreUrl::Embedded) && !server.data_dir.join("gatehouse.db").exists();
    if embedded_missing {
        findings.push(Finding {
            id: "store.absent",
            severity: Severity::Info,
            title: "No store yet: its credentials, budgets and webhooks were not scanned",
            evidence: server.data_dir.join("gatehouse.db").display().to_string(),
            fix: "start the gateway once, then run doctor again",
        });
    } else {
        let store = crate::serve::open_store(server).await?;
        findings.extend(store_findings(&store, unused_after).await.context("cannot read the store")?);
    }
    findings.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.id.cmp(b.id)));
    let worst = findings.iter().map(|f| f.severity).max().unwrap_or(Severity::Info);

    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            let v = serde_json::json!({"worst": worst, "findings": findings});
            writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        }
        Format::Table => {
            if findings.is_empty() {
                writeln!(out, "no findings")?;
            }
            for f in &findings {
                writeln!(out, "{:<8}  {}  {}", f.severity.label(), f.id, f.title)?;
                writeln!(out, "          evidence: {}", f.evidence)?;
                writeln!(out, "          fix: {}\n", f.fix)?;
            }
            writeln!(out, "worst: {}", worst.label())?;
        }
    }
    Ok(worst.exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(toml: &str) -> Config {
        Config::from_toml(toml).unwrap_or_else(|e| panic!("{e}"))
    }

    fn ids(cfg: &Config, facts: &Facts) -> Vec<&'static str> {
        config_findings(cfg, facts).into_iter().map(|f| f.id).collect()
    }

    #[test]
    fn the_embedded_default_has_only_the_mock_to_turn_off() {
        assert_eq!(ids(&Config::default(), &Facts::default()), ["mock.enabled"]);
        assert!(ids(&cfg("[mock]\nenabled = false\n"), &Facts::default()).is_empty());
    }

    #[test]
    fn a_master_key_file_others_can_read_is_critical_and_one_beside_the_store_medium() {
        let c = cfg("[mock]\nenabled = false\n");
        let facts = |mode, generated| Facts {
            master_key_file: Some((PathBuf::from("/data/master.key"), mode)),
            master_key_generated: generated,
            ..Facts::default()
        };
        let found = config_findings(&c, &facts(0o100_644, false));
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].id, found[0].severity), ("master_key.file_readable_by_others", Severity::Critical));
        assert!(found[0].evidence.contains("644"), "{}", found[0].evidence);
        assert_eq!(ids(&c, &facts(0o100_600, true)), ["master_key.beside_store"]);
        assert!(ids(&c, &facts(0o100_600, false)).is_empty());
    }

    #[test]
    fn planes_beyond_loopback_want_tls_and_the_control_plane_client_certificates() {
        let open =
            "[mock]\nenabled = false\n[server]\ndata_listen = \"0.0.0.0:8080\"\nadmin_listen = \"10.0.0.5:8081\"\n";
        assert_eq!(
            ids(&cfg(open), &Facts::default()),
            ["control_plane.plaintext_off_loopback", "data_plane.plaintext_off_loopback"]
        );
        let tls =
            "[tls.data]\ncert_file = \"c\"\nkey_file = \"k\"\n[tls.control]\ncert_file = \"c\"\nkey_file = \"k\"\n";
        assert_eq!(ids(&cfg(&format!("{open}{tls}")), &Facts::default()), ["control_plane.no_client_certificates"]);
        let mtls = format!("{open}{tls}client_ca_file = \"ca\"\n");
        assert!(ids(&cfg(&mtls), &Facts::default()).is_empty());
    }

    #[test]
    fn guardrails_switched_off_or_letting_secrets_through_are_found() {
        let off = "[mock]\nenabled = false\n[guardrails.detectors]\n\"*\" = { input = \"off\", output = \"off\" }\n\
                   secret = { input = \"off\", output = \"off\" }\npii = { input = \"off\", output = \"off\" }\n\
                   prompt_injection = { input = \"off\", output = \"off\" }\n";
        assert_eq!(ids(&cfg(off), &Facts::default()), ["guardrails.off"]);
        let lax =
            "[mock]\nenabled = false\n[guardrails.detectors]\nsecret = { input = \"flag\", output = \"redact\" }\n";
        assert_eq!(ids(&cfg(lax), &Facts::default()), ["guardrails.secrets_not_blocked"]);
    }

    #[test]
    fn an_audit_spool_without_room_is_found_only_when_spooling() {
        let c = cfg("[mock]\nenabled = false\n[audit]\nspool_max_mb = 1\n");
        let tight = Facts { spool_free: Some(1000), ..Facts::default() };
        assert_eq!(ids(&c, &tight), ["audit.spool_without_space"]);
        assert!(ids(&c, &Facts { spool_free: Some(2 << 20), ..Facts::default() }).is_empty());
        let closed = cfg("[mock]\nenabled = false\n[audit]\non_store_failure = \"fail_closed\"\n");
        assert!(ids(&closed, &tight).is_empty());
    }

    #[test]
    fn stores_and_providers_on_other_hosts_want_verified_tls_and_evidence_carries_no_secret() {
        let c = cfg(
            "[mock]\nenabled = false\n[[providers]]\nname = \"lab\"\nkind = \"openai_compatible\"\nbase_url = \"http://10.1.2.3:8000/v1\"\n\
             [[providers]]\nname = \"local\"\nkind = \"openai_compatible\"\nbase_url = \"http://127.0.0.1:8000/v1\"\n",
        );
        let facts = |db: &str, redis: &str| Facts {
            database_url: Some(db.to_owned()),
            redis_url: Some(redis.to_owned()),
            ..Facts::default()
        };
        let found =
            config_findings(&c, &facts("postgres://gh:hunter2@db.internal/gh", "redis://:hunter2@10.0.0.7:6379/0"));
        let got: Vec<&str> = found.iter().map(|f| f.id).collect();
        assert_eq!(got, ["postgres.plaintext_off_loopback", "redis.plaintext_off_loopback", "providers.plaintext"]);
        for f in &found {
            assert!(!f.evidence.contains("hunter2"), "{}", f.evidence);
        }
        assert!(found[2].evidence.contains("lab") && !found[2].evidence.contains("local"), "{}", found[2].evidence);
        let verified = facts(
            "postgres://gh@db.internal/gh?sslmode=verify-full&sslrootcert=/ca.pem",
            "rediss://cache.internal:6380/0",
        );
        assert_eq!(ids(&c, &verified), ["providers.plaintext"]);
        let required = facts("postgres://gh@db.internal/gh?sslmode=require", "redis://127.0.0.1/0");
        assert_eq!(ids(&c, &required), ["postgres.tls_unverified", "providers.plaintext"]);
    }
}
