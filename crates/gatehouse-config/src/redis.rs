//! `[redis]`: the shared limits store for several replicas. Absent: rate limits and budgets
//! live in the process (one replica). Static: the connection lives as long as the process.

use std::time::Duration;

use serde::Deserialize;

use crate::{Issue, SecretRef};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedis {
    /// A secret reference to `redis://host:port/db` (it may carry a password).
    pub url: Option<String>,
    pub key_prefix: Option<String>,
    pub timeout_ms: Option<u64>,
    /// What a rate check does while Redis cannot answer: `open` (pass, counted and logged) or
    /// `closed` (503).
    pub rates_on_failure: Option<String>,
    /// With a `rediss://` URL: the CA certificates (PEM) Redis's certificate must chain to,
    /// instead of the system's roots.
    pub ca_file: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisSettings {
    pub url: SecretRef,
    pub key_prefix: String,
    pub timeout: Duration,
    pub rates_fail_open: bool,
    pub ca_file: Option<std::path::PathBuf>,
}

pub(crate) fn redis(raw: RawRedis, issues: &mut Vec<Issue>) -> Option<RedisSettings> {
    let mut bad = |path: &str, rule: &str| issues.push(Issue { path: path.to_owned(), rule: rule.to_owned() });
    let Some(url) = raw.url else {
        if raw.key_prefix.is_some()
            || raw.timeout_ms.is_some()
            || raw.rates_on_failure.is_some()
            || raw.ca_file.is_some()
        {
            bad("redis.url", "is required when [redis] is configured");
        }
        return None;
    };
    let url = match SecretRef::parse(&url) {
        Ok(u) => Some(u),
        Err(rule) => {
            bad("redis.url", rule);
            None
        }
    };
    let key_prefix = raw.key_prefix.unwrap_or_else(|| "gatehouse".to_owned());
    if key_prefix.is_empty()
        || key_prefix.len() > 64
        || !key_prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        bad("redis.key_prefix", "must be 1-64 characters of A-Z, a-z, 0-9, - and _");
    }
    let ms = raw.timeout_ms.unwrap_or(250);
    if !(10..=10_000).contains(&ms) {
        bad("redis.timeout_ms", "must be between 10 and 10000");
    }
    let rates_fail_open = match raw.rates_on_failure.as_deref() {
        None | Some("open") => true,
        Some("closed") => false,
        Some(_) => {
            bad("redis.rates_on_failure", "must be \"open\" or \"closed\"");
            true
        }
    };
    let ca_file = match raw.ca_file {
        Some(p) if p.is_empty() || p.len() > 4096 || p.contains('\0') => {
            bad("redis.ca_file", "must be a file path (1-4096 bytes)");
            None
        }
        p => p.map(std::path::PathBuf::from),
    };
    url.map(|url| RedisSettings { url, key_prefix, timeout: Duration::from_millis(ms), rates_fail_open, ca_file })
}
