//! The relying party's checks of a passkey ceremony (WebAuthn Level 3, §7.1 registration and
//! §7.2 authentication), in one narrow profile: attestation `none`, user verification
//! required, credentials signing with ES256, EdDSA (Ed25519) or RS256. COSE keys are decoded
//! by `coset`, signatures verified by `aws-lc-rs`; what is written here is only the protocol's
//! own framing (client data, authenticator data, the counter rule).
//!
//! Every input is bounded before it is parsed, and anything outside the profile is refused,
//! never passed through: an unknown attestation format, an algorithm we did not offer, a
//! point in compressed form, trailing bytes.

use aws_lc_rs::{digest, signature};
use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use coset::cbor::value::Value;
use coset::{AsCborValue, CoseKey, Label, iana};
use serde::Deserialize;

/// COSE algorithm ids offered to authenticators, in order of preference.
pub const ES256: i64 = -7;
pub const EDDSA: i64 = -8;
pub const RS256: i64 = -257;
pub const ALGORITHMS: [i64; 3] = [ES256, EDDSA, RS256];

/// Size caps: far above what authenticators send, far below what could hurt.
const MAX_CLIENT_DATA: usize = 4 * 1024;
const MAX_ATTESTATION: usize = 16 * 1024;
const MAX_AUTH_DATA: usize = 8 * 1024;
const MAX_SIGNATURE: usize = 1024;
/// The spec's own bound on a credential id.
pub const MAX_CREDENTIAL_ID: usize = 1023;
/// Nesting depth of CBOR we accept (a COSE key is two levels deep).
const CBOR_DEPTH: usize = 8;
/// RSA keys shorter than this are refused.
const MIN_RSA_MODULUS: usize = 256;

const FLAG_UP: u8 = 0x01;
const FLAG_UV: u8 = 0x04;
const FLAG_BE: u8 = 0x08;
const FLAG_BS: u8 = 0x10;
const FLAG_AT: u8 = 0x40;
const FLAG_ED: u8 = 0x80;

/// Who the ceremony must be for: the origin the browser was on and the RP id the
/// authenticator scoped the credential to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelyingParty {
    pub origin: String,
    pub rp_id: String,
}

/// Why a ceremony was refused. Callers log it and answer one refusal for all of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("malformed {0}")]
    Malformed(&'static str),
    #[error("client data is for another ceremony")]
    Type,
    #[error("challenge does not match")]
    Challenge,
    #[error("origin does not match")]
    Origin,
    #[error("the credential is scoped to another relying party")]
    RpId,
    #[error("user presence was not shown")]
    NotPresent,
    #[error("user verification was not performed")]
    NotVerified,
    #[error("attestation format is not `none`")]
    Attestation,
    #[error("algorithm or key is outside the profile")]
    Algorithm,
    #[error("signature does not verify")]
    Signature,
    #[error("signature counter did not increase (a cloned authenticator?)")]
    Counter,
}

/// A credential that passed registration, to be stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCredential {
    pub id: Vec<u8>,
    /// The COSE_Key exactly as the authenticator encoded it.
    pub public_key: Vec<u8>,
    pub alg: i64,
    pub sign_count: u32,
    /// Whether the credential may be synced to other devices, and whether it is.
    pub backup_eligible: bool,
    pub backed_up: bool,
}

/// A stored credential as authentication needs it.
#[derive(Clone, Copy, Debug)]
pub struct StoredCredential<'a> {
    pub public_key: &'a [u8],
    pub alg: i64,
    pub sign_count: u32,
}

/// What an assertion proved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Asserted {
    pub sign_count: u32,
    pub backed_up: bool,
}

/// base64url, with or without padding, as browsers' `toJSON()` and older encoders send it.
pub fn b64url_decode(s: &str, max: usize) -> Result<Vec<u8>, Refused> {
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    if s.len() > max.saturating_mul(4) / 3 + 4 {
        return Err(Refused::Malformed("base64url field too long"));
    }
    LENIENT.decode(s).map_err(|_| Refused::Malformed("base64url"))
}

pub fn b64url_encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The challenge a client data JSON carries, to find the ceremony it answers (everything else
/// is checked by [`register`] or [`authenticate`]).
pub fn challenge_of(client_data_json: &[u8]) -> Result<Vec<u8>, Refused> {
    b64url_decode(&ClientData::parse(client_data_json)?.challenge, 64)
}

#[derive(Deserialize)]
struct ClientData {
    #[serde(rename = "type")]
    kind: String,
    challenge: String,
    origin: String,
    #[serde(rename = "crossOrigin", default)]
    cross_origin: Option<bool>,
    #[serde(rename = "topOrigin", default)]
    top_origin: Option<String>,
}

impl ClientData {
    /// The client data JSON, bounded before it is parsed.
    fn parse(json: &[u8]) -> Result<ClientData, Refused> {
        if json.len() > MAX_CLIENT_DATA {
            return Err(Refused::Malformed("client data too long"));
        }
        serde_json::from_slice(json).map_err(|_| Refused::Malformed("client data"))
    }
}

/// §7.1 steps 5–12 / §7.2 steps 10–15: the client data names this ceremony, our challenge and
/// our origin, and was not produced inside a frame of another site.
fn check_client_data(rp: &RelyingParty, json: &[u8], kind: &str, challenge: &[u8]) -> Result<(), Refused> {
    let cd = ClientData::parse(json)?;
    if cd.kind != kind {
        return Err(Refused::Type);
    }
    let sent = b64url_decode(&cd.challenge, 64).map_err(|_| Refused::Challenge)?;
    if aws_lc_rs::constant_time::verify_slices_are_equal(&sent, challenge).is_err() {
        return Err(Refused::Challenge);
    }
    if cd.origin != rp.origin || cd.cross_origin == Some(true) || cd.top_origin.is_some_and(|t| t != rp.origin) {
        return Err(Refused::Origin);
    }
    Ok(())
}

struct AuthData<'a> {
    flags: u8,
    sign_count: u32,
    /// Credential id and the COSE key's bytes, when attested credential data is present.
    attested: Option<(&'a [u8], &'a [u8])>,
}

fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8], Refused> {
    if bytes.len() < n {
        return Err(Refused::Malformed("authenticator data too short"));
    }
    let (head, rest) = bytes.split_at(n);
    *bytes = rest;
    Ok(head)
}

/// Decodes one CBOR item from the front of `bytes`, advancing past it.
fn cbor_item(bytes: &mut &[u8]) -> Result<Value, Refused> {
    coset::cbor::de::from_reader_with_recursion_limit(&mut *bytes, CBOR_DEPTH).map_err(|_| Refused::Malformed("CBOR"))
}

/// `bytes` as exactly one CBOR item; anything after it is refused as `trailing`.
fn cbor_whole(bytes: &[u8], trailing: &'static str) -> Result<Value, Refused> {
    let mut rest = bytes;
    let value = cbor_item(&mut rest)?;
    if !rest.is_empty() {
        return Err(Refused::Malformed(trailing));
    }
    Ok(value)
}

/// §6.1: rpIdHash ‖ flags ‖ signCount ‖ [attested credential data] ‖ [extensions].
fn parse_auth_data<'a>(rp: &RelyingParty, data: &'a [u8]) -> Result<AuthData<'a>, Refused> {
    if data.len() > MAX_AUTH_DATA {
        return Err(Refused::Malformed("authenticator data too long"));
    }
    let mut rest = data;
    let rp_id_hash = take(&mut rest, 32)?;
    if rp_id_hash != digest::digest(&digest::SHA256, rp.rp_id.as_bytes()).as_ref() {
        return Err(Refused::RpId);
    }
    let flags = take(&mut rest, 1)?[0];
    let count = take(&mut rest, 4)?;
    let sign_count = u32::from_be_bytes([count[0], count[1], count[2], count[3]]);
    let mut attested = None;
    if flags & FLAG_AT != 0 {
        let _aaguid = take(&mut rest, 16)?;
        let len = take(&mut rest, 2)?;
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        if len == 0 || len > MAX_CREDENTIAL_ID {
            return Err(Refused::Malformed("credential id length"));
        }
        let id = take(&mut rest, len)?;
        let before = rest;
        cbor_item(&mut rest)?;
        let key = &before[..before.len() - rest.len()];
        attested = Some((id, key));
    }
    if flags & FLAG_ED != 0 {
        // extension outputs: one CBOR map, which we do not use
        if !matches!(cbor_item(&mut rest)?, Value::Map(_)) {
            return Err(Refused::Malformed("extensions"));
        }
    }
    if !rest.is_empty() {
        return Err(Refused::Malformed("trailing authenticator data"));
    }
    if flags & FLAG_UP == 0 {
        return Err(Refused::NotPresent);
    }
    if flags & FLAG_UV == 0 {
        return Err(Refused::NotVerified);
    }
    // a credential cannot be backed up without being eligible for it (§6.1.3)
    if flags & FLAG_BS != 0 && flags & FLAG_BE == 0 {
        return Err(Refused::Malformed("backup state without eligibility"));
    }
    Ok(AuthData { flags, sign_count, attested })
}

enum PublicKey {
    P256(Vec<u8>),
    Ed25519(Vec<u8>),
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

fn param(key: &CoseKey, label: i64) -> Option<&Value> {
    key.params.iter().find(|(l, _)| *l == Label::Int(label)).map(|(_, v)| v)
}

fn bytes_param(key: &CoseKey, label: i64) -> Result<Vec<u8>, Refused> {
    match param(key, label) {
        Some(Value::Bytes(b)) => Ok(b.clone()),
        _ => Err(Refused::Algorithm),
    }
}

fn int_param(key: &CoseKey, label: i64) -> Option<i128> {
    match param(key, label) {
        Some(Value::Integer(i)) => Some(i128::from(*i)),
        _ => None,
    }
}

/// The key a COSE_Key holds, if its algorithm is one we offered and its shape matches it.
fn public_key(cose: &[u8]) -> Result<(i64, PublicKey), Refused> {
    let value = cbor_whole(cose, "trailing bytes after the COSE key")?;
    let key = CoseKey::from_cbor_value(value).map_err(|_| Refused::Malformed("COSE key"))?;
    let alg = match key.alg {
        Some(coset::Algorithm::Assigned(a)) => a as i64,
        _ => return Err(Refused::Algorithm),
    };
    let kty = match key.kty {
        coset::KeyType::Assigned(k) => k,
        _ => return Err(Refused::Algorithm),
    };
    let crv = int_param(&key, -1);
    let pk = match (alg, kty) {
        (ES256, iana::KeyType::EC2) if crv == Some(iana::EllipticCurve::P_256 as i128) => {
            let (x, y) = (bytes_param(&key, -2)?, bytes_param(&key, -3)?);
            if x.len() != 32 || y.len() != 32 {
                return Err(Refused::Algorithm);
            }
            let mut point = Vec::with_capacity(65);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            PublicKey::P256(point)
        }
        (EDDSA, iana::KeyType::OKP) if crv == Some(iana::EllipticCurve::Ed25519 as i128) => {
            let x = bytes_param(&key, -2)?;
            if x.len() != 32 {
                return Err(Refused::Algorithm);
            }
            PublicKey::Ed25519(x)
        }
        (RS256, iana::KeyType::RSA) => {
            let (n, e) = (bytes_param(&key, -1)?, bytes_param(&key, -2)?);
            if n.len() < MIN_RSA_MODULUS || e.is_empty() || e.len() > 8 {
                return Err(Refused::Algorithm);
            }
            PublicKey::Rsa { n, e }
        }
        _ => return Err(Refused::Algorithm),
    };
    Ok((alg, pk))
}

/// §7.1: checks a registration response for `challenge` and gives the credential to store.
pub fn register(
    rp: &RelyingParty,
    challenge: &[u8],
    client_data_json: &[u8],
    attestation_object: &[u8],
) -> Result<NewCredential, Refused> {
    check_client_data(rp, client_data_json, "webauthn.create", challenge)?;
    if attestation_object.len() > MAX_ATTESTATION {
        return Err(Refused::Malformed("attestation object too long"));
    }
    let Value::Map(entries) = cbor_whole(attestation_object, "trailing bytes after the attestation object")? else {
        return Err(Refused::Malformed("attestation object"));
    };
    let (mut fmt, mut stmt, mut auth) = (None, None, None);
    for (k, v) in entries {
        match (k, v) {
            (Value::Text(k), Value::Text(v)) if k == "fmt" && fmt.is_none() => fmt = Some(v),
            (Value::Text(k), Value::Map(v)) if k == "attStmt" && stmt.is_none() => stmt = Some(v),
            (Value::Text(k), Value::Bytes(v)) if k == "authData" && auth.is_none() => auth = Some(v),
            _ => return Err(Refused::Malformed("attestation object")),
        }
    }
    let (Some(fmt), Some(stmt), Some(auth)) = (fmt, stmt, auth) else {
        return Err(Refused::Malformed("attestation object"));
    };
    // we asked for no attestation; one that came anyway would be trusted no more than none
    if fmt != "none" || !stmt.is_empty() {
        return Err(Refused::Attestation);
    }
    let data = parse_auth_data(rp, &auth)?;
    let Some((id, key)) = data.attested else { return Err(Refused::Malformed("no attested credential")) };
    let (alg, _) = public_key(key)?;
    Ok(NewCredential {
        id: id.to_vec(),
        public_key: key.to_vec(),
        alg,
        sign_count: data.sign_count,
        backup_eligible: data.flags & FLAG_BE != 0,
        backed_up: data.flags & FLAG_BS != 0,
    })
}

/// §7.2: checks an assertion by `stored` for `challenge`, including the counter rule: once
/// either side has counted, the new count must be greater than the stored one.
pub fn authenticate(
    rp: &RelyingParty,
    challenge: &[u8],
    stored: StoredCredential<'_>,
    client_data_json: &[u8],
    authenticator_data: &[u8],
    sig: &[u8],
) -> Result<Asserted, Refused> {
    check_client_data(rp, client_data_json, "webauthn.get", challenge)?;
    if sig.len() > MAX_SIGNATURE {
        return Err(Refused::Malformed("signature too long"));
    }
    let data = parse_auth_data(rp, authenticator_data)?;
    if data.attested.is_some() {
        return Err(Refused::Malformed("attested data in an assertion"));
    }
    let (alg, key) = public_key(stored.public_key)?;
    if alg != stored.alg {
        return Err(Refused::Algorithm);
    }
    let mut signed = Vec::with_capacity(authenticator_data.len() + 32);
    signed.extend_from_slice(authenticator_data);
    signed.extend_from_slice(digest::digest(&digest::SHA256, client_data_json).as_ref());
    let verified = match &key {
        PublicKey::P256(point) => {
            signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, point).verify(&signed, sig)
        }
        PublicKey::Ed25519(x) => signature::UnparsedPublicKey::new(&signature::ED25519, x).verify(&signed, sig),
        PublicKey::Rsa { n, e } => {
            signature::RsaPublicKeyComponents { n, e }.verify(&signature::RSA_PKCS1_2048_8192_SHA256, &signed, sig)
        }
    };
    verified.map_err(|_| Refused::Signature)?;
    if (data.sign_count != 0 || stored.sign_count != 0) && data.sign_count <= stored.sign_count {
        return Err(Refused::Counter);
    }
    Ok(Asserted { sign_count: data.sign_count, backed_up: data.flags & FLAG_BS != 0 })
}

#[cfg(test)]
mod tests {
    use coset::cbor::value::Value;
    use gatehouse_testkit::webauthn::Authenticator;

    use super::*;

    const FLAG_UP: u8 = 0x01;
    const FLAG_UV: u8 = 0x04;
    const FLAG_BE: u8 = 0x08;

    fn rp() -> RelyingParty {
        RelyingParty { origin: "https://gate.example".into(), rp_id: "gate.example".into() }
    }

    fn registered(a: &Authenticator) -> NewCredential {
        let cd = Authenticator::client_data("webauthn.create", b"challenge-0123456789", &rp().origin);
        register(&rp(), b"challenge-0123456789", &cd, &a.attestation("gate.example")).unwrap()
    }

    fn assert_with(a: &Authenticator, cred: &NewCredential, stored_count: u32) -> Result<Asserted, Refused> {
        let cd = Authenticator::client_data("webauthn.get", b"sign-in-challenge", &rp().origin);
        let ad = a.auth_data("gate.example", false);
        let sig = a.sign(&ad, &cd);
        let stored = StoredCredential { public_key: &cred.public_key, alg: cred.alg, sign_count: stored_count };
        authenticate(&rp(), b"sign-in-challenge", stored, &cd, &ad, &sig)
    }

    #[test]
    fn a_registered_p256_and_ed25519_credential_signs_in() {
        for mut a in [Authenticator::p256(), Authenticator::ed25519()] {
            let cred = registered(&a);
            assert_eq!(cred.id, a.id);
            assert!(cred.alg == ES256 || cred.alg == EDDSA);
            a.count = 1;
            assert_eq!(assert_with(&a, &cred, 0).unwrap().sign_count, 1);
        }
    }

    #[test]
    fn registration_is_bound_to_challenge_origin_rp_and_ceremony() {
        let a = Authenticator::p256();
        let att = a.attestation("gate.example");
        let cd = |kind: &str, origin: &str| Authenticator::client_data(kind, b"challenge-0123456789", origin);
        let ok = cd("webauthn.create", "https://gate.example");
        assert_eq!(register(&rp(), b"another-challenge", &ok, &att), Err(Refused::Challenge));
        assert_eq!(
            register(&rp(), b"challenge-0123456789", &cd("webauthn.get", &rp().origin), &att),
            Err(Refused::Type)
        );
        for origin in ["https://evil.example", "http://gate.example", "https://gate.example:8443"] {
            assert_eq!(
                register(&rp(), b"challenge-0123456789", &cd("webauthn.create", origin), &att),
                Err(Refused::Origin)
            );
        }
        assert_eq!(register(&rp(), b"challenge-0123456789", &ok, &a.attestation("evil.example")), Err(Refused::RpId));
        let framed = serde_json::json!({"type": "webauthn.create", "challenge": b64url_encode(b"challenge-0123456789"),
            "origin": rp().origin, "crossOrigin": true})
        .to_string();
        assert_eq!(register(&rp(), b"challenge-0123456789", framed.as_bytes(), &att), Err(Refused::Origin));
    }

    #[test]
    fn user_verification_and_presence_are_required() {
        let mut a = Authenticator::p256();
        a.flags = FLAG_UP;
        let cd = Authenticator::client_data("webauthn.create", b"c", &rp().origin);
        assert_eq!(register(&rp(), b"c", &cd, &a.attestation("gate.example")), Err(Refused::NotVerified));
        a.flags = FLAG_UV;
        assert_eq!(register(&rp(), b"c", &cd, &a.attestation("gate.example")), Err(Refused::NotPresent));
    }

    #[test]
    fn only_attestation_none_is_accepted() {
        let a = Authenticator::p256();
        let obj = Value::Map(vec![
            (Value::Text("fmt".into()), Value::Text("packed".into())),
            (Value::Text("attStmt".into()), Value::Map(vec![])),
            (Value::Text("authData".into()), Value::Bytes(a.auth_data("gate.example", true))),
        ]);
        let mut att = Vec::new();
        coset::cbor::ser::into_writer(&obj, &mut att).unwrap();
        let cd = Authenticator::client_data("webauthn.create", b"c", &rp().origin);
        assert_eq!(register(&rp(), b"c", &cd, &att), Err(Refused::Attestation));
    }

    #[test]
    fn a_counter_that_does_not_increase_is_refused() {
        let mut a = Authenticator::p256();
        let cred = registered(&a);
        a.count = 5;
        assert!(assert_with(&a, &cred, 4).is_ok());
        assert_eq!(assert_with(&a, &cred, 5), Err(Refused::Counter));
        a.count = 2;
        assert_eq!(assert_with(&a, &cred, 5), Err(Refused::Counter));
        // authenticators that never count (many synced passkeys) stay at zero
        a.count = 0;
        assert!(assert_with(&a, &cred, 0).is_ok());
    }

    #[test]
    fn a_signature_by_another_key_or_over_other_data_is_refused() {
        let mut a = Authenticator::p256();
        let cred = registered(&a);
        let mut other = Authenticator::p256();
        other.count = 1;
        assert_eq!(assert_with(&other, &cred, 0), Err(Refused::Signature));
        a.count = 1;
        let cd = Authenticator::client_data("webauthn.get", b"sign-in-challenge", &rp().origin);
        let ad = a.auth_data("gate.example", false);
        let mut sig = a.sign(&ad, &cd);
        let stored = StoredCredential { public_key: &cred.public_key, alg: cred.alg, sign_count: 0 };
        let mut tampered = ad.clone();
        tampered[32] |= FLAG_BE;
        assert_eq!(authenticate(&rp(), b"sign-in-challenge", stored, &cd, &tampered, &sig), Err(Refused::Signature));
        sig[10] ^= 1;
        assert_eq!(authenticate(&rp(), b"sign-in-challenge", stored, &cd, &ad, &sig), Err(Refused::Signature));
        // the stored algorithm must match the key's own
        let wrong = StoredCredential { alg: EDDSA, ..stored };
        let sig = a.sign(&ad, &cd);
        assert_eq!(authenticate(&rp(), b"sign-in-challenge", wrong, &cd, &ad, &sig), Err(Refused::Algorithm));
    }

    #[test]
    fn truncated_oversized_and_garbage_input_is_refused_without_panicking() {
        let a = Authenticator::p256();
        let att = a.attestation("gate.example");
        let cd = Authenticator::client_data("webauthn.create", b"c", &rp().origin);
        for n in 0..att.len() {
            assert!(register(&rp(), b"c", &cd, &att[..n]).is_err());
        }
        let mut trailing = att.clone();
        trailing.push(0);
        assert!(register(&rp(), b"c", &cd, &trailing).is_err());
        assert!(register(&rp(), b"c", &cd, &vec![0x9f; MAX_ATTESTATION + 1]).is_err());
        // deeply nested CBOR stops at the depth limit
        let mut deep = vec![0x81; 10_000];
        deep.push(0x00);
        assert!(register(&rp(), b"c", &cd, &deep).is_err());
        assert!(register(&rp(), b"c", b"{", &att).is_err());
        assert!(b64url_decode(&"A".repeat(10_000), 64).is_err());
    }
}
