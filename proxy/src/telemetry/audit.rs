//! The audit trail: every provider event and tool call, appended as one JSON object per line to a
//! file that rotates by size, and queryable through `registry_audit`.
//!
//! Records are handed to a writer thread through a bounded channel, so the request path never
//! waits on the disk. The writer is the only one touching the file: lines never interleave. It
//! writes whatever is queued, then forces it to disk as the `fsync` policy says:
//!
//! - `always`: after every batch — a crash loses only records still queued in memory.
//! - `interval` (default, 1 s): at most `fsync_interval_s` after a record was written — a machine
//!   crash may lose that much more (a crash of the gateway alone loses nothing written).
//! - `never`: the OS decides.
//!
//! A clean shutdown drains the queue and syncs before the gateway exits. If the writer falls
//! behind by [`QUEUE`] records, further records are dropped and counted
//! (`mcp_hangar_audit_dropped_total`) rather than slowing calls down.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use hangar_config::Fsync;
use serde::Serialize;
use serde_json::{json, Value};

use crate::lifecycle::events::{EventSink, ProviderEvent};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::now_ms;

/// Records queued for the writer at most.
pub const QUEUE: usize = 65_536;
/// Longest tool name or caller recorded, in bytes (they come from clients).
const MAX_FIELD: usize = 256;
/// Longest error message recorded.
const MAX_MESSAGE: usize = 1024;

/// A tool call as the audit trail records it.
#[derive(Debug, Clone, Serialize)]
pub struct ToolCall {
    /// Who called: `session:<id>` (legacy), `client:<name>` (modern), or `stdio`.
    pub caller: String,
    /// The authenticated principal (`anonymous` when authentication is off, `local` on stdio).
    pub principal: String,
    /// Protocol era of the request.
    pub era: &'static str,
    /// The provider or group the call was addressed to.
    pub provider: String,
    /// The tool, by its exposed name.
    pub tool: String,
    /// How it ended (as in the metrics).
    pub outcome: &'static str,
    /// Time at the gateway.
    pub duration_ms: f64,
    /// The error's message, for failed calls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The arguments, when configured (redacted by the writer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Value>,
}

enum Message {
    Record(Record),
    /// Sync and acknowledge (queries, tests).
    Flush(std::sync::mpsc::Sender<()>),
    /// Write what is queued, sync, and stop (clean shutdown).
    Close,
}

enum Record {
    Provider(ProviderEvent),
    ToolCall { at_ms: u64, call: ToolCall },
    Config { at_ms: u64, generation: u64, providers: usize, change: Value },
    ConfigRejected { at_ms: u64, trigger: String, error: String },
    AccessDenied { at_ms: u64, principal: String, era: &'static str, provider: String, item: String, rule: String },
    Discovery { at_ms: u64, action: &'static str, provider: String, source: Option<usize>, detail: String },
}

impl Record {
    /// The record as the trail (which adds its `seq`) and the live feed show it.
    fn to_json(&self) -> Value {
        match self {
            Record::Provider(e) => {
                let mut v = json!({"at_ms": e.at_ms, "type": "provider_event", "provider": e.provider,
                    "from": e.from, "to": e.to, "cause": e.cause, "detail": e.detail, "event_seq": e.seq});
                if let Some(d) = e.duration_ms {
                    v["duration_ms"] = d.into();
                }
                v
            }
            Record::ToolCall { at_ms, call } => {
                let mut v = json!({"at_ms": at_ms, "type": "tool_call"});
                if let (Value::Object(o), Ok(Value::Object(c))) = (&mut v, serde_json::to_value(call)) {
                    o.extend(c);
                }
                v
            }
            Record::Config { at_ms, generation, providers, change } => json!({"at_ms": at_ms,
                "type": "config_applied", "generation": generation, "providers": providers, "change": change}),
            Record::ConfigRejected { at_ms, trigger, error } => json!({"at_ms": at_ms,
                "type": "config_rejected", "trigger": trigger, "error": error}),
            Record::AccessDenied { at_ms, principal, era, provider, item, rule } => json!({
                "at_ms": at_ms, "type": "access_denied", "principal": principal, "era": era, "provider": provider,
                "item": item, "rule": rule}),
            Record::Discovery { at_ms, action, provider, source, detail } => json!({"at_ms": at_ms,
                "type": "discovery", "action": action, "provider": provider, "source": source, "detail": detail}),
        }
    }
}

/// Records the live feed holds for a subscriber that reads slowly; beyond, it skips ahead.
const LIVE_BACKLOG: usize = 256;

/// The audit trail's front: cheap to call from anywhere.
pub struct Audit {
    tx: Option<SyncSender<Message>>,
    /// The trail as it happens, for the admin API's event feed (whether or not it is written),
    /// without tool calls (their traffic is in the recent statistics). Serialised only while
    /// someone listens.
    live: tokio::sync::broadcast::Sender<Arc<str>>,
    settings: hangar_config::Audit,
    metrics: Arc<Metrics>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Held by the query running (queries read the files; one at a time bounds what they cost).
    querying: Mutex<()>,
}

/// Why the audit log cannot be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the audit log {path}: {source}")]
pub struct AuditError {
    path: PathBuf,
    source: std::io::Error,
}

impl Audit {
    /// An audit trail writing per `settings` (nothing when disabled). The file is opened now, so
    /// a bad path fails the start rather than losing records later.
    pub fn open(settings: &hangar_config::Audit, metrics: Arc<Metrics>) -> Result<Self, AuditError> {
        if !settings.enabled {
            return Ok(Self {
                tx: None,
                live: tokio::sync::broadcast::channel(LIVE_BACKLOG).0,
                settings: settings.clone(),
                metrics,
                writer: Mutex::new(None),
                querying: Mutex::new(()),
            });
        }
        let file = open_append(&settings.path).map_err(|source| AuditError { path: settings.path.clone(), source })?;
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let writer = Writer::new(settings.clone(), file, metrics.clone());
        let handle = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|source| AuditError { path: settings.path.clone(), source })?;
        Ok(Self {
            tx: Some(tx),
            live: tokio::sync::broadcast::channel(LIVE_BACKLOG).0,
            settings: settings.clone(),
            metrics,
            writer: Mutex::new(Some(handle)),
            querying: Mutex::new(()),
        })
    }

    /// A disabled trail (tests, tools that do not audit).
    pub fn disabled(metrics: Arc<Metrics>) -> Self {
        Self {
            tx: None,
            live: tokio::sync::broadcast::channel(LIVE_BACKLOG).0,
            settings: hangar_config::Audit::default(),
            metrics,
            writer: Mutex::new(None),
            querying: Mutex::new(()),
        }
    }

    /// Whether records are written.
    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Whether tool-call arguments are recorded.
    pub fn records_arguments(&self) -> bool {
        self.enabled() && self.settings.arguments
    }

    /// The records from now on, as JSON, without tool calls.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<str>> {
        self.live.subscribe()
    }

    fn send(&self, record: Record) {
        if self.live.receiver_count() > 0 && !matches!(record, Record::ToolCall { .. }) {
            let _ = self.live.send(Arc::from(record.to_json().to_string()));
        }
        let Some(tx) = &self.tx else { return };
        match tx.try_send(Message::Record(record)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.metrics.audit_dropped.with_label_values(&["queue_full"]).inc(),
            Err(TrySendError::Disconnected(_)) => self.metrics.audit_dropped.with_label_values(&["closed"]).inc(),
        }
    }

    /// Records a tool call.
    pub fn tool_call(&self, mut call: ToolCall) {
        if self.tx.is_none() {
            return;
        }
        truncate(&mut call.tool, MAX_FIELD);
        truncate(&mut call.caller, MAX_FIELD);
        truncate(&mut call.principal, MAX_FIELD);
        if let Some(e) = &mut call.error {
            truncate(e, MAX_MESSAGE);
        }
        if !self.settings.arguments {
            call.arguments = None;
        }
        self.send(Record::ToolCall { at_ms: now_ms(), call });
    }

    /// Records that a configuration snapshot was applied: its generation, how many providers it
    /// has, and what changed (`change`: the reload's report, `null` at start).
    pub fn config_applied(&self, generation: u64, providers: usize, change: Value) {
        self.send(Record::Config { at_ms: now_ms(), generation, providers, change });
    }

    /// Records that authorization refused `item` (a tool, prompt or resource of `provider`) to
    /// `principal`, and the rule that decided.
    pub fn access_denied(&self, principal: &str, era: &'static str, provider: &str, item: &str, rule: &str) {
        let (mut principal, mut item) = (principal.to_owned(), item.to_owned());
        truncate(&mut principal, MAX_FIELD);
        truncate(&mut item, MAX_FIELD);
        let (provider, rule) = (provider.to_owned(), rule.to_owned());
        self.send(Record::AccessDenied { at_ms: now_ms(), principal, era, provider, item, rule });
    }

    /// Records what discovery did to a provider: `discovered`, `changed`, `removed`,
    /// `quarantined` or `approved`, by which source (its index), and why.
    pub fn discovery(&self, action: &'static str, provider: &str, source: Option<usize>, detail: &str) {
        let mut detail = detail.to_owned();
        truncate(&mut detail, MAX_MESSAGE);
        self.send(Record::Discovery { at_ms: now_ms(), action, provider: provider.to_owned(), source, detail });
    }

    /// Records that a candidate configuration was rejected (the running one stays).
    pub fn config_rejected(&self, trigger: &str, error: &str) {
        let mut error = error.to_owned();
        truncate(&mut error, MAX_MESSAGE * 8);
        self.send(Record::ConfigRejected { at_ms: now_ms(), trigger: trigger.to_owned(), error });
    }

    /// Writes and syncs everything queued so far; returns when done (or the writer is gone).
    pub fn flush(&self) {
        let Some(tx) = &self.tx else { return };
        let (ack, done) = std::sync::mpsc::channel();
        if tx.send(Message::Flush(ack)).is_ok() {
            let _ = done.recv_timeout(Duration::from_secs(10));
        }
    }

    /// Drains, syncs and stops the writer (clean shutdown); blocks until it is done. Records
    /// sent later are dropped (and counted).
    pub fn close(&self) {
        let Some(tx) = &self.tx else { return };
        let Some(handle) = self.writer.lock().take() else { return };
        if tx.send(Message::Close).is_ok() && handle.join().is_err() {
            tracing::error!("the audit writer panicked");
        }
    }

    /// Records matching `filter`, oldest first, at most `filter.limit` (the latest ones). The
    /// trail is read from its newest record backwards and at most [`MAX_SCAN`] bytes of it per
    /// query, one query at a time: a query cannot make the gateway parse its whole history.
    pub fn query(&self, filter: &Filter) -> Result<Answer, String> {
        if !self.enabled() {
            return Err("the audit log is disabled (observability.audit.enabled)".into());
        }
        self.flush();
        let _one_at_a_time = self.querying.lock();
        let mut files = vec![self.settings.path.clone()];
        files.extend((1..=self.settings.keep).map(|i| rotated(&self.settings.path, i)).filter(|p| p.exists()));
        let mut newest_first = Vec::new();
        let mut budget = MAX_SCAN;
        let mut truncated = false;
        'files: for path in files {
            let Ok(file) = File::open(&path) else { continue };
            let mut lines = ReverseLines::new(file);
            while let Some(line) = lines.next_line() {
                let Some(left) = budget.checked_sub(line.len() + 1) else {
                    truncated = true;
                    break 'files;
                };
                budget = left;
                let Ok(record) = serde_json::from_slice::<Value>(&line) else { continue };
                if filter.matches(&record) {
                    newest_first.push(record);
                    if newest_first.len() == filter.limit {
                        break 'files;
                    }
                }
            }
        }
        if truncated {
            self.metrics.limit_hit(crate::telemetry::metrics::Limit::AuditScan);
        }
        newest_first.reverse();
        Ok(Answer { records: newest_first, truncated })
    }
}

impl EventSink for Audit {
    fn event(&self, event: &ProviderEvent) {
        self.send(Record::Provider(event.clone()));
    }
}

/// Most bytes of the trail one query reads.
pub const MAX_SCAN: usize = 32 << 20;

/// What a query found.
#[derive(Debug)]
pub struct Answer {
    /// Matching records, oldest first.
    pub records: Vec<Value>,
    /// The scan stopped at [`MAX_SCAN`] before the trail's beginning: older matches may exist
    /// (narrow the query with `since_ms`/`until_ms`).
    pub truncated: bool,
}

/// A file's lines from the last to the first, read in blocks from the end.
struct ReverseLines {
    file: File,
    /// Bytes of the file not read yet (those before `pos`).
    pos: u64,
    /// Read but not yet returned: the start of the file's unread part is before it.
    pending: Vec<u8>,
}

impl ReverseLines {
    const BLOCK: u64 = 64 << 10;

    fn new(file: File) -> Self {
        let pos = file.metadata().map_or(0, |m| m.len());
        Self { file, pos, pending: Vec::new() }
    }

    /// The previous line (without its line break), `None` at the beginning or on a read error.
    fn next_line(&mut self) -> Option<Vec<u8>> {
        use std::io::{Read, Seek, SeekFrom};
        loop {
            // A trailing line break ends the last line; it does not start an empty one.
            if let Some(i) = self.pending.iter().rposition(|&b| b == b'\n') {
                let line = self.pending.split_off(i + 1);
                self.pending.truncate(i);
                if !line.is_empty() {
                    return Some(line);
                }
                continue;
            }
            if self.pos == 0 {
                return (!self.pending.is_empty()).then(|| std::mem::take(&mut self.pending));
            }
            let step = self.pos.min(Self::BLOCK);
            self.pos -= step;
            let mut block = vec![0; usize::try_from(step).ok()?];
            self.file.seek(SeekFrom::Start(self.pos)).ok()?;
            self.file.read_exact(&mut block).ok()?;
            block.append(&mut self.pending);
            self.pending = block;
        }
    }
}

/// What `registry_audit` asks for.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Records at or after this time (ms since the epoch).
    pub since_ms: Option<u64>,
    /// Records before this time.
    pub until_ms: Option<u64>,
    /// Records of this provider (or group).
    pub provider: Option<String>,
    /// Tool calls by this caller.
    pub caller: Option<String>,
    /// Records of this type (`provider_event`, `tool_call`, `config_applied`, `config_rejected`,
    /// `access_denied`, `discovery`).
    pub kind: Option<String>,
    /// Most records returned.
    pub limit: usize,
}

impl Filter {
    fn matches(&self, r: &Value) -> bool {
        let at = r.get("at_ms").and_then(Value::as_u64).unwrap_or(0);
        let field = |k: &str| r.get(k).and_then(Value::as_str);
        self.since_ms.is_none_or(|s| at >= s)
            && self.until_ms.is_none_or(|u| at < u)
            && self.provider.as_deref().is_none_or(|p| field("provider") == Some(p))
            && self.caller.as_deref().is_none_or(|c| field("caller") == Some(c) || field("principal") == Some(c))
            && self.kind.as_deref().is_none_or(|k| field("type") == Some(k))
    }
}

/// The writer thread's state.
struct Writer {
    settings: hangar_config::Audit,
    out: BufWriter<File>,
    size: u64,
    seq: u64,
    metrics: Arc<Metrics>,
    /// Written but not yet synced since.
    dirty_since: Option<Instant>,
}

impl Writer {
    fn new(settings: hangar_config::Audit, file: File, metrics: Arc<Metrics>) -> Self {
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let seq = last_seq(&settings.path);
        Self { settings, out: BufWriter::with_capacity(64 << 10, file), size, seq, metrics, dirty_since: None }
    }

    fn run(mut self, rx: Receiver<Message>) {
        loop {
            let first = match self.sync_due_in() {
                Some(wait) => match rx.recv_timeout(wait) {
                    Ok(m) => m,
                    Err(RecvTimeoutError::Timeout) => {
                        self.sync();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match rx.recv() {
                    Ok(m) => m,
                    Err(_) => break,
                },
            };
            let mut acks = Vec::new();
            let mut next = Some(first);
            let mut closing = false;
            // Everything queued now is one batch: one flush, at most one sync.
            while let Some(message) = next {
                match message {
                    Message::Record(r) => self.write(r),
                    Message::Flush(ack) => acks.push(ack),
                    Message::Close => closing = true,
                }
                next = rx.try_recv().ok();
            }
            if let Err(e) = self.out.flush() {
                self.failed("write", &e);
            }
            self.dirty_since.get_or_insert_with(Instant::now);
            if matches!(self.settings.fsync, Fsync::Always) || !acks.is_empty() {
                self.sync();
            }
            for ack in acks {
                let _ = ack.send(());
            }
            if closing {
                break;
            }
        }
        let _ = self.out.flush();
        self.sync();
    }

    /// How long until written records must be synced (`None`: nothing pending or no deadline).
    fn sync_due_in(&self) -> Option<Duration> {
        let since = self.dirty_since?;
        match self.settings.fsync {
            Fsync::Interval(every) => Some(every.saturating_sub(since.elapsed())),
            Fsync::Always | Fsync::Never => None,
        }
    }

    fn sync(&mut self) {
        if self.dirty_since.take().is_some() && !matches!(self.settings.fsync, Fsync::Never) {
            if let Err(e) = self.out.get_ref().sync_data() {
                self.failed("sync", &e);
            }
        }
    }

    fn write(&mut self, mut record: Record) {
        self.seq += 1;
        if let Record::ToolCall { call, .. } = &mut record {
            if let Some(args) = &mut call.arguments {
                redact(args, &self.settings.redact);
            }
        }
        let mut json = record.to_json();
        json["seq"] = self.seq.into();
        let mut line = json.to_string();
        line.push('\n');
        if self.size > 0 && self.size + line.len() as u64 > self.settings.max_bytes {
            self.rotate();
        }
        match self.out.write_all(line.as_bytes()) {
            Ok(()) => self.size += line.len() as u64,
            Err(e) => self.failed("write", &e),
        }
    }

    /// `audit.jsonl` → `audit.jsonl.1` → … → `audit.jsonl.<keep>` (the oldest is removed).
    fn rotate(&mut self) {
        let _ = self.out.flush();
        let _ = self.out.get_ref().sync_data();
        let path = self.settings.path.clone();
        let keep = self.settings.keep;
        if keep == 0 {
            let _ = std::fs::remove_file(&path);
        } else {
            let _ = std::fs::remove_file(rotated(&path, keep));
            for i in (1..keep).rev() {
                let _ = std::fs::rename(rotated(&path, i), rotated(&path, i + 1));
            }
            let _ = std::fs::rename(&path, rotated(&path, 1));
        }
        match open_append(&path) {
            Ok(f) => {
                self.out = BufWriter::with_capacity(64 << 10, f);
                self.size = 0;
            }
            Err(e) => self.failed("rotate", &e),
        }
    }

    fn failed(&self, what: &'static str, e: &std::io::Error) {
        self.metrics.audit_dropped.with_label_values(&[what]).inc();
        tracing::error!(path = %self.settings.path.display(), "audit log {what} failed: {e}");
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

fn rotated(path: &Path, i: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{i}"));
    PathBuf::from(s)
}

/// The last `seq` in the current file, so numbering continues across restarts.
fn last_seq(path: &Path) -> u64 {
    let Ok(file) = File::open(path) else { return 0 };
    BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str::<Value>(&l).ok()?.get("seq")?.as_u64())
        .last()
        .unwrap_or(0)
}

/// Replaces the values under keys containing any of `keys` (lower-case) with `"[REDACTED]"`.
pub fn redact(v: &mut Value, keys: &[String]) {
    match v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                let lower = k.to_ascii_lowercase();
                if keys.iter().any(|r| lower.contains(r.as_str())) {
                    *val = Value::String("[REDACTED]".into());
                } else {
                    redact(val, keys);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| redact(i, keys)),
        _ => {}
    }
}

fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
}

#[cfg(test)]
mod tests;
