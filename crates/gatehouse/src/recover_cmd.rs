//! `gatehouse recover-admin`: mints a platform-admin token directly in the store, for when no
//! admin token (and no console passkey) is left. It needs what only the host has: the config,
//! the store and the master key the store's tokens are hashed with; so it is the same trust as
//! editing the database, made safe (the token is random, stored as a keyed hash, printed once).

use std::io::Write;

use anyhow::{Context, bail};
use gatehouse_security::{KeyKind, generate_key};
use secrecy::ExposeSecret;

use crate::audit_cmd::Local;
use crate::keyring::{Keyring, MasterKeys};

pub async fn run(local: &Local, name: &str) -> anyhow::Result<()> {
    // the admin API's rule for token names, so the token lists and revokes like any other
    if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        bail!("--name must be 1 to 64 letters, digits, dashes, underscores or dots");
    }
    let cfg = crate::serve::load_config(&local.serve_args())?;
    // an embedded store that does not exist is not created just to hold a recovery token
    if matches!(cfg.server.store, gatehouse_config::StoreUrl::Embedded)
        && !cfg.server.data_dir.join("gatehouse.db").exists()
    {
        bail!(
            "no store at {}: start the gateway once instead (it prints a first admin token)",
            cfg.server.data_dir.display()
        );
    }
    let keys = MasterKeys::load(&cfg.server, false).context("no master key: admin tokens are hashed with it")?;
    let store = crate::serve::open_store(&cfg.server).await?;
    let keyring = Keyring::open(&store, &keys).await?;
    let token = generate_key(KeyKind::Admin);
    let id = gatehouse_core::KeyId::generate().to_string();
    let digest = keyring.hasher.digest(KeyKind::Admin, &token);
    store.insert_admin_token(&id, name, &digest.0, "platform_admin", None, None).await?;
    tracing::warn!(target: "gatehouse::audit", action = "token.recover", token_id = %id, "recovery admin token minted beside the store");
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "A platform-admin token named {name} (id {id}); shown once, stored only as a keyed hash:\n\n  {}\n\n\
         Sign in to the console with it (each token signs in once by default), add a passkey, and revoke \
         tokens you no longer hold.",
        token.expose_secret()
    )?;
    Ok(())
}
