//! `gatehouse audit`: verify the trail (in the store, an export or the JSONL mirror), print
//! the checkpoint key, export through the admin API.
//!
//! `verify` and `key` run locally, next to the store and the master key (or with a pinned
//! `--key`): an auditor does not have to trust a running gateway to check its trail.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use gatehouse_audit::verify::{Report, VerifyError};
use gatehouse_security::checkpoint::CheckpointVerifier;

use crate::cli::{AdminConn, Output, ServeArgs};

#[derive(Subcommand, Debug)]
pub enum AuditAction {
    /// Verify the chains, checkpoints and anchors; exit 1 naming the first break.
    Verify(VerifyArgs),
    /// Print the checkpoint verifier key (derived from the master key).
    Key {
        #[command(flatten)]
        local: Local,
    },
    /// Export through the admin API, streamed to a file or standard output.
    Export {
        #[command(flatten)]
        conn: AdminConn,
        #[command(flatten)]
        q: ExportArgs,
    },
}

/// Where the gateway's store and master key are: the same flags and environment as `serve`.
#[derive(Args, Debug, Clone)]
pub struct Local {
    #[arg(long, env = "GATEHOUSE_CONFIG")]
    pub config: Option<PathBuf>,
    #[arg(long, env = "GATEHOUSE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

impl Local {
    pub fn serve_args(&self) -> ServeArgs {
        ServeArgs {
            config: self.config.clone(),
            data_listen: None,
            admin_listen: None,
            data_dir: self.data_dir.clone(),
            log_format: None,
        }
    }

    /// The checkpoint key pinned in the store (read only; none there: derived from the master
    /// key as a first start pins it), opened with the master key.
    async fn verifier(&self) -> anyhow::Result<CheckpointVerifier> {
        let cfg = crate::serve::load_config(&self.serve_args())?;
        let keys = crate::keyring::MasterKeys::load(&cfg.server, false)
            .context("no master key to open the checkpoint key with; pass --key")?;
        // an embedded store that does not exist is not created just to be read
        let store = match &cfg.server.store {
            gatehouse_config::StoreUrl::Embedded if !cfg.server.data_dir.join("gatehouse.db").exists() => None,
            _ => Some(crate::serve::open_store(&cfg.server).await?),
        };
        let seed = crate::keyring::checkpoint_seed(store.as_ref(), &keys).await;
        if let Some(s) = store {
            s.close().await;
        }
        Ok(gatehouse_audit::signer(&*seed?).map_err(|e| anyhow::anyhow!("{e}"))?.verifier())
    }
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub local: Local,
    /// Verify an NDJSON export or JSONL mirror instead of the store.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// The pinned verifier key (`gatehouse-audit+<id>+<key>`); default: derived from the
    /// master key.
    #[arg(long)]
    pub key: Option<String>,
    /// Only this chain (`platform` or `org/<id>`).
    #[arg(long)]
    pub chain: Option<String>,
    /// Checkpoints saved earlier (NDJSON checkpoint lines, e.g. an older export): a tail
    /// deleted together with its checkpoints is caught against them.
    #[arg(long)]
    pub witness: Option<PathBuf>,
    #[arg(long, short, value_enum, default_value = "table")]
    pub output: Output,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    #[arg(long, default_value = "ndjson", value_parser = ["ndjson", "csv"])]
    pub format: String,
    /// RFC 3339 time, inclusive.
    #[arg(long)]
    pub from: Option<String>,
    /// RFC 3339 time, exclusive.
    #[arg(long)]
    pub to: Option<String>,
    /// Org id (platform admins; others export their own org).
    #[arg(long)]
    pub org: Option<String>,
    #[arg(long)]
    pub actor: Option<String>,
    #[arg(long)]
    pub action: Option<String>,
    /// Write here instead of standard output (created 0600).
    #[arg(long, short = 'f')]
    pub out: Option<PathBuf>,
}

/// Returns whether the trail verified.
pub async fn verify(a: VerifyArgs) -> anyhow::Result<bool> {
    let key = match &a.key {
        Some(k) => CheckpointVerifier::from_vkey(k).map_err(|_| anyhow::anyhow!("--key is not a verifier key"))?,
        None => a.local.verifier().await?,
    };
    let witnesses = match &a.witness {
        Some(p) => {
            let p = p.clone();
            tokio::task::spawn_blocking(move || gatehouse_audit::verify::witnesses_from_file(&p)).await??
        }
        None => HashMap::new(),
    };
    let result = match &a.file {
        Some(path) => {
            let (path, key) = (path.clone(), key.clone());
            tokio::task::spawn_blocking(move || gatehouse_audit::verify::verify_file(&path, &key, &witnesses)).await?
        }
        None => {
            let cfg = crate::serve::load_config(&a.local.serve_args())?;
            let store = crate::serve::open_store(&cfg.server).await?;
            let r = gatehouse_audit::verify::verify_store(&store, &key, a.chain.as_deref(), &witnesses).await;
            store.close().await;
            r
        }
    };
    let mut out = std::io::stdout().lock();
    match result {
        Ok(report) => {
            print_report(&mut out, &report, a.output)?;
            Ok(true)
        }
        Err(VerifyError::Broken(f)) => {
            if a.output == Output::Json {
                writeln!(out, "{}", serde_json::json!({"ok": false, "broken": f}))?;
            } else {
                writeln!(out, "BROKEN: chain {} fails at seq {}: {}", f.chain, f.seq, f.problem.as_str())?;
            }
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

fn print_report(out: &mut impl Write, r: &Report, output: Output) -> anyhow::Result<()> {
    if output == Output::Json {
        writeln!(
            out,
            "{}",
            serde_json::json!({"ok": true, "records": r.records(), "unsigned": r.unsigned(), "chains": r.chains,
                               "export": r.export})
        )?;
        return Ok(());
    }
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::NOTHING);
    t.set_header(["CHAIN", "RECORDS", "FROM", "TO", "CHECKPOINTS", "SIGNED THROUGH", "GAPS"]);
    for c in &r.chains {
        t.add_row([
            c.chain.clone(),
            c.records.to_string(),
            (c.anchored_at + 1).to_string(),
            c.last_seq.to_string(),
            c.checkpoints.to_string(),
            c.signed_through.to_string(),
            c.gaps.to_string(),
        ]);
    }
    writeln!(out, "{t}")?;
    writeln!(
        out,
        "OK: {} records in {} chains verified; {} newer than their last checkpoint",
        r.records(),
        r.chains.len(),
        r.unsigned()
    )?;
    // what was and was not proven, in words
    match &r.export {
        Some(e) if e.filtered => writeln!(
            out,
            "Export taken {} (signed manifest): filtered by {}; every record it lists is present, \
             unmodified and in its chain's order. NOT proven: records outside the filter (an export \
             cannot show what it left out; verify the store or an unfiltered export for that).",
            e.exported_at,
            serde_json::to_string(&e.selection).unwrap_or_default()
        )?,
        Some(e) => writeln!(
            out,
            "Export taken {} (signed manifest): whole chains up to their heads at that time, each \
             head signed; nothing is missing or unsigned. NOT proven: events after {}.",
            e.exported_at, e.exported_at
        )?,
        None if r.unsigned() > 0 => writeln!(
            out,
            "No export manifest (the store or the JSONL mirror): the {} newest records are linked \
             but not yet covered by a checkpoint; a tail deleted with its checkpoints is only caught \
             with --witness.",
            r.unsigned()
        )?,
        None => {}
    }
    Ok(())
}

pub async fn key(local: &Local) -> anyhow::Result<()> {
    let vkey = local.verifier().await?.to_vkey();
    writeln!(std::io::stdout(), "{vkey}")?;
    Ok(())
}
