//! The MCP semantics of the tiny server: `server/discover` and `initialize` (both eras), `ping`,
//! `tools/list` and three tools.

use serde_json::{json, Value};

const MODERN: &str = "2026-07-28";
const LEGACY: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// The reply to one message, `None` for notifications.
pub(crate) fn handle(msg: &Value) -> Option<Value> {
    let id = msg.get("id")?.clone();
    let method = msg.get("method").and_then(Value::as_str).unwrap_or_default();
    let params = msg.get("params").cloned().unwrap_or_else(|| json!({}));
    let result = match method {
        "server/discover" => Ok(json!({
            "resultType": "complete",
            "supportedVersions": [MODERN],
            "capabilities": {"tools": {}},
            "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "hangar-upstream", "version": env!("CARGO_PKG_VERSION")}},
            "ttlMs": 0,
            "cacheScope": "public",
        })),
        "initialize" => {
            let asked = params.get("protocolVersion").and_then(Value::as_str).unwrap_or_default();
            let version = if LEGACY.contains(&asked) { asked } else { LEGACY[0] };
            Ok(json!({
                "protocolVersion": version,
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "hangar-upstream", "version": env!("CARGO_PKG_VERSION")},
            }))
        }
        "ping" => Ok(json!({})),
        "tools/list" => Ok(json!({"tools": tools(), "resultType": "complete", "ttlMs": 0, "cacheScope": "public"})),
        "tools/call" => call(&params),
        other => Err((-32601, format!("Method not found: {other}"))),
    };
    Some(match result {
        Ok(r) => json!({"jsonrpc": "2.0", "id": id, "result": r}),
        Err((code, message)) => json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}),
    })
}

fn tools() -> Value {
    json!([
        {"name": "echo", "description": "Echo the text back", "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}},
        {"name": "add", "description": "Add two numbers", "inputSchema": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}},
        {"name": "whoami", "description": "Where this server runs: host name and process id", "inputSchema": {"type": "object"}},
    ])
}

fn call(params: &Value) -> Result<Value, (i64, String)> {
    let args = params.get("arguments").cloned().unwrap_or_else(|| json!({}));
    let text = match params.get("name").and_then(Value::as_str).unwrap_or_default() {
        "echo" => args.get("text").and_then(Value::as_str).unwrap_or_default().to_owned(),
        "add" => {
            let n = |k: &str| args.get(k).and_then(Value::as_f64).unwrap_or(0.0);
            (n("a") + n("b")).to_string()
        }
        "whoami" => {
            let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
            format!("{}:{}", host.trim(), std::process::id())
        }
        other => return Err((-32602, format!("Unknown tool: {other}"))),
    };
    Ok(json!({"content": [{"type": "text", "text": text}], "isError": false, "resultType": "complete"}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_both_eras_and_tools() {
        let r = handle(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18"}}),
        );
        assert_eq!(r.expect("reply")["result"]["protocolVersion"], "2025-06-18");
        let r = handle(
            &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "add", "arguments": {"a": 1, "b": 2}}}),
        );
        assert_eq!(r.expect("reply")["result"]["content"][0]["text"], "3");
        assert!(handle(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).is_none());
        let r = handle(&json!({"jsonrpc": "2.0", "id": 3, "method": "nope"}));
        assert_eq!(r.expect("reply")["error"]["code"], -32601);
    }
}
