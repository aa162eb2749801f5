//! The master key: the root of every derived secret. From `GATEHOUSE_MASTER_KEY` (or a
//! configured reference), or generated once into a 0600 file in the data dir.

use std::fmt;
use std::io::Write;
use std::path::Path;

use aws_lc_rs::hmac;
use secrecy::{ExposeSecret, SecretBox, SecretString};

use crate::Error;

pub struct MasterKey(SecretBox<[u8; 32]>);

/// Where the master key came from: the caller logs a loud warning for `GeneratedFile`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MasterKeySource {
    Provided,
    ExistingFile,
    GeneratedFile,
}

impl MasterKey {
    pub fn from_bytes(b: [u8; 32]) -> Self {
        MasterKey(SecretBox::new(Box::new(b)))
    }

    /// 64 hex characters.
    pub fn parse(encoded: &SecretString) -> Result<Self, Error> {
        let s = encoded.expose_secret().trim();
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| Error::MasterKeyFormat)?;
        Ok(Self::from_bytes(out))
    }

    pub fn generate() -> Self {
        let mut b = [0u8; 32];
        // aws-lc-rs only fails here if the OS has no entropy source, which we cannot run without.
        while aws_lc_rs::rand::fill(&mut b).is_err() {}
        Self::from_bytes(b)
    }

    /// A purpose-bound subkey: HMAC-SHA-256(master, label). Keys for different purposes never
    /// coincide, and none reveals the master key.
    pub fn derive(&self, label: &[u8]) -> [u8; 32] {
        let k = hmac::Key::new(hmac::HMAC_SHA256, self.0.expose_secret());
        let mut out = [0u8; 32];
        out.copy_from_slice(hmac::sign(&k, label).as_ref());
        out
    }

    /// 64 hex characters (for `gatehouse master-key generate` to print once).
    pub fn encode(&self) -> String {
        hex::encode(self.0.expose_secret())
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

/// Uses `provided` when set; otherwise reads an existing `dir/master.key` (tools that must
/// never mint a key, like `gatehouse audit verify`).
pub fn load_master_key(provided: Option<&SecretString>, dir: &Path) -> Result<MasterKey, Error> {
    if let Some(p) = provided {
        return MasterKey::parse(p);
    }
    read_key_file(&dir.join("master.key"))
}

/// Reads a master key file (64 hex characters), refusing one readable by others.
pub fn read_key_file(path: &Path) -> Result<MasterKey, Error> {
    let io = |e: std::io::Error| Error::MasterKeyIo { path: path.display().to_string(), kind: e.kind() };
    let meta = std::fs::metadata(path).map_err(io)?;
    check_mode(path, &meta)?;
    let text = std::fs::read_to_string(path).map_err(io)?;
    MasterKey::parse(&SecretString::from(text))
}

/// Writes a new master key file (mode 0600, never overwriting one) and syncs it.
pub fn write_key_file(path: &Path, key: &MasterKey) -> Result<(), Error> {
    let io = |e: std::io::Error| Error::MasterKeyIo { path: path.display().to_string(), kind: e.kind() };
    let mut f = create_private(path).map_err(io)?;
    f.write_all(key.encode().as_bytes()).map_err(io)?;
    f.write_all(b"\n").map_err(io)?;
    f.sync_all().map_err(io)
}

/// Uses `provided` when set; otherwise reads `dir/master.key`, creating it (mode 0600,
/// never overwriting) on first start. A key file readable by others is refused.
pub fn load_or_create_master_key(
    provided: Option<&SecretString>,
    dir: &Path,
) -> Result<(MasterKey, MasterKeySource), Error> {
    if let Some(p) = provided {
        return Ok((MasterKey::parse(p)?, MasterKeySource::Provided));
    }
    let path = dir.join("master.key");
    let io = |e: std::io::Error| Error::MasterKeyIo { path: path.display().to_string(), kind: e.kind() };
    match std::fs::metadata(&path) {
        Ok(meta) => {
            check_mode(&path, &meta)?;
            let text = std::fs::read_to_string(&path).map_err(io)?;
            Ok((MasterKey::parse(&SecretString::from(text))?, MasterKeySource::ExistingFile))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = MasterKey::generate();
            write_key_file(&path, &key)?;
            Ok((key, MasterKeySource::GeneratedFile))
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(unix)]
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)
}

#[cfg(not(unix))]
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().write(true).create_new(true).open(path)
}

#[cfg(unix)]
fn check_mode(path: &Path, meta: &std::fs::Metadata) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::MasterKeyPermissions { path: path.display().to_string(), mode });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_mode(_: &Path, _: &std::fs::Metadata) -> Result<(), Error> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_file_is_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let (k1, s1) = load_or_create_master_key(None, dir.path()).unwrap();
        assert_eq!(s1, MasterKeySource::GeneratedFile);
        let (k2, s2) = load_or_create_master_key(None, dir.path()).unwrap();
        assert_eq!(s2, MasterKeySource::ExistingFile);
        assert_eq!(k1.derive(b"x"), k2.derive(b"x"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("master.key")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[cfg(unix)]
    #[test]
    fn world_readable_key_file_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        load_or_create_master_key(None, dir.path()).unwrap();
        let p = dir.path().join("master.key");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(load_or_create_master_key(None, dir.path()), Err(Error::MasterKeyPermissions { .. })));
    }

    #[test]
    fn provided_key_must_be_hex() {
        assert!(MasterKey::parse(&SecretString::from("nothex".to_owned())).is_err());
        let ok = SecretString::from("ab".repeat(32));
        assert!(MasterKey::parse(&ok).is_ok());
    }
}
