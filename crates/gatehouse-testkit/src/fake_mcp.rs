//! A minimal MCP server on the fake provider's port (`POST /mcp`), for the MCP gateway's
//! overhead benchmark and Rust tests: stateless, JSON answers, one `echo` tool. Not a reference
//! implementation (the Python tests use the official SDK's server); it answers what the
//! benchmark sends, as fast as a server can.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub(crate) async fn on_message(Json(msg): Json<Value>) -> Response {
    let Some(id) = msg.get("id").cloned() else {
        // a notification
        return StatusCode::ACCEPTED.into_response();
    };
    let params = msg.get("params").cloned().unwrap_or(Value::Null);
    let result = match msg.get("method").and_then(Value::as_str).unwrap_or("") {
        "initialize" => json!({"protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
                                "serverInfo": {"name": "fake-mcp", "version": "1"}}),
        "server/discover" => json!({"supportedVersions": ["2026-07-28"], "capabilities": {"tools": {}},
                                     "resultType": "complete", "ttlMs": 0, "cacheScope": "private"}),
        "ping" => json!({}),
        "tools/list" => json!({"tools": [{"name": "echo", "inputSchema": {"type": "object",
            "properties": {"text": {"type": "string"}}}}], "resultType": "complete", "ttlMs": 0, "cacheScope": "private"}),
        "tools/call" => {
            let text = params.pointer("/arguments/text").and_then(Value::as_str).unwrap_or("");
            json!({"content": [{"type": "text", "text": text}], "isError": false, "resultType": "complete"})
        }
        _ => {
            let e = json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "Method not found"}});
            return Json(e).into_response();
        }
    };
    Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response()
}
