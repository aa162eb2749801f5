//! Capability tokens: macaroons ([`macaroon`]) minted by the gateway under a
//! per-org root key, narrowed by the caveat language ([`caveat`]), delegated as registered
//! children, revoked with their whole subtree, and verified on the hot path from two caches
//! (root keys, token standing) that a store poller keeps honest across replicas.
//!
//! Identifiers (not secret) name what verification needs: `gh1:<org>:<key version>:<token>`.
//! A delegated child is its parent's macaroon plus caveats, the first of which is
//! `delegation = <child id>`: the chain of registered tokens is read from the token itself,
//! and revoking any ancestor kills every descendant because each is checked on every request.

pub mod caveat;
mod ident;
pub mod macaroon;
mod request;
mod service;

pub use caveat::{Caveat, CaveatError, Folded, Violation, Wider, check_not_wider};
pub use ident::TokenIdent;
pub use request::{DelegateBody, MAX_TTL_SECS, narrowing};
pub use service::{
    Capabilities, DelegateRequest, Error, KeyVersionView, MintRequest, Minted, Rotation, Verified, root_key_record,
};

/// The action a data-plane request needs (checked against the `scope` caveats).
pub mod actions {
    pub const CHAT: &str = "chat:completions";
    pub const EMBEDDINGS: &str = "embeddings:create";
    pub const MODELS: &str = "models:read";
    pub const DELEGATE: &str = "tokens:delegate";
}
