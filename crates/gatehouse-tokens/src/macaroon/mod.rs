//! Macaroons as libmacaroons defines them (`doc/format.txt`), V2 binary and V2 JSON, so that a
//! token minted here verifies in pymacaroons/libmacaroons and the other way round.
//!
//! What this module does: the format (bounded parsers, [`Limits`]), the HMAC-SHA-256 signature
//! chain, third-party caveats (the caveat key sealed in an XSalsa20-Poly1305 secret box under
//! the running signature, the verification id), discharge binding, and verification with a
//! constant-time signature comparison. What it does not do: decide what a caveat means.
//! [`Macaroon::verify`] proves the chain and hands back every first-party predicate of the
//! root and its discharges; the caller's caveat language judges them (and denies what it does
//! not understand).
//!
//! Primitives come from RustCrypto (`hmac`, `sha2`, `subtle`, `crypto_secretbox`); nothing is
//! implemented here but their composition. No `Debug` output carries a signature or a key.

mod codec;
mod crypto;

use std::fmt;

use subtle::ConstantTimeEq;

pub use codec::Encoding;

/// Bounds applied to every token before and while it is parsed. The defaults are generous for
/// real tokens (a dozen caveats is a lot) and small enough that a hostile one costs nothing.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Whole serialized token (after base64 decoding; JSON text as received).
    pub max_bytes: usize,
    /// Caveats in one macaroon.
    pub max_caveats: usize,
    /// One field (identifier, location, caveat id, verification id).
    pub max_field: usize,
    /// Discharge macaroons presented with a root.
    pub max_discharges: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_bytes: 16 * 1024, max_caveats: 64, max_field: 4096, max_discharges: 8 }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("macaroon is malformed: {0}")]
    Malformed(&'static str),
    #[error("macaroon exceeds a size limit: {0}")]
    TooLarge(&'static str),
    #[error("macaroon signature does not verify")]
    BadSignature,
    #[error("third-party caveat {0} has no discharge macaroon")]
    MissingDischarge(usize),
    #[error("a discharge macaroon was presented but not needed")]
    UnusedDischarge,
    #[error("third-party caveat {0} does not open under this chain")]
    BadVerificationId(usize),
}

/// A 32-byte HMAC-SHA-256 chain value. Compared in constant time only.
#[derive(Clone, Copy)]
pub struct Signature(pub(crate) [u8; 32]);

impl Signature {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Signature(..)")
    }
}

impl PartialEq for Signature {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}
impl Eq for Signature {}

/// A caveat: first-party (`vid` is `None`; `id` is the predicate) or third-party (`vid` holds
/// the sealed caveat key; `id` names it to the third party at `location`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caveat {
    pub location: Option<String>,
    pub id: Vec<u8>,
    pub vid: Option<Vec<u8>>,
}

impl Caveat {
    pub fn is_first_party(&self) -> bool {
        self.vid.is_none()
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct Macaroon {
    location: Option<String>,
    identifier: Vec<u8>,
    caveats: Vec<Caveat>,
    signature: Signature,
}

impl fmt::Debug for Macaroon {
    // The identifier and caveats are not secret (the holder can read them); the signature is.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Macaroon")
            .field("location", &self.location)
            .field("identifier", &String::from_utf8_lossy(&self.identifier))
            .field("caveats", &self.caveats.len())
            .finish_non_exhaustive()
    }
}

impl Macaroon {
    /// Mints a macaroon. `root_key` is the secret as libmacaroons' `macaroon_create` takes it;
    /// it is run through the `macaroons-key-generator` derivation like there.
    pub fn new(root_key: &[u8], identifier: impl Into<Vec<u8>>, location: Option<&str>) -> Macaroon {
        let identifier = identifier.into();
        let key = crypto::derive_key(root_key);
        let signature = Signature(crypto::hmac(&key, &identifier));
        Macaroon { location: location.map(str::to_owned), identifier, caveats: Vec::new(), signature }
    }

    pub fn location(&self) -> Option<&str> {
        self.location.as_deref()
    }
    pub fn identifier(&self) -> &[u8] {
        &self.identifier
    }
    pub fn caveats(&self) -> &[Caveat] {
        &self.caveats
    }
    pub fn signature(&self) -> Signature {
        self.signature
    }

    /// Attenuates: anyone holding the macaroon can add a predicate; nobody can remove one.
    pub fn add_first_party(&mut self, predicate: impl Into<Vec<u8>>) {
        let id = predicate.into();
        self.signature = Signature(crypto::hmac(&self.signature.0, &id));
        self.caveats.push(Caveat { location: None, id, vid: None });
    }

    /// Adds a caveat that only the third party at `location` can discharge: it knows
    /// `caveat_key` by `caveat_id` and mints a discharge macaroon from it.
    pub fn add_third_party(&mut self, location: &str, caveat_key: &[u8], caveat_id: impl Into<Vec<u8>>) {
        let id = caveat_id.into();
        let derived = crypto::derive_key(caveat_key);
        let vid = crypto::seal(&self.signature.0, &derived);
        self.signature = Signature(crypto::hmac_pair(&self.signature.0, &vid, &id));
        self.caveats.push(Caveat { location: Some(location.to_owned()), id, vid: Some(vid) });
    }

    /// A copy of `discharge` bound to this (root) macaroon, as it must be presented with it,
    /// so a discharge cannot be replayed with another root.
    pub fn bind(&self, discharge: &Macaroon) -> Macaroon {
        let mut bound = discharge.clone();
        bound.signature = Signature(crypto::bind(&self.signature.0, &discharge.signature.0));
        bound
    }

    /// Proves the signature chain of this root and its (bound) discharges under `root_key`.
    /// On success, returns every first-party predicate of the root and of each discharge used,
    /// for the caller to evaluate: the signature says who wrote them, not that they hold.
    /// Every presented discharge must be used exactly once.
    pub fn verify<'a>(
        &'a self,
        root_key: &[u8],
        discharges: &'a [Macaroon],
        limits: &Limits,
    ) -> Result<Vec<&'a [u8]>, Error> {
        if discharges.len() > limits.max_discharges {
            return Err(Error::TooLarge("discharges"));
        }
        let mut used = vec![false; discharges.len()];
        let mut predicates = Vec::with_capacity(self.caveats.len());
        let key = crypto::derive_key(root_key);
        verify_one(self, self, &key, discharges, &mut used, &mut predicates, 0)?;
        if used.iter().any(|u| !u) {
            return Err(Error::UnusedDischarge);
        }
        Ok(predicates)
    }
}

fn verify_one<'a>(
    root: &Macaroon,
    m: &'a Macaroon,
    key: &[u8; 32],
    discharges: &'a [Macaroon],
    used: &mut [bool],
    predicates: &mut Vec<&'a [u8]>,
    depth: usize,
) -> Result<(), Error> {
    // Each discharge is used once, so recursion is bounded by their number; the depth check
    // keeps that true even if that invariant were broken.
    if depth > discharges.len() {
        return Err(Error::TooLarge("discharge depth"));
    }
    let mut sig = crypto::hmac(key, &m.identifier);
    for (i, c) in m.caveats.iter().enumerate() {
        match &c.vid {
            None => {
                predicates.push(&c.id);
                sig = crypto::hmac(&sig, &c.id);
            }
            Some(vid) => {
                let caveat_key = crypto::open(&sig, vid).ok_or(Error::BadVerificationId(i))?;
                let slot = discharges
                    .iter()
                    .enumerate()
                    .position(|(j, d)| !used[j] && d.identifier == c.id)
                    .ok_or(Error::MissingDischarge(i))?;
                used[slot] = true;
                verify_one(root, &discharges[slot], &caveat_key, discharges, used, predicates, depth + 1)?;
                sig = crypto::hmac_pair(&sig, vid, &c.id);
            }
        }
    }
    if !std::ptr::eq(root, m) {
        sig = crypto::bind(&root.signature.0, &sig);
    }
    if Signature(sig) == m.signature { Ok(()) } else { Err(Error::BadSignature) }
}
