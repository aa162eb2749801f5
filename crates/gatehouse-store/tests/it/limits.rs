//! Limit policies per scope (one per org, project and key; scoped by org) and the in-process
//! store's persisted budget spend (added up, expired rows dropped).

use gatehouse_core::{KeyId, OrgId, ProjectId};
use gatehouse_store::{BudgetSpend, LimitScope, Store, now_ms};
use gatehouse_testkit::both_backends;

both_backends!(limit_policies_per_scope_are_scoped_by_org, |store: Store| async move {
    let (org, other) = (OrgId::generate(), OrgId::generate());
    let (project, key) = (ProjectId::generate(), KeyId::generate());
    for (scope, spec) in [
        (LimitScope::Org, r#"{"rpm":1}"#),
        (LimitScope::Project(project), r#"{"rpm":2}"#),
        (LimitScope::Key(key), r#"{"rpm":3}"#),
    ] {
        store.put_limit_policy(org, scope, spec, "token:t").await.unwrap();
        assert_eq!(store.limit_policy(org, scope).await.unwrap().unwrap().spec, spec);
        assert!(store.limit_policy(other, scope).await.unwrap().is_none(), "another org does not see it");
    }
    store.put_limit_policy(org, LimitScope::Key(key), r#"{"rpm":4}"#, "token:u").await.unwrap();
    let all = store.all_limit_policies().await.unwrap();
    assert_eq!(all.len(), 3);
    let k = all.iter().find(|r| r.key_id == key.to_string()).unwrap();
    assert_eq!((k.spec.as_str(), k.updated_by.as_str(), k.project_id.as_str()), (r#"{"rpm":4}"#, "token:u", ""));
    assert!(!store.delete_limit_policy(other, LimitScope::Key(key)).await.unwrap());
    assert!(store.delete_limit_policy(org, LimitScope::Key(key)).await.unwrap());
    assert!(!store.delete_limit_policy(org, LimitScope::Key(key)).await.unwrap());
    assert_eq!(store.all_limit_policies().await.unwrap().len(), 2);
});

both_backends!(budget_spend_adds_up_and_expires, |store: Store| async move {
    let now = now_ms();
    let row = |b: &str, spent, expires_at| BudgetSpend { budget: b.into(), spent, expires_at };
    store
        .add_budget_spend(&[row("b:a", 5, None), row("b:d", 7, Some(now + 60_000)), row("b:old", 1, Some(now - 1))])
        .await
        .unwrap();
    store.add_budget_spend(&[row("b:a", 10, None), row("b:d", 1, Some(now + 999_999))]).await.unwrap();
    let rows = store.budget_spends(now).await.unwrap();
    assert_eq!(rows, [row("b:a", 15, None), row("b:d", 8, Some(now + 60_000))], "the first expiry stays");
});
