//! Failed sign-ins per key: per source address, and per account (a passkey's). After `limit` failures, each less than `lockout` after
//! the one before, the source is locked out until `lockout` has passed since its last failure;
//! a success does not clear the count (a guesser who once holds a valid token gains nothing).
//! The table is bounded: when it is full, the least recently used sources are forgotten.

use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use quick_cache::sync::Cache;

#[derive(Default)]
struct Record {
    count: AtomicU32,
    /// Milliseconds since the table's epoch.
    last: AtomicU64,
}

pub struct Failures<K> {
    epoch: Instant,
    limit: u32,
    lockout_ms: u64,
    by_key: Cache<K, Arc<Record>>,
}

/// What one more failure did.
#[derive(Debug, PartialEq, Eq)]
pub enum Counted {
    Below,
    /// This failure reached the limit: the lockout starts now (audited once).
    LockedOut,
}

impl<K: Eq + Hash + Clone> Failures<K> {
    pub fn new(limit: NonZeroU32, lockout: Duration) -> Failures<K> {
        Failures {
            epoch: Instant::now(),
            limit: limit.get(),
            lockout_ms: u64::try_from(lockout.as_millis()).unwrap_or(u64::MAX),
            by_key: Cache::new(10_000),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// How long `key` must still wait, if it is locked out.
    pub fn locked(&self, key: &K) -> Option<Duration> {
        let r = self.by_key.get(key)?;
        let since = self.now().saturating_sub(r.last.load(Ordering::Acquire));
        (r.count.load(Ordering::Acquire) >= self.limit && since < self.lockout_ms)
            .then(|| Duration::from_millis(self.lockout_ms - since))
    }

    pub fn fail(&self, key: &K) -> Counted {
        let r = self.by_key.get_or_insert_with(key, || Ok::<_, ()>(Arc::default())).unwrap_or_default();
        let now = self.now();
        let last = r.last.swap(now, Ordering::AcqRel);
        // failures spread further apart than the lockout never add up
        if now.saturating_sub(last) >= self.lockout_ms {
            r.count.store(0, Ordering::Release);
        }
        let n = r.count.fetch_add(1, Ordering::AcqRel) + 1;
        if n == self.limit { Counted::LockedOut } else { Counted::Below }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    #[test]
    fn a_source_is_locked_out_at_the_limit_and_others_are_not() {
        let f = Failures::<Option<IpAddr>>::new(NonZeroU32::new(3).unwrap(), Duration::from_secs(60));
        let a = Some(IpAddr::from([10, 0, 0, 1]));
        let b = Some(IpAddr::from([10, 0, 0, 2]));
        assert_eq!(f.fail(&a), Counted::Below);
        assert_eq!(f.fail(&a), Counted::Below);
        assert!(f.locked(&a).is_none());
        assert_eq!(f.fail(&a), Counted::LockedOut);
        let wait = f.locked(&a).unwrap();
        assert!(wait > Duration::from_secs(59) && wait <= Duration::from_secs(60), "{wait:?}");
        // the lockout is announced once; later failures only keep it going
        assert_eq!(f.fail(&a), Counted::Below);
        assert!(f.locked(&a).is_some());
        assert!(f.locked(&b).is_none());
    }

    #[test]
    fn failures_further_apart_than_the_lockout_do_not_add_up() {
        let f = Failures::<Option<IpAddr>>::new(NonZeroU32::new(2).unwrap(), Duration::from_millis(1));
        let a = Some(IpAddr::from([10, 0, 0, 1]));
        for _ in 0..3 {
            assert_eq!(f.fail(&a), Counted::Below);
            let t = Instant::now();
            while t.elapsed() < Duration::from_millis(3) {
                std::hint::spin_loop();
            }
        }
        assert!(f.locked(&a).is_none());
    }
}
