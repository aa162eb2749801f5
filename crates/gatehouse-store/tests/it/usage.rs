//! The usage ledger: exactly once per request, sums per day/project/credential/model, scoped
//! by org, filters, pruning by age.

use gatehouse_store::{Store, UsageFilter, UsageRecord, now_ms, utc_day};
use gatehouse_testkit::both_backends;

fn rec(id: &str, org: &str, at: i64, project: &str, model: &str, prompt: i64, cost: i64) -> UsageRecord {
    UsageRecord {
        request_id: id.into(),
        at,
        org_id: org.into(),
        project_id: project.into(),
        credential: "key:k1".into(),
        model: model.into(),
        provider: "east".into(),
        provider_credential: String::new(),
        prompt_tokens: prompt,
        completion_tokens: 2 * prompt,
        cached_tokens: 0,
        cost_micro_usd: cost,
    }
}

both_backends!(usage_is_recorded_once_summed_per_day_and_scoped, |store: Store| async move {
    let a = store.create_org("usage-a").await.unwrap();
    let b = store.create_org("usage-b").await.unwrap();
    let (oa, ob) = (a.to_string(), b.to_string());
    let now = now_ms();
    let yesterday = now - 86_400_000;
    store
        .record_usage(&[
            rec("r1", &oa, now, "p1", "gpt", 10, 1_000),
            rec("r2", &oa, now, "p1", "gpt", 5, 500),
            rec("r3", &oa, now, "p2", "claude", 7, 700),
            rec("r4", &oa, yesterday, "p1", "gpt", 1, 100),
            rec("r5", &ob, now, "p1", "gpt", 99, 9_900),
        ])
        .await
        .unwrap();
    // a retried write of the same requests changes nothing
    store.record_usage(&[rec("r1", &oa, now, "p1", "gpt", 10, 1_000)]).await.unwrap();

    let all = store.usage(a, &UsageFilter::default()).await.unwrap();
    assert_eq!(all.len(), 3, "{all:?}");
    let today = utc_day(now);
    let gpt = all.iter().find(|t| t.day == today && t.model == "gpt").unwrap();
    assert_eq!((gpt.requests, gpt.prompt_tokens, gpt.completion_tokens, gpt.cost_micro_usd), (2, 15, 30, 1_500));
    assert_eq!(all[0].day, today, "newest day first");
    let total: i64 = all.iter().map(|t| t.cost_micro_usd).sum();
    assert_eq!(total, 2_300, "the ledger is the sum of what each request used, once");

    let p2 = UsageFilter { project_id: Some("p2".into()), ..UsageFilter::default() };
    assert_eq!(store.usage(a, &p2).await.unwrap().len(), 1);
    let old = UsageFilter { to_day: Some(utc_day(yesterday)), ..UsageFilter::default() };
    assert_eq!(store.usage(a, &old).await.unwrap()[0].prompt_tokens, 1);
    let other = store.usage(b, &UsageFilter::default()).await.unwrap();
    assert_eq!(other.len(), 1, "another org's usage is its own");

    // a model served by two deployments: its usage reads per provider
    let west = UsageRecord { provider: "west".into(), ..rec("r6", &oa, now, "p1", "gpt", 3, 300) };
    store.record_usage(&[west]).await.unwrap();
    let by_provider = store.usage(a, &UsageFilter::default()).await.unwrap();
    let gpt_today: Vec<_> = by_provider.iter().filter(|t| t.day == today && t.model == "gpt").collect();
    assert_eq!(gpt_today.len(), 2, "one line per provider: {gpt_today:?}");
    let w = UsageFilter { provider: Some("west".into()), ..UsageFilter::default() };
    let west_only = store.usage(a, &w).await.unwrap();
    assert_eq!((west_only.len(), west_only[0].prompt_tokens), (1, 3));

    assert_eq!(store.prune_usage(now - 3_600_000).await.unwrap(), 1, "only yesterday's row is old enough");
    assert_eq!(store.usage(a, &UsageFilter::default()).await.unwrap().len(), 3);
});

both_backends!(a_large_batch_is_written_whole_across_statements, |store: Store| async move {
    let id = store.create_org("usage-many").await.unwrap();
    let org = id.to_string();
    let now = now_ms();
    // more rows than one statement carries, with a retried request inside the same batch
    let mut rows: Vec<UsageRecord> = (0..600).map(|i| rec(&format!("m{i}"), &org, now, "p1", "gpt", 1, 10)).collect();
    rows.push(rec("m7", &org, now, "p1", "gpt", 1, 10));
    store.record_usage(&rows).await.unwrap();
    let totals = store.usage(id, &UsageFilter::default()).await.unwrap();
    assert_eq!((totals[0].requests, totals[0].cost_micro_usd), (600, 6_000));
});
