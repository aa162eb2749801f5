//! Opaque random secrets for browser sessions and their anti-forgery tokens: 256 bits from the
//! OS CSPRNG, base64url without padding (cookie- and form-safe). A session secret is stored
//! only as its SHA-256 digest: with 256 random bits there is nothing to guess, so no key is
//! needed, and a leaked table cannot be turned back into cookies.

use aws_lc_rs::{constant_time, digest, rand};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretString};

/// The length of every secret this module makes, in characters.
pub const OPAQUE_LEN: usize = 43;

/// A fresh 256-bit secret; `None` only if the OS gives no randomness.
pub fn generate_opaque() -> Option<SecretString> {
    let mut buf = [0u8; 32];
    rand::fill(&mut buf).ok()?;
    Some(SecretString::from(URL_SAFE_NO_PAD.encode(buf)))
}

/// Whether `candidate` has the shape of a secret of ours (checked before any lookup, so a
/// kilobyte of cookie never reaches the store).
pub fn is_opaque(candidate: &str) -> bool {
    candidate.len() == OPAQUE_LEN && candidate.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What is stored for a secret.
pub fn opaque_digest(secret: &SecretString) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, secret.expose_secret().as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Compares a presented token with the expected one in constant time.
pub fn opaque_eq(presented: &str, expected: &str) -> bool {
    constant_time::verify_slices_are_equal(presented.as_bytes(), expected.as_bytes()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_fresh_well_formed_and_compared_exactly() {
        let a = generate_opaque().unwrap();
        let b = generate_opaque().unwrap();
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert!(is_opaque(a.expose_secret()), "{}", a.expose_secret().len());
        assert!(!is_opaque(&"a".repeat(44)));
        assert!(!is_opaque(&format!("{}=", &a.expose_secret()[1..])));
        assert_ne!(opaque_digest(&a), opaque_digest(&b));
        assert!(opaque_eq(a.expose_secret(), a.expose_secret()));
        assert!(!opaque_eq(a.expose_secret(), b.expose_secret()));
        assert!(!opaque_eq("", a.expose_secret()));
    }
}
