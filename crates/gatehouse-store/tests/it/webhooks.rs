//! Webhook rows: scoping by org, and the delivery lease (one claimant per due row).

use gatehouse_store::{Attempt, NewDelivery, Store, WebhookRow, now_ms};
use gatehouse_testkit::both_backends;

fn hook(id: &str, org: Option<String>) -> WebhookRow {
    WebhookRow {
        id: id.into(),
        org_id: org,
        name: "n".into(),
        kind: "slack".into(),
        url: "https://hooks.example.com/x".into(),
        secret: None,
        events: "[\"*\"]".into(),
        outcomes: None,
        created_at: now_ms(),
    }
}

both_backends!(webhooks_are_scoped_and_deliveries_leased, |store: Store| async move {
    let a = store.create_org("alpha").await.unwrap();
    let b = store.create_org("beta").await.unwrap();
    store.create_webhook(&hook("w1", Some(a.to_string()))).await.unwrap();
    store.create_webhook(&hook("w0", None)).await.unwrap();
    assert_eq!(store.list_webhooks(Some(a)).await.unwrap().len(), 1);
    assert_eq!(store.list_webhooks(None).await.unwrap()[0].id, "w0", "platform webhooks are their own scope");
    assert!(store.webhook(Some(b), "w1").await.unwrap().is_none(), "another org's webhook is not found");
    assert!(!store.delete_webhook(Some(b), "w1").await.unwrap());

    let org = a.to_string();
    let mut tx = store.begin_audit().await.unwrap();
    for e in ["e1", "e2"] {
        let d = NewDelivery { webhook_id: "w1", org_id: Some(&org), event_id: e, action: "key.create", payload: "{}" };
        tx.insert_delivery(&d).await.unwrap();
    }
    tx.commit().await.unwrap();
    let first = store.claim_deliveries(10, 60_000).await.unwrap();
    assert_eq!(first.len(), 2);
    assert!(store.claim_deliveries(10, 60_000).await.unwrap().is_empty(), "leased rows are not claimed twice");
    let retry = Attempt {
        status: "pending",
        attempts: 1,
        next_at: now_ms() + 60_000,
        last_status: Some(500),
        last_error: None,
    };
    store.record_attempt(&first[0].id, &retry).await.unwrap();
    let done =
        Attempt { status: "delivered", attempts: 1, next_at: now_ms(), last_status: Some(200), last_error: None };
    store.record_attempt(&first[1].id, &done).await.unwrap();
    assert!(store.claim_deliveries(10, 60_000).await.unwrap().is_empty(), "not due yet, or done");
    let log = store.list_deliveries(Some(a), "w1", None, 10).await.unwrap();
    assert_eq!(log.len(), 2);
    // pages of one: newest first, the second page goes on from the first's last row
    let first_page = store.list_deliveries(Some(a), "w1", None, 1).await.unwrap();
    let cursor = (first_page[0].created_at, first_page[0].id.as_str());
    let second_page = store.list_deliveries(Some(a), "w1", Some(cursor), 1).await.unwrap();
    assert_eq!(vec![first_page[0].id.clone(), second_page[0].id.clone()], vec![log[0].id.clone(), log[1].id.clone()]);
    assert!(store.list_deliveries(Some(a), "w1", Some((log[1].created_at, &log[1].id)), 1).await.unwrap().is_empty());
    assert!(store.list_deliveries(Some(b), "w1", None, 10).await.unwrap().is_empty());
    assert!(store.delete_webhook(Some(a), "w1").await.unwrap());
    assert!(store.all_webhooks().await.unwrap().iter().all(|w| w.id != "w1"));
});
