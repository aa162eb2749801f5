//! Signed checkpoints of the audit chain, in the C2SP signed-note text format:
//!
//! ```text
//! <origin>
//! <size: the last seq>
//! <base64 chain head hash>
//!
//! — <key name> <base64(4-byte key id || Ed25519 signature)>
//! ```
//!
//! The key id is the first four bytes of SHA-256(name || "\n" || 0x01 || public key), as the
//! signed-note spec defines for Ed25519. Note: the hash is the head of a hash chain, not a
//! Merkle tree root; the text format is C2SP's, the proof is "this prefix, exactly".
//! The signing key comes from the master key hierarchy (a purpose-bound subkey seed).

use aws_lc_rs::signature::{self, Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::chain::Anchor;

/// A checkpoint note is a few lines; anything larger is refused before parsing.
const MAX_NOTE_BYTES: usize = 16 * 1024;
const MAX_SIGNATURES: usize = 16;
const EM_DASH: &str = "\u{2014} ";

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint is malformed")]
    Malformed,
    #[error("checkpoint carries no signature by the expected key")]
    NoSignature,
    #[error("checkpoint signature does not verify")]
    BadSignature,
    #[error("signing key could not be built")]
    Key,
}

/// The signed-note signature type byte for Ed25519.
const ED25519_ALG: u8 = 0x01;

fn key_id(name: &str, public_key: &[u8]) -> [u8; 4] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(name.as_bytes());
    ctx.update(b"\n\x01");
    ctx.update(public_key);
    let d = ctx.finish();
    let mut id = [0u8; 4];
    id.copy_from_slice(&d.as_ref()[..4]);
    id
}

/// Key names are single words (no spaces, no '+'), per the signed-note spec.
fn valid_key_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 128 && name.chars().all(|c| c.is_ascii_graphic() && c != '+')
}

pub struct CheckpointSigner {
    name: String,
    key: Ed25519KeyPair,
    key_id: [u8; 4],
}

impl std::fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CheckpointSigner({})", self.name)
    }
}

impl CheckpointSigner {
    /// From a 32-byte seed (e.g. `MasterKey::derive(b"gatehouse/v1/audit-checkpoint")`).
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<CheckpointSigner, CheckpointError> {
        if !valid_key_name(name) {
            return Err(CheckpointError::Key);
        }
        let key = Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| CheckpointError::Key)?;
        let key_id = key_id(name, key.public_key().as_ref());
        Ok(CheckpointSigner { name: name.to_owned(), key, key_id })
    }

    pub fn verifier(&self) -> CheckpointVerifier {
        let mut pk = [0u8; 32];
        pk.copy_from_slice(self.key.public_key().as_ref());
        CheckpointVerifier { name: self.name.clone(), public_key: pk, key_id: self.key_id }
    }

    /// The signed note for the chain state `at` (whose last record is `at.next_seq - 1`).
    pub fn sign(&self, origin: &str, at: Anchor) -> Result<String, CheckpointError> {
        if origin.is_empty() || origin.contains('\n') {
            return Err(CheckpointError::Malformed);
        }
        self.sign_note(&format!("{origin}\n{}\n{}\n", at.next_seq.saturating_sub(1), STANDARD.encode(at.hash)))
    }

    /// A signed note over any `body` (non-empty lines, each ending in a newline; the first
    /// line is the origin, which keeps notes of different purposes apart).
    pub fn sign_note(&self, body: &str) -> Result<String, CheckpointError> {
        if body.is_empty() || !body.ends_with('\n') || body.contains("\n\n") || body.starts_with('\n') {
            return Err(CheckpointError::Malformed);
        }
        let sig = self.key.sign(body.as_bytes());
        let mut blob = self.key_id.to_vec();
        blob.extend_from_slice(sig.as_ref());
        Ok(format!("{body}\n{EM_DASH}{} {}\n", self.name, STANDARD.encode(blob)))
    }
}

/// What a verifier needs: the key's name and public key (publishable).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointVerifier {
    pub name: String,
    pub public_key: [u8; 32],
    key_id: [u8; 4],
}

/// A verified checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    /// The chain state after the checkpointed record.
    pub anchor: Anchor,
}

impl CheckpointVerifier {
    pub fn new(name: &str, public_key: [u8; 32]) -> CheckpointVerifier {
        CheckpointVerifier { name: name.to_owned(), public_key, key_id: key_id(name, &public_key) }
    }

    /// The signed-note verifier key text, `<name>+<key id hex>+<base64(0x01 || public key)>`:
    /// what an auditor pins to check checkpoints and exports offline.
    pub fn to_vkey(&self) -> String {
        let mut blob = vec![ED25519_ALG];
        blob.extend_from_slice(&self.public_key);
        format!("{}+{}+{}", self.name, hex::encode(self.key_id), STANDARD.encode(blob))
    }

    /// Parses a verifier key; the embedded key id must match the name and key.
    pub fn from_vkey(vkey: &str) -> Result<CheckpointVerifier, CheckpointError> {
        if vkey.len() > 512 {
            return Err(CheckpointError::Malformed);
        }
        let mut parts = vkey.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(CheckpointError::Malformed);
        };
        let blob = STANDARD.decode(key).map_err(|_| CheckpointError::Malformed)?;
        if !valid_key_name(name) || blob.len() != 33 || blob[0] != ED25519_ALG {
            return Err(CheckpointError::Malformed);
        }
        let mut pk = [0u8; 32];
        pk.copy_from_slice(&blob[1..]);
        let v = CheckpointVerifier::new(name, pk);
        if hex::encode(v.key_id) != id {
            return Err(CheckpointError::Malformed);
        }
        Ok(v)
    }

    /// Parses (bounded) and verifies a checkpoint note; extra signatures by other keys are
    /// ignored.
    pub fn verify(&self, note: &str) -> Result<Checkpoint, CheckpointError> {
        let body = self.open_note(note, MAX_NOTE_BYTES)?;
        let mut lines = body.lines();
        let origin = lines.next().filter(|o| !o.is_empty()).ok_or(CheckpointError::Malformed)?;
        let size: u64 = lines.next().and_then(|s| s.parse().ok()).ok_or(CheckpointError::Malformed)?;
        let hash = lines.next().and_then(|h| STANDARD.decode(h).ok()).ok_or(CheckpointError::Malformed)?;
        let hash: [u8; 32] = hash.try_into().map_err(|_| CheckpointError::Malformed)?;
        Ok(Checkpoint { origin: origin.to_owned(), anchor: Anchor { next_seq: size + 1, hash } })
    }

    /// Verifies any signed note of at most `max_bytes` and returns its body (every line,
    /// each ending in a newline). The caller checks the origin line.
    pub fn open_note(&self, note: &str, max_bytes: usize) -> Result<String, CheckpointError> {
        if note.len() > max_bytes {
            return Err(CheckpointError::Malformed);
        }
        let (body, sigs) = note.split_once("\n\n").ok_or(CheckpointError::Malformed)?;
        let body = format!("{body}\n");
        let pk = signature::UnparsedPublicKey::new(&signature::ED25519, &self.public_key);
        let mut seen_ours = false;
        for line in sigs.lines().take(MAX_SIGNATURES) {
            let rest = line.strip_prefix(EM_DASH).ok_or(CheckpointError::Malformed)?;
            let (name, blob) = rest.split_once(' ').ok_or(CheckpointError::Malformed)?;
            let blob = STANDARD.decode(blob).map_err(|_| CheckpointError::Malformed)?;
            if name != self.name || blob.len() != 4 + 64 || blob[..4] != self.key_id {
                continue;
            }
            seen_ours = true;
            if pk.verify(body.as_bytes(), &blob[4..]).is_ok() {
                return Ok(body);
            }
        }
        Err(if seen_ours { CheckpointError::BadSignature } else { CheckpointError::NoSignature })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::chain::{Anchor, append};

    fn signer() -> CheckpointSigner {
        CheckpointSigner::from_seed("gatehouse.example/audit", &[7; 32]).unwrap()
    }

    fn state(n: usize) -> Anchor {
        let mut at = Anchor::GENESIS;
        for i in 0..n {
            append(&mut at, format!("event {i}").into_bytes());
        }
        at
    }

    #[test]
    fn a_signed_checkpoint_verifies_and_names_the_chain_state() {
        let s = signer();
        let note = s.sign("gatehouse/audit", state(3)).unwrap();
        assert!(note.contains("\n\n\u{2014} gatehouse.example/audit "));
        let cp = s.verifier().verify(&note).unwrap();
        assert_eq!(cp.origin, "gatehouse/audit");
        assert_eq!(cp.anchor, state(3));
    }

    #[test]
    fn forged_or_altered_checkpoints_fail() {
        let s = signer();
        let note = s.sign("gatehouse/audit", state(3)).unwrap();
        // a different size with the old signature
        let altered = note.replacen("\n3\n", "\n2\n", 1);
        assert_eq!(s.verifier().verify(&altered), Err(CheckpointError::BadSignature));
        // signed by another key under the same name
        let other = CheckpointSigner::from_seed("gatehouse.example/audit", &[8; 32]).unwrap();
        let forged = other.sign("gatehouse/audit", state(3)).unwrap();
        assert_eq!(s.verifier().verify(&forged), Err(CheckpointError::NoSignature));
        // no signature at all
        let body = note.split("\n\n").next().unwrap().to_owned() + "\n\n";
        assert!(s.verifier().verify(&body).is_err());
    }

    #[test]
    fn any_note_signs_and_opens_but_never_passes_for_a_checkpoint() {
        let s = signer();
        let note = s.sign_note("gatehouse/audit-export/1\n{\"chains\":[]}\n").unwrap();
        let v = s.verifier();
        assert_eq!(v.open_note(&note, 1024).unwrap(), "gatehouse/audit-export/1\n{\"chains\":[]}\n");
        assert_eq!(v.verify(&note), Err(CheckpointError::Malformed), "not a checkpoint");
        assert!(v.open_note(&note, 16).is_err(), "bounded");
        assert_eq!(v.open_note(&note.replace("[]", "[1]"), 1024), Err(CheckpointError::BadSignature));
        for bad in ["", "no newline", "a\n\nb\n", "\nb\n"] {
            assert!(s.sign_note(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_verifier_can_be_rebuilt_from_the_published_key() {
        let s = signer();
        let v = CheckpointVerifier::new("gatehouse.example/audit", s.verifier().public_key);
        assert!(v.verify(&s.sign("o", state(1)).unwrap()).is_ok());
    }

    #[test]
    fn a_vkey_round_trips_and_rejects_a_wrong_id() {
        let v = signer().verifier();
        let vkey = v.to_vkey();
        assert!(vkey.starts_with("gatehouse.example/audit+"));
        assert_eq!(CheckpointVerifier::from_vkey(&vkey), Ok(v));
        let mut wrong = vkey.clone();
        let plus = wrong.find('+').unwrap() + 1;
        let c = if wrong.as_bytes()[plus] == b'0' { "1" } else { "0" };
        wrong.replace_range(plus..=plus, c);
        assert_eq!(CheckpointVerifier::from_vkey(&wrong), Err(CheckpointError::Malformed));
        assert!(CheckpointVerifier::from_vkey("a+b").is_err());
    }

    proptest! {
        #[test]
        fn vkey_parsing_never_panics(s in ".{0,200}") {
            let _ = CheckpointVerifier::from_vkey(&s);
        }

        #[test]
        fn parsing_never_panics(note in ".{0,400}") {
            let _ = signer().verifier().verify(&note);
        }
    }
}
