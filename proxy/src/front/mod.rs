//! Front doors: how clients reach the gateway (HTTP through Pingora, or stdio).

pub mod body;
pub mod checks;
pub mod connection;
pub mod cors;
pub mod detached;
pub mod express;
pub mod fast;
pub mod health;
pub mod http;
pub mod mcp;
pub mod plain;
pub mod replier;
pub mod reply;
pub mod request_head;
pub mod respond;
pub mod rewind;
pub mod stdio;
pub mod tls;
