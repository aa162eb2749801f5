//! A fresh store per test: a SQLite file in a temp dir, or a PostgreSQL schema named by a UUID.
//! Under `CI=true` an unreachable PostgreSQL fails the test; elsewhere it is skipped loudly.

use gatehouse_store::Store;

pub struct TestStore {
    pub store: Store,
    /// A scratch directory (the SQLite file lives here).
    pub dir: tempfile::TempDir,
    place: Place,
}

enum Place {
    Sqlite(std::path::PathBuf),
    Postgres { url: String, schema: String },
}

impl TestStore {
    /// A second, independent connection pool to the same database (another "replica").
    #[expect(clippy::unwrap_used, reason = "test setup")]
    pub async fn reopen(&self) -> Store {
        match &self.place {
            Place::Sqlite(p) => Store::open_sqlite(p).await.unwrap(),
            Place::Postgres { url, schema } => Store::connect_postgres(url, Some(schema)).await.unwrap(),
        }
    }

    /// Runs raw SQL against the database, as someone with direct access would (tamper
    /// tests).
    #[expect(clippy::unwrap_used, reason = "test setup")]
    pub async fn exec(&self, sql: &str) -> u64 {
        match &self.place {
            Place::Sqlite(p) => exec_sqlite(p, sql).await,
            Place::Postgres { url, schema } => {
                let opts: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
                let pool = sqlx::PgPool::connect_with(opts.options([("search_path", schema.as_str())])).await.unwrap();
                let n =
                    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).execute(&pool).await.unwrap().rows_affected();
                pool.close().await;
                n
            }
        }
    }
}

/// Runs raw SQL against a SQLite file, e.g. a running gateway's store (tamper tests).
#[expect(clippy::unwrap_used, reason = "test setup")]
pub async fn exec_sqlite(path: &std::path::Path, sql: &str) -> u64 {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    let n = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).execute(&pool).await.unwrap().rows_affected();
    pool.close().await;
    n
}

#[expect(clippy::unwrap_used, reason = "test setup")]
pub async fn sqlite() -> TestStore {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gatehouse.db");
    let store = Store::open_sqlite(&path).await.unwrap();
    store.migrate().await.unwrap();
    TestStore { store, dir, place: Place::Sqlite(path) }
}

pub fn postgres_url() -> String {
    std::env::var("GATEHOUSE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// `None` when PostgreSQL is unreachable outside CI.
#[expect(clippy::unwrap_used, clippy::print_stderr, reason = "test setup: fail or skip loudly")]
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
    Some(TestStore { store, dir: tempfile::tempdir().unwrap(), place: Place::Postgres { url, schema } })
}

/// Runs one async test body on both backends.
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;

            #[tokio::test]
            async fn sqlite() {
                let t = $crate::stores::sqlite().await;
                ($body)(t.store.clone()).await;
            }

            #[tokio::test]
            async fn postgres() {
                if let Some(t) = $crate::stores::postgres().await {
                    ($body)(t.store.clone()).await;
                }
            }
        }
    };
}

/// Like [`both_backends!`], handing the body the whole [`TestStore`].
#[macro_export]
macro_rules! each_store {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;

            #[tokio::test]
            async fn sqlite() {
                ($body)($crate::stores::sqlite().await).await;
            }

            #[tokio::test]
            async fn postgres() {
                if let Some(t) = $crate::stores::postgres().await {
                    ($body)(t).await;
                }
            }
        }
    };
}

/// A SQLite store with the default tenant and one API key in it: what a gate, router or
/// benchmark needs before a request can authenticate.
pub struct Keyed {
    pub test: TestStore,
    pub tenant: gatehouse_store::Tenant,
    /// The hasher the key's digest was made with (a verifier must use the same one).
    pub hasher: std::sync::Arc<gatehouse_security::KeyHasher>,
    pub key: secrecy::SecretString,
}

/// [`Keyed`], with the key bound to `allowed_models` (`None`: the project's).
#[expect(clippy::unwrap_used, reason = "test setup")]
pub async fn keyed(allowed_models: Option<Vec<String>>) -> Keyed {
    use gatehouse_security::{KeyHasher, KeyKind, MasterKey, generate_key};
    let test = sqlite().await;
    let tenant = test.store.ensure_default_tenant().await.unwrap();
    let hasher = std::sync::Arc::new(KeyHasher::new(&MasterKey::from_bytes([7; 32])));
    let key = generate_key(KeyKind::Api);
    let new = gatehouse_store::NewKey {
        id: gatehouse_core::KeyId::generate(),
        org: tenant.org,
        project: tenant.project,
        name: "test".into(),
        digest: hasher.digest(KeyKind::Api, &key).0,
        hint: "h".into(),
        allowed_models,
        created_at: gatehouse_store::now_ms(),
        expires_at: None,
        user: None,
    };
    test.store.insert_key(&new).await.unwrap();
    Keyed { test, tenant, hasher, key }
}
