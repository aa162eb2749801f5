//! What one limit check costs: a GCRA rate check, three rates in one call (what the gate does
//! for a key, its project and its org) and a reserve + settle pair, in-process and
//! on Redis (127.0.0.1:6379 or GATEHOUSE_TEST_REDIS_URL; skipped when unreachable).
//!
//!     cargo bench -p gatehouse-limits --bench check

#![expect(
    clippy::expect_used,
    clippy::print_stderr,
    reason = "benchmark setup: a failure must stop the run, a skipped backend must be said"
)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use gatehouse_limits::{Budget, Limits, Local, Rate, RedisConfig, RedisLimits, Reserved};

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let mut backends = vec![("local", Limits::Local(Local::new()))];
    let url = std::env::var("GATEHOUSE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".to_owned());
    let cfg = RedisConfig { url, prefix: "gh-bench".into(), timeout: Duration::from_secs(1), ca_pem: None };
    match rt.block_on(RedisLimits::connect(cfg)) {
        Ok(r) => backends.push(("redis", Limits::Redis(Box::new(r)))),
        Err(e) => eprintln!("redis unreachable ({e}); only the in-process backend is measured"),
    }
    let rate = Rate { per_minute: u64::MAX / 1_000_000, burst: 1_000_000 };
    let budgets = [
        Budget { key: "org".into(), limit: u64::MAX / 2, retain: Some(Duration::from_secs(600)) },
        Budget { key: "project".into(), limit: u64::MAX / 2, retain: Some(Duration::from_secs(600)) },
        Budget { key: "key".into(), limit: u64::MAX / 2, retain: Some(Duration::from_secs(600)) },
    ];
    let mut g = c.benchmark_group("limits");
    for (name, l) in &backends {
        g.bench_function(format!("{name}/rate_check"), |b| {
            b.iter(|| rt.block_on(l.rate(black_box("bench-key"), rate, 1)).expect("rate"))
        });
        let three = [("bench-key", rate, 1), ("bench-project", rate, 1), ("bench-org", rate, 1)];
        g.bench_function(format!("{name}/three_rates_one_call"), |b| {
            b.iter(|| rt.block_on(l.rates(black_box(&three))).expect("rates"))
        });
        g.bench_function(format!("{name}/reserve_settle_3_budgets"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    if let Reserved::Granted(r) =
                        l.reserve(&budgets, 100, Duration::from_secs(60)).await.expect("reserve")
                    {
                        l.settle(&r, 42).await.expect("settle");
                    }
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
