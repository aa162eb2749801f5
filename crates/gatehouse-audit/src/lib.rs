//! The tamper-evident audit log.
//!
//! - [`event`]: the typed catalogue of event kinds and the canonical event line;
//! - [`writer`]: the single writer task (batching, chain heads, checkpoints, spool,
//!   fail-closed), and the [`Auditor`] handle producers hold;
//! - [`verify`]: verification of the store, an export or the JSONL mirror;
//! - [`export`]: the NDJSON and CSV formats;
//! - [`webhooks`]: delivery of chained events to subscribers (filters, SSRF-checked targets,
//!   signed payloads, retries), fed by the writer's outbox in the event's own transaction.
//!
//! Chains are per tenant: each org's events form one chain (`org/<id>`), events without an
//! org form `platform`. An org admin's export is a whole chain and verifies offline on its
//! own, without another tenant's data; replicas sharing PostgreSQL extend the same chains
//! (each batch locks the heads it touches).

pub mod event;
pub mod export;
mod spool;
pub mod verify;
pub mod webhooks;
pub mod writer;

pub use event::{Actor, Category, Event, EventKind, Outcome, PLATFORM_CHAIN, chain_of};
pub use writer::{
    Auditor, CHECKPOINT_LABEL, Delivery, FailurePolicy, KEY_NAME, Outbox, Unavailable, WriterConfig, origin, signer,
    start,
};
