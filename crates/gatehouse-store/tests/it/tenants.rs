use gatehouse_store::{Error, Store};

use crate::both_backends;

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
