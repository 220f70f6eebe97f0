//! A fixed-reply streamable-HTTP MCP server for load tests: one thread per connection, keep-alive,
//! `Content-Length` bodies, replies written in one `write`. `tools/call` is answered without
//! building a JSON tree (the request's `id` is echoed from a borrowed parse); everything else goes
//! through [`crate::mcp::handle`]. Both eras: a request with `MCP-Protocol-Version: 2026-07-28` is
//! modern; `initialize` opens a legacy session (`Mcp-Session-Id`), which later requests must name.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;
use serde_json::value::RawValue;

/// Largest request accepted.
const MAX_BODY: usize = 1 << 20;

/// How replies are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// `application/json`.
    Json,
    /// `text/event-stream`, one `message` event.
    Sse,
}

static SESSIONS: AtomicU64 = AtomicU64::new(1);

/// Serves on `127.0.0.1:port` until killed.
pub(crate) fn serve(port: u16, framing: Framing) -> std::io::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let _ = conn.set_nodelay(true);
        std::thread::spawn(move || connection(conn, framing));
    }
    Ok(())
}

#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    method: Option<&'a str>,
}

fn connection(conn: TcpStream, framing: Framing) {
    let Ok(mut out) = conn.try_clone() else { return };
    let mut input = BufReader::with_capacity(64 << 10, conn);
    let mut line = String::new();
    let mut body = Vec::new();
    let mut reply = Vec::with_capacity(1024);
    loop {
        // Request line and headers.
        let (mut length, mut modern, mut session) = (0usize, false, false);
        line.clear();
        match input.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let post = line.starts_with("POST ");
        loop {
            line.clear();
            if input.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let Some((name, value)) = header.split_once(':') else { continue };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse().unwrap_or(0);
            } else if name.eq_ignore_ascii_case("mcp-protocol-version") {
                modern = value == "2026-07-28";
            } else if name.eq_ignore_ascii_case("mcp-session-id") {
                session = true;
            }
        }
        if length > MAX_BODY {
            return;
        }
        body.resize(length, 0);
        if input.read_exact(&mut body).is_err() {
            return;
        }
        reply.clear();
        respond(post, modern, session, &body, framing, &mut reply);
        if out.write_all(&reply).is_err() {
            return;
        }
    }
}

fn respond(post: bool, modern: bool, session: bool, body: &[u8], framing: Framing, reply: &mut Vec<u8>) {
    if !post {
        // GET streams and DELETE are not offered.
        reply.extend_from_slice(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n");
        return;
    }
    let Ok(head) = serde_json::from_slice::<Head<'_>>(body) else {
        reply.extend_from_slice(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
        return;
    };
    let Some(id) = head.id else {
        // A notification or a response.
        reply.extend_from_slice(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n");
        return;
    };
    let method = head.method.unwrap_or_default();
    if !modern && !session && method != "initialize" {
        reply.extend_from_slice(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
        return;
    }
    let mut extra = String::new();
    let message = if method == "tools/call" {
        let mut m = Vec::with_capacity(160);
        m.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
        m.extend_from_slice(id.get().as_bytes());
        m.extend_from_slice(
            br#","result":{"content":[{"type":"text","text":"ok"}],"isError":false,"resultType":"complete"}}"#,
        );
        m
    } else {
        let msg = serde_json::from_slice(body).unwrap_or(serde_json::Value::Null);
        if method == "initialize" {
            extra = format!("mcp-session-id: s{}\r\n", SESSIONS.fetch_add(1, Ordering::Relaxed));
        }
        crate::mcp::handle(&msg).map(|v| v.to_string().into_bytes()).unwrap_or_default()
    };
    let (content_type, framed_len) = match framing {
        Framing::Json => ("application/json", message.len()),
        Framing::Sse => ("text/event-stream", message.len() + "event: message\ndata: \n\n".len()),
    };
    reply.extend_from_slice(
        format!("HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {framed_len}\r\n{extra}\r\n")
            .as_bytes(),
    );
    match framing {
        Framing::Json => reply.extend_from_slice(&message),
        Framing::Sse => {
            reply.extend_from_slice(b"event: message\ndata: ");
            reply.extend_from_slice(&message);
            reply.extend_from_slice(b"\n\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(modern: bool, session: bool, body: &str, framing: Framing) -> String {
        let mut out = Vec::new();
        respond(true, modern, session, body.as_bytes(), framing, &mut out);
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn answers_calls_without_parsing_them_into_a_tree() {
        let r = reply(
            true,
            false,
            r#"{"jsonrpc":"2.0","id":"a-7","method":"tools/call","params":{"name":"echo"}}"#,
            Framing::Json,
        );
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        let body = r.split("\r\n\r\n").nth(1).expect("body");
        let v: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(v["id"], "a-7");
        assert!(r.contains(&format!("content-length: {}\r\n", body.len())), "{r}");
        let sse = reply(true, false, r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#, Framing::Sse);
        assert!(sse.contains("text/event-stream") && sse.ends_with("}\n\n"), "{sse}");
    }

    #[test]
    fn legacy_requests_need_a_session_that_initialize_opens() {
        assert!(reply(false, false, r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#, Framing::Json)
            .starts_with("HTTP/1.1 400"));
        let init = reply(false, false, r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#, Framing::Json);
        assert!(init.contains("mcp-session-id: s"), "{init}");
        assert!(reply(false, true, r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#, Framing::Json)
            .starts_with("HTTP/1.1 202"));
    }
}
