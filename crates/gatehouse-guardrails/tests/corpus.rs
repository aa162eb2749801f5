//! Precision and recall on the labelled corpus (tests/data/guardrails/, made by
//! scripts/guardrails-corpus.py and scripts/guardrails-corpus-classes.py). Prints a table per detector and fails below the floors that
//! docs/GUARDRAILS.md documents.

#![expect(clippy::unwrap_used, reason = "a measurement test: print the table, fail loudly")]

use std::collections::BTreeMap;

use gatehouse_guardrails::injection::InjectionDetector;
use gatehouse_guardrails::normalize;
use serde_json::Value;

/// The floors (docs/GUARDRAILS.md): every PII and secret detector, and all of them together;
/// each fires on at most `BENIGN_FPR` of the negative texts.
const PII_SECRET_RECALL: f64 = 0.98;
const PII_SECRET_PRECISION: f64 = 0.95;
/// Prompt injection at the default threshold.
const INJECTION_RECALL: f64 = 0.85;
const BENIGN_FPR: f64 = 0.02;
const THRESHOLD: f32 = gatehouse_guardrails::policy::DEFAULT_THRESHOLD;

fn read(name: &str) -> String {
    let path = format!("{}/../../tests/data/guardrails/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap()
}

fn rows(name: &str) -> Vec<Value> {
    read(name).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn pii_and_secret_detectors_meet_their_floors() {
    // the first corpus, and the classes issue #21 named (scripts/guardrails-corpus-classes.py),
    // scored as `gatehouse guardrails eval` scores an operator's file
    let text = ["pii_secrets.jsonl", "pii_secrets_classes.jsonl"].map(read).join("\n");
    let report = gatehouse_guardrails::eval::evaluate(text.lines(), THRESHOLD).unwrap();
    assert!(report.unreadable.is_empty(), "{:?}", report.unreadable);
    print!("{}", report.table());
    let failed: Vec<&String> = report
        .detectors
        .iter()
        .filter(|(_, c)| c.precision() < PII_SECRET_PRECISION || c.recall() < PII_SECRET_RECALL || c.fpr() > BENIGN_FPR)
        .map(|(d, _)| d)
        .collect();
    for (line, kind, d, span) in &report.misses {
        println!("{kind} {d} (line {line}): {span:?}");
    }
    assert!(failed.is_empty(), "below the floors: {failed:?}");
}

#[test]
fn injection_detection_meets_its_floors() {
    let d = InjectionDetector::new().unwrap();
    let mut by_source: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    // the floor is on English text (the classifier matches English phrasing); the rest is
    // reported, not asserted
    let (mut tp, mut pos, mut fp, mut neg) = (0u64, 0u64, 0u64, 0u64);
    let (mut other_tp, mut other_pos, mut other_fp, mut other_neg) = (0u64, 0u64, 0u64, 0u64);
    let mut false_positives = Vec::new();
    let mut missed = Vec::new();
    // (score, is injection, row index) of English rows, for the threshold sweep
    let mut scored: Vec<(f32, bool, usize)> = Vec::new();
    for (index, row) in rows("injection.jsonl").into_iter().enumerate() {
        let text = row["text"].as_str().unwrap();
        let v = d.assess(text, &normalize(text).text);
        let flagged = v.score >= THRESHOLD;
        let label = row["label"].as_str().unwrap();
        let english = row["lang"].as_str() == Some("en");
        let source = row["source"].as_str().unwrap().split(':').next().unwrap().to_owned();
        let tag = if english { label.to_owned() } else { format!("{label}*") };
        let e = by_source.entry((tag, source)).or_default();
        e.1 += 1;
        if flagged {
            e.0 += 1;
        }
        if !english {
            if label == "injection" {
                other_pos += 1;
                other_tp += u64::from(flagged);
            } else {
                other_neg += 1;
                other_fp += u64::from(flagged);
            }
            continue;
        }
        scored.push((v.score, label == "injection", index));
        if label == "injection" {
            pos += 1;
            tp += u64::from(flagged);
            if !flagged {
                let head: String = text.chars().take(160).collect();
                missed.push(format!("{:.2} {:?}: {head:?}", v.score, v.signals));
            }
        } else {
            neg += 1;
            if flagged {
                fp += 1;
                let head: String = text.chars().take(120).collect();
                false_positives.push(format!("{:?}: {head}", v.signals));
            }
        }
    }
    println!("{:<10} {:<10} {:>6} {:>6} {:>7}", "label", "source", "texts", "flagged", "rate");
    for ((label, source), (hit, n)) in &by_source {
        println!("{label:<10} {source:<10} {n:>6} {hit:>6} {:>7.4}", *hit as f64 / *n as f64);
    }
    // the trade-off an operator tunes with `injection_threshold`; "held out" = odd rows, which
    // were not looked at while choosing the phrase list (docs/GUARDRAILS.md)
    println!("{:>9} {:>7} {:>7} {:>16}", "threshold", "recall", "fpr", "held-out recall");
    for t in [0.3f32, 0.4, 0.5, 0.6, 0.7, 0.8] {
        let rate = |f: &dyn Fn(&(f32, bool, usize)) -> bool, want: bool| {
            let sel: Vec<_> = scored.iter().filter(|r| r.1 == want && f(r)).collect();
            sel.iter().filter(|r| r.0 >= t).count() as f64 / sel.len().max(1) as f64
        };
        println!(
            "{t:>9.2} {:>7.4} {:>7.4} {:>16.4}",
            rate(&|_| true, true),
            rate(&|_| true, false),
            rate(&|r| r.2 % 2 == 1, true)
        );
    }
    let recall = tp as f64 / pos as f64;
    let fpr = fp as f64 / neg as f64;
    println!("English: injection recall {recall:.4} ({tp}/{pos}); benign false-positive rate {fpr:.4} ({fp}/{neg})");
    println!(
        "not English (*, reported only): injection recall {:.4} ({other_tp}/{other_pos}); benign flagged {other_fp}/{other_neg}",
        other_tp as f64 / other_pos.max(1) as f64
    );
    for f in false_positives.iter().take(20) {
        println!("FP {f}");
    }
    if std::env::var_os("CORPUS_MISSES").is_some() {
        for m in &missed {
            println!("MISS {m}");
        }
    }
    assert!(recall >= INJECTION_RECALL, "recall {recall:.4} < {INJECTION_RECALL}");
    assert!(fpr <= BENIGN_FPR, "false-positive rate {fpr:.4} > {BENIGN_FPR}");
}
