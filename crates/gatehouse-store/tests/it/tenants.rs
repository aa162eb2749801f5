use gatehouse_store::{Error, Store};

use gatehouse_testkit::both_backends;

both_backends!(default_tenant_is_idempotent, |store: Store| async move {
    let a = store.ensure_default_tenant().await.unwrap();
    let b = store.ensure_default_tenant().await.unwrap();
    assert_eq!(a, b);
    assert_eq!(store.org_by_name("default").await.unwrap(), Some(a.org));
    assert_eq!(store.project_by_name(a.org, "default").await.unwrap(), Some(a.project));
    store.ping().await.unwrap();
});

both_backends!(projects_are_scoped_by_org, |store: Store| async move {
    let acme = store.create_org("acme").await.unwrap();
    let globex = store.create_org("globex").await.unwrap();
    let p = store.create_project(acme, "web").await.unwrap();
    assert_eq!(store.project_by_name(acme, "web").await.unwrap(), Some(p));
    assert_eq!(store.project_by_name(globex, "web").await.unwrap(), None);
    // the same project name in another org is fine; twice in one org is a conflict
    store.create_project(globex, "web").await.unwrap();
    assert!(matches!(store.create_project(acme, "web").await, Err(Error::Conflict)));
    assert!(matches!(store.create_org("acme").await, Err(Error::Conflict)));
});

both_backends!(orgs_and_projects_list_get_and_update, |store: Store| async move {
    let a = store.create_org("alpha").await.unwrap();
    let b = store.create_org("beta").await.unwrap();
    let orgs = store.list_orgs(None, 10).await.unwrap();
    assert_eq!(orgs.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(), ["alpha", "beta"]);
    assert_eq!(store.list_orgs(Some(a), 10).await.unwrap().len(), 1, "pagination by id");
    assert!(store.rename_org(b, "beta2").await.unwrap());
    assert_eq!(store.org(b).await.unwrap().unwrap().name, "beta2");

    let p = store.create_project(a, "web").await.unwrap();
    let models = vec!["mock".to_owned()];
    let settings = gatehouse_store::ProjectSettings {
        name: "web2".into(),
        allowed_models: Some(models.clone()),
        default_limits: Some(serde_json::json!({"rpm": 60})),
    };
    assert!(store.update_project(a, p, &settings).await.unwrap());
    let row = store.project(a, p).await.unwrap().unwrap();
    assert_eq!(row.name, "web2");
    assert_eq!(row.allowed_models, Some(models));
    assert_eq!(row.default_limits, Some(serde_json::json!({"rpm": 60})));
    assert_eq!(store.project(b, p).await.unwrap(), None, "another org's project is not found");
    let x = gatehouse_store::ProjectSettings { name: "x".into(), ..Default::default() };
    assert!(!store.update_project(b, p, &x).await.unwrap());
    assert_eq!(store.list_projects(a, None, 10).await.unwrap().len(), 1);
    assert!(store.list_projects(b, None, 10).await.unwrap().is_empty());
});

both_backends!(members_have_one_role_per_org, |store: Store| async move {
    let a = store.create_org("alpha").await.unwrap();
    let b = store.create_org("beta").await.unwrap();
    let ann = store.ensure_user("ann@example.com", "Ann", "human").await.unwrap();
    assert_eq!(store.ensure_user("ann@example.com", "Ann again", "human").await.unwrap(), ann, "one user per email");
    store.set_membership(a, ann, "viewer").await.unwrap();
    store.set_membership(a, ann, "org_admin").await.unwrap();
    assert_eq!(store.member(a, ann).await.unwrap().unwrap().role, "org_admin");
    assert_eq!(store.member(b, ann).await.unwrap(), None, "membership is per org");
    assert_eq!(store.list_members(a, None, 10).await.unwrap().len(), 1);
    assert!(store.list_members(b, None, 10).await.unwrap().is_empty());

    store.insert_admin_token("t-ann", "ann", &[42; 32], "org_admin", Some(a), Some(ann)).await.unwrap();
    assert!(store.remove_membership(a, ann).await.unwrap());
    assert!(!store.remove_membership(a, ann).await.unwrap());
    let token = store.admin_token_by_digest(&[42; 32]).await.unwrap().unwrap();
    assert!(token.revoked_at.is_some(), "leaving an org revokes the tokens that acted there");
});
