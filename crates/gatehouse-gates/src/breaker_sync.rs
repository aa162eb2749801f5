//! Circuit breakers shared by the replicas (docs/ROUTING.md): with a shared limits store
//! (Redis), each replica publishes its breakers' changes and adopts the others', on a short
//! tick. The request path never waits for it: breakers are decided in process, and a change
//! reaches every replica within about two ticks.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use gatehouse_core::{Route, Target};
use gatehouse_limits::{Limits, Unavailable};

use crate::route::{RouteTable, now_ms};

/// How long a published opening outlives its open period, in cool-downs: long enough for the
/// half-open state to be shared too, short enough that an idle deployment's stale opening
/// goes away by itself.
const KEEP_COOLDOWNS: u64 = 10;

/// One replica's side of the sharing: what it last published or adopted, per deployment.
#[derive(Default)]
pub struct BreakerSync {
    table: Option<Arc<RouteTable>>,
    seen: HashMap<String, u64>,
}

/// The name a deployment's breaker is shared under: `model/provider/provider_model` (a model
/// may have two deployments on one provider, under two of its names).
fn name(r: &Route) -> String {
    format!("{}/{}/{}", r.model, r.provider, r.provider_model)
}

impl BreakerSync {
    /// One round: a breaker that changed here since the last round is published (this
    /// replica's view wins); else one that changed in the store is adopted. A new config
    /// snapshot starts from the store's view.
    pub async fn tick(&mut self, table: &Arc<RouteTable>, store: &Limits) -> Result<(), Unavailable> {
        if !self.table.as_ref().is_some_and(|t| Arc::ptr_eq(t, table)) {
            self.seen.clear();
            self.table = Some(table.clone());
        }
        let deployments: Vec<&Arc<Route>> = table
            .models()
            .iter()
            .flat_map(|e| e.deployments.iter().map(|(r, _)| r))
            .filter(|r| r.target != Target::Mock)
            .collect();
        let names: Vec<String> = deployments.iter().map(|r| name(r)).collect();
        let shared = store.breakers(&names).await?;
        for ((r, name), remote) in deployments.into_iter().zip(names).zip(shared) {
            let local = r.breaker.open_until().unwrap_or(0);
            let last = self.seen.get(&name).copied().unwrap_or(0);
            if local != last {
                let cooldown = r.breaker.cooldown_ms();
                let keep = local.saturating_sub(now_ms()).saturating_add(cooldown.saturating_mul(KEEP_COOLDOWNS));
                store.set_breaker(&name, local, Duration::from_millis(keep)).await?;
                self.seen.insert(name, local);
            } else if remote != last {
                r.breaker.adopt(remote);
                let state = if remote == 0 { "closed" } else { "open" };
                tracing::info!(model = %r.model, provider = %r.provider, state, "circuit breaker adopted from another replica");
                self.seen.insert(name, remote);
            }
        }
        Ok(())
    }

    /// Runs forever: `live` is the route table of the current snapshot.
    pub async fn run(mut self, live: impl Fn() -> Arc<RouteTable>, store: Arc<Limits>, every: Duration) {
        let mut t = tokio::time::interval(every);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            t.tick().await;
            if self.tick(&live(), &store).await.is_err() {
                metrics::counter!("gatehouse_breaker_sync_failures_total").increment(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_core::BreakerState;
    use gatehouse_limits::{Local, RedisConfig, RedisLimits};

    const CONFIG: &str = r#"
[[providers]]
name = "a"
base_url = "http://127.0.0.1:1/v1"
breaker_failures = 3
breaker_cooldown_ms = 1000
[[providers]]
name = "b"
base_url = "http://127.0.0.1:2/v1"
[[models]]
name = "m"
provider = "a"
[[models.deployments]]
provider = "b"
"#;

    /// One replica's route table (each replica builds its own from the same config).
    fn replica() -> Arc<RouteTable> {
        let cfg = gatehouse_config::Config::from_toml(CONFIG).unwrap_or_else(|e| panic!("{e:?}"));
        Arc::new(RouteTable::build(&cfg.policy))
    }

    fn breaker(t: &RouteTable) -> &gatehouse_core::Breaker {
        let e = t.resolve("m").unwrap_or_else(|| panic!("m"));
        &e.deployments[0].0.breaker
    }

    async fn redis() -> Option<Limits> {
        let url = std::env::var("GATEHOUSE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".to_owned());
        let prefix = format!("gh-breaker-sync-{}-{}", std::process::id(), now_ms());
        let cfg = RedisConfig { url, prefix, timeout: Duration::from_secs(1), ca_pem: None };
        match RedisLimits::connect(cfg).await {
            Ok(r) => Some(Limits::Redis(Box::new(r))),
            Err(e) if std::env::var("CI").as_deref() == Ok("true") => panic!("Redis is required under CI=true: {e}"),
            Err(e) => {
                tracing::error!("Redis unreachable ({e}): the shared-breaker test is SKIPPED");
                None
            }
        }
    }

    #[tokio::test]
    async fn replicas_share_openings_half_open_and_closings_through_redis_and_not_in_process() {
        let Some(store) = redis().await else { return };
        let (one, two) = (replica(), replica());
        let (mut s1, mut s2) = (BreakerSync::default(), BreakerSync::default());
        let t = now_ms();
        // replica one opens the breaker at a time of the test's choosing
        assert!(!breaker(&one).failed(t) && !breaker(&one).failed(t) && breaker(&one).failed(t));
        s1.tick(&one, &store).await.unwrap_or_else(|_| panic!("tick"));
        s2.tick(&two, &store).await.unwrap_or_else(|_| panic!("tick"));
        assert_eq!(breaker(&two).open_until(), Some(t + 1_000), "the same open period");
        assert_eq!(breaker(&two).state(t + 999), BreakerState::Open);
        assert_eq!(breaker(&two).state(t + 1_000), BreakerState::HalfOpen, "and the same half-open");
        // nothing changed: further rounds change nothing
        s2.tick(&two, &store).await.unwrap_or_else(|_| panic!("tick"));
        s1.tick(&one, &store).await.unwrap_or_else(|_| panic!("tick"));
        assert_eq!(breaker(&one).open_until(), Some(t + 1_000));

        // replica two's probe succeeds: it closes, and replica one follows
        assert!(breaker(&two).succeeded(t + 1_000));
        s2.tick(&two, &store).await.unwrap_or_else(|_| panic!("tick"));
        s1.tick(&one, &store).await.unwrap_or_else(|_| panic!("tick"));
        assert_eq!((breaker(&one).state(t + 1_001), breaker(&one).failures()), (BreakerState::Closed, 0));

        // a reload (a new table) starts from the store's view instead of erasing it
        assert!(!breaker(&one).failed(t) && !breaker(&one).failed(t) && breaker(&one).failed(t + 5));
        s1.tick(&one, &store).await.unwrap_or_else(|_| panic!("tick"));
        let reloaded = replica();
        s1.tick(&reloaded, &store).await.unwrap_or_else(|_| panic!("tick"));
        assert_eq!(breaker(&reloaded).open_until(), Some(t + 1_005));

        // in process, nothing is shared
        let local = Limits::Local(Local::new());
        let (three, four) = (replica(), replica());
        let (mut s3, mut s4) = (BreakerSync::default(), BreakerSync::default());
        assert!(!breaker(&three).failed(t) && !breaker(&three).failed(t) && breaker(&three).failed(t));
        s3.tick(&three, &local).await.unwrap_or_else(|_| panic!("tick"));
        s4.tick(&four, &local).await.unwrap_or_else(|_| panic!("tick"));
        assert_eq!(breaker(&four).open_until(), None);
    }
}
