//! Process lifecycle and the CLI: graceful drain, and `gatehouse keys` against a live gateway.

use std::time::Duration;

use futures_util::StreamExt;
use gatehouse_testkit::{Behavior, FakeProvider};
use serde_json::json;

use crate::common::gateway_with;

#[tokio::test]
async fn shutdown_drains_an_in_flight_stream() {
    let fake = FakeProvider::spawn().await;
    fake.set(Behavior::SlowStream(Duration::from_millis(60)));
    let mut gw = gateway_with(&fake).await;
    let body = json!({"model": "fake-model", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let resp = gw.post("/v1/chat/completions", Some(gw.key()), &body).await;
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert!(!first.is_empty());

    gw.terminate();
    let mut rest = String::new();
    while let Some(c) = stream.next().await {
        rest.push_str(&String::from_utf8_lossy(&c.expect("stream must not be cut by shutdown")));
    }
    assert!(rest.trim_end().ends_with("data: [DONE]"), "the stream finished: {rest}");
    let status = gw.wait_exit(Duration::from_secs(10)).await.expect("gateway exits after draining");
    assert!(status.success());
}

fn cli(gw: &gatehouse_testkit::TestGateway, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(args)
        .env_clear()
        .env("GATEHOUSE_ADMIN_URL", &gw.admin_url)
        .env("GATEHOUSE_ADMIN_TOKEN", gw.admin_token.as_deref().unwrap())
        .output()
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test]
async fn keys_cli_creates_lists_and_revokes() {
    let fake = FakeProvider::spawn().await;
    let gw = gateway_with(&fake).await;
    let (ok, out) = cli(
        &gw,
        &["keys", "create", "--name", "ci-key", "--models", "fake-model,mock", "--expires-in", "1h", "-o", "json"],
    );
    assert!(ok, "{out}");
    let created: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let key = created["key"].as_str().unwrap();
    let id = created["id"].as_str().unwrap();
    assert_eq!(gw.chat(key, "fake-model").await.status(), 200);

    let (ok, table) = cli(&gw, &["keys", "list"]);
    assert!(ok, "{table}");
    assert!(table.contains("ci-key") && table.contains("fake-model,mock"), "{table}");
    assert!(!table.contains(key), "list never shows secrets");

    let (ok, out) = cli(&gw, &["keys", "rotate", id, "--grace", "10m", "-o", "json"]);
    assert!(ok, "{out}");
    let rotated: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(rotated["grace_seconds"], 600);
    assert_eq!(gw.chat(rotated["key"]["key"].as_str().unwrap(), "fake-model").await.status(), 200);
    let (ok, out) = cli(&gw, &["keys", "revoke", id]);
    assert!(ok, "{out}");
    let (ok, out) = cli(&gw, &["keys", "revoke", id]);
    assert!(!ok && out.contains("404"), "{out}");

    let (ok, out) = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["keys", "list"])
        .env_clear()
        .env("GATEHOUSE_ADMIN_URL", &gw.admin_url)
        .env("GATEHOUSE_ADMIN_TOKEN", "gtha_wrong")
        .output()
        .map(|o| (o.status.success(), String::from_utf8_lossy(&o.stderr).into_owned()))
        .unwrap();
    assert!(!ok && out.contains("401"), "{out}");
}

#[tokio::test]
async fn tenancy_cli_manages_orgs_projects_and_members_by_name() {
    let gw = crate::common::gateway().spawn().await;
    let (ok, out) = cli(&gw, &["orgs", "create", "acme", "-o", "json"]);
    assert!(ok, "{out}");
    let (ok, out) = cli(&gw, &["projects", "create", "--org", "acme", "web", "--models", "mock"]);
    assert!(ok && out.contains("web") && out.contains("mock"), "{out}");
    let (ok, out) = cli(
        &gw,
        &[
            "members",
            "add",
            "--org",
            "acme",
            "--email",
            "ci@example.com",
            "--name",
            "CI",
            "--role",
            "member",
            "--service",
        ],
    );
    assert!(ok && out.contains("service") && out.contains("member"), "{out}");
    let (ok, out) = cli(&gw, &["members", "list", "--org", "acme", "-o", "json"]);
    assert!(ok, "{out}");
    let members: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(members["data"][0]["email"], "ci@example.com");

    let (_, key) = gw.create_key(json!({"name": "k", "org": "acme", "project": "web"})).await;
    assert_eq!(gw.chat(&key, "mock").await.status(), 200);
    let (ok, out) = cli(&gw, &["projects", "disable", "--org", "acme", "web"]);
    assert!(ok, "{out}");
    assert!(
        gatehouse_testkit::eventually(Duration::from_secs(1), || async { gw.chat(&key, "mock").await.status() == 401 })
            .await
    );
    let (ok, out) = cli(&gw, &["orgs", "list"]);
    assert!(ok && out.contains("acme") && out.contains("default"), "{out}");
    let (ok, out) = cli(&gw, &["projects", "list", "--org", "nope"]);
    assert!(!ok && out.contains("no organization named nope"), "{out}");
}

#[tokio::test]
async fn login_saves_a_private_profile_the_other_commands_use() {
    use std::io::Write as _;
    let gw = crate::common::gateway().spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("profile.toml");
    let login = |token: &str| {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .args(["login", "--admin-url", &gw.admin_url])
            .env_clear()
            .env("GATEHOUSE_PROFILE", &profile)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(format!("{token}\n").as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (ok, err) = login("gtha_wrong");
    assert!(!ok && err.contains("refused"), "{err}");
    assert!(!profile.exists(), "a refused token is not saved");
    let (ok, err) = login(gw.admin_token.as_deref().unwrap());
    assert!(ok, "{err}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&profile).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["orgs", "list", "-o", "json"])
        .env_clear()
        .env("GATEHOUSE_PROFILE", &profile)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"default\""));
    // a profile others can read is refused, and the token in it is not printed
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&profile, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .args(["orgs", "list"])
            .env_clear()
            .env("GATEHOUSE_PROFILE", &profile)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("readable by others"), "{err}");
        assert!(!err.contains(gw.admin_token.as_deref().unwrap()));
        // and the data dir the gateway made is its own
        let mode = std::fs::metadata(gw.data_path().join("data")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}

#[tokio::test]
async fn limits_and_usage_cli_set_a_budget_and_print_the_ledger() {
    let fake = FakeProvider::spawn().await;
    let gw = gateway_with(&fake).await;
    let (ok, out) = cli(&gw, &["projects", "create", "--org", "default", "web"]);
    assert!(ok, "{out}");
    let spec = r#"{"rpm":600,"budgets":[{"period":"daily","tokens":100000,"alert_at":[50]}]}"#;
    let (ok, out) = cli(&gw, &["limits", "set", "--org", "default", "--project", "web", "--spec", spec]);
    assert!(ok && out.contains("rpm: 600") && out.contains("daily") && out.contains("100000"), "{out}");
    let (ok, out) = cli(&gw, &["limits", "set", "--org", "default", "--project", "web", "--spec", r#"{"rpm":0}"#]);
    assert!(!ok && out.contains("400") && out.contains("rpm"), "{out}");

    let (id, key) = gw.create_key(serde_json::json!({"name": "cli", "project": "web"})).await;
    for _ in 0..2 {
        assert_eq!(gw.chat(&key, "fake-model").await.status(), 200);
    }
    let (ok, out) = cli(&gw, &["limits", "show", "--org", "default", "--key", &id]);
    assert!(ok && out.contains("rpm: -"), "a key without its own limits: {out}");
    assert!(
        gatehouse_testkit::eventually(std::time::Duration::from_secs(30), || async {
            let (ok, out) = cli(&gw, &["usage", "--org", "default", "--project", "web", "-o", "json"]);
            ok && out.contains(r#""requests":2"#)
        })
        .await
    );
    let (ok, table) = cli(&gw, &["usage", "--org", "default", "--key", &id]);
    assert!(ok, "{table}");
    for want in ["COST_USD", "fake-model", &format!("key:{id}"), "TOTAL", "14", "10"] {
        assert!(table.contains(want), "{want} missing from\n{table}");
    }
    let (ok, out) = cli(&gw, &["usage", "--org", "default", "--from", "yesterday"]);
    assert!(!ok && out.contains("400"), "{out}");
}

#[test]
fn version_prints_the_release_and_exits_zero() {
    for flag in ["--version", "-V"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse")).arg(flag).env_clear().output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        let text = text.trim();
        let rest = text
            .strip_prefix(&format!("gatehouse {} (commit ", env!("CARGO_PKG_VERSION")))
            .unwrap_or_else(|| panic!("{flag}: {text}"));
        let hash = rest.strip_suffix(')').unwrap_or_else(|| panic!("{flag}: {text}"));
        // a git checkout names its commit (12 hex digits); a source tarball says unknown
        assert!(
            hash == "unknown" || (hash.len() == 12 && hash.bytes().all(|b| b.is_ascii_hexdigit())),
            "{flag}: {text}"
        );
    }
}

#[tokio::test]
async fn a_control_plane_bound_beyond_loopback_warns_at_start() {
    const WARNING: &str = "control plane is bound to a non-loopback address";
    let wide = crate::common::gateway().env("GATEHOUSE_ADMIN_LISTEN", "0.0.0.0:0").spawn().await;
    assert!(wide.logs_once("gatehouse started").await.contains(WARNING), "{}", wide.logs());
    let narrow = crate::common::gateway().spawn().await;
    assert!(!narrow.logs_once("gatehouse started").await.contains(WARNING));
}

/// Every connection and datagram the process (all its threads) attempts from start to a
/// graceful stop, through a session as users run it (mock and upstream chat, a stream, admin
/// calls, a webhook to a local receiver), recorded by strace: all of it goes to loopback or
/// local sockets. Nothing phones home.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn nothing_phones_home() {
    if std::process::Command::new("strace").arg("-V").output().is_err() {
        assert!(std::env::var("CI").is_err(), "strace is required under CI");
        eprintln!("SKIPPED nothing_phones_home: strace is not installed");
        return;
    }
    let fake = FakeProvider::spawn().await;
    let (hook_url, seen) = crate::webhooks::receiver().await;
    let trace_dir = tempfile::tempdir().unwrap();
    let trace = trace_dir.path().join("net.txt");
    let trace_arg = trace.to_str().unwrap().to_owned();
    let mut gw = crate::common::gateway()
        .config(&crate::common::upstream_config(&fake))
        .config("[webhooks]\nallow_private_targets = [\"127.0.0.1/32\"]\n")
        .env("FAKE_UPSTREAM_KEY", crate::common::PROVIDER_SECRET)
        .wrapped_in(&["strace", "-f", "-qq", "-e", "trace=connect,sendto,sendmsg,sendmmsg", "-o", &trace_arg])
        .spawn()
        .await;
    let gateway_pid = gw.wrapped_pid().expect("the traced gateway's pid");
    // stop the real gateway whatever happens below (killing strace would leave it running)
    struct Reap(u32);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = std::process::Command::new("kill").arg("-KILL").arg(self.0.to_string()).status();
        }
    }
    let _reap = Reap(gateway_pid);

    let key = gw.key().to_owned();
    assert_eq!(gw.chat(&key, "mock").await.status(), 200);
    assert_eq!(gw.chat(&key, "fake-model").await.status(), 200);
    let body = json!({"model": "fake-model", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let streamed = gw.post("/v1/chat/completions", Some(&key), &body).await;
    assert_eq!(streamed.status(), 200);
    let _ = streamed.text().await;
    let hook = json!({"name": "all", "kind": "generic", "url": format!("{hook_url}/generic"), "events": ["*"]});
    assert_eq!(gw.admin(reqwest::Method::POST, "/admin/v1/webhooks", Some(&hook)).await.status(), 201);
    assert_eq!(gw.admin(reqwest::Method::GET, "/admin/v1/orgs", None).await.status(), 200);
    assert_eq!(gw.chat(&key, "mock").await.status(), 200);
    let delivered =
        gatehouse_testkit::eventually(Duration::from_secs(30), || async { !seen.hits.lock().await.is_empty() }).await;
    assert!(delivered, "the webhook was delivered (a second outbound connection to trace)");

    let _ = std::process::Command::new("kill").arg("-TERM").arg(gateway_pid.to_string()).status();
    assert!(gw.wait_exit(Duration::from_secs(30)).await.is_some(), "the traced gateway stopped");
    let text = std::fs::read_to_string(&trace).unwrap();
    let mut outward = Vec::new();
    let mut loopback = 0;
    for line in text.lines() {
        let family_v4 = line.contains("sa_family=AF_INET,");
        let family_v6 = line.contains("sa_family=AF_INET6");
        if !family_v4 && !family_v6 {
            continue; // unix sockets, netlink: local by construction
        }
        let local = if family_v4 {
            line.contains("inet_addr(\"127.")
        } else {
            line.contains("inet_pton(AF_INET6, \"::1\"") || line.contains("inet_pton(AF_INET6, \"::ffff:127.")
        };
        if local {
            loopback += 1;
        } else {
            outward.push(line.to_owned());
        }
    }
    assert!(loopback >= 2, "the trace saw the session's own connections (provider, webhook):\n{text}");
    assert!(outward.is_empty(), "connections beyond this machine:\n{}", outward.join("\n"));
}

/// A PostgreSQL URL with a password that cannot be reached: the start fails, and neither the
/// password nor the URL appears in what it printed or logged.
#[tokio::test]
async fn an_unreachable_database_is_reported_without_its_url() {
    let secret = "pw-never-printed-7f3a";
    let url = format!("postgres://gatehouse:{secret}@127.0.0.1:1/nowhere");
    let err = crate::common::gateway().env("GATEHOUSE_DATABASE_URL", &url).start_error().await;
    assert!(!err.contains(secret) && !err.contains("127.0.0.1:1/nowhere"), "{err}");
}
