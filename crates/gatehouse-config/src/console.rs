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
    pub lockout_ms: Option<u64>,
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
    /// How long a locked-out source waits; its failures are forgotten this long after the last.
    pub lockout: Duration,
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
        lockout: ms(raw.lockout_ms, 15 * 60_000, 1_000, 86_400_000, "console.lockout_ms", issues),
    }
}
