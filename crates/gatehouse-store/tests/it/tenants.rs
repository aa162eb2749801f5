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
        cors_origins: Some(vec!["https://app.example".to_owned()]),
    };
    assert!(store.update_project(a, p, &settings).await.unwrap());
    let row = store.project(a, p).await.unwrap().unwrap();
    assert_eq!(row.name, "web2");
    assert_eq!(row.allowed_models, Some(models));
    assert_eq!(row.default_limits, Some(serde_json::json!({"rpm": 60})));
    assert_eq!(row.cors_origins, Some(vec!["https://app.example".to_owned()]));
    // the union preflights answer for: enabled projects of enabled orgs only
    let c = store.create_org("gamma").await.unwrap();
    let q = store.create_project(c, "site").await.unwrap();
    let site = gatehouse_store::ProjectSettings {
        name: "site".into(),
        cors_origins: Some(vec!["https://app.example".to_owned(), "https://b.example".to_owned()]),
        ..Default::default()
    };
    assert!(store.update_project(c, q, &site).await.unwrap());
    assert_eq!(store.project_cors_origins().await.unwrap(), ["https://app.example", "https://b.example"]);
    assert!(store.set_org_disabled(c, true).await.unwrap());
    assert_eq!(store.project_cors_origins().await.unwrap(), ["https://app.example"]);
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
    let by_email = store.member_by_email(a, "Ann@Example.COM").await.unwrap().unwrap();
    assert_eq!((by_email.user, by_email.role.as_str()), (ann, "org_admin"), "an address is found whatever its case");
    assert_eq!(store.member_by_email(b, "ann@example.com").await.unwrap(), None, "and only in an org it belongs to");
    assert_eq!(store.member_by_email(a, "ann@example.co").await.unwrap(), None);
    assert_eq!(store.list_members(a, None, 10).await.unwrap().len(), 1);
    assert!(store.list_members(b, None, 10).await.unwrap().is_empty());

    store.insert_admin_token("t-ann", "ann", &[42; 32], "org_admin", Some(a), Some(ann)).await.unwrap();
    assert!(store.remove_membership(a, ann).await.unwrap());
    assert!(!store.remove_membership(a, ann).await.unwrap());
    let token = store.admin_token_by_digest(&[42; 32]).await.unwrap().unwrap();
    assert!(token.revoked_at.is_some(), "leaving an org revokes the tokens that acted there");
});

both_backends!(a_members_console_sessions_end_with_their_membership_or_their_role, |store: Store| async move {
    let org = store.create_org("sessions-org").await.unwrap();
    let user = store.ensure_user("ann@example.com", "Ann", "human").await.unwrap();
    store.set_membership(org, user, "org_admin").await.unwrap();
    let now = gatehouse_store::now_ms();
    let st = &store;
    let session = |id: &'static str, digest: [u8; 32], role: &'static str| async move {
        let id = format!("0190f4b8-0000-7000-8000-00000000000{id}");
        let s = gatehouse_store::NewSession {
            id: &id,
            digest: &digest,
            csrf: "c",
            method: "oidc",
            actor: "oidc:corp:ann",
            token_id: None,
            role,
            org: Some(org),
            user: Some(user),
            source: None,
            now,
            expires_at: now + 60_000,
        };
        st.create_console_session(&s).await.unwrap();
    };
    let live = |digest: [u8; 32]| async move { st.live_console_session(&digest, now, now - 60_000).await.unwrap() };
    session("1", [1; 32], "org_admin").await;
    // the same role again (a sign-in refreshing it) leaves the session be; another ends it
    store.set_membership(org, user, "org_admin").await.unwrap();
    assert!(live([1; 32]).await.is_some());
    store.set_membership(org, user, "viewer").await.unwrap();
    assert!(live([1; 32]).await.is_none());
    // removal ends every session the person has in the org
    session("2", [2; 32], "viewer").await;
    assert!(live([2; 32]).await.is_some());
    assert!(store.remove_membership(org, user).await.unwrap());
    assert!(live([2; 32]).await.is_none());
});
