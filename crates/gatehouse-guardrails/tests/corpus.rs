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
/// Prompt injection at the default threshold, signals and learned scorer together, on the
/// held-out split (`"split": "test"`, never trained on), English and other languages each.
const INJECTION_RECALL: f64 = 0.90;
/// The phrase and pattern signals alone, on English text (a regression check: they were
/// written for English phrasing; the corpus grew harder with #21's sources).
const HEURISTIC_RECALL: f64 = 0.80;
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

/// Counts of flagged rows among rows.
#[derive(Default, Clone, Copy)]
struct Tally {
    flagged: u64,
    rows: u64,
}

impl Tally {
    fn add(&mut self, flagged: bool) {
        self.rows += 1;
        self.flagged += u64::from(flagged);
    }

    fn rate(self) -> f64 {
        self.flagged as f64 / self.rows.max(1) as f64
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.4} ({}/{})", self.rate(), self.flagged, self.rows)
    }
}

struct Scored {
    score: f32,
    heuristic: f32,
    injection: bool,
    test: bool,
    english: bool,
    lang: String,
    source: String,
    text: String,
    signals: Vec<&'static str>,
}

#[test]
fn injection_detection_meets_its_floors() {
    let d = InjectionDetector::new().unwrap();
    // the collected and generated corpus, and the benign look-alikes of issue #21's
    // false-positive classes (scripts/guardrails-corpus-lookalikes.py)
    let scored: Vec<Scored> = ["injection.jsonl", "injection_lookalikes.jsonl"]
        .into_iter()
        .flat_map(rows)
        .map(|row| {
            let text = row["text"].as_str().unwrap().to_owned();
            let v = d.assess(&text, &normalize(&text).text);
            let lang = row["lang"].as_str().unwrap().to_owned();
            Scored {
                score: v.score,
                heuristic: v.heuristic,
                injection: row["label"] == "injection",
                test: row["split"] == "test",
                english: lang == "en",
                lang,
                source: row["source"].as_str().unwrap().split(':').next().unwrap().to_owned(),
                text,
                signals: v.signals,
            }
        })
        .collect();
    let flagged = |r: &Scored| r.score >= THRESHOLD;

    // per source, the held-out split
    let mut by_source: BTreeMap<(String, String), Tally> = BTreeMap::new();
    let mut by_lang: BTreeMap<(String, bool), Tally> = BTreeMap::new();
    for r in scored.iter().filter(|r| r.test) {
        let label = if r.injection { "injection" } else { "benign" };
        let tag = if r.english { label.to_owned() } else { format!("{label}*") };
        by_source.entry((tag, r.source.clone())).or_default().add(flagged(r));
        by_lang.entry((r.lang.clone(), r.injection)).or_default().add(flagged(r));
    }
    println!("held-out split (* = not English):\n{:<10} {:<26} {:>22}", "label", "source", "flagged");
    for ((label, source), t) in &by_source {
        println!("{label:<10} {source:<26} {:>22}", t.to_string());
    }
    println!("{:<6} {:>22} {:>22}", "lang", "injection recall", "benign flagged");
    let langs: std::collections::BTreeSet<&String> = by_lang.keys().map(|k| &k.0).collect();
    for l in langs {
        let cell = |inj: bool| by_lang.get(&(l.clone(), inj)).map_or("-".to_owned(), ToString::to_string);
        println!("{l:<6} {:>22} {:>22}", cell(true), cell(false));
    }

    let tally = |f: &dyn Fn(&Scored) -> bool, hit: &dyn Fn(&Scored) -> bool| {
        scored.iter().filter(|r| f(r)).fold(Tally::default(), |mut t, r| {
            t.add(hit(r));
            t
        })
    };
    // the trade-off an operator tunes with `injection_threshold`, on the held-out split
    println!("{:>9} {:>8} {:>8}", "threshold", "recall", "fpr");
    for t in [0.2f32, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8] {
        let recall = tally(&|r| r.test && r.injection, &|r| r.score >= t).rate();
        let fpr = tally(&|r| r.test && !r.injection, &|r| r.score >= t).rate();
        println!("{t:>9.2} {recall:>8.4} {fpr:>8.4}");
    }
    let recall = tally(&|r| r.test && r.injection, &flagged);
    let recall_other = tally(&|r| r.test && r.injection && !r.english, &flagged);
    let fpr = tally(&|r| r.test && !r.injection, &flagged);
    let fpr_other = tally(&|r| r.test && !r.injection && !r.english, &flagged);
    let fpr_english = tally(&|r| r.test && !r.injection && r.english, &flagged);
    let fpr_all = tally(&|r| !r.injection, &flagged);
    // the phrase and pattern signals by themselves, on English text (what they were written for)
    let heuristic = tally(&|r| r.injection && r.english, &|r| r.heuristic >= THRESHOLD);
    let heuristic_fpr = tally(&|r| !r.injection && r.english, &|r| r.heuristic >= THRESHOLD);
    println!("held out: injection recall {recall}, not English {recall_other}");
    println!(
        "held out: benign flagged {fpr}, English {fpr_english}, not English {fpr_other}; every benign row {fpr_all}"
    );
    println!("signals alone, English, every row: recall {heuristic}, benign flagged {heuristic_fpr}");
    for r in scored.iter().filter(|r| r.test && !r.injection && flagged(r)).take(30) {
        let head: String = r.text.chars().take(120).collect();
        println!("FP {:.2} {} {:?}: {head:?}", r.score, r.lang, r.signals);
    }
    if std::env::var_os("CORPUS_MISSES").is_some() {
        for r in scored.iter().filter(|r| r.test && r.injection && !flagged(r)) {
            let head: String = r.text.chars().take(160).collect();
            println!("MISS {:.2} {} {:?}: {head:?}", r.score, r.lang, r.signals);
        }
    }
    assert!(recall.rate() >= INJECTION_RECALL, "held-out recall {recall} < {INJECTION_RECALL}");
    assert!(
        recall_other.rate() >= INJECTION_RECALL,
        "held-out recall, not English, {recall_other} < {INJECTION_RECALL}"
    );
    assert!(fpr.rate() <= BENIGN_FPR, "held-out false-positive rate {fpr} > {BENIGN_FPR}");
    assert!(fpr_english.rate() <= BENIGN_FPR, "held-out false-positive rate, English, {fpr_english} > {BENIGN_FPR}");
    assert!(fpr_other.rate() <= BENIGN_FPR, "held-out false-positive rate, not English, {fpr_other} > {BENIGN_FPR}");
    assert!(heuristic.rate() >= HEURISTIC_RECALL, "signals alone: recall {heuristic} < {HEURISTIC_RECALL}");
    assert!(heuristic_fpr.rate() <= BENIGN_FPR, "signals alone: false-positive rate {heuristic_fpr} > {BENIGN_FPR}");
}
