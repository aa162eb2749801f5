//! The gateway on PostgreSQL: the same binary, pointed at a fresh schema.

use crate::common::gateway;

fn postgres_url() -> String {
    std::env::var("GATEHOUSE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A fresh schema and a URL whose connections use it; `None` when PostgreSQL is unreachable
/// outside CI (under `CI=true` that is a failure).
pub fn fresh_schema_url() -> Option<String> {
    let url = postgres_url();
    let schema = format!("gw_{}", std::process::id())
        + &format!("_{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
    let ok = std::process::Command::new("psql").arg(&url).arg("-qc").arg(format!("CREATE SCHEMA {schema}")).output();
    match ok {
        Ok(o) if o.status.success() => {}
        other => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("PostgreSQL at {url} is required under CI=true: {other:?}");
            }
            eprintln!("SKIPPED: PostgreSQL at {url} is unreachable");
            return None;
        }
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    Some(format!("{url}{sep}options=-c%20search_path%3D{schema}"))
}

#[tokio::test]
async fn the_gateway_runs_on_postgres() {
    let Some(url) = fresh_schema_url() else { return };
    let gw = gateway().env("GATEHOUSE_DATABASE_URL", &url).spawn().await;
    let logs = gw.logs_once("gatehouse started").await;
    assert!(logs.contains("Postgres"), "{logs}");
    let key = gw.key().to_owned();
    assert_eq!(gw.chat(&key, "mock").await.status(), 200);
    let (id, second) = gw.create_key(serde_json::json!({"name": "pg"})).await;
    assert_eq!(gw.chat(&second, "mock").await.status(), 200);
    assert_eq!(gw.revoke_key(&id).await.status(), 200);
    assert!(
        gatehouse_testkit::eventually(std::time::Duration::from_secs(1), || async {
            gw.chat(&second, "mock").await.status() == 401
        })
        .await
    );
    // nothing was written to SQLite
    assert!(!gw.data_path().join("data/gatehouse.db").exists());
}

/// Two replicas on one PostgreSQL (one master key): a capability token minted on one and
/// delegated on the other dies on both within a second of its revocation on the first.
#[tokio::test]
async fn a_capability_revoked_on_one_replica_stops_on_the_other_within_a_second() {
    let Some(url) = fresh_schema_url() else { return };
    let master = "5a".repeat(32);
    let a = gateway().env("GATEHOUSE_DATABASE_URL", &url).env("GATEHOUSE_MASTER_KEY", &master).spawn().await;
    let b = gateway().env("GATEHOUSE_DATABASE_URL", &url).env("GATEHOUSE_MASTER_KEY", &master).spawn().await;
    let body = serde_json::json!({"name": "r", "scopes": ["chat:*", "tokens:delegate"], "expires_in_seconds": 600});
    let resp = a.admin(reqwest::Method::POST, "/admin/v1/capabilities", Some(&body)).await;
    assert_eq!(resp.status(), 201);
    let minted: serde_json::Value = resp.json().await.unwrap();
    let parent = minted["token"].as_str().unwrap().to_owned();
    let resp = b.post("/v1/tokens/delegate", Some(&parent), &serde_json::json!({"name": "on-b"})).await;
    assert_eq!(resp.status(), 201);
    let child: serde_json::Value = resp.json().await.unwrap();
    let child = child["token"].as_str().unwrap().to_owned();
    for t in [&parent, &child] {
        assert_eq!(b.chat(t, "mock").await.status(), 200, "b verifies (and caches) it");
        assert_eq!(a.chat(t, "mock").await.status(), 200, "a verifies what b registered");
    }
    let id = minted["id"].as_str().unwrap();
    let resp = a.admin(reqwest::Method::POST, &format!("/admin/v1/capabilities/{id}/revoke"), None).await;
    assert_eq!(resp.status(), 200);
    let started = std::time::Instant::now();
    assert!(
        gatehouse_testkit::eventually(std::time::Duration::from_secs(1), || async {
            b.chat(&child, "mock").await.status() == 401 && b.chat(&parent, "mock").await.status() == 401
        })
        .await,
        "replica b still honours a revoked tree after 1 s"
    );
    eprintln!("revocation reached the other replica in {:?}", started.elapsed());
}

/// `url` pointed at `proxy` instead of the server itself.
fn through(url: &str, proxy: &gatehouse_testkit::proxy::CutProxy) -> String {
    let mut u = url::Url::parse(url).unwrap();
    u.set_host(Some("127.0.0.1")).unwrap();
    u.set_port(Some(proxy.addr.port())).unwrap();
    u.to_string()
}

/// The address of the PostgreSQL server a URL names (for a proxy to forward to).
pub fn server_of(url: &str) -> std::net::SocketAddr {
    let u = url::Url::parse(url).unwrap();
    let host = match u.host_str().unwrap() {
        "localhost" => "127.0.0.1",
        h => h,
    };
    format!("{host}:{}", u.port().unwrap_or(5432)).parse().unwrap()
}

/// PostgreSQL goes away under load and comes back: keys the gateway knows keep being served,
/// the audit trail spools and loses no answered request, a key it never saw waits for the
/// store (503, not 401), and everything recovers without a restart.
#[tokio::test]
async fn postgres_gone_under_load_serves_known_keys_spools_the_audit_and_recovers_without_restart() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Duration;

    let Some(url) = fresh_schema_url() else { return };
    let proxy = gatehouse_testkit::proxy::CutProxy::spawn(server_of(&url)).await;
    let gw = gateway().env("GATEHOUSE_DATABASE_URL", &through(&url, &proxy)).spawn().await;
    let key = gw.key().to_owned();
    assert_eq!(gw.chat(&key, "mock").await.status(), 200);
    let (_, unseen) = gw.create_key(serde_json::json!({"name": "unseen"})).await;

    let (stop, ok, refused) =
        (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(1)), Arc::new(AtomicUsize::new(0)));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (http, url, key) = (gw.http.clone(), format!("{}/v1/chat/completions", gw.data_url), key.clone());
            let (stop, ok, refused) = (stop.clone(), ok.clone(), refused.clone());
            tokio::spawn(async move {
                let body = serde_json::json!({"model": "mock", "messages": [{"role": "user", "content": "hello"}]});
                while !stop.load(Ordering::Relaxed) {
                    let status = http.post(&url).bearer_auth(&key).json(&body).send().await.unwrap().status();
                    let counter = if status == 200 { &ok } else { &refused };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let served = |n: usize| {
        let ok = ok.clone();
        async move {
            gatehouse_testkit::eventually(Duration::from_secs(10), || async { ok.load(Ordering::Relaxed) >= n }).await
        }
    };
    assert!(served(50).await);

    proxy.cut();
    let before = ok.load(Ordering::Relaxed);
    // a key this replica never verified cannot be checked: unavailable, never "invalid"
    let resp = gw.chat(&unseen, "mock").await;
    assert_eq!(resp.status(), 503, "{}", resp.text().await.unwrap());
    // the control plane cannot write either
    let resp = gw.admin(reqwest::Method::POST, "/admin/v1/keys", Some(&serde_json::json!({"name": "during"}))).await;
    assert_eq!(resp.status(), 503);
    // the known key goes on being served throughout
    assert!(served(before + 200).await, "known keys are served while the store is away");
    let spooled = gatehouse_testkit::eventually(Duration::from_secs(15), || async {
        gw.metric("gatehouse_audit_events_total{result=\"spooled\"}").await > 0.0
    })
    .await;
    assert!(spooled, "the audit spools while the store is away");

    proxy.resume();
    // recovery without a restart: writes work, the unseen key is checked and served
    let recovered = gatehouse_testkit::eventually(Duration::from_secs(15), || async {
        gw.admin(reqwest::Method::POST, "/admin/v1/keys", Some(&serde_json::json!({"name": "after"}))).await.status()
            == 201
    })
    .await;
    assert!(recovered, "the control plane writes again");
    assert_eq!(gw.chat(&unseen, "mock").await.status(), 200);
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(refused.load(Ordering::Relaxed), 0, "no request of a known key was refused");

    // no answered request is missing from the trail, and the trail verifies
    let answered = ok.load(Ordering::Relaxed) + 1; // and the unseen key's
    let counted = gatehouse_testkit::eventually(Duration::from_secs(15), || async {
        let text = gw
            .admin(reqwest::Method::GET, "/admin/v1/audit/export?format=ndjson&action=request.allowed", None)
            .await
            .text()
            .await
            .unwrap();
        text.lines().filter(|l| l.contains("\"action\":\"request.allowed\"")).count() >= answered
    })
    .await;
    assert!(counted, "every answered request is in the trail");
    let v: serde_json::Value =
        gw.admin(reqwest::Method::POST, "/admin/v1/audit/verify", None).await.json().await.unwrap();
    assert_eq!(v["ok"], true, "{v}");
}

/// With `on_store_failure = "fail_closed"`, the data plane refuses what it could not audit
/// while PostgreSQL is away, and serves again once it is back.
#[tokio::test]
async fn postgres_gone_with_a_fail_closed_audit_refuses_then_recovers() {
    use std::time::Duration;
    let Some(url) = fresh_schema_url() else { return };
    let proxy = gatehouse_testkit::proxy::CutProxy::spawn(server_of(&url)).await;
    let gw = gateway()
        .config("[audit]\non_store_failure = \"fail_closed\"\n")
        .env("GATEHOUSE_DATABASE_URL", &through(&url, &proxy))
        .spawn()
        .await;
    let key = gw.key().to_owned();
    assert_eq!(gw.chat(&key, "mock").await.status(), 200);
    proxy.cut();
    let closed = gatehouse_testkit::eventually(Duration::from_secs(15), || async {
        gw.chat(&key, "mock").await.status() == 503
    })
    .await;
    assert!(closed, "unauditable requests are refused");
    proxy.resume();
    let open = gatehouse_testkit::eventually(Duration::from_secs(15), || async {
        gw.chat(&key, "mock").await.status() == 200
    })
    .await;
    assert!(open, "served again once the store is back");
}

/// Three replicas start together on an empty store: exactly one bootstraps it (one admin token
/// printed, one in the store), and every replica accepts that token.
#[tokio::test]
async fn replicas_starting_together_on_an_empty_store_bootstrap_it_once() {
    let Some(url) = fresh_schema_url() else { return };
    let master = "5a".repeat(32);
    let replica = || gateway().env("GATEHOUSE_DATABASE_URL", &url).env("GATEHOUSE_MASTER_KEY", &master).spawn();
    let (a, b, c) = tokio::join!(replica(), replica(), replica());
    let printed: Vec<String> = [&a, &b, &c].iter().filter_map(|g| g.admin_token.clone()).collect();
    assert_eq!(printed.len(), 1, "one replica prints the bootstrap secrets, the others none");
    assert_eq!([&a, &b, &c].iter().filter(|g| g.api_key.is_some()).count(), 1);
    for g in [&a, &b, &c] {
        let (status, tokens) =
            crate::common::call(g, &printed[0], reqwest::Method::GET, "/admin/v1/tokens", None).await;
        assert_eq!(status, 200, "{tokens}");
        assert_eq!(tokens["data"].as_array().unwrap().len(), 1, "one admin token in the store: {tokens}");
    }
}
