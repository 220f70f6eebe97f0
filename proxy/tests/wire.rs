//! The front door's wire behaviour for bad and edge-case input, checked with raw HTTP: status
//! codes, JSON-RPC error codes, and that nothing malformed reaches an upstream.

mod common;

use common::{http_get, http_post, raw, temp_config, Gateway, Response};
use serde_json::Value;

const MODERN: &str = "2026-07-28";

fn gateway() -> Gateway {
    // One provider whose endpoint refuses connections: requests that wrongly got past the checks
    // would fail differently (provider unavailable), so every assertion below pins the check.
    let dead = common::free_port();
    let cfg = temp_config(&format!(
        "providers:\n  dead:\n    mode: remote\n    endpoint: http://127.0.0.1:{dead}/mcp\n    tools: [{{name: t}}]\n"
    ));
    Gateway::start(Some(&cfg), &[])
}

fn modern_headers<'a>(method: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut h = vec![
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
        ("MCP-Protocol-Version", MODERN),
        ("Mcp-Method", method),
    ];
    h.extend_from_slice(extra);
    h
}

fn meta() -> &'static str {
    r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}"#
}

fn rpc_error(r: &Response) -> (i64, String) {
    let v: Value = serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("JSON body ({e}): {:?}", r.body));
    (v["error"]["code"].as_i64().unwrap_or(0), v["error"]["message"].as_str().unwrap_or_default().to_owned())
}

#[test]
fn modern_error_matrix() {
    let gw = gateway();
    let p = gw.port;
    let call = |name: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"{name}","arguments":{{}},{}}}}}"#,
            meta()
        )
    };

    let r = http_post(p, "/mcp", &modern_headers("tools/call", &[("Mcp-Name", "dead__x")]), &call("dead__y"))
        .expect("post");
    assert_eq!(r.status, 400);
    let (code, msg) = rpc_error(&r);
    assert_eq!(code, -32020);
    assert!(msg.contains("'dead__x' does not match body value 'dead__y'"), "{msg}");

    let mut headers = modern_headers("tools/call", &[]);
    headers.retain(|(n, _)| *n != "Mcp-Method");
    let r = http_post(p, "/mcp", &headers, &call("dead__t")).expect("post");
    assert_eq!((r.status, rpc_error(&r).0), (400, -32020), "missing Mcp-Method");

    let r = http_post(p, "/mcp", &modern_headers("tools/call", &[]), &call("dead__t")).expect("post");
    assert_eq!((r.status, rpc_error(&r).0), (400, -32020), "missing Mcp-Name");

    let mut headers = modern_headers("tools/list", &[]);
    headers[2] = ("MCP-Protocol-Version", "1999-01-01");
    let r = http_post(p, "/mcp", &headers, r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).expect("post");
    assert_eq!(r.status, 400);
    let v: Value = serde_json::from_str(&r.body).expect("json");
    assert_eq!(v["error"]["code"], -32022);
    assert_eq!(v["error"]["data"]["requested"], "1999-01-01");
    let supported: Vec<&str> =
        v["error"]["data"]["supported"].as_array().expect("list").iter().filter_map(Value::as_str).collect();
    assert!(supported.contains(&MODERN) && supported.contains(&"2025-11-25"), "{supported:?}");

    let body = format!(r#"{{"jsonrpc":"2.0","id":2,"method":"no/such","params":{{{}}}}}"#, meta());
    let r = http_post(p, "/mcp", &modern_headers("no/such", &[]), &body).expect("post");
    assert_eq!((r.status, rpc_error(&r).0), (404, -32601), "unknown method");

    let body = r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#;
    let r = http_post(p, "/mcp", &modern_headers("notifications/cancelled", &[]), body).expect("post");
    assert_eq!(r.status, 202, "notification");
    assert!(r.body.is_empty());

    let r = http_post(p, "/mcp", &modern_headers("tools/list", &[]), "{\"jsonrpc\":").expect("post");
    assert_eq!((r.status, rpc_error(&r).0), (400, -32700), "malformed JSON");

    let r = http_post(p, "/mcp", &modern_headers("tools/list", &[]), r#"{"jsonrpc":"2.0","id":1,"method":7}"#)
        .expect("post");
    assert_eq!((r.status, rpc_error(&r).0), (400, -32600), "wrong shape");

    let r = http_post(p, "/mcp", &modern_headers("tools/list", &[]), r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#)
        .expect("post");
    assert_eq!((r.status, rpc_error(&r).0), (400, -32600), "batch");

    let body = format!(
        r#"{{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{{"name":"ghost","arguments":{{}},{}}}}}"#,
        meta()
    );
    let r = http_post(p, "/mcp", &modern_headers("tools/call", &[("Mcp-Name", "ghost")]), &body).expect("post");
    let (code, msg) = rpc_error(&r);
    assert_eq!((r.status, code), (200, -32602));
    assert!(msg.contains("Unknown tool") && msg.contains("ghost"), "{msg}");

    let r = http_post(p, "/mcp", &modern_headers("tools/call", &[("Mcp-Name", "dead__t")]), &call("dead__t"))
        .expect("post");
    let (code, msg) = rpc_error(&r);
    assert_eq!(code, -32010, "a down provider is a clear error: {msg}");
    assert!(msg.contains("\"dead\"") && msg.contains("unavailable"), "{msg}");
}

#[test]
fn transport_level_checks() {
    let gw = gateway();
    let p = gw.port;
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;

    let r = raw(p, &format!("GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nMCP-Protocol-Version: {MODERN}\r\nConnection: close\r\n\r\n")).expect("get");
    assert_eq!(r.status, 405, "GET in the modern era");
    let r = raw(
        p,
        &format!(
            "DELETE /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nMCP-Protocol-Version: {MODERN}\r\nConnection: close\r\n\r\n"
        ),
    )
    .expect("delete");
    assert_eq!(r.status, 405, "DELETE in the modern era");

    let r =
        http_post(p, "/mcp", &modern_headers("tools/list", &[("Origin", "http://evil.example")]), list).expect("post");
    assert_eq!(r.status, 403, "bad Origin");
    let r = http_post(p, "/mcp", &modern_headers("tools/list", &[("Origin", "http://localhost:5173")]), list)
        .expect("post");
    assert_ne!(r.status, 403, "localhost origins are allowed by default");

    let r = raw(p, &format!("POST /mcp HTTP/1.1\r\nHost: attacker.example:{p}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{list}", list.len())).expect("post");
    assert_eq!(r.status, 403, "non-loopback Host on a loopback gateway");

    let r = http_post(p, "/mcp", &[("Content-Type", "text/plain")], list).expect("post");
    assert_eq!(r.status, 415);
    let r = http_post(p, "/mcp", &[("Content-Type", "application/json"), ("Accept", "text/html")], list).expect("post");
    assert_eq!(r.status, 406);

    let big = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"pad":"{}"}}}}"#, "x".repeat(5 << 20));
    let r = http_post(p, "/mcp", &[("Content-Type", "application/json")], &big).expect("post");
    assert_eq!(r.status, 413, "body over max_body_bytes");

    let r =
        raw(p, "PUT /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").expect("put");
    assert_eq!(r.status, 405);
    assert!(r.header("allow").is_some_and(|a| a.contains("POST")));
    assert_eq!(http_get(p, "/health/ready").expect("ready").status, 200, "still healthy after all that");
}

#[test]
fn idle_legacy_sessions_expire() {
    let cfg = temp_config("server:\n  limits: {session_idle_timeout_s: 0.5}\n");
    let gw = Gateway::start(Some(&cfg), &[]);
    let json = [("Content-Type", "application/json"), ("Accept", "application/json, text/event-stream")];
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"wire","version":"1"}}}"#;
    let r = http_post(gw.port, "/mcp", &json, init).expect("initialize");
    let sid = r.header("mcp-session-id").expect("session id").to_owned();
    let mut session = json.to_vec();
    session.push(("Mcp-Session-Id", &sid));
    let ping = r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#;
    assert_eq!(http_post(gw.port, "/mcp", &session, ping).expect("ping").status, 200, "fresh session works");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(http_post(gw.port, "/mcp", &session, ping).expect("ping").status, 404, "idle session expired");
}

#[test]
fn legacy_session_rules() {
    let gw = gateway();
    let p = gw.port;
    let json = [("Content-Type", "application/json"), ("Accept", "application/json, text/event-stream")];
    let r = http_post(p, "/mcp", &json, r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).expect("post");
    assert_eq!(r.status, 400, "legacy request without a session");
    let mut with_unknown = json.to_vec();
    with_unknown.push(("Mcp-Session-Id", "does-not-exist"));
    let r = http_post(p, "/mcp", &with_unknown, r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).expect("post");
    assert_eq!(r.status, 404, "unknown session");

    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"wire","version":"1"}}}"#;
    let r = http_post(p, "/mcp", &json, init).expect("initialize");
    assert_eq!(r.status, 200);
    let sid = r.header("mcp-session-id").expect("session id").to_owned();
    let v: Value = serde_json::from_str(&r.body).expect("json");
    assert_eq!(v["result"]["protocolVersion"], "2025-06-18", "the client's legacy version is kept");
    assert_eq!(v["result"]["serverInfo"]["name"], "mcp-hangar");

    let mut session = json.to_vec();
    session.push(("Mcp-Session-Id", &sid));
    session.push(("MCP-Protocol-Version", "2025-06-18"));
    let r = http_post(p, "/mcp", &session, r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).expect("post");
    assert_eq!(r.status, 202);
    let r = http_post(p, "/mcp", &session, r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#).expect("ping");
    assert_eq!(r.status, 200);
    assert_eq!(serde_json::from_str::<Value>(&r.body).expect("json")["result"], serde_json::json!({}));
    let r = http_post(p, "/mcp", &session, r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#).expect("list");
    let v: Value = serde_json::from_str(&r.body).expect("json");
    assert_eq!(v["result"]["tools"][0]["name"], "dead__t", "predefined tools of a down provider are listed");

    let r = raw(
        p,
        &format!("DELETE /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nMcp-Session-Id: {sid}\r\nConnection: close\r\n\r\n"),
    )
    .expect("delete");
    assert_eq!(r.status, 200);
    let r = http_post(p, "/mcp", &session, r#"{"jsonrpc":"2.0","id":4,"method":"ping"}"#).expect("ping");
    assert_eq!(r.status, 404, "a deleted session is gone");
}

#[test]
fn connections_are_reused_and_malformed_requests_refused() {
    use std::io::{Read, Write};
    let gw = gateway();
    let p = gw.port;

    let r = raw(p, "NOT AN HTTP REQUEST\r\n\r\n").expect("garbage");
    assert_eq!(r.status, 400, "a malformed request line");

    // Two requests on one keep-alive connection: the first answer must leave it usable.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", p)).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).expect("timeout");
    s.write_all(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").expect("first request");
    let mut first = Vec::new();
    let mut byte = [0u8; 1];
    while !first.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).expect("first response"), 1, "closed after {first:?}");
        first.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&first).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("content-length");
    let mut body = vec![0u8; length];
    s.read_exact(&mut body).expect("first body");
    s.write_all(b"GET /health/ready HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").expect("second request");
    let mut second = Vec::new();
    s.read_to_end(&mut second).expect("second response");
    assert!(second.starts_with(b"HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&second));
}

#[test]
fn cors_for_allowed_origins_only() {
    let cfg = temp_config(
        "server:\n  allowed_origins: [\"http://localhost\", \"https://app.example.com\"]\nauth:\n  enabled: true\n  api_key:\n    header_name: X-Team-Key\n    keys: [{name: x, key_hash: \"sha256:0000000000000000000000000000000000000000000000000000000000000000\", principal: service:x}]\n",
    );
    let gw = Gateway::start(Some(&cfg), &[]);
    let p = gw.port;
    let preflight = |origin: &str| {
        raw(
            p,
            &format!(
                "OPTIONS /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: {origin}\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type, mcp-protocol-version, mcp-session-id\r\nConnection: close\r\n\r\n"
            ),
        )
        .expect("preflight")
    };
    let ok = preflight("https://app.example.com");
    assert_eq!(ok.status, 204, "{:?}", ok.body);
    assert_eq!(ok.header("access-control-allow-origin"), Some("https://app.example.com"));
    let allowed = ok.header("access-control-allow-headers").unwrap_or_default().to_owned();
    for h in [
        "content-type",
        "mcp-protocol-version",
        "mcp-session-id",
        "mcp-method",
        "mcp-name",
        "last-event-id",
        "authorization",
        "x-team-key",
    ] {
        assert!(allowed.split(", ").any(|x| x == h), "{h} in {allowed}");
    }
    assert!(ok.header("access-control-allow-methods").is_some_and(|m| m.contains("POST") && m.contains("DELETE")));
    assert!(ok.header("access-control-max-age").is_some());
    assert!(ok.header("content-length").is_none(), "a 204 has no Content-Length");

    let refused = preflight("https://evil.example");
    assert_eq!(refused.status, 403);
    assert!(refused.header("access-control-allow-origin").is_none(), "a refused origin gets no CORS header");

    // A real request from an allowed origin (here refused for want of a key): readable by the page,
    // with the challenge exposed.
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"b","version":"1"}}}"#;
    let r = http_post(p, "/mcp", &[("Content-Type", "application/json"), ("Origin", "http://localhost:5173")], list)
        .expect("post");
    assert_eq!(r.status, 401);
    assert_eq!(r.header("access-control-allow-origin"), Some("http://localhost:5173"));
    let exposed = r.header("access-control-expose-headers").unwrap_or_default();
    assert!(exposed.contains("WWW-Authenticate") && exposed.contains("Mcp-Session-Id"), "{exposed}");
    assert!(r.header("vary").is_some_and(|v| v.contains("Origin")));

    // Without an Origin (not a browser), nothing CORS; an OPTIONS says what is allowed.
    let r = http_post(p, "/mcp", &[("Content-Type", "application/json")], list).expect("post");
    assert!(r.header("access-control-allow-origin").is_none());
    let r = raw(p, "OPTIONS /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").expect("options");
    assert_eq!(r.status, 204);
    assert!(r.header("allow").is_some_and(|a| a.contains("OPTIONS")));
    // Health and metrics are no business of pages on other origins.
    let r = raw(
        p,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: https://app.example.com\r\nConnection: close\r\n\r\n",
    )
    .expect("metrics");
    assert!(r.header("access-control-allow-origin").is_none());
}
