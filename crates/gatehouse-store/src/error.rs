use gatehouse_core::{DenyCode, HasDenyCode};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database could not be reached or failed; the cause goes to the log only.
    #[error("store unavailable")]
    Unavailable(#[source] sqlx::Error),
    #[error("store migration failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// A uniqueness rule was violated (a name already taken).
    #[error("conflict")]
    Conflict,
    /// A stored value failed to decode: a bug or tampering, never the caller's fault.
    #[error("stored record is corrupt: {0}")]
    Corrupt(&'static str),
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => Error::Conflict,
            _ => Error::Unavailable(e),
        }
    }
}

impl HasDenyCode for Error {
    fn deny_code(&self) -> DenyCode {
        match self {
            Error::Unavailable(_) | Error::Migrate(_) => DenyCode::Unavailable,
            Error::Conflict => DenyCode::InvalidRequest,
            Error::Corrupt(_) => DenyCode::Internal,
        }
    }
}
