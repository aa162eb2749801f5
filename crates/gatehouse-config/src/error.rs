use std::fmt;

/// One problem with a config: where and which rule, never the offending value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issue {
    pub path: String,
    pub rule: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.rule)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {kind}")]
    Read { path: String, kind: std::io::ErrorKind },
    #[error("config is not valid TOML at line {line}, column {column}: {message}")]
    Syntax { line: usize, column: usize, message: String },
    #[error("config has {} problem(s):\n{}", .0.len(), render(.0))]
    Invalid(Vec<Issue>),
}

fn render(issues: &[Issue]) -> String {
    issues.iter().map(|i| format!("  - {i}")).collect::<Vec<_>>().join("\n")
}

impl ConfigError {
    pub fn issues(&self) -> &[Issue] {
        match self {
            ConfigError::Invalid(v) => v,
            _ => &[],
        }
    }
}

/// A secret reference that does not resolve, or resolves to something unusable. Names the
/// reference or the provider, never the content.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("environment variable {0} is not set")]
    NotSet(String),
    #[error("cannot read secret file {path}: {kind}")]
    Unreadable { path: String, kind: std::io::ErrorKind },
    #[error("secret file {0} is larger than {max} bytes", max = crate::secret::MAX_SECRET_FILE_BYTES)]
    TooLarge(String),
    #[error("secret file {0} is empty")]
    Empty(String),
    #[error("identity key for provider {0} must be at least 32 bytes")]
    IdentityKeyTooShort(String),
    #[error("api key for provider {0} is not a valid header value")]
    NotAHeaderValue(String),
}
