//! One semantics, two backends: every test runs against the in-process backend and against a
//! real Redis (127.0.0.1:6379, or GATEHOUSE_TEST_REDIS_URL). Without Redis the Redis half is
//! skipped loudly, unless CI=true, where that is a failure.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::print_stderr,
    reason = "test code: fail loudly, and say loudly what was skipped"
)]

use std::sync::Arc;
use std::time::Duration;

use gatehouse_limits::{
    Ask, Budget, Limits, Local, Rate, RedisConfig, RedisLimits, Reservation, Reserved, Standing, Unavailable,
};

fn redis_url() -> String {
    std::env::var("GATEHOUSE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".to_owned())
}

async fn backends() -> Vec<(&'static str, Arc<Limits>)> {
    let mut out = vec![("local", Arc::new(Limits::Local(Local::new())))];
    let cfg = RedisConfig {
        url: redis_url(),
        prefix: format!("gh-test-{}", uuid_like()),
        timeout: Duration::from_millis(500),
        ca_pem: None,
    };
    match RedisLimits::connect(cfg).await {
        Ok(r) => out.push(("redis", Arc::new(Limits::Redis(Box::new(r))))),
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => panic!("Redis is required under CI=true: {e}"),
        Err(e) => eprintln!("\n*** Redis unreachable ({e}): the Redis half of the limits suite is SKIPPED ***\n"),
    }
    out
}

fn uuid_like() -> String {
    format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos())
}

fn budget(key: &str, limit: u64) -> Budget {
    // kept a minute, so test keys do not linger in a shared Redis
    Budget { key: key.to_owned(), limit, retain: Some(Duration::from_secs(60)) }
}

#[tokio::test]
async fn a_rate_admits_its_burst_then_tells_when_the_next_fits() {
    for (name, l) in backends().await {
        let rate = Rate { per_minute: 600, burst: 5 };
        for left in (0..5).rev() {
            let d = l.rate("k1", rate, 1).await.unwrap();
            assert!(d.allowed, "{name}");
            assert_eq!(d.remaining, left, "{name}");
        }
        let d = l.rate("k1", rate, 1).await.unwrap();
        assert!(!d.allowed, "{name}");
        assert!(d.retry_after > Duration::ZERO && d.retry_after <= Duration::from_millis(100), "{name}: {d:?}");
        assert!(d.reset <= Duration::from_millis(500), "{name}: {d:?}");
        tokio::time::sleep(d.retry_after + Duration::from_millis(5)).await;
        assert!(l.rate("k1", rate, 1).await.unwrap().allowed, "{name}: one interval later one more fits");
        // other keys are independent
        assert!(l.rate("k2", rate, 1).await.unwrap().allowed, "{name}");
    }
}

#[tokio::test]
async fn several_rates_in_one_call_decide_each_on_its_own() {
    for (name, l) in backends().await {
        let tight = Rate { per_minute: 1, burst: 1 };
        let loose = Rate { per_minute: 600, burst: 5 };
        let first = l.rates(&[("m-a", tight, 1), ("m-b", loose, 2)]).await.unwrap();
        assert!(first[0].allowed && first[1].allowed, "{name}");
        assert_eq!((first[0].remaining, first[1].remaining), (0, 3), "{name}");
        let second = l.rates(&[("m-a", tight, 1), ("m-b", loose, 2)]).await.unwrap();
        assert!(!second[0].allowed && second[1].allowed, "{name}: each rate on its own");
        assert!(second[0].retry_after > Duration::from_secs(50), "{name}");
        // the same arithmetic as one call at a time
        assert_eq!(l.rate("m-b", loose, 1).await.unwrap().remaining, 0, "{name}");
        assert!(l.rates(&[]).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn a_token_rate_charged_an_estimate_is_corrected_to_the_count() {
    for (name, l) in backends().await {
        // 60 tokens a minute, all of it at once; nothing refills during the test
        let rate = Rate { per_minute: 60, burst: 60 };
        assert!(l.rate("tpm", rate, 50).await.unwrap().allowed, "{name}: an estimate of 50");
        assert!(!l.rate("tpm", rate, 20).await.unwrap().allowed, "{name}: 50 + 20 > 60");
        // the call used 30: 20 go back
        l.adjust("tpm", rate, -20).await.unwrap();
        let d = l.rate("tpm", rate, 20).await.unwrap();
        assert!(d.allowed && d.remaining <= 10, "{name}: 30 + 20 fits: {d:?}");
        // one that used more than estimated pays the difference without a check
        l.adjust("tpm", rate, 15).await.unwrap();
        assert!(!l.rate("tpm", rate, 1).await.unwrap().allowed, "{name}: 65 of 60");
        l.adjust("unknown", rate, -5).await.unwrap();
        assert!(l.rate("unknown", rate, 60).await.unwrap().allowed, "{name}: nothing was given to an unseen rate");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_rate_checks_admit_exactly_the_burst() {
    for (name, l) in backends().await {
        // 1 per minute sustained: nothing refills during the test
        let rate = Rate { per_minute: 1, burst: 25 };
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let l = l.clone();
                tokio::spawn(async move { l.rate("race", rate, 1).await.unwrap().allowed })
            })
            .collect();
        let mut admitted = 0;
        for t in tasks {
            admitted += usize::from(t.await.unwrap());
        }
        assert_eq!(admitted, 25, "{name}");
    }
}

#[tokio::test]
async fn reservations_count_until_settled_and_settle_counts_real_use() {
    for (name, l) in backends().await {
        let b = [budget("org-a", 100)];
        let hold = Duration::from_secs(60);
        let mut granted = Vec::new();
        for _ in 0..3 {
            match l.reserve(&b, 30, hold).await.unwrap() {
                Reserved::Granted(r) => granted.push(r),
                other => panic!("{name}: {other:?}"),
            }
        }
        assert_eq!(l.reserve(&b, 30, hold).await.unwrap(), Reserved::Exhausted { budget: 0 }, "{name}");
        assert_eq!(l.standing("org-a").await.unwrap(), Standing { spent: 0, reserved: 90 }, "{name}");
        assert_eq!(l.settle(&granted[0], 10).await.unwrap(), Some(vec![10]), "{name}: spend after the settle");
        assert_eq!(l.standing("org-a").await.unwrap(), Standing { spent: 10, reserved: 60 }, "{name}");
        // settling twice changes nothing
        assert_eq!(l.settle(&granted[0], 10).await.unwrap(), None, "{name}");
        assert_eq!(l.standing("org-a").await.unwrap(), Standing { spent: 10, reserved: 60 }, "{name}");
        assert!(matches!(l.reserve(&b, 30, hold).await.unwrap(), Reserved::Granted(_)), "{name}: 10 + 60 + 30 fits");
        assert_eq!(l.reserve(&b, 1, hold).await.unwrap(), Reserved::Exhausted { budget: 0 }, "{name}");
    }
}

#[tokio::test]
async fn a_reservation_over_several_budgets_is_all_or_nothing() {
    for (name, l) in backends().await {
        let hold = Duration::from_secs(60);
        let both = [budget("org", 100), budget("token", 20)];
        assert!(matches!(l.reserve(&both, 15, hold).await.unwrap(), Reserved::Granted(_)), "{name}");
        assert_eq!(l.reserve(&both, 10, hold).await.unwrap(), Reserved::Exhausted { budget: 1 }, "{name}");
        assert_eq!(l.standing("org").await.unwrap().reserved, 15, "{name}: the org kept nothing of the refused one");
        assert_eq!(l.standing("token").await.unwrap().reserved, 15, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reservations_never_overspend() {
    for (name, l) in backends().await {
        let b = vec![budget("shared", 70), budget("parent", 1_000)];
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let (l, b) = (l.clone(), b.clone());
                tokio::spawn(async move { l.reserve(&b, 7, Duration::from_secs(60)).await.unwrap() })
            })
            .collect();
        let mut granted = Vec::new();
        for t in tasks {
            if let Reserved::Granted(r) = t.await.unwrap() {
                granted.push(r);
            }
        }
        assert_eq!(granted.len(), 10, "{name}");
        // settle each at its real use; the ledger is the sum of real use
        let settles: Vec<_> = granted
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let l = l.clone();
                tokio::spawn(async move { l.settle(&r, i as u64).await.unwrap() })
            })
            .collect();
        for s in settles {
            s.await.unwrap();
        }
        assert_eq!(l.standing("shared").await.unwrap(), Standing { spent: 45, reserved: 0 }, "{name}");
        assert_eq!(l.standing("parent").await.unwrap(), Standing { spent: 45, reserved: 0 }, "{name}");
    }
}

#[tokio::test]
async fn an_unsettled_reservation_frees_itself_and_a_late_settle_still_counts() {
    for (name, l) in backends().await {
        let b = [budget("lapsing", 10)];
        let Reserved::Granted(r) = l.reserve(&b, 10, Duration::from_millis(150)).await.unwrap() else {
            panic!("{name}")
        };
        assert_eq!(l.reserve(&b, 1, Duration::from_secs(1)).await.unwrap(), Reserved::Exhausted { budget: 0 });
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(l.standing("lapsing").await.unwrap(), Standing { spent: 0, reserved: 0 }, "{name}");
        l.settle(&r, 4).await.unwrap();
        assert_eq!(l.standing("lapsing").await.unwrap().spent, 4, "{name}: spend is never lost");
    }
}

#[tokio::test]
async fn an_expired_hold_frees_its_room_once_and_its_late_settle_still_counts() {
    for (name, l) in backends().await {
        let b = [budget("swept", 10)];
        let old = granted(&l.reserve(&b, 10, Duration::from_millis(100)).await.unwrap());
        tokio::time::sleep(Duration::from_millis(200)).await;
        // the expired hold no longer counts: the whole budget is free again
        let new = granted(&l.reserve(&b, 10, Duration::from_secs(60)).await.unwrap());
        // the late settle counts the spend and frees nothing more (the room left with the expiry)
        assert_eq!(l.settle(&old, 4).await.unwrap(), Some(vec![4]), "{name}");
        assert_eq!(l.settle(&old, 4).await.unwrap(), None, "{name}: settled once");
        assert_eq!(l.standing("swept").await.unwrap(), Standing { spent: 4, reserved: 10 }, "{name}");
        assert_eq!(l.reserve(&b, 1, Duration::from_secs(60)).await.unwrap(), Reserved::Exhausted { budget: 0 });
        assert_eq!(l.settle(&new, 0).await.unwrap(), Some(vec![4]), "{name}");
        assert!(matches!(l.reserve(&b, 6, Duration::from_secs(60)).await.unwrap(), Reserved::Granted(_)), "{name}");
        assert_eq!(l.reserve(&b, 1, Duration::from_secs(60)).await.unwrap(), Reserved::Exhausted { budget: 0 });
    }
}

fn granted(r: &Reserved) -> Reservation {
    match r {
        Reserved::Granted(r) => r.clone(),
        other => panic!("not granted: {other:?}"),
    }
}

#[tokio::test]
async fn one_admission_decides_rates_and_asks_each_on_its_own() {
    for (name, l) in backends().await {
        let hold = Duration::from_secs(60);
        let tight = Rate { per_minute: 1, burst: 1 };
        let (usd, tokens) = ([budget("adm-org", 100), budget("adm-key", 80)], [budget("adm-project", 10)]);
        let asks = [Ask { budgets: &usd, amount: 30 }, Ask { budgets: &tokens, amount: 8 }];
        let first = l.admit(&[("adm-rate", tight, 1)], &asks, hold).await.unwrap();
        assert!(first.rates[0].allowed && first.rates[0].remaining == 0, "{name}: {first:?}");
        let (a, b) = (granted(&first.reserved[0]), granted(&first.reserved[1]));
        assert_ne!(a.id, b.id, "{name}: each ask its own reservation");
        assert_eq!((a.amount, b.amount), (30, 8), "{name}");
        // the rate refuses and the token ask is short; the USD ask still fits on its own
        let second = l.admit(&[("adm-rate", tight, 1)], &asks, hold).await.unwrap();
        assert!(!second.rates[0].allowed && second.rates[0].retry_after > Duration::from_secs(50), "{name}");
        let c = granted(&second.reserved[0]);
        assert_eq!(second.reserved[1], Reserved::Exhausted { budget: 0 }, "{name}");
        assert_eq!(l.standing("adm-key").await.unwrap(), Standing { spent: 0, reserved: 60 }, "{name}");
        assert_eq!(l.standing("adm-project").await.unwrap(), Standing { spent: 0, reserved: 8 }, "{name}");
        // a third USD ask is short on its second budget (the key's): the org keeps nothing of it
        let third = l.admit(&[], &asks[..1], hold).await.unwrap();
        assert!(third.rates.is_empty(), "{name}");
        assert_eq!(third.reserved, vec![Reserved::Exhausted { budget: 1 }], "{name}");
        assert_eq!(l.standing("adm-org").await.unwrap().reserved, 60, "{name}");

        // settled together: each answered in order, the spend after each; again: nothing
        let settles = [(&a, 20), (&b, 5), (&c, 0)];
        let after = l.settle_batch(&settles, &[]).await.unwrap();
        assert_eq!(after, vec![Some(vec![20, 20]), Some(vec![5]), Some(vec![20, 20])], "{name}");
        assert_eq!(l.standing("adm-org").await.unwrap(), Standing { spent: 20, reserved: 0 }, "{name}");
        assert_eq!(l.settle_batch(&settles, &[]).await.unwrap(), vec![None, None, None], "{name}: settled once");
        assert_eq!(l.standing("adm-project").await.unwrap(), Standing { spent: 5, reserved: 0 }, "{name}");
        assert!(l.settle_batch(&[], &[]).await.unwrap().is_empty(), "{name}");
    }
}

#[tokio::test]
async fn a_batch_on_one_budget_answers_each_settlement_with_the_spend_after_it() {
    for (name, l) in backends().await {
        let (shared, other) = ([budget("walk-a", 1_000), budget("walk-b", 1_000)], [budget("walk-b", 1_000)]);
        let first = granted(&l.reserve(&shared, 10, Duration::from_secs(60)).await.unwrap());
        let second = granted(&l.reserve(&other, 10, Duration::from_secs(60)).await.unwrap());
        let third = granted(&l.reserve(&shared, 10, Duration::from_secs(60)).await.unwrap());
        let batch = [(&first, 3), (&second, 4), (&first, 9), (&third, 5)];
        let after = l.settle_batch(&batch, &[]).await.unwrap();
        // the repeated receipt counts nothing; every later answer includes every earlier spend
        assert_eq!(after, vec![Some(vec![3, 3]), Some(vec![7]), None, Some(vec![8, 12])], "{name}");
        assert_eq!(l.standing("walk-a").await.unwrap(), Standing { spent: 8, reserved: 0 }, "{name}");
        assert_eq!(l.standing("walk-b").await.unwrap(), Standing { spent: 12, reserved: 0 }, "{name}");
        // the holds left the sums: the whole of each budget is free again
        assert!(matches!(l.reserve(&shared, 988, Duration::from_secs(60)).await.unwrap(), Reserved::Granted(_)));
    }
}

async fn pttl(con: &mut redis::aio::MultiplexedConnection, prefix: &str, kind: &str) -> i64 {
    redis::cmd("PTTL").arg(format!("{prefix}:{kind}:life")).query_async(con).await.unwrap()
}

/// Redis only: the keys a grant relies on outlive its hold and the hour of grace after it,
/// although the script pushes their expiry out once a minute rather than checking it per call.
#[tokio::test]
async fn redis_keys_outlive_the_holds_they_carry() {
    let prefix = format!("gh-test-{}", uuid_like());
    let cfg =
        RedisConfig { url: redis_url(), prefix: prefix.clone(), timeout: Duration::from_millis(500), ca_pem: None };
    let l = match RedisLimits::connect(cfg).await {
        Ok(r) => Limits::Redis(Box::new(r)),
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => panic!("Redis is required under CI=true: {e}"),
        Err(e) => return eprintln!("\n*** Redis unreachable ({e}): SKIPPED ***\n"),
    };
    let mut con = redis::Client::open(redis_url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let hold = Duration::from_secs(120);
    let grace_ms: i64 = 3_600_000;
    let b = [budget("life", 100)];
    let r = granted(&l.reserve(&b, 10, hold).await.unwrap());
    for kind in ["live", "held", "tended"] {
        let ttl = pttl(&mut con, &prefix, kind).await;
        assert!(ttl > 120_000 + grace_ms, "{kind}: {ttl} ms");
    }
    // every hold settled: Redis deletes the emptied set; the next grant makes it anew, with an expiry
    l.settle(&r, 1).await.unwrap();
    assert_eq!(pttl(&mut con, &prefix, "live").await, -2, "the empty set is gone");
    granted(&l.reserve(&b, 10, hold).await.unwrap());
    let ttl = pttl(&mut con, &prefix, "live").await;
    assert!(ttl > 120_000 + grace_ms, "a set made anew keeps the tended expiry: {ttl} ms");
    // a longer hold than the keys were tended for pushes them out at once
    let long = Duration::from_secs(7_200);
    granted(&l.reserve(&b, 10, long).await.unwrap());
    for kind in ["live", "held", "tended"] {
        let ttl = pttl(&mut con, &prefix, kind).await;
        assert!(ttl > 7_200_000 + grace_ms, "{kind}: {ttl} ms");
    }
}

#[tokio::test]
async fn a_settlement_batch_corrects_token_rates_after_settling() {
    for (name, l) in backends().await {
        let rate = Rate { per_minute: 60, burst: 60 };
        let b = [budget("batch-b", 1_000)];
        assert!(l.rate("batch-tpm", rate, 50).await.unwrap().allowed, "{name}");
        let r = granted(&l.reserve(&b, 100, Duration::from_secs(60)).await.unwrap());
        // a batch larger than one script call's chunk still answers every settlement in order
        let others: Vec<Reservation> =
            (0..300).map(|i| Reservation { id: format!("never-held-{i}"), amount: 1, budgets: b.to_vec() }).collect();
        let mut settles: Vec<(&Reservation, u64)> = others.iter().map(|o| (o, 1)).collect();
        settles.insert(150, (&r, 70));
        let after = l.settle_batch(&settles, &[("batch-tpm", rate, -40), ("batch-unseen", rate, -5)]).await.unwrap();
        assert_eq!(after.len(), 301, "{name}");
        assert_eq!(after[150], Some(vec![70]), "{name}");
        assert!(after.iter().enumerate().all(|(i, a)| i == 150 || a.is_none()), "{name}: no receipt, no spend");
        assert_eq!(l.standing("batch-b").await.unwrap(), Standing { spent: 70, reserved: 0 }, "{name}");
        let d = l.rate("batch-tpm", rate, 45).await.unwrap();
        assert!(d.allowed, "{name}: 10 + 45 fits after 40 came back: {d:?}");
        assert!(l.rate("batch-unseen", rate, 60).await.unwrap().allowed, "{name}");
    }
}

#[tokio::test]
async fn an_unreachable_redis_is_unavailable_within_the_timeout() {
    let cfg = RedisConfig {
        url: "redis://127.0.0.1:1/0".into(),
        prefix: "x".into(),
        timeout: Duration::from_millis(300),
        ca_pem: None,
    };
    let started = std::time::Instant::now();
    assert!(RedisLimits::connect(cfg).await.is_err());
    assert!(started.elapsed() < Duration::from_secs(2));
    // an established connection whose server goes away answers Unavailable, not a hang: shown
    // by the gateway-level kill test (#7); here the type says what callers get
    let _: Unavailable = Unavailable;
}
