//! One trusted issuer: its key set (swapped atomically, read without locks) and the fetches
//! that fill it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use futures_util::StreamExt;
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use serde_json::Value;

use crate::Error;
use crate::settings::{JwtAlg, OidcIssuer, trusted_url};

const MAX_KEYS: usize = 64;

/// The usable signing keys of a JWKS document: at most [`MAX_KEYS`], unusable entries skipped.
fn key_set(doc: &Value) -> KeySet {
    let mut set = KeySet::default();
    for raw in doc.get("keys").and_then(Value::as_array).into_iter().flatten().take(MAX_KEYS) {
        let Ok(jwk) = serde_json::from_value::<Jwk>(raw.clone()) else { continue };
        if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
            continue;
        }
        let Some(alg) = key_alg(&jwk) else { continue };
        let Ok(key) = DecodingKey::from_jwk(&jwk) else { continue };
        match jwk.common.key_id.clone() {
            Some(kid) => {
                set.by_kid.insert(kid, (alg, key));
            }
            None => set.anonymous.push((alg, key)),
        }
    }
    set
}

/// A JWKS document from untrusted bytes, as a refresh reads it: how many keys are usable.
/// For the fuzz targets.
#[doc(hidden)]
pub fn usable_keys(bytes: &[u8]) -> usize {
    serde_json::from_slice::<Value>(bytes).map_or(0, |doc| {
        let set = key_set(&doc);
        set.by_kid.len() + set.anonymous.len()
    })
}

#[derive(Default)]
struct KeySet {
    by_kid: HashMap<String, (JwtAlg, DecodingKey)>,
    /// Keys published without a `kid` (usable only when a token has none and the choice is unique).
    anonymous: Vec<(JwtAlg, DecodingKey)>,
}

/// The endpoints discovery names, for console sign-in.
#[derive(Clone, Debug)]
pub(crate) struct Discovery {
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    /// RFC 9207: the issuer sends `iss` with every authorization response.
    pub iss_parameter: bool,
    /// OpenID Connect RP-Initiated Logout, when the provider offers it.
    pub end_session_endpoint: Option<String>,
    at: std::time::Instant,
}

pub struct Issuer {
    cfg: OidcIssuer,
    /// The last discovery document's endpoints (console sign-in only), refetched when older
    /// than `jwks_refresh`.
    discovered: arc_swap::ArcSwapOption<Discovery>,
    http: reqwest::Client,
    keys: ArcSwap<KeySet>,
    refetch: tokio::sync::Mutex<()>,
    /// Unix ms of the last fetch attempt (background or on demand).
    last_fetch_ms: AtomicI64,
    fetches: AtomicU64,
    /// Bumped whenever a fetched key set replaces the current one (cached verdicts die).
    generation: AtomicU64,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The algorithm a published key may verify, from its type and curve (and its `alg`, if it
/// names one). Symmetric keys and anything else verify nothing.
fn key_alg(jwk: &Jwk) -> Option<JwtAlg> {
    let by_type = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => JwtAlg::Rs256,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => JwtAlg::Es256,
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => JwtAlg::EdDsa,
        _ => return None,
    };
    let named = match jwk.common.key_algorithm {
        None => by_type,
        Some(KeyAlgorithm::RS256) => JwtAlg::Rs256,
        Some(KeyAlgorithm::ES256) => JwtAlg::Es256,
        Some(KeyAlgorithm::EdDSA) => JwtAlg::EdDsa,
        Some(_) => return None,
    };
    (named == by_type).then_some(by_type)
}

impl Issuer {
    pub fn new(cfg: OidcIssuer) -> Result<Issuer, Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(cfg.fetch_timeout)
            .timeout(cfg.fetch_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|_| Error::Unavailable)?;
        Ok(Issuer {
            cfg,
            discovered: arc_swap::ArcSwapOption::empty(),
            http,
            keys: ArcSwap::from_pointee(KeySet::default()),
            refetch: tokio::sync::Mutex::new(()),
            last_fetch_ms: AtomicI64::new(i64::MIN / 2),
            fetches: AtomicU64::new(0),
            generation: AtomicU64::new(0),
        })
    }

    /// Installs a key set as if fetched (unit tests sign with keys they made).
    #[cfg(test)]
    pub(crate) fn install_keys(&self, doc: &Value) {
        self.keys.store(Arc::new(key_set(doc)));
    }

    pub fn config(&self) -> &OidcIssuer {
        &self.cfg
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// How many times the key set was fetched (for the flood test and metrics).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    fn lookup(&self, kid: Option<&str>, alg: JwtAlg) -> Option<DecodingKey> {
        let set = self.keys.load();
        match kid {
            Some(k) => set.by_kid.get(k).filter(|(a, _)| *a == alg).map(|(_, key)| key.clone()),
            None => {
                let mut same = set.anonymous.iter().chain(set.by_kid.values()).filter(|(a, _)| *a == alg);
                match (same.next(), same.next()) {
                    (Some((_, k)), None) => Some(k.clone()),
                    _ => None,
                }
            }
        }
    }

    /// The key for a token header; an unknown `kid` triggers at most one refetch per cooldown.
    pub(crate) async fn key(&self, kid: Option<&str>, alg: JwtAlg) -> Result<DecodingKey, Error> {
        if kid.is_some_and(|k| k.len() > 256) {
            return Err(Error::Invalid("kid"));
        }
        if let Some(k) = self.lookup(kid, alg) {
            return Ok(k);
        }
        self.refetch_if_due().await;
        if let Some(k) = self.lookup(kid, alg) {
            return Ok(k);
        }
        let set = self.keys.load();
        if set.by_kid.is_empty() && set.anonymous.is_empty() {
            Err(Error::Unavailable)
        } else {
            Err(Error::Invalid("unknown key"))
        }
    }

    async fn refetch_if_due(&self) {
        let cooldown = i64::try_from(self.cfg.unknown_kid_cooldown.as_millis()).unwrap_or(i64::MAX);
        let due = |last: i64| now_ms().saturating_sub(last) >= cooldown;
        if !due(self.last_fetch_ms.load(Ordering::Acquire)) {
            metrics::counter!("gatehouse_oidc_unknown_kid_suppressed_total", "issuer" => self.cfg.name.clone())
                .increment(1);
            return;
        }
        // Single flight: whoever holds the lock fetches; the rest find the result.
        let _guard = self.refetch.lock().await;
        if !due(self.last_fetch_ms.load(Ordering::Acquire)) {
            return;
        }
        self.refresh().await;
    }

    async fn refresh(&self) {
        self.last_fetch_ms.store(now_ms(), Ordering::Release);
        match self.fetch().await {
            Ok(set) => {
                let changed = {
                    let cur = self.keys.load();
                    let mut a: Vec<&String> = cur.by_kid.keys().collect();
                    let mut b: Vec<&String> = set.by_kid.keys().collect();
                    a.sort();
                    b.sort();
                    a != b || cur.anonymous.len() != set.anonymous.len()
                };
                self.keys.store(Arc::new(set));
                if changed {
                    self.generation.fetch_add(1, Ordering::AcqRel);
                }
            }
            Err(e) => {
                tracing::warn!(issuer = %self.cfg.name, error = %e, "cannot fetch the issuer's keys; keeping the last good set")
            }
        }
    }

    /// Refreshes the key set every `jwks_refresh` (the first time at once).
    pub async fn run_refresh(self: Arc<Self>) {
        loop {
            {
                let _guard = self.refetch.lock().await;
                self.refresh().await;
            }
            tokio::time::sleep(self.cfg.jwks_refresh).await;
        }
    }

    async fn get_json(&self, url: &str) -> Result<Value, Error> {
        if !trusted_url(url) {
            return Err(Error::Invalid("untrusted key location"));
        }
        let resp = self.http.get(url).send().await.map_err(|_| Error::Unavailable)?;
        self.read_json(resp, false).await
    }

    /// The client every request to this issuer uses: its timeouts, no redirects.
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// A JSON answer, at most `max_document_bytes`. A 4xx is the issuer refusing what we sent
    /// when `refusal` is set (a code exchange), else the issuer being unavailable.
    pub(crate) async fn read_json(&self, resp: reqwest::Response, refusal: bool) -> Result<Value, Error> {
        read_json(resp, self.cfg.max_document_bytes, refusal).await
    }

    /// The discovery document, checked to speak for this issuer (OpenID Connect Discovery 4.3).
    async fn discovery_document(&self) -> Result<Value, Error> {
        let base = self.cfg.issuer.trim_end_matches('/');
        let doc = self.get_json(&format!("{base}/.well-known/openid-configuration")).await?;
        if doc.get("issuer").and_then(Value::as_str) != Some(self.cfg.issuer.as_str()) {
            return Err(Error::Invalid("discovery document names another issuer"));
        }
        Ok(doc)
    }

    /// The authorization and token endpoints (https, or http on loopback), from a discovery
    /// document at most `jwks_refresh` old.
    pub(crate) async fn discovery(&self) -> Result<Arc<Discovery>, Error> {
        if let Some(d) = self.discovered.load_full()
            && d.at.elapsed() < self.cfg.jwks_refresh
        {
            return Ok(d);
        }
        let doc = self.discovery_document().await?;
        let endpoint = |k: &str| {
            doc.get(k).and_then(Value::as_str).filter(|u| trusted_url(u)).map(str::to_owned).ok_or(Error::Unavailable)
        };
        let d = Arc::new(Discovery {
            authorization_endpoint: endpoint("authorization_endpoint")?,
            token_endpoint: endpoint("token_endpoint")?,
            iss_parameter: doc.get("authorization_response_iss_parameter_supported").and_then(Value::as_bool)
                == Some(true),
            end_session_endpoint: endpoint("end_session_endpoint").ok(),
            at: std::time::Instant::now(),
        });
        self.discovered.store(Some(d.clone()));
        Ok(d)
    }

    async fn fetch(&self) -> Result<KeySet, Error> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("gatehouse_oidc_jwks_fetches_total", "issuer" => self.cfg.name.clone()).increment(1);
        let work = async {
            let uri = match &self.cfg.jwks_uri {
                Some(u) => u.clone(),
                None => {
                    let doc = self.discovery_document().await?;
                    doc.get("jwks_uri").and_then(Value::as_str).ok_or(Error::Unavailable)?.to_owned()
                }
            };
            let doc = self.get_json(&uri).await?;
            Ok(key_set(&doc))
        };
        // Belt and braces: the client's own timeouts apply per request; this bounds the pair.
        tokio::time::timeout(crate::fetch_budget(&self.cfg) * 2 + Duration::from_millis(100), work)
            .await
            .map_err(|_| Error::Unavailable)?
    }
}

/// A JSON answer of at most `max` bytes. A 4xx is the provider refusing what we sent when
/// `refusal` is set (a code exchange), else the provider being unavailable.
pub(crate) async fn read_json(resp: reqwest::Response, max: usize, refusal: bool) -> Result<Value, Error> {
    if refusal && resp.status().is_client_error() {
        return Err(Error::Invalid("refused by the provider"));
    }
    if !resp.status().is_success() {
        return Err(Error::Unavailable);
    }
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(Error::Unavailable);
    }
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| Error::Unavailable)?;
        if body.len() + chunk.len() > max {
            return Err(Error::Unavailable);
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|_| Error::Unavailable)
}
