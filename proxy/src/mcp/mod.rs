//! MCP semantics: protocol versions and eras, header rules, and the gateway's own MCP server
//! (aggregation, routing, sessions, bridging between eras).

pub mod aggregate;
pub mod bridge;
pub mod dispatch;
pub mod fanout;
pub mod headers;
pub mod hub;
pub mod protocol;
pub mod registry;
pub mod replay;
pub mod session;
pub mod subscriptions;
