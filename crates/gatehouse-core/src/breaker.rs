//! A circuit breaker for one deployment: closed while it answers; open for a cool-down after
//! `threshold` failures in a row, or once its failures reach an error rate over the last ten
//! seconds (with enough requests to judge); then half-open, where one request at a time probes
//! it, and a success closes it again. Lock-free (atomics only), and every decision takes the
//! time as an argument, so tests drive it with a clock of their own.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// The error-rate window: ten one-second buckets.
const BUCKETS: usize = 10;

#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    cooldown_ms: u64,
    /// Open when failures / outcomes over the window reach this (per mille; 0: never) ...
    error_rate_pm: u32,
    /// ... with at least this many outcomes in the window.
    min_requests: u32,
    /// Per second of the window: (the unix second it counts, outcomes << 32 | failures).
    window: [(AtomicU64, AtomicU64); BUCKETS],
    failures: AtomicU32,
    /// 0 while closed; else when the open period ends (unix ms).
    open_until: AtomicU64,
    /// When the last half-open probe was handed out (unix ms): one per cool-down, so a probe
    /// that was handed out and never sent (its request ended first) frees itself.
    probe_at: AtomicU64,
}

/// A breaker's state, for metrics and the admin API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub const fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

impl Breaker {
    /// Opens after `threshold` failures in a row (at least 1), for `cooldown_ms`.
    pub fn new(threshold: u32, cooldown_ms: u64) -> Breaker {
        Breaker {
            threshold: threshold.max(1),
            cooldown_ms,
            error_rate_pm: 0,
            min_requests: u32::MAX,
            window: Default::default(),
            failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
            probe_at: AtomicU64::new(0),
        }
    }

    /// Also opens when at least `min_requests` outcomes over the last ten seconds hold this
    /// share of failures (0 < `rate` <= 1; 0 turns it off).
    pub fn with_error_rate(mut self, rate: f64, min_requests: u32) -> Breaker {
        // per mille of a share in [0, 1]: 0..=1000, so the cast is exact
        self.error_rate_pm = (rate.clamp(0.0, 1.0) * 1000.0).round() as u32;
        self.min_requests = min_requests.max(1);
        self
    }

    /// Counts one outcome in the current second's bucket; returns the window's (outcomes,
    /// failures) when `failed` (only a failure can open the breaker).
    fn count(&self, now_ms: u64, failed: bool) -> (u64, u64) {
        if self.error_rate_pm == 0 {
            return (0, 0);
        }
        let sec = now_ms / 1000;
        // the bucket index is below BUCKETS, so the cast is exact
        let (epoch, counts) = &self.window[(sec % BUCKETS as u64) as usize];
        let seen = epoch.load(Ordering::Acquire);
        if seen != sec && epoch.compare_exchange(seen, sec, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            // a new second: the bucket's old counts are ten seconds stale
            counts.store(0, Ordering::Release);
        }
        counts.fetch_add((1 << 32) | u64::from(failed), Ordering::AcqRel);
        if !failed {
            return (0, 0);
        }
        self.window
            .iter()
            .filter(|(e, _)| sec.saturating_sub(e.load(Ordering::Acquire)) < BUCKETS as u64)
            .map(|(_, c)| c.load(Ordering::Acquire))
            .fold((0, 0), |(n, f), c| (n + (c >> 32), f + (c & 0xFFFF_FFFF)))
    }

    pub fn state(&self, now_ms: u64) -> BreakerState {
        match self.open_until.load(Ordering::Acquire) {
            0 => BreakerState::Closed,
            until if now_ms < until => BreakerState::Open,
            _ => BreakerState::HalfOpen,
        }
    }

    /// Whether a request may go to this deployment in its turn: always while closed, never
    /// while open, and one at a time (the probe) while half-open.
    pub fn admits(&self, now_ms: u64) -> bool {
        match self.state(now_ms) {
            BreakerState::Closed => true,
            BreakerState::Open => false,
            BreakerState::HalfOpen => {
                let last = self.probe_at.load(Ordering::Acquire);
                last.saturating_add(self.cooldown_ms) <= now_ms
                    && self.probe_at.compare_exchange(last, now_ms, Ordering::AcqRel, Ordering::Acquire).is_ok()
            }
        }
    }

    /// The deployment answered: closed again, from any state. Returns whether this success
    /// closed it (exactly one caller sees `true` for each opening).
    pub fn succeeded(&self, now_ms: u64) -> bool {
        self.count(now_ms, false);
        if self.failures.load(Ordering::Relaxed) == 0 && self.open_until.load(Ordering::Relaxed) == 0 {
            return false;
        }
        self.failures.store(0, Ordering::Relaxed);
        let was = self.open_until.swap(0, Ordering::AcqRel);
        self.probe_at.store(0, Ordering::Release);
        if was != 0 {
            // the failures that opened it are behind it now: they must not reopen it
            for (_, counts) in self.window.iter() {
                counts.store(0, Ordering::Release);
            }
        }
        was != 0
    }

    /// An open breaker's cool-down ends now: it is half-open, and the next request probes it
    /// (an active health check passed). Returns whether it was open.
    pub fn end_cooldown(&self, now_ms: u64) -> bool {
        let until = self.open_until.load(Ordering::Acquire);
        until > now_ms
            && self.open_until.compare_exchange(until, now_ms.max(1), Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    /// The deployment failed in a way that says something about it (not about the request).
    /// Returns whether this failure opened the breaker (exactly one of concurrent failures
    /// sees `true`).
    pub fn failed(&self, now_ms: u64) -> bool {
        let until = self.open_until.load(Ordering::Acquire);
        let n = self.failures.fetch_add(1, Ordering::AcqRel).saturating_add(1);
        let (outcomes, failures) = self.count(now_ms, true);
        let rate_reached = outcomes >= u64::from(self.min_requests)
            && failures * 1000 >= outcomes * u64::from(self.error_rate_pm)
            && self.error_rate_pm > 0;
        // a failed probe opens it again at once; a closed one after `threshold` in a row, or
        // at the error rate
        let opens = match until {
            0 => n >= self.threshold || rate_reached,
            u => now_ms >= u,
        };
        let reopen = now_ms.saturating_add(self.cooldown_ms).max(1);
        if opens && self.open_until.compare_exchange(until, reopen, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.probe_at.store(0, Ordering::Release);
            return true;
        }
        false
    }

    /// How long it stays open.
    pub fn cooldown_ms(&self) -> u64 {
        self.cooldown_ms
    }

    /// Failures in a row so far (for the admin API).
    pub fn failures(&self) -> u32 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Takes another replica's view (shared through Redis): open until `open_until` (unix ms),
    /// or closed (0).
    pub fn adopt(&self, open_until: u64) {
        let was = self.open_until.swap(open_until, Ordering::AcqRel);
        if was != open_until {
            self.probe_at.store(0, Ordering::Release);
            if open_until == 0 {
                self.failures.store(0, Ordering::Relaxed);
            }
        }
    }

    /// When the open period ends (unix ms), while open or half-open.
    pub fn open_until(&self) -> Option<u64> {
        Some(self.open_until.load(Ordering::Acquire)).filter(|u| *u != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_probes_after_the_cooldown_and_closes_on_success() {
        let b = Breaker::new(3, 1_000);
        let t = 10_000;
        assert!(!b.failed(t) && !b.failed(t + 1));
        b.succeeded(t + 1);
        assert!(!b.failed(t + 2) && !b.failed(t + 3), "a success resets the count");
        assert!(b.failed(t + 4), "the third in a row opens it");
        assert_eq!(b.state(t + 5), BreakerState::Open);
        assert!(!b.admits(t + 999));
        assert_eq!(b.state(t + 1_004), BreakerState::HalfOpen);
        assert!(b.admits(t + 1_004), "one probe");
        assert!(!b.admits(t + 1_005), "one at a time");
        assert!(b.admits(t + 2_004), "a probe never sent frees itself after a cool-down");
        assert!(b.failed(t + 2_010), "a failed probe opens it again");
        assert!(!b.admits(t + 3_000));
        assert!(b.admits(t + 3_010));
        b.succeeded(t + 3_010);
        assert_eq!(b.state(t + 3_011), BreakerState::Closed);
        assert!(b.admits(t + 3_011) && b.admits(t + 3_011), "closed admits everyone");
    }

    #[test]
    fn each_opening_and_closing_is_reported_exactly_once() {
        let b = std::sync::Arc::new(Breaker::new(3, 1_000));
        let t = 50_000;
        // eight threads fail at once, many times past the threshold: one of them opened it
        let opened: usize = (0..8)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || (0..100).filter(|_| b.failed(t)).count())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap_or(0))
            .sum();
        assert_eq!(opened, 1);
        assert_eq!((b.failures(), b.open_until()), (800, Some(t + 1_000)));
        let closed = (0..4).filter(|_| b.succeeded(t)).count();
        assert_eq!(closed, 1, "the first success closes it, the others find it closed");
        assert_eq!((b.failures(), b.open_until()), (0, None));
    }

    #[test]
    fn an_error_rate_over_ten_seconds_opens_it_without_failures_in_a_row() {
        // never five in a row, but half the outcomes fail
        let b = Breaker::new(5, 1_000).with_error_rate(0.5, 20);
        let t = 100_000;
        let mut opened_at = None;
        for i in 0..40u64 {
            let now = t + i * 100;
            if i % 2 == 0 {
                b.succeeded(now);
            } else if b.failed(now) {
                opened_at = Some(i);
                break;
            }
        }
        assert_eq!(opened_at, Some(19), "the twentieth outcome reaches 20 requests at 50%");
        assert_eq!(b.state(t + 1_950), BreakerState::Open);

        // too few requests to judge: 9 of 10 failing do not open it by rate
        let few = Breaker::new(100, 1_000).with_error_rate(0.5, 20);
        for i in 0..10 {
            if i == 0 {
                few.succeeded(t);
            } else {
                assert!(!few.failed(t + i));
            }
        }
        // outcomes older than the window no longer count: 15 failures, then 20 s of quiet,
        // then 10 successes and 10 failures alternating stay under the rate until the
        // window holds 20 again
        let old = Breaker::new(100, 1_000).with_error_rate(0.6, 20);
        for i in 0..15 {
            assert!(!old.failed(t + i));
        }
        let later = t + 20_000;
        let opened: Vec<bool> =
            (0..20u64).map(|i| if i % 2 == 0 { old.succeeded(later + i) } else { old.failed(later + i) }).collect();
        assert!(opened.iter().all(|o| !o), "the old failures left the window; 50% < 60%");
        let off = Breaker::new(100, 1_000);
        assert!((0..50).all(|i| !off.failed(t + i)), "no error rate unless asked");
    }

    #[test]
    fn another_replicas_view_is_adopted() {
        let b = Breaker::new(3, 1_000);
        b.adopt(5_000);
        assert_eq!(b.state(4_000), BreakerState::Open);
        assert_eq!(b.state(5_000), BreakerState::HalfOpen);
        b.adopt(0);
        assert_eq!((b.state(4_000), b.failures()), (BreakerState::Closed, 0));
    }
}

/// A model's retries: at most `max` per request, and across requests no more than a fraction
/// of them (a token bucket: each request adds the fraction, each retry takes one; it starts
/// with two retries' worth, so a quiet model can still retry, and holds at most ten), so an
/// outage cannot become a retry storm.
#[derive(Debug)]
pub struct Retries {
    pub max: u8,
    /// In thousandths of a retry.
    per_request: i64,
    balance: std::sync::atomic::AtomicI64,
}

/// Most retries the bucket saves up for a burst.
const RETRY_BURST: i64 = 10_000;
/// What a fresh bucket holds.
const RETRY_START: i64 = 2_000;

impl Retries {
    /// `ratio`: retries allowed per request on average (0.2: one in five).
    pub fn new(max: u8, ratio: f64) -> Retries {
        // thousandths of a retry per request: 0..=1000 after the clamp, so the cast is exact
        let per_request = (ratio.clamp(0.0, 1.0) * 1000.0).round() as i64;
        let start = if max > 0 { RETRY_START } else { 0 };
        Retries { max, per_request, balance: std::sync::atomic::AtomicI64::new(start) }
    }

    /// A request was admitted to the model.
    pub fn deposit(&self) {
        if self.max > 0 {
            let _ = self.balance.fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                Some(b.saturating_add(self.per_request).min(RETRY_BURST))
            });
        }
    }

    /// Takes one retry from the budget, if it holds one.
    pub fn withdraw(&self) -> bool {
        self.balance.fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| (b >= 1000).then_some(b - 1000)).is_ok()
    }
}

#[cfg(test)]
mod retry_tests {
    use super::*;

    #[test]
    fn retries_are_at_most_the_ratio_of_requests_with_a_bounded_burst() {
        let r = Retries::new(2, 0.2);
        assert!(r.withdraw() && r.withdraw() && !r.withdraw(), "a fresh bucket holds two");
        for _ in 0..10 {
            r.deposit();
        }
        assert!(r.withdraw() && r.withdraw() && !r.withdraw(), "ten requests earn two retries");
        for _ in 0..1000 {
            r.deposit();
        }
        assert_eq!((0..20).filter(|_| r.withdraw()).count(), 10, "the burst is bounded");
        let off = Retries::new(0, 0.5);
        off.deposit();
        assert!(!off.withdraw());
    }
}

/// A model's request hedging (off unless configured): the first-byte times of its last answers,
/// and the percentile of them after which a second deployment is asked too. Lock-free: a ring
/// of atomics, read whole when a request asks for the delay.
#[derive(Debug)]
pub struct Hedge {
    percentile: u8,
    /// First-byte times in milliseconds (0: not yet filled).
    samples: Box<[AtomicU32]>,
    next: std::sync::atomic::AtomicUsize,
}

/// How many recent first-byte times a hedge keeps ...
const HEDGE_SAMPLES: usize = 128;
/// ... and how many it needs before it hedges at all.
const HEDGE_MIN_SAMPLES: usize = 20;
/// A hedge never starts sooner: below this, a slower first byte is scheduling jitter, not a
/// slow deployment, and a hedge would double the provider's load for nothing.
pub const HEDGE_MIN_DELAY: std::time::Duration = std::time::Duration::from_millis(50);

impl Hedge {
    /// Hedges after this percentile (50-99) of the recent first-byte times.
    pub fn new(percentile: u8) -> Hedge {
        Hedge {
            percentile: percentile.clamp(1, 99),
            samples: (0..HEDGE_SAMPLES).map(|_| AtomicU32::new(0)).collect(),
            next: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// One answer's first-byte time.
    pub fn record(&self, first_byte: std::time::Duration) {
        let ms = u32::try_from(first_byte.as_millis()).unwrap_or(u32::MAX).max(1);
        let i = self.next.fetch_add(1, Ordering::Relaxed) % HEDGE_SAMPLES;
        self.samples[i].store(ms, Ordering::Relaxed);
    }

    /// When to ask a second deployment: the percentile of the recent first-byte times (at
    /// least [`HEDGE_MIN_DELAY`]), or `None` while there are too few to know.
    pub fn delay(&self) -> Option<std::time::Duration> {
        let mut v: Vec<u32> = self.samples.iter().map(|s| s.load(Ordering::Relaxed)).filter(|s| *s > 0).collect();
        if v.len() < HEDGE_MIN_SAMPLES {
            return None;
        }
        let k = (v.len() - 1) * usize::from(self.percentile) / 100;
        let (_, at, _) = v.select_nth_unstable(k);
        Some(std::time::Duration::from_millis(u64::from(*at)).max(HEDGE_MIN_DELAY))
    }
}

#[cfg(test)]
mod hedge_tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_delay_is_the_percentile_of_recent_first_bytes_once_there_are_enough() {
        let h = Hedge::new(90);
        for ms in 1..20 {
            h.record(Duration::from_millis(ms * 100));
        }
        assert_eq!(h.delay(), None, "19 answers are too few to judge");
        h.record(Duration::from_millis(2000));
        assert_eq!(h.delay(), Some(Duration::from_millis(1800)), "the 90th percentile of 100..=2000 ms");
        // the window keeps the last 128: old slow answers age out
        for _ in 0..128 {
            h.record(Duration::from_millis(120));
        }
        assert_eq!(h.delay(), Some(Duration::from_millis(120)));
        // first bytes faster than jitter: the floor
        for _ in 0..128 {
            h.record(Duration::from_millis(2));
        }
        assert_eq!(h.delay(), Some(HEDGE_MIN_DELAY));
    }
}
