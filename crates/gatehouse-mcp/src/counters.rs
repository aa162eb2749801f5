//! Prometheus counters of MCP messages, labelled by server, method and tool — never by
//! arguments. Every label value is bounded: a server only once it resolved to a registered one,
//! a method from the governed list, and at most [`MAX_TOOL_LABELS`] distinct tool names per
//! process (the rest count as `other`), since tool names come from callers.

use std::sync::LazyLock;

use dashmap::DashSet;

/// Distinct `(server, tool)` label pairs one process keeps.
const MAX_TOOL_LABELS: usize = 1000;

static SEEN: LazyLock<DashSet<(Box<str>, Box<str>)>> = LazyLock::new(DashSet::new);

/// Counts one finished message: `gatehouse_mcp_messages_total{server, method, tool, outcome}`
/// (`outcome` is `ok` or the refusal's code; `tool` is empty for other methods; `server` is
/// `unknown` for a name that did not resolve).
pub(crate) fn message(server: Option<&str>, method: &str, tool: Option<&str>, outcome: &'static str) {
    let tool = match (server, tool) {
        (Some(s), Some(t)) => {
            let key = (Box::<str>::from(s), Box::<str>::from(t));
            let known = SEEN.contains(&key)
                || (SEEN.len() < MAX_TOOL_LABELS && {
                    SEEN.insert(key);
                    true
                });
            if known { t } else { "other" }
        }
        _ => "",
    };
    let method = match method {
        m @ ("initialize"
        | "ping"
        | "server/discover"
        | "tools/list"
        | "tools/call"
        | "prompts/list"
        | "prompts/get"
        | "resources/list"
        | "resources/templates/list"
        | "resources/read"
        | "resources/subscribe"
        | "resources/unsubscribe"
        | "completion/complete"
        | "logging/setLevel"
        | "session/delete"
        | "notifications/initialized"
        | "notifications/cancelled"
        | "notifications/progress"
        | "notifications/roots/list_changed") => m,
        "" => "response",
        _ => "other",
    };
    metrics::counter!("gatehouse_mcp_messages_total",
        "server" => server.unwrap_or("unknown").to_owned(), "method" => method.to_owned(), "tool" => tool.to_owned(),
        "outcome" => outcome)
    .increment(1);
}
