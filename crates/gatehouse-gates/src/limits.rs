//! Rate limits and budgets (reserve before, settle after). Enforced so far: an API key's
//! requests per minute (its project's `default_limits.rpm`) and the `rpm` caveats of a
//! capability token, per node of its delegation chain (a parent's rate is shared by all of its
//! descendants). The rest of issue #7 (per key/project/org/model rates, TPM, budgets) builds
//! on the same backend. Request-size bounds are enforced earlier, at parse time.

use std::sync::Arc;

use gatehouse_core::{Denial, DenyCode, GateName, RateLimitInfo, RequestCx};
use gatehouse_limits::{Limits, Rate};
use gatehouse_providers::ApiRequest;

use crate::{Gate, Verdict};

/// The limits store of the deployment (in-process, or Redis for several replicas) and what a
/// rate check does when that store cannot answer.
pub struct LimitsBackend {
    pub limits: Limits,
    /// Pass (counted in `gatehouse_limits_unavailable_total` and logged) rather than refuse.
    pub rates_fail_open: bool,
}

impl LimitsBackend {
    pub fn local() -> LimitsBackend {
        LimitsBackend { limits: Limits::Local(gatehouse_limits::Local::new()), rates_fail_open: true }
    }
}

/// The burst a per-minute rate admits at once: ten seconds' worth, so no 60-second window sees
/// more than `rpm + rpm / 6` requests.
fn rate(rpm: u32) -> Rate {
    let per_minute = u64::from(rpm);
    Rate { per_minute, burst: per_minute.div_ceil(6).max(1) }
}

pub struct LimitsGate {
    pub backend: Arc<LimitsBackend>,
}

impl Gate for LimitsGate {
    const NAME: GateName = GateName::Limits;

    async fn check(&self, cx: &mut RequestCx, _req: &mut ApiRequest) -> Verdict {
        let Some(p) = cx.principal.as_ref() else { return Verdict::Pass };
        // the credential's own rate (an API key: its project's default), then each delegation
        // node's (a parent's rate is shared by everything delegated from it)
        let mut rates: Vec<(String, u32)> = Vec::new();
        if let (Some(rpm), gatehouse_core::Credential::Key(id)) = (p.rpm, &p.credential) {
            rates.push((format!("key:{id}"), rpm));
        }
        if let Some(grant) = &p.grant {
            for &(node, rpm) in grant.rpm.iter() {
                if let Some(token) = grant.chain.get(node) {
                    rates.push((format!("token:{token}"), rpm));
                }
            }
        }
        for (key, rpm) in rates {
            let decision = self.backend.limits.rate(&key, rate(rpm), 1).await;
            if let Ok(d) = &decision {
                // report the tightest rate: the one with the fewest requests left
                let info = RateLimitInfo { limit: u64::from(rpm), remaining: d.remaining, reset: d.reset };
                if cx.rate_limit.is_none_or(|r| info.remaining < r.remaining) {
                    cx.rate_limit = Some(info);
                }
            }
            match decision {
                Ok(d) if d.allowed => {}
                Ok(d) => {
                    let secs = u32::try_from(d.retry_after.as_millis().div_ceil(1000)).unwrap_or(u32::MAX).max(1);
                    return Verdict::Deny(Denial::new(DenyCode::RateLimitExceeded).retry_after(secs));
                }
                Err(_) if self.backend.rates_fail_open => {
                    metrics::counter!("gatehouse_limits_unavailable_total", "kind" => "rate", "policy" => "open")
                        .increment(1);
                    tracing::warn!(request_id = %cx.request_id, "limits store unavailable; rate check passed (fail open)");
                    cx.limits_degraded = true;
                    return Verdict::Pass;
                }
                Err(_) => {
                    metrics::counter!("gatehouse_limits_unavailable_total", "kind" => "rate", "policy" => "closed")
                        .increment(1);
                    return Verdict::Deny(Denial::new(DenyCode::Unavailable));
                }
            }
        }
        Verdict::Pass
    }
}

#[cfg(test)]
mod tests {
    use super::rate;

    #[test]
    fn a_minute_rate_bursts_ten_seconds_worth() {
        assert_eq!(rate(60).burst, 10);
        assert_eq!(rate(2).burst, 1);
        assert_eq!(rate(1).burst, 1);
        assert_eq!(rate(7).burst, 2);
    }
}
