use gatehouse_core::KeyId;
use gatehouse_store::{NewKey, Store, now_ms};

use gatehouse_testkit::both_backends;

fn new_key(t: &gatehouse_store::Tenant, digest: u8, models: Option<Vec<String>>) -> NewKey {
    NewKey {
        id: KeyId::generate(),
        org: t.org,
        project: t.project,
        name: format!("key-{digest}"),
        digest: [digest; 32],
        hint: "gth_abcd…".to_owned(),
        allowed_models: models,
        created_at: now_ms(),
        expires_at: Some(now_ms() + 60_000),
        user: None,
    }
}

both_backends!(key_round_trip_by_digest_and_id, |store: Store| async move {
    let t = store.ensure_default_tenant().await.unwrap();
    let k = new_key(&t, 1, Some(vec!["mock".into(), "gpt-4o".into()]));
    store.insert_key(&k).await.unwrap();

    let row = store.key_by_digest(&[1; 32]).await.unwrap().unwrap();
    assert_eq!(row.id, k.id);
    assert_eq!(row.org, t.org);
    assert_eq!(row.allowed_models.as_deref(), Some(&["mock".to_owned(), "gpt-4o".to_owned()][..]));
    assert_eq!(row.expires_at, k.expires_at);
    assert_eq!(row.revoked_at, None);
    assert_eq!(store.key(t.org, k.id).await.unwrap(), Some(row));
    assert_eq!(store.key_by_digest(&[2; 32]).await.unwrap(), None);
});

both_backends!(keys_are_invisible_across_orgs, |store: Store| async move {
    let t = store.ensure_default_tenant().await.unwrap();
    let other = store.create_org("other").await.unwrap();
    let k = new_key(&t, 3, None);
    store.insert_key(&k).await.unwrap();

    assert_eq!(store.key(other, k.id).await.unwrap(), None);
    assert!(store.list_keys(other, None, None, 100).await.unwrap().is_empty());
    assert_eq!(store.revoke_key(other, k.id).await.unwrap(), None, "another org must not revoke it");
    assert_eq!(store.key(t.org, k.id).await.unwrap().unwrap().revoked_at, None);
});

both_backends!(revocation_is_recorded_once_and_visible_to_pollers, |store: Store| async move {
    let t = store.ensure_default_tenant().await.unwrap();
    let before = now_ms();
    let a = new_key(&t, 4, None);
    let b = new_key(&t, 5, None);
    store.insert_key(&a).await.unwrap();
    store.insert_key(&b).await.unwrap();

    assert_eq!(store.revoke_key(t.org, a.id).await.unwrap(), Some([4; 32]));
    assert_eq!(store.revoke_key(t.org, a.id).await.unwrap(), None, "second revoke is a no-op");

    let changed = store.keys_changed_since(before).await.unwrap();
    assert!(changed.contains(&[4; 32]));
    let after = now_ms() + 1;
    assert!(store.keys_changed_since(after).await.unwrap().is_empty());
    assert!(store.key_by_digest(&[4; 32]).await.unwrap().unwrap().revoked_at.is_some());

    let listed = store.list_keys(t.org, Some(t.project), None, 10).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].id, b.id, "newest first");
    let first = store.list_keys(t.org, Some(t.project), None, 1).await.unwrap();
    assert_eq!(first.len(), 1);
    let next = store.list_keys(t.org, Some(t.project), Some(first[0].id), 10).await.unwrap();
    assert_eq!(next.len(), 1, "the next page starts after the last id");
    assert_eq!(next[0].id, a.id);
});

both_backends!(duplicate_digest_is_a_conflict, |store: Store| async move {
    let t = store.ensure_default_tenant().await.unwrap();
    store.insert_key(&new_key(&t, 6, None)).await.unwrap();
    assert!(matches!(store.insert_key(&new_key(&t, 6, None)).await, Err(gatehouse_store::Error::Conflict)));
});

both_backends!(admin_tokens, |store: Store| async move {
    assert_eq!(store.admin_token_count().await.unwrap(), 0);
    store.insert_admin_token("tok1", "bootstrap", &[9; 32], "platform_admin", None, None).await.unwrap();
    assert_eq!(store.admin_token_count().await.unwrap(), 1);
    let row = store.admin_token_by_digest(&[9; 32]).await.unwrap().unwrap();
    assert_eq!(row.name, "bootstrap");
    assert_eq!(row.role, "platform_admin");
    assert_eq!(row.org, None);
    assert_eq!(store.admin_token_by_digest(&[8; 32]).await.unwrap(), None);
});

both_backends!(disabling_an_org_or_project_disables_its_keys, |store: Store| async move {
    let t = store.ensure_default_tenant().await.unwrap();
    let other = store.create_project(t.org, "other").await.unwrap();
    let a = new_key(&t, 10, None);
    let mut b = new_key(&t, 11, None);
    b.project = other;
    store.insert_key(&a).await.unwrap();
    store.insert_key(&b).await.unwrap();
    let usable = |d: u8| {
        let store = store.clone();
        async move { store.key_by_digest(&[d; 32]).await.unwrap().unwrap().is_usable() }
    };
    assert!(usable(10).await && usable(11).await);

    // the change feed has millisecond resolution: step past the keys' creation time
    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    let before = now_ms();
    assert!(store.set_project_disabled(t.org, other, true).await.unwrap());
    assert!(usable(10).await, "other projects are untouched");
    assert!(!usable(11).await);
    assert_eq!(store.keys_changed_since(before).await.unwrap(), vec![[11; 32]]);

    assert!(store.set_org_disabled(t.org, true).await.unwrap());
    assert!(!usable(10).await && !usable(11).await);
    assert!(store.set_org_disabled(t.org, false).await.unwrap());
    assert!(usable(10).await, "re-enabling the org restores its keys");
    assert!(!usable(11).await, "the project is still disabled");
    assert!(store.set_project_disabled(t.org, other, false).await.unwrap());
    assert!(usable(11).await);

    let stranger = store.create_org("stranger").await.unwrap();
    assert!(!store.set_project_disabled(stranger, other, true).await.unwrap(), "scoped by org");
    assert!(usable(11).await);
});

both_backends!(last_use_only_moves_forward_and_is_not_a_change, |store: Store| async move {
    let t = store.ensure_default_tenant().await.unwrap();
    let k = new_key(&t, 40, None);
    store.insert_key(&k).await.unwrap();
    assert_eq!(store.key(t.org, k.id).await.unwrap().unwrap().last_used_at, None);
    let feed_from = now_ms() + 1;

    assert_eq!(store.touch_keys(&[(k.id, 2_000)]).await.unwrap(), 1);
    // a replica that flushes late with an older use does not move it back
    assert_eq!(store.touch_keys(&[(k.id, 1_000)]).await.unwrap(), 0);
    assert_eq!(store.key(t.org, k.id).await.unwrap().unwrap().last_used_at, Some(2_000));
    // an unknown key is no error: it may have been deleted meanwhile
    assert_eq!(store.touch_keys(&[(KeyId::generate(), 3_000), (k.id, 3_000)]).await.unwrap(), 1);
    assert_eq!(store.key_by_digest(&[40; 32]).await.unwrap().unwrap().last_used_at, Some(3_000));
    // recording use is not a change in standing: no replica evicts the key for it
    assert!(!store.keys_changed_since(feed_from).await.unwrap().contains(&[40; 32]));
});
