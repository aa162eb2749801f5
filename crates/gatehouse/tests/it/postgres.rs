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
