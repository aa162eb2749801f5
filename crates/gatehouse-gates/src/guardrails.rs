//! Content guardrails, in and out. Named steps of the chain now, so their place in the order
//! is fixed and tested; the detection engine arrives with the guardrails issue (#6).

use gatehouse_core::{GateName, RequestCx};
use gatehouse_providers::ApiRequest;

use crate::{Gate, Verdict};

/// Checks the prompt before a cache or provider can see it. No detectors are configured yet.
pub struct GuardrailsInGate;

impl Gate for GuardrailsInGate {
    const NAME: GateName = GateName::GuardrailsIn;

    async fn check(&self, _cx: &mut RequestCx, _req: &mut ApiRequest) -> Verdict {
        Verdict::Pass
    }
}

/// Checks the provider's answer before the caller sees it. No detectors are configured yet.
pub struct GuardrailsOutGate;

impl GuardrailsOutGate {
    pub const NAME: GateName = GateName::GuardrailsOut;

    /// Called once for a whole body, or once per SSE event of a stream.
    pub fn check_response(&self, _cx: &RequestCx, _payload: &[u8]) -> Verdict {
        Verdict::Pass
    }
}
