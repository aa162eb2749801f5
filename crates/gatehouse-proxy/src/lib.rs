//! The data plane: the OpenAI-compatible router (and Anthropic's Messages door), translation
//! for providers of other API families, the upstream client (pooled, rustls, bounded
//! in time and size, no redirects), streaming pass-through (each event's decision is the
//! chain's), the runtime snapshot. The transport it shares with the control plane is
//! `gatehouse-http`.
//!
//! Policy lives in `gatehouse-gates`; this crate moves bytes, calls `chain::admit` and finishes
//! through the `Answer` it returns. It never forwards a client credential or a client header
//! upstream.

mod anthropic;
pub mod cors;
mod error;
pub mod exchange;
mod forward;
mod handlers;
pub mod health;
mod runtime;
mod stream;
mod tokens;
mod translate;
mod upstream;

pub use error::Error;
pub use handlers::router;
pub use runtime::{AppState, Runtime, Services, build_runtime};
pub use upstream::Upstream;
