use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use gatehouse_audit::verify::{Report, VerifyError, verify_file, verify_store};
use gatehouse_audit::{Actor, Auditor, Event, EventKind, KEY_NAME, Outcome, WriterConfig};
use gatehouse_core::OrgId;
use gatehouse_security::checkpoint::{CheckpointSigner, CheckpointVerifier};
use gatehouse_store::Store;

pub fn signer() -> CheckpointSigner {
    CheckpointSigner::from_seed(KEY_NAME, &[9; 32]).unwrap()
}

pub fn key() -> CheckpointVerifier {
    signer().verifier()
}

pub fn config(dir: &Path) -> WriterConfig {
    let mut c = WriterConfig::new(dir.join("audit-spool.jsonl"));
    c.checkpoint_every = 10;
    c.checkpoint_interval = Duration::from_secs(3600);
    c.retention = None;
    c
}

pub async fn writer(store: &Store, cfg: WriterConfig) -> Auditor {
    gatehouse_audit::start(store.clone(), signer(), cfg).await.unwrap()
}

pub fn event(org: Option<OrgId>, n: u64) -> Event {
    let mut e = Event::new(EventKind::KeyCreate, Outcome::Allowed, 201, "ok", Actor::AdminToken(format!("t{}", n % 3)));
    e.org = org;
    e.target = Some(format!("k{n}"));
    e
}

/// `n` events on the platform chain, then a final checkpoint.
pub async fn platform_chain(store: &Store, dir: &Path, n: u64) {
    let a = writer(store, config(dir)).await;
    for i in 0..n {
        a.record(event(None, i)).await.unwrap();
    }
    a.shutdown().await;
}

pub async fn verify(store: &Store) -> Result<Report, VerifyError> {
    verify_store(store, &key(), None, &HashMap::new()).await
}

pub fn verify_path(p: &Path) -> Result<Report, VerifyError> {
    verify_file(p, &key(), &HashMap::new())
}

/// The problem a verification found, as its name and seq.
pub fn broken(r: Result<Report, VerifyError>) -> (String, u64) {
    match r {
        Err(VerifyError::Broken(f)) => (f.problem.as_str().to_owned(), f.seq),
        other => panic!("expected a broken chain, got {other:?}"),
    }
}

pub async fn export_to(store: &Store, req: gatehouse_audit::export::ExportRequest, path: &Path) {
    let mut rx = gatehouse_audit::export::spawn(store.clone(), req, std::sync::Arc::new(signer()));
    let mut out = String::new();
    while let Some(chunk) = rx.recv().await {
        out.push_str(&chunk.unwrap());
    }
    std::fs::write(path, out).unwrap();
}
