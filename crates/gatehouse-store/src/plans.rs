//! The query plans of the statements the console's pages run on every view, on both backends:
//! each finds its rows through an index, never by reading a whole table (issue #22's budget:
//! a page in < 50 ms with 10,000 keys and 1M audit events; bench/console.sh measures it).
//! PostgreSQL plans small tables with sequential scans whatever the indexes, so its plans are
//! taken with `enable_seqscan = off`: a table without a usable index still scans then.

use sqlx::Row;

use crate::Store;
use crate::store::Pool;

/// A statement and its binds (all text or integers), as the console runs it.
struct Case {
    name: &'static str,
    sql: &'static str,
    binds: Vec<Bind>,
    /// An index the plan must name.
    index: &'static str,
}

enum Bind {
    Text(Option<&'static str>),
    Int(Option<i64>),
    Bool(bool),
    Blob(Vec<u8>),
}

fn cases() -> Vec<Case> {
    use Bind::{Blob, Bool, Int, Text};
    let org = Some("0190f4b8-0000-7000-8000-000000000001");
    let chain = Some("org/0190f4b8-0000-7000-8000-000000000001");
    vec![
        Case {
            name: "keys of an org, newest first, after a key",
            sql: crate::store::KEYS_OF_ORG,
            binds: vec![Text(org), Text(None), Text(Some("0190f4b8-0000-7000-8000-0000000000ff")), Int(Some(51))],
            index: "api_keys_org_id",
        },
        Case {
            name: "the latest audit segments of one chain",
            sql: crate::audit::LATEST_OF_CHAIN,
            binds: vec![Text(chain), Int(Some(16))],
            index: "audit_log_chain_last_at",
        },
        Case {
            name: "older audit segments of one chain",
            sql: crate::audit::LATEST_OF_CHAIN_AFTER,
            binds: vec![Text(chain), Int(Some(1_000)), Int(Some(5)), Int(Some(16))],
            index: "audit_log_chain_last_at",
        },
        Case {
            name: "the latest audit segments of every chain",
            sql: crate::audit::LATEST,
            binds: vec![Int(Some(16))],
            index: "audit_log_latest",
        },
        Case {
            name: "older audit segments of every chain",
            sql: crate::audit::LATEST_AFTER,
            binds: vec![Int(Some(1_000)), Text(chain), Int(Some(5)), Int(Some(16))],
            index: "audit_log_latest",
        },
        Case {
            name: "a session by its digest",
            sql: crate::sessions::LIVE_BY_DIGEST,
            binds: vec![Blob(vec![7; 32]), Int(Some(1)), Int(Some(0))],
            index: "console_sessions",
        },
        Case {
            name: "the sessions of an org",
            sql: crate::sessions::LIST_SCOPED,
            binds: vec![Bool(false), Text(org), Text(None), Text(None), Int(Some(0)), Text(None), Int(Some(1000))],
            index: "console_sessions",
        },
    ]
}

/// The plan of `sql` with `binds`, one line per step. (`EXPLAIN` in front of a static
/// statement, in a test: the one place a statement is put together at run time.)
async fn plan(store: &Store, sql: &str, binds: &[Bind]) -> Vec<String> {
    macro_rules! bound {
        ($q:expr) => {{
            let mut q = $q;
            for b in binds {
                q = match b {
                    Bind::Text(v) => q.bind(*v),
                    Bind::Int(v) => q.bind(*v),
                    Bind::Bool(v) => q.bind(*v),
                    Bind::Blob(v) => q.bind(v.clone()),
                };
            }
            q
        }};
    }
    match &store.pool {
        Pool::Sqlite(p) => {
            let explain = format!("EXPLAIN QUERY PLAN {sql}");
            let rows = bound!(sqlx::query(sqlx::AssertSqlSafe(explain))).fetch_all(p).await.unwrap_or_default();
            rows.iter().map(|r| r.try_get::<String, _>("detail").unwrap_or_default()).collect()
        }
        Pool::Postgres(p) => {
            let explain = format!("EXPLAIN {sql}");
            let Ok(mut tx) = p.begin().await else { return Vec::new() };
            let _ = sqlx::query("SET LOCAL enable_seqscan = off").execute(&mut *tx).await;
            let rows = bound!(sqlx::query(sqlx::AssertSqlSafe(explain))).fetch_all(&mut *tx).await.unwrap_or_default();
            rows.iter().map(|r| r.try_get::<String, _>(0).unwrap_or_default()).collect()
        }
    }
}

async fn check(store: &Store) {
    for c in cases() {
        let lines = plan(store, c.sql, &c.binds).await;
        assert!(!lines.is_empty(), "{}: no plan", c.name);
        let text = lines.join("\n");
        let whole_table = lines.iter().any(|l| {
            let l = l.trim_start_matches([' ', '-', '>']);
            l.starts_with("Seq Scan") || (l.starts_with("SCAN ") && !l.contains(" USING "))
        });
        assert!(!whole_table, "{} reads a whole table:\n{text}", c.name);
        assert!(text.contains(c.index), "{} does not use {}:\n{text}", c.name, c.index);
    }
}

#[tokio::test]
async fn the_consoles_statements_use_indexes_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("plans.db")).await.unwrap();
    store.migrate().await.unwrap();
    check(&store).await;
}

#[tokio::test]
async fn the_consoles_statements_use_indexes_on_postgres() {
    let url = std::env::var("GATEHOUSE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let schema = format!("plans_{}_{}", std::process::id(), crate::now_ms());
    let admin = match Store::connect_postgres(&url, None).await {
        Ok(s) => s,
        Err(e) => {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "PostgreSQL is required under CI=true: {e}");
            return;
        }
    };
    let Pool::Postgres(p) = &admin.pool else { return };
    let create = format!("CREATE SCHEMA {schema}");
    sqlx::query(sqlx::AssertSqlSafe(create)).execute(p).await.unwrap();
    let store = Store::connect_postgres(&url, Some(&schema)).await.unwrap();
    store.migrate().await.unwrap();
    check(&store).await;
    let drop = format!("DROP SCHEMA {schema} CASCADE");
    let _ = sqlx::query(sqlx::AssertSqlSafe(drop)).execute(p).await;
}
