//! Minting, delegation, revocation, root-key rotation and verification.
//!
//! The hot path ([`Capabilities::verify`]) touches the store only on a cache miss: root keys
//! are cached (opened) per org and version, token standing per token id. Both caches are
//! single-flight, so a burst of requests with a cold token costs one store round trip.
//! Revocations reach every replica through [`Capabilities::run_revocation_poller`].

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::macaroon::{Encoding, Limits, Macaroon};
use gatehouse_core::scope::ScopePattern;
use gatehouse_core::{Credential, Denial, DenyCode, Grant, HasDenyCode, OrgId, Principal, ProjectId, TokenId};
use gatehouse_security::MasterKey;
use gatehouse_security::seal::{Sealer, random_key};
use gatehouse_store::{CapabilityRow, CapabilityStatus, RootKeyRow, Store, now_ms};
use ipnet::IpNet;
use quick_cache::sync::Cache;
use zeroize::Zeroizing;

use crate::caveat::{Caveat, Folded, Violation, check_not_wider};
use crate::ident::TokenIdent;

/// The macaroon location Gatehouse writes (a hint; libmacaroons does not sign it).
pub const LOCATION: &str = "gatehouse";
const SEAL_PURPOSE: &[u8] = b"gatehouse/v1/seal/capability-root-key";
/// How long a token's standing is trusted without asking the store; revocations do not wait
/// for it (the poller evicts them).
const STATUS_TTL: Duration = Duration::from_secs(30);
/// Root keys are re-read this often so a rotation's new retire time reaches every replica.
const KEY_TTL: Duration = Duration::from_secs(5);
/// A presented chain of one root and this many discharges at most.
const MAX_PRESENTED: usize = 1 + 8;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("invalid token")]
    Invalid,
    #[error("token expired")]
    Expired,
    #[error("token not permitted here")]
    Forbidden,
    #[error("{0}")]
    Wider(String),
    #[error("invalid request: {0}")]
    BadRequest(&'static str),
    #[error("not found")]
    NotFound,
    #[error("token store unavailable")]
    Unavailable,
}

impl Error {
    /// The refusal, with the field it concerns where there is one.
    pub fn denial(&self) -> Denial {
        match self {
            Error::Wider(_) => Denial::new(self.deny_code()).with_param("caveats"),
            Error::BadRequest(p) => Denial::new(self.deny_code()).with_param(p),
            _ => Denial::new(self.deny_code()),
        }
    }
}

impl HasDenyCode for Error {
    fn deny_code(&self) -> DenyCode {
        match self {
            Error::Invalid => DenyCode::InvalidToken,
            Error::Expired => DenyCode::ExpiredCredential,
            Error::Forbidden | Error::Wider(_) => DenyCode::PermissionDenied,
            Error::BadRequest(_) => DenyCode::InvalidRequest,
            Error::NotFound => DenyCode::NotFound,
            Error::Unavailable => DenyCode::Unavailable,
        }
    }
}

fn unavailable(e: gatehouse_store::Error) -> Error {
    tracing::warn!(error = %e, "capability token store call failed");
    Error::Unavailable
}

#[derive(Clone)]
struct KeyEntry {
    /// `None`: no such key version (cached briefly like any miss).
    key: Option<Arc<Zeroizing<[u8; 32]>>>,
    retire_at: Option<i64>,
    at: Instant,
}

#[derive(Clone)]
struct StatusEntry {
    status: Option<CapabilityStatus>,
    at: Instant,
}

/// What an operator (or the token exchange) asks a new root token for.
#[derive(Clone, Debug)]
pub struct MintRequest {
    pub org: OrgId,
    pub project: ProjectId,
    pub name: String,
    pub scopes: Vec<ScopePattern>,
    pub models: Option<Vec<String>>,
    pub ttl: Duration,
    pub budget_micro_usd: Option<u64>,
    pub rpm: Option<u32>,
    pub ips: Option<Vec<IpNet>>,
    /// Who minted it (`admin:<token>`, `oidc:<issuer>:<subject>`), recorded with the row.
    pub minted_by: String,
}

/// What a holder asks a child for (built by [`crate::narrowing`]); everything optional
/// narrows the parent.
#[derive(Clone, Debug, Default)]
pub struct DelegateRequest {
    pub name: String,
    pub scopes: Option<Vec<ScopePattern>>,
    pub models: Option<Vec<String>>,
    pub ttl: Option<Duration>,
    pub budget_micro_usd: Option<u64>,
    pub rpm: Option<u32>,
    pub ips: Option<Vec<IpNet>>,
}

#[derive(Clone)]
pub struct Minted {
    pub id: TokenId,
    pub org: OrgId,
    pub project: ProjectId,
    pub parent: Option<TokenId>,
    /// The macaroon, V2 binary in URL-safe base64 (shown once; never stored).
    pub token: String,
    pub caveats: Vec<String>,
    pub expires_at: i64,
}

impl std::fmt::Debug for Minted {
    // The token is a bearer credential: never in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minted")
            .field("id", &self.id)
            .field("parent", &self.parent)
            .field("caveats", &self.caveats)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A verified presentation.
#[derive(Clone, Debug)]
pub struct Verified {
    pub principal: Principal,
    pub folded: Folded,
    pub ident: TokenIdent,
    /// The registered token the presentation stands for (the last delegation, or the root).
    pub node: TokenId,
    pub expires_at: i64,
    root: Macaroon,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rotation {
    /// Old versions verify until the last token minted under them expires.
    AtExpiry,
    /// Old versions stop verifying now (a suspected leak): every older token dies.
    Now,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyVersionView {
    pub version: i64,
    pub created_at: i64,
    pub superseded_at: Option<i64>,
    pub retire_at: Option<i64>,
}

pub struct Capabilities {
    store: Store,
    sealer: Sealer,
    limits: Limits,
    keys: Cache<(OrgId, i64), KeyEntry>,
    status: Cache<TokenId, StatusEntry>,
}

fn record(org: OrgId, version: i64) -> String {
    root_key_record(&org.to_string(), version)
}

/// The associated data an org's sealed root key is bound to (a master-key rotation re-seals
/// under it).
pub fn root_key_record(org: &str, version: i64) -> String {
    format!("capability-root-key:{org}:{version}")
}

fn models_caveat(models: &[String]) -> Result<Caveat, Error> {
    Caveat::parse(format!("models in [{}]", models.join(", ")).as_bytes()).map_err(|_| Error::BadRequest("models"))
}

/// The caveats both minting and delegation can ask for, in canonical order.
fn narrowing(
    scopes: Option<&[ScopePattern]>,
    models: Option<&[String]>,
    budget: Option<u64>,
    rpm: Option<u32>,
    ips: Option<&[IpNet]>,
) -> Result<Vec<Caveat>, Error> {
    let mut out = Vec::new();
    if let Some(s) = scopes {
        if s.is_empty() || s.len() > crate::caveat::MAX_LIST {
            return Err(Error::BadRequest("scopes"));
        }
        out.push(Caveat::Scope(s.to_vec()));
    }
    if let Some(m) = models {
        if m.is_empty() || m.len() > crate::caveat::MAX_LIST {
            return Err(Error::BadRequest("models"));
        }
        out.push(models_caveat(m)?);
    }
    if let Some(b) = budget {
        out.push(Caveat::BudgetMicroUsd(b));
    }
    if let Some(r) = rpm {
        if r == 0 || r > 1_000_000 {
            return Err(Error::BadRequest("rpm"));
        }
        out.push(Caveat::Rpm(r));
    }
    if let Some(nets) = ips {
        if nets.is_empty() || nets.len() > crate::caveat::MAX_LIST || nets.iter().any(|n| n.trunc() != *n) {
            return Err(Error::BadRequest("ips"));
        }
        out.push(Caveat::Ip(nets.to_vec()));
    }
    Ok(out)
}

fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
}

/// Expiry caveats have second precision (RFC 3339 seconds): round down so the caveat and the
/// registry agree exactly.
fn expiry_after(ttl: Duration) -> i64 {
    let at = now_ms().saturating_add(ttl_ms(ttl));
    at - at.rem_euclid(1000)
}

impl Capabilities {
    /// The sealer for root keys, derived from the master key (which need not outlive it).
    pub fn sealer(master: &MasterKey) -> Result<Sealer, Error> {
        Self::rotating_sealer(master, None)
    }

    /// Like [`Capabilities::sealer`], also opening root keys sealed under `previous` (a
    /// master-key rotation's overlap).
    pub fn rotating_sealer(master: &MasterKey, previous: Option<&MasterKey>) -> Result<Sealer, Error> {
        Sealer::rotating(master, previous, SEAL_PURPOSE).map_err(|_| Error::Unavailable)
    }

    pub fn new(store: Store, sealer: Sealer, cache_capacity: usize) -> Capabilities {
        Capabilities {
            store,
            sealer,
            limits: Limits::default(),
            keys: Cache::new(1024),
            status: Cache::new(cache_capacity),
        }
    }

    /// The org's current root key, created (version 1) on first use. Two replicas racing to
    /// create it converge on whichever row landed first.
    async fn current_key(&self, org: OrgId) -> Result<(i64, Arc<Zeroizing<[u8; 32]>>), Error> {
        for _ in 0..3 {
            let rows = self.store.root_keys(org).await.map_err(unavailable)?;
            if let Some(row) = rows.iter().find(|r| r.superseded_at.is_none()) {
                return Ok((row.version, Arc::new(self.open(row)?)));
            }
            let version = rows.first().map_or(1, |r| r.version + 1);
            self.create_key(org, version).await?;
        }
        Err(Error::Unavailable)
    }

    async fn create_key(&self, org: OrgId, version: i64) -> Result<bool, Error> {
        let key = random_key().map_err(|_| Error::Unavailable)?;
        let sealed = self.sealer.seal_bytes(&record(org, version), &*key).map_err(|_| Error::Unavailable)?;
        let row = RootKeyRow {
            org_id: org.to_string(),
            version,
            sealed,
            created_at: now_ms(),
            retire_at: None,
            superseded_at: None,
        };
        self.store.insert_root_key(&row).await.map_err(unavailable)
    }

    fn open(&self, row: &RootKeyRow) -> Result<Zeroizing<[u8; 32]>, Error> {
        let org = OrgId::parse(&row.org_id).ok_or(Error::Unavailable)?;
        let bytes = self.sealer.open_bytes(&record(org, row.version), &row.sealed).map_err(|_| {
            tracing::error!(org = %org, version = row.version, "a capability root key does not open under the master key");
            Error::Unavailable
        })?;
        let mut k = Zeroizing::new([0u8; 32]);
        if bytes.len() != 32 {
            return Err(Error::Unavailable);
        }
        k.copy_from_slice(&bytes);
        Ok(k)
    }

    async fn key(&self, org: OrgId, version: i64) -> Result<KeyEntry, Error> {
        let now = Instant::now();
        if let Some(e) = self.keys.get(&(org, version))
            && now.duration_since(e.at) < KEY_TTL
        {
            return Ok(e);
        }
        self.keys.remove(&(org, version));
        self.keys
            .get_or_insert_async(&(org, version), async {
                let row = self.store.root_key(org, version).await.map_err(unavailable)?;
                Ok(match row {
                    None => KeyEntry { key: None, retire_at: None, at: Instant::now() },
                    Some(r) => {
                        KeyEntry { key: Some(Arc::new(self.open(&r)?)), retire_at: r.retire_at, at: Instant::now() }
                    }
                })
            })
            .await
    }

    async fn standing(&self, id: TokenId) -> Result<Option<CapabilityStatus>, Error> {
        let now = Instant::now();
        if let Some(e) = self.status.get(&id)
            && now.duration_since(e.at) < STATUS_TTL
        {
            return Ok(e.status);
        }
        self.status.remove(&id);
        let e = self
            .status
            .get_or_insert_async(&id, async {
                let status = self.store.capability_status(id).await.map_err(unavailable)?;
                Ok::<_, Error>(StatusEntry { status, at: Instant::now() })
            })
            .await?;
        Ok(e.status)
    }

    /// Mints a registered root token for a project.
    pub async fn mint(&self, req: MintRequest) -> Result<Minted, Error> {
        let (version, key) = self.current_key(req.org).await?;
        let id = TokenId::generate();
        let ident = TokenIdent { org: req.org, key_version: version, token: id };
        let expires_at = expiry_after(req.ttl);
        let mut caveats = vec![Caveat::Org(req.org), Caveat::Project(req.project), Caveat::Expires(expires_at)];
        caveats.extend(narrowing(
            Some(&req.scopes),
            req.models.as_deref(),
            req.budget_micro_usd,
            req.rpm,
            req.ips.as_deref(),
        )?);
        let mut m = Macaroon::new(&**key, ident.to_string(), Some(LOCATION));
        let texts: Vec<String> = caveats.iter().map(ToString::to_string).collect();
        for t in &texts {
            m.add_first_party(t.as_bytes());
        }
        self.register(id, req.org, req.project, None, version, &req.name, &texts, &req.minted_by, expires_at).await?;
        Ok(Minted {
            id,
            org: req.org,
            project: req.project,
            parent: None,
            token: m.encode(Encoding::Base64Url),
            caveats: texts,
            expires_at,
        })
    }

    #[expect(clippy::too_many_arguments, reason = "one row, spelled out")]
    async fn register(
        &self,
        id: TokenId,
        org: OrgId,
        project: ProjectId,
        parent: Option<TokenId>,
        version: i64,
        name: &str,
        caveats: &[String],
        minted_by: &str,
        expires_at: i64,
    ) -> Result<(), Error> {
        let row = CapabilityRow {
            id: id.to_string(),
            org_id: org.to_string(),
            project_id: project.to_string(),
            parent_id: parent.map(|p| p.to_string()),
            key_version: version,
            name: name.to_owned(),
            caveats: serde_json::to_string(caveats).unwrap_or_default(),
            minted_by: minted_by.to_owned(),
            created_at: now_ms(),
            expires_at,
            revoked_at: None,
        };
        self.store.insert_capability(&row).await.map_err(unavailable)
    }

    /// Mints a registered child of a verified presentation: the parent's macaroon plus
    /// `delegation = <child>` and the requested (narrower) caveats. A request wider than the
    /// parent is refused with the reason.
    pub async fn delegate(&self, parent: &Verified, req: DelegateRequest) -> Result<Minted, Error> {
        let mut asked =
            narrowing(req.scopes.as_deref(), req.models.as_deref(), req.budget_micro_usd, req.rpm, req.ips.as_deref())?;
        let expires_at = match req.ttl {
            Some(ttl) => expiry_after(ttl),
            None => parent.expires_at,
        };
        asked.push(Caveat::Expires(expires_at));
        check_not_wider(&parent.folded, &asked).map_err(|w| Error::Wider(w.0))?;
        let id = TokenId::generate();
        let mut m = parent.root.clone();
        let mut texts = vec![Caveat::Delegation(id).to_string()];
        texts.extend(asked.iter().map(ToString::to_string));
        for t in &texts {
            m.add_first_party(t.as_bytes());
        }
        let org = parent.principal.org;
        let project = parent.principal.project;
        let name = if req.name.is_empty() { "delegated" } else { &req.name };
        self.register(
            id,
            org,
            project,
            Some(parent.node),
            parent.ident.key_version,
            name,
            &texts,
            &format!("capability:{}", parent.node),
            expires_at,
        )
        .await?;
        Ok(Minted {
            id,
            org,
            project,
            parent: Some(parent.node),
            token: m.encode(Encoding::Base64Url),
            caveats: texts,
            expires_at,
        })
    }

    /// Verifies a presented token: `<root>[,<bound discharge>...]`, each in any macaroon
    /// text form. Checks the signature chain, every caveat, every registered token of the
    /// delegation chain (exists, same org, parent links, not revoked, not expired) and the
    /// context (time, network). Scope and model are left to the authorize gate.
    pub async fn verify(&self, presented: &str, source: Option<IpAddr>) -> Result<Verified, Error> {
        let now = now_ms();
        let max_text = self.limits.max_bytes * 4 / 3 + 4;
        if presented.len() > MAX_PRESENTED * (max_text + 1) {
            return Err(Error::Invalid);
        }
        let parts = self.decode_presented(presented.trim())?;
        let (root, discharges) = parts.split_first().ok_or(Error::Invalid)?;
        let ident = TokenIdent::parse(root.identifier()).ok_or(Error::Invalid)?;
        let key = self.key(ident.org, ident.key_version).await?;
        let Some(k) = key.key else { return Err(Error::Invalid) };
        if key.retire_at.is_some_and(|r| r <= now) {
            return Err(Error::Expired);
        }
        let predicates = root.verify(&**k, discharges, &self.limits).map_err(|_| Error::Invalid)?;
        // Only a genuine token's caveats are interpreted; an unknown one denies.
        let folded = Folded::fold(predicates).map_err(|_| Error::Invalid)?;

        let chain: Vec<TokenId> = std::iter::once(ident.token).chain(folded.delegations.iter().copied()).collect();
        let mut project = None;
        let mut project_models = None;
        let mut project_cors = None;
        let mut expires_at = folded.expires_at.unwrap_or(0);
        for (i, id) in chain.iter().enumerate() {
            let s = self.standing(*id).await?.ok_or(Error::Invalid)?;
            // Each node must hang off the previous one: a holder cannot splice in someone
            // else's delegation (and charge their budget).
            let parent_ok = if i == 0 { s.parent.is_none() } else { s.parent == Some(chain[i - 1]) };
            if s.org != ident.org || !parent_ok || project.is_some_and(|p| p != s.project) {
                return Err(Error::Invalid);
            }
            if !s.usable {
                return Err(Error::Invalid);
            }
            if s.expires_at <= now {
                return Err(Error::Expired);
            }
            expires_at = expires_at.min(s.expires_at);
            project = Some(s.project);
            project_models = s.project_models;
            project_cors = s.project_cors;
        }
        let project = project.ok_or(Error::Invalid)?;
        folded.check(now, source, ident.org, project).map_err(|v| match v {
            Violation::Expired => Error::Expired,
            Violation::Tenant => Error::Invalid,
            Violation::Network => Error::Forbidden,
        })?;
        let allowed_models = match (&folded.models, project_models) {
            (None, None) => None,
            (Some(t), None) => Some(t.clone()),
            (None, Some(p)) => Some(p.into_iter().map(String::into_boxed_str).collect()),
            (Some(t), Some(p)) => Some(t.iter().filter(|m| p.iter().any(|x| x == &***m)).cloned().collect()),
        };
        let node = *chain.last().unwrap_or(&ident.token);
        let grant = Grant {
            scopes: folded.scopes.clone(),
            chain: chain.into(),
            budgets_micro_usd: folded.budgets.clone().into(),
            rpm: folded.rpm.clone().into(),
            roles: Arc::new([]),
        };
        let principal = Principal {
            rpm: None,
            tpm: None,
            org: ident.org,
            project,
            credential: Credential::Token(node),
            allowed_models: allowed_models.map(Into::into),
            cors_origins: project_cors.map(|o| o.into_iter().map(String::into_boxed_str).collect()),
            grant: Some(Arc::new(grant)),
        };
        Ok(Verified { principal, folded, ident, node, expires_at, root: root.clone() })
    }

    /// `<root>[,<discharge>...]` in base64 forms, one V2 JSON macaroon, or a JSON array of
    /// either (JSON has commas of its own, so it is never split on them).
    fn decode_presented(&self, text: &str) -> Result<Vec<Macaroon>, Error> {
        let one = |t: &str| Macaroon::decode(t, &self.limits).map_err(|_| Error::Invalid);
        if text.starts_with('{') {
            return Ok(vec![one(text)?]);
        }
        if text.starts_with('[') {
            let items: Vec<serde_json::Value> = serde_json::from_str(text).map_err(|_| Error::Invalid)?;
            if items.is_empty() || items.len() > MAX_PRESENTED {
                return Err(Error::Invalid);
            }
            return items
                .iter()
                .map(|v| match v {
                    serde_json::Value::String(s) => one(s),
                    serde_json::Value::Object(_) => one(&v.to_string()),
                    _ => Err(Error::Invalid),
                })
                .collect();
        }
        let mut parts = Vec::with_capacity(2);
        for p in text.split(',') {
            if parts.len() == MAX_PRESENTED {
                return Err(Error::Invalid);
            }
            parts.push(one(p)?);
        }
        Ok(parts)
    }

    /// Revokes a token and its subtree; effective here at once and on other replicas at their
    /// next poll. `None`: no such token in this org.
    pub async fn revoke(&self, org: OrgId, id: TokenId) -> Result<Option<u64>, Error> {
        let started = now_ms();
        let n = self.store.revoke_capability_tree(org, id).await.map_err(unavailable)?;
        if n.is_some() {
            self.evict_changed_since(started - 1000).await?;
        }
        Ok(n)
    }

    /// Makes a new root key version current. Old versions verify until `retire`.
    pub async fn rotate(&self, org: OrgId, retire: Rotation) -> Result<i64, Error> {
        let rows = self.store.root_keys(org).await.map_err(unavailable)?;
        let newest = rows.first().map_or(0, |r| r.version);
        let version = newest + 1;
        if !self.create_key(org, version).await? {
            // Another operator rotated at the same moment; theirs stands.
            return Err(Error::BadRequest("concurrent rotation"));
        }
        let retire_at = match retire {
            Rotation::Now => now_ms(),
            Rotation::AtExpiry => {
                self.store.latest_expiry_under(org, newest).await.map_err(unavailable)?.unwrap_or(0).max(now_ms())
            }
        };
        self.store.supersede_root_keys(org, version, retire_at).await.map_err(unavailable)?;
        for v in 1..=newest {
            self.keys.remove(&(org, v));
        }
        Ok(version)
    }

    pub async fn key_versions(&self, org: OrgId) -> Result<Vec<KeyVersionView>, Error> {
        let rows = self.store.root_keys(org).await.map_err(unavailable)?;
        Ok(rows
            .into_iter()
            .map(|r| KeyVersionView {
                version: r.version,
                created_at: r.created_at,
                superseded_at: r.superseded_at,
                retire_at: r.retire_at,
            })
            .collect())
    }

    pub async fn evict_changed_since(&self, since_ms: i64) -> Result<usize, Error> {
        let ids = self.store.capabilities_changed_since(since_ms).await.map_err(unavailable)?;
        for id in &ids {
            self.status.remove(id);
        }
        Ok(ids.len())
    }

    /// Polls the store's change feed so a revocation anywhere takes effect here within
    /// `every` (plus one round trip).
    pub async fn run_revocation_poller(self: Arc<Self>, every: Duration) {
        gatehouse_store::poll::changes("capability token standing", every, |since| self.evict_changed_since(since))
            .await;
    }
}
