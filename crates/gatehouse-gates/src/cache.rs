//! The response cache (docs/ROUTING.md, "Response cache"): exact match on a canonical form of
//! the request, last in the request half of the chain so a hit is only served to a request that
//! passed every check before it, and answered through the response half like a provider's
//! answer (output guardrails of the current policy, meter & audit as a cache hit).
//!
//! Off unless a tenant turns it on: an org's or project's routing rule sets
//! `cache_ttl_seconds`. The key binds the caller's org and project, the guardrail policy in
//! force, the endpoint and the resolved model, so a hit can never cross tenants, projects or
//! policies. Entries are what the provider answered (before the output guardrail), whole bodies
//! or complete streams: in process (bounded by total size), or, with a shared limits store
//! (Redis), in Redis for every replica, sealed under the org's data key and bound to their key
//! (an entry copied under another key or tenant does not open). Redis down: a miss, never an
//! error and never another entry.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::digest;
use bytes::Bytes;
use gatehouse_core::{CacheControl, GateName, RequestCx};
use gatehouse_providers::{ApiRequest, Endpoint, Usage};
use quick_cache::Weighter;
use quick_cache::sync::Cache;
use serde_json::Value;

use crate::credentials::Vault;
use crate::tenant_routes::RoutingRules;
use crate::{CachedResponse, Gate, Verdict};

/// The longest TTL a tenant may set (a model's cap has the same bound).
pub const MAX_TTL_SECONDS: u32 = gatehouse_config::MAX_CACHE_TTL_SECONDS as u32;

/// A cache key: SHA-256 of the canonical request and everything that scopes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey(pub [u8; 32]);

/// A kept answer.
#[derive(Debug)]
pub struct Entry {
    /// The provider's whole answer, or a complete stream's SSE bytes (`data: ...` events and
    /// the final `[DONE]`).
    pub body: Bytes,
    pub stream: bool,
    /// What the provider reported it used (recorded with the hit, never charged).
    pub usage: Option<Usage>,
    expires: Instant,
}

impl Entry {
    /// A provider's answer to keep (its TTL is given when it is put).
    pub fn new(body: Bytes, stream: bool, usage: Option<Usage>) -> Entry {
        Entry { body, stream, usage, expires: Instant::now() }
    }
}

#[derive(Clone)]
struct BySize;

impl Weighter<CacheKey, Arc<Entry>> for BySize {
    fn weight(&self, _: &CacheKey, e: &Arc<Entry>) -> u64 {
        // the body plus the bookkeeping around it
        e.body.len() as u64 + 128
    }
}

/// The response cache: in process (bounded by total size, least recently used out first), or
/// shared through Redis.
pub struct ResponseCache {
    entries: Cache<CacheKey, Arc<Entry>, BySize>,
    max_entry: usize,
    shared: Option<Arc<Shared>>,
}

/// Entries in the shared store, sealed per org.
struct Shared {
    limits: Arc<gatehouse_limits::Limits>,
    vault: Arc<Vault>,
    /// Orgs' current data keys, opened: (version, sealer). One store read per org and process.
    keys: Cache<gatehouse_core::OrgId, (i64, Arc<gatehouse_security::seal::Sealer>)>,
}

/// The associated data a shared entry is sealed with: its org, key and data key version.
fn record(org: gatehouse_core::OrgId, key: &CacheKey, version: i64) -> String {
    format!("cache:{org}:{}:{version}", hex(&key.0))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Shared {
    async fn key(&self, org: gatehouse_core::OrgId) -> Option<(i64, Arc<gatehouse_security::seal::Sealer>)> {
        if let Some(k) = self.keys.get(&org) {
            return Some(k);
        }
        match self.vault.org_key(org).await {
            Ok((v, s)) => {
                let k = (v, Arc::new(s));
                self.keys.insert(org, k.clone());
                Some(k)
            }
            Err(e) => {
                tracing::warn!(error = %e, "response cache: the org's data key is unavailable; not cached");
                None
            }
        }
    }

    async fn get(&self, org: gatehouse_core::OrgId, key: &CacheKey) -> Option<Arc<Entry>> {
        let redis = self.limits.redis()?;
        let raw = match redis.cache_get(&hex(&key.0)).await {
            Ok(Some(raw)) => raw,
            Ok(None) => return None,
            Err(_) => {
                metrics::counter!("gatehouse_cache_total", "result" => "unavailable").increment(1);
                return None;
            }
        };
        let (version, sealed) = raw.split_first_chunk::<8>().map(|(v, s)| (i64::from_le_bytes(*v), s))?;
        let sealer = match self.key(org).await {
            Some((v, s)) if v == version => s,
            _ => Arc::new(self.vault.org_key_version(org, version).await.ok()?),
        };
        let Ok(plain) = sealer.open_raw(&record(org, key, version), sealed) else {
            // not this org's, not this key's, or tampered with: never served
            metrics::counter!("gatehouse_cache_total", "result" => "rejected").increment(1);
            return None;
        };
        decode(&plain)
    }

    async fn put(&self, org: gatehouse_core::OrgId, key: CacheKey, entry: &Entry, ttl: Duration) {
        let (Some(redis), Some((version, sealer))) = (self.limits.redis(), self.key(org).await) else { return };
        let until = gatehouse_store::now_ms().saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        let Ok(sealed) = sealer.seal_raw(&record(org, &key, version), &encode(entry, until)) else { return };
        let mut value = version.to_le_bytes().to_vec();
        value.extend_from_slice(&sealed);
        if redis.cache_put(&hex(&key.0), &value, ttl).await.is_err() {
            metrics::counter!("gatehouse_cache_total", "result" => "unavailable").increment(1);
        }
    }
}

/// The layout of sealed entries.
const FORMAT: u8 = 1;

/// An entry as sealed: format, when it expires (unix ms, so every replica's in-process front
/// keeps it no longer than Redis does), stream flag, usage (if any), body.
fn encode(e: &Entry, until_ms: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(35 + e.body.len());
    out.push(FORMAT);
    out.extend_from_slice(&until_ms.to_le_bytes());
    out.push(u8::from(e.stream));
    match e.usage {
        Some(u) => {
            out.push(1);
            for n in [u.prompt_tokens, u.completion_tokens, u.cached_tokens] {
                out.extend_from_slice(&n.to_le_bytes());
            }
        }
        None => out.push(0),
    }
    out.extend_from_slice(&e.body);
    out
}

fn decode(b: &[u8]) -> Option<Arc<Entry>> {
    let (&[format], b) = b.split_first_chunk::<1>()?;
    let (until, b) = b.split_first_chunk::<8>()?;
    let left = u64::try_from(i64::from_le_bytes(*until).saturating_sub(gatehouse_store::now_ms())).ok()?;
    let (&[stream, has_usage], rest) = b.split_first_chunk::<2>()?;
    if format != FORMAT {
        return None;
    }
    let (usage, body) = if has_usage == 1 {
        let (n, body) = rest.split_first_chunk::<24>()?;
        let at = |i: usize| n.get(i..i + 8).and_then(|s| s.try_into().ok()).map(u64::from_le_bytes);
        (Some(Usage { prompt_tokens: at(0)?, completion_tokens: at(8)?, cached_tokens: at(16)? }), body)
    } else {
        (None, rest)
    };
    let expires = Instant::now() + Duration::from_millis(left);
    Some(Arc::new(Entry { body: Bytes::copy_from_slice(body), stream: stream == 1, usage, expires }))
}

impl Default for ResponseCache {
    fn default() -> Self {
        let d = gatehouse_config::CacheSettings::default();
        ResponseCache::new(d.max_bytes, usize::try_from(d.max_entry_bytes).unwrap_or(usize::MAX))
    }
}

impl ResponseCache {
    pub fn new(max_bytes: u64, max_entry: usize) -> ResponseCache {
        let estimated = usize::try_from(max_bytes / 4096).unwrap_or(usize::MAX).max(16);
        ResponseCache { entries: Cache::with_weighter(estimated, max_bytes, BySize), max_entry, shared: None }
    }

    /// Entries kept in the shared limits store (Redis) for every replica, sealed under each
    /// org's data key from `vault`. With the in-process store, the in-process cache. Bounds
    /// from `[cache]`.
    pub fn shared(
        limits: Arc<gatehouse_limits::Limits>,
        vault: Arc<Vault>,
        bounds: gatehouse_config::CacheSettings,
    ) -> ResponseCache {
        let max_entry = usize::try_from(bounds.max_entry_bytes).unwrap_or(usize::MAX);
        let mut c = ResponseCache::new(bounds.max_bytes, max_entry);
        if limits.shared() {
            c.shared = Some(Arc::new(Shared { limits, vault, keys: Cache::new(1024) }));
        }
        c
    }

    /// A live entry of `org`, if one is kept: in process first (with the shared store, a
    /// front for entries this process already opened, each kept no longer than in Redis), then
    /// the shared store.
    pub async fn get(&self, org: gatehouse_core::OrgId, key: &CacheKey) -> Option<Arc<Entry>> {
        if let Some(e) = self.entries.get(key) {
            if e.expires > Instant::now() {
                return Some(e);
            }
            self.entries.remove(key);
        }
        let e = self.shared.as_ref()?.get(org, key).await?;
        self.entries.insert(*key, e.clone());
        Some(e)
    }

    /// Keeps an answer of `org` for `ttl` (an answer over the entry bound is not kept); with
    /// the shared store, in the background.
    pub fn put(&self, org: gatehouse_core::OrgId, key: CacheKey, entry: Entry, ttl: Duration) {
        if entry.body.len() > self.max_entry {
            metrics::counter!("gatehouse_cache_total", "result" => "too_large").increment(1);
            return;
        }
        metrics::counter!("gatehouse_cache_total", "result" => "stored").increment(1);
        let entry = Arc::new(Entry { expires: Instant::now() + ttl, ..entry });
        self.entries.insert(key, entry.clone());
        if let Some(s) = &self.shared {
            let s = s.clone();
            tokio::spawn(async move { s.put(org, key, &entry, ttl).await });
        }
    }

    pub fn max_entry(&self) -> usize {
        self.max_entry
    }
}

/// What the cache step decided for a request.
#[derive(Debug, Default)]
pub enum CacheStep {
    /// Not cached: the tenant has no TTL, the caller said `no-store`, or the request is not
    /// one the cache takes.
    #[default]
    Off,
    /// Not kept (or `no-cache`): the provider's answer is kept under `key` for `ttl`, if the
    /// model it was keyed for answers (not a fallback model with settings of its own).
    Keep { key: CacheKey, ttl: Duration, model: Arc<str> },
    /// Kept: answered from the cache, through the response half like a provider's answer.
    Hit(Arc<Entry>),
}

/// What the cache step looks at: the request as the input guardrail left it, and the
/// fingerprint of the guardrail policy in force for the caller.
pub struct CacheLookup<'a> {
    pub request: &'a ApiRequest,
    pub policy: u64,
}

pub struct CacheGate {
    pub cache: Arc<ResponseCache>,
    pub rules: Arc<RoutingRules>,
}

impl Gate<CacheLookup<'_>> for CacheGate {
    type Pass = CacheStep;
    const NAME: GateName = GateName::Cache;

    async fn check(&self, cx: &mut RequestCx, lookup: &mut CacheLookup<'_>) -> Verdict<CacheStep> {
        let (Some(p), Some(route)) = (cx.principal.as_ref(), cx.route.as_ref()) else {
            return Verdict::Pass(CacheStep::Off);
        };
        let req = lookup.request;
        // another API family's ingress carries fields the canonical form does not see; an
        // answer a caller's own provider key paid for is not another caller's
        // and an upstream that gets signed identity headers may answer each caller differently
        if req.origin.is_some() || route.caller_key || route.identity_headers {
            return Verdict::Pass(CacheStep::Off);
        }
        // the tenant turns it on; the model may keep its answers shorter, or never
        let Some((ttl, honour)) = self.rules.cache(p.org, p.project) else { return Verdict::Pass(CacheStep::Off) };
        let ttl = route.cache_ttl.map_or(ttl, |cap| ttl.min(cap));
        let asked = if honour { cx.cache_control } else { CacheControl::default() };
        if ttl.is_zero() || asked.no_store {
            return Verdict::Pass(CacheStep::Off);
        }
        let key = key(p.org.to_string().as_bytes(), p.project.to_string().as_bytes(), lookup.policy, &route.model, req);
        if !asked.no_cache
            && let Some(hit) = self.cache.get(p.org, &key).await
            && hit.stream == req.stream
        {
            metrics::counter!("gatehouse_cache_total", "result" => "hit").increment(1);
            return Verdict::Serve(CachedResponse(hit));
        }
        metrics::counter!("gatehouse_cache_total", "result" => "miss").increment(1);
        Verdict::Pass(CacheStep::Keep { key, ttl, model: route.model.clone() })
    }
}

/// The key of a request: its scope (org, project, guardrail policy, endpoint, resolved model)
/// and its body in canonical form (object keys sorted, `model` left out for the resolved one,
/// `user` left out: it names the end user, not the question).
pub fn key(org: &[u8], project: &[u8], policy: u64, model: &str, req: &ApiRequest) -> CacheKey {
    fn field(d: &mut digest::Context, b: &[u8]) {
        d.update(&(b.len() as u64).to_le_bytes());
        d.update(b);
    }
    let mut d = digest::Context::new(&digest::SHA256);
    let endpoint: &[u8] = match req.endpoint {
        Endpoint::ChatCompletions => b"chat",
        Endpoint::Embeddings => b"embeddings",
    };
    for part in [
        b"gatehouse/cache/v1",
        org,
        project,
        &policy.to_le_bytes(),
        endpoint,
        model.as_bytes(),
        &[u8::from(req.stream)],
    ] {
        field(&mut d, part);
    }
    let mut keys: Vec<&String> = req.body().keys().filter(|k| *k != "model" && *k != "user").collect();
    keys.sort_unstable();
    for k in keys {
        field(&mut d, k.as_bytes());
        if let Some(v) = req.body().get(k) {
            canonical(&mut d, v);
        }
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(d.finish().as_ref());
    CacheKey(out)
}

/// Feeds a JSON value in a form that is the same for equal values (sorted object keys, a type
/// tag and a length before each part, so no two values share a feed). Depth is bounded by the
/// parse gate.
fn canonical(d: &mut digest::Context, v: &Value) {
    let mut part = |tag: u8, b: &[u8]| {
        d.update(&[tag]);
        d.update(&(b.len() as u64).to_le_bytes());
        d.update(b);
    };
    match v {
        Value::Null => part(b'n', &[]),
        Value::Bool(b) => part(b'b', &[u8::from(*b)]),
        Value::Number(n) => part(b'#', n.to_string().as_bytes()),
        Value::String(s) => part(b's', s.as_bytes()),
        Value::Array(a) => {
            part(b'[', &(a.len() as u64).to_le_bytes());
            for x in a {
                canonical(d, x);
            }
        }
        Value::Object(o) => {
            part(b'{', &(o.len() as u64).to_le_bytes());
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort_unstable();
            for k in keys {
                d.update(b"k");
                d.update(&(k.len() as u64).to_le_bytes());
                d.update(k.as_bytes());
                if let Some(x) = o.get(k) {
                    canonical(d, x);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_providers::RequestBounds;

    fn req(body: &str) -> ApiRequest {
        ApiRequest::parse(
            Endpoint::ChatCompletions,
            body.as_bytes(),
            RequestBounds { max_depth: 16, max_messages: 8, max_embedding_inputs: 8 },
        )
        .unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn equal_requests_share_a_key_and_anything_that_changes_the_answer_or_scope_does_not() {
        let a = req(r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0}"#);
        let same = req(r#"{"temperature":0,"user":"ann","messages":[{"content":"hi","role":"user"}],"model":"alias"}"#);
        let k = |r: &ApiRequest| key(b"org", b"proj", 1, "m", r);
        assert_eq!(k(&a), k(&same), "key order, the model alias and the end user do not matter");
        for other in [
            r#"{"model":"m","messages":[{"role":"user","content":"hi!"}],"temperature":0}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":1}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0,"stream":true}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":"0"}"#,
        ] {
            assert_ne!(k(&a), k(&req(other)), "{other}");
        }
        assert_ne!(k(&a), key(b"org2", b"proj", 1, "m", &a), "another org");
        assert_ne!(k(&a), key(b"org", b"proj2", 1, "m", &a), "another project");
        assert_ne!(k(&a), key(b"org", b"proj", 2, "m", &a), "another guardrail policy");
        assert_ne!(k(&a), key(b"org", b"proj", 1, "m2", &a), "another resolved model");
        // the length prefixes keep fields from running into each other
        assert_ne!(key(b"ab", b"c", 1, "m", &a), key(b"a", b"bc", 1, "m", &a));
    }

    #[tokio::test]
    async fn entries_expire_and_the_cache_stays_within_its_size() {
        let c = ResponseCache::new(10_000, 4_000);
        let org = gatehouse_core::OrgId::generate();
        let k = |i: u8| CacheKey([i; 32]);
        let entry = |b: Vec<u8>| Entry::new(Bytes::from(b), false, None);
        c.put(org, k(1), entry(b"answer".to_vec()), Duration::from_secs(60));
        assert_eq!(c.get(org, &k(1)).await.map(|e| e.body.clone()), Some(Bytes::from_static(b"answer")));
        c.put(org, k(2), entry(b"gone".to_vec()), Duration::ZERO);
        assert!(c.get(org, &k(2)).await.is_none(), "expired");
        c.put(org, k(3), entry(vec![0; 5_000]), Duration::from_secs(60));
        assert!(c.get(org, &k(3)).await.is_none(), "over the entry bound: not kept");
        for i in 10..40 {
            c.put(org, k(i), entry(vec![0; 1_000]), Duration::from_secs(60));
        }
        assert!(c.entries.weight() <= 10_000, "{}", c.entries.weight());
    }

    #[test]
    fn a_shared_entry_decodes_to_what_was_kept() {
        let usage = Usage { prompt_tokens: 3, completion_tokens: 5, cached_tokens: 1 };
        let until = gatehouse_store::now_ms() + 60_000;
        for e in [Entry::new(Bytes::from_static(b"data: x"), true, Some(usage)), Entry::new(Bytes::new(), false, None)]
        {
            let d = decode(&encode(&e, until)).unwrap_or_else(|| panic!("decodes"));
            assert_eq!((d.body.clone(), d.stream, d.usage), (e.body.clone(), e.stream, e.usage));
            assert!(d.expires > Instant::now() + Duration::from_secs(50), "kept in front as long as in Redis");
        }
        let e = Entry::new(Bytes::from_static(b"x"), false, None);
        assert!(decode(&encode(&e, gatehouse_store::now_ms() - 1)).is_none(), "past its time");
        let mut other = encode(&e, until);
        other[0] = 9;
        assert!(decode(&other).is_none(), "another layout");
        assert!(decode(&[1]).is_none() && decode(&[1, 0, 1, 2]).is_none(), "truncated");
    }

    #[test]
    fn cache_control_reads_the_directives_that_do_less() {
        assert_eq!(CacheControl::parse(b"no-store"), CacheControl { no_store: true, no_cache: false });
        assert_eq!(CacheControl::parse(b"max-age=0, No-Cache"), CacheControl { no_store: false, no_cache: true });
        assert_eq!(CacheControl::parse(b"private"), CacheControl::default());
    }
}
