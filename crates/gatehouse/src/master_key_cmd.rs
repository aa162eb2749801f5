//! `gatehouse master-key`: generate a key, stage one beside the generated key file, and
//! rotate: re-seal every stored value under the current master key while the gateway keeps
//! serving with both keys (docs/SECURITY.md, "Rotating the master key").

use std::io::Write;

use anyhow::{Context, bail};
use clap::Subcommand;
use gatehouse_security::MasterKey;
use gatehouse_store::{SealedColumn, Store};

use crate::audit_cmd::Local;
use crate::keyring::{Keyring, MasterKeys, key_file, previous_file, staged_file};

#[derive(Subcommand, Debug)]
pub enum MasterKeyAction {
    /// Print a new random master key (64 hex characters) for a secret store.
    Generate,
    /// With the generated key file: write a new key to `master.key.next`. Gateways started
    /// after this seal with it and still open what the old key sealed; then run `rotate`.
    Stage {
        #[command(flatten)]
        local: Local,
    },
    /// Re-seal every stored value under the current master key (resumable: run it again after
    /// an interruption), then check that each opens under that key alone. With a staged key
    /// file, a complete rotation makes it `master.key` and keeps the old one as
    /// `master.key.previous`, still accepted until `retire`.
    Rotate {
        #[command(flatten)]
        local: Local,
        /// Only check: exit 1 unless every stored value opens under the current key alone.
        #[arg(long)]
        check: bool,
    },
    /// With the generated key file: delete `master.key.previous` once every stored value opens
    /// under the current key alone (restart every gateway first: one still running with only
    /// the old key seals under it).
    Retire {
        #[command(flatten)]
        local: Local,
    },
}

pub async fn run(action: MasterKeyAction) -> anyhow::Result<std::process::ExitCode> {
    let mut out = std::io::stdout();
    match action {
        MasterKeyAction::Generate => {
            writeln!(out, "{}", MasterKey::generate().encode())?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        MasterKeyAction::Stage { local } => {
            let cfg = crate::serve::load_config(&local.serve_args())?;
            if crate::serve::provided_master_key(&cfg.server)?.is_some() {
                bail!(
                    "the master key comes from the configuration or GATEHOUSE_MASTER_KEY: set the new key there and the \
                     old one as previous_master_key (GATEHOUSE_PREVIOUS_MASTER_KEY), then run `gatehouse master-key rotate`"
                );
            }
            let dir = &cfg.server.data_dir;
            gatehouse_security::load_master_key(None, dir).context("no master key file to rotate from")?;
            if previous_file(dir).exists() {
                bail!(
                    "the key of the last rotation is still kept as {}: `gatehouse master-key retire` first",
                    previous_file(dir).display()
                );
            }
            let staged = staged_file(dir);
            if staged.exists() {
                writeln!(out, "a new key is already staged at {}", staged.display())?;
            } else {
                gatehouse_security::write_key_file(&staged, &MasterKey::generate())?;
                sync_dir(dir)?;
                writeln!(out, "staged a new master key at {}", staged.display())?;
            }
            writeln!(
                out,
                "restart every gateway process (each then accepts both keys), then run `gatehouse master-key rotate`"
            )?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        MasterKeyAction::Rotate { local, check } => {
            let cfg = crate::serve::load_config(&local.serve_args())?;
            let keys = MasterKeys::load(&cfg.server, false)?;
            let store = crate::serve::open_store(&cfg.server).await?;
            let keyring = Keyring::open(&store, &keys).await?;
            if !check && keys.previous.is_some() {
                for column in SealedColumn::ALL {
                    let (n, done) = reseal(&store, &keyring, column).await?;
                    writeln!(out, "{}: re-sealed {n}, already under the current key {done}", column.name())?;
                }
            }
            let mut stale = 0;
            for column in SealedColumn::ALL {
                let left = not_current(&store, &keyring, column).await?;
                if left > 0 {
                    writeln!(out, "{}: {left} not under the current key alone", column.name())?;
                }
                stale += left;
            }
            if stale > 0 {
                writeln!(
                    out,
                    "not complete: {stale} stored values still need the previous key{}",
                    if check { "; run `gatehouse master-key rotate`" } else { "" }
                )?;
                return Ok(std::process::ExitCode::FAILURE);
            }
            let dir = &cfg.server.data_dir;
            if !check && let Some(staged) = &keys.staged {
                // the old key is kept, not overwritten: a gateway not yet restarted may still
                // seal under it (each rename is atomic; an interruption between them resumes)
                if key_file(dir).exists() {
                    std::fs::rename(key_file(dir), previous_file(dir)).context("cannot keep the old key")?;
                }
                std::fs::rename(staged, key_file(dir)).context("cannot move the staged key")?;
                sync_dir(dir)?;
                writeln!(
                    out,
                    "the staged key is now {}; the old one is kept as {} until `gatehouse master-key retire`",
                    key_file(dir).display(),
                    previous_file(dir).display()
                )?;
            }
            writeln!(out, "ok: every stored value opens under the current master key alone")?;
            if keys.previous.is_some() && keys.staged.is_none() && !check && !previous_file(dir).exists() {
                writeln!(out, "remove previous_master_key (GATEHOUSE_PREVIOUS_MASTER_KEY) and restart the gateways")?;
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        MasterKeyAction::Retire { local } => {
            let cfg = crate::serve::load_config(&local.serve_args())?;
            let dir = &cfg.server.data_dir;
            if !previous_file(dir).exists() || staged_file(dir).exists() {
                bail!(
                    "no previous key file to retire (or a rotation is still staged: run `gatehouse master-key rotate`)"
                );
            }
            let keys = MasterKeys::load(&cfg.server, false)?;
            let store = crate::serve::open_store(&cfg.server).await?;
            let keyring = Keyring::open(&store, &keys).await?;
            // a value sealed under the old key since the rotation (a gateway not yet restarted)
            // is re-sealed first, then the check must hold
            for column in SealedColumn::ALL {
                reseal(&store, &keyring, column).await?;
            }
            for column in SealedColumn::ALL {
                if not_current(&store, &keyring, column).await? > 0 {
                    bail!("{} still need the previous key: restart every gateway and run retire again", column.name());
                }
            }
            std::fs::remove_file(previous_file(dir)).context("cannot delete the previous key")?;
            sync_dir(dir)?;
            writeln!(out, "retired {}", previous_file(dir).display())?;
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}

/// Makes renames and new files in `dir` durable (a key file lost to a power cut would leave
/// what it sealed unopenable).
fn sync_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("cannot sync {}", dir.display()))
}

/// Re-seals one column's values that are not under the current key yet: (re-sealed, already).
async fn reseal(store: &Store, keyring: &Keyring, column: SealedColumn) -> anyhow::Result<(usize, usize)> {
    let (sealer, record) = keyring.column(column);
    let (mut n, mut done) = (0, 0);
    for value in store.sealed_values(column).await? {
        let r = record(&value);
        if sealer.is_current(&r, &value.sealed) {
            done += 1;
            continue;
        }
        let plain = sealer
            .open_bytes(&r, &value.sealed)
            .map_err(|_| anyhow::anyhow!("a value in {} opens under neither master key", column.name()))?;
        let sealed = sealer.seal_bytes(&r, &plain).map_err(|e| anyhow::anyhow!("{e}"))?;
        // compare-and-set: a value another rotation re-sealed meanwhile is left as it is
        if store.reseal(column, &value, &sealed).await? {
            n += 1;
        }
    }
    Ok((n, done))
}

async fn not_current(store: &Store, keyring: &Keyring, column: SealedColumn) -> anyhow::Result<usize> {
    let (sealer, record) = keyring.column(column);
    Ok(store.sealed_values(column).await?.iter().filter(|v| !sealer.is_current(&record(v), &v.sealed)).count())
}
