//! `registry_invoke`, `registry_invoke_ex` and `registry_invoke_stream`: a provider's tool called
//! by the provider's own name. Each attempt is the call a client makes by the exposed name
//! ([`hub::call_tool`]: authorization, argument checks, routing, metrics, audit), so the registry
//! is no way around the rules; a provider that is not exposed is refused as a direct call is.
//!
//! `_ex` adds retries of transient failures within one deadline, a correlation id and metadata
//! echoed back; `_stream` adds progress notifications under the caller's progress token: the
//! gateway's stages (cold start, calling, retrying, done) and the provider's own progress, renumbered
//! so the caller sees one increasing count.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::catalog::{DEFAULT_TIMEOUT_S, MAX_ATTEMPTS, MAX_TIMEOUT_S};
use super::{error_result, only, string_arg};
use crate::jsonrpc::{code, RpcError};
use crate::lifecycle::State;
use crate::mcp::hub::{self, ClientCtx};
use crate::mcp::server::McpServer;
use crate::routing::Routes;
use crate::telemetry::calls::CallOutcome;
use crate::upstream::{CallEvent, Events};

/// Backoff before the first retry; doubled for each next one, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(4);

/// Which of the three tools, and what it was asked.
struct Request<'a> {
    tool_name: &'a str,
    provider: usize,
    own: String,
    exposed: String,
    /// The `tools/call` params for the provider (the caller's, with name and arguments replaced).
    params: Value,
    deadline: Option<Duration>,
    attempts: u32,
    retry: bool,
    correlation_id: String,
    metadata: Option<Value>,
}

/// Runs one of the invoke tools.
pub(super) async fn run(
    server: &McpServer,
    routes: &Arc<Routes>,
    ctx: &ClientCtx,
    tool_name: &str,
    params: &Value,
    args: &Value,
    events: Events,
) -> Result<Value, RpcError> {
    let request = match parse(routes, tool_name, params, args) {
        Ok(r) => r,
        Err(why) => return Ok(error_result(&why)),
    };
    let progress = match tool_name {
        "registry_invoke_stream" => Progress::new(params, events.clone()),
        _ => Progress::none(),
    };
    attempt_all(server, routes, ctx, request, progress, events).await
}

/// Reads the arguments; a wrong one is the failure.
fn parse<'a>(routes: &Routes, tool_name: &'a str, params: &Value, args: &Value) -> Result<Request<'a>, String> {
    let (known, extended): (&[&str], bool) = match tool_name {
        "registry_invoke" => (&["provider", "tool", "arguments"], false),
        "registry_invoke_ex" => (
            &[
                "provider",
                "tool",
                "arguments",
                "timeout",
                "max_retries",
                "retry_on_error",
                "correlation_id",
                "metadata",
            ],
            true,
        ),
        _ => (&["provider", "tool", "arguments", "timeout", "max_retries", "correlation_id"], true),
    };
    only(args, known)?;
    let provider = string_arg(args, "provider")?.ok_or("arguments.provider is required")?;
    let tool = string_arg(args, "tool")?.ok_or("arguments.tool is required")?;
    let arguments = match args.get("arguments") {
        None | Some(Value::Null) => json!({}),
        Some(v @ Value::Object(_)) => v.clone(),
        Some(_) => return Err("arguments.arguments must be an object".into()),
    };
    let (idx, p) = super::provider(routes, &json!({"provider": provider}))?;
    if !p.config.expose {
        let groups: Vec<&str> = routes
            .providers
            .iter()
            .filter(|g| g.config.kind.group_member(provider).is_some())
            .map(|g| g.name())
            .collect();
        let via = if groups.is_empty() { String::new() } else { format!("; call it through {}", groups.join(", ")) };
        return Err(format!("{provider:?} is not exposed (expose: false){via}"));
    }
    // A tool trimmed by tools_include/tools_exclude is not offered, by any path.
    if !p.config.exposes(tool) {
        return Err(format!("Unknown tool: {tool:?} is not offered by {provider:?}"));
    }
    let mut inner = params.clone();
    inner["name"] = json!(tool);
    inner["arguments"] = arguments;
    let deadline = match args.get("timeout") {
        None | Some(Value::Null) if extended => Some(Duration::from_secs_f64(DEFAULT_TIMEOUT_S)),
        None | Some(Value::Null) => None,
        Some(v) => match v.as_f64() {
            Some(s) if s > 0.0 && s <= MAX_TIMEOUT_S => Some(Duration::from_secs_f64(s)),
            _ => return Err(format!("arguments.timeout must be a number of seconds above 0, at most {MAX_TIMEOUT_S}")),
        },
    };
    let attempts = match args.get("max_retries") {
        None | Some(Value::Null) if extended => 3,
        None | Some(Value::Null) => 1,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=MAX_ATTEMPTS).contains(&n) => n as u32,
            _ => return Err(format!("arguments.max_retries must be an integer from 1 to {MAX_ATTEMPTS}")),
        },
    };
    let retry = match args.get("retry_on_error") {
        None | Some(Value::Null) => extended,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("arguments.retry_on_error must be a boolean".into()),
    };
    let correlation_id = match string_arg(args, "correlation_id")? {
        Some(id) if id.len() > 128 || id.chars().any(char::is_control) => {
            return Err("arguments.correlation_id must be at most 128 printable characters".into())
        }
        Some(id) => id.to_owned(),
        None => new_correlation_id(),
    };
    let metadata = match args.get("metadata") {
        None | Some(Value::Null) => None,
        Some(v @ Value::Object(_)) => Some(v.clone()),
        Some(_) => return Err("arguments.metadata must be an object".into()),
    };
    Ok(Request {
        tool_name,
        provider: idx,
        own: tool.to_owned(),
        exposed: format!("{}{tool}", p.config.tool_prefix),
        params: inner,
        deadline,
        attempts,
        retry,
        correlation_id,
        metadata,
    })
}

/// The attempts, within the deadline, and the result.
async fn attempt_all(
    server: &McpServer,
    routes: &Arc<Routes>,
    ctx: &ClientCtx,
    r: Request<'_>,
    mut progress: Progress,
    events: Events,
) -> Result<Value, RpcError> {
    let started = Instant::now();
    let p = &routes.providers[r.provider];
    let provider_name = p.name().to_owned();
    tracing::info!(provider = %provider_name, tool = %r.own, correlation_id = %r.correlation_id, tool_name = r.tool_name, "registry invoke");
    if p.lifecycle.state() == State::Cold && !p.is_group() {
        progress.stage("cold_start", "Provider is cold, launching...").await;
    } else {
        progress.stage("ready", "Starting operation...").await;
    }
    let mut retries: Vec<&'static str> = Vec::new();
    let mut attempt = 0;
    let failure = loop {
        attempt += 1;
        let left = r.deadline.map(|d| d.saturating_sub(started.elapsed()));
        if attempt > 1 {
            progress.stage("executing", &format!("Attempt {attempt}/{}", r.attempts)).await;
        }
        let mut params = r.params.clone();
        let (call_events, relayed) = progress.channel(&mut params, &events);
        let call = hub::call_tool(server, routes, ctx, r.provider, r.own.clone(), &r.exposed, params, call_events);
        let outcome = progress.relay_while(call, relayed, left).await;
        let error = match outcome {
            Some(Ok(result)) if is_input_required(&result) => return Ok(result),
            Some(Ok(result)) => {
                let elapsed = started.elapsed();
                progress
                    .stage("complete", &format!("Operation completed in {:.0}ms", elapsed.as_secs_f64() * 1000.0))
                    .await;
                return Ok(success(&r, &provider_name, result, attempt, elapsed, retries, progress));
            }
            Some(Err(e)) => e,
            None => RpcError::new(
                code::PROVIDER_TIMEOUT,
                format!("no answer within {} s (timeout)", r.deadline.unwrap_or_default().as_secs_f64()),
            ),
        };
        let kind = CallOutcome::of_error(&error);
        let out_of_time = r.deadline.is_some_and(|d| started.elapsed() >= d);
        if !r.retry || attempt >= r.attempts || out_of_time || !transient(routes, &r, kind) {
            break (error, kind);
        }
        retries.push(kind.as_str());
        let wait = backoff(attempt).min(r.deadline.map_or(Duration::MAX, |d| d.saturating_sub(started.elapsed())));
        let short: String = error.message.chars().take(80).collect();
        progress
            .stage("retrying", &format!("Retry {}/{} in {:.1}s: {short}", attempt + 1, r.attempts, wait.as_secs_f64()))
            .await;
        tokio::time::sleep(wait).await;
    };
    let (error, kind) = failure;
    progress.stage("failed", &error.message).await;
    Ok(failed(&r, &provider_name, &error, kind, attempt, started.elapsed(), retries, progress))
}

/// Whether a failure is worth another attempt: the provider could not be reached (the call did
/// not run), or did not answer in time and the tool says running it twice is harmless.
fn transient(routes: &Routes, r: &Request<'_>, kind: CallOutcome) -> bool {
    match kind {
        CallOutcome::Unavailable => true,
        CallOutcome::Timeout => {
            routes.index.load().idempotent_tools.contains(&r.exposed)
                || crate::mcp::aggregate::tool_is_idempotent(routes, r.provider, &r.own) == Some(true)
        }
        _ => false,
    }
}

fn backoff(attempt: u32) -> Duration {
    FIRST_BACKOFF.saturating_mul(1 << attempt.saturating_sub(1).min(8)).min(MAX_BACKOFF)
}

/// A modern upstream (or the bridge) asking the caller for input: the caller answers by calling
/// the same registry tool again, so the result goes back as it is.
fn is_input_required(result: &Value) -> bool {
    result.get("resultType").and_then(Value::as_str) == Some("input_required")
}

/// The provider's result, passed on with where it ran (and for `_ex`/`_stream` how).
fn success(
    r: &Request<'_>,
    provider: &str,
    result: Value,
    attempts: u32,
    elapsed: Duration,
    retries: Vec<&'static str>,
    progress: Progress,
) -> Value {
    let is_error = result.get("isError").and_then(Value::as_bool).unwrap_or(false);
    let mut structured = json!({"provider": provider, "tool": r.own, "isError": is_error, "result": result});
    let mut reply = json!({
        "content": result.get("content").cloned().unwrap_or_else(|| json!([])),
        "isError": is_error,
    });
    if r.tool_name != "registry_invoke" {
        let mut meta = retry_metadata(r, attempts, elapsed, retries);
        if is_error {
            let text = text_of(&result);
            meta["final_error_reason"] = json!("tool_error");
            meta["recovery_hints"] = json!([
                format!("the tool answered with an error: {text}"),
                "check the arguments against registry_tools"
            ]);
        }
        attach(r, &mut structured, &mut reply, meta, progress);
    }
    reply["structuredContent"] = structured;
    reply
}

/// A failed call: a tool error with the reason (and for `_ex`/`_stream` the attempts made).
#[allow(clippy::too_many_arguments)]
fn failed(
    r: &Request<'_>,
    provider: &str,
    error: &RpcError,
    kind: CallOutcome,
    attempts: u32,
    elapsed: Duration,
    retries: Vec<&'static str>,
    progress: Progress,
) -> Value {
    let message = format!("Error executing tool {}: {}", r.own, error.message);
    let mut reply = error_result(&message);
    if r.tool_name != "registry_invoke" {
        let mut meta = retry_metadata(r, attempts, elapsed, retries);
        let (reason, hints) = classify(error, kind);
        meta["final_error_reason"] = json!(reason);
        meta["recovery_hints"] = json!(hints);
        let mut structured =
            json!({"provider": provider, "tool": r.own, "isError": true, "result": {"error": error.message}});
        attach(r, &mut structured, &mut reply, meta, progress);
        reply["structuredContent"] = structured;
    }
    reply
}

/// Adds `_ex`/`_stream`'s extras to the result: in the structured content, and at the top level
/// under the Python MCP Hangar's names (`_retry_metadata`, `_progress`).
fn attach(r: &Request<'_>, structured: &mut Value, reply: &mut Value, meta: Value, progress: Progress) {
    structured["retry_metadata"] = meta.clone();
    reply["_retry_metadata"] = meta;
    if let Some(m) = &r.metadata {
        structured["metadata"] = m.clone();
        reply["metadata"] = m.clone();
    }
    if r.tool_name == "registry_invoke_stream" {
        let stages = json!(progress.stages);
        structured["progress"] = stages.clone();
        reply["_progress"] = stages;
    }
}

fn retry_metadata(r: &Request<'_>, attempts: u32, elapsed: Duration, retries: Vec<&'static str>) -> Value {
    json!({
        "correlation_id": r.correlation_id,
        "attempts": attempts,
        "total_time_ms": (elapsed.as_secs_f64() * 1000.0 * 100.0).round() / 100.0,
        "retries": retries,
    })
}

/// Why a call failed, and what an operator can do about it.
fn classify(error: &RpcError, kind: CallOutcome) -> (&'static str, Vec<&'static str>) {
    match (kind, error.code) {
        (_, code::FORBIDDEN) => ("forbidden", vec!["the caller's roles or the rules do not allow this tool"]),
        (_, code::INVALID_PARAMS) => {
            ("invalid_arguments", vec!["check the arguments against the tool's inputSchema (registry_tools)"])
        }
        (CallOutcome::Unavailable, _) => (
            "provider_unavailable",
            vec![
                "registry_details shows the provider's last error and health checks",
                "registry_start starts it again",
            ],
        ),
        (CallOutcome::Timeout, _) => {
            ("timeout", vec!["give the call a longer timeout", "registry_details shows how slow the provider has been"])
        }
        (CallOutcome::ProtocolError, _) => {
            ("protocol_error", vec!["the provider answered with something that is not MCP: check its logs"])
        }
        _ => ("provider_error", vec!["the provider refused the call: see the message"]),
    }
}

fn text_of(result: &Value) -> String {
    let parts = result.get("content").and_then(Value::as_array).into_iter().flatten();
    let text: String = parts.filter_map(|c| c.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join(" ");
    text.chars().take(200).collect()
}

/// A new correlation id (UUID v4 form).
fn new_correlation_id() -> String {
    let b: [u8; 16] = rand::random();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:x}{:03x}-{:012x}",
        u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_be_bytes([b[4], b[5]]),
        u16::from_be_bytes([b[6], b[7]]) & 0x0fff,
        8 | (b[8] & 0x3),
        u16::from_be_bytes([b[9], b[10]]) & 0x0fff,
        u64::from_be_bytes([0, 0, b[11], b[12], b[13], b[14], b[15], b[10]]),
    )
}

/// Progress notifications for `registry_invoke_stream`: under the caller's progress token, with
/// one counter for the gateway's stages and the provider's own progress (which it sends under a
/// token of the gateway's, so it can be told apart and renumbered).
struct Progress {
    /// The caller's token and where its notifications go; `None`: nobody to tell.
    to: Option<(Value, mpsc::Sender<CallEvent>)>,
    /// What other messages of the provider's (log messages, requests) go to.
    events: Events,
    /// The gateway's token for the provider's progress.
    inner_token: String,
    count: u64,
    started: Instant,
    /// The stages so far (the result's `progress`).
    stages: Vec<Value>,
    /// Whether the stages are recorded at all (`registry_invoke_stream`).
    recording: bool,
}

impl Progress {
    fn none() -> Self {
        Self {
            to: None,
            events: None,
            inner_token: String::new(),
            count: 0,
            started: Instant::now(),
            stages: Vec::new(),
            recording: false,
        }
    }

    fn new(params: &Value, events: Events) -> Self {
        let token = params.get("_meta").and_then(|m| m.get("progressToken")).filter(|t| t.is_string() || t.is_number());
        Self {
            to: token.cloned().zip(events.clone()),
            events,
            inner_token: format!("hangar-progress-{}", new_correlation_id()),
            recording: true,
            ..Self::none()
        }
    }

    /// Records a stage and tells the caller.
    async fn stage(&mut self, stage: &str, message: &str) {
        if !self.recording {
            return;
        }
        let elapsed_ms = (self.started.elapsed().as_secs_f64() * 1000.0 * 100.0).round() / 100.0;
        self.stages.push(json!({"stage": stage, "message": message, "elapsed_ms": elapsed_ms}));
        self.notify(&format!("[{stage}] {message}")).await;
    }

    async fn notify(&mut self, message: &str) {
        let Some((token, tx)) = &self.to else { return };
        self.count += 1;
        let note = json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": token, "progress": self.count, "message": message}});
        let _ = tx.send(CallEvent::Notification(note)).await;
    }

    /// The events channel for one attempt's call. For `_stream`, the attempt's params get the
    /// gateway's progress token and the provider's messages come back on the receiver returned
    /// (for [`Self::relay_while`]); otherwise they go straight to the caller's `events`.
    fn channel(&self, params: &mut Value, events: &Events) -> (Events, Option<mpsc::Receiver<CallEvent>>) {
        if !self.recording {
            return (events.clone(), None);
        }
        if let Some(p) = params.as_object_mut() {
            let meta = p.entry("_meta").or_insert_with(|| json!({}));
            if let Value::Object(m) = meta {
                m.insert("progressToken".into(), json!(self.inner_token));
            }
        }
        let (tx, rx) = mpsc::channel(64);
        (Some(tx), Some(rx))
    }

    /// Runs `call` within `left` (`None`: no bound of its own), relaying what the provider sends
    /// on `relayed` meanwhile; `None` when time ran out.
    async fn relay_while(
        &mut self,
        call: impl std::future::Future<Output = Result<Value, RpcError>>,
        relayed: Option<mpsc::Receiver<CallEvent>>,
        left: Option<Duration>,
    ) -> Option<Result<Value, RpcError>> {
        let sleep = tokio::time::sleep(left.unwrap_or(Duration::from_secs(u32::MAX.into())));
        tokio::pin!(sleep);
        tokio::pin!(call);
        let Some(mut rx) = relayed else {
            return tokio::select! {
                r = &mut call => Some(r),
                () = &mut sleep, if left.is_some() => None,
            };
        };
        // The call holds the only sender: the channel closes when the call ends.
        let mut open = true;
        let result = loop {
            tokio::select! {
                biased;
                ev = rx.recv(), if open => match ev {
                    Some(ev) => self.relay(ev).await,
                    None => open = false,
                },
                r = &mut call => break Some(r),
                () = &mut sleep, if left.is_some() => break None,
            }
        };
        while let Ok(ev) = rx.try_recv() {
            self.relay(ev).await;
        }
        result
    }

    /// One message the provider sent during the call: its progress renumbered under the caller's
    /// token, anything else passed on.
    async fn relay(&mut self, ev: CallEvent) {
        if let CallEvent::Notification(n) = &ev {
            let p = &n["params"];
            if n["method"] == "notifications/progress" && p["progressToken"] == self.inner_token.as_str() {
                let of = match (p["progress"].as_f64(), p["total"].as_f64()) {
                    (Some(done), Some(total)) => format!("{done}/{total}"),
                    (Some(done), None) => format!("{done}"),
                    _ => String::new(),
                };
                let message = p["message"].as_str().map(|m| format!(" {m}")).unwrap_or_default();
                self.notify(&format!("[provider] {of}{message}")).await;
                return;
            }
        }
        match (&self.events, ev) {
            (Some(tx), ev) => {
                let _ = tx.send(ev).await;
            }
            (None, CallEvent::Request(req)) => {
                let _ = req.respond.send(Err(RpcError::new(code::METHOD_NOT_FOUND, "the client cannot take requests")));
            }
            (None, CallEvent::Notification(_)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlation_ids_look_like_uuids_and_differ() {
        let (a, b) = (new_correlation_id(), new_correlation_id());
        assert_ne!(a, b);
        let parts: Vec<usize> = a.split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12], "{a}");
        assert_eq!(&a[14..15], "4", "version 4: {a}");
    }

    #[test]
    fn backoff_doubles_up_to_a_bound() {
        assert_eq!(backoff(1), FIRST_BACKOFF);
        assert_eq!(backoff(2), FIRST_BACKOFF * 2);
        assert_eq!(backoff(9), MAX_BACKOFF);
    }
}
