//! The data plane: the OpenAI-compatible router, the transport layers every plane shares,
//! the upstream client (pooled, rustls, bounded in time and size, no redirects), streaming
//! pass-through with per-event inspection on the side, and the hardened HTTP/1 server loop.
//!
//! Policy lives in `gatehouse-gates`; this crate moves bytes and calls `chain::admit` /
//! `chain::finish`. It never forwards a client credential or a client header upstream.

mod error;
pub mod exchange;
mod handlers;
mod runtime;
mod serve;
mod stream;
mod tokens;
mod transport;
mod upstream;

pub use error::Error;
pub use handlers::{healthz, ready, router};
pub use runtime::{AppState, Runtime, build_runtime};
pub use serve::serve;
pub use transport::{read_body, with_transport_layers};
pub use upstream::Upstream;
