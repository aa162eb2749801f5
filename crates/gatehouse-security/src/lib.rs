//! Gatehouse's secrets: the client key format (prefix, 256 random bits, checksum), keyed
//! hashing of keys at rest (HMAC-SHA-256 under a subkey of the master key), the master
//! key itself (from the environment or a 0600 file), and the audit hash chain ([`chain`]).
//!
//! Every primitive comes from aws-lc-rs (the same provider rustls uses); this crate only
//! composes them. Nothing here implements `Debug` in a way that prints a secret.

pub mod chain;
pub mod checkpoint;
mod error;
mod keys;
mod master;
mod opaque;
pub mod seal;

pub use error::Error;
pub use keys::{KeyDigest, KeyHasher, KeyKind, check_format, generate_key};
pub use master::{
    MasterKey, MasterKeySource, load_master_key, load_or_create_master_key, read_key_file, write_key_file,
};
pub use opaque::{OPAQUE_LEN, generate_opaque, is_opaque, opaque_digest, opaque_eq};
