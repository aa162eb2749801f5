//! Client credential format: `<prefix><43 base62 chars: 256 random bits><6 base62 chars: CRC-32>`.
//!
//! The prefix makes a leaked key recognisable to secret scanners and to our own guardrails;
//! the checksum lets us reject typos and random garbage without touching any store. The
//! checksum is not a security control: the 256 random bits are.

use std::fmt;

use aws_lc_rs::hmac;
use secrecy::{ExposeSecret, SecretString};

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const BODY_LEN: usize = 43; // 43 * log2(62) = 256.1 bits
const CHECK_LEN: usize = 6; // 62^6 > 2^32

/// Which credential a string claims to be, by its prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// Data-plane API key.
    Api,
    /// Control-plane admin token.
    Admin,
}

impl KeyKind {
    pub const fn prefix(self) -> &'static str {
        match self {
            KeyKind::Api => "gth_",
            KeyKind::Admin => "gtha_",
        }
    }

    pub const fn total_len(self) -> usize {
        self.prefix().len() + BODY_LEN + CHECK_LEN
    }

    /// Label for the keyed hash: an API key can never verify as an admin token.
    pub const fn label(self) -> &'static [u8] {
        match self {
            KeyKind::Api => b"gatehouse/v1/api-key",
            KeyKind::Admin => b"gatehouse/v1/admin-token",
        }
    }
}

fn checksum(body: &[u8]) -> [u8; CHECK_LEN] {
    let mut n = crc32fast::hash(body);
    let mut out = [b'0'; CHECK_LEN];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(n % 62) as usize];
        n /= 62;
    }
    out
}

/// A fresh credential of the given kind, from the OS CSPRNG via aws-lc-rs.
pub fn generate_key(kind: KeyKind) -> SecretString {
    let mut out = String::with_capacity(kind.total_len());
    out.push_str(kind.prefix());
    let mut body = [0u8; BODY_LEN];
    let mut filled = 0;
    // Rejection sampling keeps every character uniform: 248 = 4 * 62.
    while filled < BODY_LEN {
        let mut buf = [0u8; 64];
        if aws_lc_rs::rand::fill(&mut buf).is_err() {
            continue;
        }
        for b in buf {
            if b < 248 && filled < BODY_LEN {
                body[filled] = ALPHABET[(b % 62) as usize];
                filled += 1;
            }
        }
    }
    let check = checksum(&body);
    out.extend(body.iter().map(|&b| b as char));
    out.extend(check.iter().map(|&b| b as char));
    SecretString::from(out)
}

/// Cheap structural check: prefix, length, alphabet, checksum. No store, no secret compared.
pub fn check_format(candidate: &str) -> Option<KeyKind> {
    // Admin's prefix extends Api's first letters, so test the longer one first.
    let kind = if candidate.starts_with(KeyKind::Admin.prefix()) {
        KeyKind::Admin
    } else if candidate.starts_with(KeyKind::Api.prefix()) {
        KeyKind::Api
    } else {
        return None;
    };
    if candidate.len() != kind.total_len() {
        return None;
    }
    let rest = &candidate.as_bytes()[kind.prefix().len()..];
    if !rest.iter().all(u8::is_ascii_alphanumeric) {
        return None;
    }
    let (body, check) = rest.split_at(BODY_LEN);
    (checksum(body) == check).then_some(kind)
}

/// What is stored for a credential: HMAC-SHA-256 of the whole key under a server subkey.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyDigest(pub [u8; 32]);

impl KeyDigest {
    pub fn from_slice(b: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(b).ok().map(KeyDigest)
    }
}

impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // a digest is not a secret, but printing it helps nobody
        f.write_str("KeyDigest(..)")
    }
}

/// Hashes credentials for storage and lookup. Holds one HMAC key per kind.
pub struct KeyHasher {
    api: hmac::Key,
    admin: hmac::Key,
}

impl KeyHasher {
    pub fn new(master: &crate::MasterKey) -> Self {
        Self::from_keys(&master.derive(KeyKind::Api.label()), &master.derive(KeyKind::Admin.label()))
    }

    /// From stored hashing keys: once pinned (sealed in the store, see `gatehouse master-key`),
    /// they outlive the master key they were first derived from, so stored digests stay valid
    /// across a master-key rotation.
    pub fn from_keys(api: &[u8; 32], admin: &[u8; 32]) -> Self {
        Self { api: hmac::Key::new(hmac::HMAC_SHA256, api), admin: hmac::Key::new(hmac::HMAC_SHA256, admin) }
    }

    pub fn digest(&self, kind: KeyKind, key: &SecretString) -> KeyDigest {
        let k = match kind {
            KeyKind::Api => &self.api,
            KeyKind::Admin => &self.admin,
        };
        let tag = hmac::sign(k, key.expose_secret().as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        KeyDigest(out)
    }

    /// A short, non-secret display hint (prefix + first 4 body chars), like `gth_Ab3x…`.
    pub fn hint(kind: KeyKind, key: &SecretString) -> String {
        let s = key.expose_secret();
        let end = (kind.prefix().len() + 4).min(s.len());
        format!("{}…", &s[..end])
    }
}

impl fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyHasher(..)")
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::MasterKey;

    #[test]
    fn generated_keys_pass_their_own_check() {
        for kind in [KeyKind::Api, KeyKind::Admin] {
            let k = generate_key(kind);
            assert_eq!(k.expose_secret().len(), kind.total_len());
            assert_eq!(check_format(k.expose_secret()), Some(kind));
        }
    }

    #[test]
    fn a_typo_fails_the_checksum() {
        let k = generate_key(KeyKind::Api);
        let mut s = k.expose_secret().to_owned().into_bytes();
        let i = 10;
        s[i] = if s[i] == b'a' { b'b' } else { b'a' };
        assert_eq!(check_format(std::str::from_utf8(&s).unwrap()), None);
    }

    #[test]
    fn digests_are_keyed_and_kind_separated() {
        let m1 = MasterKey::from_bytes([1; 32]);
        let m2 = MasterKey::from_bytes([2; 32]);
        let k = generate_key(KeyKind::Api);
        let h1 = KeyHasher::new(&m1);
        assert_eq!(h1.digest(KeyKind::Api, &k), h1.digest(KeyKind::Api, &k));
        assert_ne!(h1.digest(KeyKind::Api, &k), KeyHasher::new(&m2).digest(KeyKind::Api, &k));
        assert_ne!(h1.digest(KeyKind::Api, &k), h1.digest(KeyKind::Admin, &k));
    }

    #[test]
    fn hint_reveals_only_the_prefix_and_four_chars() {
        let k = generate_key(KeyKind::Api);
        let hint = KeyHasher::hint(KeyKind::Api, &k);
        assert_eq!(hint.chars().count(), 4 + 4 + 1);
    }

    proptest! {
        #[test]
        fn check_format_never_panics(s in ".{0,80}") {
            let _ = check_format(&s);
        }

        #[test]
        fn a_well_formed_string_passes_exactly_when_its_checksum_matches(
            body in "[A-Za-z0-9]{43}",
            check in "[A-Za-z0-9]{6}",
        ) {
            let s = format!("gth_{body}{check}");
            prop_assert_eq!(check_format(&s).is_some(), checksum(body.as_bytes()) == check.as_bytes());
            let s = format!("gth_{body}{}", std::str::from_utf8(&checksum(body.as_bytes())).unwrap());
            prop_assert_eq!(check_format(&s), Some(KeyKind::Api));
        }

        #[test]
        fn every_single_character_change_is_caught(at in 0usize..49, to in "[A-Za-z0-9]") {
            // CRC-32 detects every single-byte error and the 6-character encoding of a u32 is
            // injective, so no one-character typo can pass.
            let k = generate_key(KeyKind::Admin);
            let mut s = k.expose_secret().to_owned().into_bytes();
            let i = KeyKind::Admin.prefix().len() + at;
            prop_assume!(s[i] != to.as_bytes()[0]);
            s[i] = to.as_bytes()[0];
            prop_assert_eq!(check_format(std::str::from_utf8(&s).unwrap()), None);
        }
    }
}
