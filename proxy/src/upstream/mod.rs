//! Upstream MCP servers ("providers") as the gateway talks to them: one [`Upstream`] trait, with
//! transports for streamable HTTP (both eras) and, in later modules, stdio and containers.

pub mod conn;
pub mod http;
pub mod list_cache;
pub mod mux;
pub mod process;
pub mod remote;
pub mod wire;

use std::sync::Arc;

use async_trait::async_trait;
use hangar_config::Secret;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::jsonrpc::{code, RpcError};
use crate::proto::protocol::{Era, MODERN_VERSION};

/// Which upstream session a call belongs to. Legacy clients get upstream sessions of their own
/// (server→client requests, log levels and subscriptions are per session); modern clients, which
/// have no sessions, share one per provider.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SessionKey {
    /// The provider-wide session used for modern clients and the gateway's own requests.
    Shared,
    /// The session of one legacy client session (its `Mcp-Session-Id` at the gateway).
    Client(Arc<str>),
}

/// Who a call is made for: what the gateway declares upstream on the caller's behalf.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The upstream session to use.
    pub session: SessionKey,
    /// Client capabilities (declared in `initialize` or in `_meta`).
    pub capabilities: Value,
    /// Client identity.
    pub client_info: Value,
    /// Log level the client asked for, if any.
    pub log_level: Option<String>,
    /// The client's `Authorization` header, for providers that forward it
    /// (`forward_client_token`); `None` for the gateway's own requests.
    pub credential: Option<Secret>,
    /// Who a modern caller is (its principal): upstream sessions leased to its calls are reused
    /// for its calls only, since a legacy server may keep what one client told it (roots, the log
    /// level) in the session. `None` for legacy sessions and the gateway itself.
    pub owner: Option<Arc<str>>,
}

impl Caller {
    /// The gateway itself (list fan-out, probes, health checks).
    pub fn gateway() -> Self {
        Self {
            session: SessionKey::Shared,
            capabilities: gateway_capabilities(),
            client_info: serde_json::json!({"name": "mcp-hangar", "version": env!("CARGO_PKG_VERSION")}),
            log_level: None,
            credential: None,
            owner: None,
        }
    }

    /// The credential an upstream session opened for this caller keeps (for its `initialize`,
    /// GET stream and the messages the gateway sends on it by itself): a legacy client's own.
    /// The shared session serves many clients, so it keeps none.
    pub fn session_credential(&self) -> Option<Secret> {
        match self.session {
            SessionKey::Client(_) => self.credential.clone(),
            SessionKey::Shared => None,
        }
    }
}

/// Capabilities the gateway declares upstream on the shared session: everything it can bridge.
pub fn gateway_capabilities() -> Value {
    serde_json::json!({
        "roots": {"listChanged": true},
        "sampling": {},
        "elicitation": {"form": {}, "url": {}},
    })
}

/// A message an upstream sent while answering a call, to be relayed to the caller.
#[derive(Debug)]
pub enum CallEvent {
    /// A notification (progress, log message, …): the whole JSON-RPC object.
    Notification(Value),
    /// A server→client request (sampling, elicitation, roots) awaiting the caller's answer.
    Request(ServerRequest),
}

/// A server→client request and the way to answer it.
#[derive(Debug)]
pub struct ServerRequest {
    /// Method, e.g. `elicitation/create`.
    pub method: String,
    /// Its params.
    pub params: Value,
    /// Where the answer goes: a result, or an error.
    pub respond: oneshot::Sender<Result<Value, RpcError>>,
}

/// Where the caller wants relayed messages; `None` when it cannot take any.
pub type Events = Option<mpsc::Sender<CallEvent>>;

/// Receives what upstreams send outside of any call: list changes, resource updates, messages on
/// legacy GET streams.
pub trait Unsolicited: Send + Sync {
    /// A notification from `provider` on `session`.
    fn notification(&self, provider: &str, session: &SessionKey, message: Value);
    /// A server→client request from `provider` on `session`.
    fn request(&self, provider: &str, session: &SessionKey, request: ServerRequest);
}

/// Discards unsolicited messages (tests, or before a hub is wired).
pub struct Discard;

impl Unsolicited for Discard {
    fn notification(&self, _: &str, _: &SessionKey, _: Value) {}
    fn request(&self, _: &str, _: &SessionKey, request: ServerRequest) {
        let _ = request.respond.send(Err(RpcError::new(code::METHOD_NOT_FOUND, "no client to ask")));
    }
}

/// What is known about an upstream once it has answered `server/discover` or `initialize`.
#[derive(Debug, Clone)]
pub struct UpstreamInfo {
    /// Its era.
    pub era: Era,
    /// The protocol version in use with it.
    pub version: String,
    /// Its declared capabilities.
    pub capabilities: Value,
    /// Its `serverInfo`.
    pub server_info: Value,
    /// Its `instructions`, if any.
    pub instructions: Option<String>,
}

impl UpstreamInfo {
    /// What a `server/discover` result says, when it lists the 2026-07-28 protocol (`None`: the
    /// upstream is to be spoken to in the legacy era).
    pub fn from_discover(result: &Value) -> Option<Self> {
        let versions = result.get("supportedVersions").and_then(Value::as_array)?;
        if !versions.iter().any(|s| s.as_str() == Some(MODERN_VERSION)) {
            return None;
        }
        Some(Self {
            era: Era::Modern,
            version: MODERN_VERSION.to_owned(),
            capabilities: result.get("capabilities").cloned().unwrap_or_else(|| serde_json::json!({})),
            server_info: result.pointer("/_meta/io.modelcontextprotocol~1serverInfo").cloned().unwrap_or(Value::Null),
            instructions: result.get("instructions").and_then(Value::as_str).map(str::to_owned),
        })
    }
}

/// Why a call to an upstream failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The upstream answered with a JSON-RPC error: pass it on.
    #[error("{0}")]
    Rpc(RpcError),
    /// The upstream could not be reached or failed at the transport level.
    #[error("provider unavailable: {reason}")]
    Unavailable {
        /// What happened.
        reason: String,
        /// The request certainly did not reach the upstream (safe to retry elsewhere).
        never_sent: bool,
    },
    /// No answer in time.
    #[error("provider timed out: {0}")]
    Timeout(String),
    /// The upstream answered with something that is not MCP.
    #[error("provider protocol error: {0}")]
    Protocol(String),
    /// The gateway did not send the request, or did not take the reply, for a reason of its own
    /// (a value the client sent cannot be a header; the memory budget is spent): it says nothing
    /// about the provider. Carries the error for the client.
    #[error("{0}")]
    Rejected(RpcError),
}

impl CallError {
    /// What the failure says about the provider's health: `None` for a JSON-RPC error (a healthy
    /// provider answering no), the reason otherwise.
    pub fn health_failure(&self) -> Option<String> {
        match self {
            Self::Rpc(_) | Self::Rejected(_) => None,
            other => Some(other.to_string()),
        }
    }

    /// The JSON-RPC error to give the client, naming the provider.
    pub fn to_rpc(&self, provider: &str) -> RpcError {
        match self {
            Self::Rpc(e) => e.clone(),
            Self::Unavailable { reason, .. } => {
                RpcError::new(code::PROVIDER_UNAVAILABLE, format!("provider {provider:?} is unavailable: {reason}"))
            }
            Self::Timeout(reason) => {
                RpcError::new(code::PROVIDER_TIMEOUT, format!("provider {provider:?} timed out: {reason}"))
            }
            Self::Protocol(reason) => RpcError::new(
                code::PROVIDER_PROTOCOL_ERROR,
                format!("provider {provider:?} sent an invalid response: {reason}"),
            ),
            Self::Rejected(e) => e.clone(),
        }
    }
}

impl From<http::HttpError> for CallError {
    fn from(e: http::HttpError) -> Self {
        match e {
            http::HttpError::Timeout { .. } | http::HttpError::Deadline { .. } => Self::Timeout(e.to_string()),
            http::HttpError::TooLarge { .. } => Self::Protocol(e.to_string()),
            http::HttpError::Unbuildable { reason } => {
                Self::Rejected(RpcError::new(code::INVALID_PARAMS, format!("the request cannot be sent: {reason}")))
            }
            http::HttpError::Overloaded(e) => Self::Rejected(RpcError::new(code::OVERLOADED, e.to_string())),
            other => Self::Unavailable { never_sent: other.never_sent(), reason: other.to_string() },
        }
    }
}

/// The error for a call that reaches an instance a reload replaced or removed: nothing was sent,
/// so it may be retried (on the provider's new instance, or another group member).
pub fn retired_error() -> CallError {
    CallError::Unavailable {
        reason: "the provider was replaced or removed by a configuration reload".into(),
        never_sent: true,
    }
}

/// Counts a call's outcome toward the provider's health: a result, or a JSON-RPC error (a healthy
/// provider saying no), is a success; a request rejected before it was sent counts as nothing,
/// since the provider never saw it; anything else is a failure.
pub fn record_outcome(lifecycle: &crate::lifecycle::Lifecycle, error: Option<&CallError>) {
    match error {
        Some(CallError::Rejected(_)) => {}
        Some(e) => lifecycle.record(e.health_failure().as_deref()),
        None => lifecycle.record(None),
    }
}

/// One upstream MCP server, whatever its transport.
#[async_trait]
pub trait Upstream: Send + Sync {
    /// Sends a request and returns its `result`. Messages the upstream sends meanwhile go to
    /// `events`. Dropping the future cancels the request upstream.
    async fn call(&self, method: &str, params: Value, caller: &Caller, events: Events) -> Result<Value, CallError>;

    /// Sends a notification.
    async fn notify(&self, method: &str, params: Value, caller: &Caller) -> Result<(), CallError>;

    /// Ends the upstream session of a legacy client session, if there is one.
    async fn close_session(&self, session: &SessionKey);

    /// What is known about the upstream (after its first exchange).
    fn info(&self) -> Option<Arc<UpstreamInfo>>;

    /// Learns the upstream's era and capabilities now, if not yet known.
    async fn probe(&self) -> Result<Arc<UpstreamInfo>, CallError>;

    /// Keeps a change-notification channel open to the upstream: its list changes, and updates
    /// of exactly the resources in `uris`, reach the unsolicited sink. Idempotent; a new set of
    /// URIs replaces the previous one.
    async fn watch(&self, uris: Vec<String>) -> Result<(), CallError>;

    /// Releases what the upstream holds (processes, containers, sessions): the provider goes back
    /// to COLD. `cause` is `Stopped` (shutdown, `registry_stop`) or `IdleCollected`; an idle
    /// collection is skipped when a call began meanwhile.
    async fn stop(&self, cause: crate::lifecycle::Cause);

    /// A cheap liveness check (`server/discover` or `ping`), starting the provider if it is cold.
    /// The outcome is not recorded: the caller (the health service) does that.
    async fn check(&self) -> Result<(), CallError>;
}

/// Removes the 2026-07-28 per-request envelope (`_meta` protocol version, client capabilities and
/// info, log level) from params bound for a legacy upstream: legacy servers negotiated those in
/// `initialize`, and some reject requests that carry them. Other `_meta` keys (progress tokens,
/// trace context) stay.
pub fn without_modern_meta(mut params: Value) -> Value {
    use crate::proto::protocol::meta;
    if let Some(obj) = params.as_object_mut() {
        meta::strip_modern(obj, meta::ENVELOPE);
    }
    params
}

/// The `subscriptions/listen` params asking an upstream for every list change and `uris`.
pub fn listen_params(uris: &[String]) -> Value {
    serde_json::json!({"notifications": {
        "toolsListChanged": true,
        "promptsListChanged": true,
        "resourcesListChanged": true,
        "resourceSubscriptions": uris,
    }})
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::UpstreamInfo;
    use crate::proto::protocol::Era;

    #[test]
    fn discover_results_tell_modern_upstreams_apart() {
        let modern = json!({
            "supportedVersions": ["2025-11-25", "2026-07-28"],
            "capabilities": {"tools": {}},
            "instructions": "be nice",
            "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "s", "version": "1"}},
        });
        let info = UpstreamInfo::from_discover(&modern).expect("modern");
        assert_eq!(info.era, Era::Modern);
        assert_eq!(info.version, "2026-07-28");
        assert_eq!(info.capabilities, json!({"tools": {}}));
        assert_eq!(info.server_info["name"], "s");
        assert_eq!(info.instructions.as_deref(), Some("be nice"));
        assert!(UpstreamInfo::from_discover(&json!({"supportedVersions": ["2025-11-25"]})).is_none());
        assert!(UpstreamInfo::from_discover(&json!({})).is_none());
        let bare = UpstreamInfo::from_discover(&json!({"supportedVersions": ["2026-07-28"]})).expect("modern");
        assert_eq!((bare.capabilities, bare.server_info, bare.instructions), (json!({}), json!(null), None));
    }
}
