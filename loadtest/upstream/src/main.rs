//! `hangar-upstream`: a minimal MCP server with no framework, small enough to build statically and
//! ship in a `FROM scratch` image (the container-provider tests) and fast enough to stay out of the
//! way when the gateway is measured (the load tests).
//!
//! ```text
//! hangar-upstream stdio        newline-delimited JSON-RPC on stdin/stdout, both protocol eras
//! ```

use std::io::{BufRead, Write};
use std::process::ExitCode;

use serde_json::{json, Value};

mod mcp;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("stdio") => stdio(),
        _ => {
            eprintln!("usage: hangar-upstream stdio");
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
