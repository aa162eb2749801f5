//! The libmacaroons constructions, composed from RustCrypto primitives.

use crypto_secretbox::aead::{AeadCore, AeadInPlace, KeyInit, OsRng};
use crypto_secretbox::{Nonce, Tag, XSalsa20Poly1305};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

type HmacSha256 = Hmac<Sha256>;

const NONCE: usize = 24;
const TAG: usize = 16;
/// Sealed caveat keys are 32 bytes: nonce || tag || ciphertext is 72 (NaCl's combined form).
const VID: usize = NONCE + TAG + 32;

#[expect(clippy::expect_used, reason = "HMAC takes keys of any length; new_from_slice cannot fail")]
pub(crate) fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// libmacaroons' `macaroon_generate_derived_key`: HMAC keyed with "macaroons-key-generator".
pub(crate) fn derive_key(secret: &[u8]) -> [u8; 32] {
    hmac(b"macaroons-key-generator", secret)
}

/// The third-party caveat step: HMAC(k, HMAC(k, vid) || HMAC(k, cid)).
pub(crate) fn hmac_pair(key: &[u8; 32], a: &[u8], b: &[u8]) -> [u8; 32] {
    let mut both = [0u8; 64];
    both[..32].copy_from_slice(&hmac(key, a));
    both[32..].copy_from_slice(&hmac(key, b));
    hmac(key, &both)
}

/// Binds a discharge's signature to its root: the pair step under an all-zero key.
pub(crate) fn bind(root: &[u8; 32], discharge: &[u8; 32]) -> [u8; 32] {
    hmac_pair(&[0u8; 32], root, discharge)
}

/// Seals a caveat key under the running signature; the nonce comes from the OS RNG.
pub(crate) fn seal(sig: &[u8; 32], caveat_key: &[u8; 32]) -> Vec<u8> {
    let cipher = XSalsa20Poly1305::new(sig.into());
    let nonce = XSalsa20Poly1305::generate_nonce(&mut OsRng);
    let mut body = *caveat_key;
    // Encrypting 32 bytes in place cannot exceed the cipher's length limit.
    let tag = cipher.encrypt_in_place_detached(&nonce, b"", &mut body).unwrap_or_default();
    let mut out = Vec::with_capacity(VID);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&tag);
    out.extend_from_slice(&body);
    out
}

/// Opens a verification id; `None` if it is not one or does not authenticate.
pub(crate) fn open(sig: &[u8; 32], vid: &[u8]) -> Option<Zeroizing<[u8; 32]>> {
    if vid.len() != VID {
        return None;
    }
    let cipher = XSalsa20Poly1305::new(sig.into());
    let nonce = Nonce::from(<[u8; NONCE]>::try_from(&vid[..NONCE]).ok()?);
    let tag = Tag::from(<[u8; TAG]>::try_from(&vid[NONCE..NONCE + TAG]).ok()?);
    let mut body = Zeroizing::new([0u8; 32]);
    body.copy_from_slice(&vid[NONCE + TAG..]);
    cipher.decrypt_in_place_detached(&nonce, b"", body.as_mut_slice(), &tag).ok()?;
    Some(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_caveat_key_opens_only_under_its_signature() {
        let key = [7u8; 32];
        let vid = seal(&[1u8; 32], &key);
        assert_eq!(vid.len(), VID);
        assert_eq!(open(&[1u8; 32], &vid).as_deref(), Some(&key));
        assert!(open(&[2u8; 32], &vid).is_none());
        let mut bad = vid.clone();
        bad[VID - 1] ^= 1;
        assert!(open(&[1u8; 32], &bad).is_none());
        assert!(open(&[1u8; 32], &vid[..VID - 1]).is_none());
    }

    #[test]
    fn nonces_differ_between_seals() {
        assert_ne!(seal(&[1u8; 32], &[7u8; 32]), seal(&[1u8; 32], &[7u8; 32]));
    }
}
