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
