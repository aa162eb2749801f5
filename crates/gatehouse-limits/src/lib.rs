//! Rate limits and budgets that hold across replicas.
//!
//! **Rates** use GCRA (the generic cell rate algorithm): one stored number per key, the
//! theoretical arrival time (TAT). A rate of `per_minute` with a `burst` admits `burst` requests
//! at once and then one every `60 s / per_minute`; a request of cost `n` counts `n` times. Why
//! GCRA rather than a sliding window: it is exact (no window edges letting 2x through), needs
//! one value per key (one `GET`/`SET` in Redis), and says precisely when the next request fits
//! (`Retry-After`, `x-ratelimit-reset`).
//!
//! **Budgets** are reserved before a call and settled after it: [`Limits::reserve`] checks, for
//! every applicable budget at once, that `spent + in-flight reservations + amount <= limit`
//! and records the reservation (with an expiry, so a crashed replica's reservations free
//! themselves); [`Limits::settle`] removes the reservation and adds what was really used —
//! exactly once per reservation, also when it is retried or arrives after the expiry.
//!
//! Two backends, one semantics, one test suite (`tests/conformance.rs`): [`Local`] (in-process,
//! sharded locks) for a single replica and [`RedisLimits`] (atomic Lua scripts using Redis's own
//! clock, a key prefix per deployment, a timeout on every call, a reconnecting connection
//! manager) for many.

mod local;
mod redis_backend;

use std::time::Duration;

pub mod spec;

pub use local::Local;
pub use redis_backend::{RedisConfig, RedisLimits};

/// A backend could not answer in time (Redis down or slow). What to do is the caller's policy
/// (fail closed for budgets, fail open allowed for rates).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unavailable;

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the limits backend is unavailable")
    }
}

impl std::error::Error for Unavailable {}

/// Why the Redis backend could not be set up at start. Never carries the URL (it may hold a
/// password).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("redis url is not valid ({0:?})")]
    Url(redis::ErrorKind),
    #[error("redis did not answer within the timeout")]
    Timeout,
    #[error("redis refused the connection ({0:?})")]
    Connect(redis::ErrorKind),
}

/// A rate: `per_minute` on average, `burst` at once (at least 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub per_minute: u64,
    pub burst: u64,
}

impl Rate {
    /// Microseconds between two requests at the sustained rate.
    fn interval_us(self) -> u64 {
        (60_000_000 / self.per_minute.max(1)).max(1)
    }

    /// How far ahead of now the TAT may run: `burst` requests' worth.
    fn tolerance_us(self) -> u64 {
        self.interval_us().saturating_mul(self.burst.max(1))
    }
}

/// The answer to one rate check, with what the `x-ratelimit-*` headers need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateDecision {
    pub allowed: bool,
    /// Requests that would still be admitted right now.
    pub remaining: u64,
    /// Until the key is back to a full burst.
    pub reset: Duration,
    /// Denied: until this request would fit.
    pub retry_after: Duration,
}

/// The GCRA step, shared by both backends (the Lua script is the same arithmetic).
fn gcra(stored_tat: Option<u64>, now: u64, rate: Rate, cost: u64) -> (RateDecision, Option<u64>) {
    let t = rate.interval_us();
    let tolerance = rate.tolerance_us();
    let tat = stored_tat.unwrap_or(now).max(now);
    let new_tat = tat.saturating_add(t.saturating_mul(cost.max(1)));
    if new_tat - now > tolerance {
        let retry = new_tat - now - tolerance;
        let remaining = (tolerance.saturating_sub(tat - now)) / t;
        let d = RateDecision {
            allowed: false,
            remaining,
            reset: Duration::from_micros(tat - now),
            retry_after: Duration::from_micros(retry),
        };
        return (d, None);
    }
    let d = RateDecision {
        allowed: true,
        remaining: (tolerance - (new_tat - now)) / t,
        reset: Duration::from_micros(new_tat - now),
        retry_after: Duration::ZERO,
    };
    (d, Some(new_tat))
}

/// A correction to a rate after the fact (tokens estimated before a call, counted after it):
/// `delta` more units use the rate up further (without a check: they were spent), fewer give
/// the difference back. The shared arithmetic of both backends.
fn gcra_adjust(stored_tat: Option<u64>, now: u64, rate: Rate, delta: i64) -> Option<u64> {
    let tat = stored_tat?.max(now);
    let shift = rate.interval_us().saturating_mul(delta.unsigned_abs());
    Some(if delta >= 0 { tat.saturating_add(shift) } else { tat.saturating_sub(shift).max(now) })
}

/// One budget a reservation must fit: the key names the scope and period
/// (`org:<id>:2026-11`), the limit is in the budget's unit (micro-USD or tokens).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Budget {
    pub key: String,
    pub limit: u64,
    /// How long spend is kept (the rest of the period); `None`: forever (lifetime budgets).
    pub retain: Option<Duration>,
}

/// Granted room on every budget of a request, to be settled once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    pub id: String,
    pub amount: u64,
    pub budgets: Vec<Budget>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reserved {
    Granted(Reservation),
    /// The budget at this index of the request cannot fit the amount; nothing was reserved.
    Exhausted {
        budget: usize,
    },
}

/// What a budget holds now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Standing {
    pub spent: u64,
    pub reserved: u64,
}

/// One all-or-nothing reservation asked at admission: `amount` on every budget or on none.
#[derive(Clone, Copy, Debug)]
pub struct Ask<'a> {
    pub budgets: &'a [Budget],
    pub amount: u64,
}

/// What [`Limits::admit`] answers: each rate's decision and each ask's outcome, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admitted {
    pub rates: Vec<RateDecision>,
    pub reserved: Vec<Reserved>,
}

/// One settlement of a batch: the reservation and what was really used.
pub type Settle<'a> = (&'a Reservation, u64);

/// One correction of a batch: the rate's key, the rate and the difference (see [`gcra_adjust`]).
pub type Adjust<'a> = (&'a str, Rate, i64);

/// The backend of one deployment.
pub enum Limits {
    Local(Local),
    /// Boxed: the client and its scripts are far larger than the in-process store's handle.
    Redis(Box<RedisLimits>),
}

impl Limits {
    /// Whether the store is shared by several replicas (Redis).
    pub fn shared(&self) -> bool {
        matches!(self, Limits::Redis(_))
    }

    /// The shared circuit breakers of these deployments (when open, until when; 0: closed).
    /// The in-process store shares nothing: every breaker reads closed.
    pub async fn breakers(&self, deployments: &[String]) -> Result<Vec<u64>, Unavailable> {
        match self {
            Limits::Local(_) => Ok(vec![0; deployments.len()]),
            Limits::Redis(r) => r.breakers(deployments).await,
        }
    }

    /// The shared store, when it is Redis.
    pub fn redis(&self) -> Option<&RedisLimits> {
        match self {
            Limits::Local(_) => None,
            Limits::Redis(r) => Some(r),
        }
    }

    /// Publishes a deployment's breaker to the other replicas (nothing to do in process).
    pub async fn set_breaker(&self, deployment: &str, open_until: u64, keep: Duration) -> Result<(), Unavailable> {
        match self {
            Limits::Local(_) => Ok(()),
            Limits::Redis(r) => r.set_breaker(deployment, open_until, keep).await,
        }
    }

    pub async fn rate(&self, key: &str, rate: Rate, cost: u64) -> Result<RateDecision, Unavailable> {
        match self {
            Limits::Local(l) => Ok(l.rate(key, rate, cost)),
            Limits::Redis(r) => r.rate(key, rate, cost).await,
        }
    }

    /// Several rates in one call (one round trip on Redis), each deciding on its own, in order.
    pub async fn rates(&self, checks: &[(&str, Rate, u64)]) -> Result<Vec<RateDecision>, Unavailable> {
        if checks.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            Limits::Local(l) => Ok(checks.iter().map(|(key, rate, cost)| l.rate(key, *rate, *cost)).collect()),
            Limits::Redis(r) => r.rates(checks).await,
        }
    }

    /// Corrects a rate by `delta` units (see [`gcra_adjust`]); a rate not seen lately is left
    /// alone.
    pub async fn adjust(&self, key: &str, rate: Rate, delta: i64) -> Result<(), Unavailable> {
        match self {
            Limits::Local(l) => {
                l.adjust(key, rate, delta);
                Ok(())
            }
            Limits::Redis(r) => r.adjust(key, rate, delta).await,
        }
    }

    /// Reserves `amount` on every budget or on none. `hold` bounds how long the reservation
    /// lives if it is never settled (a replica that died mid-request).
    pub async fn reserve(&self, budgets: &[Budget], amount: u64, hold: Duration) -> Result<Reserved, Unavailable> {
        match self {
            Limits::Local(l) => Ok(l.reserve(budgets, amount, hold)),
            Limits::Redis(r) => r.reserve(budgets, amount, hold).await,
        }
    }

    /// Releases the reservation and records `actual` against each of its budgets; once per
    /// reservation (a repeated settle changes nothing and answers `None`). Answers each
    /// budget's spend after this settle, so a caller sees which thresholds it crossed.
    pub async fn settle(&self, reservation: &Reservation, actual: u64) -> Result<Option<Vec<u64>>, Unavailable> {
        match self {
            Limits::Local(l) => Ok(l.settle(reservation, actual)),
            Limits::Redis(r) => r.settle(reservation, actual).await,
        }
    }

    /// A request's whole admission in one call (one round trip on Redis): every rate, each
    /// deciding on its own as in [`Limits::rates`], and every ask, each all-or-nothing as in
    /// [`Limits::reserve`]. Nothing in one ask depends on another's outcome or on the rates';
    /// the caller releases what was granted when anything else refused.
    pub async fn admit(
        &self,
        rates: &[(&str, Rate, u64)],
        asks: &[Ask<'_>],
        hold: Duration,
    ) -> Result<Admitted, Unavailable> {
        match self {
            Limits::Local(l) => Ok(Admitted {
                rates: rates.iter().map(|(key, rate, cost)| l.rate(key, *rate, *cost)).collect(),
                reserved: asks.iter().map(|a| l.reserve(a.budgets, a.amount, hold)).collect(),
            }),
            Limits::Redis(r) => r.admit(rates, asks, hold).await,
        }
    }

    /// Many requests' ends in one call (one round trip on Redis per chunk): each settlement as
    /// [`Limits::settle`] (answered in order), then each correction as [`Limits::adjust`].
    pub async fn settle_batch(
        &self,
        settles: &[Settle<'_>],
        adjusts: &[Adjust<'_>],
    ) -> Result<Vec<Option<Vec<u64>>>, Unavailable> {
        match self {
            Limits::Local(l) => {
                let out = settles.iter().map(|(r, actual)| l.settle(r, *actual)).collect();
                for (key, rate, delta) in adjusts {
                    l.adjust(key, *rate, *delta);
                }
                Ok(out)
            }
            Limits::Redis(r) => r.settle_batch(settles, adjusts).await,
        }
    }

    pub async fn standing(&self, key: &str) -> Result<Standing, Unavailable> {
        match self {
            Limits::Local(l) => Ok(l.standing(key)),
            Limits::Redis(r) => r.standing(key).await,
        }
    }
}

fn reservation_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: Rate = Rate { per_minute: 600, burst: 3 };

    #[test]
    fn an_adjustment_uses_up_or_gives_back_the_difference() {
        let now = 1_000_000;
        let (_, tat) = gcra(None, now, R, 3);
        assert_eq!(tat, Some(now + 300_000));
        assert_eq!(gcra_adjust(tat, now, R, 2), Some(now + 500_000));
        assert_eq!(gcra_adjust(tat, now, R, -2), Some(now + 100_000));
        assert_eq!(gcra_adjust(tat, now, R, -9), Some(now), "never before now");
        assert_eq!(gcra_adjust(None, now, R, 5), None, "nothing to correct");
    }

    #[test]
    fn gcra_admits_a_burst_then_paces() {
        let mut tat = None;
        let now = 1_000_000;
        for left in [2, 1, 0] {
            let (d, t) = gcra(tat, now, R, 1);
            assert!(d.allowed);
            assert_eq!(d.remaining, left);
            tat = t;
        }
        let (d, t) = gcra(tat, now, R, 1);
        assert!(!d.allowed && t.is_none());
        assert_eq!(d.retry_after, Duration::from_millis(100));
        // one interval later, one more fits
        let (d, _) = gcra(tat, now + 100_000, R, 1);
        assert!(d.allowed);
        // a cost larger than the burst never fits
        let (d, _) = gcra(None, now, R, 4);
        assert!(!d.allowed);
    }
}
