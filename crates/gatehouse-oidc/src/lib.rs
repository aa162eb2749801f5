//! Federated identities: JWT access tokens from the configured OIDC issuers, verified on the
//! hot path against in-memory key sets.
//!
//! Keys come from discovery (`<issuer>/.well-known/openid-configuration` -> `jwks_uri`) or a
//! configured `jwks_uri`, fetched with a size cap, a timeout and no redirects; refreshed in the
//! background; refetched when a token names an unknown `kid` — by one task at a time, and at
//! most once per cooldown, so a flood of made-up `kid`s costs the issuer one request.
//!
//! Refused outright: `alg: none` and every algorithm but RS256/ES256/EdDSA (so no HMAC with a
//! public key as the secret), headers that try to bring their own key (`jku`, `x5u`, `jwk`,
//! `x5c`), a key whose type does not match the header's algorithm, ID tokens or anything else
//! not typed `at+jwt` (RFC 9068) unless the issuer is configured otherwise, wrong `iss`/`aud`,
//! expired or not-yet-valid tokens and tokens issued in the future (bounded skew).

mod jwks;
mod login;
mod oauth;
pub mod settings;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gatehouse_core::{DenyCode, HasDenyCode};
use jsonwebtoken::{Algorithm, Validation};
use serde_json::Value;

use crate::settings::{JwtAlg, OAuthProvider, OidcIssuer};

pub use jwks::{Issuer, usable_keys};
pub use login::{AuthRequest, Callback, ClientSecrets, SignedIn, challenge};
pub use oauth::{OAuthClient, OAuthRequest, OAuthSignIn};

/// Longest token considered (matches the data plane's credential bound).
pub const MAX_TOKEN_BYTES: usize = 8192;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plane {
    Data,
    Control,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("token is not acceptable: {0}")]
    Invalid(&'static str),
    #[error("token expired")]
    Expired,
    #[error("the issuer's keys are unavailable")]
    Unavailable,
}

impl HasDenyCode for Error {
    fn deny_code(&self) -> DenyCode {
        match self {
            Error::Invalid(_) => DenyCode::InvalidToken,
            Error::Expired => DenyCode::ExpiredCredential,
            Error::Unavailable => DenyCode::Unavailable,
        }
    }
}

/// A verified token's identity, as the issuer's claim map reads it.
#[derive(Clone, Debug)]
pub struct Identity {
    /// Our name for the issuer.
    pub issuer: Arc<str>,
    pub subject: Arc<str>,
    /// Org name (claim or the issuer's default).
    pub org: String,
    pub project: Option<String>,
    pub roles: Vec<String>,
    /// Unix seconds.
    pub expires_at: i64,
    pub claims: Value,
}

pub struct Federation {
    issuers: Vec<Arc<Issuer>>,
    /// Console issuers' client secrets, by issuer name.
    client_secrets: ClientSecrets,
    /// Tokens already verified, by SHA-256 of the whole token (signature included), so a
    /// caller presenting the same JWT again costs a hash and a probe, not a signature check.
    verified: quick_cache::sync::Cache<[u8; 32], Verified>,
    /// Plain OAuth 2.0 providers people may sign in to the console with (`[[oauth]]`).
    oauth: Vec<Arc<OAuthClient>>,
}

/// How long a verified token is trusted without checking its signature again. Expiry is
/// still checked on every hit, and a change of the issuer's key set drops the entry.
const VERIFIED_TTL: Duration = Duration::from_secs(60);

#[derive(Clone)]
struct Verified {
    identity: Arc<Identity>,
    plane: Plane,
    issuer: usize,
    key_generation: u64,
    at: std::time::Instant,
}

fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn algorithm(a: JwtAlg) -> Algorithm {
    match a {
        JwtAlg::Rs256 => Algorithm::RS256,
        JwtAlg::Es256 => Algorithm::ES256,
        JwtAlg::EdDsa => Algorithm::EdDSA,
    }
}

fn allowed(a: Algorithm) -> Option<JwtAlg> {
    match a {
        Algorithm::RS256 => Some(JwtAlg::Rs256),
        Algorithm::ES256 => Some(JwtAlg::Es256),
        Algorithm::EdDSA => Some(JwtAlg::EdDsa),
        _ => None,
    }
}

/// Everything a presented JWT goes through before a key is needed: the header (with its
/// refusal of self-named keys), the unverified issuer, and the claim readers over whatever
/// payload it carries. For the fuzz targets.
#[doc(hidden)]
pub fn read_untrusted_token(token: &str) {
    if let Ok(h) = jsonwebtoken::decode_header(token) {
        let _ = names_its_own_key(&h);
    }
    let _ = unverified_issuer(token);
    let claims = token
        .split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    if let Some(c) = claims {
        let _ = pointer_str(&c, "/sub");
        let _ = pointer_roles(&c, "/roles");
    }
}

/// A header that points at or carries its own key: never trusted, the issuer's keys decide.
fn names_its_own_key(h: &jsonwebtoken::Header) -> bool {
    h.jku.is_some() || h.x5u.is_some() || h.jwk.is_some() || h.x5c.is_some()
}

/// Reads `iss` without trusting anything else, to pick the issuer whose keys will decide.
fn unverified_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v.get("iss")?.as_str().map(str::to_owned)
}

fn pointer_str(claims: &Value, p: &str) -> Option<String> {
    match claims.pointer(p)? {
        Value::String(s) if !s.is_empty() && s.len() <= 256 => Some(s.clone()),
        _ => None,
    }
}

/// Roles as an array of strings or a space-separated string (both are common).
fn pointer_roles(claims: &Value, p: &str) -> Result<Vec<String>, Error> {
    let roles: Vec<String> = match claims.pointer(p) {
        None => Vec::new(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        Some(Value::Array(a)) => {
            a.iter().map(|r| r.as_str().map(str::to_owned).ok_or(Error::Invalid("roles"))).collect::<Result<_, _>>()?
        }
        Some(_) => return Err(Error::Invalid("roles")),
    };
    if roles.len() > 64 || roles.iter().any(|r| r.len() > 128) {
        return Err(Error::Invalid("roles"));
    }
    Ok(roles)
}

impl Federation {
    pub fn new(issuers: &[OidcIssuer]) -> Result<Federation, Error> {
        let issuers = issuers.iter().map(|c| Issuer::new(c.clone()).map(Arc::new)).collect::<Result<Vec<_>, _>>()?;
        Ok(Federation {
            issuers,
            client_secrets: ClientSecrets::default(),
            verified: quick_cache::sync::Cache::new(16_384),
            oauth: Vec::new(),
        })
    }

    /// Adds plain OAuth 2.0 providers for console sign-in, each with its resolved secret.
    pub fn with_oauth(
        mut self,
        providers: Vec<(OAuthProvider, Option<secrecy::SecretString>)>,
    ) -> Result<Federation, Error> {
        self.oauth = providers
            .into_iter()
            .map(|(cfg, secret)| OAuthClient::new(cfg, secret).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self)
    }

    /// Plain OAuth 2.0 providers people may sign in to the console with.
    pub fn oauth_providers(&self) -> impl Iterator<Item = &OAuthProvider> {
        self.oauth.iter().map(|c| c.config())
    }

    /// The OAuth provider named `name`.
    pub fn oauth(&self, name: &str) -> Option<&OAuthClient> {
        self.oauth.iter().find(|c| c.config().name == name).map(|c| &**c)
    }

    pub fn is_empty(&self) -> bool {
        self.issuers.is_empty()
    }

    pub fn issuer(&self, name: &str) -> Option<&OidcIssuer> {
        self.issuers.iter().find(|i| i.config().name == name).map(|i| i.config())
    }

    /// Starts each issuer's background key refresh (the first fetch happens at once).
    pub fn spawn_refresh(&self) {
        for i in &self.issuers {
            tokio::spawn(i.clone().run_refresh());
        }
    }

    /// Verifies a JWT access token for `plane`.
    pub async fn verify(&self, token: &str, plane: Plane) -> Result<Arc<Identity>, Error> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Error::Invalid("too long"));
        }
        let digest: [u8; 32] =
            match aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()).as_ref().try_into() {
                Ok(d) => d,
                Err(_) => return Err(Error::Invalid("digest")),
            };
        if let Some(v) = self.verified.get(&digest) {
            let issuer = &self.issuers[v.issuer];
            let skew = i64::try_from(issuer.config().clock_skew.as_secs()).unwrap_or(0);
            if v.plane == plane && v.at.elapsed() < VERIFIED_TTL && issuer.generation() == v.key_generation {
                if v.identity.expires_at + skew < now_secs() {
                    return Err(Error::Expired);
                }
                return Ok(v.identity.clone());
            }
            self.verified.remove(&digest);
        }
        let (index, identity) = self.verify_uncached(token, plane).await?;
        let identity = Arc::new(identity);
        let key_generation = self.issuers[index].generation();
        self.verified.insert(
            digest,
            Verified {
                identity: identity.clone(),
                plane,
                issuer: index,
                key_generation,
                at: std::time::Instant::now(),
            },
        );
        Ok(identity)
    }

    /// Verifies without consulting or filling the verified-token cache: what a token's first
    /// presentation costs (benchmarks, diagnostics).
    pub async fn verify_fresh(&self, token: &str, plane: Plane) -> Result<Identity, Error> {
        self.verify_uncached(token, plane).await.map(|(_, id)| id)
    }

    async fn verify_uncached(&self, token: &str, plane: Plane) -> Result<(usize, Identity), Error> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Error::Invalid("header"))?;
        if names_its_own_key(&header) {
            return Err(Error::Invalid("header names its own key"));
        }
        let iss = unverified_issuer(token).ok_or(Error::Invalid("no issuer"))?;
        let (index, issuer) = self
            .issuers
            .iter()
            .enumerate()
            .find(|(_, i)| {
                let c = i.config();
                c.issuer == iss
                    && match plane {
                        Plane::Data => c.data_plane,
                        Plane::Control => c.control_plane,
                    }
            })
            .ok_or(Error::Invalid("unknown issuer"))?;
        let cfg = issuer.config();
        if cfg.require_access_token_type {
            let typ = header.typ.as_deref().unwrap_or("").to_ascii_lowercase();
            if typ != "at+jwt" && typ != "application/at+jwt" {
                return Err(Error::Invalid("not an access token"));
            }
        }
        let alg = allowed(header.alg).filter(|a| cfg.algorithms.contains(a)).ok_or(Error::Invalid("algorithm"))?;
        let key = issuer.key(header.kid.as_deref(), alg).await?;
        let mut v = Validation::new(algorithm(alg));
        v.set_issuer(&[&cfg.issuer]);
        v.set_audience(&cfg.audiences);
        v.leeway = cfg.clock_skew.as_secs();
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = jsonwebtoken::decode::<Value>(token, &key, &v).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => Error::Expired,
            jsonwebtoken::errors::ErrorKind::InvalidAudience => Error::Invalid("audience"),
            jsonwebtoken::errors::ErrorKind::InvalidIssuer => Error::Invalid("issuer"),
            jsonwebtoken::errors::ErrorKind::ImmatureSignature => Error::Invalid("not yet valid"),
            _ => Error::Invalid("signature or claims"),
        })?;
        let claims = data.claims;
        let now = now_secs();
        let skew = i64::try_from(cfg.clock_skew.as_secs()).unwrap_or(0);
        if claims.get("iat").and_then(Value::as_i64).is_some_and(|iat| iat > now + skew) {
            return Err(Error::Invalid("issued in the future"));
        }
        Ok((index, identity_of(cfg, claims)?))
    }
}

/// The identity a verified token's claims give, read through the issuer's claim map.
fn identity_of(cfg: &OidcIssuer, claims: Value) -> Result<Identity, Error> {
    let expires_at = claims.get("exp").and_then(Value::as_i64).ok_or(Error::Invalid("exp"))?;
    let subject = pointer_str(&claims, &cfg.claims.subject).ok_or(Error::Invalid("subject"))?;
    let org = match &cfg.claims.org {
        Some(p) => pointer_str(&claims, p),
        None => None,
    }
    .or_else(|| cfg.default_org.clone())
    .ok_or(Error::Invalid("org"))?;
    let project =
        cfg.claims.project.as_deref().and_then(|p| pointer_str(&claims, p)).or_else(|| cfg.default_project.clone());
    let roles = match &cfg.claims.roles {
        Some(p) => pointer_roles(&claims, p)?,
        None => Vec::new(),
    };
    Ok(Identity { issuer: cfg.name.as_str().into(), subject: subject.into(), org, project, roles, expires_at, claims })
}

/// How long a fetch may take in total: the configured timeout.
pub(crate) fn fetch_budget(c: &OidcIssuer) -> Duration {
    c.fetch_timeout
}
