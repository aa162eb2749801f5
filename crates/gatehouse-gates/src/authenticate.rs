//! Who is calling: an API key, a capability token (gatehouse-tokens) or a JWT from a trusted
//! issuer (gatehouse-oidc), told apart by shape before any lookup ([`Credentials`]).
//!
//! API keys are verified against a bounded, short-lived cache in front of the
//! store, so a key that was already verified costs one HMAC and one map lookup, never a
//! database round trip. Misses are cached too (briefly), and concurrent misses for the same
//! key share one store lookup.
//!
//! When a key was last used is kept beside its cache entry (one relaxed atomic store per
//! request) and written to the store behind the requests, in one batch per flush
//! ([`KeyVerifier::run_last_used_flusher`]).
//!
//! An entry older than [`POSITIVE_TTL`] is still served while one background task asks the
//! store again, for as long as the store last confirmed it less than the stale bound ago
//! (`server.key_stale_if_error_ms`, 120 s): no request waits for the store for a key it knows,
//! and a store outage or failover shorter than the bound does not refuse known keys.
//! Revocations still evict at once; what the bound costs is how long a replica cut off from
//! the store keeps a key another replica revoked.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use gatehouse_core::{Credential, Denial, DenyCode, GateName, KeyId, Presented, Principal, RequestCx};
use gatehouse_security::{KeyDigest, KeyHasher, KeyKind, check_format};
use gatehouse_store::{KeyRow, Store, now_ms};
use gatehouse_tokens::Capabilities;
use quick_cache::sync::Cache;
use secrecy::{ExposeSecret, SecretString};

use crate::federated::FederatedVerifier;
use crate::{Gate, Verdict};

/// How long a verified key is trusted without asking the store again. Revocations do not
/// wait for this: they are evicted directly and by the revocation poller.
pub const POSITIVE_TTL: Duration = Duration::from_secs(30);
/// How long an unknown digest is remembered, so a flood of bad keys does not hit the store.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(2);
/// The default bound on serving a known key the store has not confirmed again (the store
/// unreachable): after it, the key waits for the store and is refused (503) while it is down.
pub const DEFAULT_STALE_IF_ERROR: Duration = Duration::from_secs(120);

#[derive(Clone, Debug)]
enum Entry {
    Valid { principal: Principal, expires_at: Option<i64>, at: Instant, seen: Arc<Seen> },
    Invalid { at: Instant },
}

/// When one key was last used here, and what of that the store already has. Lives as long as
/// the key stays cached: a refreshed entry takes over its predecessor's.
#[derive(Debug)]
struct Seen {
    key: KeyId,
    at_ms: AtomicI64,
    flushed_ms: AtomicI64,
    /// A background refresh of this key is running (one at a time).
    refreshing: AtomicBool,
}

impl Seen {
    fn new(key: KeyId) -> Arc<Seen> {
        Arc::new(Seen {
            key,
            at_ms: AtomicI64::new(0),
            flushed_ms: AtomicI64::new(0),
            refreshing: AtomicBool::new(false),
        })
    }
}

impl Entry {
    /// A valid key the store confirmed less than `bound` ago.
    fn known_within(&self, now: Instant, bound: Duration) -> bool {
        matches!(self, Entry::Valid { at, .. } if now.duration_since(*at) < bound)
    }

    fn fresh(&self, now: Instant, ttl: Duration) -> bool {
        match self {
            Entry::Valid { at, .. } => now.duration_since(*at) < ttl,
            Entry::Invalid { at } => now.duration_since(*at) < NEGATIVE_TTL,
        }
    }
}

/// Verifies API keys; shared by every config snapshot (a reload keeps the cache warm).
pub struct KeyVerifier {
    store: Store,
    hasher: Arc<KeyHasher>,
    /// Shared with the background refreshes.
    cache: Arc<Cache<KeyDigest, Entry>>,
    /// How long after the store last confirmed a key it may still be served while the store
    /// does not answer.
    stale_if_error: Duration,
    /// [`POSITIVE_TTL`], shorter in tests.
    ttl: Duration,
    /// Use records of keys evicted before their last use was flushed (a revocation, or the
    /// change feed's overlap re-reading a key changed moments ago): flushed with the rest, or
    /// taken back when the key is loaded again.
    retired: Cache<KeyDigest, Arc<Seen>>,
}

impl KeyVerifier {
    pub fn new(store: Store, hasher: Arc<KeyHasher>, capacity: usize) -> Self {
        Self {
            store,
            hasher,
            cache: Arc::new(Cache::new(capacity)),
            stale_if_error: DEFAULT_STALE_IF_ERROR,
            ttl: POSITIVE_TTL,
            retired: Cache::new(capacity.clamp(16, 4096)),
        }
    }

    /// Sets the stale bound (zero: a key older than [`POSITIVE_TTL`] always waits for the
    /// store).
    pub fn with_stale_if_error(mut self, bound: Duration) -> Self {
        self.stale_if_error = bound;
        self
    }

    #[cfg(test)]
    fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Asks the store about a key again without holding up the request that found it stale;
    /// at most one such refresh per key at a time. A failure leaves the stale entry in place.
    fn refresh_behind(&self, digest: KeyDigest, seen: &Arc<Seen>) {
        if seen.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let (store, cache, seen) = (self.store.clone(), self.cache.clone(), seen.clone());
        tokio::spawn(async move {
            match store.key_by_digest(&digest.0).await {
                Ok(row) => {
                    // evicted meanwhile (revoked): the next request loads it, not this
                    if cache.get(&digest).is_some() {
                        cache.insert(digest, entry_for(row, Instant::now(), Some(seen.clone())));
                    }
                }
                Err(e) => {
                    metrics::counter!("gatehouse_key_cache_refresh_failures_total").increment(1);
                    tracing::warn!(gate = "authenticate", error = %e, "key store unavailable; serving a known key from the cache");
                }
            }
            seen.refreshing.store(false, Ordering::Release);
        });
    }

    pub fn hasher(&self) -> &KeyHasher {
        &self.hasher
    }

    /// The principal behind a presented key, or the refusal.
    pub async fn verify(&self, presented: &SecretString) -> Result<Principal, Denial> {
        // Structure and checksum first: garbage and typos never reach the cache or the store.
        if check_format(presented.expose_secret()) != Some(KeyKind::Api) {
            return Err(Denial::new(DenyCode::InvalidApiKey));
        }
        let digest = self.hasher.digest(KeyKind::Api, presented);
        let now = Instant::now();
        let entry = match self.cache.get(&digest) {
            Some(e) if e.fresh(now, self.ttl) => e,
            Some(e) if e.known_within(now, self.stale_if_error) => {
                if let Entry::Valid { seen, .. } = &e {
                    self.refresh_behind(digest, seen);
                }
                e
            }
            stale => {
                // Drop a stale entry so the single-flight load below runs; its use record
                // carries over, so no use is lost between flushes.
                let prior = match stale {
                    Some(Entry::Valid { seen, .. }) => Some(seen),
                    _ => self.retired.remove(&digest).map(|(_, seen)| seen),
                };
                self.cache.remove(&digest);
                let store = &self.store;
                self.cache
                    .get_or_insert_async(&digest, async move {
                        let row = store.key_by_digest(&digest.0).await?;
                        Ok::<_, gatehouse_store::Error>(entry_for(row, Instant::now(), prior))
                    })
                    .await
                    .map_err(|e| {
                        tracing::warn!(gate = "authenticate", error = %e, "key store unavailable");
                        Denial::new(DenyCode::Unavailable)
                    })?
            }
        };
        match entry {
            Entry::Invalid { .. } => Err(Denial::new(DenyCode::InvalidApiKey)),
            Entry::Valid { principal, expires_at, seen, .. } => {
                let now = now_ms();
                match expires_at {
                    Some(t) if t <= now => Err(Denial::new(DenyCode::ExpiredCredential)),
                    _ => {
                        seen.at_ms.store(now, Ordering::Relaxed);
                        Ok(principal)
                    }
                }
            }
        }
    }

    /// Forgets a key at once (on revoke, here or on another replica); a use not yet flushed
    /// is kept for the next flush.
    pub fn evict(&self, digest: &KeyDigest) {
        if let Some((_, Entry::Valid { seen, .. })) = self.cache.remove(digest)
            && seen.at_ms.load(Ordering::Relaxed) > seen.flushed_ms.load(Ordering::Relaxed)
        {
            self.retired.insert(*digest, seen);
        }
    }

    /// Evicts every key whose standing changed at or after `since_ms` (revoked, or its org or
    /// project disabled or enabled); returns how many the store reported.
    pub async fn evict_changed_since(&self, since_ms: i64) -> Result<usize, gatehouse_store::Error> {
        let changed = self.store.keys_changed_since(since_ms).await?;
        for d in &changed {
            self.evict(&KeyDigest(*d));
        }
        Ok(changed.len())
    }

    /// Writes when cached keys were last used to the store, every `every`: one batch of the
    /// keys used since the last flush, evicted ones included. Only a key pushed out of a full
    /// cache between flushes loses that interval's last use.
    pub async fn run_last_used_flusher(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.flush_last_used().await {
                tracing::warn!(error = %e, "cannot record when keys were last used; retrying next flush");
            }
        }
    }

    /// One flush; returns how many keys it wrote.
    pub async fn flush_last_used(&self) -> Result<usize, gatehouse_store::Error> {
        let mut due: Vec<(Arc<Seen>, i64)> = Vec::new();
        let cached = self.cache.iter().filter_map(|(_, e)| match e {
            Entry::Valid { seen, .. } => Some(seen),
            Entry::Invalid { .. } => None,
        });
        let retired: Vec<(KeyDigest, Arc<Seen>)> = self.retired.iter().collect();
        for seen in cached.chain(retired.iter().map(|(_, s)| s.clone())) {
            let at = seen.at_ms.load(Ordering::Relaxed);
            if at > seen.flushed_ms.load(Ordering::Relaxed) {
                due.push((seen, at));
            }
        }
        if !due.is_empty() {
            let batch: Vec<(KeyId, i64)> = due.iter().map(|(s, at)| (s.key, *at)).collect();
            self.store.touch_keys(&batch).await?;
            for (seen, at) in &due {
                seen.flushed_ms.fetch_max(*at, Ordering::Relaxed);
            }
        }
        // written (or nothing to write): what was retired is done with
        for (digest, _) in &retired {
            self.retired.remove(digest);
        }
        Ok(due.len())
    }

    /// Keeps every replica's cache honest: polls the store's key change feed, so a revoke or a
    /// disabled org/project anywhere takes effect here within `every` (plus one round trip).
    pub async fn run_revocation_poller(self: Arc<Self>, every: Duration) {
        gatehouse_store::poll::changes("api key standing", every, |since| self.evict_changed_since(since)).await;
    }
}

fn entry_for(row: Option<KeyRow>, at: Instant, prior: Option<Arc<Seen>>) -> Entry {
    match row {
        Some(k) if k.is_usable() => Entry::Valid {
            seen: prior.filter(|s| s.key == k.id).unwrap_or_else(|| Seen::new(k.id)),
            principal: Principal {
                org: k.org,
                project: k.project,
                credential: Credential::Key(k.id),
                allowed_models: k.effective_models().map(|m| m.into_iter().map(String::into_boxed_str).collect()),
                grant: None,
                rpm: k.project_rpm,
                tpm: k.project_tpm,
                cors_origins: k.project_cors.map(|o| o.into_iter().map(String::into_boxed_str).collect()),
            },
            expires_at: k.expires_at,
            at,
        },
        _ => Entry::Invalid { at },
    }
}

/// Every way a caller can prove who it is, shared by every config snapshot.
#[derive(Clone)]
pub struct Credentials {
    pub keys: Arc<KeyVerifier>,
    /// Capability tokens (macaroons); `None` only in narrow unit tests.
    pub tokens: Option<Arc<Capabilities>>,
    /// OIDC issuers trusted for the data plane; `None` when none is configured.
    pub federated: Option<Arc<FederatedVerifier>>,
}

/// What a presented bearer credential looks like; decided without any lookup.
#[derive(Debug, PartialEq, Eq)]
enum Shape {
    ApiKey,
    Jwt,
    Macaroon,
}

/// Anything that is not recognisably a token is treated as an API key (and refused as one
/// by the format check): that is what nearly every typo is.
fn shape(presented: &str) -> Shape {
    if presented.starts_with("eyJ") && presented.bytes().filter(|b| *b == b'.').count() == 2 {
        Shape::Jwt
    } else if presented.starts_with("Ag") || presented.starts_with('{') || presented.starts_with('[') {
        // V2 binary macaroons start with byte 0x02 ("Ag" in base64); JSON ones with `{`.
        Shape::Macaroon
    } else {
        Shape::ApiKey
    }
}

impl Credentials {
    pub async fn verify(&self, presented: &SecretString, source: Option<IpAddr>) -> Result<Principal, Denial> {
        let text = presented.expose_secret();
        match shape(text) {
            Shape::ApiKey => self.keys.verify(presented).await,
            Shape::Jwt => match &self.federated {
                Some(f) => f.verify(text).await,
                None => Err(Denial::new(DenyCode::InvalidToken)),
            },
            Shape::Macaroon => match &self.tokens {
                Some(t) => t.verify(text, source).await.map(|v| v.principal).map_err(|e| e.denial()),
                None => Err(Denial::new(DenyCode::InvalidToken)),
            },
        }
    }
}

/// The first gate: turns the presented credential into a [`Principal`].
pub struct AuthenticateGate {
    pub creds: Credentials,
}

impl Gate<()> for AuthenticateGate {
    type Pass = ();
    const NAME: GateName = GateName::Authenticate;

    /// Identity comes from headers only, never from the body: it runs before the body is parsed.
    async fn check(&self, cx: &mut RequestCx, _: &mut ()) -> Verdict {
        let outcome = match std::mem::take(&mut cx.credential) {
            Presented::Nothing => Err(Denial::new(DenyCode::MissingCredentials)),
            Presented::Ambiguous => Err(Denial::new(DenyCode::AmbiguousCredentials)),
            // The credential leaves the context here: nothing after this gate can see it.
            Presented::One(c) => self.creds.verify(&c, cx.source).await,
        };
        Verdict::from(outcome.map(|p| cx.principal = Some(p)))
    }
}

/// Who is calling, as the signed identity headers carry it to a provider or an MCP server.
pub fn identity_of(p: &gatehouse_core::Principal, request_id: &str) -> gatehouse_identity::Identity {
    use gatehouse_core::Credential;
    let subject = match &p.credential {
        Credential::Key(k) => format!("key:{k}"),
        Credential::Token(t) => format!("capability:{t}"),
        Credential::Federated { issuer, subject } => format!("{issuer}:{subject}"),
    };
    gatehouse_identity::Identity {
        org: p.org.to_string(),
        project: p.project.to_string(),
        subject,
        roles: p.grant.as_ref().map(|g| g.roles.iter().map(|r| r.to_string()).collect()).unwrap_or_default(),
        request_id: request_id.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_are_told_apart_without_lookups() {
        let key = gatehouse_security::generate_key(KeyKind::Api);
        assert_eq!(shape(key.expose_secret()), Shape::ApiKey);
        assert_eq!(shape("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"), Shape::Jwt);
        assert_eq!(shape("AgEJZ2F0ZWhvdXNl"), Shape::Macaroon);
        assert_eq!(shape("{\"v\":2}"), Shape::Macaroon);
        assert_eq!(shape("not-a-key"), Shape::ApiKey);
    }

    #[tokio::test]
    async fn a_keys_last_use_is_flushed_once_even_after_its_eviction() {
        let k = gatehouse_testkit::stores::keyed(None).await;
        let store = k.test.store.clone();
        let v = KeyVerifier::new(store.clone(), k.hasher.clone(), 16);
        let row = |store: Store| async move { store.list_keys(k.tenant.org, None, None, 10).await.unwrap().remove(0) };
        assert_eq!(v.flush_last_used().await.unwrap(), 0, "nothing used, nothing written");
        let before = now_ms();
        v.verify(&k.key).await.unwrap();
        assert_eq!(v.flush_last_used().await.unwrap(), 1);
        let first = row(store.clone()).await.last_used_at.unwrap();
        assert!(first >= before);
        assert_eq!(v.flush_last_used().await.unwrap(), 0, "a use is written once");

        // used again, then evicted (a revocation elsewhere, or the change feed's overlap)
        // before the next flush: the use is still written
        while now_ms() == first {
            tokio::task::yield_now().await;
        }
        v.verify(&k.key).await.unwrap();
        v.evict(&v.hasher.digest(KeyKind::Api, &k.key));
        assert_eq!(v.flush_last_used().await.unwrap(), 1);
        assert!(row(store.clone()).await.last_used_at.unwrap() > first);
        assert_eq!(v.flush_last_used().await.unwrap(), 0);
        // an unknown key is never recorded
        let stranger = gatehouse_security::generate_key(KeyKind::Api);
        assert!(v.verify(&stranger).await.is_err());
        assert_eq!(v.flush_last_used().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_known_key_is_served_past_its_entry_while_the_store_is_away_within_the_bound() {
        let k = gatehouse_testkit::stores::keyed(None).await;
        let store = k.test.store.clone();
        let verifier = |bound: Duration| {
            KeyVerifier::new(store.clone(), k.hasher.clone(), 16)
                .with_ttl(Duration::from_millis(1))
                .with_stale_if_error(bound)
        };
        let (lenient, strict, short) =
            (verifier(Duration::from_secs(60)), verifier(Duration::ZERO), verifier(Duration::from_millis(2)));
        for v in [&lenient, &strict, &short] {
            v.verify(&k.key).await.unwrap();
        }
        // every entry is past its TTL (and past the short bound); then the store goes away
        tokio::time::sleep(Duration::from_millis(10)).await;
        store.close().await;
        assert!(lenient.verify(&k.key).await.is_ok(), "served from the cache within the bound");
        assert!(lenient.verify(&k.key).await.is_ok(), "and again while the refresh keeps failing");
        for v in [&strict, &short] {
            assert_eq!(v.verify(&k.key).await.unwrap_err().code, DenyCode::Unavailable, "past the bound: unavailable");
        }
        let stranger = gatehouse_security::generate_key(KeyKind::Api);
        assert_eq!(lenient.verify(&stranger).await.unwrap_err().code, DenyCode::Unavailable, "never invalid");
    }
}
