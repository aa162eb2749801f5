//! The policy gates of the data plane and the one place that fixes their order
//! ([`chain`]). A gate decides ([`Verdict`]); it never writes a response, never performs
//! HTTP, and never sees another gate's internals. The proxy calls [`chain::admit`] before
//! the provider and finishes through the [`chain::Answer`] it returns.
//!
//! This crate must not import the proxy or any HTTP server type.

pub mod authenticate;
pub mod authorize;
pub mod breaker_sync;
pub mod cache;
pub mod chain;
pub mod control;
pub mod credentials;
mod error;
pub mod federated;
mod gate;
pub mod guardrails;
pub mod ledger;
pub mod limits;
pub mod mcp;
pub mod meter;
pub mod route;
pub mod tenant_routes;
pub mod tokens;

pub use authenticate::identity_of;
pub use chain::{
    Admitted, Answer, Gates, Incoming, Listing, Lookup, ORDER, Stop, Stopped, StreamAnswer, StreamEnd, TenantRouting,
    admit, admit_listing, admit_lookup,
};
pub use error::Error;
pub use gate::{CachedResponse, Gate, Verdict};
