//! Hot-path micro-benchmarks, each beside a naive baseline measured in the same run:
//!   key_verify: a cached key (one HMAC + one cache probe) vs asking SQLite every time;
//!   credential_verify: each credential kind on a warm cache (API key; a capability token with
//!               5 caveats: org, project, expiry, scope, models; an ES256 JWT access token with
//!               its issuer's JWKS cached, served by a local HTTP server);
//!   admit:      the whole gate chain with embedded stores vs just parsing the body as JSON.
//! Run: cargo bench -p gatehouse-gates --bench hot_path

#![expect(clippy::expect_used, reason = "benchmark setup: a failure must stop the run")]

use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use gatehouse_core::scope::ScopePattern;
use gatehouse_core::{DenyCode, KeyId, RequestCx, RequestId};
use gatehouse_gates::authenticate::{Credentials, KeyVerifier};
use gatehouse_gates::federated::FederatedVerifier;
use gatehouse_gates::route::RouteTable;
use gatehouse_gates::{Gates, admit};
use gatehouse_oidc::Federation;
use gatehouse_providers::{Endpoint, RequestBounds};
use gatehouse_security::{KeyHasher, KeyKind, MasterKey, generate_key};
use gatehouse_store::{NewKey, Store, now_ms};
use gatehouse_tokens::{Capabilities, MintRequest};
use secrecy::SecretString;

const BODY: &[u8] = br#"{"model":"mock","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Summarise the plot of Hamlet in two sentences, please."}],"temperature":0.2,"max_tokens":128}"#;

struct Fixture {
    gates: Gates,
    token: SecretString,
    jwt: SecretString,
    store: Store,
    hasher: Arc<KeyHasher>,
    key: SecretString,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_sqlite(&dir.path().join("bench.db")).await.expect("sqlite");
    store.migrate().await.expect("migrate");
    let t = store.ensure_default_tenant().await.expect("tenant");
    let hasher = Arc::new(KeyHasher::new(&MasterKey::from_bytes([3; 32])));
    let key = generate_key(KeyKind::Api);
    store
        .insert_key(&NewKey {
            id: KeyId::generate(),
            org: t.org,
            project: t.project,
            name: "bench".into(),
            digest: hasher.digest(KeyKind::Api, &key).0,
            hint: "h".into(),
            allowed_models: None,
            created_at: now_ms(),
            expires_at: None,
            user: None,
        })
        .await
        .expect("insert");
    let verifier = Arc::new(KeyVerifier::new(store.clone(), hasher.clone(), 10_000));
    let sealer = Capabilities::sealer(&MasterKey::from_bytes([3; 32])).expect("sealer");
    let tokens = Arc::new(Capabilities::new(store.clone(), sealer, 10_000));
    let minted = tokens
        .mint(MintRequest {
            org: t.org,
            project: t.project,
            name: "bench".into(),
            scopes: vec![ScopePattern::parse("chat:*").expect("scope")],
            models: Some(vec!["mock".into()]),
            ttl: std::time::Duration::from_secs(3600),
            budget_micro_usd: None,
            rpm: None,
            ips: None,
            minted_by: "bench".into(),
        })
        .await
        .expect("mint");
    assert_eq!(minted.caveats.len(), 5);
    let table = Arc::new(RouteTable::build(&gatehouse_config::Config::default().policy));
    let bounds = RequestBounds { max_depth: 32, max_messages: 2048, max_embedding_inputs: 2048 };
    let (federated, jwt) = federation(&store).await;
    let creds = Credentials { keys: verifier, tokens: Some(tokens), federated: Some(federated) };
    let gates = Gates::new(creds, table, bounds, gatehouse_gates::meter::AuditHook::off());
    Fixture { gates, token: SecretString::from(minted.token), jwt, store, hasher, key, _dir: dir }
}

/// An issuer whose JWKS (one P-256 key) is served on loopback, and a token it signed.
async fn federation(store: &Store) -> (Arc<FederatedVerifier>, SecretString) {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("keygen");
    let pkcs8 = pair.to_pkcs8v1().expect("pkcs8");
    let public = pair.public_key().as_ref().to_vec(); // 0x04 || x || y
    let jwks = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "bench", "alg": "ES256", "use": "sig",
        "x": URL_SAFE_NO_PAD.encode(&public[1..33]), "y": URL_SAFE_NO_PAD.encode(&public[33..65])}]});
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new().route("/jwks", axum::routing::get(move || async move { axum::Json(jwks) }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let issuer = format!("http://{addr}");
    let cfg = gatehouse_config::Config::from_toml(&format!(
        r#"
[[oidc]]
name = "bench"
issuer = "{issuer}"
jwks_uri = "{issuer}/jwks"
audiences = ["https://gatehouse.bench"]
default_org = "default"
default_project = "default"
claims = {{ roles = "/roles" }}
roles = {{ inference = ["chat:*"] }}
"#
    ))
    .expect("config");
    let federation = Arc::new(Federation::new(&cfg.server.oidc).expect("federation"));
    let now = now_ms() / 1000;
    let claims = serde_json::json!({"iss": issuer, "aud": "https://gatehouse.bench", "sub": "bench", "iat": now,
        "exp": now + 3600, "roles": ["inference"]});
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.typ = Some("at+jwt".into());
    header.kid = Some("bench".into());
    let jwt =
        jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref())).expect("sign");
    (Arc::new(FederatedVerifier::new(federation, store.clone())), SecretString::from(jwt))
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let f = rt.block_on(fixture());
    // warm the cache
    let creds = &f.gates.authenticate.creds;
    rt.block_on(creds.keys.verify(&f.key)).expect("valid key");
    rt.block_on(creds.verify(&f.token, None)).expect("valid token");
    rt.block_on(creds.verify(&f.jwt, None)).expect("valid jwt");

    let mut g = c.benchmark_group("key_verify");
    g.bench_function("cache_hit", |b| {
        b.to_async(&rt).iter(|| async { black_box(creds.keys.verify(black_box(&f.key)).await.is_ok()) })
    });
    g.bench_function("baseline_store_lookup_every_time", |b| {
        b.to_async(&rt).iter(|| async {
            let d = f.hasher.digest(KeyKind::Api, black_box(&f.key));
            black_box(f.store.key_by_digest(&d.0).await.expect("lookup").is_some())
        })
    });
    g.finish();

    let mut g = c.benchmark_group("credential_verify");
    g.bench_function("api_key_cache_hit", |b| {
        b.to_async(&rt).iter(|| async { black_box(creds.verify(black_box(&f.key), None).await.is_ok()) })
    });
    g.bench_function("macaroon_5_caveats", |b| {
        b.to_async(&rt).iter(|| async { black_box(creds.verify(black_box(&f.token), None).await.is_ok()) })
    });
    g.bench_function("jwt_es256_cached_jwks", |b| {
        b.to_async(&rt).iter(|| async { black_box(creds.verify(black_box(&f.jwt), None).await.is_ok()) })
    });
    g.finish();

    let mut g = c.benchmark_group("admit");
    g.bench_function("full_chain_embedded", |b| {
        b.to_async(&rt).iter(|| async {
            let mut cx = RequestCx::new(RequestId::generate(), Some(f.key.clone()));
            let body = async { Ok::<_, DenyCode>(Bytes::from_static(BODY)) };
            black_box(admit(&f.gates, &mut cx, Endpoint::ChatCompletions, body).await.is_ok())
        })
    });
    g.bench_function("baseline_json_parse_only", |b| {
        b.iter(|| black_box(serde_json::from_slice::<serde_json::Value>(black_box(BODY)).is_ok()))
    });
    g.finish();
}

criterion_group!(hot_path, benches);
criterion_main!(hot_path);
