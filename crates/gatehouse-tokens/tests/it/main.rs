//! Capability tokens against a real store (SQLite and PostgreSQL): mint, verify, attenuate,
//! delegate, revoke a subtree, rotate root keys.

#![expect(clippy::unwrap_used, reason = "test harness code: a failed setup must fail the test loudly")]

mod macaroon_format;
mod macaroon_vectors;

use std::time::Duration;

use gatehouse_core::scope::ScopePattern;
use gatehouse_core::{Credential, OrgId, ProjectId};
use gatehouse_security::MasterKey;
use gatehouse_store::Store;
use gatehouse_testkit::both_backends;
use gatehouse_tokens::macaroon::{Encoding, Limits, Macaroon};
use gatehouse_tokens::{Capabilities, DelegateRequest, Error, MintRequest, Minted, Rotation};

fn caps(store: &Store) -> Capabilities {
    Capabilities::new(store.clone(), Capabilities::sealer(&MasterKey::from_bytes([9; 32])).unwrap(), 1000)
}

fn scopes(s: &[&str]) -> Vec<ScopePattern> {
    s.iter().map(|p| ScopePattern::parse(p).unwrap()).collect()
}

fn mint_req(org: OrgId, project: ProjectId) -> MintRequest {
    MintRequest {
        org,
        project,
        name: "ci".into(),
        scopes: scopes(&["chat:*", "embeddings:create"]),
        models: Some(vec!["gpt-4o".into(), "mock-small".into()]),
        ttl: Duration::from_secs(3600),
        budget_micro_usd: Some(10_000_000),
        rpm: Some(100),
        ips: None,
        minted_by: "test".into(),
    }
}

async fn setup(store: &Store) -> (Capabilities, OrgId, ProjectId, Minted) {
    let t = store.ensure_default_tenant().await.unwrap();
    let c = caps(store);
    let m = c.mint(mint_req(t.org, t.project)).await.unwrap();
    (c, t.org, t.project, m)
}

fn attenuate(token: &str, caveat: &str) -> String {
    let mut m = Macaroon::decode(token, &Limits::default()).unwrap();
    m.add_first_party(caveat);
    m.encode(Encoding::Json)
}

both_backends!(minted_tokens_verify_and_narrow, |store: Store| async move {
    let (c, org, project, m) = setup(&store).await;
    assert!(!format!("{m:?}").contains(&m.token[10..]), "Debug never shows the token");
    let v = c.verify(&m.token, None).await.unwrap();
    assert!(!format!("{v:?}").contains(&m.token[10..]));
    assert_eq!((v.principal.org, v.principal.project), (org, project));
    assert_eq!(v.principal.credential, Credential::Token(m.id));
    assert!(v.principal.may("chat:completions") && !v.principal.may("mcp:tool:github/x"));
    assert!(v.principal.may_use_model("gpt-4o") && !v.principal.may_use_model("gpt-5"));
    // A holder narrows offline; the gateway accepts the narrower token in any encoding.
    let narrower = attenuate(&m.token, "scope = chat:completions");
    let v = c.verify(&narrower, None).await.unwrap();
    assert!(!v.principal.may("embeddings:create"));
    // Unknown caveats deny; so does a token whose network does not match.
    assert_eq!(c.verify(&attenuate(&m.token, "account = 42"), None).await.unwrap_err(), Error::Invalid);
    let fenced = attenuate(&m.token, "ip in 10.0.0.0/8");
    assert_eq!(c.verify(&fenced, Some("192.0.2.1".parse().unwrap())).await.unwrap_err(), Error::Forbidden);
    assert!(c.verify(&fenced, Some("10.1.1.1".parse().unwrap())).await.is_ok());
    // Expired by a holder's own caveat.
    let past = attenuate(&m.token, "expires < 2001-01-01T00:00:00Z");
    assert_eq!(c.verify(&past, None).await.unwrap_err(), Error::Expired);
    // Another instance with another master key cannot open the root key: unavailable, not valid.
    let other = Capabilities::new(store.clone(), Capabilities::sealer(&MasterKey::from_bytes([1; 32])).unwrap(), 10);
    assert_eq!(other.verify(&m.token, None).await.unwrap_err(), Error::Unavailable);
    // Garbage never reaches the store.
    for bad in ["", "x", &"A".repeat(100_000), &format!("{},{}", m.token, m.token)] {
        assert!(c.verify(bad, None).await.is_err());
    }
});

both_backends!(delegation_narrows_and_revocation_cascades, |store: Store| async move {
    let (c, org, _, root) = setup(&store).await;
    let parent = c.verify(&root.token, None).await.unwrap();
    let child_req = DelegateRequest {
        name: "agent".into(),
        scopes: Some(scopes(&["chat:completions"])),
        models: Some(vec!["gpt-4o".into()]),
        budget_micro_usd: Some(1_000_000),
        ..Default::default()
    };
    let child = c.delegate(&parent, child_req.clone()).await.unwrap();
    assert_eq!(child.parent, Some(root.id));
    let cv = c.verify(&child.token, None).await.unwrap();
    assert_eq!(cv.principal.credential, Credential::Token(child.id));
    let grant = cv.principal.grant.clone().unwrap();
    assert_eq!(&*grant.chain, &[root.id, child.id]);
    assert_eq!(&*grant.budgets_micro_usd, &[(0, 10_000_000), (1, 1_000_000)], "caps charge up the chain");
    assert!(!cv.principal.may_use_model("mock-small"));

    let grandchild = c.delegate(&cv, DelegateRequest { name: "sub".into(), ..Default::default() }).await.unwrap();
    assert!(c.verify(&grandchild.token, None).await.is_ok());

    // Wider than the parent: refused with the reason.
    let wide = DelegateRequest { models: Some(vec!["mock-small".into()]), ..Default::default() };
    let Error::Wider(why) = c.delegate(&cv, wide).await.unwrap_err() else { panic!("not a Wider") };
    assert!(why.contains("mock-small"), "{why}");
    let wide = DelegateRequest { budget_micro_usd: Some(2_000_000), ..Default::default() };
    assert!(matches!(c.delegate(&cv, wide).await, Err(Error::Wider(_))));
    let wide = DelegateRequest { ttl: Some(Duration::from_secs(7200)), ..Default::default() };
    assert!(matches!(c.delegate(&cv, wide).await, Err(Error::Wider(_))));

    // A holder cannot splice a delegation it was not given into its own chain.
    let other_child = c.delegate(&parent, child_req).await.unwrap();
    let spliced = attenuate(&grandchild.token, &format!("delegation = {}", other_child.id));
    assert_eq!(c.verify(&spliced, None).await.unwrap_err(), Error::Invalid);

    // Revoking the middle kills it and its subtree, not its parent or siblings.
    assert_eq!(c.revoke(org, child.id).await.unwrap(), Some(2));
    assert_eq!(c.verify(&child.token, None).await.unwrap_err(), Error::Invalid);
    assert_eq!(c.verify(&grandchild.token, None).await.unwrap_err(), Error::Invalid);
    assert!(c.verify(&root.token, None).await.is_ok());
    assert!(c.verify(&other_child.token, None).await.is_ok());
    // Revoking the root kills everything below it; another org cannot even see it.
    assert_eq!(c.revoke(OrgId::generate(), root.id).await.unwrap(), None);
    assert_eq!(c.revoke(org, root.id).await.unwrap(), Some(2));
    assert!(c.verify(&other_child.token, None).await.is_err());
});

both_backends!(revocation_reaches_another_replica_through_the_poller, |store: Store| async move {
    let (a, org, _, root) = setup(&store).await;
    let b = std::sync::Arc::new(caps(&store));
    assert!(b.verify(&root.token, None).await.is_ok(), "b has it cached now");
    tokio::spawn(b.clone().run_revocation_poller(Duration::from_millis(200)));
    a.revoke(org, root.id).await.unwrap();
    let started = std::time::Instant::now();
    while b.verify(&root.token, None).await.is_ok() {
        assert!(started.elapsed() < Duration::from_secs(1), "replica b still honours a revoked token after 1 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
});

both_backends!(rotation_keeps_old_tokens_until_they_expire_or_not, |store: Store| async move {
    let (c, org, project, old) = setup(&store).await;
    let v2 = c.rotate(org, Rotation::AtExpiry).await.unwrap();
    assert_eq!(v2, 2);
    let new = c.mint(mint_req(org, project)).await.unwrap();
    assert!(new.token != old.token);
    assert!(c.verify(&old.token, None).await.is_ok(), "old tokens verify through the grace period");
    assert!(c.verify(&new.token, None).await.is_ok());
    let versions = c.key_versions(org).await.unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[1].retire_at, Some(old.expires_at), "grace lasts until the last old token expires");
    // A compromise: retire everything older at once.
    c.rotate(org, Rotation::Now).await.unwrap();
    assert_eq!(c.verify(&old.token, None).await.unwrap_err(), Error::Expired);
    assert_eq!(c.verify(&new.token, None).await.unwrap_err(), Error::Expired);
    let newest = c.mint(mint_req(org, project)).await.unwrap();
    assert!(c.verify(&newest.token, None).await.is_ok());
    // The sealed root keys in the store are not the keys.
    for r in store.root_keys(org).await.unwrap() {
        assert!(r.sealed.starts_with("v1.") && r.sealed.len() > 60);
    }
});
