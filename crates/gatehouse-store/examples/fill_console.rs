//! Fills a store with what the console's render budget is measured on (bench/console.sh):
//! `KEYS` API keys in the default project and `EVENTS` audit events of one org, written in
//! transactions of 1 to 64 records each stored as its own segment: what a trickle of traffic
//! leaves, and the worst case for the listing (the writer under load packs a batch into one
//! segment). On SQLite (`sqlite:<path>`) or PostgreSQL (`postgres://...`).
//! Key digests and audit hashes are placeholders: the keys are listed, never used, and the
//! chain is read, not verified.
//!
//!     cargo run --release -p gatehouse-store --example fill_console -- sqlite:./data/gatehouse.db 10000 1000000

#![expect(clippy::unwrap_used, clippy::print_stdout, reason = "a benchmark fixture: fail loudly, report figures")]

use gatehouse_core::KeyId;
use gatehouse_store::{NewAuditRecord, NewKey, Store};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (target, keys, events) = (&args[1], args[2].parse::<u64>().unwrap(), args[3].parse::<u64>().unwrap());
    let store = match target.strip_prefix("sqlite:") {
        Some(path) => Store::open_sqlite(std::path::Path::new(path)).await.unwrap(),
        None => Store::connect_postgres(target, None).await.unwrap(),
    };
    store.migrate().await.unwrap();
    let tenant = store.ensure_default_tenant().await.unwrap();
    let started = std::time::Instant::now();
    for i in 0..keys {
        let mut digest = [0u8; 32];
        digest[..8].copy_from_slice(&i.to_le_bytes());
        digest[8] = 0xfe;
        store
            .insert_key(&NewKey {
                id: KeyId::generate(),
                org: tenant.org,
                project: tenant.project,
                name: format!("bench-{i}"),
                digest,
                hint: "gth_bench…".into(),
                allowed_models: None,
                created_at: gatehouse_store::now_ms(),
                expires_at: None,
                user: None,
            })
            .await
            .unwrap();
    }
    println!("{keys} keys in {:?}", started.elapsed());
    let chain = format!("org/{}", tenant.org);
    let actions = ["request.allowed", "request.allowed", "request.allowed", "request.denied", "key.create"];
    let (mut written, mut batch) = (0u64, 0u64);
    let started = std::time::Instant::now();
    let now = gatehouse_store::now_ms() - i64::try_from(events).unwrap();
    while written < events {
        batch += 1;
        let n = (batch * 7919 % 64 + 1).min(events - written);
        let mut tx = store.begin_audit().await.unwrap();
        let mut head = tx.lock_head(&chain).await.unwrap();
        let at = now + i64::try_from(written).unwrap();
        let when =
            humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(at as u64));
        for _ in 0..n {
            let seq = head.seq + 1;
            let hash = [u8::try_from(seq % 251).unwrap(); 32];
            let id = uuid::Uuid::now_v7().to_string();
            let action = actions[usize::try_from(seq).unwrap() % actions.len()];
            let line = format!(
                "{{\"v\":1,\"seq\":{seq},\"chain\":\"{chain}\",\"id\":\"{id}\",\"at\":\"{when}\",\"action\":\"{action}\",\
                 \"category\":\"authorization\",\"outcome\":\"allowed\",\"status\":200,\"code\":\"ok\",\"actor\":\"system\"}}"
            );
            let rec = NewAuditRecord {
                chain: &chain,
                seq,
                prev_hash: &head.hash,
                hash: &hash,
                line: &line,
                event_id: &id,
                at,
                actor: "system",
                action,
            };
            tx.insert(&rec).await.unwrap();
            head.seq = seq;
            head.hash = hash;
        }
        tx.set_head(&chain, head).await.unwrap();
        tx.commit().await.unwrap();
        written += n;
    }
    println!("{events} audit events in {batch} batches in {:?}", started.elapsed());
}
