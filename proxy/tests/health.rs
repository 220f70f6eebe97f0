//! The binary on its embedded default configuration: health endpoints and graceful shutdown.

mod common;

use std::time::Duration;

use common::{http_get, Gateway};

#[test]
fn embedded_default_serves_health_and_exits_cleanly_on_sigterm() {
    let gw = Gateway::start(None, &[]);
    for path in ["/health/live", "/health/ready", "/health/startup"] {
        let r = http_get(gw.port, path).expect("health request");
        assert_eq!(r.status, 200, "{path}: {r:?}");
        assert_eq!(r.header("content-type"), Some("application/json"));
        let body: serde_json::Value = serde_json::from_str(&r.body).expect("JSON body");
        assert!(body["status"].is_string(), "{path}: {body}");
    }
    let ready: serde_json::Value =
        serde_json::from_str(&http_get(gw.port, "/health/ready").expect("ready").body).expect("json");
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["providers"], 1, "the embedded default has its demo provider");
    assert_eq!(ready["inflight"], 0, "a probe is not a request in flight: {ready}");

    let metrics = http_get(gw.port, "/metrics").expect("metrics");
    assert_eq!(metrics.status, 200);
    assert!(metrics.body.contains("mcp_hangar_build_info"), "{}", metrics.body);
    assert_eq!(http_get(gw.port, "/nope").expect("404").status, 404);

    gw.signal("TERM");
    let (code, stderr) = gw.wait_exit(Duration::from_secs(15));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("SIGTERM received"), "{stderr}");
    assert!(stderr.contains("shutdown complete"), "{stderr}");
}

#[test]
fn sigint_also_drains_and_exits_zero() {
    let gw = Gateway::start(None, &["--log-format", "json"]);
    gw.signal("INT");
    let (code, stderr) = gw.wait_exit(Duration::from_secs(15));
    assert_eq!(code, Some(0), "{stderr}");
    let lines: Vec<serde_json::Value> =
        stderr.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}"))).collect();
    assert!(
        lines.iter().any(|l| l["message"] == "SIGINT received: draining in-flight requests (up to 10s)"),
        "{stderr}"
    );
    assert_eq!(lines.last().map(|l| l["message"].clone()), Some("shutdown complete".into()), "{stderr}");
}

#[test]
fn busy_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-hangar"))
        .args(["--http", "--port", &port])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("cannot listen on 127.0.0.1:{port}")), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Reads from `s` until `needle` has arrived (or the connection ends); returns what was read.
fn read_until(s: &mut std::net::TcpStream, needle: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(needle.len()).any(|w| w == needle) {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    got
}

#[test]
fn open_streams_end_cleanly_on_sigterm() {
    use std::io::Write;
    let gw = Gateway::start(None, &[]);
    let connect = || {
        let s = std::net::TcpStream::connect(("127.0.0.1", gw.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        s
    };

    // A modern subscriptions/listen stream, past its acknowledgment.
    let listen = r#"{"jsonrpc":"2.0","id":"L1","method":"subscriptions/listen","params":{"notifications":{"toolsListChanged":true},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;
    let mut modern = connect();
    write!(
        modern,
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2026-07-28\r\nMcp-Method: subscriptions/listen\r\nContent-Length: {}\r\n\r\n{listen}",
        listen.len()
    )
    .expect("listen");
    let ack = String::from_utf8_lossy(&read_until(&mut modern, b"\n\n")).into_owned();
    assert!(ack.starts_with("HTTP/1.1 200") && ack.contains("text/event-stream"), "{ack}");

    // A legacy session with its GET stream open.
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let r = common::http_post(
        gw.port,
        "/mcp",
        &[("Content-Type", "application/json"), ("Accept", "application/json, text/event-stream")],
        init,
    )
    .expect("initialize");
    let sid = r.header("mcp-session-id").expect("session id").to_owned();
    let mut legacy = connect();
    write!(
        legacy,
        "GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nMcp-Session-Id: {sid}\r\nMCP-Protocol-Version: 2025-11-25\r\n\r\n"
    )
    .expect("get");
    let head = String::from_utf8_lossy(&read_until(&mut legacy, b"\r\n\r\n")).into_owned();
    assert!(head.starts_with("HTTP/1.1 200") && head.contains("text/event-stream"), "{head}");

    gw.signal("TERM");
    // The listen stream ends with its result (the same id), then the chunked body's end.
    let rest = String::from_utf8_lossy(&read_until(&mut modern, b"0\r\n\r\n")).into_owned();
    assert!(rest.contains(r#""id":"L1""#) && rest.contains(r#""result""#), "{rest}");
    assert!(rest.ends_with("0\r\n\r\n"), "{rest:?}");
    // The GET stream just ends.
    let rest = String::from_utf8_lossy(&read_until(&mut legacy, b"0\r\n\r\n")).into_owned();
    assert!(rest.ends_with("0\r\n\r\n"), "{rest:?}");

    let (code, stderr) = gw.wait_exit(Duration::from_secs(15));
    assert_eq!(code, Some(0), "{stderr}");
}
