//! Audit write path:
//!   request_path: what a data-plane request pays (build the event, hand it to the queue);
//!   render_link:  what the writer pays per event in CPU (canonical line + SHA-256 link);
//!   append:       sustained throughput into SQLite and PostgreSQL (batches of the queue,
//!                 chain heads locked per batch, checkpoints every 1000), events/s.
//! Run: cargo bench -p gatehouse-audit --bench append
//! PostgreSQL: GATEHOUSE_TEST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/test);
//! skipped with a message when unreachable.

#![expect(clippy::expect_used, clippy::print_stderr, reason = "benchmark setup: a failure must stop the run")]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gatehouse_audit::{Actor, Auditor, Event, EventKind, KEY_NAME, Outcome, WriterConfig};
use gatehouse_core::{KeyId, OrgId, ProjectId, RequestId};
use gatehouse_security::chain::link;
use gatehouse_security::checkpoint::CheckpointSigner;
use gatehouse_store::Store;

/// The request id exists before auditing (the transport layer mints it); not part of the cost.
static REQUEST: std::sync::LazyLock<RequestId> = std::sync::LazyLock::new(RequestId::generate);

fn event(org: OrgId, project: ProjectId, key: KeyId, model: &Arc<str>) -> Event {
    let mut e = Event::new(EventKind::RequestAllowed, Outcome::Allowed, 200, "ok", Actor::Key(key));
    e.org = Some(org);
    e.project = Some(project);
    e.request_id = Some(*REQUEST);
    e.endpoint = Some("chat_completions");
    e.model = Some(model.clone());
    e.latency = Some(Duration::from_micros(412));
    e.prompt_tokens = Some(21);
    e.completion_tokens = Some(64);
    e
}

async fn writer(store: Store, dir: &std::path::Path) -> Auditor {
    let signer = CheckpointSigner::from_seed(KEY_NAME, &[5; 32]).expect("signer");
    let mut cfg = WriterConfig::new(dir.join("spool.jsonl"));
    cfg.retention = None;
    gatehouse_audit::start(store, signer, cfg).await.expect("writer")
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let (org, project, key) = (OrgId::generate(), ProjectId::generate(), KeyId::generate());
    let model: Arc<str> = Arc::from("gpt-4o-mini");

    let mut g = c.benchmark_group("audit");
    g.bench_function("render_link", |b| {
        let prev = [7u8; 32];
        b.iter(|| {
            let p = event(org, project, key, &model).pending();
            let line = p.line(black_box(123_456));
            black_box(link(&prev, line.as_bytes()))
        })
    });

    let sqlite = rt.block_on(gatehouse_testkit::stores::sqlite());
    let auditor = rt.block_on(writer(sqlite.store.clone(), sqlite.dir.path()));
    // timed: building and queueing; untimed: letting the writer drain every 256 events, so
    // the queue is never full (a full queue is back-pressure, measured by `append`)
    g.bench_function("request_path", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (auditor, model) = (auditor.clone(), model.clone());
            async move {
                let mut spent = Duration::ZERO;
                for i in 0..iters {
                    let t = std::time::Instant::now();
                    auditor.submit(black_box(event(org, project, key, &model)));
                    spent += t.elapsed();
                    if i % 256 == 255 {
                        auditor.flush().await;
                    }
                }
                spent
            }
        })
    });
    rt.block_on(auditor.flush());

    const N: u64 = 2_000;
    g.throughput(Throughput::Elements(N));
    g.sample_size(10);
    g.bench_function("append/sqlite", |b| {
        b.to_async(&rt).iter(|| async {
            for _ in 0..N {
                auditor.submit(event(org, project, key, &model));
            }
            auditor.flush().await
        })
    });
    rt.block_on(auditor.shutdown());

    match rt.block_on(gatehouse_testkit::stores::postgres()) {
        Some(pg) => {
            let auditor = rt.block_on(writer(pg.store.clone(), pg.dir.path()));
            g.bench_function("append/postgres", |b| {
                b.to_async(&rt).iter(|| async {
                    for _ in 0..N {
                        auditor.submit(event(org, project, key, &model));
                    }
                    auditor.flush().await
                })
            });
            rt.block_on(auditor.shutdown());
        }
        None => eprintln!("append/postgres skipped: PostgreSQL unreachable"),
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
