//! `[mcp]`: the MCP gateway's bounds (docs/MCP.md). Static. Tenants register servers and set
//! tool policies through the admin API; this section bounds what they can ask for.

use std::num::NonZeroU32;
use std::time::Duration;

use serde::Deserialize;

use crate::Issue;
use crate::validate::{bounded32, ms, private_ranges};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMcp {
    pub allow_private_targets: Option<Vec<String>>,
    pub max_sessions: Option<u64>,
    pub max_sessions_per_credential: Option<u64>,
    pub session_idle_timeout_ms: Option<u64>,
    pub session_max_lifetime_ms: Option<u64>,
    pub max_message_bytes: Option<u64>,
    pub max_response_bytes: Option<u64>,
    pub max_timeout_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct McpSettings {
    /// Non-public ranges MCP servers may be registered at anyway (the platform admin's choice,
    /// as for webhooks); everything else private, loopback or special-purpose is refused.
    pub allow_private_targets: Vec<ipnet::IpNet>,
    /// Open sessions on this replica, all callers together; a new one beyond it is refused.
    pub max_sessions: NonZeroU32,
    /// Open sessions of one credential (an API key, a token).
    pub max_sessions_per_credential: NonZeroU32,
    /// A session unused this long is closed.
    pub session_idle_timeout: Duration,
    /// A session is closed this long after it opened, used or not.
    pub session_max_lifetime: Duration,
    /// The largest JSON-RPC message a client may send (a server's own cap may be lower).
    pub max_message_bytes: NonZeroU32,
    /// The largest answer a server may give to one message (a server's own cap may be lower).
    pub max_response_bytes: NonZeroU32,
    /// The longest a server registration may let one call run.
    pub max_timeout: Duration,
}

impl Default for McpSettings {
    fn default() -> Self {
        settings(RawMcp::default(), &mut Vec::new())
    }
}

pub(crate) fn settings(raw: RawMcp, issues: &mut Vec<Issue>) -> McpSettings {
    McpSettings {
        allow_private_targets: private_ranges(
            raw.allow_private_targets.unwrap_or_default(),
            "mcp.allow_private_targets",
            issues,
        ),
        max_sessions: bounded32(raw.max_sessions, 10_000, 1_000_000, "mcp.max_sessions", issues),
        max_sessions_per_credential: bounded32(
            raw.max_sessions_per_credential,
            64,
            100_000,
            "mcp.max_sessions_per_credential",
            issues,
        ),
        session_idle_timeout: ms(
            raw.session_idle_timeout_ms,
            30 * 60_000,
            1_000,
            7 * 86_400_000,
            "mcp.session_idle_timeout_ms",
            issues,
        ),
        session_max_lifetime: ms(
            raw.session_max_lifetime_ms,
            86_400_000,
            1_000,
            30 * 86_400_000,
            "mcp.session_max_lifetime_ms",
            issues,
        ),
        max_message_bytes: bounded32(raw.max_message_bytes, 1 << 20, 64 << 20, "mcp.max_message_bytes", issues),
        max_response_bytes: bounded32(raw.max_response_bytes, 8 << 20, 256 << 20, "mcp.max_response_bytes", issues),
        max_timeout: ms(raw.max_timeout_ms, 300_000, 100, 3_600_000, "mcp.max_timeout_ms", issues),
    }
}
