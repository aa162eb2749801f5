//! A fresh store per test: a SQLite file in a temp dir, or a PostgreSQL schema named by a UUID.
//! Under `CI=true` an unreachable PostgreSQL fails the test; elsewhere it is skipped loudly.

use gatehouse_store::Store;

pub struct TestStore {
    pub store: Store,
    _dir: Option<tempfile::TempDir>,
}

pub async fn sqlite() -> TestStore {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("gatehouse.db")).await.unwrap();
    store.migrate().await.unwrap();
    TestStore { store, _dir: Some(dir) }
}

pub fn postgres_url() -> String {
    std::env::var("GATEHOUSE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// `None` when PostgreSQL is unreachable outside CI.
pub async fn postgres() -> Option<TestStore> {
    let url = postgres_url();
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    let admin = match sqlx::PgPool::connect(&url).await {
        Ok(s) => s,
        Err(e) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("PostgreSQL at {url} is required under CI=true: {e}");
            }
            eprintln!("SKIPPED: PostgreSQL at {url} is unreachable ({e}); set CI=true to make this fatal");
            return None;
        }
    };
    // the schema name is ours (a UUID), not input
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}"))).execute(&admin).await.unwrap();
    admin.close().await;
    let store = Store::connect_postgres(&url, Some(&schema)).await.unwrap();
    store.migrate().await.unwrap();
    Some(TestStore { store, _dir: None })
}

/// Runs one async test body on both backends.
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;

            #[tokio::test]
            async fn sqlite() {
                let t = $crate::harness::sqlite().await;
                ($body)(t.store.clone()).await;
            }

            #[tokio::test]
            async fn postgres() {
                if let Some(t) = $crate::harness::postgres().await {
                    ($body)(t.store.clone()).await;
                }
            }
        }
    };
}
