//! Streamable-HTTP upstreams (`mode: remote`) of either era.
//!
//! The era is learnt once, on first use: a `server/discover` that succeeds marks a modern
//! (stateless) upstream; anything else a legacy one, whose sessions are opened lazily per
//! [`SessionKey`] with `initialize` and opened again, transparently, when the upstream forgets
//! them (HTTP 404). Replies may be JSON or SSE; messages on an SSE reply before the response
//! (progress, logs, server→client requests) are relayed to the caller.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use bytes::Bytes;
use http::HeaderName;
use serde_json::{json, Value};
use tokio::sync::OnceCell;

use super::http::{Endpoint, HttpClient, Request, Timeouts};
use super::{without_modern_meta, CallError, Caller, Events, SessionKey, Unsolicited, Upstream, UpstreamInfo};
use crate::jsonrpc::RpcError;
use crate::lifecycle::{Cause, Lifecycle, State};
use crate::proto::protocol::{self, meta, Era, MODERN_VERSION};
use hangar_config::{RemoteTransport, Secret};

mod exchange;
mod http_sse;
mod lease;
mod listen;
mod session;

pub use exchange::status_failure;
use exchange::Extra;

use http_sse::SseSession;
use listen::listen_stream;
use session::LegacySession;

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
    /// Which transport to use (`auto` probes).
    pub transport: RemoteTransport,
    /// How an `https` endpoint's certificate is checked.
    pub trust: super::http::TlsTrust,
    /// Whether a client's `Authorization` header replaces the configured one on requests made
    /// for that client (token pass-through).
    pub forward_client_token: bool,
}

/// How the gateway talks to a remote upstream, learnt on first use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Streamable HTTP, 2026-07-28: stateless.
    Modern,
    /// Streamable HTTP, 2025-xx: sessions.
    Legacy,
    /// The deprecated 2024-11-05 HTTP+SSE transport.
    HttpSse,
}

/// A streamable-HTTP upstream.
pub struct Remote {
    inner: Arc<Inner>,
}

struct Inner {
    name: Arc<str>,
    endpoint: Endpoint,
    headers: Vec<(HeaderName, String)>,
    pass_through_start: PassThroughStart,
    forward_client_token: bool,
    client: Arc<HttpClient>,
    timeouts: Timeouts,
    max_body: usize,
    transport: RemoteTransport,
    mode: ArcSwapOption<Mode>,
    probe_lock: tokio::sync::Mutex<()>,
    sessions: parking_lot::Mutex<HashMap<SessionKey, Arc<OnceCell<Arc<LegacySession>>>>>,
    /// Sessions leased to modern callers one call at a time.
    leases: parking_lot::Mutex<lease::LeasePool>,
    sse_sessions: parking_lot::Mutex<HashMap<SessionKey, Arc<OnceCell<Arc<SseSession>>>>>,
    next_id: AtomicU64,
    sink: Arc<dyn Unsolicited>,
    info: ArcSwapOption<UpstreamInfo>,
    watching: tokio::sync::Mutex<Watching>,
    lifecycle: Arc<Lifecycle>,
}

/// The start of every pass-through call's head, rendered once per upstream: the request line,
/// `Host`, the fields every modern call carries and the configured headers. `forwarded` leaves
/// out a configured `Authorization`, for a client whose own token takes its place. An `Err`
/// says why a configured header cannot be sent: each call fails with it, as it would if the
/// head were rendered per call.
struct PassThroughStart {
    own: Result<Bytes, String>,
    forwarded: Result<Bytes, String>,
}

impl PassThroughStart {
    fn new(endpoint: &Endpoint, configured: &[(HeaderName, String)]) -> Self {
        let render = |token_forwarded: bool| {
            let fields: Vec<_> = [
                (http::header::CONTENT_TYPE, "application/json".into()),
                (http::header::ACCEPT, "application/json, text/event-stream".into()),
                (HeaderName::from_static("mcp-protocol-version"), MODERN_VERSION.into()),
            ]
            .into_iter()
            .chain(configured_headers(configured, token_forwarded))
            .collect();
            endpoint.head_start("POST", &fields)
        };
        Self { own: render(false), forwarded: render(true) }
    }
}

/// The configured headers, less a configured `Authorization` when a client's own token is sent
/// in its place.
fn configured_headers(
    headers: &[(HeaderName, String)],
    token_forwarded: bool,
) -> impl Iterator<Item = (HeaderName, std::borrow::Cow<'_, str>)> {
    headers
        .iter()
        .filter(move |(n, _)| !token_forwarded || *n != http::header::AUTHORIZATION)
        .map(|(n, v)| (n.clone(), std::borrow::Cow::Borrowed(v.as_str())))
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
        lifecycle: Arc<Lifecycle>,
    ) -> Result<Self, super::http::HttpError> {
        let endpoint = Endpoint::parse(&settings.url)?.with_trust(settings.trust);
        Ok(Self {
            inner: Arc::new(Inner {
                name: settings.name,
                pass_through_start: PassThroughStart::new(&endpoint, &settings.headers),
                endpoint,
                headers: settings.headers,
                forward_client_token: settings.forward_client_token,
                client,
                timeouts: settings.timeouts,
                max_body: settings.max_body,
                transport: settings.transport,
                mode: ArcSwapOption::empty(),
                probe_lock: tokio::sync::Mutex::new(()),
                sessions: parking_lot::Mutex::new(HashMap::new()),
                leases: parking_lot::Mutex::new(lease::LeasePool::default()),
                sse_sessions: parking_lot::Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
                sink,
                info: ArcSwapOption::empty(),
                watching: tokio::sync::Mutex::new(Watching::default()),
                lifecycle,
            }),
        })
    }

    /// The era, once known (the fast path only proxies to known-modern upstreams).
    pub fn known_era(&self) -> Option<Era> {
        self.inner.mode.load().as_deref().map(|m| if *m == Mode::Modern { Era::Modern } else { Era::Legacy })
    }

    /// The endpoint (for the proxying fast path).
    pub fn endpoint(&self) -> &Endpoint {
        &self.inner.endpoint
    }

    /// Whether this provider is sent its clients' own `Authorization` headers.
    pub fn forwards_client_token(&self) -> bool {
        self.inner.forward_client_token
    }

    /// Sends a request the fast path built (a modern call, its body passed through, with the
    /// fields that differ by call) with the upstream's headers added (the client's `credential`
    /// among them when this provider takes it); returns once the reply's header has arrived.
    /// The caller reads the reply and reports the outcome to the lifecycle. Every wait of the
    /// exchange, the reply's body included, ends by `deadline` (see
    /// [`super::http::Timeouts::deadline`]).
    pub async fn pass_through<'a>(
        &'a self,
        mut req: Request<'a>,
        credential: Option<&'a Secret>,
        deadline: tokio::time::Instant,
    ) -> Result<super::http::Response, CallError> {
        if self.inner.lifecycle.retired() {
            return Err(super::retired_error());
        }
        let starts = &self.inner.pass_through_start;
        let forwarded = self.inner.forwarded_token(credential);
        let start = if forwarded.is_some() { &starts.forwarded } else { &starts.own };
        let start = start.as_ref().map_err(|reason| super::http::HttpError::Unbuildable { reason: reason.clone() })?;
        req.start = Some(start);
        if let Some(token) = forwarded {
            req.headers.push((http::header::AUTHORIZATION, token.into()));
        }
        let timeouts = super::http::Timeouts { deadline: Some(deadline), ..self.inner.timeouts };
        Ok(self.inner.client.send(&self.inner.endpoint, &req, &timeouts).await?)
    }

    /// Largest reply body accepted.
    pub fn max_body(&self) -> usize {
        self.inner.max_body
    }

    /// A new id for a request to this upstream (the fast path's re-addressed legacy calls).
    pub fn next_request_id(&self) -> u64 {
        self.inner.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Reads the rest of a reply the fast path handed over (an SSE stream) as the gateway's own
    /// calls read theirs: what comes before the response to request `id` goes to `events`
    /// (`credential` is the client's, for resuming the stream).
    pub async fn read_handed_over(
        &self,
        resp: super::http::Response,
        id: u64,
        credential: Option<&Secret>,
        events: Events,
    ) -> Result<Value, CallError> {
        match self.inner.read_reply(resp, id, None, credential, &events).await {
            Ok(v) => Ok(v),
            Err(Exchange::Failed(e)) => Err(e),
            Err(Exchange::Expired) => Err(CallError::Protocol("404 from a stateless upstream".into())),
        }
    }

    /// One request to the upstream, in whatever mode it speaks.
    async fn exchange(&self, method: &str, params: Value, caller: &Caller, events: Events) -> Result<Value, CallError> {
        let inner = &self.inner;
        let mode = inner.mode().await?;
        if mode == Mode::HttpSse {
            let session = inner.sse_session(caller).await?;
            return session.mux.request(method, without_modern_meta(params), events, inner.timeouts.first_byte).await;
        }
        let name_header =
            protocol::name_field(method).and_then(|f| params.get(f)).and_then(Value::as_str).map(str::to_owned);
        // The trace context goes upstream in headers too: only what is valid W3C syntax.
        let propagated = crate::telemetry::traces::Propagated::from_meta(params.get("_meta"));
        let traceparent = propagated.traceparent().map(str::to_owned);
        let tracestate = propagated.tracestate().map(str::to_owned);
        let params = if mode == Mode::Modern { with_modern_meta(params, caller) } else { without_modern_meta(params) };
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        let body = message_bytes(Some(id), method, &params);
        if mode == Mode::Modern {
            let extra = Extra {
                name: name_header.as_deref(),
                traceparent: traceparent.as_deref(),
                tracestate: tracestate.as_deref(),
                credential: caller.credential.as_ref(),
            };
            return match inner.request(None, id, method, extra, body, &events).await {
                Ok(v) => Ok(v),
                Err(Exchange::Failed(e)) => Err(e),
                Err(Exchange::Expired) => Err(CallError::Protocol("404 from a stateless upstream".into())),
            };
        }
        let leases = wants_lease(method, caller);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut lease = if leases { inner.lease(caller, &events).await? } else { None };
            let session = match &lease {
                Some(l) => l.session.clone(),
                None => inner.session(caller).await?,
            };
            let extra = Extra {
                name: None,
                traceparent: traceparent.as_deref(),
                tracestate: tracestate.as_deref(),
                credential: caller.credential.as_ref(),
            };
            match inner.request(Some(&session), id, method, extra, body.clone(), &events).await {
                Ok(v) => return Ok(v),
                Err(Exchange::Expired) if attempt == 1 => {
                    tracing::info!(provider = %inner.name, "upstream session expired; opening a new one");
                    match &mut lease {
                        Some(l) => l.expire(),
                        None => inner.forget_session(&session),
                    }
                }
                Err(Exchange::Expired) => return Err(CallError::Protocol("upstream rejected a fresh session".into())),
                Err(Exchange::Failed(e)) => return Err(e),
            }
        }
    }

    /// Upstream sessions leased to calls now, idle ones included (tests, `registry_details`).
    pub fn leased_sessions(&self) -> usize {
        self.inner.leased()
    }
}

#[async_trait]
impl Upstream for Remote {
    async fn call(&self, method: &str, params: Value, caller: &Caller, events: Events) -> Result<Value, CallError> {
        if self.inner.lifecycle.retired() {
            return Err(super::retired_error());
        }
        let _in_flight = self.inner.lifecycle.begin_call();
        let out = self.exchange(method, params, caller, events).await;
        super::record_outcome(&self.inner.lifecycle, out.as_ref().err());
        out
    }

    async fn notify(&self, method: &str, params: Value, caller: &Caller) -> Result<(), CallError> {
        let inner = &self.inner;
        let mode = inner.mode().await?;
        let body = message_bytes(None, method, &params);
        let session = match mode {
            Mode::Modern => None,
            Mode::HttpSse => {
                let existing = inner.sse_sessions.lock().get(&caller.session).and_then(|c| c.get().cloned());
                return match existing {
                    Some(s) => s.mux.notify(method, &params).await,
                    None => Ok(()),
                };
            }
            Mode::Legacy => match inner.existing_session(&caller.session) {
                Some(s) => Some(s),
                None => return Ok(()),
            },
        };
        let extra = Extra { credential: caller.credential.as_ref(), ..Extra::default() };
        let resp = inner.post(session.as_deref(), method, extra, body).await?;
        resp.release().await;
        Ok(())
    }

    async fn close_session(&self, key: &SessionKey) {
        let inner = &self.inner;
        // Dropping an HTTP+SSE session closes its stream, which ends it upstream.
        drop(inner.sse_sessions.lock().remove(key));
        let cell = inner.sessions.lock().remove(key);
        if let Some(session) = cell.and_then(|c| c.get().cloned()) {
            inner.delete_session(&session).await;
        }
    }

    fn info(&self) -> Option<Arc<UpstreamInfo>> {
        self.inner.info.load_full()
    }

    async fn watch(&self, uris: Vec<String>) -> Result<(), CallError> {
        let inner = &self.inner;
        let mode = inner.mode().await?;
        let mut watching = inner.watching.lock().await;
        let alive = watching.task.as_ref().is_none_or(|t| !t.is_finished());
        if watching.uris.as_ref() == Some(&uris) && alive {
            return Ok(());
        }
        match mode {
            Mode::Modern => {
                if let Some(t) = watching.task.take() {
                    t.abort();
                }
                // Return once the upstream acknowledged the subscription (bounded), so a change
                // made right after a subscribe is not missed.
                let (acked, is_acked) = tokio::sync::oneshot::channel();
                watching.task = Some(tokio::spawn(listen_stream(inner.clone(), uris.clone(), acked)).abort_handle());
                let _ = tokio::time::timeout(GET_STREAM_WAIT, is_acked).await;
            }
            Mode::Legacy | Mode::HttpSse => {
                // The shared session's stream carries list changes; resource updates need a
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
                    self.probe().await?;
                }
            }
        }
        watching.uris = Some(uris);
        Ok(())
    }

    async fn stop(&self, cause: Cause) {
        let inner = &self.inner;
        let mut keys: Vec<SessionKey> = inner.sessions.lock().keys().cloned().collect();
        keys.extend(inner.sse_sessions.lock().keys().cloned());
        for key in keys {
            self.close_session(&key).await;
        }
        inner.close_leases().await;
        *inner.watching.lock().await = Watching::default();
        inner.lifecycle.fire(if cause == Cause::IdleCollected { Cause::Stopped } else { cause }, "sessions closed");
    }

    async fn check(&self) -> Result<(), CallError> {
        let gateway = Caller::gateway();
        match self.inner.mode().await? {
            Mode::Modern => self.exchange("server/discover", json!({}), &gateway, None).await.map(drop),
            Mode::Legacy | Mode::HttpSse => self.exchange("ping", json!({}), &gateway, None).await.map(drop),
        }
    }

    async fn probe(&self) -> Result<Arc<UpstreamInfo>, CallError> {
        let inner = &self.inner;
        if let Some(info) = inner.info.load_full() {
            return Ok(info);
        }
        match inner.mode().await? {
            Mode::Legacy => drop(inner.session(&Caller::gateway()).await?),
            Mode::HttpSse => return Ok(Arc::new(inner.sse_session(&Caller::gateway()).await?.info.clone())),
            Mode::Modern => {}
        }
        inner.info.load_full().ok_or_else(|| CallError::Protocol("upstream did not describe itself".into()))
    }
}

/// Whether a call leases a session of its own (see [`lease`]): a modern caller's call that may
/// make the upstream ask its client something the caller can answer.
fn wants_lease(method: &str, caller: &Caller) -> bool {
    caller.session == SessionKey::Shared
        && matches!(method, "tools/call" | "prompts/get" | "resources/read" | "completion/complete")
        && ["sampling", "elicitation", "roots"].iter().any(|c| caller.capabilities.get(c).is_some())
}

impl Inner {
    /// Ends a legacy session upstream (`DELETE`); a session without an id has nothing to end.
    pub(super) async fn delete_session(&self, session: &LegacySession) {
        let Some(id) = &session.id else { return };
        let req = Request {
            method: "DELETE",
            start: None,
            headers: vec![
                (HeaderName::from_static("mcp-session-id"), id.as_str().into()),
                (HeaderName::from_static("mcp-protocol-version"), session.version.as_str().into()),
            ]
            .into_iter()
            .chain(self.headers_for(session.credential.as_ref()))
            .collect(),
            body: super::http::Body::default(),
            replayable: true,
        };
        match self.client.send(&self.endpoint, &req, &self.timeouts).await {
            Ok(resp) => resp.release().await,
            Err(e) => tracing::debug!(provider = %self.name, "closing upstream session failed: {e}"),
        }
    }

    /// The provider's configured headers.
    pub(super) fn configured(&self) -> impl Iterator<Item = (HeaderName, std::borrow::Cow<'_, str>)> {
        self.headers_for(None)
    }

    /// The provider's configured headers for a request made for a client that sent `credential`
    /// (its `Authorization` header): when this provider forwards client tokens, that credential
    /// takes the place of a configured `Authorization`. Nothing of the client's goes to any other
    /// provider.
    pub(super) fn headers_for<'a>(
        &'a self,
        credential: Option<&'a Secret>,
    ) -> impl Iterator<Item = (HeaderName, std::borrow::Cow<'a, str>)> {
        let forwarded = self.forwarded_token(credential);
        configured_headers(&self.headers, forwarded.is_some())
            .chain(forwarded.map(|c| (http::header::AUTHORIZATION, std::borrow::Cow::Borrowed(c))))
    }

    /// The client's token, when this provider is sent it (`credential` is the client's
    /// `Authorization` header).
    fn forwarded_token<'a>(&self, credential: Option<&'a Secret>) -> Option<&'a str> {
        credential.filter(|_| self.forward_client_token).map(Secret::expose)
    }

    /// How to talk to the upstream, probing once (concurrent first calls share one probe).
    async fn mode(self: &Arc<Self>) -> Result<Mode, CallError> {
        if let Some(m) = self.mode.load().as_deref() {
            if self.lifecycle.state() == State::Cold {
                // Stopped earlier: the protocol is known, using it again is the start.
                self.lifecycle.fire(Cause::Start, "used again");
                self.lifecycle.fire(Cause::Ready, "protocol known");
            }
            return Ok(*m);
        }
        let _guard = self.probe_lock.lock().await;
        if let Some(m) = self.mode.load().as_deref() {
            return Ok(*m);
        }
        self.lifecycle.fire(Cause::Start, "first use");
        match self.detect().await {
            Ok(mode) => {
                tracing::info!(provider = %self.name, mode = ?mode, "upstream protocol detected");
                self.mode.store(Some(Arc::new(mode)));
                self.lifecycle.fire(Cause::Ready, &format!("{mode:?} upstream"));
                Ok(mode)
            }
            Err(e) => {
                self.lifecycle.fire(Cause::StartFailed, &e.to_string());
                Err(e)
            }
        }
    }

    /// Modern if `server/discover` succeeds; the deprecated HTTP+SSE transport if the endpoint
    /// refuses POSTs but opens an SSE stream naming a message endpoint; legacy otherwise.
    async fn detect(self: &Arc<Self>) -> Result<Mode, CallError> {
        if self.transport == RemoteTransport::Sse {
            return Ok(Mode::HttpSse);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let params = with_modern_meta(json!({}), &Caller::gateway());
        let body = message_bytes(Some(id), "server/discover", &params);
        let resp = self.post(None, "server/discover", Extra::default(), body).await?;
        if !(200..300).contains(&resp.status) {
            let status = resp.status;
            resp.release().await;
            let sse =
                self.transport == RemoteTransport::Auto && matches!(status, 404 | 405) && self.speaks_http_sse().await;
            return Ok(if sse { Mode::HttpSse } else { Mode::Legacy });
        }
        match self.read_reply(resp, id, None, None, &None).await {
            Ok(result) => match UpstreamInfo::from_discover(&result) {
                Some(info) => {
                    self.info.store(Some(Arc::new(info)));
                    Ok(Mode::Modern)
                }
                None => Ok(Mode::Legacy),
            },
            Err(Exchange::Failed(CallError::Unavailable { reason, never_sent: true })) => {
                Err(CallError::Unavailable { reason, never_sent: true })
            }
            Err(_) => Ok(Mode::Legacy),
        }
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
