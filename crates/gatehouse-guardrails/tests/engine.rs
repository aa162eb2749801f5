//! The detectors on positives with exact spans, hard negatives, smuggled variants, and the
//! properties every scan must keep on arbitrary input.

#![expect(clippy::unwrap_used, reason = "test code")]

use gatehouse_guardrails::{Engine, Placeholders, restore};
use proptest::prelude::*;

fn engine() -> Engine {
    Engine::new().unwrap()
}

/// (detector, matched text) of every finding.
fn found(text: &str) -> Vec<(&'static str, String)> {
    engine().scan(text).unwrap().into_iter().map(|f| (f.detector, text[f.span].to_owned())).collect()
}

#[test]
fn positives_are_found_with_exact_spans() {
    let cases = [
        ("mail ann.lee+x@mail.example.co.uk now", "pii.email", "ann.lee+x@mail.example.co.uk"),
        ("card: 4111 1111 1111 1111.", "pii.card", "4111 1111 1111 1111"),
        ("amex 3782-822463-10005 ok", "pii.card", "3782-822463-10005"),
        ("ssn 123-45-6789", "pii.ssn", "123-45-6789"),
        ("IBAN DE89 3704 0044 0532 0130 00 please", "pii.iban", "DE89 3704 0044 0532 0130 00"),
        ("call +14155552671 today", "pii.phone", "+14155552671"),
        ("call (415) 555-2671 today", "pii.phone", "(415) 555-2671"),
        ("call 415-555-2671 today", "pii.phone", "415-555-2671"),
        ("host 192.168.10.20 down", "pii.ipv4", "192.168.10.20"),
        ("ssh git@10.1.2.3 now", "pii.ipv4", "10.1.2.3"),
        ("allow host=10.1.2.3; deny the rest", "pii.ipv4", "10.1.2.3"),
        ("from 10.1.2.3-10 only", "pii.ipv4", "10.1.2.3"),
        ("the dev 10.0.0.5 box", "pii.ipv4", "10.0.0.5"),
        ("v6 2001:db8:85a3::8a2e:370:7334 up", "pii.ipv6", "2001:db8:85a3::8a2e:370:7334"),
        ("key sk-proj-abcdefghijklmnopqrstuvwxyz012345 x", "secret.openai", "sk-proj-abcdefghijklmnopqrstuvwxyz012345"),
        (
            "sk-ant-api03-abcdefghijklmnopqrstuvwxyz_0123",
            "secret.anthropic",
            "sk-ant-api03-abcdefghijklmnopqrstuvwxyz_0123",
        ),
        ("aws AKIAQ3ZT7VXWJ2KD5MNB", "secret.aws_access_key", "AKIAQ3ZT7VXWJ2KD5MNB"),
        ("hf 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 x", "secret.huggingface", "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"),
        ("db postgres://app:Velvet627%ir@db.internal/prod", "secret.url_credentials", "Velvet627%ir"),
        ("SSN 123 45 6789 on file", "pii.ssn", "123 45 6789"),
        ("call 1-415-555-2671 today", "pii.phone", "1-415-555-2671"),
        ("from ::ffff:192.0.2.17 at noon", "pii.ipv6", "::ffff:192.0.2.17"),
        ("gh ghp_abcdefghijklmnopqrstuvwxyz0123456789", "secret.github", "ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
        ("slack xoxb-123456789012-abcdefABCDEF", "secret.slack", "xoxb-123456789012-abcdefABCDEF"),
        ("stripe sk_live_abcdefghijklmnop1234", "secret.stripe", "sk_live_abcdefghijklmnop1234"),
        ("g AIzaSyA-abcdefghijklmnopqrstuvwxyz01234", "secret.google", "AIzaSyA-abcdefghijklmnopqrstuvwxyz01234"),
        (
            "t eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U end",
            "secret.jwt",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        ),
        ("DB_PASSWORD=\"p4Ss9w0rdXq7LmZr2Tk\"", "secret.assigned", "p4Ss9w0rdXq7LmZr2Tk"),
        // a query-string value ends before the next parameter; elsewhere `&` is part of it
        ("GET /export?token=kA8fRCztUjAwyuh1vauWv1zh&page=2 200", "secret.assigned", "kA8fRCztUjAwyuh1vauWv1zh"),
        ("SECRET_KEY = 'q7x=&cq=)9tq7zv_prg5_ia#8i30'", "secret.assigned", "q7x=&cq=)9tq7zv_prg5_ia#8i30"),
        ("the wifi password is Tr0ub4dor&3x.", "secret.password", "Tr0ub4dor&3x"),
        ("Tel. 0171 2345678 (mobil)", "pii.phone", "0171 2345678"),
        ("UK mobile 07700 900123", "pii.phone", "07700 900123"),
        // providers by documented prefix (one named rule each)
        (
            "or sk-or-v1-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "secret.openrouter",
            "sk-or-v1-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ),
        (
            "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",
            "secret.sendgrid",
            "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",
        ),
        ("whsec_aB3dE5gH7jK9mN1pQ3sT5vX7zA9cE1gI", "secret.stripe", "whsec_aB3dE5gH7jK9mN1pQ3sT5vX7zA9cE1gI"),
        ("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", "secret.google", "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"),
        (
            "sntrys_aB3dE5gH7jK9mN1pQ3sT5vX7zA9cE1gI3kM5oQ7sU9w",
            "secret.sentry",
            "sntrys_aB3dE5gH7jK9mN1pQ3sT5vX7zA9cE1gI3kM5oQ7sU9w",
        ),
    ];
    for (text, det, want) in cases {
        let got = found(text);
        assert!(got.contains(&(det, want.to_owned())), "{text:?}: {got:?}");
    }
    // assembled so that this file does not itself look like a leaked key to scanners
    let key =
        ["-----BEGIN ", "PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END ", "PRIVATE KEY-----"].concat();
    assert_eq!(found(&format!("x {key} y")), [("secret.private_key", key)]);
    // documented example values and code are not findings (issue #21's false-positive classes)
    for text in [
        "aws AKIAIOSFODNN7EXAMPLE",
        "GITHUB_TOKEN=ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "Vec::<u8>::new()",
        "use std::io::Result;",
        "export OPENROUTER_API_KEY=sk-or-v1-your-key-here",
        "GROQ_API_KEY=gsk_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "The password is incorrect.",
        "See /search?q=api+key+rotation&page=2 for the guide.",
    ] {
        assert_eq!(found(text), [], "{text}");
    }
    let gh = format!("gth_{}", "A1b2C3d4E5".repeat(5).chars().take(49).collect::<String>());
    assert_eq!(found(&format!("k={gh}")).first().map(|f| f.0), Some("secret.gatehouse"));
}

#[test]
fn hard_negatives_stay_quiet() {
    for text in [
        "order 4111 1111 1111 1112 is not a card (Luhn)",
        "SSN-like 000-12-3456 and 666-01-2345 and 900-12-3456 are invalid",
        "version 10.30.00 and time 10:30:00 and ratio 3:2",
        "IP-like 999.300.1.1 is not an address",
        "pin it: pip install widget==1.2.3.4, or requests>=2.31.0.1",
        "upgrade to 4.2.0.1-beta tonight, then 4.2.0.1+git3 and 1.0.3.7.2",
        "IBAN-like DE89 3704 0044 0532 0130 01 fails mod-97",
        "the word sk-is not a key; token = aaaaaaaaaaaaaaaaaaaaaaaa is low entropy",
        "email-ish user@localhost has no domain suffix",
        "a date 2024-01-15 and an isbn 978-3-16-148410-0",
    ] {
        assert_eq!(found(text), Vec::<(&str, String)>::new(), "{text}");
    }
}

#[test]
fn smuggled_values_are_found_and_spans_point_at_the_original() {
    // fullwidth letters and a zero-width space inside an OpenAI key
    let text = "use ｓｋ-proj-abcdefghij\u{200b}klmnopqrstuvwxyz012345 now";
    let f = engine().scan(text).unwrap();
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].detector, "secret.openai");
    assert!(text[f[0].span.clone()].starts_with("ｓｋ-proj"));
    assert!(text[f[0].span.clone()].ends_with("012345"));
    // bidi override hiding an email
    let text = "mail \u{202e}bob@example.com\u{202c} ok";
    assert_eq!(found(text).len(), 1);
}

#[test]
fn encoded_secrets_are_found_over_the_whole_blob() {
    use base64::Engine as _;
    let key = "AKIAIOSFODNN7EXAMPLQ";
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("the key is {key} ok"));
    let text = format!("config blob: {b64} end");
    let start = text.find(&b64).unwrap();
    assert_eq!(found(&text), [("secret.aws_access_key", b64.clone())]);
    assert_eq!(engine().scan(&text).unwrap()[0].span, start..start + b64.len());
    let hexed = hex::encode("token sk-proj-abcdefghijklmnopqrstuvwxyz0123");
    assert_eq!(found(&format!("x {hexed} y")), [("secret.openai", hexed)]);
    // blobs that decode to nothing sensitive (or to no text) are left alone
    let plain = base64::engine::general_purpose::STANDARD.encode("just some harmless words in a sentence here");
    assert!(found(&format!("data {plain}")).is_empty());
    assert!(found("sha256 3f786850e387550fdab836ed7e6dc881de23001b3f786850e387550f").is_empty());
}

#[test]
fn redaction_is_typed_consistent_and_reversible() {
    let e = engine();
    let text = "Ann ann@example.com wrote to bob@example.com, cc ann@example.com; card 4111111111111111";
    let f = e.scan(text).unwrap();
    let mut p = Placeholders::default();
    let red = e.redact(text, &f, &mut p);
    assert_eq!(red, "Ann [EMAIL_1] wrote to [EMAIL_2], cc [EMAIL_1]; card [CARD_1]");
    assert!(e.scan(&red).unwrap().is_empty(), "redaction leaves nothing to find");
    assert_eq!(
        restore("Reply to [EMAIL_2] about [CARD_1] and [UNKNOWN_9]", &p),
        "Reply to bob@example.com about 4111111111111111 and [UNKNOWN_9]"
    );
}

#[test]
fn a_length_preserving_normalisation_still_maps_spans() {
    // found by proptest: NFKC changed the text without changing its length
    let s = "\u{1e030}\u{fbea}::a\u{1ee74}\u{edc}\u{1ee47}\u{b8}\u{1f240}\u{1d546}\u{1d715}";
    for f in engine().scan(s).unwrap() {
        assert!(s.is_char_boundary(f.span.start) && s.is_char_boundary(f.span.end), "{f:?}");
    }
}

/// Pieces that match (or nearly match) the detectors, for texts that put many matches close
/// together, overlapping and touching.
const PIECES: &[&str] = &[
    "ann.lee+x@mail.example.co.uk",
    "4111 1111 1111 1111",
    "123-45-6789",
    "ssn is 123 45 6789",
    "DE89 3704 0044 0532 0130 00",
    "+14155552671",
    "(415) 555-2671",
    "1 415-555-2671",
    "00 44 20 7946 0958",
    "192.168.10.20",
    "version 10.1.2.3",
    "==1.2.3.4",
    "2001:db8:85a3::8a2e:370:7334",
    "::ffff:10.0.0.1",
    "sk-proj-abcdefghijklmnopqrstuvwxyz012345",
    "AKIAIOSFODNN7EXAMPLA",
    "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB",
    "xoxb-1234567890-abcdefghij",
    "https://user:hunter2hunter2@db.example.com",
    "password = \"correct-horse-battery\"",
    "api_key: AbCdEfGhIjKlMnOpQrStUv012345",
    "Authorization: Bearer abcdefghijklmnopqrstuvwxyz.0123456789",
    "Basic dXNlcjpwYXNzd29yZA==",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abcdefghijklmnop",
    "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----",
    "c2stcHJvai1hYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NQ==",
    "0123456789",
    "1.2.3",
    "@",
    ":",
    ".",
    "-",
    " ",
    "\n",
];

#[test]
fn windowed_detectors_agree_on_every_piece_back_to_back() {
    let e = engine();
    for sep in ["", " ", "\n", "-", ".", "0", "a"] {
        let text = PIECES.join(sep);
        let windowed = e.scan_windowed(&text);
        assert_eq!(windowed, e.scan_exhaustive(&text), "separator {sep:?}");
        let detectors: std::collections::BTreeSet<_> = windowed.iter().map(|(d, _)| *d).collect();
        // run together, pieces swallow each other; apart, most detectors fire
        let want = if sep.trim().is_empty() && !sep.is_empty() { 15 } else { 5 };
        assert!(detectors.len() >= want, "separator {sep:?}: only {detectors:?}");
    }
}

proptest! {
    /// The windows the all-matches pass bounds find exactly what every detector finds over the
    /// whole text, on texts dense with matches, near-matches and arbitrary text between them.
    #[test]
    fn windowed_detectors_find_what_whole_text_passes_find(
        parts in proptest::collection::vec(
            prop_oneof![
                3 => proptest::sample::select(PIECES).prop_map(str::to_owned),
                1 => "\\PC{0,12}",
                1 => "[0-9 .:()+-]{1,16}",
            ],
            0..24,
        )
    ) {
        let text = parts.concat();
        let e = engine();
        prop_assert_eq!(e.scan_windowed(&text), e.scan_exhaustive(&text), "{:?}", text);
    }

    #[test]
    fn any_text_scans_within_bounds_and_redacts_idempotently(s in "\\PC{0,300}") {
        let e = engine();
        let f = e.scan(&s).unwrap();
        for x in &f {
            prop_assert!(x.span.start <= x.span.end && x.span.end <= s.len());
            prop_assert!(s.is_char_boundary(x.span.start) && s.is_char_boundary(x.span.end));
        }
        let mut p = Placeholders::default();
        let once = e.redact(&s, &f, &mut p);
        let again = e.redact(&once, &e.scan(&once).unwrap(), &mut p);
        prop_assert_eq!(&once, &again);
    }

    #[test]
    fn arbitrary_unicode_never_panics(s in any::<String>()) {
        let _ = engine().scan(&s);
        let d = gatehouse_guardrails::injection::InjectionDetector::new().unwrap();
        let v = d.assess(&s, &gatehouse_guardrails::normalize(&s).text);
        prop_assert!((0.0..=1.0).contains(&v.score));
    }

    #[test]
    fn embedded_cards_are_always_found(prefix in "[a-z ]{0,20}", suffix in "[a-z ]{0,20}") {
        let text = format!("{prefix} 4111-1111-1111-1111 {suffix}");
        prop_assert!(found(&text).iter().any(|(d, _)| *d == "pii.card"));
    }

    /// Blobs are found by probing every 24th byte: a blob must be found at any offset, after
    /// any mix of words and other runs.
    #[test]
    fn encoded_keys_are_found_at_any_offset(prefix in "[a-zA-Z0-9 +/=.-]{0,80}") {
        use base64::Engine as _;
        let blob = base64::engine::general_purpose::STANDARD.encode("AKIAIOSFODNN7EXAMPLQ");
        let text = format!("{prefix} {blob} tail");
        prop_assert!(found(&text).iter().any(|(d, _)| *d == "secret.aws_access_key"), "{text}");
    }
}
