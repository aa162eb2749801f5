//! The write path: batching across chains, exports, the JSONL mirror, the spool, fail-closed,
//! several writers on one store, and retention.

use std::time::Duration;

use gatehouse_audit::export::{ExportRequest, Format, Selection};
use gatehouse_audit::{FailurePolicy, chain_of};
use gatehouse_core::OrgId;
use gatehouse_store::AuditFilter;
use gatehouse_testkit::each_store;
use gatehouse_testkit::eventually;
use gatehouse_testkit::stores::TestStore;

use crate::support::*;

fn whole(chains: Option<Vec<String>>) -> ExportRequest {
    ExportRequest { chains, filter: AuditFilter::default(), selection: Selection::default(), format: Format::Ndjson }
}

each_store!(events_from_many_producers_land_in_their_org_chains, |t: TestStore| async move {
    let (a, b) = (OrgId::generate(), OrgId::generate());
    let w = writer(&t.store, config(t.dir.path())).await;
    let mut tasks = Vec::new();
    for p in 0..8u64 {
        let w = w.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..40 {
                let org = match i % 3 {
                    0 => Some(a),
                    1 => Some(b),
                    _ => None,
                };
                if i % 2 == 0 { w.record(event(org, p * 100 + i)).await.unwrap() } else { w.submit(event(org, i)) }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    w.flush().await;
    w.shutdown().await;
    let r = verify(&t.store).await.unwrap();
    assert_eq!(r.records(), 320);
    let names: Vec<_> = r.chains.iter().map(|c| c.chain.clone()).collect();
    let mut want = vec![chain_of(Some(a)), chain_of(Some(b)), "platform".to_owned()];
    want.sort();
    assert_eq!(names, want);
    assert_eq!(r.unsigned(), 0);
});

each_store!(exports_verify_offline_and_tampered_exports_do_not, |t: TestStore| async move {
    let org = OrgId::generate();
    let w = writer(&t.store, config(t.dir.path())).await;
    for i in 0..30 {
        w.record(event(if i % 2 == 0 { Some(org) } else { None }, i)).await.unwrap();
    }
    w.shutdown().await;

    let all = t.dir.path().join("all.ndjson");
    export_to(&t.store, whole(None), &all).await;
    let r = verify_path(&all).unwrap();
    assert_eq!((r.records(), r.chains.len()), (30, 2));

    // an org's export is its whole chain and nothing else, and verifies on its own
    let mine = t.dir.path().join("org.ndjson");
    export_to(&t.store, whole(Some(vec![chain_of(Some(org))])), &mine).await;
    let text = std::fs::read_to_string(&mine).unwrap();
    assert!(!text.contains("\"chain\":\"platform\""));
    assert_eq!(verify_path(&mine).unwrap().records(), 15);

    // a filtered export verifies record by record, with its gaps counted
    let sel = Selection { actor: Some("token:t1".into()), ..Selection::default() };
    let filter = AuditFilter { actor: Some("token:t1".into()), ..AuditFilter::default() };
    let some = t.dir.path().join("some.ndjson");
    export_to(&t.store, ExportRequest { chains: None, filter, selection: sel, format: Format::Ndjson }, &some).await;
    let r = verify_path(&some).unwrap();
    assert_eq!(r.records(), 10);
    assert!(r.chains.iter().map(|c| c.gaps).sum::<u64>() > 0);

    // edits to the file are found: a byte, a dropped record, a dropped tail
    let lines: Vec<&str> = std::fs::read_to_string(&all).unwrap().leak().lines().collect();
    let edited = t.dir.path().join("edited.ndjson");
    let rec = lines.iter().position(|l| l.contains("\"seq\":4,\"prev_hash\"")).unwrap();
    let mut v = lines.clone();
    v[rec] = Box::leak(v[rec].replace("key.create", "key.revoke").into_boxed_str());
    std::fs::write(&edited, v.join("\n") + "\n").unwrap();
    assert_eq!(broken(verify_path(&edited)).0, "modified");
    let mut v = lines.clone();
    v.remove(rec);
    std::fs::write(&edited, v.join("\n") + "\n").unwrap();
    assert_eq!(broken(verify_path(&edited)).0, "seq_gap");
    let last_platform = lines.iter().rposition(|l| l.contains("\"chain\":\"platform\",\"seq\":15,\"prev")).unwrap();
    let mut v = lines.clone();
    v.remove(last_platform);
    std::fs::write(&edited, v.join("\n") + "\n").unwrap();
    assert_eq!(broken(verify_path(&edited)), ("truncated".into(), 15));

    let csv = t.dir.path().join("all.csv");
    export_to(&t.store, ExportRequest { format: Format::Csv, ..whole(None) }, &csv).await;
    let csv = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(csv.lines().count(), 31);
    assert!(csv.starts_with("chain,seq,at,action"));
});

each_store!(the_file_mirror_carries_the_same_chain, |t: TestStore| async move {
    let mut cfg = config(t.dir.path());
    let mirror = t.dir.path().join("audit.jsonl");
    cfg.file = Some(mirror.clone());
    let w = writer(&t.store, cfg).await;
    for i in 0..23 {
        w.record(event(None, i)).await.unwrap();
    }
    w.shutdown().await;
    let r = verify_path(&mirror).unwrap();
    assert_eq!((r.records(), r.chains[0].signed_through), (23, 23));
});

each_store!(a_store_outage_spools_and_replays_without_loss, |t: TestStore| async move {
    let w = writer(&t.store, config(t.dir.path())).await;
    for i in 0..5 {
        w.record(event(None, i)).await.unwrap();
    }
    // the audit table goes away: writes fail, events are spooled and still acknowledged
    t.exec("ALTER TABLE audit_log RENAME TO audit_log_away").await;
    for i in 5..12 {
        w.record(event(None, i)).await.expect("spooled events are acknowledged");
    }
    assert!(w.accepting(), "the spool policy keeps serving");
    let spool = t.dir.path().join("audit-spool.jsonl");
    assert_eq!(std::fs::read_to_string(&spool).unwrap().lines().count(), 8, "a header and seven events");
    t.exec("ALTER TABLE audit_log_away RENAME TO audit_log").await;
    // replay happens on the next write or tick
    assert!(eventually(Duration::from_secs(30), || async { !spool.exists() }).await, "spool replayed");
    w.shutdown().await;
    let r = verify(&t.store).await.unwrap();
    // 12 events and the writer's own `audit.replayed` note
    assert_eq!(r.records(), 13);
    let rows = t.store.audit_page(&AuditFilter::default(), None, 100).await.unwrap();
    let targets: Vec<_> = rows.iter().filter(|r| r.action == "key.create").map(|r| r.line.clone()).collect();
    for i in 0..12 {
        assert!(targets.iter().any(|l| l.contains(&format!("\"target\":\"k{i}\""))), "event {i} lost");
    }
});

each_store!(a_replay_after_a_crash_does_not_duplicate, |t: TestStore| async move {
    let w = writer(&t.store, config(t.dir.path())).await;
    t.exec("ALTER TABLE audit_log RENAME TO audit_log_away").await;
    for i in 0..4 {
        w.record(event(None, i)).await.unwrap();
    }
    t.exec("ALTER TABLE audit_log_away RENAME TO audit_log").await;
    let spool = t.dir.path().join("audit-spool.jsonl");
    let kept = std::fs::read(&spool).unwrap();
    assert!(eventually(Duration::from_secs(30), || async { !spool.exists() }).await);
    w.shutdown().await;
    // as if the process died after committing the replay but before removing the spool,
    // with a half-written last line
    let mut again = kept.clone();
    again.extend_from_slice(b"{\"id\":\"trunc");
    std::fs::write(&spool, again).unwrap();
    let w = writer(&t.store, config(t.dir.path())).await;
    w.record(event(None, 99)).await.unwrap();
    w.shutdown().await;
    let rows = t.store.audit_page(&AuditFilter::default(), None, 100).await.unwrap();
    assert_eq!(rows.iter().filter(|r| r.action == "key.create").count(), 5, "each event exactly once");
    verify(&t.store).await.unwrap();
});

each_store!(fail_closed_refuses_until_the_store_is_back, |t: TestStore| async move {
    let mut cfg = config(t.dir.path());
    cfg.failure = FailurePolicy::FailClosed;
    let w = writer(&t.store, cfg).await;
    w.record(event(None, 0)).await.unwrap();
    t.exec("ALTER TABLE audit_log RENAME TO audit_log_away").await;
    assert!(w.record(event(None, 1)).await.is_err(), "not durable, so not acknowledged");
    assert!(!w.accepting());
    assert!(!t.dir.path().join("audit-spool.jsonl").exists(), "fail-closed never spools");
    t.exec("ALTER TABLE audit_log_away RENAME TO audit_log").await;
    assert!(eventually(Duration::from_secs(30), || async { w.accepting() }).await, "recovers by itself");
    w.record(event(None, 2)).await.unwrap();
    w.shutdown().await;
    let r = verify(&t.store).await.unwrap();
    assert_eq!(r.records(), 3, "two events and the recovery note");
});

each_store!(two_writers_on_one_store_extend_one_chain, |t: TestStore| async move {
    let other = t.reopen().await;
    let w1 = writer(&t.store, config(t.dir.path())).await;
    let dir2 = tempfile::tempdir().unwrap();
    let w2 = writer(&other, config(dir2.path())).await;
    let org = OrgId::generate();
    let run = |w: gatehouse_audit::Auditor| async move {
        for i in 0..60 {
            w.record(event(Some(org), i)).await.unwrap();
        }
    };
    tokio::join!(run(w1.clone()), run(w2.clone()));
    w1.shutdown().await;
    w2.shutdown().await;
    let r = verify(&t.store).await.unwrap();
    assert_eq!((r.chains.len(), r.records()), (1, 120), "one sequence, nothing lost or forked");
});

each_store!(retention_prunes_a_prefix_behind_a_signed_anchor, |t: TestStore| async move {
    let w = writer(&t.store, config(t.dir.path())).await;
    for i in 0..12 {
        let mut e = event(None, i);
        e.at = std::time::SystemTime::now() - Duration::from_secs(if i < 8 { 3_600 } else { 0 });
        w.record(e).await.unwrap();
    }
    w.shutdown().await;
    let mut cfg = config(t.dir.path());
    cfg.retention = Some(Duration::from_secs(60));
    let w = writer(&t.store, cfg).await;
    assert!(
        eventually(Duration::from_secs(30), || async { t.store.audit_anchor("platform").await.unwrap().is_some() })
            .await
    );
    w.shutdown().await;
    let r = verify(&t.store).await.unwrap();
    let c = &r.chains[0];
    assert_eq!((c.anchored_at, c.last_seq), (8, 13), "8 pruned; 4 kept and the pruning note");
    let exported = t.dir.path().join("after.ndjson");
    export_to(&t.store, whole(None), &exported).await;
    assert_eq!(verify_path(&exported).unwrap().records(), 5);
    // the anchor cannot be moved without the key
    t.exec("UPDATE audit_anchors SET seq = 7").await;
    assert_eq!(broken(verify(&t.store).await).0, "anchor_forged");
});

// What an edited export can no longer hide: an export is judged by its signed manifest only.
each_store!(an_export_is_judged_by_its_signed_manifest_alone, |t: TestStore| async move {
    // 25 events, checkpoints at 10 and 20, no shutdown: 21-25 are newer than any checkpoint
    let w = writer(&t.store, config(t.dir.path())).await;
    for i in 0..25 {
        w.record(event(None, i)).await.unwrap();
    }
    w.flush().await;
    let all = t.dir.path().join("all.ndjson");
    export_to(&t.store, whole(None), &all).await;
    let r = verify_path(&all).unwrap();
    let proof = r.export.as_ref().expect("an export carries a signed manifest");
    assert!(!proof.filtered);
    assert_eq!((r.records(), r.chains[0].signed_through, r.unsigned()), (25, 25, 0), "the export's head is signed");

    let text = std::fs::read_to_string(&all).unwrap();
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let edited = t.dir.path().join("edited.ndjson");
    let write = |v: &[String]| std::fs::write(&edited, v.join("\n") + "\n").unwrap();
    let at = |seq: u64| lines.iter().position(|l| l.contains(&format!("\"seq\":{seq},\"prev_hash\""))).unwrap();
    let without = |drop: &[usize]| -> Vec<String> {
        lines.iter().enumerate().filter(|(i, _)| !drop.contains(i)).map(|(_, l)| l.clone()).collect()
    };

    // the unsigned tail is gone: the manifest's head names it
    write(&without(&[at(25)]));
    assert_eq!(broken(verify_path(&edited)), ("truncated".into(), 25));
    // the header claims a filter, and a middle event is gone: the header is not trusted
    let mut v = without(&[at(12)]);
    v[0] = v[0].replace("\"filtered\":false", "\"filtered\":true");
    assert!(v[0].contains("\"filtered\":true"));
    write(&v);
    assert_eq!(broken(verify_path(&edited)), ("seq_gap".into(), 13));
    // the manifest is removed (or cut off): nothing is proven
    let manifest = lines.len() - 1;
    assert!(lines[manifest].starts_with("{\"type\":\"manifest\""));
    write(&without(&[manifest, at(25)]));
    assert_eq!(broken(verify_path(&edited)).0, "manifest_forged");
    // the manifest is edited to claim a filter
    let mut v = lines.clone();
    v[manifest] = v[manifest].replace("\\\"filtered\\\":false", "\\\"filtered\\\":true");
    assert_ne!(v[manifest], lines[manifest]);
    write(&v);
    assert_eq!(broken(verify_path(&edited)).0, "manifest_forged");
    // a second manifest cannot be slipped in beside the first
    let mut v = lines.clone();
    v.push(lines[manifest].clone());
    write(&v);
    assert!(verify_path(&edited).is_err());

    // a filtered export: gaps are expected, but not one record fewer than it listed
    let sel = Selection { actor: Some("token:t1".into()), ..Selection::default() };
    let filter = AuditFilter { actor: Some("token:t1".into()), ..AuditFilter::default() };
    let some = t.dir.path().join("some.ndjson");
    export_to(&t.store, ExportRequest { chains: None, filter, selection: sel, format: Format::Ndjson }, &some).await;
    let r = verify_path(&some).unwrap();
    assert!(r.export.as_ref().unwrap().filtered);
    assert_eq!(r.export.as_ref().unwrap().selection.actor.as_deref(), Some("token:t1"));
    let filtered: Vec<String> = std::fs::read_to_string(&some).unwrap().lines().map(str::to_owned).collect();
    let records: Vec<usize> =
        filtered.iter().enumerate().filter(|(_, l)| l.starts_with("{\"type\":\"record\"")).map(|(i, _)| i).collect();
    assert_eq!(records.len(), 8);
    for drop in [records[3], records[7]] {
        let v: Vec<String> = filtered.iter().enumerate().filter(|(i, _)| *i != drop).map(|(_, l)| l.clone()).collect();
        write(&v);
        assert_eq!(broken(verify_path(&edited)).0, "missing", "dropping line {drop}");
    }
    // a record of the chain from outside the selection, added: not what was listed
    // (seq 3 links correctly after seq 2, the first selected record)
    let mut v = filtered.clone();
    v.insert(records[1], lines[at(3)].clone());
    write(&v);
    assert_eq!(broken(verify_path(&edited)).0, "missing");
    w.shutdown().await;
});
