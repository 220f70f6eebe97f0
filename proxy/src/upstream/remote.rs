//! Streamable-HTTP upstreams (`mode: remote`) of either era.
//!
//! The era is learnt once, on first use: a `server/discover` that succeeds marks a modern
//! (stateless) upstream; anything else a legacy one, whose sessions are opened lazily per
//! [`SessionKey`] with `initialize` and opened again, transparently, when the upstream forgets
//! them (HTTP 404). Replies may be JSON or SSE; messages on an SSE reply before the response
//! (progress, logs, server→client requests) are relayed to the caller.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use bytes::Bytes;
use http::HeaderName;
use serde_json::{json, Value};
use tokio::sync::{oneshot, OnceCell};

use super::http::{Endpoint, HttpClient, Request, Response, Timeouts};
use super::{CallError, CallEvent, Caller, Events, ServerRequest, SessionKey, Unsolicited, Upstream, UpstreamInfo};
use crate::jsonrpc::sse;
use crate::jsonrpc::{code, RpcError};
use crate::mcp::headers::encode_header_value;
use crate::mcp::protocol::{self, meta, Era, LEGACY_VERSIONS, MODERN_VERSION};

/// Largest SSE event accepted from an upstream, whatever the body limit.
const MAX_EVENT_BYTES: usize = 16 << 20;
/// Most times one reply stream is resumed after the server closed it early.
const MAX_RESUMPTIONS: usize = 16;
/// Longest reconnection delay honoured from an SSE `retry` field.
const MAX_RETRY_MS: u64 = 30_000;
/// How long opening a legacy session waits for its GET stream to be established.
const GET_STREAM_WAIT: Duration = Duration::from_secs(2);
/// Largest error body read to explain a failure.
const MAX_ERROR_BODY: usize = 64 << 10;

/// Settings of one remote upstream.
pub struct RemoteSettings {
    /// Provider name (for messages and metrics).
    pub name: Arc<str>,
    /// The MCP endpoint URL.
    pub url: String,
    /// Headers sent with every request (credentials, usually).
    pub headers: Vec<(HeaderName, String)>,
    /// Time bounds.
    pub timeouts: Timeouts,
    /// Largest reply body accepted.
    pub max_body: usize,
}

/// A streamable-HTTP upstream.
pub struct Remote {
    inner: Arc<Inner>,
}

struct Inner {
    name: Arc<str>,
    endpoint: Endpoint,
    headers: Vec<(HeaderName, String)>,
    client: Arc<HttpClient>,
    timeouts: Timeouts,
    max_body: usize,
    era: ArcSwapOption<Era>,
    probe_lock: tokio::sync::Mutex<()>,
    sessions: std::sync::Mutex<HashMap<SessionKey, Arc<OnceCell<Arc<LegacySession>>>>>,
    next_id: AtomicU64,
    sink: Arc<dyn Unsolicited>,
    info: ArcSwapOption<UpstreamInfo>,
    watching: tokio::sync::Mutex<Watching>,
}

/// What the gateway is watching on this upstream.
#[derive(Default)]
struct Watching {
    uris: Option<Vec<String>>,
    /// The listen stream (modern upstreams).
    task: Option<tokio::task::AbortHandle>,
}

impl Drop for Watching {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// One upstream session of a legacy server.
struct LegacySession {
    key: SessionKey,
    /// `Mcp-Session-Id` the server issued (servers may issue none).
    id: Option<String>,
    /// Negotiated protocol version.
    version: String,
    get_stream: std::sync::Mutex<Option<tokio::task::AbortHandle>>,
}

impl Drop for LegacySession {
    fn drop(&mut self) {
        if let Some(h) = self.get_stream.lock().ok().and_then(|mut g| g.take()) {
            h.abort();
        }
    }
}

/// How one exchange ended, before mapping to [`CallError`].
enum Exchange {
    /// The upstream no longer knows the session: open a new one and retry.
    Expired,
    Failed(CallError),
}

impl From<CallError> for Exchange {
    fn from(e: CallError) -> Self {
        Self::Failed(e)
    }
}

impl Remote {
    /// A remote upstream; nothing is sent until the first call.
    pub fn new(
        settings: RemoteSettings,
        client: Arc<HttpClient>,
        sink: Arc<dyn Unsolicited>,
    ) -> Result<Self, super::http::HttpError> {
        let endpoint = Endpoint::parse(&settings.url)?;
        Ok(Self {
            inner: Arc::new(Inner {
                name: settings.name,
                endpoint,
                headers: settings.headers,
                client,
                timeouts: settings.timeouts,
                max_body: settings.max_body,
                era: ArcSwapOption::empty(),
                probe_lock: tokio::sync::Mutex::new(()),
                sessions: std::sync::Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
                sink,
                info: ArcSwapOption::empty(),
                watching: tokio::sync::Mutex::new(Watching::default()),
            }),
        })
    }

    /// The era, once known (the fast path only proxies to known-modern upstreams).
    pub fn known_era(&self) -> Option<Era> {
        self.inner.era.load().as_deref().copied()
    }

    /// The endpoint (for the proxying fast path).
    pub fn endpoint(&self) -> &Endpoint {
        &self.inner.endpoint
    }

    /// The configured headers (for the proxying fast path).
    pub fn configured_headers(&self) -> &[(HeaderName, String)] {
        &self.inner.headers
    }
}

#[async_trait]
impl Upstream for Remote {
    async fn call(&self, method: &str, params: Value, caller: &Caller, events: Events) -> Result<Value, CallError> {
        let inner = &self.inner;
        let era = inner.era().await?;
        let name_header =
            protocol::name_field(method).and_then(|f| params.get(f)).and_then(Value::as_str).map(str::to_owned);
        let params = if era == Era::Modern { with_modern_meta(params, caller) } else { params };
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        let body = message_bytes(Some(id), method, &params);
        if era == Era::Modern {
            return match inner.request(None, id, method, name_header.as_deref(), body, &events).await {
                Ok(v) => Ok(v),
                Err(Exchange::Failed(e)) => Err(e),
                Err(Exchange::Expired) => Err(CallError::Protocol("404 from a stateless upstream".into())),
            };
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let session = inner.session(caller).await?;
            match inner.request(Some(&session), id, method, None, body.clone(), &events).await {
                Ok(v) => return Ok(v),
                Err(Exchange::Expired) if attempt == 1 => {
                    tracing::info!(provider = %inner.name, "upstream session expired; opening a new one");
                    inner.forget_session(&session);
                }
                Err(Exchange::Expired) => return Err(CallError::Protocol("upstream rejected a fresh session".into())),
                Err(Exchange::Failed(e)) => return Err(e),
            }
        }
    }

    async fn notify(&self, method: &str, params: Value, caller: &Caller) -> Result<(), CallError> {
        let inner = &self.inner;
        let era = inner.era().await?;
        let body = message_bytes(None, method, &params);
        let session = match era {
            Era::Modern => None,
            Era::Legacy => match inner.existing_session(&caller.session) {
                Some(s) => Some(s),
                None => return Ok(()),
            },
        };
        let resp = inner.post(session.as_deref(), method, None, body).await?;
        resp.release().await;
        Ok(())
    }

    async fn close_session(&self, key: &SessionKey) {
        let inner = &self.inner;
        let cell = inner.sessions.lock().ok().and_then(|mut m| m.remove(key));
        let Some(session) = cell.and_then(|c| c.get().cloned()) else { return };
        let Some(id) = &session.id else { return };
        let req = Request {
            method: "DELETE",
            headers: vec![
                (HeaderName::from_static("mcp-session-id"), id.as_str().into()),
                (HeaderName::from_static("mcp-protocol-version"), session.version.as_str().into()),
            ]
            .into_iter()
            .chain(inner.configured())
            .collect(),
            body: Bytes::new(),
        };
        match inner.client.send(&inner.endpoint, &req, &inner.timeouts).await {
            Ok(resp) => resp.release().await,
            Err(e) => tracing::debug!(provider = %inner.name, "closing upstream session failed: {e}"),
        }
    }

    fn info(&self) -> Option<Arc<UpstreamInfo>> {
        self.inner.info.load_full()
    }

    async fn watch(&self, uris: Vec<String>) -> Result<(), CallError> {
        let inner = &self.inner;
        let era = inner.era().await?;
        let mut watching = inner.watching.lock().await;
        let alive = watching.task.as_ref().is_none_or(|t| !t.is_finished());
        if watching.uris.as_ref() == Some(&uris) && alive {
            return Ok(());
        }
        match era {
            Era::Modern => {
                if let Some(t) = watching.task.take() {
                    t.abort();
                }
                watching.task = Some(tokio::spawn(listen_stream(inner.clone(), uris.clone())).abort_handle());
            }
            Era::Legacy => {
                // The shared session's GET stream carries list changes; resource updates need a
                // subscription per URI on that session.
                let caller = Caller::gateway();
                let before = watching.uris.clone().unwrap_or_default();
                for uri in uris.iter().filter(|u| !before.contains(u)) {
                    self.call("resources/subscribe", json!({"uri": uri}), &caller, None).await?;
                }
                for uri in before.iter().filter(|u| !uris.contains(u)) {
                    let _ = self.call("resources/unsubscribe", json!({"uri": uri}), &caller, None).await;
                }
                if uris.is_empty() {
                    inner.session(&caller).await?;
                }
            }
        }
        watching.uris = Some(uris);
        Ok(())
    }

    async fn probe(&self) -> Result<Arc<UpstreamInfo>, CallError> {
        let inner = &self.inner;
        if let Some(info) = inner.info.load_full() {
            return Ok(info);
        }
        if inner.era().await? == Era::Legacy {
            inner.session(&Caller::gateway()).await?;
        }
        inner.info.load_full().ok_or_else(|| CallError::Protocol("upstream did not describe itself".into()))
    }
}

impl Inner {
    fn configured(&self) -> impl Iterator<Item = (HeaderName, std::borrow::Cow<'_, str>)> {
        self.headers.iter().map(|(n, v)| (n.clone(), std::borrow::Cow::Borrowed(v.as_str())))
    }

    /// The upstream's era, probing once (concurrent first calls share one probe).
    async fn era(self: &Arc<Self>) -> Result<Era, CallError> {
        if let Some(e) = self.era.load().as_deref() {
            return Ok(*e);
        }
        let _guard = self.probe_lock.lock().await;
        if let Some(e) = self.era.load().as_deref() {
            return Ok(*e);
        }
        let era = self.detect().await?;
        tracing::info!(provider = %self.name, era = ?era, "upstream protocol era detected");
        self.era.store(Some(Arc::new(era)));
        Ok(era)
    }

    async fn detect(self: &Arc<Self>) -> Result<Era, CallError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let params = with_modern_meta(json!({}), &Caller::gateway());
        let body = message_bytes(Some(id), "server/discover", &params);
        let resp = self.post(None, "server/discover", None, body).await?;
        if !(200..300).contains(&resp.status) {
            resp.release().await;
            return Ok(Era::Legacy);
        }
        match self.read_reply(resp, id, None, &None).await {
            Ok(result) => {
                let modern = result
                    .get("supportedVersions")
                    .and_then(Value::as_array)
                    .is_some_and(|v| v.iter().any(|s| s.as_str() == Some(MODERN_VERSION)));
                if modern {
                    self.info.store(Some(Arc::new(UpstreamInfo {
                        era: Era::Modern,
                        version: MODERN_VERSION.to_owned(),
                        capabilities: result.get("capabilities").cloned().unwrap_or_else(|| json!({})),
                        server_info: result
                            .pointer("/_meta/io.modelcontextprotocol~1serverInfo")
                            .cloned()
                            .unwrap_or(Value::Null),
                        instructions: result.get("instructions").and_then(Value::as_str).map(str::to_owned),
                    })));
                    Ok(Era::Modern)
                } else {
                    Ok(Era::Legacy)
                }
            }
            Err(Exchange::Failed(CallError::Unavailable { reason, never_sent: true })) => {
                Err(CallError::Unavailable { reason, never_sent: true })
            }
            Err(_) => Ok(Era::Legacy),
        }
    }

    fn existing_session(&self, key: &SessionKey) -> Option<Arc<LegacySession>> {
        self.sessions.lock().ok()?.get(key)?.get().cloned()
    }

    /// The legacy session for `caller`, opening it on first use.
    async fn session(self: &Arc<Self>, caller: &Caller) -> Result<Arc<LegacySession>, CallError> {
        let cell = {
            let mut map = self.sessions.lock().map_err(|_| CallError::Protocol("session table poisoned".into()))?;
            map.entry(caller.session.clone()).or_default().clone()
        };
        cell.get_or_try_init(|| self.initialize(caller)).await.cloned()
    }

    fn forget_session(&self, session: &Arc<LegacySession>) {
        if let Ok(mut map) = self.sessions.lock() {
            if map.get(&session.key).and_then(|c| c.get()).is_some_and(|s| Arc::ptr_eq(s, session)) {
                map.remove(&session.key);
            }
        }
    }

    async fn initialize(self: &Arc<Self>, caller: &Caller) -> Result<Arc<LegacySession>, CallError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let params = json!({
            "protocolVersion": LEGACY_VERSIONS[0],
            "capabilities": caller.capabilities,
            "clientInfo": caller.client_info,
        });
        let resp = self.post(None, "initialize", None, message_bytes(Some(id), "initialize", &params)).await?;
        let session_id = resp.header("mcp-session-id").map(str::to_owned);
        let result = match self.read_reply(resp, id, None, &None).await {
            Ok(r) => r,
            Err(Exchange::Failed(e)) => return Err(e),
            Err(Exchange::Expired) => return Err(CallError::Protocol("initialize answered 404".into())),
        };
        let version = result.get("protocolVersion").and_then(Value::as_str).unwrap_or_default().to_owned();
        if protocol::era_of(&version) != Some(Era::Legacy) {
            return Err(CallError::Protocol(format!("upstream chose unsupported protocol version {version:?}")));
        }
        self.info.store(Some(Arc::new(UpstreamInfo {
            era: Era::Legacy,
            version: version.clone(),
            capabilities: result.get("capabilities").cloned().unwrap_or_else(|| json!({})),
            server_info: result.get("serverInfo").cloned().unwrap_or(Value::Null),
            instructions: result.get("instructions").and_then(Value::as_str).map(str::to_owned),
        })));
        let session = Arc::new(LegacySession {
            key: caller.session.clone(),
            id: session_id,
            version,
            get_stream: std::sync::Mutex::new(None),
        });
        let initialized = message_bytes(None, "notifications/initialized", &json!({}));
        match self.post(Some(&session), "notifications/initialized", None, initialized).await {
            Ok(resp) => resp.release().await,
            Err(e) => tracing::warn!(provider = %self.name, "notifications/initialized failed: {e}"),
        }
        if session.id.is_some() {
            // Wait (briefly) for the GET stream: servers send requests not tied to a call there,
            // and one sent before the stream is open is lost.
            let (opened, is_open) = oneshot::channel();
            let task = tokio::spawn(get_stream(self.clone(), Arc::downgrade(&session), opened));
            if let Ok(mut g) = session.get_stream.lock() {
                *g = Some(task.abort_handle());
            }
            let _ = tokio::time::timeout(GET_STREAM_WAIT, is_open).await;
        }
        tracing::debug!(provider = %self.name, session = ?session.key, "upstream session opened");
        Ok(session)
    }

    /// POSTs one message.
    async fn post(
        &self,
        session: Option<&LegacySession>,
        method: &str,
        name: Option<&str>,
        body: Bytes,
    ) -> Result<Response, CallError> {
        let mut headers: Vec<(HeaderName, std::borrow::Cow<'_, str>)> = Vec::with_capacity(6 + self.headers.len());
        headers.push((http::header::CONTENT_TYPE, "application/json".into()));
        headers.push((http::header::ACCEPT, "application/json, text/event-stream".into()));
        match session {
            None if method != "initialize" => {
                headers.push((HeaderName::from_static("mcp-protocol-version"), MODERN_VERSION.into()));
                headers.push((HeaderName::from_static("mcp-method"), method.to_owned().into()));
                if let Some(n) = name {
                    headers.push((HeaderName::from_static("mcp-name"), encode_header_value(n).into_owned().into()));
                }
            }
            None => {}
            Some(s) => {
                headers.push((HeaderName::from_static("mcp-protocol-version"), s.version.clone().into()));
                if let Some(id) = &s.id {
                    headers.push((HeaderName::from_static("mcp-session-id"), id.clone().into()));
                }
            }
        }
        headers.extend(self.configured());
        let req = Request { method: "POST", headers, body };
        Ok(self.client.send(&self.endpoint, &req, &self.timeouts).await?)
    }

    /// Sends a request and reads its reply.
    async fn request(
        self: &Arc<Self>,
        session: Option<&Arc<LegacySession>>,
        id: u64,
        method: &str,
        name: Option<&str>,
        body: Bytes,
        events: &Events,
    ) -> Result<Value, Exchange> {
        let resp = self.post(session.map(|s| s.as_ref()), method, name, body).await?;
        let guard = CancelOnDrop { inner: self.clone(), session: session.cloned(), id, armed: true };
        let out = self.read_reply(resp, id, session, events).await;
        guard.disarm();
        out
    }

    /// Reads the reply to request `id`: a JSON body, or an SSE stream whose other messages are
    /// relayed.
    async fn read_reply(
        self: &Arc<Self>,
        mut resp: Response,
        id: u64,
        session: Option<&Arc<LegacySession>>,
        events: &Events,
    ) -> Result<Value, Exchange> {
        if resp.status == 404 && session.is_some_and(|s| s.id.is_some()) {
            resp.release().await;
            return Err(Exchange::Expired);
        }
        if !(200..300).contains(&resp.status) {
            return Err(self.status_error(resp).await.into());
        }
        if resp.status == 202 {
            resp.release().await;
            return Err(CallError::Protocol("request accepted without an answer (HTTP 202)".into()).into());
        }
        if !resp.is_event_stream() {
            let body = resp.body(self.max_body).await.map_err(CallError::from)?;
            let msg: Value =
                serde_json::from_slice(&body).map_err(|e| CallError::Protocol(format!("invalid JSON reply: {e}")))?;
            return response_result(&msg, id)
                .ok_or_else(|| CallError::Protocol("reply is not the response to the request".into()))?
                .map_err(Into::into);
        }
        let mut decoder = sse::Decoder::new(MAX_EVENT_BYTES.min(self.max_body.max(1 << 20)));
        let mut last_event_id: Option<String> = None;
        let mut retry = Duration::from_millis(0);
        let mut resumptions = 0;
        loop {
            let chunk = match resp.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) | Err(_) if last_event_id.is_some() && session.is_some() && resumptions < MAX_RESUMPTIONS => {
                    // The server closed the stream before answering (SEP-1699 polling, or a
                    // dropped connection): resume it from the last event it sent.
                    resumptions += 1;
                    tokio::time::sleep(retry).await;
                    resp = self.resume(session, last_event_id.as_deref().unwrap_or_default()).await?;
                    decoder = sse::Decoder::new(MAX_EVENT_BYTES.min(self.max_body.max(1 << 20)));
                    continue;
                }
                Ok(None) => return Err(CallError::Protocol("stream ended before the response".into()).into()),
                Err(e) => return Err(CallError::from(e).into()),
            };
            let evs = decoder.feed(&chunk).map_err(|e| CallError::Protocol(e.to_string()))?;
            for ev in &evs {
                if let Some(id) = &ev.id {
                    last_event_id = Some(id.clone());
                }
                if let Some(ms) = ev.retry {
                    retry = Duration::from_millis(ms.min(MAX_RETRY_MS));
                }
            }
            for ev in evs.into_iter().filter(|e| e.is_message() && !e.data.is_empty()) {
                let Ok(msg) = serde_json::from_str::<Value>(&ev.data) else {
                    tracing::debug!(provider = %self.name, "ignoring a non-JSON SSE event");
                    continue;
                };
                if let Some(result) = response_result(&msg, id) {
                    drain_and_release(resp).await;
                    return result.map_err(Into::into);
                }
                self.relay(msg, session, events).await;
            }
        }
    }

    /// Reopens a closed SSE reply with `GET` and `Last-Event-ID` (legacy resumability).
    async fn resume(&self, session: Option<&Arc<LegacySession>>, last_event_id: &str) -> Result<Response, Exchange> {
        let mut headers: Vec<(HeaderName, std::borrow::Cow<'_, str>)> = vec![
            (http::header::ACCEPT, "text/event-stream".into()),
            (HeaderName::from_static("last-event-id"), last_event_id.into()),
        ];
        if let Some(s) = session {
            headers.push((HeaderName::from_static("mcp-protocol-version"), s.version.clone().into()));
            if let Some(id) = &s.id {
                headers.push((HeaderName::from_static("mcp-session-id"), id.clone().into()));
            }
        }
        headers.extend(self.configured());
        let req = Request { method: "GET", headers, body: Bytes::new() };
        let resp = self.client.send(&self.endpoint, &req, &self.timeouts).await.map_err(CallError::from)?;
        if resp.status == 404 && session.is_some() {
            resp.release().await;
            return Err(Exchange::Expired);
        }
        if resp.status != 200 || !resp.is_event_stream() {
            return Err(self.status_error(resp).await.into());
        }
        Ok(resp)
    }

    /// Passes a message that is not the awaited response to the caller (or the unsolicited sink).
    async fn relay(self: &Arc<Self>, msg: Value, session: Option<&Arc<LegacySession>>, events: &Events) {
        let is_request = msg.get("id").is_some() && msg.get("method").is_some();
        if !is_request {
            if msg.get("method").is_none() {
                return; // a stray response: nothing awaits it
            }
            let list_change = msg.get("method").and_then(Value::as_str).is_some_and(|m| m.ends_with("/list_changed"));
            match events {
                Some(tx) if !list_change => {
                    let _ = tx.send(CallEvent::Notification(msg)).await;
                }
                _ => self.sink.notification(&self.name, session.map_or(&SessionKey::Shared, |s| &s.key), msg),
            }
            return;
        }
        let upstream_id = msg.get("id").cloned().unwrap_or(Value::Null);
        let method = msg.get("method").and_then(Value::as_str).unwrap_or_default().to_owned();
        let params = msg.get("params").cloned().unwrap_or_else(|| json!({}));
        let (respond, answer) = oneshot::channel();
        let request = ServerRequest { method, params, respond };
        match events {
            Some(tx) => {
                if let Err(e) = tx.send(CallEvent::Request(request)).await {
                    if let CallEvent::Request(r) = e.0 {
                        let _ = r.respond.send(Err(RpcError::new(code::INTERNAL_ERROR, "the caller went away")));
                    }
                }
            }
            None => self.sink.request(&self.name, session.map_or(&SessionKey::Shared, |s| &s.key), request),
        }
        let inner = self.clone();
        let session = session.cloned();
        tokio::spawn(async move {
            let reply = answer.await.unwrap_or_else(|_| Err(RpcError::new(code::INTERNAL_ERROR, "request abandoned")));
            let msg = match reply {
                Ok(result) => json!({"jsonrpc": "2.0", "id": upstream_id, "result": result}),
                Err(e) => json!({"jsonrpc": "2.0", "id": upstream_id, "error": e.to_value()}),
            };
            let body = Bytes::from(serde_json::to_vec(&msg).unwrap_or_default());
            match inner.post(session.as_deref(), "", None, body).await {
                Ok(resp) => resp.release().await,
                Err(e) => tracing::warn!(provider = %inner.name, "answering a server request failed: {e}"),
            }
        });
    }

    /// Turns a non-2xx reply into an error, reading a JSON-RPC error from the body if there is one.
    async fn status_error(&self, resp: Response) -> CallError {
        let status = resp.status;
        let body = resp.body(MAX_ERROR_BODY).await.unwrap_or_default();
        if let Ok(msg) = serde_json::from_slice::<Value>(&body) {
            if let Some(err) = msg.get("error").filter(|e| e.is_object()) {
                return CallError::Rpc(RpcError::from_value(err));
            }
        }
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]).trim().to_owned();
        CallError::Unavailable {
            reason: format!("HTTP {status}{}{text}", if text.is_empty() { "" } else { ": " }),
            never_sent: false,
        }
    }
}

/// Sends `notifications/cancelled` for a legacy request whose caller went away before the answer.
struct CancelOnDrop {
    inner: Arc<Inner>,
    session: Option<Arc<LegacySession>>,
    id: u64,
    armed: bool,
}

impl CancelOnDrop {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        // Modern upstreams learn of cancellation from the closed stream itself.
        let (true, Some(session)) = (self.armed, self.session.take()) else { return };
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        let inner = self.inner.clone();
        let params = json!({"requestId": self.id, "reason": "cancelled by the client"});
        rt.spawn(async move {
            let body = message_bytes(None, "notifications/cancelled", &params);
            if let Ok(resp) = inner.post(Some(&session), "notifications/cancelled", None, body).await {
                resp.release().await;
            }
        });
    }
}

/// Keeps a legacy session's GET stream open, relaying what arrives on it, reconnecting with
/// backoff until the session is dropped.
async fn get_stream(inner: Arc<Inner>, session: Weak<LegacySession>, opened: oneshot::Sender<()>) {
    let mut opened = Some(opened);
    let mut backoff = Duration::from_millis(500);
    loop {
        let Some(s) = session.upgrade() else { return };
        let mut headers: Vec<(HeaderName, std::borrow::Cow<'_, str>)> = vec![
            (http::header::ACCEPT, "text/event-stream".into()),
            (HeaderName::from_static("mcp-protocol-version"), s.version.clone().into()),
        ];
        if let Some(id) = &s.id {
            headers.push((HeaderName::from_static("mcp-session-id"), id.clone().into()));
        }
        headers.extend(inner.configured());
        let req = Request { method: "GET", headers, body: Bytes::new() };
        let mut timeouts = inner.timeouts;
        timeouts.idle = Duration::from_secs(24 * 3600);
        let sent = inner.client.send(&inner.endpoint, &req, &timeouts).await;
        if let Some(tx) = opened.take() {
            let _ = tx.send(());
        }
        match sent {
            Ok(resp) if resp.status == 405 || resp.status == 404 => {
                resp.release().await;
                return;
            }
            Ok(mut resp) if resp.is_event_stream() => {
                backoff = Duration::from_millis(500);
                let mut decoder = sse::Decoder::new(MAX_EVENT_BYTES);
                drop(s);
                while let Ok(Some(chunk)) = resp.chunk().await {
                    let Ok(evs) = decoder.feed(&chunk) else { break };
                    let Some(s) = session.upgrade() else { return };
                    for ev in evs.into_iter().filter(sse::Event::is_message) {
                        if let Ok(msg) = serde_json::from_str::<Value>(&ev.data) {
                            inner.relay(msg, Some(&s), &None).await;
                        }
                    }
                }
            }
            Ok(resp) => resp.release().await,
            Err(e) => tracing::debug!(provider = %inner.name, "GET stream failed: {e}"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// Keeps a `subscriptions/listen` stream open to a modern upstream, relaying its notifications to
/// the sink, reconnecting with backoff.
async fn listen_stream(inner: Arc<Inner>, uris: Vec<String>) {
    let mut backoff = Duration::from_millis(500);
    loop {
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        let params = with_modern_meta(super::listen_params(&uris), &Caller::gateway());
        let body = message_bytes(Some(id), "subscriptions/listen", &params);
        let mut timeouts = inner.timeouts;
        timeouts.idle = Duration::from_secs(24 * 3600);
        let req = {
            let mut headers: Vec<(HeaderName, std::borrow::Cow<'_, str>)> = vec![
                (http::header::CONTENT_TYPE, "application/json".into()),
                (http::header::ACCEPT, "application/json, text/event-stream".into()),
                (HeaderName::from_static("mcp-protocol-version"), MODERN_VERSION.into()),
                (HeaderName::from_static("mcp-method"), "subscriptions/listen".into()),
            ];
            headers.extend(inner.configured());
            Request { method: "POST", headers, body }
        };
        match inner.client.send(&inner.endpoint, &req, &timeouts).await {
            Ok(mut resp) if resp.status == 200 && resp.is_event_stream() => {
                tracing::debug!(provider = %inner.name, uris = uris.len(), "watching the upstream for changes");
                backoff = Duration::from_millis(500);
                let mut decoder = sse::Decoder::new(MAX_EVENT_BYTES);
                while let Ok(Some(chunk)) = resp.chunk().await {
                    let Ok(evs) = decoder.feed(&chunk) else { break };
                    for ev in evs.into_iter().filter(|e| e.is_message() && !e.data.is_empty()) {
                        let Ok(mut msg) = serde_json::from_str::<Value>(&ev.data) else { continue };
                        let method = msg.get("method").and_then(Value::as_str).unwrap_or_default().to_owned();
                        if method.is_empty() || method == "notifications/subscriptions/acknowledged" {
                            continue;
                        }
                        if let Some(m) = msg.pointer_mut("/params/_meta").and_then(Value::as_object_mut) {
                            m.remove(meta::SUBSCRIPTION_ID);
                        }
                        tracing::debug!(provider = %inner.name, method, "change notification");
                        inner.sink.notification(&inner.name, &SessionKey::Shared, msg);
                    }
                }
                tracing::debug!(provider = %inner.name, "change stream ended");
            }
            Ok(resp) => {
                tracing::debug!(provider = %inner.name, status = resp.status, "upstream refused subscriptions/listen");
                resp.release().await;
                backoff = Duration::from_secs(60);
            }
            Err(e) => tracing::debug!(provider = %inner.name, "subscriptions/listen failed: {e}"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
}

/// After the awaited response, reads a little more so a stream that is about to end can return
/// its connection to the pool; a stream that stays open is closed instead.
async fn drain_and_release(mut resp: Response) {
    let drained = tokio::time::timeout(Duration::from_millis(50), async {
        loop {
            match resp.chunk().await {
                Ok(Some(_)) => continue,
                Ok(None) => return true,
                Err(_) => return false,
            }
        }
    })
    .await;
    if matches!(drained, Ok(true)) {
        resp.release().await;
    }
}

/// The result (or error) if `msg` is the response to request `id`.
fn response_result(msg: &Value, id: u64) -> Option<Result<Value, CallError>> {
    if msg.get("method").is_some() || msg.get("id").and_then(Value::as_u64) != Some(id) {
        return None;
    }
    if let Some(err) = msg.get("error") {
        return Some(Err(CallError::Rpc(RpcError::from_value(err))));
    }
    Some(Ok(msg.get("result").cloned().unwrap_or_else(|| json!({}))))
}

/// Serialises a request (with `id`) or a notification.
fn message_bytes(id: Option<u64>, method: &str, params: &Value) -> Bytes {
    let msg = match id {
        Some(id) => json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
        None => json!({"jsonrpc": "2.0", "method": method, "params": params}),
    };
    Bytes::from(serde_json::to_vec(&msg).unwrap_or_default())
}

/// Adds the per-request `_meta` a modern upstream requires, keeping whatever the client sent.
pub fn with_modern_meta(mut params: Value, caller: &Caller) -> Value {
    if !params.is_object() {
        params = json!({});
    }
    let Some(obj) = params.as_object_mut() else { return params };
    let meta_value = obj.entry("_meta").or_insert_with(|| json!({}));
    if !meta_value.is_object() {
        *meta_value = json!({});
    }
    if let Some(m) = meta_value.as_object_mut() {
        m.insert(meta::PROTOCOL_VERSION.into(), MODERN_VERSION.into());
        m.entry(meta::CLIENT_CAPABILITIES).or_insert_with(|| caller.capabilities.clone());
        m.entry(meta::CLIENT_INFO).or_insert_with(|| caller.client_info.clone());
        if let Some(level) = &caller.log_level {
            m.entry(meta::LOG_LEVEL).or_insert_with(|| level.clone().into());
        }
    }
    params
}
