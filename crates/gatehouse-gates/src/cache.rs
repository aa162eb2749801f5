//! Exact-match response cache, keyed per tenant. A named step now (always a miss); last in
//! the chain so a hit is only served to a request that passed every check before it.

use gatehouse_core::{GateName, RequestCx};
use gatehouse_providers::ApiRequest;

use crate::{Gate, Verdict};

pub struct CacheGate;

impl Gate for CacheGate {
    type Pass = ();
    const NAME: GateName = GateName::Cache;

    async fn check(&self, _cx: &mut RequestCx, _req: &mut ApiRequest) -> Verdict {
        Verdict::Pass(())
    }
}
