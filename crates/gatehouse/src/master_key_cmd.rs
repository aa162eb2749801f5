//! `gatehouse master-key`: generate a key, stage one beside the generated key file, and
//! rotate: re-seal every stored value under the current master key while the gateway keeps
//! serving with both keys (docs/SECURITY.md, "Rotating the master key").

use std::io::Write;

use anyhow::{Context, bail};
use clap::Subcommand;
use gatehouse_security::MasterKey;
use gatehouse_store::{SealedColumn, Store};

use crate::audit_cmd::Local;
use crate::keyring::{Keyring, MasterKeys, key_file, staged_file};

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
    /// file, a complete rotation moves it over `master.key`.
    Rotate {
        #[command(flatten)]
        local: Local,
        /// Only check: exit 1 unless every stored value opens under the current key alone.
        #[arg(long)]
        check: bool,
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
            let staged = staged_file(dir);
            if staged.exists() {
                writeln!(out, "a new key is already staged at {}", staged.display())?;
            } else {
                gatehouse_security::write_key_file(&staged, &MasterKey::generate())?;
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
            if !check && let Some(staged) = &keys.staged {
                // the one step that retires the old key file: atomic, and only once nothing needs it
                std::fs::rename(staged, key_file(&cfg.server.data_dir)).context("cannot move the staged key")?;
                writeln!(out, "the staged key is now {}", key_file(&cfg.server.data_dir).display())?;
            }
            writeln!(out, "ok: every stored value opens under the current master key alone")?;
            if keys.previous.is_some() && keys.staged.is_none() && !check {
                writeln!(out, "remove previous_master_key (GATEHOUSE_PREVIOUS_MASTER_KEY) and restart the gateways")?;
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
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
