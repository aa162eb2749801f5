use std::future::Future;

use gatehouse_core::{Denial, GateName, RequestCx};
use gatehouse_providers::ApiRequest;

/// An answer a gate may serve instead of the provider's (the cache).
#[derive(Clone, Debug)]
pub struct CachedResponse(pub std::sync::Arc<crate::cache::Entry>);

/// What a gate decided. A gate never writes a response itself, and never records itself in
/// the trail: the chain records exactly what each gate returned.
#[derive(Debug)]
pub enum Verdict<T = ()> {
    /// Go on, with what the gate hands to the rest of the request (a guardrail session, a
    /// budget hold, the parsed request; mostly nothing).
    Pass(T),
    Deny(Denial),
    Serve(CachedResponse),
}

impl<T> From<Result<T, Denial>> for Verdict<T> {
    fn from(r: Result<T, Denial>) -> Self {
        match r {
            Ok(t) => Verdict::Pass(t),
            Err(d) => Verdict::Deny(d),
        }
    }
}

/// One policy decision point on the request path. Every gate has this one shape; `In` is what
/// it looks at (the parsed request for most, nothing for `authenticate`, which reads headers
/// only, the raw body for `parse`, the answer for `guardrails_out`).
pub trait Gate<In: ?Sized + Send = ApiRequest>: Send + Sync {
    /// Stable: recorded in the trail, logs and metrics.
    const NAME: GateName;
    /// What passing yields.
    type Pass: Send;

    fn check(&self, cx: &mut RequestCx, input: &mut In) -> impl Future<Output = Verdict<Self::Pass>> + Send;
}
