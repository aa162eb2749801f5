#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("master key must be 64 hex characters (32 bytes)")]
    MasterKeyFormat,
    #[error("master key file {path} is readable by group or others (mode {mode:o}); chmod 600 it")]
    MasterKeyPermissions { path: String, mode: u32 },
    #[error("cannot access master key file {path}: {kind}")]
    MasterKeyIo { path: String, kind: std::io::ErrorKind },
}
