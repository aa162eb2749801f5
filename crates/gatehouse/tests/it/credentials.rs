//! Stored provider credentials through the admin API (issue #19): write-only, sealed at rest,
//! rotated with an overlap, kept to their tenant.

use gatehouse_testkit::FakeProvider;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{as_root, call, gateway_with};

const CANARY: &str = "sk-credential-canary-7f3e9a";

#[tokio::test]
async fn a_credential_goes_in_sealed_and_never_comes_out() {
    let fake = FakeProvider::spawn().await;
    let gw = gateway_with(&fake).await;
    let (_, orgs) = as_root(&gw, Method::GET, "/admin/v1/orgs", None).await;
    let org = orgs["data"][0]["id"].as_str().unwrap().to_owned();
    let (st, other) = as_root(&gw, Method::POST, "/admin/v1/orgs", Some(json!({"name": "other"}))).await;
    assert_eq!(st, 201);
    let other = other["id"].as_str().unwrap().to_owned();

    let (st, v) = as_root(
        &gw,
        Method::POST,
        "/admin/v1/credentials",
        Some(json!({"provider": "fake", "secret": CANARY, "org": org})),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!((v["version"].clone(), v["provider"].clone()), (json!(1), json!("fake")));
    assert!(v["hint"].as_str().unwrap().starts_with("sha256:") && !v.to_string().contains("canary"), "{v}");
    let id = v["id"].as_str().unwrap().to_owned();

    // a rotation keeps the old version serving for its overlap
    let (st, v2) = as_root(
        &gw,
        Method::POST,
        "/admin/v1/credentials",
        Some(json!({"provider": "fake", "secret": format!("{CANARY}-2"), "org": org, "overlap_seconds": 60})),
    )
    .await;
    assert_eq!((st, v2["version"].clone()), (201, json!(2)));
    let (_, list) = as_root(&gw, Method::GET, &format!("/admin/v1/credentials?org={org}"), None).await;
    let rows = list["data"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().any(|r| r["id"] == json!(id) && r["retire_at"].is_i64()), "{list}");
    assert!(!list.to_string().contains("canary"));

    // refused: a provider the config does not serve, an empty value, a project elsewhere
    for (body, param) in [
        (json!({"provider": "nope", "secret": "x", "org": org}), "provider"),
        (json!({"provider": "fake", "secret": "", "org": org}), "secret"),
        (json!({"provider": "fake", "secret": "x", "org": org, "overlap_seconds": 10_000_000}), "overlap_seconds"),
    ] {
        let (st, v) = as_root(&gw, Method::POST, "/admin/v1/credentials", Some(body)).await;
        assert_eq!((st, v["error"]["param"].clone()), (400, json!(param)));
    }

    // another org's admin cannot see, delete or store platform credentials
    let (_, t) = as_root(
        &gw,
        Method::POST,
        "/admin/v1/tokens",
        Some(json!({"name": "other-admin", "role": "org_admin", "org": other})),
    )
    .await;
    let other_admin = t["token"].as_str().unwrap().to_owned();
    let (st, _) =
        call(&gw, &other_admin, Method::DELETE, &format!("/admin/v1/credentials/{id}?org={other}"), None).await;
    assert_eq!(st, 404, "another tenant's credential does not exist for it");
    let (st, _) = call(&gw, &other_admin, Method::GET, &format!("/admin/v1/credentials?org={org}"), None).await;
    assert_eq!(st, 404);
    let platform = json!({"provider": "fake", "secret": "x", "platform": true});
    let (st, _) = call(&gw, &other_admin, Method::POST, "/admin/v1/credentials", Some(platform.clone())).await;
    assert_eq!(st, 403, "platform credentials are platform admins'");
    assert_eq!(as_root(&gw, Method::POST, "/admin/v1/credentials", Some(platform)).await.0, 201);

    // the value is nowhere in the clear: not in the audit trail, the logs or the database file
    let (_, audit) = as_root(&gw, Method::GET, "/admin/v1/audit?action=credential.create", None).await;
    assert!(audit["data"].as_array().is_some_and(|d| d.len() >= 3) && !audit.to_string().contains("canary"));
    assert!(!gw.logs().contains("canary"));
    let dir = gw.dir.as_ref().unwrap().path().join("data");
    for entry in walk(&dir) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        assert!(!bytes.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()), "{entry:?} holds the value");
    }

    // deleted by its own tenant
    let (st, v) = as_root(&gw, Method::DELETE, &format!("/admin/v1/credentials/{id}?org={org}"), None).await;
    assert_eq!((st, v["deleted"].clone()), (200, json!(true)));
    let (_, list): (u16, Value) = as_root(&gw, Method::GET, &format!("/admin/v1/credentials?org={org}"), None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn an_orgs_own_credential_serves_only_its_traffic_project_first() {
    let fake = FakeProvider::spawn().await;
    let gw = gateway_with(&fake).await;
    let (_, orgs) = as_root(&gw, Method::GET, "/admin/v1/orgs", None).await;
    let a = orgs["data"][0]["id"].as_str().unwrap().to_owned();
    let (_, b) = as_root(&gw, Method::POST, "/admin/v1/orgs", Some(json!({"name": "b"}))).await;
    let b = b["id"].as_str().unwrap().to_owned();
    let (_, p) = as_root(&gw, Method::POST, &format!("/admin/v1/orgs/{b}/projects"), Some(json!({"name": "bp"}))).await;
    let bp = p["id"].as_str().unwrap().to_owned();
    let (_, key_b) = gw.create_key(json!({"name": "b", "org": "b", "project": "bp"})).await;
    let presented = |key: String| {
        let (gw, fake) = (&gw, &fake);
        async move {
            assert_eq!(gw.chat(&key, "fake-model").await.status(), 200);
            let seen = fake.last_request().unwrap().headers;
            seen.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
        }
    };
    let store = |body: Value| {
        let gw = &gw;
        async move {
            let (st, v) = as_root(gw, Method::POST, "/admin/v1/credentials", Some(body)).await;
            assert_eq!(st, 201);
            v["id"].as_str().unwrap().to_owned()
        }
    };
    let config_key = format!("Bearer {}", crate::common::PROVIDER_SECRET);
    assert_eq!(presented(gw.key().to_owned()).await, config_key, "no stored credential: the configured one");

    // org A brings its own key: A's traffic carries it, B's does not
    let a_id = store(json!({"provider": "fake", "secret": "sk-org-a-own", "org": a})).await;
    let a_own = gatehouse_testkit::eventually(std::time::Duration::from_secs(10), || async {
        presented(gw.key().to_owned()).await == "Bearer sk-org-a-own"
    })
    .await;
    assert!(a_own, "org A's own key serves org A");
    assert_eq!(presented(key_b.clone()).await, config_key, "never another org's");

    // B's project key comes before B's org key, which comes before the platform's
    store(json!({"provider": "fake", "secret": "sk-platform", "platform": true})).await;
    store(json!({"provider": "fake", "secret": "sk-org-b", "org": b})).await;
    store(json!({"provider": "fake", "secret": "sk-b-project", "org": b, "project": bp})).await;
    let project_first = gatehouse_testkit::eventually(std::time::Duration::from_secs(10), || async {
        presented(key_b.clone()).await == "Bearer sk-b-project"
    })
    .await;
    assert!(project_first);
    assert_eq!(presented(gw.key().to_owned()).await, "Bearer sk-org-a-own", "A's own before the platform's");
    assert!(!gw.logs().contains("sk-org-a-own") && !gw.logs().contains("sk-b-project"));
    // the audit names the credential presented, by id and version
    let named = gatehouse_testkit::eventually(std::time::Duration::from_secs(30), || async {
        let (_, v) = as_root(&gw, Method::GET, "/admin/v1/audit?action=request.allowed&limit=100", None).await;
        v.to_string().contains(&format!("\"provider_credential\":\"{a_id}:v1\""))
    })
    .await;
    assert!(named, "the audit event names the stored credential used");
    // and so does a failed request's
    fake.set(gatehouse_testkit::Behavior::Status(503));
    assert_eq!(gw.chat(gw.key(), "fake-model").await.status(), 502);
    let named = gatehouse_testkit::eventually(std::time::Duration::from_secs(30), || async {
        let (_, v) = as_root(&gw, Method::GET, "/admin/v1/audit?action=provider.failed&limit=20", None).await;
        v.to_string().contains(&format!("\"provider_credential\":\"{a_id}:v1\""))
    })
    .await;
    assert!(named, "a failed request's audit event names the credential presented");
}

/// The CLI against the gateway, with `input` on standard input.
fn cli(gw: &gatehouse_testkit::TestGateway, args: &[&str], input: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(args)
        .env_clear()
        .env("GATEHOUSE_ADMIN_URL", &gw.admin_url)
        .env("GATEHOUSE_ADMIN_TOKEN", gw.admin_token.as_deref().unwrap())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test]
async fn the_cli_sets_rotates_lists_and_deletes_reading_the_value_from_stdin() {
    let fake = FakeProvider::spawn().await;
    let gw = gateway_with(&fake).await;
    let (ok, out) = cli(&gw, &["credentials", "set", "--provider", "fake", "-o", "json"], &format!("{CANARY}\n"));
    assert!(ok, "{out}");
    let v1: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v1["version"], 1);
    let (ok, out) = cli(&gw, &["credentials", "set", "--provider", "fake", "--overlap", "10m"], "sk-next\n");
    assert!(ok && out.contains("v2") && out.contains("sha256:"), "{out}");
    let (ok, table) = cli(&gw, &["credentials", "list"], "");
    assert!(ok && table.lines().count() == 2 && !table.contains("canary"), "{table}");
    let (ok, out) = cli(&gw, &["credentials", "set", "--provider", "fake"], "");
    assert!(!ok && out.contains("no credential on standard input"), "{out}");
    let (ok, out) = cli(&gw, &["credentials", "delete", v1["id"].as_str().unwrap()], "");
    assert!(ok && out.contains("deleted"), "{out}");
    let (ok, table) = cli(&gw, &["credentials", "list"], "");
    assert!(ok && table.lines().count() == 1, "{table}");

    // rotate: the next version of one that exists (10 minutes of overlap by default)
    let (ok, out) = cli(&gw, &["credentials", "rotate", "--provider", "fake", "-o", "json"], "sk-third\n");
    assert!(ok, "{out}");
    let v3: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v3["version"], 3);
    let (ok, list) = cli(&gw, &["credentials", "list", "-o", "json"], "");
    let list: Value = serde_json::from_str(list.trim()).unwrap();
    assert!(ok && list["data"].as_array().unwrap().iter().any(|r| r["version"] == 2 && r["retire_at"].is_i64()));
    let (ok, out) = cli(&gw, &["credentials", "rotate", "--provider", "fake", "--project", "nope"], "sk-x\n");
    assert!(!ok && out.contains("no stored credential"), "{out}");

    // the providers' deployments
    let (ok, out) = cli(&gw, &["providers", "list"], "");
    assert!(ok && out.contains("fake  fake-model ->") && out.contains("breaker=closed"), "{out}");
}

#[tokio::test]
async fn a_callers_own_provider_key_is_forwarded_and_kept_nowhere() {
    const KEY: &str = "sk-caller-owned-canary-41c9";
    let fake = FakeProvider::spawn().await;
    let cfg = format!(
        "{}\n[[models]]\nname = \"byok\"\nprovider = \"fake\"\nprovider_model = \"upstream-model-v1\"\nprovider_key = \"caller\"\n",
        crate::common::upstream_config(&fake)
    );
    let gw =
        crate::common::gateway().config(&cfg).env("FAKE_UPSTREAM_KEY", crate::common::PROVIDER_SECRET).spawn().await;
    let ask = |model: &'static str, key: Option<&'static str>| {
        let gw = &gw;
        async move {
            let body = json!({"model": model, "messages": [{"role": "user", "content": "hello"}]});
            let mut rb = gw.http.post(format!("{}/v1/chat/completions", gw.data_url)).bearer_auth(gw.key()).json(&body);
            if let Some(k) = key {
                rb = rb.header("x-gatehouse-provider-key", k);
            }
            rb.send().await.unwrap()
        }
    };
    let presented = || fake.last_request().unwrap().headers["authorization"].to_str().unwrap().to_owned();

    // without the caller's key the model is not served, and nothing reaches the provider
    let before = fake.calls();
    let resp = ask("byok", None).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"]["param"], "x-gatehouse-provider-key");
    assert_eq!(fake.calls(), before);
    // with it, it is what the provider sees
    assert_eq!(ask("byok", Some(KEY)).await.status(), 200);
    assert_eq!(presented(), format!("Bearer {KEY}"));
    // the response cache on for the org: a non-custodial answer is still never kept
    let (_, orgs) = as_root(&gw, Method::GET, "/admin/v1/orgs", None).await;
    let org = orgs["data"][0]["id"].as_str().unwrap().to_owned();
    let (st, _) =
        as_root(&gw, Method::PUT, &format!("/admin/v1/orgs/{org}/routing"), Some(json!({"cache_ttl_seconds": 300})))
            .await;
    assert_eq!(st, 200);
    let before = fake.calls();
    for _ in 0..2 {
        let resp = ask("byok", Some(KEY)).await;
        assert!(resp.status() == 200 && resp.headers().get("x-gatehouse-cache").is_none());
    }
    assert_eq!(fake.calls() - before, 2, "each non-custodial request reaches the provider");
    // a model served with the gateway's key never forwards a caller's
    assert_eq!(ask("fake-model", Some(KEY)).await.status(), 200);
    assert_eq!(presented(), format!("Bearer {}", crate::common::PROVIDER_SECRET));

    // and the key is kept nowhere: not in logs, metrics, the audit trail and its export, the
    // usage report, or any file of the data dir
    // (once the requests are in the audit trail and the usage ledger: both are written behind)
    crate::budgets::ledger(&gw, &org, "model=byok", 3).await;
    let audited = gatehouse_testkit::eventually(std::time::Duration::from_secs(30), || async {
        let text = gw.admin(Method::GET, "/admin/v1/audit?limit=200", None).await.text().await.unwrap_or_default();
        text.contains("\"model\":\"byok\"")
    })
    .await;
    assert!(audited, "the answer (and the refusal before it) are audited");
    assert!(!gw.logs().contains(KEY), "logs");
    let metrics = gw.http.get(format!("{}/metrics", gw.admin_url)).send().await.unwrap().text().await.unwrap();
    assert!(!metrics.contains(KEY), "metrics");
    for path in ["/admin/v1/audit?limit=200", "/admin/v1/audit/export?format=ndjson"] {
        let text = gw.admin(Method::GET, path, None).await.text().await.unwrap();
        assert!(!text.is_empty() && !text.contains(KEY), "{path}");
    }
    let usage = gw.admin(Method::GET, &format!("/admin/v1/orgs/{org}/usage"), None).await.text().await.unwrap();
    assert!(!usage.contains(KEY), "usage");
    let dir = gw.dir.as_ref().unwrap().path().join("data");
    for entry in walk(&dir) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        assert!(!bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes()), "{entry:?} holds the caller's key");
    }
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

#[tokio::test]
async fn an_org_can_refuse_every_credential_but_its_own() {
    let fake = FakeProvider::spawn().await;
    let gw = gateway_with(&fake).await;
    let (_, orgs) = as_root(&gw, Method::GET, "/admin/v1/orgs", None).await;
    let org = orgs["data"][0]["id"].as_str().unwrap().to_owned();
    let (st, _) = as_root(
        &gw,
        Method::PUT,
        &format!("/admin/v1/orgs/{org}/routing"),
        Some(json!({"own_credentials_only": true})),
    )
    .await;
    assert_eq!(st, 200);
    // the platform's (or the configured) key may not serve it: refused, nothing sent
    let before = fake.calls();
    let resp = gw.chat(gw.key(), "fake-model").await;
    assert_eq!(resp.status(), 403);
    assert_eq!(fake.calls(), before);
    // once it brings its own, its own serves it
    let body = json!({"provider": "fake", "secret": "sk-only-ours", "org": org});
    assert_eq!(as_root(&gw, Method::POST, "/admin/v1/credentials", Some(body)).await.0, 201);
    let served = gatehouse_testkit::eventually(std::time::Duration::from_secs(10), || async {
        gw.chat(gw.key(), "fake-model").await.status() == 200
    })
    .await;
    assert!(served);
    assert_eq!(fake.last_request().unwrap().headers["authorization"], "Bearer sk-only-ours");
}

#[tokio::test]
async fn a_credential_rotated_with_an_overlap_under_load_fails_no_request() {
    let fake = FakeProvider::spawn().await;
    let gw = gateway_with(&fake).await;
    let (_, orgs) = as_root(&gw, Method::GET, "/admin/v1/orgs", None).await;
    let org = orgs["data"][0]["id"].as_str().unwrap().to_owned();
    let store = |secret: &'static str, overlap: u64| {
        let (gw, org) = (&gw, org.clone());
        async move {
            let body = json!({"provider": "fake", "secret": secret, "org": org, "overlap_seconds": overlap});
            let (st, v) = as_root(gw, Method::POST, "/admin/v1/credentials", Some(body)).await;
            assert_eq!(st, 201, "{v}");
        }
    };
    // the provider knows only the org's key; then the new one too, and finally only the new one
    fake.accept_keys(Some(&["sk-rotate-v1"]));
    store("sk-rotate-v1", 0).await;
    let key = gw.key().to_owned();
    assert!(
        gatehouse_testkit::eventually(std::time::Duration::from_secs(10), || async {
            gw.chat(&key, "fake-model").await.status() == 200
        })
        .await,
        "the stored credential serves"
    );
    let rejected = fake.rejected();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (http, url, key, stop) = (gw.http.clone(), gw.data_url.clone(), key.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut ok, mut failed) = (0u32, 0u32);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let body = json!({"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]});
                    let resp =
                        http.post(format!("{url}/v1/chat/completions")).bearer_auth(&key).json(&body).send().await;
                    match resp {
                        Ok(r) if r.status() == 200 => ok += 1,
                        _ => failed += 1,
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    // rotate: the provider accepts both, v2 is stored with a 2 s overlap for v1
    fake.accept_keys(Some(&["sk-rotate-v1", "sk-rotate-v2"]));
    store("sk-rotate-v2", 2).await;
    let presented = || fake.last_request().and_then(|r| r.headers.get("authorization").cloned());
    assert!(
        gatehouse_testkit::eventually(std::time::Duration::from_secs(10), || async {
            presented().is_some_and(|v| v == "Bearer sk-rotate-v2")
        })
        .await,
        "the new version serves"
    );
    // once the overlap is over the provider revokes v1: nothing presents it any more
    let overlap_over = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
    tokio::time::sleep_until(overlap_over).await;
    fake.accept_keys(Some(&["sk-rotate-v2"]));
    let calls = fake.calls();
    assert!(
        gatehouse_testkit::eventually(std::time::Duration::from_secs(10), || async { fake.calls() > calls + 50 }).await
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut failed) = (0, 0);
    for c in clients {
        let (o, f) = c.await.unwrap();
        (ok, failed) = (ok + o, failed + f);
    }
    assert!(ok > 100, "{ok} requests");
    assert_eq!((failed, fake.rejected() - rejected), (0, 0), "{ok} answered: no request failed, no key was refused");
}
