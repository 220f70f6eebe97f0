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
