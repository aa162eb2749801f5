//! The vocabulary every other Gatehouse crate speaks: tenant ids, the authenticated
//! [`Principal`], the per-request [`RequestCx`], gate names and verdicts, and the one
//! [`DenyCode`] table that maps every refusal to an HTTP status and an OpenAI-style body.
//!
//! This crate performs no I/O and holds no policy. It must not depend on any other
//! Gatehouse crate.

mod breaker;
mod context;
mod deny;
mod host;
mod ids;
pub mod scope;
pub mod trace;

pub use breaker::{Breaker, BreakerState, Hedge, Retries};
pub use context::{
    CacheControl, Credential, GateName, GateOutcome, Grant, GuardrailHit, McpCall, Presented, Principal, Quota,
    RateLimitInfo, Rates, RequestCx, Route, Target, TrailEntry, lists_origin,
};
pub use deny::{Denial, DenyCode, ErrorBody, HasDenyCode};
pub use host::{MAX_HOST, host_name};
pub use ids::{
    CredentialId, KeyId, McpServerId, OrgId, PasskeyId, ProjectId, RequestId, SessionId, TokenId, UserId, is_id,
};
pub use trace::TraceContext;
