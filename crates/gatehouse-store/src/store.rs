use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use gatehouse_core::{KeyId, OrgId, ProjectId};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

use crate::records::{RawAdminTokenRow, RawKeyRow};
use crate::{AdminTokenRow, Error, KeyRow, NewKey, Tenant, now_ms};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone, Debug)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The source of truth. Cheap to clone (a pool handle).
#[derive(Clone, Debug)]
pub struct Store {
    pub(crate) pool: Pool,
}

/// Bounds every wait for the database so a dead store surfaces as `Unavailable`, not a hang.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// `PRAGMA cache_size` of each SQLite connection: negative is KiB, so 512 KiB.
const SQLITE_CACHE_KIB: &str = "-512";

impl Store {
    /// Opens (creating if needed) the embedded SQLite database: WAL so readers never block
    /// the writer, a busy timeout so concurrent writers wait instead of failing.
    pub async fn open_sqlite(path: &Path) -> Result<Store, Error> {
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true)
            // SQLite's own page cache, per connection (its default is 2 MB): the writers only
            // append and the reads are served from the kernel's page cache anyway; at the
            // default the four connections held 4-5 MiB more after a load (bench/memory.sh)
            .pragma("cache_size", SQLITE_CACHE_KIB);
        let pool =
            SqlitePoolOptions::new().max_connections(4).acquire_timeout(ACQUIRE_TIMEOUT).connect_with(opts).await?;
        Ok(Store { pool: Pool::Sqlite(pool) })
    }

    /// Connects to PostgreSQL. `schema`, when given, is used as the search path (tests give
    /// each run its own schema).
    pub async fn connect_postgres(url: &str, schema: Option<&str>) -> Result<Store, Error> {
        let mut opts = PgConnectOptions::from_str(url)?;
        if let Some(s) = schema {
            opts = opts.options([("search_path", s)]);
        }
        let pool = PgPoolOptions::new().max_connections(16).acquire_timeout(ACQUIRE_TIMEOUT).connect_with(opts).await?;
        Ok(Store { pool: Pool::Postgres(pool) })
    }

    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    pub async fn migrate(&self) -> Result<(), Error> {
        match &self.pool {
            Pool::Sqlite(p) => sqlx::migrate!("./migrations/sqlite").run(p).await.map_err(Error::Migrate),
            Pool::Postgres(p) => sqlx::migrate!("./migrations/postgres").run(p).await.map_err(Error::Migrate),
        }
    }

    /// For `/readyz`: one trivial round trip.
    pub async fn ping(&self) -> Result<(), Error> {
        on_pool!(self, |p| sqlx::query("SELECT 1").execute(p).await.map(|_| ()).map_err(Error::from))
    }

    /// A transactionally consistent copy of the embedded database at `dest` (SQLite's
    /// `VACUUM INTO`: online, readers and the writer go on; `dest` must not exist). `None` on
    /// PostgreSQL, whose backups are `pg_dump`'s.
    pub async fn snapshot_sqlite(&self, dest: &str) -> Result<Option<()>, Error> {
        match &self.pool {
            Pool::Sqlite(p) => {
                sqlx::query("VACUUM INTO $1").bind(dest).execute(p).await?;
                Ok(Some(()))
            }
            Pool::Postgres(_) => Ok(None),
        }
    }

    /// SQLite's own check of the file's structure: `true` when it answers `ok`.
    pub async fn sqlite_intact(&self) -> Result<bool, Error> {
        match &self.pool {
            Pool::Sqlite(p) => {
                let answer: String = sqlx::query_scalar("PRAGMA integrity_check").fetch_one(p).await?;
                Ok(answer == "ok")
            }
            Pool::Postgres(_) => Ok(true),
        }
    }

    pub async fn close(&self) {
        on_pool!(self, |p| p.close().await)
    }

    /// Creates the `default` org and project if missing; idempotent and safe to race.
    pub async fn ensure_default_tenant(&self) -> Result<Tenant, Error> {
        let now = now_ms();
        let org_id = OrgId::generate().to_string();
        execute!(self,
            "INSERT INTO organizations (id, name, created_at) VALUES ($1, 'default', $2) ON CONFLICT (name) DO NOTHING";
            &org_id, now
        )?;
        let org = self.org_by_name("default").await?.ok_or(Error::Corrupt("organizations.default"))?;
        let project_id = ProjectId::generate().to_string();
        execute!(self,
            "INSERT INTO projects (id, org_id, name, created_at) VALUES ($1, $2, 'default', $3) ON CONFLICT (org_id, name) DO NOTHING";
            &project_id, org.to_string(), now
        )?;
        let project = self.project_by_name(org, "default").await?.ok_or(Error::Corrupt("projects.default"))?;
        Ok(Tenant { org, project })
    }

    pub async fn create_org(&self, name: &str) -> Result<OrgId, Error> {
        let id = OrgId::generate();
        execute!(self,
            "INSERT INTO organizations (id, name, created_at) VALUES ($1, $2, $3)";
            id.to_string(), name, now_ms()
        )?;
        Ok(id)
    }

    pub async fn create_project(&self, org: OrgId, name: &str) -> Result<ProjectId, Error> {
        let id = ProjectId::generate();
        execute!(self,
            "INSERT INTO projects (id, org_id, name, created_at) VALUES ($1, $2, $3, $4)";
            id.to_string(), org.to_string(), name, now_ms()
        )?;
        Ok(id)
    }

    pub async fn org_by_name(&self, name: &str) -> Result<Option<OrgId>, Error> {
        let id: Option<String> =
            fetch!(self, query_scalar, fetch_optional, "SELECT id FROM organizations WHERE name = $1"; name)?;
        id.map(|s| OrgId::parse(&s).ok_or(Error::Corrupt("organizations.id"))).transpose()
    }

    /// Scoped by org: a project name in another org is not found.
    pub async fn project_by_name(&self, org: OrgId, name: &str) -> Result<Option<ProjectId>, Error> {
        let id: Option<String> = fetch!(self, query_scalar, fetch_optional,
            "SELECT id FROM projects WHERE org_id = $1 AND name = $2";
            org.to_string(), name
        )?;
        id.map(|s| ProjectId::parse(&s).ok_or(Error::Corrupt("projects.id"))).transpose()
    }

    pub async fn insert_key(&self, k: &NewKey) -> Result<(), Error> {
        let models = k.allowed_models.as_ref().map(|m| serde_json::to_string(m).unwrap_or_default());
        execute!(self,
            "INSERT INTO api_keys (id, org_id, project_id, name, digest, hint, allowed_models, created_at, expires_at, updated_at, user_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $8, $10)";
            k.id.to_string(), k.org.to_string(), k.project.to_string(), &k.name, &k.digest[..], &k.hint, &models,
            k.created_at, k.expires_at, k.user.map(|u| u.to_string())
        )?;
        Ok(())
    }

    /// The one unscoped key lookup: by digest, for authentication (the digest is the proof).
    pub async fn key_by_digest(&self, digest: &[u8; 32]) -> Result<Option<KeyRow>, Error> {
        let row: Option<RawKeyRow> = fetch!(self, query_as, fetch_optional, KEY_BY_DIGEST; &digest[..])?;
        row.map(KeyRow::try_from).transpose()
    }

    pub async fn key(&self, org: OrgId, id: KeyId) -> Result<Option<KeyRow>, Error> {
        let row: Option<RawKeyRow> =
            fetch!(self, query_as, fetch_optional, KEY_BY_ID; org.to_string(), id.to_string())?;
        row.map(KeyRow::try_from).transpose()
    }

    /// Keys that work now and never expire, in every org (`gatehouse doctor`).
    pub async fn keys_without_expiry(&self) -> Result<u64, Error> {
        let n: i64 = fetch!(
            self,
            query_scalar,
            fetch_one,
            "SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL AND expires_at IS NULL"
        )?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Keys of one org (optionally one project), newest first, older than `before` when given,
    /// at most `limit`.
    pub async fn list_keys(
        &self,
        org: OrgId,
        project: Option<ProjectId>,
        before: Option<KeyId>,
        limit: u32,
    ) -> Result<Vec<KeyRow>, Error> {
        let project = project.map(|p| p.to_string());
        let rows: Vec<RawKeyRow> = fetch!(self, query_as, fetch_all,
            KEYS_OF_ORG;
            org.to_string(), &project, before.map(|b| b.to_string()), i64::from(limit)
        )?;
        rows.into_iter().map(KeyRow::try_from).collect()
    }

    /// Shortens an unrevoked key's life to end at `at` (never lengthens it) and returns its
    /// digest; `None` when no such unrevoked key exists in this org. Used by rotation's grace.
    pub async fn expire_key_at(&self, org: OrgId, id: KeyId, at: i64) -> Result<Option<[u8; 32]>, Error> {
        let digest: Option<Vec<u8>> = fetch!(self, query_scalar, fetch_optional,
            "UPDATE api_keys SET expires_at = CASE WHEN expires_at IS NULL OR expires_at > $1 THEN $1 ELSE expires_at END, \
                 updated_at = $2 WHERE org_id = $3 AND id = $4 AND revoked_at IS NULL RETURNING digest";
            at, now_ms(), org.to_string(), id.to_string()
        )?;
        digest.map(|d| <[u8; 32]>::try_from(d.as_slice()).map_err(|_| Error::Corrupt("api_keys.digest"))).transpose()
    }

    /// Marks a key revoked and returns its digest (so caches can evict it at once); `None`
    /// when no such unrevoked key exists in this org.
    pub async fn revoke_key(&self, org: OrgId, id: KeyId) -> Result<Option<[u8; 32]>, Error> {
        let digest: Option<Vec<u8>> = fetch!(self, query_scalar, fetch_optional,
            "UPDATE api_keys SET revoked_at = $1, updated_at = $1 WHERE org_id = $2 AND id = $3 AND revoked_at IS NULL RETURNING digest";
            now_ms(), org.to_string(), id.to_string()
        )?;
        digest.map(|d| <[u8; 32]>::try_from(d.as_slice()).map_err(|_| Error::Corrupt("api_keys.digest"))).transpose()
    }

    /// Digests of keys whose standing changed at or after `since_ms` (revoked, or their org or
    /// project disabled or enabled), so every replica can evict them from its cache without a
    /// per-request round trip.
    /// Records when keys were last used: `(key, at_ms)` pairs, each applied only if it is later
    /// than what is stored (replicas flush independently, in any order). One statement per
    /// key inside one transaction; returns how many rows moved forward.
    pub async fn touch_keys(&self, used: &[(KeyId, i64)]) -> Result<u64, Error> {
        const TOUCH: &str =
            "UPDATE api_keys SET last_used_at = $1 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)";
        let mut moved = 0;
        macro_rules! all_in_tx {
            ($pool:expr) => {{
                let mut tx = $pool.begin().await?;
                for (id, at) in used {
                    moved += sqlx::query(TOUCH).bind(*at).bind(id.to_string()).execute(&mut *tx).await?.rows_affected();
                }
                tx.commit().await?;
            }};
        }
        match &self.pool {
            Pool::Sqlite(p) => all_in_tx!(p),
            Pool::Postgres(p) => all_in_tx!(p),
        }
        Ok(moved)
    }

    pub async fn keys_changed_since(&self, since_ms: i64) -> Result<Vec<[u8; 32]>, Error> {
        let rows: Vec<Vec<u8>> = fetch!(self, query_scalar, fetch_all,
            "SELECT digest FROM api_keys WHERE updated_at >= $1";
            since_ms
        )?;
        rows.into_iter()
            .map(|d| <[u8; 32]>::try_from(d.as_slice()).map_err(|_| Error::Corrupt("api_keys.digest")))
            .collect()
    }

    /// Disables (or re-enables) an organization and, in the same transaction, marks all its
    /// keys and capability tokens changed so every replica drops them from its cache. False if no such org.
    pub async fn set_org_disabled(&self, org: OrgId, disabled: bool) -> Result<bool, Error> {
        let now = now_ms();
        let at = disabled.then_some(now);
        let n = on_pool!(self, |p| {
            let mut tx = p.begin().await?;
            let n = sqlx::query("UPDATE organizations SET disabled_at = $1 WHERE id = $2")
                .bind(at)
                .bind(org.to_string())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            mark_credentials_changed!(tx, now, org, None::<ProjectId>).await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(n)
        })?;
        Ok(n > 0)
    }

    /// Disables (or re-enables) a project of an org, with its keys, like [`Store::set_org_disabled`].
    pub async fn set_project_disabled(&self, org: OrgId, project: ProjectId, disabled: bool) -> Result<bool, Error> {
        let now = now_ms();
        let at = disabled.then_some(now);
        let n = on_pool!(self, |p| {
            let mut tx = p.begin().await?;
            let n = sqlx::query("UPDATE projects SET disabled_at = $1 WHERE org_id = $2 AND id = $3")
                .bind(at)
                .bind(org.to_string())
                .bind(project.to_string())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            mark_credentials_changed!(tx, now, org, Some(project)).await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(n)
        })?;
        Ok(n > 0)
    }

    pub async fn admin_token_count(&self) -> Result<i64, Error> {
        Ok(fetch!(self, query_scalar, fetch_one, "SELECT COUNT(*) FROM admin_tokens WHERE revoked_at IS NULL")?)
    }

    /// Stores an admin token's digest with the role it acts with and the org it acts in
    /// (`None`: platform scope).
    pub async fn insert_admin_token(
        &self,
        id: &str,
        name: &str,
        digest: &[u8; 32],
        role: &str,
        org: Option<OrgId>,
        user: Option<gatehouse_core::UserId>,
    ) -> Result<(), Error> {
        execute!(self,
            "INSERT INTO admin_tokens (id, name, digest, created_at, role, org_id, user_id) VALUES ($1, $2, $3, $4, $5, $6, $7)";
            id, name, &digest[..], now_ms(), role, org.map(|o| o.to_string()), user.map(|u| u.to_string())
        )?;
        Ok(())
    }

    /// Records that an admin token authenticated a call at `now` (ms), unless a use within the
    /// last minute is already recorded: the control plane calls this only when its row says
    /// so, and the condition keeps replicas from writing over a later time.
    pub async fn touch_admin_token(&self, id: &str, now: i64) -> Result<(), Error> {
        execute!(self,
            "UPDATE admin_tokens SET last_used_at = $1 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $3)";
            now, id, now - 60_000
        )?;
        Ok(())
    }

    pub async fn admin_token_by_digest(&self, digest: &[u8; 32]) -> Result<Option<AdminTokenRow>, Error> {
        let row: Option<RawAdminTokenRow> = fetch!(self, query_as, fetch_optional,
            "SELECT id, name, created_at, revoked_at, role, org_id, user_id, last_used_at FROM admin_tokens WHERE digest = $1";
            &digest[..]
        )?;
        row.map(AdminTokenRow::try_from).transpose()
    }
}

// sqlx takes only `&'static str` SQL (no runtime formatting), so the shared column list is a
// macro that expands to a literal inside `concat!`.
macro_rules! select_keys {
    () => {
        "SELECT k.id, k.org_id, k.project_id, k.name, k.hint, k.allowed_models, k.created_at, k.expires_at, k.revoked_at, \
         o.disabled_at AS org_disabled_at, p.disabled_at AS project_disabled_at, p.allowed_models AS project_models, \
         k.user_id, p.default_limits AS project_limits, p.cors_origins AS project_cors, k.last_used_at \
         FROM api_keys k JOIN organizations o ON o.id = k.org_id JOIN projects p ON p.id = k.project_id"
    };
}
const KEY_BY_DIGEST: &str = concat!(select_keys!(), " WHERE k.digest = $1");
const KEY_BY_ID: &str = concat!(select_keys!(), " WHERE k.org_id = $1 AND k.id = $2");
pub(crate) const KEYS_OF_ORG: &str = concat!(
    select_keys!(),
    " WHERE k.org_id = $1 AND ($2 IS NULL OR k.project_id = $2) AND ($3 IS NULL OR k.id < $3) ORDER BY k.id DESC LIMIT $4"
);

#[cfg(test)]
mod tests {
    use super::{Pool, SQLITE_CACHE_KIB, Store};

    #[tokio::test]
    async fn every_sqlite_connection_keeps_a_small_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("g.db")).await.unwrap();
        let Pool::Sqlite(pool) = &store.pool else { panic!("sqlite") };
        // more connections than one, so the option is shown to reach each of them
        let (mut a, mut b) = (pool.acquire().await.unwrap(), pool.acquire().await.unwrap());
        for con in [&mut *a, &mut *b] {
            let (kib,): (i64,) = sqlx::query_as("PRAGMA cache_size").fetch_one(con).await.unwrap();
            assert_eq!(kib.to_string(), SQLITE_CACHE_KIB);
        }
    }
}
