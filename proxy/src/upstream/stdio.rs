//! Subprocess providers (`mode: subprocess`): an MCP server speaking newline-delimited JSON-RPC on
//! its stdin/stdout.
//!
//! One process serves every caller: requests are multiplexed with gateway-assigned ids, and
//! progress tokens are rewritten so that two clients choosing the same token never see each
//! other's progress. The process is started on first use, in its own process group (so stopping it
//! stops its children too), and its stderr goes to the gateway's log under the provider's name.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio as StdStdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{json, Value};
use tokio::io::{AsyncBufRead, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};

use super::remote::with_modern_meta;
use super::{CallError, CallEvent, Caller, Events, ServerRequest, SessionKey, Unsolicited, Upstream, UpstreamInfo};
use crate::jsonrpc::lines::{read_bounded_line, LineError};
use crate::jsonrpc::{code, RpcError};
use crate::mcp::protocol::{self, Era, LEGACY_VERSIONS, MODERN_VERSION};

/// How long the era probe (`server/discover`) may take before the server is taken for legacy.
const DISCOVER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `initialize` may take.
const INITIALIZE_TIMEOUT: Duration = Duration::from_secs(60);
/// Graceful stop: wait this long after closing stdin, then after SIGTERM, before SIGKILL.
const STOP_STEP: Duration = Duration::from_secs(2);

/// Settings of one subprocess provider.
#[derive(Debug, Clone)]
pub struct StdioSettings {
    /// Provider name.
    pub name: Arc<str>,
    /// Program and arguments.
    pub command: Vec<String>,
    /// Extra environment (values may be secrets: never logged).
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub cwd: Option<PathBuf>,
    /// Longest wait for a response.
    pub request_timeout: Duration,
    /// Longest line accepted from the process.
    pub max_line: usize,
}

/// A subprocess provider.
pub struct StdioUpstream {
    settings: StdioSettings,
    sink: Arc<dyn Unsolicited>,
    conn: tokio::sync::Mutex<Option<Arc<Conn>>>,
    info: ArcSwapOption<UpstreamInfo>,
    watched: tokio::sync::Mutex<Vec<String>>,
}

/// One running process.
struct Conn {
    name: Arc<str>,
    writer: mpsc::Sender<Bytes>,
    /// Closing the child's stdin is the first, polite step of stopping it.
    close_stdin: tokio::sync::watch::Sender<bool>,
    pending: Mutex<HashMap<u64, Pending>>,
    next_id: AtomicU64,
    alive: AtomicBool,
    child: Mutex<Option<Child>>,
    pid: Option<u32>,
    era: Mutex<Era>,
    sink: Arc<dyn Unsolicited>,
    /// Whether the gateway's change subscription is in place on this process.
    listening: AtomicBool,
    /// Id of the pending `subscriptions/listen` request (0: none).
    listen_id: AtomicU64,
}

struct Pending {
    reply: oneshot::Sender<Result<Value, CallError>>,
    events: Events,
    /// The client's progress token, restored on relayed progress notifications.
    progress_token: Option<Value>,
}

impl StdioUpstream {
    /// A subprocess provider; nothing is started until the first call.
    pub fn new(settings: StdioSettings, sink: Arc<dyn Unsolicited>) -> Self {
        Self {
            settings,
            sink,
            conn: tokio::sync::Mutex::new(None),
            info: ArcSwapOption::empty(),
            watched: tokio::sync::Mutex::new(Vec::new()),
        }
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.conn
            .try_lock()
            .ok()
            .and_then(|g| g.as_ref().filter(|c| c.alive.load(Ordering::Acquire)).and_then(|c| c.pid))
    }

    /// The running connection, starting the process if needed. Concurrent first calls share one
    /// start (the lock is held across it).
    async fn connection(&self) -> Result<Arc<Conn>, CallError> {
        let mut guard = self.conn.lock().await;
        if let Some(c) = guard.as_ref().filter(|c| c.alive.load(Ordering::Acquire)) {
            return Ok(c.clone());
        }
        let conn = self.start().await?;
        *guard = Some(conn.clone());
        Ok(conn)
    }

    async fn start(&self) -> Result<Arc<Conn>, CallError> {
        let s = &self.settings;
        let unavailable = |reason: String| CallError::Unavailable { reason, never_sent: true };
        let (program, args) = s.command.split_first().ok_or_else(|| unavailable("empty command".into()))?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .envs(s.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(StdStdio::piped())
            .stdout(StdStdio::piped())
            .stderr(StdStdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        if let Some(dir) = &s.cwd {
            cmd.current_dir(dir);
        }
        let mut child = cmd.spawn().map_err(|e| unavailable(format!("cannot start {program:?}: {e}")))?;
        let pid = child.id();
        tracing::info!(provider = %s.name, pid, "provider process started");
        let (Some(stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(unavailable("process has no stdio pipes".into()));
        };
        let (writer, rx) = mpsc::channel::<Bytes>(256);
        let (close_stdin, closed) = tokio::sync::watch::channel(false);
        let conn = Arc::new(Conn {
            name: s.name.clone(),
            writer,
            close_stdin,
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            alive: AtomicBool::new(true),
            child: Mutex::new(Some(child)),
            pid,
            era: Mutex::new(Era::Legacy),
            sink: self.sink.clone(),
            listening: AtomicBool::new(false),
            listen_id: AtomicU64::new(0),
        });
        tokio::spawn(write_lines(stdin, rx, closed));
        tokio::spawn(log_stderr(s.name.clone(), BufReader::new(stderr), s.max_line));
        tokio::spawn(read_lines(conn.clone(), BufReader::new(stdout), s.max_line));
        match self.handshake(&conn).await {
            Ok(info) => {
                self.info.store(Some(Arc::new(info)));
                Ok(conn)
            }
            Err(e) => {
                conn.stop().await;
                Err(e)
            }
        }
    }

    /// Learns the era: `server/discover` first (the 2026-07-28 stdio probe), `initialize` when
    /// the answer is anything but a modern result.
    async fn handshake(&self, conn: &Arc<Conn>) -> Result<UpstreamInfo, CallError> {
        let discover = with_modern_meta(json!({}), &Caller::gateway());
        if let Ok(result) = conn.request("server/discover", discover, None, DISCOVER_TIMEOUT).await {
            let modern = result
                .get("supportedVersions")
                .and_then(Value::as_array)
                .is_some_and(|v| v.iter().any(|s| s.as_str() == Some(MODERN_VERSION)));
            if modern {
                *conn.era.lock().map_err(|_| CallError::Protocol("poisoned".into()))? = Era::Modern;
                return Ok(UpstreamInfo {
                    era: Era::Modern,
                    version: MODERN_VERSION.into(),
                    capabilities: result.get("capabilities").cloned().unwrap_or_else(|| json!({})),
                    server_info: result
                        .pointer("/_meta/io.modelcontextprotocol~1serverInfo")
                        .cloned()
                        .unwrap_or(Value::Null),
                    instructions: result.get("instructions").and_then(Value::as_str).map(str::to_owned),
                });
            }
        }
        let caller = Caller::gateway();
        let params = json!({"protocolVersion": LEGACY_VERSIONS[0], "capabilities": caller.capabilities, "clientInfo": caller.client_info});
        let result = conn.request("initialize", params, None, INITIALIZE_TIMEOUT).await?;
        let version = result.get("protocolVersion").and_then(Value::as_str).unwrap_or_default().to_owned();
        if protocol::era_of(&version) != Some(Era::Legacy) {
            return Err(CallError::Protocol(format!("provider chose unsupported protocol version {version:?}")));
        }
        conn.send(None, "notifications/initialized", &json!({})).await?;
        Ok(UpstreamInfo {
            era: Era::Legacy,
            version,
            capabilities: result.get("capabilities").cloned().unwrap_or_else(|| json!({})),
            server_info: result.get("serverInfo").cloned().unwrap_or(Value::Null),
            instructions: result.get("instructions").and_then(Value::as_str).map(str::to_owned),
        })
    }

    /// Stops the process if it runs (stdin closed, then SIGTERM, then SIGKILL to its group).
    pub async fn stop(&self) {
        let conn = self.conn.lock().await.take();
        if let Some(conn) = conn {
            conn.stop().await;
        }
    }
}

#[async_trait]
impl Upstream for StdioUpstream {
    async fn call(&self, method: &str, params: Value, caller: &Caller, events: Events) -> Result<Value, CallError> {
        let conn = self.connection().await?;
        let modern = conn.era.lock().map(|e| *e == Era::Modern).unwrap_or(false);
        let params = if modern { with_modern_meta(params, caller) } else { params };
        conn.request(method, params, events, self.settings.request_timeout).await
    }

    async fn notify(&self, method: &str, params: Value, _caller: &Caller) -> Result<(), CallError> {
        let conn = self.conn.lock().await.clone();
        match conn.filter(|c| c.alive.load(Ordering::Acquire)) {
            Some(c) => c.send(None, method, &params).await,
            None => Ok(()),
        }
    }

    async fn close_session(&self, _session: &SessionKey) {}

    fn info(&self) -> Option<Arc<UpstreamInfo>> {
        self.info.load_full()
    }

    async fn probe(&self) -> Result<Arc<UpstreamInfo>, CallError> {
        if let Some(i) = self.info.load_full() {
            return Ok(i);
        }
        self.connection().await?;
        self.info.load_full().ok_or_else(|| CallError::Protocol("provider did not describe itself".into()))
    }

    async fn watch(&self, uris: Vec<String>) -> Result<(), CallError> {
        let conn = self.connection().await?;
        let mut watched = self.watched.lock().await;
        if *watched == uris && conn.listening.load(Ordering::Acquire) {
            return Ok(());
        }
        if conn.era.lock().map(|e| *e == Era::Modern).unwrap_or(false) {
            // A modern server sends changes on a long-lived `subscriptions/listen` request; a new
            // URI set replaces the previous request.
            let old = conn.listen_id.swap(0, Ordering::AcqRel);
            if old != 0 {
                let cancel = json!({"requestId": old, "reason": "subscription replaced"});
                let _ = conn.send(None, "notifications/cancelled", &cancel).await;
                if let Ok(mut p) = conn.pending.lock() {
                    p.remove(&old);
                }
            }
            let params = with_modern_meta(super::listen_params(&uris), &Caller::gateway());
            let c = conn.clone();
            conn.listening.store(true, Ordering::Release);
            tokio::spawn(async move {
                let _ = c.request("subscriptions/listen", params, None, Duration::from_secs(365 * 24 * 3600)).await;
                c.listening.store(false, Ordering::Release);
            });
        } else {
            let caller = Caller::gateway();
            for uri in uris.iter().filter(|u| !watched.contains(u)) {
                self.call("resources/subscribe", json!({"uri": uri}), &caller, None).await?;
            }
            for uri in watched.iter().filter(|u| !uris.contains(u)) {
                let _ = self.call("resources/unsubscribe", json!({"uri": uri}), &caller, None).await;
            }
            conn.listening.store(true, Ordering::Release);
        }
        *watched = uris;
        Ok(())
    }

    async fn shutdown(&self) {
        self.stop().await;
    }
}

impl Conn {
    /// Writes one message; `id` makes it a request.
    async fn send(&self, id: Option<u64>, method: &str, params: &Value) -> Result<(), CallError> {
        let msg = match id {
            Some(id) => json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
            None => json!({"jsonrpc": "2.0", "method": method, "params": params}),
        };
        self.write(&msg).await
    }

    async fn write(&self, msg: &Value) -> Result<(), CallError> {
        let bytes = serde_json::to_vec(msg).map_err(|e| CallError::Protocol(e.to_string()))?;
        self.writer.send(Bytes::from(bytes)).await.map_err(|_| CallError::Unavailable {
            reason: "the provider process is not running".into(),
            never_sent: true,
        })
    }

    /// Sends a request and waits for its response (or the process's death, or the timeout).
    async fn request(
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
        self.pending
            .lock()
            .map_err(|_| CallError::Protocol("poisoned".into()))?
            .insert(id, Pending { reply: tx, events, progress_token });
        let guard = CancelOnDrop { conn: self.clone(), id, armed: true };
        if let Err(e) = self.send(Some(id), method, &params).await {
            guard.disarm();
            return Err(e);
        }
        let out = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => {
                Err(CallError::Unavailable { reason: "the provider process exited".into(), never_sent: false })
            }
            Err(_) => {
                return Err(CallError::Timeout(format!("no answer to {method} within {timeout:?}")));
            }
        };
        guard.disarm();
        out
    }

    /// Marks the process dead and fails what waits on it.
    fn die(&self, reason: &str) {
        if !self.alive.swap(false, Ordering::AcqRel) {
            return;
        }
        let pending: Vec<Pending> =
            self.pending.lock().map(|mut p| p.drain().map(|(_, v)| v).collect()).unwrap_or_default();
        for p in pending {
            let _ = p.reply.send(Err(CallError::Unavailable { reason: reason.to_owned(), never_sent: false }));
        }
    }

    /// Stops the process and its group, gracefully first.
    async fn stop(&self) {
        self.die("the provider was stopped");
        let child = self.child.lock().ok().and_then(|mut c| c.take());
        let Some(mut child) = child else { return };
        self.close_stdin.send_replace(true);
        let pgid = self.pid.and_then(|p| i32::try_from(p).ok()).map(nix::unistd::Pid::from_raw);
        if tokio::time::timeout(STOP_STEP, child.wait()).await.is_err() {
            signal_group(pgid, nix::sys::signal::Signal::SIGTERM);
            if tokio::time::timeout(STOP_STEP, child.wait()).await.is_err() {
                signal_group(pgid, nix::sys::signal::Signal::SIGKILL);
                let _ = child.wait().await;
            }
        }
        // Whatever the leader did, leave no member of its group behind.
        signal_group(pgid, nix::sys::signal::Signal::SIGKILL);
        tracing::info!(provider = %self.name, pid = self.pid, "provider process stopped");
    }

    /// Routes one line from the process.
    async fn dispatch(&self, msg: Value) {
        let id = msg.get("id").and_then(Value::as_u64);
        let method = msg.get("method").and_then(Value::as_str).map(str::to_owned);
        match (id, method) {
            (Some(id), None) => {
                let Some(p) = self.pending.lock().ok().and_then(|mut m| m.remove(&id)) else { return };
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
                let pending = self.pending.lock().ok()?;
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
                m.remove(crate::mcp::protocol::meta::SUBSCRIPTION_ID);
            }
        }
        match self.sole_caller().filter(|_| !change) {
            Some(tx) => {
                let _ = tx.send(CallEvent::Notification(msg)).await;
            }
            None => self.sink.notification(&self.name, &SessionKey::Shared, msg),
        }
    }

    /// A server→client request: stdio has no per-call streams, so it goes to the one call in
    /// flight, if there is exactly one; otherwise to the unsolicited sink.
    async fn server_request(&self, msg: Value, method: String) {
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
            None => self.sink.request(&self.name, &SessionKey::Shared, request),
        }
        let writer = self.writer.clone();
        tokio::spawn(async move {
            let reply = answer.await.unwrap_or_else(|_| Err(RpcError::new(code::INTERNAL_ERROR, "request abandoned")));
            let msg = match reply {
                Ok(result) => json!({"jsonrpc": "2.0", "id": upstream_id, "result": result}),
                Err(e) => json!({"jsonrpc": "2.0", "id": upstream_id, "error": e.to_value()}),
            };
            let _ = writer.send(Bytes::from(serde_json::to_vec(&msg).unwrap_or_default())).await;
        });
    }

    fn sole_caller(&self) -> Option<mpsc::Sender<CallEvent>> {
        let pending = self.pending.lock().ok()?;
        let mut with_events = pending.values().filter_map(|p| p.events.clone());
        let first = with_events.next()?;
        with_events.next().is_none().then_some(first)
    }
}

fn signal_group(pgid: Option<nix::unistd::Pid>, signal: nix::sys::signal::Signal) {
    if let Some(pgid) = pgid {
        let _ = nix::sys::signal::killpg(pgid, signal);
    }
}

/// Tells the process a request was abandoned.
struct CancelOnDrop {
    conn: Arc<Conn>,
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
        if let Ok(mut p) = self.conn.pending.lock() {
            p.remove(&self.id);
        }
        let msg = json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": self.id, "reason": "cancelled by the client"}});
        let _ = self.conn.writer.try_send(Bytes::from(serde_json::to_vec(&msg).unwrap_or_default()));
    }
}

async fn write_lines(
    mut stdin: tokio::process::ChildStdin,
    mut rx: mpsc::Receiver<Bytes>,
    mut closed: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let line = tokio::select! {
            line = rx.recv() => match line {
                Some(l) => l,
                None => return,
            },
            _ = closed.wait_for(|c| *c) => return,
        };
        if stdin.write_all(&line).await.is_err()
            || stdin.write_all(b"\n").await.is_err()
            || stdin.flush().await.is_err()
        {
            return;
        }
    }
}

async fn read_lines(conn: Arc<Conn>, mut stdout: impl AsyncBufRead + Unpin, max_line: usize) {
    let mut line = Vec::new();
    loop {
        match read_bounded_line(&mut stdout, &mut line, max_line).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(LineError::TooLong) => {
                tracing::warn!(provider = %conn.name, "dropped a line longer than {max_line} bytes");
                continue;
            }
            Err(LineError::Io) => break,
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(text) {
            Ok(msg) => conn.dispatch(msg).await,
            Err(_) => tracing::warn!(provider = %conn.name, "ignoring a non-JSON line on stdout"),
        }
    }
    if conn.alive.load(Ordering::Acquire) {
        tracing::warn!(provider = %conn.name, pid = conn.pid, "provider process exited unexpectedly");
    }
    conn.die("the provider process exited");
}

async fn log_stderr(name: Arc<str>, mut stderr: impl AsyncBufRead + Unpin, max_line: usize) {
    let mut line = Vec::new();
    loop {
        match read_bounded_line(&mut stderr, &mut line, max_line).await {
            Ok(0) | Err(LineError::Io) => return,
            Ok(_) => tracing::info!(provider = %name, "stderr: {}", String::from_utf8_lossy(&line).trim_end()),
            Err(LineError::TooLong) => {
                tracing::info!(provider = %name, "stderr: (line longer than {max_line} bytes dropped)")
            }
        }
    }
}
