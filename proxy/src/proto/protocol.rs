//! Protocol versions, eras and method classes: the facts about MCP the rest of the gateway asks.

/// The stateless revision this gateway serves (and prefers upstream).
pub const MODERN_VERSION: &str = "2026-07-28";

/// Legacy (initialize-handshake) revisions accepted from clients, newest first.
pub const LEGACY_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// Every version the gateway supports, newest first, as listed in `UnsupportedProtocolVersion`.
pub const SUPPORTED_VERSIONS: &[&str] = &["2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// The version a legacy request without `MCP-Protocol-Version` is taken to speak (per the spec).
pub const HEADERLESS_LEGACY_VERSION: &str = "2025-03-26";

/// `_meta` keys defined by the 2026-07-28 revision.
pub mod meta {
    /// What every key below starts with: the namespace the revision reserves in `_meta`.
    pub const NAMESPACE: &str = "io.modelcontextprotocol/";
    /// Protocol version of a request.
    pub const PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
    /// Client identity.
    pub const CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
    /// Client capabilities for a request.
    pub const CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
    /// Per-request log level opt-in.
    pub const LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
    /// Subscription id on `subscriptions/listen` streams.
    pub const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";
    /// Server identity on results.
    pub const SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";

    /// The per-request envelope a modern client sends (legacy peers negotiate it in `initialize`).
    pub const ENVELOPE: &[&str] = &[PROTOCOL_VERSION, CLIENT_CAPABILITIES, CLIENT_INFO, LOG_LEVEL];
    /// Every key above: what a legacy peer never sees.
    pub const MODERN_ONLY: &[&str] =
        &[PROTOCOL_VERSION, CLIENT_CAPABILITIES, CLIENT_INFO, LOG_LEVEL, SUBSCRIPTION_ID, SERVER_INFO];

    /// Removes `keys` from the `_meta` of a request's params or a result (and `_meta` itself
    /// when they were all it held); other `_meta` keys (progress tokens, trace context) stay,
    /// and so does a `_meta` that came empty, as the byte splice of a reply leaves it.
    pub fn strip_modern(obj: &mut serde_json::Map<String, serde_json::Value>, keys: &[&str]) {
        let Some(m) = obj.get_mut("_meta").and_then(serde_json::Value::as_object_mut) else { return };
        let mut removed = false;
        for key in keys {
            removed |= m.remove(*key).is_some();
        }
        if removed && m.is_empty() {
            obj.remove("_meta");
        }
    }
}

/// Which generation of the protocol a peer speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Era {
    /// 2026-07-28 and later: stateless, per-request `_meta`.
    Modern,
    /// 2025-11-25 and earlier: `initialize`, sessions.
    Legacy,
}

impl Era {
    /// The name used in metrics and traces.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Modern => "modern",
            Self::Legacy => "legacy",
        }
    }
}

/// The era of a protocol version string, `None` when unknown.
pub fn era_of(version: &str) -> Option<Era> {
    if version == MODERN_VERSION {
        Some(Era::Modern)
    } else if LEGACY_VERSIONS.contains(&version) {
        Some(Era::Legacy)
    } else {
        None
    }
}

/// Methods that may answer with an MRTR `input_required` result.
pub fn supports_input_required(method: &str) -> bool {
    matches!(method, "tools/call" | "prompts/get" | "resources/read")
}

/// The request field `Mcp-Name` mirrors for `method`, if it needs one.
pub fn name_field(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripping_drops_a_meta_it_emptied_and_keeps_one_that_came_empty() {
        let strip = |v: serde_json::Value| {
            let mut obj = v.as_object().cloned().expect("object");
            meta::strip_modern(&mut obj, meta::MODERN_ONLY);
            serde_json::Value::Object(obj)
        };
        let modern = serde_json::json!({"x": 1, "_meta": {"io.modelcontextprotocol/serverInfo": {}}});
        assert_eq!(strip(modern), serde_json::json!({"x": 1}));
        let mixed = serde_json::json!({"_meta": {"io.modelcontextprotocol/serverInfo": {}, "progressToken": 1}});
        assert_eq!(strip(mixed), serde_json::json!({"_meta": {"progressToken": 1}}));
        // As the byte splice of a legacy reply leaves it: the two paths answer alike.
        let empty = serde_json::json!({"x": 1, "_meta": {}});
        assert_eq!(strip(empty.clone()), empty);
    }

    #[test]
    fn eras() {
        assert_eq!(era_of("2026-07-28"), Some(Era::Modern));
        assert_eq!(era_of("2025-06-18"), Some(Era::Legacy));
        assert_eq!(era_of("1900-01-01"), None);
        assert!(SUPPORTED_VERSIONS.iter().all(|v| era_of(v).is_some()));
    }
}
