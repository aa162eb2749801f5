//! Each kind of tampering with the stored trail is found, with its first broken seq.

use gatehouse_audit::verify::verify_store;
use gatehouse_security::chain::link;
use gatehouse_store::{AuditFilter, NewAuditRecord};
use gatehouse_testkit::each_store;
use gatehouse_testkit::stores::TestStore;

use crate::support::*;

each_store!(an_intact_trail_verifies, |t: TestStore| async move {
    platform_chain(&t.store, t.dir.path(), 25).await;
    let r = verify(&t.store).await.unwrap();
    assert_eq!(r.records(), 25);
    let c = &r.chains[0];
    assert_eq!((c.chain.as_str(), c.last_seq, c.checkpoints, c.signed_through), ("platform", 25, 3, 25));
    assert_eq!(r.unsigned(), 0, "shutdown signs the tail");
});

each_store!(a_modified_byte_is_found, |t: TestStore| async move {
    platform_chain(&t.store, t.dir.path(), 25).await;
    t.exec("UPDATE audit_log SET lines = replace(lines, '\"status\":201', '\"status\":200') WHERE first_seq = 7").await;
    assert_eq!(broken(verify(&t.store).await), ("modified".into(), 7));
});

each_store!(a_deleted_event_is_found, |t: TestStore| async move {
    platform_chain(&t.store, t.dir.path(), 25).await;
    assert_eq!(t.exec("DELETE FROM audit_log WHERE first_seq = 12").await, 1);
    assert_eq!(broken(verify(&t.store).await), ("seq_gap".into(), 13));
});

each_store!(swapped_events_are_found, |t: TestStore| async move {
    platform_chain(&t.store, t.dir.path(), 25).await;
    // swap the positions of 4 and 5 (their lines and hashes move with them)
    t.exec(
        "UPDATE audit_log SET first_seq = 1000, last_seq = 1000 WHERE first_seq = 4; \
         UPDATE audit_log SET first_seq = 4, last_seq = 4 WHERE first_seq = 5; \
         UPDATE audit_log SET first_seq = 5, last_seq = 5 WHERE first_seq = 1000;",
    )
    .await;
    assert_eq!(broken(verify(&t.store).await), ("unlinked".into(), 4));
});

each_store!(a_truncated_tail_is_found, |t: TestStore| async move {
    platform_chain(&t.store, t.dir.path(), 25).await;
    t.exec("DELETE FROM audit_log WHERE first_seq > 21; UPDATE audit_heads SET seq = 21").await;
    assert_eq!(broken(verify(&t.store).await), ("truncated".into(), 22));
});

each_store!(a_forged_checkpoint_is_found, |t: TestStore| async move {
    platform_chain(&t.store, t.dir.path(), 25).await;
    // a checkpoint signed by a key that is not the deployment's
    let cp = t.store.audit_checkpoints("platform").await.unwrap().remove(1);
    let other =
        gatehouse_security::checkpoint::CheckpointSigner::from_seed(gatehouse_audit::KEY_NAME, &[1; 32]).unwrap();
    let head = t.store.audit_page(&AuditFilter::default(), Some(("platform", 19)), 1).await.unwrap().remove(0);
    let forged = other
        .sign(
            &gatehouse_audit::origin("platform"),
            gatehouse_security::chain::Anchor { next_seq: 21, hash: head.hash.clone().try_into().unwrap() },
        )
        .unwrap();
    t.exec(&format!("UPDATE audit_checkpoints SET note = '{forged}' WHERE seq = {}", cp.seq)).await;
    assert_eq!(broken(verify(&t.store).await), ("checkpoint_forged".into(), 20));
});

each_store!(a_rewrite_without_the_key_is_found, |t: TestStore| async move {
    platform_chain(&t.store, t.dir.path(), 25).await;
    // someone with database access edits event 14 and recomputes every hash after it
    let rows = t.store.audit_page(&AuditFilter::default(), Some(("platform", 13)), 100).await.unwrap();
    t.exec("DELETE FROM audit_log WHERE first_seq >= 14").await;
    let mut tx = t.store.begin_audit().await.unwrap();
    let mut prev: [u8; 32] = rows[0].prev_hash.clone().try_into().unwrap();
    for r in &rows {
        let line = if r.seq == 14 { r.line.replace("\"status\":201", "\"status\":403") } else { r.line.clone() };
        let hash = link(&prev, line.as_bytes());
        let rec = NewAuditRecord {
            chain: &r.chain,
            seq: r.seq_u64().unwrap(),
            prev_hash: &prev,
            hash: &hash,
            line: &line,
            event_id: &r.event_id,
            at: r.at,
            actor: &r.actor,
            action: &r.action,
        };
        tx.insert(&rec).await.unwrap();
        prev = hash;
    }
    tx.commit().await.unwrap();
    // the chain links again, but the checkpoint at 20 no longer matches
    assert_eq!(broken(verify(&t.store).await), ("rewritten".into(), 20));
});

each_store!(a_change_inside_a_batch_segment_is_found_at_its_event, |t: TestStore| async move {
    // queued together, written as one segment: the break is still named by event
    let w = writer(&t.store, config(t.dir.path())).await;
    for i in 0..10 {
        w.submit(event(None, i));
    }
    w.flush().await;
    w.shutdown().await;
    assert_eq!(verify(&t.store).await.unwrap().records(), 10);
    t.exec("UPDATE audit_log SET lines = replace(lines, '\"target\":\"k5\"', '\"target\":\"k9\"')").await;
    assert_eq!(broken(verify(&t.store).await), ("modified".into(), 6));
});

each_store!(deleting_the_tail_and_its_checkpoints_is_caught_by_a_witness, |t: TestStore| async move {
    platform_chain(&t.store, t.dir.path(), 25).await;
    // an auditor saved the newest checkpoint earlier
    let saved = t.store.audit_checkpoints("platform").await.unwrap().pop().unwrap();
    t.exec("DELETE FROM audit_log WHERE first_seq > 21; DELETE FROM audit_checkpoints WHERE seq > 20").await;
    assert!(verify(&t.store).await.is_ok(), "without a witness the shorter chain is self-consistent");
    let witnesses = [("platform".to_owned(), vec![(25, saved.note)])].into_iter().collect();
    let r = verify_store(&t.store, &key(), None, &witnesses).await;
    assert_eq!(broken(r), ("truncated".into(), 22));
});
