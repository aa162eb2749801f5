//! Secret references: config names where a secret lives, never the secret itself.

use std::fmt;
use std::path::PathBuf;

use secrecy::SecretString;

use crate::SecretError;

/// Where to read a secret from at start (and at reload).
#[derive(Clone, PartialEq, Eq)]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
}

/// Reads an environment variable. Tests pass a map; the binary passes `std::env::var`.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Secrets in files are small; a larger file is a mistake (or an attack on start-up).
pub(crate) const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

impl SecretRef {
    /// `env:NAME` or `file:/path`. Anything else is refused: literal secrets do not belong
    /// in a config file. The error never includes the value.
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        if let Some(name) = s.strip_prefix("env:") {
            let ok =
                !name.is_empty() && name.len() <= 128 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            return if ok {
                Ok(SecretRef::Env(name.to_owned()))
            } else {
                Err("env: reference must name a variable of [A-Za-z0-9_]")
            };
        }
        if let Some(path) = s.strip_prefix("file:") {
            return if path.is_empty() || path.len() > 4096 {
                Err("file: reference must name a path")
            } else {
                Ok(SecretRef::File(PathBuf::from(path)))
            };
        }
        Err("must be a secret reference ('env:NAME' or 'file:/path'), not a literal value")
    }

    /// Resolves the reference. Errors name the reference, never the content.
    pub fn resolve(&self, env: EnvLookup<'_>) -> Result<SecretString, SecretError> {
        match self {
            SecretRef::Env(name) => match env(name) {
                Some(v) if !v.is_empty() => Ok(SecretString::from(v)),
                _ => Err(SecretError::NotSet(name.clone())),
            },
            SecretRef::File(path) => {
                let shown = || path.display().to_string();
                let unreadable = |e: std::io::Error| SecretError::Unreadable { path: shown(), kind: e.kind() };
                let meta = std::fs::metadata(path).map_err(unreadable)?;
                if meta.len() > MAX_SECRET_FILE_BYTES {
                    return Err(SecretError::TooLarge(shown()));
                }
                let raw = std::fs::read_to_string(path).map_err(unreadable)?;
                let trimmed = raw.trim_end_matches(['\n', '\r']);
                if trimmed.is_empty() {
                    return Err(SecretError::Empty(shown()));
                }
                Ok(SecretString::from(trimmed.to_owned()))
            }
        }
    }
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(n) => write!(f, "env:{n}"),
            SecretRef::File(p) => write!(f, "file:{}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn literals_are_refused_without_echo() {
        let err = SecretRef::parse("sk-live-abcdef").unwrap_err();
        assert!(!err.contains("sk-live"));
        assert!(SecretRef::parse("env:").is_err());
        assert!(SecretRef::parse("env:BAD-NAME").is_err());
    }

    #[test]
    fn oversized_files_are_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("secret");
        std::fs::write(&big, vec![b'k'; MAX_SECRET_FILE_BYTES as usize + 1]).unwrap();
        let r = SecretRef::parse(&format!("file:{}", big.display())).unwrap();
        assert!(matches!(r.resolve(&|_| None), Err(SecretError::TooLarge(_))));
        let config = dir.path().join("gatehouse.toml");
        let mut text = b"# padding\n".repeat(110_000);
        text.extend_from_slice(b"[mock]\nenabled = true\n");
        assert!(text.len() as u64 > 1024 * 1024);
        std::fs::write(&config, text).unwrap();
        let err = crate::Config::load(&config).err().unwrap().to_string();
        assert!(err.contains("at most 1048576 bytes"), "{err}");
    }

    #[test]
    fn env_and_file_resolve() {
        let env = |k: &str| (k == "KEY").then(|| "s3cret".to_owned());
        let r = SecretRef::parse("env:KEY").unwrap();
        assert_eq!(r.resolve(&env).unwrap().expose_secret(), "s3cret");
        assert!(SecretRef::parse("env:OTHER").unwrap().resolve(&env).is_err());

        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        std::fs::write(&p, "filesecret\n").unwrap();
        let r = SecretRef::parse(&format!("file:{}", p.display())).unwrap();
        assert_eq!(r.resolve(&env).unwrap().expose_secret(), "filesecret");
    }
}
