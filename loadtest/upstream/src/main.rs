//! `hangar-upstream`: a minimal MCP server with no framework, small enough to build statically and
//! ship in a `FROM scratch` image (the container-provider tests) and fast enough to stay out of the
//! way when the gateway is measured (the load tests).
//!
//! ```text
//! hangar-upstream stdio             newline-delimited JSON-RPC on stdin/stdout, both protocol eras
//! hangar-upstream http PORT [sse]   streamable HTTP on 127.0.0.1:PORT (any path), both eras;
//!                                   replies as JSON, or as one SSE event with `sse`
//! ```

use std::io::{BufRead, Write};
use std::process::ExitCode;

use serde_json::{json, Value};

mod http;
mod mcp;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("stdio") => stdio(),
        Some("http") => {
            let Some(port) = args.get(1).and_then(|p| p.parse::<u16>().ok()) else {
                eprintln!("usage: hangar-upstream http PORT [sse]");
                return ExitCode::from(2);
            };
            let framing =
                if args.get(2).map(String::as_str) == Some("sse") { http::Framing::Sse } else { http::Framing::Json };
            match http::serve(port, framing) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("hangar-upstream: cannot listen on 127.0.0.1:{port}: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        _ => {
            eprintln!("usage: hangar-upstream stdio | http PORT [sse]");
            ExitCode::from(2)
        }
    }
}

/// Serves MCP on stdin/stdout until stdin closes.
fn stdio() -> ExitCode {
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        let reply = match serde_json::from_str::<Value>(&line) {
            Ok(msg) => mcp::handle(&msg),
            Err(e) => Some(json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": e.to_string()}})),
        };
        if let Some(reply) = reply {
            if writeln!(stdout, "{reply}").and_then(|()| stdout.flush()).is_err() {
                break;
            }
        }
    }
    ExitCode::SUCCESS
}
