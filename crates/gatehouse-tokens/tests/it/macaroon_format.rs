//! The signature chain, both serialisations and every way a token can be damaged.

#![expect(clippy::unwrap_used, reason = "test code")]

use gatehouse_tokens::macaroon::{Caveat, Encoding, Error, Limits, Macaroon};
use proptest::prelude::*;

const KEY: &[u8] = b"a root key of thirty-two bytes!!";

fn token() -> Macaroon {
    let mut m = Macaroon::new(KEY, "tok_1", Some("https://gatehouse.example"));
    m.add_first_party("org = acme");
    m.add_first_party("scope chat:*");
    m.add_first_party("expires < 2030-01-01T00:00:00Z");
    m
}

fn verify(m: &Macaroon, discharges: &[Macaroon]) -> Result<Vec<String>, Error> {
    m.verify(KEY, discharges, &Limits::default())
        .map(|p| p.iter().map(|b| String::from_utf8(b.to_vec()).unwrap()).collect())
}

#[test]
fn every_encoding_round_trips_and_verifies() {
    let m = token();
    for enc in [Encoding::Base64Url, Encoding::Base64Std, Encoding::Json] {
        let text = m.encode(enc);
        let back = Macaroon::decode(&text, &Limits::default()).unwrap();
        assert_eq!(back, m, "{enc:?}");
        assert_eq!(verify(&back, &[]).unwrap(), ["org = acme", "scope chat:*", "expires < 2030-01-01T00:00:00Z"]);
    }
}

#[test]
fn wrong_key_fails() {
    assert_eq!(token().verify(b"another key", &[], &Limits::default()), Err(Error::BadSignature));
}

/// Rebuilds a token from parts, as an attacker editing the serialised form would.
fn edit(m: &Macaroon, f: impl FnOnce(&mut serde_json::Value)) -> Macaroon {
    let mut doc: serde_json::Value = serde_json::from_str(&m.to_json()).unwrap();
    f(&mut doc);
    Macaroon::from_json(&doc.to_string(), &Limits::default()).unwrap()
}

#[test]
fn stripped_reordered_or_edited_caveats_fail() {
    let m = token();
    let stripped = edit(&m, |d| {
        d["c"].as_array_mut().unwrap().remove(1);
    });
    assert_eq!(verify(&stripped, &[]), Err(Error::BadSignature));
    let last_stripped = edit(&m, |d| {
        d["c"].as_array_mut().unwrap().pop();
    });
    assert_eq!(verify(&last_stripped, &[]), Err(Error::BadSignature));
    let reordered = edit(&m, |d| d["c"].as_array_mut().unwrap().swap(0, 1));
    assert_eq!(verify(&reordered, &[]), Err(Error::BadSignature));
    let widened = edit(&m, |d| d["c"][1]["i"] = "scope *".into());
    assert_eq!(verify(&widened, &[]), Err(Error::BadSignature));
    let renamed = edit(&m, |d| d["i"] = "tok_2".into());
    assert_eq!(verify(&renamed, &[]), Err(Error::BadSignature));
}

#[test]
fn every_flipped_bit_of_the_binary_form_is_rejected() {
    let bin = token().to_binary();
    for i in 0..bin.len() {
        for bit in 0..8 {
            let mut b = bin.clone();
            b[i] ^= 1 << bit;
            if let Ok(m) = Macaroon::from_binary(&b, &Limits::default()) {
                // The location is an unsigned hint by design (libmacaroons): only it may change.
                if verify(&m, &[]).is_ok() {
                    assert_ne!(m.location(), token().location(), "byte {i} bit {bit}");
                    assert_eq!((m.identifier(), m.caveats()), (token().identifier(), token().caveats()));
                }
            }
        }
    }
}

#[test]
fn every_truncation_is_rejected() {
    let bin = token().to_binary();
    for n in 0..bin.len() {
        assert!(Macaroon::from_binary(&bin[..n], &Limits::default()).is_err(), "{n}");
    }
    let mut longer = bin.clone();
    longer.push(0);
    assert_eq!(Macaroon::from_binary(&longer, &Limits::default()), Err(Error::Malformed("trailing bytes")));
}

#[test]
fn attenuation_narrows_and_keeps_verifying() {
    let mut m = token();
    m.add_first_party("models in [gpt-4o]");
    assert_eq!(verify(&m, &[]).unwrap().len(), 4);
}

#[test]
fn limits_bound_the_parser() {
    let limits = Limits { max_bytes: 4096, max_caveats: 4, max_field: 64, max_discharges: 1 };
    let mut many = Macaroon::new(KEY, "id", None);
    for i in 0..5 {
        many.add_first_party(format!("c{i}"));
    }
    assert_eq!(Macaroon::from_binary(&many.to_binary(), &limits), Err(Error::TooLarge("caveats")));
    assert_eq!(Macaroon::from_json(&many.to_json(), &limits), Err(Error::TooLarge("caveats")));
    let mut long = Macaroon::new(KEY, "id", None);
    long.add_first_party(vec![b'x'; 65]);
    assert_eq!(Macaroon::from_binary(&long.to_binary(), &limits), Err(Error::TooLarge("field")));
    assert_eq!(Macaroon::from_json(&long.to_json(), &limits), Err(Error::TooLarge("field")));
    let huge = "A".repeat(10_000);
    assert_eq!(Macaroon::decode(&huge, &limits), Err(Error::TooLarge("token")));
    // A five-byte varint is refused before it is used as a length.
    let mut bin = vec![2u8, 2, 0xff, 0xff, 0xff, 0xff, 0x01];
    bin.extend_from_slice(&[0; 8]);
    assert_eq!(Macaroon::from_binary(&bin, &limits), Err(Error::TooLarge("varint")));
    let two = [Macaroon::new(KEY, "a", None), Macaroon::new(KEY, "b", None)];
    assert_eq!(token().verify(KEY, &two, &limits), Err(Error::TooLarge("discharges")));
}

#[test]
fn json_rejects_ambiguity_and_unknown_fields() {
    let l = Limits::default();
    let m = token().to_json();
    let twice = m.replacen("\"i\":\"tok_1\"", "\"i\":\"tok_1\",\"i64\":\"dG9rXzE\"", 1);
    assert_eq!(Macaroon::from_json(&twice, &l), Err(Error::Malformed("field given twice")));
    let unknown = m.replacen("\"v\":2", "\"v\":2,\"x\":1", 1);
    assert_eq!(Macaroon::from_json(&unknown, &l), Err(Error::Malformed("json")));
    let v3 = m.replacen("\"v\":2", "\"v\":3", 1);
    assert_eq!(Macaroon::from_json(&v3, &l), Err(Error::Malformed("json version")));
}

#[test]
fn debug_never_prints_the_signature() {
    let m = token();
    let hex: String = m.signature().as_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let dbg = format!("{m:?} {:?}", m.signature());
    assert!(!dbg.contains(&hex) && !dbg.contains(&m.encode(Encoding::Base64Url)[60..]));
}

const TP_KEY: &[u8] = b"shared with the third party";

fn with_third_party() -> (Macaroon, Macaroon) {
    let mut root = token();
    root.add_third_party("https://auth.example", TP_KEY, "user-is-alice");
    root.add_first_party("rpm <= 10");
    let mut discharge = Macaroon::new(TP_KEY, "user-is-alice", Some("https://auth.example"));
    discharge.add_first_party("expires < 2031-01-01T00:00:00Z");
    (root, discharge)
}

#[test]
fn third_party_caveats_need_a_bound_discharge() {
    let (root, discharge) = with_third_party();
    assert_eq!(verify(&root, &[]), Err(Error::MissingDischarge(3)));
    assert_eq!(verify(&root, std::slice::from_ref(&discharge)), Err(Error::BadSignature), "unbound");
    let bound = root.bind(&discharge);
    let preds = verify(&root, std::slice::from_ref(&bound)).unwrap();
    assert_eq!(preds.len(), 5, "{preds:?}");
    assert!(preds.contains(&"expires < 2031-01-01T00:00:00Z".to_owned()));
    // A discharge bound to another root does not transfer.
    let other = token();
    let mut other_root = other.clone();
    other_root.add_third_party("https://auth.example", TP_KEY, "user-is-alice");
    assert_eq!(verify(&root, &[other_root.bind(&discharge)]), Err(Error::BadSignature));
    // Presenting a discharge twice, or one nobody asked for, is refused.
    assert_eq!(verify(&root, &[bound.clone(), bound.clone()]), Err(Error::UnusedDischarge));
    assert_eq!(verify(&token(), &[bound]), Err(Error::UnusedDischarge));
    // A discharge minted with the wrong caveat key fails.
    let forged = Macaroon::new(b"guess", "user-is-alice", None);
    assert_eq!(verify(&root, &[root.bind(&forged)]), Err(Error::BadSignature));
}

#[test]
fn nested_third_party_caveats_verify() {
    let (mut root, mut d1) = with_third_party();
    d1.add_third_party("https://mfa.example", b"mfa key", "mfa-ok");
    let d2 = Macaroon::new(b"mfa key", "mfa-ok", None);
    assert_eq!(verify(&root, &[root.bind(&d1)]), Err(Error::MissingDischarge(1)));
    let preds = verify(&root, &[root.bind(&d1), root.bind(&d2)]).unwrap();
    assert_eq!(preds.len(), 5);
    root.add_first_party("ip in 10.0.0.0/8");
    // The discharges were bound to the old signature: attenuating the root needs a rebind.
    assert_eq!(verify(&root, &[root.bind(&d1), root.bind(&d2)]).unwrap().len(), 6);
}

#[test]
fn first_party_caveats_carry_no_location_in_json() {
    let m = token();
    let bad = m.to_json().replacen("{\"i\":\"org = acme\"}", "{\"i\":\"org = acme\",\"l\":\"x\"}", 1);
    assert_eq!(
        Macaroon::from_json(&bad, &Limits::default()),
        Err(Error::Malformed("location on a first-party caveat"))
    );
    assert!(m.caveats().iter().all(Caveat::is_first_party));
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..512)) {
        let l = Limits::default();
        let _ = Macaroon::from_binary(&b, &l);
        let mut v2 = vec![2u8];
        v2.extend_from_slice(&b);
        let _ = Macaroon::from_binary(&v2, &l);
        let _ = Macaroon::from_json(&String::from_utf8_lossy(&b), &l);
        let _ = Macaroon::decode(&String::from_utf8_lossy(&b), &l);
    }

    #[test]
    fn any_token_round_trips(
        id in proptest::collection::vec(any::<u8>(), 0..64),
        loc in proptest::option::of("[a-z:/.]{0,20}"),
        caveats in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..6),
    ) {
        let mut m = Macaroon::new(KEY, id, loc.as_deref());
        for c in caveats { m.add_first_party(c); }
        for enc in [Encoding::Base64Url, Encoding::Base64Std, Encoding::Json] {
            let back = Macaroon::decode(&m.encode(enc), &Limits::default()).unwrap();
            prop_assert_eq!(&back, &m);
            prop_assert!(back.verify(KEY, &[], &Limits::default()).is_ok());
        }
    }
}
