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
use gatehouse_core::{DenyCode, RequestCx, RequestId};
use gatehouse_gates::authenticate::{Credentials, KeyVerifier};
use gatehouse_gates::federated::FederatedVerifier;
use gatehouse_gates::route::RouteTable;
use gatehouse_gates::{Gates, admit};
use gatehouse_oidc::{Federation, Plane};
use gatehouse_providers::{Endpoint, RequestBounds};
use gatehouse_security::{KeyHasher, KeyKind, MasterKey};
use gatehouse_store::{Store, now_ms};
use gatehouse_tokens::{Capabilities, MintRequest};
use secrecy::{ExposeSecret, SecretString};

const BODY: &[u8] = br#"{"model":"mock","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Summarise the plot of Hamlet in two sentences, please."}],"temperature":0.2,"max_tokens":128}"#;

struct Fixture {
    gates: Gates,
    token: SecretString,
    jwts: Jwts,
    store: Store,
    hasher: Arc<KeyHasher>,
    key: SecretString,
    _store: gatehouse_testkit::stores::TestStore,
}

async fn fixture() -> Fixture {
    let keyed = gatehouse_testkit::stores::keyed(None).await;
    let (store, t, hasher, key) = (keyed.test.store.clone(), keyed.tenant, keyed.hasher.clone(), keyed.key.clone());
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
    let policy = gatehouse_config::Config::default().policy;
    let table = Arc::new(RouteTable::build(&policy));
    let bounds = RequestBounds { max_depth: 32, max_messages: 2048, max_embedding_inputs: 2048 };
    let (federated, jwts) = federation(&store).await;
    let creds = Credentials { keys: verifier, tokens: Some(tokens), federated: Some(federated) };
    let policies = Arc::new(gatehouse_gates::guardrails::Policies::builtin().expect("engine"));
    let limits =
        gatehouse_gates::limits::LimitsGate::new(Arc::new(gatehouse_gates::limits::LimitsBackend::local()), &policy);
    let audit = gatehouse_gates::meter::AuditHook::off();
    let gates = Gates::new(creds, policies, limits, table, gatehouse_gates::TenantRouting::default(), bounds, audit);
    Fixture { gates, token: SecretString::from(minted.token), jwts, store, hasher, key, _store: keyed.test }
}

/// JWTs signed with each accepted algorithm by freshly generated keys.
struct Jwts {
    es256: SecretString,
    rs256: String,
    eddsa: String,
}

/// An issuer whose JWKS (one key per algorithm) is served on loopback, and tokens it signed.
async fn federation(store: &Store) -> (Arc<FederatedVerifier>, Jwts) {
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaPublicKeyComponents,
    };
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
    let ec = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("keygen");
    let ec_public = ec.public_key().as_ref().to_vec(); // 0x04 || x || y
    let ed = Ed25519KeyPair::generate().expect("keygen");
    let rsa = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("keygen");
    let rsa_public = RsaPublicKeyComponents::<Vec<u8>>::from(rsa.public_key());
    let jwks = serde_json::json!({"keys": [
        {"kty": "EC", "crv": "P-256", "kid": "es", "alg": "ES256", "use": "sig",
         "x": b64(&ec_public[1..33]), "y": b64(&ec_public[33..65])},
        {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "alg": "EdDSA", "use": "sig", "x": b64(ed.public_key().as_ref())},
        {"kty": "RSA", "kid": "rs", "alg": "RS256", "use": "sig", "n": b64(&rsa_public.n), "e": b64(&rsa_public.e)},
    ]});
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
    let sign = |alg: jsonwebtoken::Algorithm, kid: &str, key: &jsonwebtoken::EncodingKey| {
        let mut header = jsonwebtoken::Header::new(alg);
        header.typ = Some("at+jwt".into());
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, &claims, key).expect("sign")
    };
    let ec_der = ec.to_pkcs8v1().expect("pkcs8");
    let ed_der = ed.to_pkcs8().expect("pkcs8");
    // jsonwebtoken signs RSA from PKCS#1 only; aws-lc-rs exports PKCS#8: sign by hand instead.
    let rs256 = {
        let header = b64(br#"{"alg":"RS256","typ":"at+jwt","kid":"rs"}"#);
        let input = format!("{header}.{}", b64(claims.to_string().as_bytes()));
        let mut sig = vec![0u8; rsa.public_modulus_len()];
        rsa.sign(
            &aws_lc_rs::signature::RSA_PKCS1_SHA256,
            &aws_lc_rs::rand::SystemRandom::new(),
            input.as_bytes(),
            &mut sig,
        )
        .expect("rsa sign");
        format!("{input}.{}", b64(&sig))
    };
    let jwts = Jwts {
        es256: SecretString::from(sign(
            jsonwebtoken::Algorithm::ES256,
            "es",
            &jsonwebtoken::EncodingKey::from_ec_der(ec_der.as_ref()),
        )),
        eddsa: sign(jsonwebtoken::Algorithm::EdDSA, "ed", &jsonwebtoken::EncodingKey::from_ed_der(ed_der.as_ref())),
        rs256,
    };
    (Arc::new(FederatedVerifier::new(federation, store.clone())), jwts)
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let f = rt.block_on(fixture());
    // warm the cache
    let creds = &f.gates.authenticate.creds;
    rt.block_on(creds.keys.verify(&f.key)).expect("valid key");
    rt.block_on(creds.verify(&f.token, None)).expect("valid token");
    rt.block_on(creds.verify(&f.jwts.es256, None)).expect("valid jwt");
    let federation = creds.federated.as_ref().map(|v| v.federation.clone()).expect("federation");
    for t in [&f.jwts.rs256, &f.jwts.eddsa] {
        rt.block_on(federation.verify_fresh(t, Plane::Data)).expect("valid jwt");
    }

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
        b.to_async(&rt).iter(|| async { black_box(creds.verify(black_box(&f.jwts.es256), None).await.is_ok()) })
    });
    // First sight of a token: the signature is checked (the verified-token cache is bypassed).
    let es = f.jwts.es256.expose_secret().to_owned();
    for (name, token) in [
        ("jwt_first_sight_rs256", &f.jwts.rs256),
        ("jwt_first_sight_es256", &es),
        ("jwt_first_sight_eddsa", &f.jwts.eddsa),
    ] {
        g.bench_function(name, |b| {
            b.to_async(&rt)
                .iter(|| async { black_box(federation.verify_fresh(black_box(token), Plane::Data).await.is_ok()) })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("admit");
    g.bench_function("full_chain_embedded", |b| {
        b.to_async(&rt).iter(|| async {
            let cx = RequestCx::new(RequestId::generate(), Some(f.key.clone()).into());
            let body = async { Ok::<_, DenyCode>(Bytes::from_static(BODY)) };
            black_box(admit(&f.gates, cx, Endpoint::ChatCompletions, body).await.is_ok())
        })
    });
    g.bench_function("baseline_json_parse_only", |b| {
        b.iter(|| black_box(serde_json::from_slice::<serde_json::Value>(black_box(BODY)).is_ok()))
    });
    g.finish();
}

/// The route decision at 16 deployments (four tiers of four, mixed weights): resolve the name,
/// order the deployments by tier, weight and each breaker's state now (a clock read and 16
/// breaker reads), take the first and the fallbacks as the route gate does; beside the
/// single-deployment lookup every request paid before deployments existed.
fn route_decision(c: &mut Criterion) {
    let mut toml = String::new();
    for p in 0..16 {
        toml.push_str(&format!("[[providers]]\nname = \"p{p}\"\nbase_url = \"http://127.0.0.1:{}/v1\"\n", 1000 + p));
    }
    toml.push_str("[[models]]\nname = \"one\"\nprovider = \"p0\"\n[[models]]\nname = \"many\"\nprovider = \"p0\"\n");
    for p in 1..16 {
        toml.push_str(&format!(
            "[[models.deployments]]\nprovider = \"p{p}\"\npriority = {}\nweight = {}\n",
            p / 4,
            1 + p % 3
        ));
    }
    let cfg = gatehouse_config::Config::from_toml(&toml).expect("config");
    let table = RouteTable::build(&cfg.policy);
    let mut g = c.benchmark_group("route");
    g.bench_function("baseline_one_deployment_lookup", |b| {
        b.iter(|| black_box(table.resolve(black_box("one")).map(|e| e.route.clone())))
    });
    g.bench_function("decision_16_deployments", |b| {
        b.iter(|| {
            let e = table.resolve(black_box("many")).expect("model");
            let now = gatehouse_gates::route::now_ms();
            let mut order = e.attempts_at(now).into_iter().map(|i| e.deployments[i].0.clone());
            let first = order.next();
            let fallbacks: Vec<_> = order.collect();
            black_box((first, fallbacks))
        })
    });
    g.finish();
}

criterion_group!(hot_path, benches, route_decision);
criterion_main!(hot_path);
