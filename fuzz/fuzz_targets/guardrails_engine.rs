//! The guardrail engine on arbitrary input: normalisation, every detector, redaction, the
//! injection score (signals and learned scorer) and the streaming hold-back (buffered and
//! early release), with a policy that redacts everything (so
//! every code path that rewrites text runs). Invariants: no panic, spans on character
//! boundaries of the input, scores within [0, 1], and a stream releases exactly what it was
//! fed once redaction is accounted for (everything, when nothing matched).

#![no_main]

use std::sync::LazyLock;

use gatehouse_guardrails::injection::InjectionDetector;
use gatehouse_guardrails::policy::StreamRelease;
use gatehouse_guardrails::{Direction, Engine, Guard, Held, Placeholders, Policy, PolicySpec, Report, normalize};
use libfuzzer_sys::fuzz_target;

struct Fixture {
    engine: Engine,
    injection: InjectionDetector,
    guard: Guard,
    policy: Policy,
    /// The same policy with `stream_release = "early"`.
    early: Policy,
}

static F: LazyLock<Fixture> = LazyLock::new(|| {
    let spec: PolicySpec = serde_json::from_str(
        r#"{"detectors":{"*":{"input":"redact","output":"redact"},"prompt_injection":{"input":"flag","output":"flag"}},
            "custom":[{"name":"k","keywords":["falcon"],"input":"redact","output":"redact"},
                      {"name":"r","regex":"TCK-[0-9]{2,6}","input":"redact","output":"redact"}]}"#,
    )
    .expect("spec");
    let early = PolicySpec { stream_release: Some(StreamRelease::Early), ..spec.clone() };
    Fixture {
        engine: Engine::new().expect("engine"),
        injection: InjectionDetector::new().expect("injection"),
        guard: Guard::new().expect("guard"),
        policy: spec.compile().expect("policy"),
        early: early.compile().expect("policy"),
    }
});

fuzz_target!(|data: &[u8]| {
    let f = &*F;
    let Some((&split, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    let n = normalize(&text);
    let findings = f.engine.scan(&text).expect("bounded input");
    for x in &findings {
        assert!(x.span.start < x.span.end && x.span.end <= text.len());
        assert!(text.is_char_boundary(x.span.start) && text.is_char_boundary(x.span.end));
    }
    let mut ph = Placeholders::default();
    let _ = f.engine.redact(&text, &findings, &mut ph);
    let v = f.injection.assess(&text, &n.text);
    assert!((0.0..=1.0).contains(&v.score) && (0.0..=1.0).contains(&v.classifier));

    let mut report = Report::default();
    let _ = f.guard.inspect(&f.policy, Direction::In, &text, &mut ph, &mut report).expect("bounded input");

    // the same text streamed in pieces of 1..=32 bytes (on character boundaries), released
    // buffered or early
    let size = usize::from(split % 32) + 1;
    let policy = if split & 0x80 == 0 { &f.policy } else { &f.early };
    let mut held = Held::default();
    let mut out = String::new();
    let mut report = Report::default();
    let mut ph = Placeholders::default();
    ph.seal();
    let mut at = 0;
    while at < text.len() {
        let mut end = (at + size).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        let last = end == text.len();
        out += &f.guard.stream(policy, Direction::Out, &mut held, &text[at..end], last, &mut ph, &mut report).expect("bounded");
        at = end;
    }
    assert!(held.is_empty());
    if report.hits.iter().all(|h| !h.detector.starts_with("pii") && !h.detector.starts_with("secret") && !h.detector.starts_with("custom")) {
        assert_eq!(out, text, "nothing redacted, so everything passes unchanged");
    }
});
