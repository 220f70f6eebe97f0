//! The deprecated HTTP+SSE transport (2024-11-05): a GET opens an SSE stream whose first event
//! names the URL to POST messages to; every server message (responses included) arrives on that
//! stream. One stream is one session, so calls on it are multiplexed by [`Mux`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use hangar_config::Secret;
use http::HeaderName;
use serde_json::Value;
use tokio::sync::OnceCell;

use super::{Inner, MAX_EVENT_BYTES};
use crate::jsonrpc::sse;
use crate::upstream::http::{Body, Endpoint, Request, Response};
use crate::upstream::mux::{Link, Mux};
use crate::upstream::{CallError, Caller, UpstreamInfo};

/// How long the server may take to name its message endpoint.
const ENDPOINT_TIMEOUT: Duration = Duration::from_secs(10);

/// One HTTP+SSE session.
pub(super) struct SseSession {
    pub(super) mux: Arc<Mux>,
    pub(super) info: UpstreamInfo,
    reader: tokio::task::AbortHandle,
}

impl Drop for SseSession {
    fn drop(&mut self) {
        // Closing the stream is how this transport ends a session.
        self.reader.abort();
        self.mux.die("the session was closed");
    }
}

/// Sends messages by POSTing them to the endpoint the server named.
struct PostLink {
    inner: Arc<Inner>,
    post: Endpoint,
    /// The client's `Authorization` header when the session is a legacy client's own.
    credential: Option<Secret>,
}

#[async_trait]
impl Link for PostLink {
    async fn send(&self, msg: Bytes) -> Result<(), CallError> {
        let headers = std::iter::once((http::header::CONTENT_TYPE, "application/json".into()))
            .chain(self.inner.headers_for(self.credential.as_ref()))
            .collect();
        let req = Request { method: "POST", start: None, headers, body: msg.into(), replayable: false };
        let resp = self.inner.client.send(&self.post, &req, &self.inner.timeouts).await?;
        if (200..300).contains(&resp.status) {
            resp.release().await;
            return Ok(());
        }
        Err(self.inner.status_error(resp).await)
    }
}

impl Inner {
    /// Opens the SSE stream and reads up to the `endpoint` event; `None` when the server does
    /// not speak this transport.
    async fn open_stream(
        &self,
        credential: Option<&Secret>,
    ) -> Result<Option<(Response, Endpoint, sse::Decoder)>, CallError> {
        let headers = std::iter::once((http::header::ACCEPT, "text/event-stream".into()))
            .chain(self.headers_for(credential))
            .collect::<Vec<(HeaderName, std::borrow::Cow<'_, str>)>>();
        let req = Request { method: "GET", start: None, headers, body: Body::default(), replayable: true };
        let mut timeouts = self.timeouts;
        timeouts.idle = Duration::from_secs(24 * 3600);
        let mut resp = self.client.send(&self.endpoint, &req, &timeouts).await?;
        if resp.status != 200 || !resp.is_event_stream() {
            resp.release().await;
            return Ok(None);
        }
        let mut decoder = sse::Decoder::new(MAX_EVENT_BYTES);
        let found = tokio::time::timeout(ENDPOINT_TIMEOUT, async {
            while let Ok(Some(chunk)) = resp.chunk().await {
                let Ok(events) = decoder.feed(&chunk) else { return None };
                if let Some(ev) = events.into_iter().find(|e| e.event.as_deref() == Some("endpoint")) {
                    return Some(ev.data);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(target)) => {
                let post = self.endpoint.join(target.trim()).map_err(|e| CallError::Protocol(e.to_string()))?;
                // The provider's configured credentials go with every POST: only to where they
                // were configured for (as the official TypeScript SDK requires too).
                if !post.same_origin(&self.endpoint) {
                    return Err(CallError::Protocol(format!(
                        "the SSE endpoint event names {}, which is not on the configured endpoint's origin",
                        post.shown()
                    )));
                }
                Ok(Some((resp, post, decoder)))
            }
            _ => Ok(None),
        }
    }

    /// Whether the endpoint speaks HTTP+SSE (an SSE stream that names a message endpoint).
    pub(super) async fn speaks_http_sse(&self) -> bool {
        matches!(self.open_stream(None).await, Ok(Some(_)))
    }

    /// The HTTP+SSE session for `caller`, (re)opening it when needed.
    pub(super) async fn sse_session(self: &Arc<Self>, caller: &Caller) -> Result<Arc<SseSession>, CallError> {
        loop {
            let cell = {
                let mut map = self.sse_sessions.lock();
                map.entry(caller.session.clone()).or_insert_with(|| Arc::new(OnceCell::new())).clone()
            };
            let session = cell.get_or_try_init(|| self.connect_sse(caller)).await?.clone();
            if session.mux.is_alive() {
                return Ok(session);
            }
            {
                let mut map = self.sse_sessions.lock();
                if map.get(&caller.session).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                    map.remove(&caller.session);
                }
            }
        }
    }

    async fn connect_sse(self: &Arc<Self>, caller: &Caller) -> Result<Arc<SseSession>, CallError> {
        let credential = caller.session_credential();
        let Some((resp, post, decoder)) = self.open_stream(credential.as_ref()).await? else {
            return Err(CallError::Protocol("the endpoint did not open an HTTP+SSE session".into()));
        };
        let link = Arc::new(PostLink { inner: self.clone(), post, credential });
        let mux = Mux::new(self.name.clone(), link, caller.session.clone(), self.sink.clone());
        let reader = tokio::spawn(read_stream(mux.clone(), resp, decoder, self.name.clone())).abort_handle();
        let info = match mux.initialize(caller, self.timeouts.first_byte).await {
            Ok(info) => info,
            Err(e) => {
                reader.abort();
                return Err(e);
            }
        };
        self.info.store(Some(Arc::new(info.clone())));
        tracing::debug!(provider = %self.name, session = ?caller.session, "HTTP+SSE session opened");
        Ok(Arc::new(SseSession { mux, info, reader }))
    }
}

/// Hands every message on the stream to the multiplexer until the stream ends.
async fn read_stream(mux: Arc<Mux>, mut resp: Response, mut decoder: sse::Decoder, name: Arc<str>) {
    while let Ok(Some(chunk)) = resp.chunk().await {
        let Ok(events) = decoder.feed(&chunk) else { break };
        for ev in events.into_iter().filter(|e| e.is_message() && !e.data.is_empty()) {
            match serde_json::from_str::<Value>(&ev.data) {
                Ok(msg) => mux.dispatch(msg).await,
                Err(_) => tracing::debug!(provider = %name, "ignoring a non-JSON SSE event"),
            }
        }
    }
    mux.die("the provider closed its SSE stream");
}
