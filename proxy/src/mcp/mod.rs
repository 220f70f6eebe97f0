//! The gateway's own MCP server: aggregation, routing of calls, legacy sessions, bridging between
//! eras, subscriptions and the admin tools. Protocol facts live in `proto/`.

pub mod aggregate;
pub mod arguments;
pub mod bridge;
pub mod dispatch;
pub mod fanout;
pub mod hub;
pub mod outbox;
pub mod registry;
pub mod replay;
pub mod server;
pub mod session;
pub mod subscriptions;
