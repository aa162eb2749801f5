//! Scan throughput on typical text (prose with a little PII and one secret per KiB), all PII
//! and secret detectors on; then the same plus prompt-injection scoring (signals and the
//! learned scorer); then the learned scorer by itself. Run: cargo bench -p gatehouse-guardrails --bench scan

#![expect(clippy::expect_used, reason = "benchmark setup: a failure must stop the run")]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gatehouse_guardrails::Engine;

const PROSE: &str = "The quarterly report shows steady growth across all regions. Our team reviewed the \
    onboarding flow and found three places where customers hesitate; we propose shorter forms, \
    clearer error messages and a progress indicator. Please send feedback to ann.lee@example.com \
    before Friday. The staging host 10.20.30.40 will be rebuilt tonight, so expect a short outage. \
    Budget questions go to finance; travel requests need approval two weeks ahead. ";

fn text(bytes: usize) -> String {
    let mut s = String::with_capacity(bytes + 512);
    let mut i = 0;
    while s.len() < bytes {
        s.push_str(PROSE);
        if i % 3 == 0 {
            s.push_str("Call me at (415) 555-2671 or use key sk-proj-abcdefghijklmnopqrstuvwx0123. ");
        }
        i += 1;
    }
    s.truncate(bytes);
    while !s.is_char_boundary(s.len()) {
        s.pop();
    }
    s
}

fn benches(c: &mut Criterion) {
    let engine = Engine::new().expect("engine");
    let mut g = c.benchmark_group("scan_pii_secrets");
    for kib in [1usize, 16, 256] {
        let t = text(kib * 1024);
        g.throughput(Throughput::Bytes(t.len() as u64));
        g.bench_function(format!("{kib}KiB"), |b| {
            b.iter(|| black_box(engine.scan(black_box(&t)).expect("scan").len()))
        });
    }
    g.finish();

    let detector = gatehouse_guardrails::injection::InjectionDetector::new().expect("detector");
    // then with the learned scorer off too (a policy with `prompt_injection.classifier` off)
    for (name, learned) in [("scan_all_with_injection", true), ("scan_all_signals_only", false)] {
        let mut g = c.benchmark_group(name);
        for kib in [1usize, 16, 256] {
            let t = text(kib * 1024);
            g.throughput(Throughput::Bytes(t.len() as u64));
            g.bench_function(format!("{kib}KiB"), |b| {
                b.iter(|| {
                    let n = gatehouse_guardrails::normalize(black_box(&t));
                    let findings = engine.scan_normalized(&t, &n).expect("scan").len();
                    black_box((findings, detector.assess_with(&t, &n.text, learned).score))
                })
            });
        }
        g.finish();
    }

    let classifier = gatehouse_guardrails::classifier::Classifier::shipped().expect("model");
    let mut g = c.benchmark_group("injection_classifier_alone");
    for kib in [1usize, 16, 256] {
        let t = gatehouse_guardrails::normalize(&text(kib * 1024)).text;
        g.throughput(Throughput::Bytes(t.len() as u64));
        g.bench_function(format!("{kib}KiB"), |b| b.iter(|| black_box(classifier.score(black_box(&t)))));
    }
    g.finish();
}

criterion_group!(scan, benches);
criterion_main!(scan);
