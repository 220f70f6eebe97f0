//! MCP Hangar: a production MCP gateway on Pingora.
//!
//! One process sits between MCP clients and many MCP servers ("providers") and presents them as one
//! server. The binary (`main.rs`) only calls [`cli::main`]; everything else lives here:
//!
//! - [`cli`]: the command line and configuration loading.
//! - [`runtime`]: start-up, listener, graceful shutdown.
//! - [`front`]: front doors (HTTP via Pingora).
//! - [`auth`]: who is calling (API keys, JWTs) and what they may use.
//! - [`state`]: the configuration snapshot and lifecycle phase shared by all requests.
//! - [`telemetry`]: logging and metrics.

pub mod admin;
pub mod auth;
pub mod balance;
pub mod cli;
pub mod demo;
pub mod discovery;
pub mod fetch;
pub mod front;
pub mod fuzz;
pub mod jsonrpc;
pub mod lifecycle;
pub mod mcp;
pub mod memory;
pub mod probe;
pub mod proto;
pub mod provider;
pub mod ratelimit;
pub mod routing;
pub mod runtime;
pub mod state;
pub mod telemetry;
pub mod upstream;
