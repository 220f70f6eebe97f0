//! The built-in demo MCP server (`mcp-hangar demo-server`): a tiny stdio MCP server so the embedded
//! default configuration has a real provider on a machine with nothing else installed.

use std::process::ExitCode;

/// Runs the demo server on stdin/stdout until stdin closes.
pub fn run() -> ExitCode {
    eprintln!("demo-server is not available yet");
    ExitCode::FAILURE
}
