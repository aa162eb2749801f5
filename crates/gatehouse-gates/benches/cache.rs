//! The response cache on the hot path, each beside admission alone in the same run:
//!   admission_only: the whole request half (cache off for the tenant);
//!   hit_in_process: the request half finding a kept answer, then serving it through the
//!                   response half (output guardrail, settled as a hit);
//!   hit_redis:      the same with the shared store on Redis (needs Redis on 127.0.0.1:6379;
//!                   skipped without it): after the first, hits are served by the process's
//!                   in-process front, as on a replica that has opened the entry before.
//! The added cost of a hit is `hit_* - admission_only`.
//! Run: cargo bench -p gatehouse-gates --bench cache

#![expect(
    clippy::expect_used,
    clippy::print_stderr,
    reason = "benchmark setup: a failure must stop the run, a skip is said"
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use gatehouse_core::{RequestCx, RequestId};
use gatehouse_gates::authenticate::{Credentials, KeyVerifier};
use gatehouse_gates::cache::ResponseCache;
use gatehouse_gates::credentials::Vault;
use gatehouse_gates::route::RouteTable;
use gatehouse_gates::tenant_routes::RoutingRules;
use gatehouse_gates::{Gates, TenantRouting, admit};
use gatehouse_limits::{Limits, RedisConfig, RedisLimits};
use gatehouse_providers::{Endpoint, RequestBounds, Usage};
use gatehouse_security::MasterKey;
use gatehouse_security::seal::Envelope;
use gatehouse_store::{PolicyTable, Store};
use secrecy::SecretString;

const BODY: &[u8] = br#"{"model":"mock","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Summarise the plot of Hamlet in two sentences, please."}],"temperature":0.2,"max_tokens":128}"#;
const ANSWER: &[u8] = br#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"mock","choices":[{"index":0,"message":{"role":"assistant","content":"Prince Hamlet avenges his father's murder by his uncle Claudius. Nearly everyone dies, Hamlet included."},"finish_reason":"stop"}],"usage":{"prompt_tokens":31,"completion_tokens":22,"total_tokens":53}}"#;

struct Fixture {
    off: Gates,
    memory: Gates,
    redis: Option<Gates>,
    key: SecretString,
    _store: gatehouse_testkit::stores::TestStore,
}

fn gates(store: &Store, key_hasher: Arc<gatehouse_security::KeyHasher>, tenants: TenantRouting) -> Gates {
    let policy = gatehouse_config::Config::default().policy;
    let verifier = Arc::new(KeyVerifier::new(store.clone(), key_hasher, 10_000));
    let creds = Credentials { keys: verifier, tokens: None, federated: None };
    let policies = Arc::new(gatehouse_gates::guardrails::Policies::builtin().expect("engine"));
    let limits =
        gatehouse_gates::limits::LimitsGate::new(Arc::new(gatehouse_gates::limits::LimitsBackend::local()), &policy);
    let bounds = RequestBounds { max_depth: 32, max_messages: 2048, max_embedding_inputs: 2048 };
    let table = Arc::new(RouteTable::build(&policy));
    Gates::new(creds, policies, limits, table, tenants, bounds, gatehouse_gates::meter::AuditHook::off())
}

async fn fixture() -> Fixture {
    let keyed = gatehouse_testkit::stores::keyed(None).await;
    let (store, t) = (keyed.test.store.clone(), keyed.tenant);
    let spec = r#"{"cache_ttl_seconds": 3600}"#;
    store.put_scoped_policy(PolicyTable::Routing, t.org, Some(t.project), spec, "bench").await.expect("rule");
    let rules = Arc::new(RoutingRules::default());
    rules.load(&store).await.expect("rules");
    let off = gates(&store, keyed.hasher.clone(), TenantRouting::default());
    let memory = gates(&store, keyed.hasher.clone(), TenantRouting { rules: rules.clone(), cache: Arc::default() });
    let redis = match RedisLimits::connect(RedisConfig {
        url: "redis://127.0.0.1:6379/0".into(),
        prefix: format!("bench-cache-{}", std::process::id()),
        timeout: Duration::from_secs(1),
        ca_pem: None,
    })
    .await
    {
        Ok(r) => {
            let vault =
                Arc::new(Vault::new(store.clone(), Envelope::new(&MasterKey::from_bytes([5; 32])).expect("env")));
            let bounds = gatehouse_config::CacheSettings::default();
            let cache = Arc::new(ResponseCache::shared(Arc::new(Limits::Redis(Box::new(r))), vault, bounds));
            Some(gates(&store, keyed.hasher.clone(), TenantRouting { rules, cache }))
        }
        Err(e) => {
            eprintln!("no Redis on 127.0.0.1:6379 ({e}): hit_redis skipped");
            None
        }
    };
    Fixture { off, memory, redis, key: keyed.key.clone(), _store: keyed.test }
}

/// One request through the request half; `serve`: and through the response half with the
/// kept answer, or the provider's (which fills the cache). Returns whether it was admitted
/// (`serve`: answered from the cache).
async fn request(g: &Gates, key: &SecretString, serve: bool) -> bool {
    let cx = RequestCx::new(RequestId::generate(), Some(key.clone()).into());
    let body = async { Ok::<_, gatehouse_core::Denial>(Bytes::from_static(BODY)) };
    let Ok(admitted) = admit(g, cx, Endpoint::ChatCompletions, body).await else { return false };
    if !serve {
        return true;
    }
    let answer = admitted.answer;
    match answer.cached().cloned() {
        Some(hit) => answer.whole(hit.body.clone(), hit.usage).await.is_ok(),
        None => {
            let usage = Usage { prompt_tokens: 31, completion_tokens: 22, cached_tokens: 0 };
            let _kept = answer.whole(Bytes::from_static(ANSWER), Some(usage)).await;
            false
        }
    }
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let f = rt.block_on(fixture());
    rt.block_on(async {
        // fill both caches, and wait for the write behind to Redis
        request(&f.memory, &f.key, true).await;
        assert!(request(&f.memory, &f.key, true).await, "an in-process hit");
        if let Some(r) = &f.redis {
            request(r, &f.key, true).await;
            let mut hit = false;
            for _ in 0..100 {
                if request(r, &f.key, true).await {
                    hit = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(hit, "a Redis hit");
        }
    });
    let mut g = c.benchmark_group("cache");
    g.bench_function("admission_only", |b| {
        b.to_async(&rt).iter(|| async { black_box(request(&f.off, &f.key, false).await) })
    });
    g.bench_function("hit_in_process", |b| {
        b.to_async(&rt).iter(|| async { assert!(black_box(request(&f.memory, &f.key, true).await)) })
    });
    if let Some(r) = &f.redis {
        g.bench_function("hit_redis", |b| {
            b.to_async(&rt).iter(|| async { assert!(black_box(request(r, &f.key, true).await)) })
        });
    }
    g.finish();
}

criterion_group!(cache, benches);
criterion_main!(cache);
