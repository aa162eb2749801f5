use gatehouse_core::{DenyCode, HasDenyCode};

/// What can fail while building the data plane's snapshot (start or reload). The running
/// snapshot stays in place.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Secret(#[from] gatehouse_config::SecretError),
    #[error("cannot build the http client for provider {0}")]
    Client(String),
    /// The provider's `ca_file` cannot be read or holds no certificate (its content is never
    /// printed).
    #[error("provider {0}: ca_file {1} is not a readable PEM file of CA certificates")]
    CaFile(String, String),
    #[error(transparent)]
    Gates(#[from] gatehouse_gates::Error),
}

impl HasDenyCode for Error {
    fn deny_code(&self) -> DenyCode {
        DenyCode::Internal
    }
}
