//! Rate limits and budgets (reserve before, settle after). A named step now; the limits
//! issue (#7) fills it. Request-size bounds are enforced earlier, at parse time.

use gatehouse_core::{GateName, RequestCx};
use gatehouse_providers::ApiRequest;

use crate::{Gate, Verdict};

pub struct LimitsGate;

impl Gate for LimitsGate {
    const NAME: GateName = GateName::Limits;

    async fn check(&self, _cx: &mut RequestCx, _req: &mut ApiRequest) -> Verdict {
        Verdict::Pass
    }
}
