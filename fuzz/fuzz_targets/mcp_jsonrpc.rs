//! MCP client messages: the bounded JSON-RPC framing (depth scan, one message, ids, params) and
//! what the gateway reads from a message to decide on it must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = gatehouse_mcp::jsonrpc::parse(data) {
        let _ = m.id();
        let _ = m.param_str("name");
        let _ = m.param_str("uri");
        let _ = m.arguments_bytes();
        let _ = gatehouse_mcp::jsonrpc::error(m.id(), -32003, "x", None);
    }
});
