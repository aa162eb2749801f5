//! `gatehouse backup`, `gatehouse backup verify` and `gatehouse restore`: a sealed archive of
//! the embedded store, taken online, checked whole before anything is restored from it.
//!
//! The archive is one file (created 0600):
//!
//! ```text
//! gatehouse-backup v1\n
//! <manifest JSON>\n
//! then per chunk of at most 4 MiB of the database: <u32 big-endian length><sealed chunk>
//! ```
//!
//! Each backup has a random data key, sealed in the manifest under a purpose-bound subkey of
//! the master key. Each chunk is sealed (AES-256-GCM, gatehouse-security's `Sealer`) under the
//! data key with associated data naming the backup, the SHA-256 of the manifest line, the
//! chunk's index and whether it is the last: a changed manifest, a reordered, dropped or
//! appended chunk does not open. The manifest also carries the SHA-256 of the whole database,
//! checked after opening. The master key is not in the archive: restoring needs it, as
//! running the gateway does.
//!
//! PostgreSQL stores are backed up with `pg_dump` (docs/OPERATIONS.md); these commands refuse
//! them.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use aws_lc_rs::digest;
use clap::{Args, Subcommand};
use gatehouse_config::StoreUrl;
use gatehouse_security::seal::Sealer;
use gatehouse_store::Store;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::audit_cmd::Local;
use crate::keyring::MasterKeys;

const MAGIC: &[u8] = b"gatehouse-backup v1\n";
const CHUNK: usize = 4 << 20;
/// The sealed data key's purpose under the master key.
const PURPOSE: &[u8] = b"gatehouse/v1/backup";
/// A manifest line longer than this is not one.
const MAX_MANIFEST: usize = 16 * 1024;

#[derive(Subcommand, Debug)]
pub enum BackupAction {
    /// Check an archive whole: it opens under the master key, every chunk is in place, the
    /// database is intact, and every audit chain in it verifies.
    Verify {
        /// The archive.
        file: PathBuf,
        #[command(flatten)]
        local: Local,
    },
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    #[command(flatten)]
    pub local: Local,
    /// Where to write the archive (created 0600; an existing file is not overwritten).
    #[arg(long, short = 'o')]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    format: u32,
    id: String,
    created_at: i64,
    gateway_version: String,
    store: String,
    bytes: u64,
    chunks: u64,
    /// SHA-256 of the database file, hex.
    sha256: String,
    /// The backup's data key, sealed under the master key's backup subkey.
    data_key: String,
}

fn hex_digest(d: &digest::Digest) -> String {
    hex::encode(d.as_ref())
}

fn chunk_record(id: &str, manifest_sha: &str, index: u64, last: bool) -> String {
    format!("backup:{id}:{manifest_sha}:{index}:{}", if last { "last" } else { "more" })
}

/// The embedded store's config, refusing PostgreSQL.
fn embedded(local: &Local) -> anyhow::Result<gatehouse_config::Config> {
    let cfg = crate::serve::load_config(&local.serve_args())?;
    if !matches!(cfg.server.store, StoreUrl::Embedded) {
        bail!("this store is PostgreSQL: back it up with pg_dump and restore with pg_restore (docs/OPERATIONS.md)");
    }
    Ok(cfg)
}

/// `gatehouse backup`: snapshots the running (or stopped) embedded store and seals it.
pub async fn create(a: CreateArgs) -> anyhow::Result<()> {
    let cfg = embedded(&a.local)?;
    let db = cfg.server.data_dir.join("gatehouse.db");
    if !db.exists() {
        bail!("no store at {}", db.display());
    }
    let keys = MasterKeys::load(&cfg.server, false).context("no master key: the archive is sealed with it")?;
    let out = a.out.unwrap_or_else(|| PathBuf::from(format!("gatehouse-{}.backup", humantime_now())));
    if out.exists() {
        bail!("{} exists; not overwritten", out.display());
    }
    let work = tempfile::Builder::new().prefix(".gatehouse-backup").tempdir_in(parent_of(&out))?;
    let snapshot = work.path().join("snapshot.db");
    let store = Store::open_sqlite(&db).await?;
    let path = snapshot.to_str().context("the archive's directory is not a UTF-8 path")?;
    store.snapshot_sqlite(path).await?.context("not an embedded store")?;
    store.close().await;

    let bytes = tokio::fs::metadata(&snapshot).await?.len();
    let mut hash = digest::Context::new(&digest::SHA256);
    let mut f = tokio::fs::File::open(&snapshot).await?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = read_full(&mut f, &mut buf).await?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
    }
    let id = uuid::Uuid::new_v4().to_string();
    let data_key = gatehouse_security::seal::random_key().map_err(|e| anyhow::anyhow!("{e}"))?;
    let wrapper = Sealer::new(&keys.current, PURPOSE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let manifest = Manifest {
        format: 1,
        id: id.clone(),
        created_at: gatehouse_store::now_ms(),
        gateway_version: env!("CARGO_PKG_VERSION").to_owned(),
        store: "sqlite".to_owned(),
        bytes,
        chunks: bytes.div_ceil(CHUNK as u64).max(1),
        sha256: hex_digest(&hash.finish()),
        data_key: wrapper.seal_bytes(&format!("backup:{id}"), &*data_key).map_err(|e| anyhow::anyhow!("{e}"))?,
    };
    let line = serde_json::to_vec(&manifest)?;
    let manifest_sha = hex_digest(&digest::digest(&digest::SHA256, &line));
    let sealer = Sealer::with_key(&data_key).map_err(|e| anyhow::anyhow!("{e}"))?;

    let partial = work.path().join("archive.partial");
    let mut w = private_file(&partial).await?;
    w.write_all(MAGIC).await?;
    w.write_all(&line).await?;
    w.write_all(b"\n").await?;
    let mut f = tokio::fs::File::open(&snapshot).await?;
    for index in 0..manifest.chunks {
        let n = read_full(&mut f, &mut buf).await?;
        let last = index + 1 == manifest.chunks;
        let sealed = sealer
            .seal_raw(&chunk_record(&id, &manifest_sha, index, last), &buf[..n])
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        w.write_all(&u32::try_from(sealed.len())?.to_be_bytes()).await?;
        w.write_all(&sealed).await?;
    }
    w.sync_all().await?;
    drop(w);
    if out.exists() {
        bail!("{} exists; not overwritten", out.display());
    }
    tokio::fs::rename(&partial, &out).await.with_context(|| format!("cannot write {}", out.display()))?;
    let mut o = std::io::stdout().lock();
    writeln!(o, "backup {id}: {} bytes of store, {} chunks, sealed to {}", bytes, manifest.chunks, out.display())?;
    writeln!(o, "keep the master key apart from it: the archive opens only with that key")?;
    Ok(())
}

/// What opening an archive found.
struct Opened {
    manifest: Manifest,
    /// The database, decrypted and checked, in `dir`.
    db: PathBuf,
    _dir: tempfile::TempDir,
}

/// Opens and checks an archive: every chunk in order under the master key, the database's
/// digest, SQLite's integrity check. The database lands in a private temporary directory
/// (beside `near`, so a restore can rename it into place).
async fn open_archive(file: &Path, keys: &MasterKeys, near: &Path) -> anyhow::Result<Opened> {
    let mut f = tokio::fs::File::open(file).await.with_context(|| format!("cannot read {}", file.display()))?;
    let mut magic = vec![0u8; MAGIC.len()];
    f.read_exact(&mut magic).await.ok();
    if magic != MAGIC {
        bail!("{} is not a gatehouse backup", file.display());
    }
    let mut line = Vec::new();
    loop {
        let b = f.read_u8().await.context("the manifest is cut short")?;
        if b == b'\n' {
            break;
        }
        if line.len() >= MAX_MANIFEST {
            bail!("the manifest is too long");
        }
        line.push(b);
    }
    let manifest: Manifest = serde_json::from_slice(&line).context("the manifest is not valid")?;
    if manifest.format != 1 || manifest.store != "sqlite" {
        bail!("this archive's format ({}, {}) is not one this gateway reads", manifest.format, manifest.store);
    }
    let manifest_sha = hex_digest(&digest::digest(&digest::SHA256, &line));
    let wrapper =
        Sealer::rotating(&keys.current, keys.previous.as_ref(), PURPOSE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let data_key = wrapper.open_bytes(&format!("backup:{}", manifest.id), &manifest.data_key).map_err(|_| {
        anyhow::anyhow!("the archive is not sealed under this master key (or its manifest was changed)")
    })?;
    let data_key: zeroize::Zeroizing<[u8; 32]> =
        zeroize::Zeroizing::new(data_key.as_slice().try_into().context("the archive's data key is malformed")?);
    let sealer = Sealer::with_key(&data_key).map_err(|e| anyhow::anyhow!("{e}"))?;

    let dir = tempfile::Builder::new().prefix(".gatehouse-restore").tempdir_in(near)?;
    let db = dir.path().join("gatehouse.db");
    let mut w = private_file(&db).await?;
    let mut hash = digest::Context::new(&digest::SHA256);
    let mut written = 0u64;
    for index in 0..manifest.chunks {
        let len = f.read_u32().await.with_context(|| format!("chunk {index} is missing"))?;
        let len = usize::try_from(len)?;
        if len > CHUNK + 64 {
            bail!("chunk {index} is larger than any chunk a backup writes");
        }
        let mut sealed = vec![0u8; len];
        f.read_exact(&mut sealed).await.with_context(|| format!("chunk {index} is cut short"))?;
        let last = index + 1 == manifest.chunks;
        let plain = sealer
            .open_raw(&chunk_record(&manifest.id, &manifest_sha, index, last), &sealed)
            .map_err(|_| anyhow::anyhow!("chunk {index} does not open: the archive was changed or damaged"))?;
        hash.update(&plain);
        written += plain.len() as u64;
        w.write_all(&plain).await?;
    }
    if f.read_u8().await.is_ok() {
        bail!("the archive has bytes after its last chunk");
    }
    w.sync_all().await?;
    drop(w);
    if written != manifest.bytes || hex_digest(&hash.finish()) != manifest.sha256 {
        bail!("the database in the archive does not match its manifest");
    }
    let store = Store::open_sqlite(&db).await?;
    let intact = store.sqlite_intact().await;
    store.close().await;
    if !intact? {
        bail!("the database in the archive fails SQLite's integrity check");
    }
    Ok(Opened { manifest, db, _dir: dir })
}

/// Verifies every audit chain of the database at `db` with the checkpoint key pinned in it.
async fn verify_chains(db: &Path, keys: &MasterKeys) -> anyhow::Result<Vec<gatehouse_audit::verify::ChainReport>> {
    let store = Store::open_sqlite(db).await?;
    let seed = crate::keyring::checkpoint_seed(Some(&store), keys).await;
    let key = gatehouse_audit::signer(&*seed?).map_err(|e| anyhow::anyhow!("{e}"))?.verifier();
    let report = gatehouse_audit::verify::verify_store(&store, &key, None, &std::collections::HashMap::new()).await;
    store.close().await;
    match report {
        Ok(r) => Ok(r.chains),
        Err(e) => bail!("the audit trail in the archive does not verify: {e}"),
    }
}

/// `gatehouse backup verify`.
pub async fn verify(file: &Path, local: &Local) -> anyhow::Result<()> {
    let cfg = embedded(local)?;
    let keys = MasterKeys::load(&cfg.server, false).context("no master key: the archive opens only with it")?;
    let opened = open_archive(file, &keys, &std::env::temp_dir()).await?;
    let chains = verify_chains(&opened.db, &keys).await?;
    let records: u64 = chains.iter().map(|c| c.records).sum();
    writeln!(
        std::io::stdout().lock(),
        "backup {} ({} bytes, taken {} by gatehouse {}): intact; {} audit chains, {} records, verified",
        opened.manifest.id,
        opened.manifest.bytes,
        humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH
                + std::time::Duration::from_millis(u64::try_from(opened.manifest.created_at).unwrap_or(0))
        ),
        opened.manifest.gateway_version,
        chains.len(),
        records
    )?;
    Ok(())
}

/// `gatehouse restore`: into an empty data directory only, after the whole archive checked.
pub async fn restore(file: &Path, local: &Local) -> anyhow::Result<()> {
    let cfg = embedded(local)?;
    let dir = &cfg.server.data_dir;
    let target = dir.join("gatehouse.db");
    for existing in [target.clone(), dir.join("gatehouse.db-wal")] {
        if existing.exists() {
            bail!("{} exists: restore goes into an empty store only", existing.display());
        }
    }
    let keys = MasterKeys::load(&cfg.server, false).context("no master key: the archive opens only with it")?;
    crate::serve::create_private_dir(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let opened = open_archive(file, &keys, dir).await?;
    let chains = verify_chains(&opened.db, &keys).await?;
    tokio::fs::rename(&opened.db, &target).await.with_context(|| format!("cannot write {}", target.display()))?;
    writeln!(
        std::io::stdout().lock(),
        "restored backup {} into {} ({} audit chains verified); start the gateway with the same master key",
        opened.manifest.id,
        target.display(),
        chains.len()
    )?;
    Ok(())
}

async fn read_full(f: &mut tokio::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let m = f.read(&mut buf[n..]).await?;
        if m == 0 {
            break;
        }
        n += m;
    }
    Ok(n)
}

async fn private_file(p: &Path) -> std::io::Result<tokio::fs::File> {
    let mut o = tokio::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    o.mode(0o600);
    o.open(p).await
}

fn parent_of(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn humantime_now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string().replace(':', "-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_chunk_is_bound_to_its_backup_manifest_place_and_end() {
        let r = chunk_record("b1", "abc", 3, false);
        assert_eq!(r, "backup:b1:abc:3:more");
        assert_ne!(r, chunk_record("b1", "abc", 3, true));
        assert_ne!(r, chunk_record("b1", "abd", 3, false));
        assert_ne!(r, chunk_record("b2", "abc", 3, false));
    }
}
