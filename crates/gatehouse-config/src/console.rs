//! `[console]`: the web console's sessions and sign-in (docs/CONSOLE.md). Static.

use std::num::NonZeroU32;
use std::time::Duration;

use serde::Deserialize;

use crate::Issue;
use crate::validate::{bounded32, issue, ms};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsole {
    pub enabled: Option<bool>,
    pub token_sign_in: Option<String>,
    pub session_idle_timeout_ms: Option<u64>,
    pub session_max_lifetime_ms: Option<u64>,
    pub sign_in_failures_per_source: Option<u64>,
    pub sign_in_failures_per_account: Option<u64>,
    pub lockout_ms: Option<u64>,
    pub origin: Option<String>,
    pub reauth_window_ms: Option<u64>,
}

/// Whether an admin token may be exchanged for a console session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenSignIn {
    /// Each admin token once (the bootstrap path: sign in, then enrol a stronger method).
    Once,
    /// As often as the token is valid.
    Always,
    /// Never.
    Off,
}

impl TokenSignIn {
    pub const fn as_str(self) -> &'static str {
        match self {
            TokenSignIn::Once => "once",
            TokenSignIn::Always => "always",
            TokenSignIn::Off => "off",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleSettings {
    /// Serve the console's pages at `/` on the control plane.
    pub enabled: bool,
    pub token_sign_in: TokenSignIn,
    /// A session unused this long is over.
    pub session_idle_timeout: Duration,
    /// A session is over this long after sign-in, used or not.
    pub session_max_lifetime: Duration,
    /// Failed sign-ins one source address may make before it is locked out.
    pub sign_in_failures_per_source: NonZeroU32,
    /// Failed passkey proofs one account may see before its passkeys are locked out.
    pub sign_in_failures_per_account: NonZeroU32,
    /// How long a locked-out source waits; its failures are forgotten this long after the last.
    pub lockout: Duration,
    /// The console's public origin (`https://host[:port]`), which passkeys are scoped to.
    /// Unset, passkeys work only on a loopback name (`http://localhost:<port>`).
    pub origin: Option<String>,
    /// Sensitive actions need a sign-in or passkey confirmation at most this long ago.
    pub reauth_window: Duration,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        settings(RawConsole::default(), &mut Vec::new())
    }
}

pub(crate) fn settings(raw: RawConsole, issues: &mut Vec<Issue>) -> ConsoleSettings {
    let token_sign_in = match raw.token_sign_in.as_deref().unwrap_or("once") {
        "once" => TokenSignIn::Once,
        "always" => TokenSignIn::Always,
        "off" => TokenSignIn::Off,
        _ => {
            issue(issues, "console.token_sign_in", "must be \"once\", \"always\" or \"off\"");
            TokenSignIn::Once
        }
    };
    let idle =
        ms(raw.session_idle_timeout_ms, 30 * 60_000, 1_000, 86_400_000, "console.session_idle_timeout_ms", issues);
    let lifetime = ms(
        raw.session_max_lifetime_ms,
        12 * 3_600_000,
        1_000,
        30 * 86_400_000,
        "console.session_max_lifetime_ms",
        issues,
    );
    if idle > lifetime {
        issue(issues, "console.session_idle_timeout_ms", "must not exceed console.session_max_lifetime_ms");
    }
    ConsoleSettings {
        enabled: raw.enabled.unwrap_or(true),
        token_sign_in,
        session_idle_timeout: idle,
        session_max_lifetime: lifetime,
        sign_in_failures_per_source: bounded32(
            raw.sign_in_failures_per_source,
            5,
            1000,
            "console.sign_in_failures_per_source",
            issues,
        ),
        sign_in_failures_per_account: bounded32(
            raw.sign_in_failures_per_account,
            10,
            1000,
            "console.sign_in_failures_per_account",
            issues,
        ),
        lockout: ms(raw.lockout_ms, 15 * 60_000, 1_000, 86_400_000, "console.lockout_ms", issues),
        origin: raw.origin.and_then(|o| match valid_origin(&o) {
            true => Some(o),
            false => {
                issue(
                    issues,
                    "console.origin",
                    "must be https://<domain>[:port] (or http://localhost[:port]) with no path: passkeys are \
                     scoped to a domain name, never an IP address",
                );
                None
            }
        }),
        reauth_window: ms(raw.reauth_window_ms, 5 * 60_000, 1_000, 3_600_000, "console.reauth_window_ms", issues),
    }
}

/// An origin passkeys can be scoped to: a scheme browsers treat as secure, a domain name
/// (WebAuthn refuses IP addresses as relying party ids) and an optional port, nothing more.
pub fn valid_origin(o: &str) -> bool {
    let Some((scheme, authority)) = o.split_once("://") else { return false };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    let labels_ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
    let not_ip = !host.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    let secure = scheme == "https" || (scheme == "http" && host == "localhost");
    secure && port_ok && labels_ok && not_ip
}

#[cfg(test)]
mod tests {
    use super::valid_origin;

    #[test]
    fn only_secure_domain_origins_without_a_path_are_valid() {
        for ok in
            ["https://gate.example.com", "https://gate.example.com:8443", "http://localhost:8081", "https://localhost"]
        {
            assert!(valid_origin(ok), "{ok}");
        }
        for bad in [
            "http://gate.example.com",
            "https://10.0.0.1",
            "http://127.0.0.1:8081",
            "https://gate.example.com/",
            "https://gate.example.com/console",
            "https://Gate.Example.com",
            "https://gate.example.com:",
            "https://gate.example.com:99999999",
            "https://-bad.example",
            "gate.example.com",
            "https://[::1]:8081",
            "https://user@gate.example.com",
        ] {
            assert!(!valid_origin(bad), "{bad}");
        }
    }
}
