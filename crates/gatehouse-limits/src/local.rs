//! The in-process backend: the embedded default, for one replica. State lives in 64 shards,
//! each behind its own short-held lock (a hash probe and a few integer operations), so there
//! is no global lock; a reservation over several budgets locks their shards in index order.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::time::{Duration, Instant};

use foldhash::fast::RandomState;

use parking_lot::{Mutex, MutexGuard};

use crate::{Budget, Rate, RateDecision, Reservation, Reserved, Standing, gcra, reservation_id};

const SHARDS: usize = 64;

#[derive(Default)]
struct Shard {
    tats: HashMap<String, u64, RandomState>,
    /// Prune passed TATs when the map grows past this (doubling: amortised O(1) per call).
    tats_gc_at: usize,
    budgets: HashMap<String, BudgetState, RandomState>,
}

#[derive(Default)]
struct BudgetState {
    spent: u64,
    /// Unsettled reservations: id -> (amount, expires at, µs on this backend's clock). An
    /// expired hold no longer counts as reserved but is kept for [`GRACE_US`], so a late
    /// settle still finds it (and counts the spend) and a repeated settle finds nothing.
    holds: HashMap<String, (u64, u64), RandomState>,
    /// The sum of the holds that expire after `counted_at` (kept on every insert and remove,
    /// so a reserve costs O(1) instead of a pass over every hold).
    live: u64,
    /// When `live` was last recounted from `holds`.
    counted_at: u64,
    /// No hold counted in `live` expires, and no expired hold's grace ends, before this: until
    /// then `live` is exact without a recount.
    recount_at: u64,
    /// spend is forgotten after this (µs), for periodic budgets
    forget_at: Option<u64>,
}

/// How long an expired, unsettled hold is remembered (one hour).
pub(crate) const GRACE_US: u64 = 3_600_000_000;

impl BudgetState {
    fn reserved(&mut self, now: u64) -> u64 {
        if now >= self.recount_at {
            self.holds.retain(|_, (_, exp)| exp.saturating_add(GRACE_US) > now);
            self.live = self.holds.values().filter(|(_, exp)| *exp > now).map(|(a, _)| *a).sum();
            self.counted_at = now;
            self.recount_at = self
                .holds
                .values()
                .map(|(_, exp)| if *exp > now { *exp } else { exp.saturating_add(GRACE_US) })
                .min()
                .unwrap_or(u64::MAX);
        }
        self.live
    }

    fn hold(&mut self, id: &str, amount: u64, expires: u64) {
        self.holds.insert(id.to_owned(), (amount, expires));
        self.live = self.live.saturating_add(amount);
        self.recount_at = self.recount_at.min(expires);
    }

    fn release(&mut self, id: &str) {
        if let Some((amount, exp)) = self.holds.remove(id)
            && exp > self.counted_at
        {
            self.live = self.live.saturating_sub(amount);
        }
    }
}

pub struct Local {
    shards: Vec<Mutex<Shard>>,
    hasher: RandomState,
    epoch: Instant,
}

impl Default for Local {
    fn default() -> Self {
        Local::new()
    }
}

impl Local {
    pub fn new() -> Local {
        Local {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: RandomState::default(),
            epoch: Instant::now(),
        }
    }

    /// µs on a monotonic clock (starting at 1 s so "0" never means "now").
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX).saturating_add(1_000_000)
    }

    fn shard_of(&self, key: &str) -> usize {
        (self.hasher.hash_one(key) as usize) % SHARDS
    }

    pub fn rate(&self, key: &str, rate: Rate, cost: u64) -> RateDecision {
        let now = self.now();
        let mut shard = self.shards[self.shard_of(key)].lock();
        let stored = shard.tats.get(key).copied();
        let (decision, new_tat) = gcra(stored, now, rate, cost);
        if let Some(t) = new_tat {
            // the key is copied only the first time it is seen
            match shard.tats.get_mut(key) {
                Some(tat) => *tat = t,
                None => {
                    shard.tats.insert(key.to_owned(), t);
                }
            }
        }
        // keys whose TAT has passed hold no information: drop them now and then
        if shard.tats.len() > shard.tats_gc_at.max(4096) {
            shard.tats.retain(|_, t| *t > now);
            shard.tats_gc_at = shard.tats.len() * 2;
        }
        decision
    }

    pub fn adjust(&self, key: &str, rate: Rate, delta: i64) {
        let now = self.now();
        let mut shard = self.shards[self.shard_of(key)].lock();
        if let Some(t) = crate::gcra_adjust(shard.tats.get(key).copied(), now, rate, delta) {
            shard.tats.insert(key.to_owned(), t);
        }
    }

    /// Locks the shards of `keys` in index order (no deadlock between two multi-key calls).
    fn lock_all(&self, keys: impl Iterator<Item = usize>) -> Vec<(usize, MutexGuard<'_, Shard>)> {
        let mut idx: Vec<usize> = keys.collect();
        idx.sort_unstable();
        idx.dedup();
        idx.into_iter().map(|i| (i, self.shards[i].lock())).collect()
    }

    pub fn reserve(&self, budgets: &[Budget], amount: u64, hold: Duration) -> Reserved {
        let now = self.now();
        let mut guards = self.lock_all(budgets.iter().map(|b| self.shard_of(&b.key)));
        let shard_for = |key: &str| -> usize {
            let s = self.shard_of(key);
            guards.iter().position(|(i, _)| *i == s).unwrap_or(0)
        };
        let positions: Vec<usize> = budgets.iter().map(|b| shard_for(&b.key)).collect();
        for (n, b) in budgets.iter().enumerate() {
            let shard = &mut guards[positions[n]].1;
            let state = match shard.budgets.get_mut(&b.key) {
                Some(state) => state,
                None => shard.budgets.entry(b.key.clone()).or_default(),
            };
            if state.forget_at.is_some_and(|t| t <= now) {
                *state = BudgetState::default();
            }
            let reserved = state.reserved(now);
            if state.spent.saturating_add(reserved).saturating_add(amount) > b.limit {
                return Reserved::Exhausted { budget: n };
            }
        }
        let id = reservation_id();
        let expires = now.saturating_add(u64::try_from(hold.as_micros()).unwrap_or(u64::MAX));
        for (n, b) in budgets.iter().enumerate() {
            if let Some(state) = guards[positions[n]].1.budgets.get_mut(&b.key) {
                state.hold(&id, amount, expires);
            }
        }
        Reserved::Granted(Reservation { id, amount, budgets: budgets.to_vec() })
    }

    pub fn settle(&self, r: &Reservation, actual: u64) -> Option<Vec<u64>> {
        let now = self.now();
        let first = r.budgets.first()?;
        let mut guards = self.lock_all(r.budgets.iter().map(|b| self.shard_of(&b.key)));
        // settled once: the first budget's hold is the receipt
        let home = self.shard_of(&first.key);
        let unsettled = guards
            .iter_mut()
            .find(|(i, _)| *i == home)
            .and_then(|(_, shard)| shard.budgets.get(&first.key))
            .is_some_and(|state| state.holds.contains_key(&r.id));
        if !unsettled {
            return None;
        }
        let mut after = Vec::with_capacity(r.budgets.len());
        for b in &r.budgets {
            let s = self.shard_of(&b.key);
            let Some((_, shard)) = guards.iter_mut().find(|(i, _)| *i == s) else { continue };
            let state = match shard.budgets.get_mut(&b.key) {
                Some(state) => state,
                None => shard.budgets.entry(b.key.clone()).or_default(),
            };
            state.release(&r.id);
            state.spent = state.spent.saturating_add(actual);
            if state.forget_at.is_none()
                && let Some(keep) = b.retain
            {
                state.forget_at = Some(now.saturating_add(u64::try_from(keep.as_micros()).unwrap_or(u64::MAX)));
            }
            after.push(state.spent);
        }
        Some(after)
    }

    /// Restores a budget's spend persisted before a restart (`forget_after`: what is left of its
    /// period; `None` for lifetime budgets). Spend counted since start is kept if larger.
    pub fn seed(&self, key: &str, spent: u64, forget_after: Option<Duration>) {
        let now = self.now();
        let mut shard = self.shards[self.shard_of(key)].lock();
        let state = shard.budgets.entry(key.to_owned()).or_default();
        state.spent = state.spent.max(spent);
        if let Some(after) = forget_after {
            state.forget_at = Some(now.saturating_add(u64::try_from(after.as_micros()).unwrap_or(u64::MAX)));
        }
    }

    pub fn standing(&self, key: &str) -> Standing {
        let now = self.now();
        let mut shard = self.shards[self.shard_of(key)].lock();
        match shard.budgets.get_mut(key) {
            Some(s) if s.forget_at.is_none_or(|t| t > now) => Standing { spent: s.spent, reserved: s.reserved(now) },
            _ => Standing::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget() -> Vec<Budget> {
        vec![Budget { key: "b".into(), limit: 1_000, retain: None }]
    }

    fn granted(r: Reserved) -> Reservation {
        match r {
            Reserved::Granted(r) => r,
            Reserved::Exhausted { .. } => panic!("exhausted"),
        }
    }

    /// The running sum of live holds agrees with a recount through expiry, late settles and
    /// repeated settles.
    #[tokio::test]
    async fn the_reserved_sum_follows_holds_as_they_expire_and_settle() {
        let l = Local::new();
        let short = granted(l.reserve(&budget(), 100, Duration::from_millis(30)));
        let long = granted(l.reserve(&budget(), 200, Duration::from_secs(60)));
        assert_eq!(l.standing("b"), Standing { spent: 0, reserved: 300 });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(l.standing("b").reserved, 200, "the short hold expired");
        assert_eq!(l.settle(&short, 40), Some(vec![40]), "a late settle still counts");
        assert_eq!(l.standing("b"), Standing { spent: 40, reserved: 200 });
        assert_eq!(l.settle(&short, 40), None, "settled once");
        let third = granted(l.reserve(&budget(), 300, Duration::from_secs(60)));
        assert_eq!(l.standing("b").reserved, 500);
        assert_eq!(l.settle(&long, 10), Some(vec![50]));
        assert_eq!(l.settle(&third, 10), Some(vec![60]));
        assert_eq!(l.standing("b"), Standing { spent: 60, reserved: 0 });
        assert!(matches!(l.reserve(&budget(), 941, Duration::from_secs(1)), Reserved::Exhausted { budget: 0 }));
    }
}
