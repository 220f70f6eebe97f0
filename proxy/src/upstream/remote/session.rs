//! Legacy (2025-xx) upstream sessions: opened lazily with `initialize`, each with a GET stream for
//! what the server sends outside any call.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use hangar_config::Secret;
use http::HeaderName;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::{message_bytes, Exchange, Extra, Inner, GET_STREAM_WAIT, MAX_EVENT_BYTES};
use crate::jsonrpc::sse;
use crate::proto::protocol::{self, Era, LEGACY_VERSIONS};
use crate::upstream::http::{Body, Request};
use crate::upstream::{CallError, Caller, Events, SessionKey, UpstreamInfo};

/// One upstream session of a legacy server.
pub(super) struct LegacySession {
    pub(super) key: SessionKey,
    /// `Mcp-Session-Id` the server issued (servers may issue none).
    pub(super) id: Option<String>,
    /// Negotiated protocol version.
    pub(super) version: String,
    /// The client's `Authorization` header when the session is a legacy client's own (sent with
    /// what the gateway sends on it by itself, to providers that forward client tokens).
    pub(super) credential: Option<Secret>,
    pub(super) get_stream: parking_lot::Mutex<Option<tokio::task::AbortHandle>>,
    /// The call a leased session carries now: what arrives on its GET stream is that call's.
    pub(super) call: parking_lot::Mutex<Events>,
    /// The log level last set on the session with `logging/setLevel`.
    pub(super) log_level: parking_lot::Mutex<Option<String>>,
}

impl Drop for LegacySession {
    fn drop(&mut self) {
        if let Some(h) = self.get_stream.lock().take() {
            h.abort();
        }
    }
}

impl Inner {
    pub(super) fn existing_session(&self, key: &SessionKey) -> Option<Arc<LegacySession>> {
        self.sessions.lock().get(key)?.get().cloned()
    }

    /// The legacy session for `caller`, opening it on first use.
    pub(super) async fn session(self: &Arc<Self>, caller: &Caller) -> Result<Arc<LegacySession>, CallError> {
        let cell = {
            let mut map = self.sessions.lock();
            map.entry(caller.session.clone()).or_default().clone()
        };
        cell.get_or_try_init(|| self.initialize(caller, None)).await.cloned()
    }

    pub(super) fn forget_session(&self, session: &Arc<LegacySession>) {
        {
            let mut map = self.sessions.lock();
            if map.get(&session.key).and_then(|c| c.get()).is_some_and(|s| Arc::ptr_eq(s, session)) {
                map.remove(&session.key);
            }
        }
    }

    /// Opens a session for `caller`. `call`: the call a leased session is opened for, which hears
    /// what the server asks on the session's GET stream from the start (some servers ask for
    /// roots as soon as the session opens).
    pub(super) async fn initialize(
        self: &Arc<Self>,
        caller: &Caller,
        call: Events,
    ) -> Result<Arc<LegacySession>, CallError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let params = json!({
            "protocolVersion": LEGACY_VERSIONS[0],
            "capabilities": caller.capabilities,
            "clientInfo": caller.client_info,
        });
        let credential = caller.session_credential();
        let extra = Extra { credential: credential.as_ref(), ..Extra::default() };
        let resp = self.post(None, "initialize", extra, message_bytes(Some(id), "initialize", &params)).await?;
        let session_id = resp.header("mcp-session-id").map(str::to_owned);
        let result = match self.read_reply(resp, id, None, extra.credential, &None).await {
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
            credential,
            get_stream: parking_lot::Mutex::new(None),
            call: parking_lot::Mutex::new(call),
            log_level: parking_lot::Mutex::new(None),
        });
        let initialized = message_bytes(None, "notifications/initialized", &json!({}));
        match self.post(Some(&session), "notifications/initialized", Extra::default(), initialized).await {
            Ok(resp) => resp.release().await,
            Err(e) => tracing::warn!(provider = %self.name, "notifications/initialized failed: {e}"),
        }
        if session.id.is_some() {
            // Wait (briefly) for the GET stream: servers send requests not tied to a call there,
            // and one sent before the stream is open is lost.
            let (opened, is_open) = oneshot::channel();
            let task = tokio::spawn(get_stream(self.clone(), Arc::downgrade(&session), opened));
            {
                let mut g = session.get_stream.lock();
                *g = Some(task.abort_handle());
            }
            let _ = tokio::time::timeout(GET_STREAM_WAIT, is_open).await;
        }
        tracing::debug!(provider = %self.name, session = ?session.key, "upstream session opened");
        Ok(session)
    }
}

/// Keeps a legacy session's GET stream open, relaying what arrives on it, reconnecting with
/// backoff until the session is dropped.
pub(super) async fn get_stream(inner: Arc<Inner>, session: Weak<LegacySession>, opened: oneshot::Sender<()>) {
    let mut opened = Some(opened);
    let mut backoff = Duration::from_millis(500);
    loop {
        let Some(s) = session.upgrade() else { return };
        let credential = s.credential.clone();
        let mut headers: Vec<(HeaderName, std::borrow::Cow<'_, str>)> = vec![
            (http::header::ACCEPT, "text/event-stream".into()),
            (HeaderName::from_static("mcp-protocol-version"), s.version.clone().into()),
        ];
        if let Some(id) = &s.id {
            headers.push((HeaderName::from_static("mcp-session-id"), id.clone().into()));
        }
        headers.extend(inner.headers_for(credential.as_ref()));
        let req = Request { method: "GET", start: None, headers, body: Body::default(), replayable: true };
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
                            // A leased session's stream speaks for the one call it carries.
                            let call = s.call.lock().clone();
                            inner.relay(msg, Some(&s), &call).await;
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
