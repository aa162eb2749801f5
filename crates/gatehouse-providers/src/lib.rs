//! What Gatehouse understands of provider traffic, and nothing more: the few request fields
//! the gates need (model, stream, message count) with everything else carried through
//! untouched; usage figures from responses; an incremental, bounded SSE scanner; and the
//! built-in `mock` provider that makes the quick start work offline.
//!
//! Pure: no I/O, no clocks beyond what callers pass in. Every parser here is bounded and
//! must never panic on input.

pub mod chat;
mod depth;
mod error;
pub mod mock;
mod request;
mod sse;
mod usage;

pub use depth::check_depth;
pub use error::Error;
pub use request::{ApiRequest, Endpoint, RequestBounds};
pub use sse::{SseEvent, SseScanner};
pub use usage::{Usage, usage_from_body, usage_from_chunk};
