//! Who is calling: an API key, a capability token (gatehouse-tokens) or a JWT from a trusted
//! issuer (gatehouse-oidc), told apart by shape before any lookup ([`Credentials`]).
//!
//! API keys are verified against a bounded, short-lived cache in front of the
//! store, so a key that was already verified costs one HMAC and one map lookup, never a
//! database round trip. Misses are cached too (briefly), and concurrent misses for the same
//! key share one store lookup.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse_core::{Credential, Denial, DenyCode, GateName, Presented, Principal, RequestCx};
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

#[derive(Clone, Debug)]
enum Entry {
    Valid { principal: Principal, expires_at: Option<i64>, at: Instant },
    Invalid { at: Instant },
}

impl Entry {
    fn fresh(&self, now: Instant) -> bool {
        match self {
            Entry::Valid { at, .. } => now.duration_since(*at) < POSITIVE_TTL,
            Entry::Invalid { at } => now.duration_since(*at) < NEGATIVE_TTL,
        }
    }
}

/// Verifies API keys; shared by every config snapshot (a reload keeps the cache warm).
pub struct KeyVerifier {
    store: Store,
    hasher: Arc<KeyHasher>,
    cache: Cache<KeyDigest, Entry>,
}

impl KeyVerifier {
    pub fn new(store: Store, hasher: Arc<KeyHasher>, capacity: usize) -> Self {
        Self { store, hasher, cache: Cache::new(capacity) }
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
            Some(e) if e.fresh(now) => e,
            _ => {
                // Drop a stale entry so the single-flight load below runs.
                self.cache.remove(&digest);
                let store = &self.store;
                self.cache
                    .get_or_insert_async(&digest, async move {
                        let row = store.key_by_digest(&digest.0).await?;
                        Ok::<_, gatehouse_store::Error>(entry_for(row, Instant::now()))
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
            Entry::Valid { principal, expires_at, .. } => match expires_at {
                Some(t) if t <= now_ms() => Err(Denial::new(DenyCode::ExpiredCredential)),
                _ => Ok(principal),
            },
        }
    }

    /// Forgets a key at once (on revoke, here or on another replica).
    pub fn evict(&self, digest: &KeyDigest) {
        self.cache.remove(digest);
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

    /// Keeps every replica's cache honest: polls the store's key change feed, so a revoke or a
    /// disabled org/project anywhere takes effect here within `every` (plus one round trip).
    pub async fn run_revocation_poller(self: Arc<Self>, every: Duration) {
        gatehouse_store::poll::changes("api key standing", every, |since| self.evict_changed_since(since)).await;
    }
}

fn entry_for(row: Option<KeyRow>, at: Instant) -> Entry {
    match row {
        Some(k) if k.is_usable() => Entry::Valid {
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
}
