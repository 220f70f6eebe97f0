//! The front door against slow and greedy clients, over raw TCP: the header deadline, the body
//! rate floor, the connection cap, the RFC 9112 rules for closing connections, and a prompt exit
//! after shutdown.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{http_get, http_post, temp_config, Gateway};

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    s
}

/// Reads until the server closes the connection; returns what it sent.
/// Writes `bytes` one at a time, `pause` apart; `true` when the gateway cut the connection first.
fn drip(s: &mut TcpStream, bytes: &[u8], pause: Duration) -> bool {
    for b in bytes {
        if s.write_all(&[*b]).is_err() {
            return true;
        }
        std::thread::sleep(pause);
    }
    false
}

fn read_to_close(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn limit_hits(port: u16, limit: &str) -> u64 {
    let metrics = http_get(port, "/metrics").expect("metrics").body;
    let series = format!("mcp_hangar_limit_hits_total{{limit=\"{limit}\"}} ");
    metrics.lines().find_map(|l| l.strip_prefix(&series)).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

#[test]
fn a_header_sent_a_byte_at_a_time_is_cut_at_the_header_deadline() {
    let cfg = temp_config("server:\n  limits: {header_timeout_s: 1}\n");
    let gw = Gateway::start(Some(&cfg), &[]);
    let mut s = connect(gw.port);
    let started = Instant::now();
    let request =
        b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let cut = drip(&mut s, request, Duration::from_millis(100));
    let rest = read_to_close(&mut s);
    let elapsed = started.elapsed();
    assert!(cut || rest.is_empty(), "no answer to a header that missed its deadline: {rest:?}");
    assert!(elapsed < Duration::from_secs(9), "closed at the deadline, not after the bytes ran out: {elapsed:?}");
    assert_eq!(limit_hits(gw.port, "header_timeout"), 1);
    assert_eq!(http_get(gw.port, "/health/ready").expect("ready").status, 200);
}

/// The connection's header deadline is one timer moved on after each request: a kept-alive
/// connection's next header still has the idle limit (60 s) and the header timeout, no more, and
/// the one before it does not cut it short.
#[test]
fn a_kept_alive_connections_next_header_is_cut_at_its_own_deadline() {
    let cfg = temp_config("server:\n  limits: {header_timeout_s: 1}\n");
    let gw = Gateway::start(Some(&cfg), &[]);
    let mut s = connect(gw.port);
    s.write_all(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").expect("first request");
    let mut first = [0u8; 512];
    let n = s.read(&mut first).expect("first response");
    assert!(first[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&first[..n]));
    // Past the first request's deadline (1 s) the connection is still open for the next one.
    std::thread::sleep(Duration::from_millis(1500));
    let started = Instant::now();
    let request = format!("GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: {}\r\n\r\n", "a".repeat(200));
    let cut = drip(&mut s, request.as_bytes(), Duration::from_millis(500));
    let rest = read_to_close(&mut s);
    let elapsed = started.elapsed();
    assert!(cut || rest.is_empty(), "no answer to a header that missed its deadline: {rest:?}");
    // 60 s of idle limit and 1 s of header timeout from the end of the first response.
    assert!(elapsed > Duration::from_secs(55), "cut before its own deadline: {elapsed:?}");
    assert!(elapsed < Duration::from_secs(70), "closed at the deadline, not after the bytes ran out: {elapsed:?}");
    assert_eq!(limit_hits(gw.port, "header_timeout"), 1);
}

#[test]
fn a_dripped_body_is_cut_by_the_rate_floor() {
    let cfg = temp_config("server:\n  limits: {min_body_rate_bytes_s: 1000}\n");
    let gw = Gateway::start(Some(&cfg), &[]);
    let mut s = connect(gw.port);
    s.write_all(
        b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{",
    )
    .expect("header");
    let started = Instant::now();
    let reader = std::thread::spawn({
        let mut s = s.try_clone().expect("clone");
        move || read_to_close(&mut s)
    });
    // A byte every 200 ms: 5 bytes/s, far below the floor of 1000 bytes/s after the 5 s grace.
    while !reader.is_finished() && started.elapsed() < Duration::from_secs(20) {
        if s.write_all(b" ").is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let answer = reader.join().expect("reader");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("too slowly"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert_eq!(limit_hits(gw.port, "body_too_slow"), 1);
}

#[test]
fn connections_over_the_cap_are_refused_with_503_and_places_come_back() {
    let cfg = temp_config("server:\n  limits: {max_connections: 3, header_timeout_s: 30}\n");
    let gw = Gateway::start(Some(&cfg), &[]);
    // Three connections, each shown to be admitted by an answered request, then kept alive.
    let held: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut s = connect(gw.port);
            s.write_all(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").expect("request");
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).expect("answer") == 1 {
                head.push(byte[0]);
            }
            assert!(head.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&head));
            s
        })
        .collect();
    let mut over = connect(gw.port);
    let refusal = read_to_close(&mut over);
    assert!(refusal.starts_with("HTTP/1.1 503"), "{refusal}");
    assert!(refusal.contains("retry-after: 1") && refusal.contains("too many connections"), "{refusal}");
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(http_get(gw.port, "/health/ready").expect("a place is free again").status, 200);
    assert!(limit_hits(gw.port, "connections") >= 1);
}

#[test]
fn connections_close_when_rfc_9112_says_so() {
    let gw = Gateway::start(None, &[]);
    // HTTP/1.0 without keep-alive: the response, then the end of the connection.
    let mut s = connect(gw.port);
    s.write_all(b"GET /health/live HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").expect("request");
    let started = Instant::now();
    let answer = read_to_close(&mut s);
    assert!(answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(5), "closed at once, not after the idle limit");

    // Content-Length and Transfer-Encoding together: answered, then closed (§6.1).
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let request = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: application/json\r\n\
         Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    let mut s = connect(gw.port);
    s.write_all(request.as_bytes()).expect("request");
    let started = Instant::now();
    let answer = read_to_close(&mut s);
    assert!(answer.starts_with("HTTP/1.1 "), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(5), "closed at once: {answer}");

    // Conflicting copies of a routing header.
    let r = http_post(
        gw.port,
        "/mcp",
        &[
            ("Content-Type", "application/json"),
            ("MCP-Protocol-Version", "2026-07-28"),
            ("Mcp-Method", "tools/list"),
            ("Mcp-Method", "tools/call"),
        ],
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
    )
    .expect("post");
    assert_eq!(r.status, 400);
    assert!(r.body.contains("conflicting values for header mcp-method"), "{}", r.body);
}

#[test]
fn the_process_exits_promptly_after_shutdown_completes() {
    let mut gw = Gateway::start(None, &[]);
    // Start the demo provider (a subprocess) so that shutdown has something to stop.
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"demo__echo","arguments":{"text":"x"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;
    let headers = [
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
        ("MCP-Protocol-Version", "2026-07-28"),
        ("Mcp-Method", "tools/call"),
        ("Mcp-Name", "demo__echo"),
    ];
    let r = http_post(gw.port, "/mcp", &headers, call).expect("call");
    assert!(r.body.contains("\"text\":\"x\""), "{}", r.body);
    let stderr = gw.child.stderr.take().expect("stderr");
    gw.signal("TERM");
    let mut lines = BufReader::new(stderr).lines();
    let complete = loop {
        match lines.next() {
            Some(Ok(line)) if line.contains("shutdown complete") => break Instant::now(),
            Some(Ok(_)) => continue,
            _ => panic!("stderr ended before \"shutdown complete\""),
        }
    };
    loop {
        if gw.child.try_wait().expect("try_wait").is_some() {
            break;
        }
        assert!(
            complete.elapsed() < Duration::from_secs(1),
            "still alive {:?} after shutdown complete",
            complete.elapsed()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(gw.child.wait().expect("status").code(), Some(0));
}

#[test]
fn the_stdio_gateway_exits_on_sigterm_though_its_stdin_stays_open() {
    // A read of stdin runs on a blocking thread that nothing can interrupt; the runtime used to
    // wait for it forever after "shutdown complete".
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-hangar"))
        .env_remove("MCP_HANGAR_CONFIG")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    while let Some(Ok(line)) = lines.next() {
        if line.contains("serving MCP on stdio") {
            break;
        }
    }
    let status = std::process::Command::new("kill").args(["-s", "TERM", &child.id().to_string()]).status();
    assert!(status.expect("kill").success());
    let complete = loop {
        match lines.next() {
            Some(Ok(line)) if line.contains("shutdown complete") => break Instant::now(),
            Some(Ok(_)) => continue,
            _ => panic!("stderr ended before \"shutdown complete\""),
        }
    };
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            assert_eq!(status.code(), Some(0));
            break;
        }
        if complete.elapsed() > Duration::from_secs(2) {
            let _ = child.kill();
            panic!("still alive {:?} after shutdown complete (stdin open)", complete.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(child.stdin.take());
}
