//! The master key and everything sealed under it (docs/SECURITY.md, "Key hierarchy").
//!
//! The master key only wraps: tenants' data keys (provider credentials are sealed under
//! those), capability root keys, webhook secrets, and the pinned root secrets (the peppers of
//! stored key digests and the audit checkpoint seed, first derived from the master key and
//! then kept sealed so a rotation does not invalidate every digest and signed checkpoint).
//!
//! During a rotation two master keys are known: the current one seals, and the previous one
//! still opens until `gatehouse master-key rotate` has re-sealed every value. With the
//! generated key file, the new key is staged as `master.key.next` beside `master.key`; a
//! complete rotation makes it `master.key` and keeps the old one as `master.key.previous`
//! (still accepted, for a gateway not yet restarted) until `gatehouse master-key retire`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use gatehouse_config::ServerConfig;
use gatehouse_security::checkpoint::CheckpointSigner;
use gatehouse_security::seal::{Envelope, Sealer};
use gatehouse_security::{KeyHasher, KeyKind, MasterKey, MasterKeySource, load_or_create_master_key, read_key_file};
use gatehouse_store::{SealedColumn, Store};
use gatehouse_tokens::Capabilities;
use secrecy::SecretString;
use secrecy::zeroize::Zeroizing;

const PREVIOUS_MASTER_KEY_ENV: &str = "GATEHOUSE_PREVIOUS_MASTER_KEY";
/// The master-key purpose pinned root secrets are sealed under.
const ROOT_SECRET_PURPOSE: &[u8] = b"gatehouse/v1/seal/root-secret";

/// The secrets pinned in `root_secrets`: (purpose, the label first derived under).
const PINNED: [(&str, &[u8]); 3] = [
    ("api-key-hash", KeyKind::Api.label()),
    ("admin-token-hash", KeyKind::Admin.label()),
    ("audit-checkpoint", gatehouse_audit::CHECKPOINT_LABEL),
];

/// The master keys in force: the current one, and during a rotation the previous one.
pub struct MasterKeys {
    pub current: MasterKey,
    pub previous: Option<MasterKey>,
    pub source: MasterKeySource,
    /// With the generated key file: the staged `master.key.next` that is current now, which
    /// a completed rotation moves over `master.key`.
    pub staged: Option<PathBuf>,
}

pub fn key_file(dir: &Path) -> PathBuf {
    dir.join("master.key")
}

pub fn staged_file(dir: &Path) -> PathBuf {
    dir.join("master.key.next")
}

pub fn previous_file(dir: &Path) -> PathBuf {
    dir.join("master.key.previous")
}

impl MasterKeys {
    /// The configured keys. `create`: mint the key file on first start (the gateway does;
    /// tools that must never mint a key do not).
    pub fn load(server: &ServerConfig, create: bool) -> anyhow::Result<MasterKeys> {
        let previous = match &server.previous_master_key {
            Some(r) => Some(r.resolve(&crate::serve::env).map_err(anyhow::Error::msg)?),
            None => crate::serve::env(PREVIOUS_MASTER_KEY_ENV).map(SecretString::from),
        };
        let previous = previous
            .map(|p| MasterKey::parse(&p))
            .transpose()
            .context("the previous master key (64 hex characters)")?;
        if let Some(provided) = crate::serve::provided_master_key(server)? {
            let current = MasterKey::parse(&provided).context("the master key")?;
            return Ok(MasterKeys { current, previous, source: MasterKeySource::Provided, staged: None });
        }
        let dir = &server.data_dir;
        let (staged, kept) = (staged_file(dir), previous_file(dir));
        if staged.exists() {
            // a rotation is under way: the staged key seals, the file's key still opens (or,
            // interrupted between its two renames, the one already kept as previous)
            let current = read_key_file(&staged).context("the staged master key")?;
            let from = if key_file(dir).exists() { key_file(dir) } else { kept };
            let old = read_key_file(&from).context("the master key a rotation started from")?;
            return Ok(MasterKeys {
                current,
                previous: Some(old),
                source: MasterKeySource::ExistingFile,
                staged: Some(staged),
            });
        }
        let previous = match previous {
            Some(p) => Some(p),
            None if kept.exists() => Some(read_key_file(&kept).context("the previous master key file")?),
            None => None,
        };
        if previous.is_some() && !key_file(dir).exists() {
            // never mint a new key beside a previous one: what it sealed would be lost
            bail!("{} is missing beside {}: restore it", key_file(dir).display(), kept.display());
        }
        let (current, source) = if create {
            load_or_create_master_key(None, dir)?
        } else {
            (gatehouse_security::load_master_key(None, dir)?, MasterKeySource::ExistingFile)
        };
        Ok(MasterKeys { current, previous, source, staged: None })
    }

    pub fn sealer(&self, purpose: &[u8]) -> anyhow::Result<Sealer> {
        Sealer::rotating(&self.current, self.previous.as_ref(), purpose).map_err(|e| anyhow::anyhow!("{e}"))
    }
}

/// Everything opened from the master keys at start; the master keys need not outlive it.
pub struct Keyring {
    pub hasher: KeyHasher,
    pub checkpoint: CheckpointSigner,
    pub webhooks: Sealer,
    pub envelope: Envelope,
    pub tokens: Sealer,
    roots: Sealer,
}

fn root_record(purpose: &str) -> String {
    format!("root-secret:{purpose}")
}

impl Keyring {
    /// Opens (and on first start pins) the root secrets and builds every sealer.
    pub async fn open(store: &Store, keys: &MasterKeys) -> anyhow::Result<Keyring> {
        let roots = keys.sealer(ROOT_SECRET_PURPOSE)?;
        let mut pinned = Vec::with_capacity(PINNED.len());
        for (purpose, label) in PINNED {
            pinned.push(pinned_secret(store, &roots, keys, purpose, label).await?);
        }
        let [api, admin, checkpoint] =
            <[Zeroizing<[u8; 32]>; 3]>::try_from(pinned).map_err(|_| anyhow::anyhow!("three pinned root secrets"))?;
        Ok(Keyring {
            hasher: KeyHasher::from_keys(&api, &admin),
            checkpoint: gatehouse_audit::signer(&checkpoint).map_err(|e| anyhow::anyhow!("audit key: {e}"))?,
            webhooks: keys.sealer(gatehouse_audit::webhooks::SEAL_PURPOSE)?,
            envelope: Envelope::rotating(&keys.current, keys.previous.as_ref()).map_err(|e| anyhow::anyhow!("{e}"))?,
            tokens: Capabilities::rotating_sealer(&keys.current, keys.previous.as_ref())
                .map_err(|e| anyhow::anyhow!("capability tokens: {e}"))?,
            roots,
        })
    }

    /// The sealer of one column, and the associated data a stored value is bound to.
    pub fn column(&self, column: SealedColumn) -> (&Sealer, fn(&gatehouse_store::SealedValue) -> String) {
        match column {
            SealedColumn::RootSecrets => (&self.roots, |v| root_record(&v.owner)),
            SealedColumn::DataKeys => {
                (self.envelope.wrapper(), |v| Envelope::record(&v.owner, u32::try_from(v.version).unwrap_or(u32::MAX)))
            }
            SealedColumn::CapabilityRootKeys => {
                (&self.tokens, |v| gatehouse_tokens::root_key_record(&v.owner, v.version))
            }
            SealedColumn::WebhookSecrets => (&self.webhooks, |v| {
                gatehouse_audit::webhooks::secret_record(Some(v.owner.as_str()).filter(|o| !o.is_empty()), &v.id)
            }),
        }
    }
}

/// The audit checkpoint seed without writing anything: the pinned one if the store has it,
/// else derived from the master key as a first start would pin it (`store`: `None` when there
/// is no store to read, e.g. verifying an export elsewhere).
pub async fn checkpoint_seed(store: Option<&Store>, keys: &MasterKeys) -> anyhow::Result<Zeroizing<[u8; 32]>> {
    let (purpose, label) = PINNED[2];
    let sealed = match store {
        Some(s) => s.root_secret(purpose).await?,
        None => None,
    };
    match sealed {
        Some(sealed) => open_root(&keys.sealer(ROOT_SECRET_PURPOSE)?, keys, purpose, &sealed),
        None => Ok(first_root(keys, label)),
    }
}

/// What a root secret is first pinned as: derived from the master key every stored digest was
/// made with (the previous one during a rotation).
fn first_root(keys: &MasterKeys, label: &[u8]) -> Zeroizing<[u8; 32]> {
    Zeroizing::new(keys.previous.as_ref().unwrap_or(&keys.current).derive(label))
}

fn open_root(roots: &Sealer, keys: &MasterKeys, purpose: &str, sealed: &str) -> anyhow::Result<Zeroizing<[u8; 32]>> {
    let raw = roots.open_bytes(&root_record(purpose), sealed).map_err(|_| {
        anyhow::anyhow!(
            "the stored {purpose} key does not open under the master key{}: is this the master key this store was \
             set up with?",
            if keys.previous.is_some() { " or the previous one" } else { "" }
        )
    })?;
    let key =
        <[u8; 32]>::try_from(raw.as_slice()).map_err(|_| anyhow::anyhow!("root secret {purpose} is malformed"))?;
    Ok(Zeroizing::new(key))
}

/// A pinned root secret: read and opened, or on first start pinned ([`first_root`]).
async fn pinned_secret(
    store: &Store,
    roots: &Sealer,
    keys: &MasterKeys,
    purpose: &str,
    label: &[u8],
) -> anyhow::Result<Zeroizing<[u8; 32]>> {
    let sealed = match store.root_secret(purpose).await? {
        Some(sealed) => sealed,
        None => {
            let sealed = roots
                .seal_bytes(&root_record(purpose), &*first_root(keys, label))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            store.insert_root_secret(purpose, &sealed).await?;
            // another replica starting at the same time may have pinned first: the kept one
            store
                .root_secret(purpose)
                .await?
                .with_context(|| format!("root secret {purpose} vanished while being pinned"))?
        }
    };
    open_root(roots, keys, purpose, &sealed)
}
