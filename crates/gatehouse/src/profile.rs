//! The CLI profile: the control plane's URL and an admin token, in a 0600 file, like a
//! kubeconfig. Location: `GATEHOUSE_PROFILE`, else `$XDG_CONFIG_HOME/gatehouse/profile.toml`,
//! else `~/.config/gatehouse/profile.toml`.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub admin_url: String,
    pub token: String,
}

fn path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("GATEHOUSE_PROFILE") {
        return Some(PathBuf::from(p));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("gatehouse").join("profile.toml"))
}

/// The saved profile, if there is one. A profile readable by others is refused.
pub fn load() -> anyhow::Result<Option<Profile>> {
    let Some(p) = path() else { return Ok(None) };
    let meta = match std::fs::metadata(&p) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", p.display())),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            bail!("{} is readable by others; chmod 600 it", p.display());
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    let text = std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
    // the error names the file, never its content (it holds a token)
    let profile: Profile =
        toml::from_str(&text).map_err(|_| anyhow::anyhow!("{} is not a valid profile", p.display()))?;
    Ok(Some(profile))
}

/// Reads a token from standard input, checks it against the server, saves the profile.
pub async fn login(admin_url: &str) -> anyhow::Result<PathBuf> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("cannot read the token from standard input")?;
    let token = line.trim();
    if !token.starts_with("gtha_") {
        bail!("expected an admin token (gtha_...) on standard input");
    }
    crate::client::AdminClient::with(admin_url, token)?.verify().await.context("the server refused the token")?;
    let p = path().context("no place for the profile: set GATEHOUSE_PROFILE or HOME")?;
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let text = toml::to_string(&Profile { admin_url: admin_url.to_owned(), token: token.to_owned() })?;
    let mut f = open_private(&p).with_context(|| format!("cannot write {}", p.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(p)
}

#[cfg(unix)]
fn open_private(p: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(p)?;
    // an existing file keeps its old mode on open: tighten it
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(f)
}

#[cfg(not(unix))]
fn open_private(p: &std::path::Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(p)
}
