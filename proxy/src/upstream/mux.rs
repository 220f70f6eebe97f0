//! Many calls over one message stream: the stdio transport and the deprecated HTTP+SSE transport
//! both carry every message of a session on a single channel, so replies are matched to calls by
//! gateway-assigned ids, and progress tokens are rewritten so two callers choosing the same token
//! never see each other's progress. Messages not tied to a call go to the unsolicited sink.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use super::{CallError, CallEvent, Caller, Events, ServerRequest, SessionKey, Unsolicited, UpstreamInfo};
use crate::jsonrpc::{code, RpcError};
use crate::proto::protocol::{self, meta, Era, LEGACY_VERSIONS};

/// The sending half of a message stream.
#[async_trait]
pub trait Link: Send + Sync {
    /// Sends one serialised JSON-RPC message.
    async fn send(&self, msg: Bytes) -> Result<(), CallError>;
}

struct Pending {
    reply: oneshot::Sender<Result<Value, CallError>>,
    events: Events,
    /// The caller's own progress token, restored on relayed progress notifications.
    progress_token: Option<Value>,
}

/// The calls in flight on one message stream.
pub struct Mux {
    name: Arc<str>,
    link: Arc<dyn Link>,
    session: SessionKey,
    sink: Arc<dyn Unsolicited>,
    pending: Mutex<HashMap<u64, Pending>>,
    next_id: AtomicU64,
    alive: AtomicBool,
    listen_id: AtomicU64,
}

impl Mux {
    /// A multiplexer sending on `link`; messages not tied to a call go to `sink` as `session`.
    pub fn new(name: Arc<str>, link: Arc<dyn Link>, session: SessionKey, sink: Arc<dyn Unsolicited>) -> Arc<Self> {
        Arc::new(Self {
            name,
            link,
            session,
            sink,
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            alive: AtomicBool::new(true),
            listen_id: AtomicU64::new(0),
        })
    }

    /// Whether the stream is still usable.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    /// Sends a notification.
    pub async fn notify(&self, method: &str, params: &Value) -> Result<(), CallError> {
        self.write(&json!({"jsonrpc": "2.0", "method": method, "params": params})).await
    }

    async fn write(&self, msg: &Value) -> Result<(), CallError> {
        if !self.is_alive() {
            return Err(CallError::Unavailable {
                reason: "the provider connection is closed".into(),
                never_sent: true,
            });
        }
        let bytes = serde_json::to_vec(msg).map_err(|e| CallError::Protocol(e.to_string()))?;
        self.link.send(Bytes::from(bytes)).await
    }

    /// Sends a request and waits for its response, the stream's end, or `timeout`. Dropping the
    /// future cancels the request upstream.
    pub async fn request(
        self: &Arc<Self>,
        method: &str,
        mut params: Value,
        events: Events,
        timeout: Duration,
    ) -> Result<Value, CallError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if method == "subscriptions/listen" {
            self.listen_id.store(id, Ordering::Release);
        }
        let progress_token = params.pointer_mut("/_meta/progressToken").map(|t| std::mem::replace(t, json!(id)));
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(id, Pending { reply: tx, events, progress_token });
        let guard = CancelOnDrop { mux: self.clone(), id, armed: true };
        if let Err(e) = self.write(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})).await {
            guard.disarm();
            {
                let mut p = self.pending.lock();
                p.remove(&id);
            }
            return Err(e);
        }
        let out = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => {
                Err(CallError::Unavailable { reason: "the provider connection closed".into(), never_sent: false })
            }
            Err(_) => return Err(CallError::Timeout(format!("no answer to {method} within {timeout:?}"))),
        };
        guard.disarm();
        out
    }

    /// The legacy handshake: `initialize` (declaring `caller`'s capabilities), then
    /// `notifications/initialized`.
    pub async fn initialize(self: &Arc<Self>, caller: &Caller, timeout: Duration) -> Result<UpstreamInfo, CallError> {
        let params = json!({
            "protocolVersion": LEGACY_VERSIONS[0],
            "capabilities": caller.capabilities,
            "clientInfo": caller.client_info,
        });
        let result = self.request("initialize", params, None, timeout).await?;
        let version = result.get("protocolVersion").and_then(Value::as_str).unwrap_or_default().to_owned();
        if protocol::era_of(&version) != Some(Era::Legacy) {
            return Err(CallError::Protocol(format!("provider chose unsupported protocol version {version:?}")));
        }
        self.notify("notifications/initialized", &json!({})).await?;
        Ok(UpstreamInfo {
            era: Era::Legacy,
            version,
            capabilities: result.get("capabilities").cloned().unwrap_or_else(|| json!({})),
            server_info: result.get("serverInfo").cloned().unwrap_or(Value::Null),
            instructions: result.get("instructions").and_then(Value::as_str).map(str::to_owned),
        })
    }

    /// Ends the pending `subscriptions/listen` request, if any (a new one replaces it).
    pub async fn cancel_listen(&self) {
        let old = self.listen_id.swap(0, Ordering::AcqRel);
        if old == 0 {
            return;
        }
        {
            let mut p = self.pending.lock();
            p.remove(&old);
        }
        let _ =
            self.notify("notifications/cancelled", &json!({"requestId": old, "reason": "subscription replaced"})).await;
    }

    /// Marks the stream dead and fails every call waiting on it.
    pub fn die(&self, reason: &str) {
        if !self.alive.swap(false, Ordering::AcqRel) {
            return;
        }
        let pending: Vec<Pending> = self.pending.lock().drain().map(|(_, v)| v).collect();
        for p in pending {
            let _ = p.reply.send(Err(CallError::Unavailable { reason: reason.to_owned(), never_sent: false }));
        }
    }

    /// Routes one incoming message.
    pub async fn dispatch(self: &Arc<Self>, msg: Value) {
        let id = msg.get("id").and_then(Value::as_u64);
        let method = msg.get("method").and_then(Value::as_str).map(str::to_owned);
        match (id, method) {
            (Some(id), None) => {
                let Some(p) = self.pending.lock().remove(&id) else { return };
                let reply = match msg.get("error") {
                    Some(e) => Err(CallError::Rpc(RpcError::from_value(e))),
                    None => Ok(msg.get("result").cloned().unwrap_or_else(|| json!({}))),
                };
                let _ = p.reply.send(reply);
            }
            (_, Some(method)) if msg.get("id").is_some() => self.server_request(msg, method).await,
            (_, Some(method)) => self.notification(msg, &method).await,
            _ => {}
        }
    }

    async fn notification(&self, mut msg: Value, method: &str) {
        if method == "notifications/progress" {
            let token = msg.pointer("/params/progressToken").and_then(Value::as_u64);
            let target = token.and_then(|t| {
                let pending = self.pending.lock();
                let p = pending.get(&t)?;
                Some((p.events.clone()?, p.progress_token.clone()))
            });
            if let Some((tx, original)) = target {
                if let (Some(slot), Some(orig)) = (msg.pointer_mut("/params/progressToken"), original) {
                    *slot = orig;
                }
                let _ = tx.send(CallEvent::Notification(msg)).await;
            }
            return;
        }
        let change = method.ends_with("/list_changed") || method == "notifications/resources/updated";
        if change {
            if let Some(m) = msg.pointer_mut("/params/_meta").and_then(Value::as_object_mut) {
                m.remove(meta::SUBSCRIPTION_ID);
            }
        }
        match self.sole_caller().filter(|_| !change) {
            Some(tx) => {
                let _ = tx.send(CallEvent::Notification(msg)).await;
            }
            None => self.sink.notification(&self.name, &self.session, msg),
        }
    }

    /// A server→client request: one stream carries every call, so it goes to the one call in
    /// flight, if there is exactly one; otherwise to the unsolicited sink.
    async fn server_request(self: &Arc<Self>, msg: Value, method: String) {
        let upstream_id = msg.get("id").cloned().unwrap_or(Value::Null);
        let params = msg.get("params").cloned().unwrap_or_else(|| json!({}));
        let (respond, answer) = oneshot::channel();
        let request = ServerRequest { method, params, respond };
        match self.sole_caller() {
            Some(tx) => {
                if let Err(e) = tx.send(CallEvent::Request(request)).await {
                    if let CallEvent::Request(r) = e.0 {
                        let _ = r.respond.send(Err(RpcError::new(code::INTERNAL_ERROR, "the caller went away")));
                    }
                }
            }
            None => self.sink.request(&self.name, &self.session, request),
        }
        let mux = self.clone();
        tokio::spawn(async move {
            let reply = answer.await.unwrap_or_else(|_| Err(RpcError::new(code::INTERNAL_ERROR, "request abandoned")));
            let msg = match reply {
                Ok(result) => json!({"jsonrpc": "2.0", "id": upstream_id, "result": result}),
                Err(e) => json!({"jsonrpc": "2.0", "id": upstream_id, "error": e.to_value()}),
            };
            let _ = mux.write(&msg).await;
        });
    }

    fn sole_caller(&self) -> Option<mpsc::Sender<CallEvent>> {
        let pending = self.pending.lock();
        let mut with_events = pending.values().filter_map(|p| p.events.clone());
        let first = with_events.next()?;
        with_events.next().is_none().then_some(first)
    }
}

/// Tells the upstream a request was abandoned (the caller went away or timed out).
struct CancelOnDrop {
    mux: Arc<Mux>,
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
        if !self.armed {
            return;
        }
        {
            let mut p = self.mux.pending.lock();
            p.remove(&self.id);
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        let mux = self.mux.clone();
        let params = json!({"requestId": self.id, "reason": "cancelled by the client"});
        rt.spawn(async move {
            let _ = mux.notify("notifications/cancelled", &params).await;
        });
    }
}
