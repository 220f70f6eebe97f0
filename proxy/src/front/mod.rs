//! Front doors: how clients reach the gateway (HTTP through Pingora, or stdio).

pub mod health;
pub mod http;
pub mod respond;
