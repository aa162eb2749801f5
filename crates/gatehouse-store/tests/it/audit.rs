//! Audit rows: a batch and its head commit together; pages, listings and pruning.

use gatehouse_store::{AnchorRow, AuditFilter, ChainHead, NewAuditRecord, Store};

use gatehouse_testkit::both_backends;

/// Appends `n` fake records to `chain` the way the writer does (hashes are placeholders here;
/// the chain arithmetic is `gatehouse-audit`'s and tested there).
async fn append(store: &Store, chain: &str, n: u64, at: i64) -> ChainHead {
    let mut tx = store.begin_audit().await.unwrap();
    let mut head = tx.lock_head(chain).await.unwrap();
    for _ in 0..n {
        let seq = head.seq + 1;
        let hash = [u8::try_from(seq % 251).unwrap(); 32];
        let id = uuid::Uuid::now_v7().to_string();
        let actor = if seq % 2 == 0 { "even" } else { "odd" };
        let when =
            humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(at as u64));
        let line = format!(
            "{{\"seq\":{seq},\"id\":\"{id}\",\"at\":\"{when}\",\"action\":\"key.create\",\"actor\":\"{actor}\"}}"
        );
        tx.insert(&NewAuditRecord {
            chain,
            seq,
            prev_hash: &head.hash,
            hash: &hash,
            line: &line,
            event_id: &id,
            at,
            actor,
            action: "key.create",
        })
        .await
        .unwrap();
        head.seq = seq;
        head.hash = hash;
    }
    tx.set_head(chain, head).await.unwrap();
    tx.commit().await.unwrap();
    head
}

both_backends!(batches_extend_their_chain_and_page_in_order, |store: Store| async move {
    assert_eq!(append(&store, "org/a", 3, 1_000).await.seq, 3);
    assert_eq!(append(&store, "org/a", 2, 2_000).await.seq, 5, "the head carries over between batches");
    append(&store, "platform", 1, 1_500).await;
    assert_eq!(store.audit_chains().await.unwrap(), ["org/a", "platform"]);

    let all = AuditFilter::default();
    let first = store.audit_page(&all, None, 4).await.unwrap();
    assert_eq!(
        first.iter().map(|r| (r.chain.as_str(), r.seq)).collect::<Vec<_>>(),
        [("org/a", 1), ("org/a", 2), ("org/a", 3), ("org/a", 4)]
    );
    let rest = store.audit_page(&all, Some(("org/a", 4)), 10).await.unwrap();
    assert_eq!(rest.iter().map(|r| (r.chain.as_str(), r.seq)).collect::<Vec<_>>(), [("org/a", 5), ("platform", 1)]);
    assert_eq!(rest[0].prev_hash, first[3].hash, "rows keep the hashes they were written with");

    let f = AuditFilter { chain: Some("org/a".into()), from_ms: Some(2_000), actor: Some("odd".into()), ..all.clone() };
    let narrowed = store.audit_page(&f, None, 10).await.unwrap();
    assert_eq!(narrowed.iter().map(|r| r.seq).collect::<Vec<_>>(), [5]);
    let latest = store.audit_latest(&all, 2).await.unwrap();
    assert_eq!(latest.iter().map(|r| (r.chain.as_str(), r.seq)).collect::<Vec<_>>(), [("org/a", 5), ("org/a", 4)]);
});

both_backends!(the_latest_events_page_by_cursor_and_each_page_looks_at_a_bounded_number, |store: Store| async move {
    // 40 segments over two chains, some at the same instant (ties broken by chain, then seq)
    let org = format!("org/{}", uuid::Uuid::now_v7());
    for i in 0..20 {
        append(&store, &org, 3, 1_000 + i).await;
        append(&store, "platform", 2, 1_000 + i).await;
    }
    let all = AuditFilter::default();
    let everything = store.audit_latest(&all, 1000).await.unwrap();
    assert_eq!(everything.len(), 100);
    let key = |r: &gatehouse_store::AuditRow| (r.chain.clone(), r.seq);

    // paging 7 at a time visits every event once, in the same order
    let (mut seen, mut after) = (Vec::new(), None);
    loop {
        let (rows, next) = store.audit_latest_page(&all, 7, after.as_ref(), usize::MAX).await.unwrap();
        seen.extend(rows.iter().map(key));
        let Some(n) = next else { break };
        // the cursor survives the round trip through the API's string
        after = Some(gatehouse_store::AuditCursor::decode(&n.encode()).unwrap());
    }
    assert_eq!(seen, everything.iter().map(key).collect::<Vec<_>>());

    // a filter that matches little answers after a bounded look, with a cursor to go on
    let rare = AuditFilter { actor: Some("nobody".into()), ..all.clone() };
    let (rows, next) = store.audit_latest_page(&rare, 50, None, 10).await.unwrap();
    assert!(rows.is_empty());
    let next = next.expect("more to look at");
    let (_, after_all) = store.audit_latest_page(&rare, 50, Some(&next), usize::MAX).await.unwrap();
    assert_eq!(after_all, None, "the walk ends");
    // a scoped chain ignores a cursor's chain: it only positions the walk
    let mine = AuditFilter { chain: Some(org.clone()), ..all.clone() };
    let (rows, _) = store.audit_latest_page(&mine, 1000, Some(&next), usize::MAX).await.unwrap();
    assert!(rows.iter().all(|r| r.chain == org));
    for bad in ["", "1.2.3", "1.2.3.org/x", "-1.2.3.platform", "1.2.3.platform;drop", "a.b.c.platform"] {
        assert!(gatehouse_store::AuditCursor::decode(bad).is_none(), "{bad}");
    }
});

both_backends!(a_failed_batch_leaves_no_trace, |store: Store| async move {
    append(&store, "org/a", 2, 1).await;
    let mut tx = store.begin_audit().await.unwrap();
    let head = tx.lock_head("org/a").await.unwrap();
    let dup = NewAuditRecord {
        chain: "org/a",
        seq: 2,
        prev_hash: &head.hash,
        hash: &head.hash,
        line: "{}",
        event_id: "x",
        at: 1,
        actor: "a",
        action: "b",
    };
    assert!(tx.insert(&dup).await.is_err(), "a seq cannot be written twice");
    drop(tx);
    assert_eq!(store.audit_head("org/a").await.unwrap().unwrap().seq, 2);
    assert_eq!(store.audit_page(&AuditFilter::default(), None, 10).await.unwrap().len(), 2);
});

both_backends!(checkpoints_and_pruning_keep_an_anchor, |store: Store| async move {
    append(&store, "org/a", 3, 1_000).await;
    append(&store, "org/a", 2, 5_000).await;
    let mut tx = store.begin_audit().await.unwrap();
    tx.insert_checkpoint("org/a", 2, 1_100, "note-2").await.unwrap();
    tx.insert_checkpoint("org/a", 2, 1_200, "other").await.unwrap();
    tx.insert_checkpoint("org/a", 5, 5_100, "note-5").await.unwrap();
    assert_eq!(tx.unsigned_chains().await.unwrap(), ["org/a"]);
    tx.commit().await.unwrap();
    let cps = store.audit_checkpoints("org/a").await.unwrap();
    assert_eq!(cps.iter().map(|c| (c.seq, c.note.as_str())).collect::<Vec<_>>(), [(2, "note-2"), (5, "note-5")]);

    let last_old = store.audit_prunable_through("org/a", 5_000).await.unwrap().unwrap();
    assert_eq!(last_old.seq, 3, "only the prefix older than the cutoff");
    let mut tx = store.begin_audit().await.unwrap();
    let anchor = AnchorRow { chain: "org/a".into(), seq: 3, hash: last_old.hash.clone(), note: "anchor".into(), at: 9 };
    assert_eq!(tx.prune(&anchor).await.unwrap(), 3);
    tx.commit().await.unwrap();
    assert_eq!(store.audit_anchor("org/a").await.unwrap(), Some(anchor));
    let left = store.audit_page(&AuditFilter::default(), None, 10).await.unwrap();
    assert_eq!(left.iter().map(|r| r.seq).collect::<Vec<_>>(), [4, 5]);
    assert_eq!(store.audit_checkpoints("org/a").await.unwrap().len(), 1);
    assert!(store.audit_prunable_through("org/a", 1).await.unwrap().is_none());
});
