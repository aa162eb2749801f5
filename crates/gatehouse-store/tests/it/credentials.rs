//! Stored provider credentials and data keys: versions with an overlap window, scoped by
//! tenant, data keys kept once per version (issue #19).

use gatehouse_store::{CredentialRow, RootKeyRow, SealedColumn, Store, now_ms};
use gatehouse_testkit::both_backends;

fn row(id: &str, org: &str, provider: &str, version: i64) -> CredentialRow {
    CredentialRow {
        id: id.into(),
        org_id: org.into(),
        project_id: String::new(),
        provider: provider.into(),
        version,
        key_version: 1,
        sealed: format!("v1.sealed-{id}"),
        hint: "sk-...abcd".into(),
        created_at: now_ms(),
        created_by: "test".into(),
        retire_at: None,
    }
}

both_backends!(credentials_rotate_with_an_overlap_and_stay_in_their_tenant, |store: Store| async move {
    let a = store.create_org("cred-a").await.unwrap();
    let b = store.create_org("cred-b").await.unwrap();
    let (oa, ob) = (a.to_string(), b.to_string());

    // data keys: one per version, the first writer wins a race
    assert_eq!(store.data_key(&oa).await.unwrap(), None);
    assert!(store.insert_data_key(&oa, 1, "wrapped-1").await.unwrap());
    assert!(!store.insert_data_key(&oa, 1, "wrapped-other").await.unwrap(), "a version is written once");
    assert!(store.insert_data_key(&oa, 2, "wrapped-2").await.unwrap());
    assert_eq!(store.data_key(&oa).await.unwrap(), Some((2, "wrapped-2".to_owned())), "the newest");
    assert_eq!(store.data_key_version(&oa, 1).await.unwrap().as_deref(), Some("wrapped-1"));
    assert_eq!(store.data_key(&ob).await.unwrap(), None, "per tenant");

    // versions: a rotation keeps the old one serving for the overlap window
    assert_eq!(store.next_credential_version(Some(a), None, "openai").await.unwrap(), 1);
    store.insert_credential(&row("c1", &oa, "openai", 1), 60_000).await.unwrap();
    assert_eq!(store.next_credential_version(Some(a), None, "openai").await.unwrap(), 2);
    store.insert_credential(&row("c2", &oa, "openai", 2), 60_000).await.unwrap();
    assert!(store.insert_credential(&row("c3", &oa, "openai", 2), 60_000).await.is_err(), "a version is taken once");
    let now = now_ms();
    let serving = store.serving_credentials(now).await.unwrap();
    let mine: Vec<&str> = serving.iter().filter(|r| r.org_id == oa).map(|r| r.id.as_str()).collect();
    assert_eq!(mine, ["c2", "c1"], "both serve during the overlap, newest first");
    let later = store.serving_credentials(now + 120_000).await.unwrap();
    assert_eq!(later.iter().filter(|r| r.org_id == oa).count(), 1, "the old one retired");
    // a rotation with no overlap retires the old version at once
    store.insert_credential(&row("c4", &oa, "openai", 3), 0).await.unwrap();
    let now = now_ms() + 1;
    assert_eq!(store.serving_credentials(now).await.unwrap().iter().filter(|r| r.org_id == oa).count(), 1);

    // tenants: listing and deleting see only their own
    store.insert_credential(&row("p1", "", "openai", 1), 0).await.unwrap();
    assert_eq!(store.credentials(Some(b)).await.unwrap(), vec![]);
    assert_eq!(store.credentials(None).await.unwrap().len(), 1, "the platform's");
    assert!(!store.delete_credential(Some(b), "c4").await.unwrap(), "another tenant's is not found");
    assert!(!store.delete_credential(None, "c4").await.unwrap());
    assert!(store.delete_credential(Some(a), "c4").await.unwrap());
    assert_eq!(store.credentials(Some(a)).await.unwrap().len(), 2);
});

both_backends!(
    a_master_key_rotation_lists_every_sealed_value_and_replaces_each_by_compare_and_set,
    |store: Store| async move {
        let org = store.create_org("reseal").await.unwrap().to_string();
        store.insert_data_key(&org, 1, "old-data-key").await.unwrap();
        let root = RootKeyRow {
            org_id: org.clone(),
            version: 1,
            sealed: "old-root-key".into(),
            created_at: now_ms(),
            retire_at: None,
            superseded_at: None,
        };
        store.insert_root_key(&root).await.unwrap();
        let purpose = format!("test-{org}");
        store.insert_root_secret(&purpose, "old-pinned").await.unwrap();
        store.insert_root_secret(&purpose, "another").await.unwrap();
        assert_eq!(store.root_secret(&purpose).await.unwrap().as_deref(), Some("old-pinned"), "pinned once");

        for (column, owner, old) in [
            (SealedColumn::DataKeys, org.as_str(), "old-data-key"),
            (SealedColumn::CapabilityRootKeys, org.as_str(), "old-root-key"),
            (SealedColumn::RootSecrets, purpose.as_str(), "old-pinned"),
        ] {
            let values = store.sealed_values(column).await.unwrap();
            let mine = values.iter().find(|v| v.owner == owner).unwrap_or_else(|| panic!("{column:?} lists the row"));
            assert_eq!(mine.sealed, old);
            assert!(store.reseal(column, mine, "new").await.unwrap(), "{column:?} replaced");
            assert!(!store.reseal(column, mine, "newer").await.unwrap(), "{column:?}: a stale compare-and-set loses");
            let after = store.sealed_values(column).await.unwrap();
            assert_eq!(after.iter().find(|v| v.owner == owner).unwrap().sealed, "new", "{column:?}");
        }
        assert_eq!(store.data_key_version(&org, 1).await.unwrap().as_deref(), Some("new"));
        assert_eq!(store.root_secret(&purpose).await.unwrap().as_deref(), Some("new"));
    }
);
