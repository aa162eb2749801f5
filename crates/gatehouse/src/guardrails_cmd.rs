//! `gatehouse guardrails eval FILE.jsonl`: scores a labelled corpus with the engine and the
//! injection threshold the gateway would use (docs/GUARDRAILS.md, "Measure on your own data").

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use serde_json::json;

use crate::cli::Output;

/// The largest corpus read (it is held in memory while scored).
const MAX_FILE: u64 = 256 << 20;

#[derive(Subcommand, Debug)]
pub enum GuardrailsAction {
    /// Precision, recall and false-positive rate per detector and per injection category on a
    /// labelled JSONL file (docs/GUARDRAILS.md has the format).
    Eval {
        file: PathBuf,
        /// The config whose `[guardrails] injection_threshold` to use (default: the built-in).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The injection threshold, over the config's.
        #[arg(long)]
        threshold: Option<f32>,
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
        /// Also list the rows judged wrong (the first 50 of each kind): line number, false
        /// positive or miss, detector and the text of the span, or the injection score.
        #[arg(long)]
        misses: bool,
    },
}

pub fn run(action: GuardrailsAction) -> anyhow::Result<()> {
    let GuardrailsAction::Eval { file, config, threshold, output, misses } = action;
    let configured = match config {
        Some(path) => {
            gatehouse_config::Config::load(&path)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
                .policy
                .guardrails
                .spec
                .injection_threshold
        }
        None => None,
    };
    let threshold = threshold.or(configured).unwrap_or(gatehouse_guardrails::policy::DEFAULT_THRESHOLD);
    anyhow::ensure!(threshold > 0.0 && threshold <= 1.0, "the threshold must be greater than 0 and at most 1");
    let f = std::fs::File::open(&file).with_context(|| format!("cannot open {}", file.display()))?;
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    anyhow::ensure!(size <= MAX_FILE, "{} is larger than {} MiB", file.display(), MAX_FILE >> 20);
    let reader = std::io::BufReader::new(f);
    let mut lines = Vec::new();
    for line in reader.split(b'\n') {
        let line = line.with_context(|| format!("cannot read {}", file.display()))?;
        lines.push(String::from_utf8(line).unwrap_or_default());
    }
    let report = gatehouse_guardrails::eval::evaluate(lines.iter().map(String::as_str), threshold)?;
    let mut out = std::io::stdout().lock();
    if output == Output::Json {
        let detectors: serde_json::Map<String, serde_json::Value> = report
            .detectors
            .iter()
            .map(|(d, c)| {
                (
                    d.clone(),
                    json!({"tp": c.tp, "fp": c.fp, "fn": c.fn_, "precision": c.precision(),
                    "recall": c.recall(), "fpr": c.fpr()}),
                )
            })
            .collect();
        let i = &report.injection;
        let categories: serde_json::Map<String, serde_json::Value> =
            i.by_category.iter().map(|(c, (hit, n))| (c.clone(), json!({"flagged": hit, "total": n}))).collect();
        let mut v = json!({"threshold": threshold, "detectors": detectors,
            "injection": {"recall": i.recall(), "fpr": i.fpr(), "benign": i.benign, "categories": categories},
            "unreadable": report.unreadable.iter().map(|(n, why)| json!({"line": n, "error": why})).collect::<Vec<_>>()});
        if misses {
            v["misses"] = report
                .misses
                .iter()
                .map(|(n, kind, d, span)| json!({"line": n, "kind": kind, "detector": d, "text": span}))
                .chain(report.injection_misses.iter().map(
                    |(n, kind, score)| json!({"line": n, "kind": kind, "detector": "prompt_injection", "score": score}),
                ))
                .collect();
        }
        writeln!(out, "{v}")?;
        return Ok(());
    }
    write!(out, "{}", report.table())?;
    let i = &report.injection;
    if i.benign > 0 || !i.by_category.is_empty() {
        writeln!(
            out,
            "\nprompt injection at threshold {threshold}: recall {:.4}, false-positive rate {:.4} ({} of {} benign)",
            i.recall(),
            i.fpr(),
            i.flagged_benign,
            i.benign
        )?;
        for (c, (hit, n)) in &i.by_category {
            let name = if c.is_empty() { "(no category)" } else { c };
            writeln!(out, "  {name:<32} {hit:>6} / {n:<6} flagged")?;
        }
    }
    if misses {
        for (n, kind, d, span) in &report.misses {
            writeln!(out, "line {n}: {kind} {d} {span:?}")?;
        }
        for (n, kind, score) in &report.injection_misses {
            writeln!(out, "line {n}: {kind} prompt_injection score {score:.3}")?;
        }
    }
    for (n, why) in report.unreadable.iter().take(20) {
        writeln!(out, "line {n}: {why}")?;
    }
    if report.unreadable.len() > 20 {
        writeln!(out, "... and {} more unreadable lines", report.unreadable.len() - 20)?;
    }
    Ok(())
}
