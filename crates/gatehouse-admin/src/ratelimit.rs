//! Control-plane rate limits: mutations per admin token, and all requests per source address
//! (which bounds admin-token guessing). A small GCRA cell per key in a bounded cache; over the
//! limit answers 429 `rate_limit_exceeded` with `Retry-After`, and the refusal is audited.

use gatehouse_audit::EventKind as K;
use std::hash::{BuildHasher, Hash};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use gatehouse_core::{Denial, DenyCode};
use quick_cache::sync::Cache;

use crate::AdminState;
use crate::audit::{AuditCx, Outcome, record};

/// A GCRA cell: the theoretical arrival time, in nanoseconds since the limiter's epoch.
/// Lock-free: one compare-and-swap per request.
#[derive(Debug, Default)]
struct Cell(AtomicU64);

/// Requests per period with a burst; keys are hashed so no credential is kept.
pub struct Limiter {
    epoch: Instant,
    interval_ns: u64,
    burst_ns: u64,
    cells: Cache<u64, Arc<Cell>>,
    hasher: std::collections::hash_map::RandomState,
}

impl Limiter {
    /// `per_minute` requests a minute, up to `burst` at once. At most `keys` keys are tracked;
    /// when more appear, the least recently used are forgotten.
    pub fn new(per_minute: u32, burst: u32, keys: usize) -> Limiter {
        let interval_ns = 60_000_000_000 / u64::from(per_minute.max(1));
        Limiter {
            epoch: Instant::now(),
            interval_ns,
            burst_ns: interval_ns.saturating_mul(u64::from(burst.max(1))),
            cells: Cache::new(keys),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    fn key(&self, k: impl Hash) -> u64 {
        self.hasher.hash_one(k)
    }

    /// `Ok` if allowed now, else how long until the next request would be.
    pub fn check(&self, k: impl Hash) -> Result<(), Duration> {
        let key = self.key(k);
        let cell = self.cells.get_or_insert_with(&key, || Ok::<_, ()>(Arc::new(Cell::default()))).unwrap_or_default();
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let mut tat = cell.0.load(Ordering::Acquire);
        loop {
            let next = tat.max(now) + self.interval_ns;
            if next > now + self.burst_ns {
                return Err(Duration::from_nanos(next - now - self.burst_ns));
            }
            match cell.0.compare_exchange_weak(tat, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(()),
                Err(actual) => tat = actual,
            }
        }
    }
}

/// The two limits of the control plane.
pub struct AdminLimits {
    pub mutations: Limiter,
    pub per_source: Limiter,
}

impl AdminLimits {
    pub fn new(mutations_per_minute: u32, requests_per_minute_per_source: u32) -> AdminLimits {
        AdminLimits {
            mutations: Limiter::new(mutations_per_minute, (mutations_per_minute / 4).max(1), 100_000),
            per_source: Limiter::new(
                requests_per_minute_per_source,
                (requests_per_minute_per_source / 4).max(1),
                100_000,
            ),
        }
    }
}

fn too_many(wait: Duration) -> Denial {
    let secs = u32::try_from(wait.as_secs().saturating_add(1)).unwrap_or(u32::MAX);
    Denial::new(DenyCode::RateLimitExceeded).retry_after(secs)
}

/// Applied to every `/admin/v1` route, before authentication.
pub async fn limit(State(s): State<AdminState>, req: Request, next: Next) -> Response {
    let source = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let mutation = !matches!(*req.method(), http::Method::GET | http::Method::HEAD | http::Method::OPTIONS);
    let verdict = s.limits.per_source.check(source).and_then(|()| {
        if mutation {
            // keyed by the presented credential (hashed), so one token cannot flood writes; the
            // console's are its session cookie
            let h = req.headers();
            let credential = h
                .get(http::header::AUTHORIZATION)
                .or_else(|| h.get(http::header::COOKIE))
                .map(|v| v.as_bytes().to_vec());
            s.limits.mutations.check(credential)
        } else {
            Ok(())
        }
    });
    match verdict {
        Ok(()) => next.run(req).await,
        Err(wait) => {
            let (parts, _) = req.into_parts();
            let acx = AuditCx::from_parts(&parts);
            let _ = record(
                &s,
                &acx,
                gatehouse_audit::Actor::Anonymous,
                K::AdminRateLimited,
                None,
                None,
                Outcome::Denied(DenyCode::RateLimitExceeded),
            )
            .await;
            too_many(wait).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_steady_rate() {
        let l = Limiter::new(60, 3, 10);
        for _ in 0..3 {
            assert!(l.check("a").is_ok());
        }
        let wait = l.check("a").unwrap_err();
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        assert!(l.check("b").is_ok(), "keys are independent");
    }
}
