//! `gatehouse doctor` beside a real gateway's data directory and store, as an operator runs it.

use std::path::Path;

use gatehouse_testkit::TestGateway;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{as_root, call, cli, gateway, new_org, root};

/// Runs the doctor on `config` with only `env` set; its exit code and what it printed.
fn doctor(config: &Path, env: &[(&str, &str)], format: &str) -> (i32, String) {
    cli(&["doctor", "--config", config.to_str().unwrap(), "--format", format], env)
}

fn ids(report: &Value) -> Vec<&str> {
    report["findings"].as_array().unwrap().iter().map(|f| f["id"].as_str().unwrap()).collect()
}

fn finding<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["findings"].as_array().unwrap().iter().find(|f| f["id"] == id).unwrap_or_else(|| panic!("{id}: {report}"))
}

#[tokio::test]
async fn the_doctor_scans_config_host_and_store_and_exits_with_the_worst_severity() {
    let redis = "redis://127.0.0.1:6379/0";
    let prefix = format!("doctor{}", std::process::id());
    let gw: TestGateway = gateway()
        .config(&format!("[redis]\nurl = \"env:REDIS_URL\"\nkey_prefix = \"{prefix}\"\n"))
        .env("REDIS_URL", redis)
        .spawn()
        .await;
    // an org with a budget, one without; a webhook receiver reached in plain text
    let funded = new_org(&gw, "funded").await;
    let (st, v) = as_root(
        &gw,
        Method::PUT,
        &format!("/admin/v1/orgs/{funded}/limits"),
        Some(json!({"budgets": [{"period": "monthly", "usd": 100}]})),
    )
    .await;
    assert!(st < 300, "{v}");
    new_org(&gw, "acme").await;
    let hook = json!({"name": "siem", "kind": "generic", "url": "http://hooks.example.com/in", "events": ["key.*"]});
    let (st, v) = call(&gw, &root(&gw), Method::POST, "/admin/v1/webhooks", Some(hook)).await;
    assert_eq!(st, 201, "{v}");

    let env = [("REDIS_URL", redis)];
    let (code, out) = doctor(&gw.config_path, &env, "json");
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let found = ids(&report);
    // this machine's Redis, asked directly: does it keep anything across a restart?
    let config = |param: &str| {
        let out = std::process::Command::new("redis-cli").args(["CONFIG", "GET", param]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).lines().nth(1).unwrap_or("").trim().to_owned()
    };
    let persists = config("appendonly") == "yes" || !config("save").is_empty();
    assert_eq!(found.contains(&"redis.no_persistence"), !persists, "{out}");
    if !persists {
        assert_eq!((code, report["worst"].as_str()), (4, Some("high")), "{out}");
        assert_eq!(finding(&report, "redis.no_persistence")["severity"], "high");
        assert_eq!(report["findings"][0]["severity"], "high", "sorted worst first");
    } else {
        assert_eq!((code, report["worst"].as_str()), (3, Some("medium")), "{out}");
    }
    for id in [
        "master_key.beside_store",
        "admin_tokens.never_expire",
        "webhooks.plaintext",
        "keys.no_expiry",
        "orgs.no_budget",
        "mock.enabled",
    ] {
        assert!(found.contains(&id), "{id} in {found:?}");
    }
    assert!(!found.contains(&"master_key.file_readable_by_others"), "the generated key is 0600");
    let orgs = finding(&report, "orgs.no_budget")["evidence"].as_str().unwrap();
    assert!(orgs.contains("acme") && !orgs.contains("funded"), "{orgs}");
    assert!(finding(&report, "webhooks.plaintext")["evidence"].as_str().unwrap().contains("hooks.example.com"));
    // nothing secret in the report
    for secret in [gw.key(), &root(&gw)] {
        assert!(!out.contains(secret), "the report carries no credential");
    }

    // the master key file opened to other users: critical, in the table too
    let key = gw.data_path().join("data").join("master.key");
    set_mode(&key, 0o644);
    let (code, table) = doctor(&gw.config_path, &env, "table");
    set_mode(&key, 0o600);
    assert_eq!(code, 5, "{table}");
    assert!(table.starts_with("critical  master_key.file_readable_by_others"), "{table}");
    assert!(table.contains("evidence: ") && table.contains("fix: chmod 600") && table.contains("worst: critical"));
}

#[tokio::test]
async fn before_a_first_start_the_doctor_scans_the_config_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gatehouse.toml");
    let data = dir.path().join("data");
    std::fs::write(
        &config,
        format!(
            "[server]\ndata_dir = \"{}\"\ndata_listen = \"0.0.0.0:8080\"\n[mock]\nenabled = false\n\
             [redis]\nurl = \"env:REDIS_URL\"\n",
            data.display()
        ),
    )
    .unwrap();
    let (code, out) = doctor(&config, &[("REDIS_URL", "redis://127.0.0.1:1/0")], "json");
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(
        ids(&report),
        ["data_plane.plaintext_off_loopback", "redis.unreachable", "dependencies.not_checked", "store.absent"],
        "{out}"
    );
    assert_eq!(code, 4);
    assert!(!data.exists(), "no store or key was created");
    // a config that does not load is a failed scan: exit 1
    std::fs::write(&config, "[server]\nnope = 1\n").unwrap();
    let (code, out) = doctor(&config, &[], "table");
    assert_eq!(code, 1, "{out}");
}

#[cfg(unix)]
fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[tokio::test]
async fn listener_certificates_that_expire_soon_or_cannot_serve_are_found() {
    use gatehouse_testkit::pki::{Ca, Validity};
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("ops");
    // valid for a day: high; expired: the gateway would not start
    ca.server(&["127.0.0.1"], Validity::Current).write(dir.path(), "day");
    ca.server(&["127.0.0.1"], Validity::Expired).write(dir.path(), "old");
    let section = |plane: &str, stem: &str| {
        let p = dir.path();
        format!(
            "[tls.{plane}]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            p.join(format!("{stem}.crt")).display(),
            p.join(format!("{stem}.key")).display()
        )
    };
    let config = dir.path().join("gatehouse.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ndata_dir = \"{}\"\n[mock]\nenabled = false\n{}{}",
            dir.path().join("data").display(),
            section("data", "day"),
            section("control", "old")
        ),
    )
    .unwrap();
    let (code, out) = doctor(&config, &[], "json");
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(code, 5, "{out}");
    let unusable = finding(&report, "tls.unusable");
    assert_eq!(unusable["severity"], "critical");
    assert!(unusable["evidence"].as_str().unwrap().starts_with("tls.control") && !out.contains("BEGIN"), "{out}");
    let soon = finding(&report, "tls.certificate_expires_soon");
    assert_eq!(soon["severity"], "high");
    let evidence = soon["evidence"].as_str().unwrap();
    assert!(evidence.starts_with("tls.data") && evidence.contains("day.crt expires 20"), "{soon}");
}

/// `--advisory-db`: the binary's own dependencies against a RustSec database (here a small
/// one written by the test in RustSec's format): a vulnerable version is high, an
/// informational advisory low, a patched one nothing, an unreadable file said so.
#[tokio::test]
async fn the_doctor_checks_the_binarys_dependencies_against_an_advisory_database() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gatehouse.toml");
    std::fs::write(
        &config,
        format!("[server]\ndata_dir = \"{}\"\n[mock]\nenabled = false\n", dir.path().join("d").display()),
    )
    .unwrap();
    let db = dir.path().join("advisory-db");
    let write = |package: &str, id: &str, extra: &str, patched: &str| {
        let d = db.join("crates").join(package);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join(format!("{id}.md")),
            format!("```toml\n[advisory]\nid = \"{id}\"\npackage = \"{package}\"\n{extra}\n[versions]\npatched = [{patched}]\n```\n\n# Title\n"),
        )
        .unwrap();
    };
    write("tokio", "RUSTSEC-2099-0001", "", "\">= 999.0.0\"");
    write("tokio", "RUSTSEC-2099-0002", "", "\">= 0.0.1\"");
    write("rustls", "RUSTSEC-2099-0003", "informational = \"unsound\"", "");
    std::fs::write(db.join("crates/tokio/broken.md"), "not an advisory").unwrap();
    let db_arg = db.to_str().unwrap();
    let (code, out) =
        cli(&["doctor", "--config", config.to_str().unwrap(), "--format", "json", "--advisory-db", db_arg], &[]);
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(code, 4, "{out}");
    let vulnerable = finding(&report, "dependencies.vulnerable");
    assert_eq!(vulnerable["severity"], "high");
    let evidence = vulnerable["evidence"].as_str().unwrap();
    assert!(evidence.starts_with("RUSTSEC-2099-0001 (tokio 1.") && !evidence.contains("0002"), "{evidence}");
    let notice = finding(&report, "dependencies.advisory_notice");
    assert!(
        notice["evidence"].as_str().unwrap().contains("RUSTSEC-2099-0003 (rustls 0.") && notice["severity"] == "low"
    );
    assert_eq!(
        finding(&report, "dependencies.advisories_unreadable")["evidence"].as_str().unwrap().split(' ').next(),
        Some("1")
    );
    assert!(!ids(&report).contains(&"dependencies.not_checked"));
    // a path that is not a database fails the scan (exit 1), naming it
    let (code, out) = cli(&["doctor", "--config", config.to_str().unwrap(), "--advisory-db", "/nonexistent"], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("/nonexistent"), "{out}");
}

/// `admin_tokens.unused`: an active admin token whose last use (or, never used, its creation)
/// is older than `--unused-after` (90 days by default) is reported; each call moves the
/// token's `last_used_at`, which the token list shows.
#[tokio::test]
async fn admin_tokens_nobody_used_lately_are_reported() {
    let gw = gateway().spawn().await;
    let root = root(&gw);
    let mint = |name: &'static str| {
        let body = json!({"name": name, "role": "platform_admin"});
        call(&gw, &root, Method::POST, "/admin/v1/tokens", Some(body))
    };
    let (st, used) = mint("in-use").await;
    assert_eq!(st, 201, "{used}");
    let (st, _) = mint("forgotten").await;
    assert_eq!(st, 201);
    // the clock has to pass the threshold the scan is given (3 s here)
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    let token = used["token"].as_str().unwrap();
    let (st, tokens) = call(&gw, token, Method::GET, "/admin/v1/tokens", None).await;
    assert_eq!(st, 200);
    let last_used = |name: &str| {
        tokens["data"].as_array().unwrap().iter().find(|t| t["name"] == name).unwrap()["last_used_at"].clone()
    };
    assert!(last_used("in-use").as_i64().is_some_and(|t| t > 0), "{tokens}");
    assert!(last_used("forgotten").is_null(), "{tokens}");

    let config = gw.config_path.to_str().unwrap();
    let (_, out) = cli(&["doctor", "--config", config, "--format", "json", "--unused-after", "3s"], &[]);
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let unused = finding(&report, "admin_tokens.unused");
    assert_eq!(unused["severity"], "medium");
    let evidence = unused["evidence"].as_str().unwrap();
    // the bootstrap token was last used to mint the others, before the wait
    assert!(
        evidence.starts_with("2 not used in 3s: ") && evidence.contains("forgotten") && evidence.contains("bootstrap")
    );
    assert!(!evidence.contains("in-use"), "{evidence}");
    assert!(!out.contains(token), "the report carries no credential");
    // the default threshold: nothing is 90 days old here
    let (_, out) = cli(&["doctor", "--config", config, "--format", "json"], &[]);
    assert!(!out.contains("admin_tokens.unused"), "{out}");
}

/// A Redis that does not let the gateway ask about its persistence (a managed service that
/// renames `CONFIG`): said as information, never guessed. A Redis server of our own, started
/// for the test, with `CONFIG` renamed away.
#[tokio::test]
async fn a_redis_that_refuses_config_is_reported_as_unknown_persistence() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let port_text = port.to_string();
    let _redis = tokio::process::Command::new("redis-server")
        .args(["--port", &port_text, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(["--rename-command", "CONFIG", ""])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("redis-server (the machine's Redis package): {e}"));
    let up = gatehouse_testkit::eventually(std::time::Duration::from_secs(10), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
    })
    .await;
    assert!(up, "the test's Redis did not start");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gatehouse.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ndata_dir = \"{}\"\n[mock]\nenabled = false\n[redis]\nurl = \"env:REDIS_URL\"\n",
            dir.path().join("d").display()
        ),
    )
    .unwrap();
    let url = format!("redis://127.0.0.1:{port}/0");
    let (code, out) = doctor(&config, &[("REDIS_URL", &url)], "json");
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let unknown = finding(&report, "redis.persistence_unknown");
    assert_eq!(unknown["severity"], "info");
    assert!(!ids(&report).contains(&"redis.no_persistence") && !ids(&report).contains(&"redis.unreachable"), "{out}");
    assert_eq!(code, 0, "information only: {out}");
}
