//! JSON-RPC 2.0 as MCP uses it: borrowed parsing of the few fields routing needs, error codes, and
//! builders for the messages the gateway writes itself.
//!
//! The hot path never builds a JSON DOM: [`parse::Envelope`] borrows from the request bytes and
//! leaves `params` as raw JSON.

pub mod lines;
pub mod outcome;
pub mod parse;
pub mod scan;
pub mod splice;
pub mod sse;
mod stops;
pub mod tree;
pub mod valid;

use serde_json::value::RawValue;
use serde_json::Value;

/// JSON-RPC and MCP error codes.
pub mod code {
    /// Invalid JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// Not a valid JSON-RPC request object.
    pub const INVALID_REQUEST: i64 = -32600;
    /// Unknown method.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// Invalid parameters (also: unknown tool, prompt or resource in 2026-07-28).
    pub const INVALID_PARAMS: i64 = -32602;
    /// Gateway-internal failure.
    pub const INTERNAL_ERROR: i64 = -32603;
    /// Resource not found, as legacy (2025-xx) servers report it.
    pub const RESOURCE_NOT_FOUND_LEGACY: i64 = -32002;
    /// HTTP headers do not match the body, or required headers are missing (2026-07-28).
    pub const HEADER_MISMATCH: i64 = -32020;
    /// A capability the request needs was not declared by the client (2026-07-28).
    pub const MISSING_CLIENT_CAPABILITY: i64 = -32021;
    /// The requested protocol version is not supported (2026-07-28).
    pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
    /// Gateway-defined (implementation range): the provider cannot be reached or failed.
    pub const PROVIDER_UNAVAILABLE: i64 = -32010;
    /// Gateway-defined: the provider did not answer in time.
    pub const PROVIDER_TIMEOUT: i64 = -32011;
    /// Gateway-defined: the provider answered with something that is not MCP.
    pub const PROVIDER_PROTOCOL_ERROR: i64 = -32012;
    /// Gateway-defined: the group member holding a legacy session's upstream session went down;
    /// the session is over (HTTP 404) and the client must initialize a new one.
    pub const SESSION_LOST: i64 = -32013;
    /// Gateway-defined: a bound that protects the gateway (requests in flight, memory) refused the
    /// request; retrying later may succeed.
    pub const OVERLOADED: i64 = -32014;
    /// The caller may not use what it asked for (authorization).
    pub const FORBIDDEN: i64 = -32015;
    /// Gateway-defined: a rate limit refused the request (HTTP 429 with `Retry-After`).
    pub const RATE_LIMITED: i64 = -32016;
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    /// Error code.
    pub code: i64,
    /// Human-readable description.
    pub message: String,
    /// Optional structured detail.
    pub data: Option<Value>,
}

impl RpcError {
    /// An error with no `data`.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), data: None }
    }

    /// Adds `data`.
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    /// The error as a JSON object.
    pub fn to_value(&self) -> Value {
        let mut obj = serde_json::Map::with_capacity(3);
        obj.insert("code".into(), self.code.into());
        obj.insert("message".into(), self.message.clone().into());
        if let Some(d) = &self.data {
            obj.insert("data".into(), d.clone());
        }
        Value::Object(obj)
    }

    /// Reads an error object; anything malformed becomes an internal error describing it.
    pub fn from_value(v: &Value) -> Self {
        let code = v.get("code").and_then(Value::as_i64).unwrap_or(code::INTERNAL_ERROR);
        let message = v.get("message").and_then(Value::as_str).unwrap_or("error without a message").to_owned();
        Self { code, message, data: v.get("data").cloned() }
    }
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

/// The literal JSON `null`, for responses whose request id is unknown.
pub fn null_id() -> &'static RawValue {
    RawValue::NULL
}

/// Serialises a success response with the client's original id bytes.
pub fn result_bytes(id: &RawValue, result: &impl serde::Serialize) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    out.extend_from_slice(id.get().as_bytes());
    out.extend_from_slice(br#","result":"#);
    if serde_json::to_writer(&mut out, result).is_err() {
        out.extend_from_slice(b"{}");
    }
    out.push(b'}');
    out
}

/// Serialises an error response with the client's original id bytes.
pub fn error_bytes(id: &RawValue, error: &RpcError) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    out.extend_from_slice(id.get().as_bytes());
    out.extend_from_slice(br#","error":"#);
    if serde_json::to_writer(&mut out, &error.to_value()).is_err() {
        out.extend_from_slice(b"{}");
    }
    out.push(b'}');
    out
}

/// Serialises a notification.
pub fn notification_bytes(method: &str, params: &Value) -> Vec<u8> {
    let msg = serde_json::json!({"jsonrpc": "2.0", "method": method, "params": params});
    serde_json::to_vec(&msg).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_keep_the_id_bytes() {
        let id: &RawValue = serde_json::from_str(r#""abc""#).expect("raw");
        let bytes = result_bytes(id, &serde_json::json!({"x": 1}));
        assert_eq!(std::str::from_utf8(&bytes).expect("utf8"), r#"{"jsonrpc":"2.0","id":"abc","result":{"x":1}}"#);
        let e = error_bytes(null_id(), &RpcError::new(code::PARSE_ERROR, "bad"));
        assert_eq!(
            std::str::from_utf8(&e).expect("utf8"),
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"bad"}}"#
        );
    }
}
