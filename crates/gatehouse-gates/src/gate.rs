use std::future::Future;

use bytes::Bytes;
use gatehouse_core::{Denial, GateName, RequestCx};
use gatehouse_providers::ApiRequest;

/// A response a gate may serve instead of the provider (the cache).
#[derive(Clone, Debug)]
pub struct CachedResponse {
    pub body: Bytes,
}

/// What a gate decided. A gate never writes a response itself.
#[derive(Debug)]
pub enum Verdict {
    Pass,
    Deny(Denial),
    Serve(CachedResponse),
}

/// One policy decision point on the request path, after the body is parsed.
pub trait Gate: Send + Sync {
    /// Stable: recorded in the trail, logs and metrics.
    const NAME: GateName;

    fn check(&self, cx: &mut RequestCx, req: &mut ApiRequest) -> impl Future<Output = Verdict> + Send;
}
