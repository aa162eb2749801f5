//! Active health checks (docs/ROUTING.md): each provider that configures one is asked on its
//! interval, off the request path; a failed check counts toward the breaker of every
//! deployment on it (so a provider that is down is skipped before a request finds out), and a
//! passing one ends an open breaker's cool-down, so the next request probes the deployment
//! (a check says the provider is up, not that every model on it answers).

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use gatehouse_core::Target;
use gatehouse_gates::route;

use crate::Runtime;

/// How often the checker looks for checks that are due.
const TICK: Duration = Duration::from_millis(250);

/// Runs forever over whichever snapshot is live.
pub async fn run(runtime: Arc<ArcSwap<Runtime>>) {
    let mut due: Vec<(Arc<str>, Instant)> = Vec::new();
    let mut t = tokio::time::interval(TICK);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        t.tick().await;
        let rt = runtime.load_full();
        let now = Instant::now();
        let mut checks = Vec::new();
        for (i, up) in rt.upstreams.iter().enumerate() {
            let Some((_, every)) = up.health.as_ref() else { continue };
            match due.iter_mut().find(|(name, _)| *name == up.name) {
                Some((_, at)) if *at > now => continue,
                Some((_, at)) => *at = now + *every,
                None => due.push((up.name.clone(), now + *every)),
            }
            // a check never holds the others up longer than its own interval
            let bound = up.first_byte_timeout.min(*every);
            checks
                .push(async move { (i, tokio::time::timeout(bound, up.check_health()).await.unwrap_or(Some(false))) });
        }
        for (i, healthy) in futures_util::future::join_all(checks).await {
            let Some(healthy) = healthy else { continue };
            let provider = rt.upstreams[i].name.to_string();
            let outcome = if healthy { "healthy" } else { "unhealthy" };
            metrics::counter!("gatehouse_health_checks_total", "provider" => provider.clone(), "outcome" => outcome)
                .increment(1);
            if !healthy {
                tracing::warn!(provider, "health check failed");
            }
            let on_it = rt.gates.table.models().iter().flat_map(|e| e.deployments.iter().map(|(r, _)| r));
            for r in on_it.filter(|r| r.target == Target::Upstream(i)) {
                if !healthy {
                    route::deployment_failed(r, &rt.gates.audit);
                } else if r.breaker.end_cooldown(route::now_ms()) {
                    tracing::info!(model = %r.model, provider = %r.provider, "health check passed: the deployment is probed by the next request");
                }
            }
        }
    }
}
