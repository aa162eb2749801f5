//! How every replica keeps its in-memory copies (verified-credential caches, policy tables,
//! webhook subscriptions) in step with the store: one loop, two shapes. A failed read keeps
//! what the replica has and is logged; the next tick tries again.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use crate::now_ms;

/// Change feeds are read from a little before the last successful read: replicas' clocks
/// differ a little, and acting on a change twice is free.
const OVERLAP_MS: i64 = 10_000;

fn ticker(every: Duration) -> tokio::time::Interval {
    let mut t = tokio::time::interval(every);
    // a slow store delays the next read instead of firing a burst to catch up
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    t
}

/// Counts completed polls: an operator sees a replica keeping up with the store, and a test
/// can wait for "a whole poll after my write" instead of sleeping.
fn polled(what: &'static str) {
    metrics::counter!("gatehouse_store_polls_total", "what" => what).increment(1);
}

/// Re-reads something whole every `every`, forever. `what` names it in the log.
pub async fn reload<F, Fut, E>(what: &'static str, every: Duration, mut read: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Display,
{
    let mut t = ticker(every);
    loop {
        t.tick().await;
        match read().await {
            Ok(()) => polled(what),
            Err(e) => tracing::warn!(error = %e, what, "store poll failed; keeping this replica's copy"),
        }
    }
}

/// Reads a change feed every `every`, forever: `read(since_ms)` acts on the rows changed at or
/// after `since_ms` (in Unix milliseconds).
pub async fn changes<F, Fut, T, E>(what: &'static str, every: Duration, mut read: F)
where
    F: FnMut(i64) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Display,
{
    let mut t = ticker(every);
    let mut since = now_ms() - OVERLAP_MS;
    loop {
        t.tick().await;
        let started = now_ms();
        match read(since).await {
            Ok(_) => {
                since = started - OVERLAP_MS;
                polled(what);
            }
            Err(e) => tracing::warn!(error = %e, what, "change feed poll failed; cached entries expire by their ttl"),
        }
    }
}
