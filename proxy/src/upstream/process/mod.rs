//! Providers that run an MCP server speaking newline-delimited JSON-RPC on stdio: subprocesses
//! (`mode: subprocess`, [`local`]) and containers (`mode: container`, [`container`]).
//!
//! One server serves every caller, its calls multiplexed by [`Mux`]. It is started on first use by
//! a [`Launcher`]; its stderr goes to the gateway's log under the provider's name, and what it last
//! said there explains a failed start. Stopping closes its stdin, then asks the launcher to end it
//! for good.

pub mod container;
pub mod local;

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{json, Value};
use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, watch};

use super::mux::{Link, Mux};
use super::remote::with_modern_meta;
use super::{without_modern_meta, CallError, Caller, Events, SessionKey, Unsolicited, Upstream, UpstreamInfo};
use crate::jsonrpc::lines::{read_bounded_line, LineError};
use crate::lifecycle::{Cause, Lifecycle};
use crate::proto::protocol::Era;

/// Longest wait for the era probe (`server/discover`) before the server is taken for legacy (the
/// request timeout applies when shorter).
const DISCOVER_TIMEOUT: Duration = Duration::from_secs(10);
/// stderr lines kept to explain a failed start.
const STDERR_KEPT: usize = 8;
/// A `subscriptions/listen` request never times out on its own.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

/// Settings of one stdio provider.
#[derive(Debug, Clone)]
pub struct ProcessSettings {
    /// Provider name.
    pub name: Arc<str>,
    /// Longest wait for a response.
    pub request_timeout: Duration,
    /// Longest line accepted from the server.
    pub max_line: usize,
}

/// Starts the server of a stdio provider.
#[async_trait]
pub trait Launcher: Send + Sync {
    /// Starts it and hands over its stdio.
    async fn launch(&self, name: &str) -> Result<Launched, CallError>;
}

/// A started server: its stdio and the handle that ends it.
pub struct Launched {
    /// Its stdin.
    pub stdin: Pin<Box<dyn AsyncWrite + Send>>,
    /// Its stdout (protocol messages).
    pub stdout: Pin<Box<dyn AsyncRead + Send>>,
    /// Its stderr (logs).
    pub stderr: Pin<Box<dyn AsyncRead + Send>>,
    /// Process id, for local processes.
    pub pid: Option<u32>,
    /// What to call it in logs and errors (`process 123`, `container 4f2a…`).
    pub label: String,
    /// Ends it.
    pub handle: Box<dyn Running>,
}

/// A running server, as its launcher controls it.
#[async_trait]
pub trait Running: Send + Sync {
    /// How it exited, if it has (or does within a moment).
    async fn exit_status(&mut self) -> Option<String>;
    /// Ends it for good once its stdin is closed: wait a moment, then terminate, then kill; leave
    /// nothing behind (process group, container).
    async fn stop(&mut self);
}

/// A stdio provider (subprocess or container).
pub struct ProcessUpstream {
    settings: ProcessSettings,
    launcher: Box<dyn Launcher>,
    sink: Arc<dyn Unsolicited>,
    lifecycle: Arc<Lifecycle>,
    conn: tokio::sync::Mutex<Option<Arc<Conn>>>,
    info: ArcSwapOption<UpstreamInfo>,
    watched: tokio::sync::Mutex<Vec<String>>,
}

/// One running server.
struct Conn {
    name: Arc<str>,
    label: String,
    mux: Arc<Mux>,
    /// Closing the server's stdin is the first, polite step of stopping it.
    close_stdin: watch::Sender<bool>,
    handle: tokio::sync::Mutex<Option<Box<dyn Running>>>,
    pid: Option<u32>,
    era: Era,
    /// Whether the gateway's change subscription is in place on this process.
    listening: AtomicBool,
}

/// Sends lines to the child's stdin through the writer task.
struct StdinLink(mpsc::Sender<Bytes>);

#[async_trait]
impl Link for StdinLink {
    async fn send(&self, msg: Bytes) -> Result<(), CallError> {
        self.0.send(msg).await.map_err(|_| CallError::Unavailable {
            reason: "the provider process is not running".into(),
            never_sent: true,
        })
    }
}

impl ProcessUpstream {
    /// A stdio provider started by `launcher`; nothing is started until the first call.
    pub fn new(
        settings: ProcessSettings,
        launcher: Box<dyn Launcher>,
        sink: Arc<dyn Unsolicited>,
        lifecycle: Arc<Lifecycle>,
    ) -> Self {
        // A process is stopped once idle for `idle_ttl_s`: its calls' ends are the clock.
        lifecycle.track_idle();
        Self {
            settings,
            launcher,
            sink,
            lifecycle,
            conn: tokio::sync::Mutex::new(None),
            info: ArcSwapOption::empty(),
            watched: tokio::sync::Mutex::new(Vec::new()),
        }
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.conn.try_lock().ok().and_then(|g| g.as_ref().filter(|c| c.mux.is_alive()).and_then(|c| c.pid))
    }

    /// The running connection, starting the process if needed. Concurrent first calls share one
    /// start (the lock is held across it).
    async fn connection(&self) -> Result<Arc<Conn>, CallError> {
        let mut guard = self.conn.lock().await;
        if let Some(c) = guard.as_ref().filter(|c| c.mux.is_alive()) {
            return Ok(c.clone());
        }
        if self.lifecycle.retired() {
            return Err(super::retired_error());
        }
        self.lifecycle.fire(Cause::Start, "first use");
        match self.start().await {
            Ok(conn) => {
                self.lifecycle.fire(Cause::Ready, &format!("{} ready", conn.label));
                *guard = Some(conn.clone());
                Ok(conn)
            }
            Err(e) => {
                self.lifecycle.fire(Cause::StartFailed, &e.to_string());
                Err(e)
            }
        }
    }

    async fn start(&self) -> Result<Arc<Conn>, CallError> {
        let s = &self.settings;
        let Launched { stdin, stdout, stderr, pid, label, handle } = self.launcher.launch(&s.name).await?;
        tracing::info!(provider = %s.name, "{label} started");
        let (writer, rx) = mpsc::channel::<Bytes>(256);
        let (close_stdin, closed) = watch::channel(false);
        let mux = Mux::new(s.name.clone(), Arc::new(StdinLink(writer)), SessionKey::Shared, self.sink.clone());
        let stderr_tail = Arc::new(Mutex::new(std::collections::VecDeque::new()));
        tokio::spawn(write_lines(stdin, rx, closed));
        let mut stderr_done =
            tokio::spawn(log_stderr(s.name.clone(), BufReader::new(stderr), s.max_line, stderr_tail.clone()));
        tokio::spawn(read_lines(
            mux.clone(),
            self.lifecycle.clone(),
            label.clone(),
            BufReader::new(stdout),
            s.max_line,
        ));
        let mut conn = Conn {
            name: s.name.clone(),
            label,
            mux,
            close_stdin,
            handle: tokio::sync::Mutex::new(Some(handle)),
            pid,
            era: Era::Legacy,
            listening: AtomicBool::new(false),
        };
        match handshake(&conn.mux, s.request_timeout).await {
            Ok(info) => {
                conn.era = info.era;
                self.info.store(Some(Arc::new(info)));
                Ok(Arc::new(conn))
            }
            Err(e) => {
                // Say why: the exit status if it died, and what it last wrote on stderr.
                let status = match conn.handle.lock().await.as_mut() {
                    Some(h) => h.exit_status().await,
                    None => None,
                };
                conn.stop().await;
                if status.is_some() {
                    // It exited: its last words are on their way through the stderr reader.
                    let _ = tokio::time::timeout(Duration::from_millis(500), &mut stderr_done).await;
                }
                let mut reason = match status {
                    Some(st) => format!("the process exited during start ({st})"),
                    None => format!("the process did not complete the MCP handshake: {e}"),
                };
                let tail: Vec<String> = stderr_tail.lock().iter().cloned().collect();
                if !tail.is_empty() {
                    reason.push_str("; stderr: ");
                    reason.push_str(&tail.join(" | "));
                }
                Err(CallError::Unavailable { reason, never_sent: true })
            }
        }
    }

    /// Stops the process if it runs (stdin closed, then SIGTERM, then SIGKILL to its group). An
    /// idle collection does nothing if a call began since the collector looked.
    async fn stop_process(&self, cause: Cause) {
        let mut guard = self.conn.lock().await;
        if cause == Cause::IdleCollected && self.lifecycle.inflight() > 0 {
            return;
        }
        let conn = guard.take();
        drop(guard);
        let detail = match cause {
            Cause::IdleCollected => "idle for longer than idle_ttl_s",
            _ => "stopped",
        };
        if let Some(conn) = conn {
            self.lifecycle.fire(cause, detail);
            conn.stop().await;
        } else {
            self.lifecycle.fire(Cause::Stopped, detail);
        }
    }
}

/// Learns the era: `server/discover` first (the 2026-07-28 stdio probe), `initialize` when the
/// answer is anything but a modern result.
async fn handshake(mux: &Arc<Mux>, timeout: Duration) -> Result<UpstreamInfo, CallError> {
    let discover = with_modern_meta(json!({}), &Caller::gateway());
    if let Ok(result) = mux.request("server/discover", discover, None, DISCOVER_TIMEOUT.min(timeout)).await {
        if let Some(info) = UpstreamInfo::from_discover(&result) {
            return Ok(info);
        }
    }
    if !mux.is_alive() {
        return Err(CallError::Unavailable { reason: "the process exited".into(), never_sent: true });
    }
    mux.initialize(&Caller::gateway(), timeout).await
}

#[async_trait]
impl Upstream for ProcessUpstream {
    async fn call(&self, method: &str, params: Value, caller: &Caller, events: Events) -> Result<Value, CallError> {
        let _in_flight = self.lifecycle.begin_call();
        let out = async {
            let conn = self.connection().await?;
            let params =
                if conn.era == Era::Modern { with_modern_meta(params, caller) } else { without_modern_meta(params) };
            conn.mux.request(method, params, events, self.settings.request_timeout).await
        }
        .await;
        super::record_outcome(&self.lifecycle, out.as_ref().err());
        out
    }

    async fn notify(&self, method: &str, params: Value, _caller: &Caller) -> Result<(), CallError> {
        let conn = self.conn.lock().await.clone();
        match conn.filter(|c| c.mux.is_alive()) {
            Some(c) => c.mux.notify(method, &params).await,
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
        if conn.era == Era::Modern {
            // A modern server sends changes on a long-lived `subscriptions/listen` request; a new
            // URI set replaces the previous request.
            conn.mux.cancel_listen().await;
            let params = with_modern_meta(super::listen_params(&uris), &Caller::gateway());
            let c = conn.clone();
            conn.listening.store(true, Ordering::Release);
            tokio::spawn(async move {
                let _ = c.mux.request("subscriptions/listen", params, None, LISTEN_TIMEOUT).await;
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

    async fn stop(&self, cause: Cause) {
        self.stop_process(cause).await;
    }

    async fn check(&self) -> Result<(), CallError> {
        let conn = self.connection().await?;
        let (method, params) = match conn.era {
            Era::Modern => ("server/discover", with_modern_meta(json!({}), &Caller::gateway())),
            Era::Legacy => ("ping", json!({})),
        };
        conn.mux.request(method, params, None, DISCOVER_TIMEOUT.min(self.settings.request_timeout)).await.map(drop)
    }
}

impl Conn {
    /// Stops the server: its stdin closes, then its launcher ends it for good.
    async fn stop(&self) {
        self.mux.die("the provider was stopped");
        self.close_stdin.send_replace(true);
        let handle = self.handle.lock().await.take();
        if let Some(mut handle) = handle {
            handle.stop().await;
            tracing::info!(provider = %self.name, "{} stopped", self.label);
        }
    }
}

async fn write_lines(
    mut stdin: Pin<Box<dyn AsyncWrite + Send>>,
    mut rx: mpsc::Receiver<Bytes>,
    mut closed: watch::Receiver<bool>,
) {
    loop {
        let line = tokio::select! {
            line = rx.recv() => match line {
                Some(l) => l,
                None => break,
            },
            _ = closed.wait_for(|c| *c) => break,
        };
        if stdin.write_all(&line).await.is_err()
            || stdin.write_all(b"\n").await.is_err()
            || stdin.flush().await.is_err()
        {
            return;
        }
    }
    // An explicit end of input: a pipe closes, an attached socket sends its FIN.
    let _ = stdin.shutdown().await;
}

async fn read_lines(
    mux: Arc<Mux>,
    lifecycle: Arc<Lifecycle>,
    label: String,
    mut stdout: impl AsyncBufRead + Unpin,
    max_line: usize,
) {
    let name = lifecycle.provider().to_owned();
    let mut line = Vec::new();
    loop {
        match read_bounded_line(&mut stdout, &mut line, max_line).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(LineError::TooLong) => {
                tracing::warn!(provider = %name, "dropped a line longer than {max_line} bytes");
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
            Ok(msg) => mux.dispatch(msg).await,
            Err(_) => tracing::warn!(provider = %name, "ignoring a non-JSON line on stdout"),
        }
    }
    if mux.is_alive() {
        tracing::warn!(provider = %name, "{label} exited unexpectedly");
        mux.die("the provider process exited");
        lifecycle.fire(Cause::Crashed, &format!("{label} exited"));
    }
}

async fn log_stderr(
    name: Arc<str>,
    mut stderr: impl AsyncBufRead + Unpin,
    max_line: usize,
    tail: Arc<Mutex<std::collections::VecDeque<String>>>,
) {
    let mut line = Vec::new();
    loop {
        match read_bounded_line(&mut stderr, &mut line, max_line).await {
            Ok(0) | Err(LineError::Io) => return,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line).trim_end().to_owned();
                tracing::info!(provider = %name, "stderr: {text}");
                {
                    let mut t = tail.lock();
                    if t.len() >= STDERR_KEPT {
                        t.pop_front();
                    }
                    t.push_back(text.chars().take(300).collect());
                }
            }
            Err(LineError::TooLong) => {
                tracing::info!(provider = %name, "stderr: (line longer than {max_line} bytes dropped)")
            }
        }
    }
}
