//! A software authenticator for tests of the console's passkeys: real keys (P-256 or Ed25519),
//! real signatures, and every field of what it sends settable, so a test can make the answers a
//! broken or hostile authenticator would.

use aws_lc_rs::digest;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use base64::Engine;
use coset::cbor::value::Value;
use coset::{CborSerializable, CoseKeyBuilder, iana};

const FLAG_UP: u8 = 0x01;
const FLAG_UV: u8 = 0x04;
const FLAG_AT: u8 = 0x40;

pub enum Key {
    P256(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

pub struct Authenticator {
    pub key: Key,
    /// The credential id.
    pub id: Vec<u8>,
    /// The flags it sets (user present and verified unless a test says otherwise).
    pub flags: u8,
    /// The signature counter it reports next.
    pub count: u32,
}

pub fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Authenticator {
    pub fn p256() -> Self {
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).expect("P-256 key");
        let mut id = vec![0; 16];
        aws_lc_rs::rand::fill(&mut id).expect("randomness");
        Authenticator { key: Key::P256(key), id, flags: FLAG_UP | FLAG_UV, count: 0 }
    }

    pub fn ed25519() -> Self {
        let key = Ed25519KeyPair::generate().expect("Ed25519 key");
        let mut id = vec![0; 32];
        aws_lc_rs::rand::fill(&mut id).expect("randomness");
        Authenticator { key: Key::Ed(key), id, flags: FLAG_UP | FLAG_UV, count: 0 }
    }

    /// The public key as a COSE_Key.
    pub fn cose(&self) -> Vec<u8> {
        let key = match &self.key {
            Key::P256(k) => {
                let p = k.public_key().as_ref();
                CoseKeyBuilder::new_ec2_pub_key(iana::EllipticCurve::P_256, p[1..33].to_vec(), p[33..].to_vec())
                    .algorithm(iana::Algorithm::ES256)
                    .build()
            }
            Key::Ed(k) => CoseKeyBuilder::new_okp_key()
                .param(iana::OkpKeyParameter::Crv as i64, Value::from(iana::EllipticCurve::Ed25519 as i64))
                .param(iana::OkpKeyParameter::X as i64, Value::Bytes(k.public_key().as_ref().to_vec()))
                .algorithm(iana::Algorithm::EdDSA)
                .build(),
        };
        key.to_vec().expect("COSE key encodes")
    }

    pub fn client_data(kind: &str, challenge: &[u8], origin: &str) -> Vec<u8> {
        serde_json::json!({"type": kind, "challenge": b64url(challenge), "origin": origin, "crossOrigin": false})
            .to_string()
            .into_bytes()
    }

    pub fn auth_data(&self, rp_id: &str, attested: bool) -> Vec<u8> {
        let mut d = digest::digest(&digest::SHA256, rp_id.as_bytes()).as_ref().to_vec();
        d.push(self.flags | if attested { FLAG_AT } else { 0 });
        d.extend_from_slice(&self.count.to_be_bytes());
        if attested {
            d.extend_from_slice(&[0; 16]);
            d.extend_from_slice(&u16::try_from(self.id.len()).expect("short id").to_be_bytes());
            d.extend_from_slice(&self.id);
            d.extend_from_slice(&self.cose());
        }
        d
    }

    /// An attestation object of format `none`.
    pub fn attestation(&self, rp_id: &str) -> Vec<u8> {
        let obj = Value::Map(vec![
            (Value::Text("fmt".into()), Value::Text("none".into())),
            (Value::Text("attStmt".into()), Value::Map(vec![])),
            (Value::Text("authData".into()), Value::Bytes(self.auth_data(rp_id, true))),
        ]);
        let mut out = Vec::new();
        coset::cbor::ser::into_writer(&obj, &mut out).expect("CBOR encodes");
        out
    }

    pub fn sign(&self, auth_data: &[u8], client_data: &[u8]) -> Vec<u8> {
        let mut msg = auth_data.to_vec();
        msg.extend_from_slice(digest::digest(&digest::SHA256, client_data).as_ref());
        match &self.key {
            Key::P256(k) => k.sign(&SystemRandom::new(), &msg).expect("signs").as_ref().to_vec(),
            Key::Ed(k) => k.sign(&msg).as_ref().to_vec(),
        }
    }

    /// A registration response as a browser's `PublicKeyCredential.toJSON()` gives it.
    pub fn registration_json(&self, challenge: &[u8], origin: &str, rp_id: &str) -> serde_json::Value {
        let cd = Self::client_data("webauthn.create", challenge, origin);
        serde_json::json!({
            "id": b64url(&self.id), "rawId": b64url(&self.id), "type": "public-key",
            "response": {"clientDataJSON": b64url(&cd), "attestationObject": b64url(&self.attestation(rp_id))},
            "clientExtensionResults": {},
        })
    }

    /// An authentication response (`toJSON()`), counting up first as an authenticator does.
    pub fn assertion_json(&mut self, challenge: &[u8], origin: &str, rp_id: &str, handle: &[u8]) -> serde_json::Value {
        self.count += 1;
        let cd = Self::client_data("webauthn.get", challenge, origin);
        let ad = self.auth_data(rp_id, false);
        let sig = self.sign(&ad, &cd);
        serde_json::json!({
            "id": b64url(&self.id), "rawId": b64url(&self.id), "type": "public-key",
            "response": {"clientDataJSON": b64url(&cd), "authenticatorData": b64url(&ad),
                "signature": b64url(&sig), "userHandle": b64url(handle)},
            "clientExtensionResults": {},
        })
    }
}
