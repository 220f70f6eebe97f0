//! One request/response exchange with a streamable-HTTP upstream: the POST, a JSON or SSE reply
//! (resumed with `Last-Event-ID` when the server closes it early), relaying what precedes the
//! response, and errors read from failed replies.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hangar_config::Secret;
use http::HeaderName;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::session::LegacySession;
use super::{
    message_bytes, response_result, Exchange, Inner, MAX_ERROR_BODY, MAX_EVENT_BYTES, MAX_RESUMPTIONS, MAX_RETRY_MS,
};
use crate::jsonrpc::sse;
use crate::jsonrpc::{code, RpcError};
use crate::proto::headers::encode_header_value;
use crate::proto::protocol::MODERN_VERSION;
use crate::upstream::http::{Body, Request, Response};
use crate::upstream::{CallError, CallEvent, Events, ServerRequest, SessionKey};

/// Per-request headers besides the protocol's own.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Extra<'a> {
    /// `Mcp-Name` (modern requests).
    pub name: Option<&'a str>,
    /// W3C trace context, as the request's `_meta` carries it.
    pub traceparent: Option<&'a str>,
    /// Its vendor part.
    pub tracestate: Option<&'a str>,
    /// The client's `Authorization` header (sent only to providers that forward it).
    pub credential: Option<&'a Secret>,
}

impl Inner {
    /// POSTs one message.
    pub(super) async fn post(
        &self,
        session: Option<&LegacySession>,
        method: &str,
        extra: Extra<'_>,
        body: Bytes,
    ) -> Result<Response, CallError> {
        let mut headers: Vec<(HeaderName, std::borrow::Cow<'_, str>)> = Vec::with_capacity(6 + self.headers.len());
        headers.push((http::header::CONTENT_TYPE, "application/json".into()));
        headers.push((http::header::ACCEPT, "application/json, text/event-stream".into()));
        match session {
            None if method != "initialize" => {
                headers.push((HeaderName::from_static("mcp-protocol-version"), MODERN_VERSION.into()));
                headers.push((HeaderName::from_static("mcp-method"), method.to_owned().into()));
                if let Some(n) = extra.name {
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
        if let Some(tp) = extra.traceparent {
            headers.push((HeaderName::from_static("traceparent"), tp.into()));
            if let Some(ts) = extra.tracestate {
                headers.push((HeaderName::from_static("tracestate"), ts.into()));
            }
        }
        let credential = extra.credential.or_else(|| session.and_then(|s| s.credential.as_ref()));
        headers.extend(self.headers_for(credential));
        let replayable = crate::balance::retry::is_read_only_method(method);
        let req = Request { method: "POST", start: None, headers, body: body.into(), replayable };
        Ok(self.client.send(&self.endpoint, &req, &self.timeouts).await?)
    }

    /// Sends a request and reads its reply.
    pub(super) async fn request(
        self: &Arc<Self>,
        session: Option<&Arc<LegacySession>>,
        id: u64,
        method: &str,
        extra: Extra<'_>,
        body: Bytes,
        events: &Events,
    ) -> Result<Value, Exchange> {
        let resp = self.post(session.map(|s| s.as_ref()), method, extra, body).await?;
        let guard = CancelOnDrop { inner: self.clone(), session: session.cloned(), id, armed: true };
        let out = self.read_reply(resp, id, session, extra.credential, events).await;
        guard.disarm();
        out
    }

    /// Reads the reply to request `id`: a JSON body, or an SSE stream whose other messages are
    /// relayed. `credential` is the client's, for resuming the stream.
    pub(super) async fn read_reply(
        self: &Arc<Self>,
        mut resp: Response,
        id: u64,
        session: Option<&Arc<LegacySession>>,
        credential: Option<&Secret>,
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
                    resp = self.resume(session, credential, last_event_id.as_deref().unwrap_or_default()).await?;
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
    pub(super) async fn resume(
        &self,
        session: Option<&Arc<LegacySession>>,
        credential: Option<&Secret>,
        last_event_id: &str,
    ) -> Result<Response, Exchange> {
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
        headers.extend(self.headers_for(credential.or_else(|| session.and_then(|s| s.credential.as_ref()))));
        let req = Request { method: "GET", start: None, headers, body: Body::default(), replayable: true };
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
    pub(super) async fn relay(self: &Arc<Self>, msg: Value, session: Option<&Arc<LegacySession>>, events: &Events) {
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
            match inner.post(session.as_deref(), "", Extra::default(), body).await {
                Ok(resp) => resp.release().await,
                Err(e) => tracing::warn!(provider = %inner.name, "answering a server request failed: {e}"),
            }
        });
    }

    /// Turns a non-2xx reply into an error, reading a JSON-RPC error from the body if there is one.
    pub(super) async fn status_error(&self, resp: Response) -> CallError {
        let status = resp.status;
        let body = resp.body(MAX_ERROR_BODY).await.unwrap_or_default();
        status_failure(status, &body)
    }
}

/// The error a reply with failure `status` and `body` stands for: the JSON-RPC error in the body
/// if there is one, else the status and the start of the body.
pub fn status_failure(status: u16, body: &[u8]) -> CallError {
    if let Ok(msg) = serde_json::from_slice::<Value>(body) {
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
            if let Ok(resp) = inner.post(Some(&session), "notifications/cancelled", Extra::default(), body).await {
                resp.release().await;
            }
        });
    }
}

/// After the awaited response, reads a little more so a stream that is about to end can return
/// its connection to the pool; a stream that stays open is closed instead.
pub(super) async fn drain_and_release(mut resp: Response) {
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
