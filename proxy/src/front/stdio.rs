//! The stdio front door for desktop clients (Claude Desktop, Cursor, LM Studio): newline-delimited
//! JSON-RPC on stdin/stdout, the same hub as HTTP. stdout carries nothing but protocol messages.
//!
//! Both eras work on one connection: `initialize` opens the connection's legacy session; requests
//! carrying the 2026-07-28 `_meta` are served statelessly.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};

use crate::auth::Principal;
use crate::jsonrpc::lines::{read_bounded_line, LineError};
use crate::jsonrpc::parse::{Envelope, Kind};
use crate::jsonrpc::{code, error_bytes, null_id, result_bytes, RpcError};
use crate::mcp::hub::{self, ClientCtx};
use crate::mcp::server::McpServer;
use crate::mcp::session::ClientSession;
use crate::mcp::subscriptions;
use crate::proto::protocol::{era_of, Era, SUPPORTED_VERSIONS};
use crate::state::AppState;
use crate::upstream::CallEvent;

/// Serves one client on stdin/stdout until stdin closes or `stop` resolves.
pub async fn serve(server: Arc<McpServer>, stop: impl std::future::Future<Output = ()>) {
    let (out, out_rx) = mpsc::channel::<Bytes>(1024);
    let writer = tokio::spawn(write_stdout(out_rx));
    let conn = Arc::new(Connection { server, out, session: Mutex::new(None), inflight: Mutex::new(HashMap::new()) });
    let limit = conn.server.state.snapshot().config.server.limits.max_body_bytes;
    let mut stdin = BufReader::new(tokio::io::stdin());
    let mut line = Vec::new();
    tokio::pin!(stop);
    loop {
        let read = tokio::select! {
            r = read_bounded_line(&mut stdin, &mut line, limit) => r,
            () = &mut stop => break,
        };
        match read {
            Ok(0) => break,
            Ok(_) => {
                let text = std::mem::take(&mut line);
                conn.clone().handle_line(text).await;
            }
            Err(LineError::TooLong) => {
                let e = RpcError::new(code::INVALID_REQUEST, format!("message longer than {limit} bytes"));
                conn.send(error_bytes(null_id(), &e)).await;
            }
            Err(LineError::Io) => break,
        }
    }
    drop(conn);
    let _ = writer.await;
}

struct Connection {
    server: Arc<McpServer>,
    out: mpsc::Sender<Bytes>,
    session: Mutex<Option<Arc<ClientSession>>>,
    inflight: Mutex<HashMap<String, oneshot::Sender<()>>>,
}

impl Connection {
    async fn send(&self, msg: Vec<u8>) {
        let _ = self.out.send(Bytes::from(msg)).await;
    }

    fn session(&self) -> Option<Arc<ClientSession>> {
        self.session.lock().clone()
    }

    async fn handle_line(self: Arc<Self>, line: Vec<u8>) {
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let (env, kind, head) = match Envelope::parse_request(&line) {
            Ok(x) => x,
            Err(invalid) => {
                self.send(error_bytes(invalid.id.as_deref().unwrap_or(null_id()), &invalid.error)).await;
                return;
            }
        };
        let id: Box<RawValue> = env.id.map(|i| i.to_owned()).unwrap_or_else(|| null_id().to_owned());
        let method = env.method_str().to_owned();
        let version = head.ok().and_then(|h| h.protocol_version().map(str::to_owned));
        let params = match env.payload(kind) {
            Ok(p) => p,
            Err(e) => {
                if kind == Kind::Request {
                    self.send(error_bytes(&id, &e)).await;
                }
                return;
            }
        };
        drop(env);
        if kind != Kind::Response {
            let modern = version.as_deref().and_then(era_of) == Some(Era::Modern);
            self.server.state.metrics.request(&method, if modern { "modern" } else { "legacy" });
        }
        match kind {
            Kind::Request => {
                tokio::spawn(async move { self.request(id, method, version, params).await });
            }
            Kind::Notification => self.notification(&method, &params).await,
            Kind::Response => {
                let answered = match (self.session(), id.get().parse::<i64>()) {
                    (Some(s), Ok(n)) => s.answer(
                        n,
                        match params.get("error") {
                            Some(e) => Err(RpcError::from_value(e)),
                            None => Ok(params.get("result").cloned().unwrap_or(Value::Null)),
                        },
                    ),
                    _ => false,
                };
                if !answered {
                    tracing::debug!("a response on stdin matched no pending request");
                }
            }
        }
    }

    async fn notification(&self, method: &str, params: &Value) {
        match method {
            "notifications/cancelled" => {
                let key = params.get("requestId").map(Value::to_string).unwrap_or_default();
                if let Some(tx) = self.inflight.lock().remove(&key) {
                    let _ = tx.send(());
                }
            }
            "notifications/roots/list_changed" => {
                if let Some(s) = self.session() {
                    for u in self.server.state.snapshot().routes.all_upstreams() {
                        let _ = u.notify(method, params.clone(), &s.caller()).await;
                    }
                }
            }
            _ => {}
        }
    }

    async fn request(self: Arc<Self>, id: Box<RawValue>, method: String, version: Option<String>, params: Value) {
        // One snapshot for the whole request, as on HTTP.
        let snap = self.server.state.snapshot();
        if method == "initialize" {
            let reply = match hub::initialize(&self.server, &snap, &params, None, Principal::local()).await {
                Ok((session, result)) => {
                    let mut reader = session.attach_stream();
                    let out = self.out.clone();
                    tokio::spawn(async move {
                        while let Some(m) = reader.next().await {
                            if out.send(m).await.is_err() {
                                return;
                            }
                        }
                    });
                    {
                        let mut s = self.session.lock();
                        if let Some(old) = s.replace(session) {
                            self.server.sessions.remove(&old.id);
                        }
                    }
                    result_bytes(&id, &result)
                }
                Err(e) => error_bytes(&id, &e),
            };
            return self.send(reply).await;
        }
        if method == "subscriptions/listen" && version.as_deref().and_then(era_of) == Some(Era::Modern) {
            return self.listen(id, params).await;
        }
        let ctx = match version.as_deref().map(|v| (v, era_of(v))) {
            // The local user: stdio is not authenticated (who can start the process may use it all).
            Some((_, Some(Era::Modern))) => ClientCtx::modern(&params, Principal::local()),
            Some((v, None)) => {
                let e = RpcError::new(code::UNSUPPORTED_PROTOCOL_VERSION, format!("Unsupported protocol version: {v}"))
                    .with_data(json!({"supported": SUPPORTED_VERSIONS, "requested": v}));
                return self.send(error_bytes(&id, &e)).await;
            }
            _ => match self.session() {
                Some(s) => ClientCtx::legacy(s),
                None => {
                    let e = RpcError::new(
                        code::INVALID_REQUEST,
                        "send initialize first, or use protocol 2026-07-28 with per-request _meta",
                    );
                    return self.send(error_bytes(&id, &e)).await;
                }
            },
        };
        let key = id.get().to_owned();
        let (cancel_tx, cancelled) = oneshot::channel();
        let taken = {
            let mut m = self.inflight.lock();
            m.contains_key(&key) || m.insert(key.clone(), cancel_tx).is_some()
        };
        if taken {
            let e = RpcError::new(
                code::INVALID_REQUEST,
                format!("request id {key} is already in use by a request in flight"),
            );
            return self.send(error_bytes(&id, &e)).await;
        }
        let mut ctx = ctx;
        ctx.trace = hub::trace_request(&self.server.state, &ctx, &method, &params, None);
        if let Some(t) = &ctx.trace {
            t.set(opentelemetry::KeyValue::new("network.transport", "pipe"));
        }
        let (tx, mut rx) = mpsc::channel::<CallEvent>(64);
        let work = hub::request(&self.server, &snap, &ctx, &method, params, Some(tx));
        tokio::pin!(work);
        tokio::pin!(cancelled);
        let outcome = loop {
            tokio::select! {
                out = &mut work => break Some(out),
                Some(ev) = rx.recv() => {
                    if let Some(bytes) = hub::relay_event(&ctx, ev) {
                        self.send(bytes).await;
                    }
                }
                _ = &mut cancelled => break None,
            }
        };
        while let Ok(ev) = rx.try_recv() {
            if let Some(bytes) = hub::relay_event(&ctx, ev) {
                self.send(bytes).await;
            }
        }
        {
            let mut m = self.inflight.lock();
            m.remove(&key);
        }
        hub::end_trace(&ctx, outcome.as_ref());
        match outcome {
            Some(Ok(result)) => self.send(result_bytes(&id, &result)).await,
            Some(Err(e)) => self.send(error_bytes(&id, &e)).await,
            // A cancelled request gets no response (the spec says the receiver must not send one).
            None => {}
        }
    }
}

impl Connection {
    /// `subscriptions/listen` on stdio: notifications tagged with the subscription id, until the
    /// client cancels it (or the gateway stops, which ends it with a result).
    async fn listen(self: Arc<Self>, id: Box<RawValue>, params: Value) {
        let (granted, guard, mut rx) = subscriptions::open(&self.server, &params, &Principal::local()).await;
        self.send(serde_json::to_vec(&subscriptions::acknowledgment(&id, &granted)).unwrap_or_default()).await;
        let key = id.get().to_owned();
        let (cancel_tx, mut cancelled) = oneshot::channel();
        {
            let mut m = self.inflight.lock();
            m.insert(key.clone(), cancel_tx);
        }
        let mut shutdown = self.server.state.shutdown_signal();
        let ended_by_server = loop {
            tokio::select! {
                n = rx.recv() => match n {
                    Some(n) => self.send(serde_json::to_vec(&subscriptions::tag(n, &id)).unwrap_or_default()).await,
                    None => break true,
                },
                _ = &mut cancelled => break false,
                () = AppState::shutdown_begun(&mut shutdown) => break true,
            }
        };
        drop(guard);
        {
            let mut m = self.inflight.lock();
            m.remove(&key);
        }
        if ended_by_server {
            self.send(result_bytes(&id, &subscriptions::closing_result(&id))).await;
        }
        subscriptions::refresh(&self.server).await;
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(s) = self.session.lock().take() {
            self.server.sessions.remove(&s.id);
        }
    }
}

async fn write_stdout(mut rx: mpsc::Receiver<Bytes>) {
    let mut stdout = tokio::io::stdout();
    while let Some(msg) = rx.recv().await {
        if stdout.write_all(&msg).await.is_err()
            || stdout.write_all(b"\n").await.is_err()
            || stdout.flush().await.is_err()
        {
            return;
        }
    }
}
