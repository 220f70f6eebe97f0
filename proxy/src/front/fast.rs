//! The fast path: a modern `tools/call` or `prompts/get` for a modern HTTP upstream is passed
//! through without building a JSON tree. The body was already validated against the headers; the
//! only change made to it is cutting the tool prefix out of `params.name` (a byte splice). The
//! reply's bytes go back untouched: a JSON reply is read whole first (so a failed attempt can
//! still go to another group member, and the client gets one write), an SSE reply streams.
//!
//! The exchange uses the gateway's own upstream client (`upstream::http`: Pingora's connector
//! for making connections, its own HTTP/1.1 exchange and idle pool) rather than Pingora's proxy
//! pipeline, whose per-request phases cost CPU this path has no use for (README, "Performance").

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use hangar_config::Secret;
use http::HeaderName;
use serde_json::value::RawValue;

use super::checks::Accepts;
use super::replier::Replier;
use crate::auth::{Item, Principal};
use crate::balance::retry::{self, MAX_ATTEMPTS};
use crate::jsonrpc::error_bytes;
use crate::jsonrpc::outcome::ReplyScan;
use crate::jsonrpc::parse::{span_in, Envelope, Kind, ParamsHead};
use crate::jsonrpc::sse;
use crate::mcp::arguments;
use crate::proto::fields::Fields;
use crate::proto::headers::encode_header_value;
use crate::proto::lists::ListKind;
use crate::proto::protocol::{Era, MODERN_VERSION};
use crate::routing::{Backend, Routes};
use crate::state::{AppState, Snapshot};
use crate::telemetry::calls::{CallOutcome, CallRecord};
use crate::telemetry::traces::{AttemptTrace, Propagated, RequestTrace};
use crate::upstream::http::{Request, Response};
use crate::upstream::remote::Remote;
use crate::upstream::{record_outcome, CallError};

/// A call on the fast path: where it goes and what to record about it.
pub struct FastRoute {
    snap: Arc<Snapshot>,
    /// The provider or group the call was addressed to.
    target: usize,
    /// The member (or provider) of the current attempt.
    member: usize,
    remote: Arc<Remote>,
    /// Members tried and failed, in order.
    tried: Vec<usize>,
    /// Whether repeating the call after it reached a member is harmless.
    idempotent: bool,
    method: &'static str,
    /// The exposed tool or prompt name.
    name: String,
    /// `Mcp-Name` for the upstream.
    upstream_name: String,
    /// Where the provider's own tool name starts in `name` (after the prefix).
    own_at: usize,
    /// The body as the upstream gets it.
    body: Bytes,
    id: Box<RawValue>,
    caller: Option<String>,
    arguments: Option<serde_json::Value>,
    trace: Option<RequestTrace>,
    principal: Arc<Principal>,
    /// The client's `Authorization` header, kept only when a provider the call may reach is sent
    /// its clients' tokens.
    credential: Option<Secret>,
    started: Instant,
}

/// Where a fast-path call goes, as the snapshot alone decides it (no request state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Destination {
    /// The provider or group the call is addressed to.
    pub target: usize,
    /// How many leading bytes of the exposed name are the target's prefix.
    pub prefix_len: usize,
    /// Whether repeating the call is harmless, as far as is known now.
    pub idempotent: bool,
}

/// The destination of a `tools/call` or `prompts/get` of `name` by `principal`: the name's
/// provider (by the index of listed names, else by prefix), or `None` when the call must take
/// the slow path — a gateway tool, a name no provider has, a call the caller may not make or of
/// a trimmed tool (the slow path refuses those, and records it). This is the whole routing
/// decision of the fast path, timed as it is by the routing micro-benchmark (`benches/`).
pub fn destination(routes: &Arc<Routes>, method: &str, name: &str, principal: &Principal) -> Option<Destination> {
    let kind = match method {
        "tools/call" => ListKind::Tools,
        "prompts/get" => ListKind::Prompts,
        _ => return None,
    };
    // The gateway's own tools are answered by the slow path, whatever a provider calls its tools.
    if kind == ListKind::Tools && routes.admin_tools && crate::mcp::registry::is_registry_tool(name) {
        return None;
    }
    let (target, own, idempotent) = {
        let index = routes.index.load();
        let map = if kind == ListKind::Tools { &index.tools } else { &index.prompts };
        let idempotent = kind == ListKind::Prompts || index.idempotent_tools.contains(name);
        match map.get(name) {
            Some((i, own)) => (*i, own.len(), idempotent),
            None => routes.by_prefix(name).map(|(i, rest)| (i, rest.len(), idempotent))?,
        }
    };
    let prefix_len = name.len().checked_sub(own)?;
    let (own_name, provider) = (name.get(prefix_len..)?, routes.providers.get(target)?.name());
    let item = match kind {
        ListKind::Tools => Item::Tool { provider, own: own_name, exposed: name },
        _ => Item::Prompt { provider, own: own_name, exposed: name },
    };
    if !principal.decide(&item).allowed || !routes.providers[target].config.exposes(own_name) {
        return None;
    }
    // Retry safety comes from the provider's own list, which the gateway fetches by itself when
    // it has none (a failure looks again).
    let idempotent = idempotent
        || (kind == ListKind::Tools && {
            let known = crate::mcp::aggregate::tool_is_idempotent(routes, target, own_name);
            if known.is_none() {
                crate::mcp::aggregate::learn_tools(routes, target);
            }
            known == Some(true)
        });
    Some(Destination { target, prefix_len, idempotent })
}

/// The fast route for a validated modern request, or `None` when it must take the slow path.
/// Only a client that takes both JSON and SSE replies goes fast: the reply is relayed in whatever
/// form the upstream chose.
#[allow(clippy::too_many_arguments)]
pub fn route(
    state: &AppState,
    snap: &Arc<Snapshot>,
    env: &Envelope<'_>,
    head: &ParamsHead<'_>,
    body: &Bytes,
    fields: &impl Fields,
    accepts: Accepts,
    principal: &Arc<Principal>,
) -> Option<FastRoute> {
    if !(accepts.json && accepts.sse) {
        return None;
    }
    let method = match env.method_str() {
        "tools/call" => "tools/call",
        "prompts/get" => "prompts/get",
        _ => return None,
    };
    let name = head.name.as_ref()?;
    let span = span_in(body, name)?;
    let routes = &snap.routes;
    let Destination { target: idx, prefix_len, idempotent } = destination(routes, method, name, principal)?;
    let own_name = name.get(prefix_len..)?;
    // Arguments a schema refuses go the slow way too, which answers with the failing path.
    if method == "tools/call" {
        if let Some(validator) = arguments::validator(routes, idx, own_name) {
            let parsed = match head.arguments {
                Some(raw) => Some(serde_json::from_str::<serde_json::Value>(raw.get()).ok()?),
                None => None,
            };
            arguments::check(&validator, name, parsed.as_ref()).ok()?;
        }
    }
    // Decide before choosing: a member chosen here and then handed to the slow path would be
    // chosen twice (skewing the strategy, taking two half-open probe permits).
    match routes.pool(idx) {
        // Hashing needs the parsed caller or arguments: the slow path has them.
        Some(pool) if pool.hash_key.is_some() => return None,
        Some(pool) if pool.members.iter().all(|&m| speaks_modern(snap, m)) => {}
        Some(_) => return None,
        None if speaks_modern(snap, idx) => {}
        None => return None,
    }
    // Choosing is the last step that may still send the call the slow way; nothing before it
    // leaves a trace, so the slow path (or Pingora's reader, for the express path) starts clean.
    let (member, _) = routes.choose(idx, &[], &[]).ok()?;
    if let Some(pool) = routes.pool(idx) {
        pool.budget.earn();
    }
    let remote = modern_remote(snap, member)?;
    let forwards_token = match routes.pool(idx) {
        Some(pool) => pool.members.iter().any(|&m| forwards_client_token(snap, m)),
        None => remote.forwards_client_token(),
    };
    let credential = forwards_token.then(|| fields.text("authorization").map(Secret::new)).flatten();
    let original = body;
    let body = if prefix_len == 0 {
        body.clone()
    } else {
        let mut cut = BytesMut::with_capacity(body.len() - prefix_len);
        cut.extend_from_slice(&body[..span.start]);
        cut.extend_from_slice(&body[span.start + prefix_len..]);
        cut.freeze()
    };
    let audit = &state.audit;
    Some(FastRoute {
        snap: snap.clone(),
        target: idx,
        member,
        remote,
        tried: Vec::new(),
        idempotent,
        method,
        upstream_name: encode_header_value(&name[prefix_len..]).into_owned(),
        name: name.to_string(),
        own_at: prefix_len,
        body,
        id: env.id.map(|i| i.to_owned()).unwrap_or_else(|| crate::jsonrpc::null_id().to_owned()),
        caller: audit.enabled().then(|| {
            let client = head.meta.as_ref().and_then(|m| m.client_info.as_ref()).and_then(|c| c.name.as_deref());
            client.map_or_else(|| "anonymous".to_owned(), |n| format!("client:{n}"))
        }),
        arguments: (method == "tools/call" && audit.records_arguments())
            .then(|| serde_json::from_slice::<serde_json::Value>(original).ok()?.pointer("/params/arguments").cloned())
            .flatten(),
        trace: state.traces.enabled().then(|| trace(state, method, name, head, fields)).flatten(),
        principal: principal.clone(),
        credential,
        started: Instant::now(),
    })
}

/// The span of a fast-path request: a child of the context in `_meta`, else in the headers.
fn trace(
    state: &AppState,
    method: &str,
    name: &str,
    head: &ParamsHead<'_>,
    fields: &impl Fields,
) -> Option<RequestTrace> {
    let meta = head.meta.as_ref();
    let from_meta = Propagated::new(
        meta.and_then(|m| m.traceparent.as_deref()),
        meta.and_then(|m| m.tracestate.as_deref()),
        meta.and_then(|m| m.baggage.as_deref()),
    );
    let parent = Propagated::pick(from_meta, Propagated::from_headers(fields));
    let attrs = vec![
        opentelemetry::KeyValue::new("mcp_hangar.era", "modern"),
        opentelemetry::KeyValue::new("mcp.protocol.version", MODERN_VERSION),
        opentelemetry::KeyValue::new("mcp_hangar.fast_path", true),
    ];
    state.traces.request(method, Some(name), &parent, attrs)
}

/// Whether provider `idx` is a remote upstream known to speak 2026-07-28.
fn speaks_modern(snap: &Snapshot, idx: usize) -> bool {
    matches!(&snap.routes.providers[idx].backend, Backend::Remote(r) if r.known_era() == Some(Era::Modern))
}

/// Whether provider `idx` is a remote upstream sent its clients' own tokens.
fn forwards_client_token(snap: &Snapshot, idx: usize) -> bool {
    matches!(&snap.routes.providers[idx].backend, Backend::Remote(r) if r.forwards_client_token())
}

fn modern_remote(snap: &Snapshot, idx: usize) -> Option<Arc<Remote>> {
    match &snap.routes.providers[idx].backend {
        Backend::Remote(r) if r.known_era() == Some(Era::Modern) => Some(r.clone()),
        _ => None,
    }
}

/// What the upstream answered.
enum Upstream {
    /// A reply read whole.
    Whole { status: u16, content_type: String, body: Bytes },
    /// An SSE stream, to relay as it comes.
    Stream(Box<Response>),
}

/// How an attempt ended.
enum Attempt {
    /// The reply went to the client.
    Answered(CallOutcome),
    /// Nothing reached the client; another member may be tried.
    Failed(CallError),
    /// The reply was partly written when it failed: nothing more can be done.
    Broken(CallError),
    /// The client went away (a cancellation in 2026-07-28): says nothing about the member.
    Cancelled,
}

impl FastRoute {
    /// Sends the call, trying another group member when that is safe, and answers the client.
    pub async fn run(mut self, state: &AppState, client: &mut impl Replier) -> pingora_core::Result<()> {
        let pool = self.snap.routes.pool(self.target);
        let (outcome, error) = loop {
            let lifecycle = self.snap.routes.providers[self.member].lifecycle.clone();
            let _in_flight = lifecycle.begin_call();
            let span = self
                .trace
                .as_ref()
                .map(|t| t.attempt(self.snap.routes.providers[self.member].name(), self.tried.len() + 1));
            let attempt = self.attempt(client, span.as_ref(), self.deadline()).await;
            match &attempt {
                Attempt::Answered(_) => record_outcome(&lifecycle, None),
                Attempt::Failed(e) | Attempt::Broken(e) => record_outcome(&lifecycle, Some(e)),
                Attempt::Cancelled => {}
            }
            match attempt {
                Attempt::Cancelled => {
                    end(span, CallOutcome::Cancelled, None);
                    break (CallOutcome::Cancelled, None);
                }
                Attempt::Answered(outcome) => {
                    end(span, outcome, None);
                    break (outcome, None);
                }
                Attempt::Broken(e) => {
                    let outcome = CallOutcome::of_error(&e.to_rpc(""));
                    end(span, outcome, Some(&e.to_string()));
                    break (outcome, Some(e.to_string()));
                }
                Attempt::Failed(e) => {
                    let outcome = CallOutcome::of_error(&e.to_rpc(""));
                    end(span, outcome, Some(&e.to_string()));
                    if let Some(next) = self.next_member(pool, &e) {
                        let routes = &self.snap.routes;
                        tracing::info!(
                            group = routes.providers[self.target].name(),
                            member = routes.providers[self.member].name(),
                            "{e}; trying another member"
                        );
                        routes.metrics.retries.with_label_values(&[routes.providers[self.target].name()]).inc();
                        self.tried.push(self.member);
                        (self.member, self.remote) = next;
                        tokio::time::sleep(retry::backoff()).await;
                        continue;
                    }
                    let err = e.to_rpc(self.snap.routes.providers[self.member].name());
                    client.whole(200, "application/json", error_bytes(&self.id, &err).into()).await?;
                    break (outcome, Some(err.message));
                }
            }
        };
        self.finish(state, outcome, error.as_deref());
        Ok(())
    }

    /// Another member for a failed attempt, if the call is addressed to a group, the failure
    /// allows repeating it, and attempts and the group's retry budget remain.
    fn next_member(&self, pool: Option<&crate::routing::pool::Pool>, e: &CallError) -> Option<(usize, Arc<Remote>)> {
        let pool = pool?;
        let out_of_time = self.started.elapsed() >= self.snap.routes.providers[self.target].config.call_timeout;
        if self.tried.len() + 1 >= MAX_ATTEMPTS
            || out_of_time
            || !retry::may_retry(e, self.idempotent())
            || !pool.budget.spend()
        {
            return None;
        }
        let mut tried = self.tried.clone();
        tried.push(self.member);
        let (member, _) = self.snap.routes.choose(self.target, &[], &tried).ok()?;
        Some((member, modern_remote(&self.snap, member)?))
    }

    /// Whether repeating the call is harmless, as far as is known now (the tool's annotations may
    /// have been learnt since the call began).
    fn idempotent(&self) -> bool {
        self.idempotent
            || (self.method == "tools/call"
                && self.name.get(self.own_at..).is_some_and(|own| {
                    crate::mcp::aggregate::tool_is_idempotent(&self.snap.routes, self.target, own) == Some(true)
                }))
    }

    /// When the call must have been answered: the target's `call_timeout_s` (a group's covers its
    /// retries) or the current member's, whichever ends first.
    fn deadline(&self) -> tokio::time::Instant {
        let providers = &self.snap.routes.providers;
        let limit = providers[self.target].config.call_timeout.min(providers[self.member].config.call_timeout);
        tokio::time::Instant::from_std(self.started + limit)
    }

    /// One exchange with the current member. A client that goes away meanwhile cancels the call:
    /// the upstream connection is dropped, which is how a 2026-07-28 server learns of it; so does
    /// the deadline, after which the client gets a timeout error.
    async fn attempt(
        &self,
        client: &mut impl Replier,
        span: Option<&AttemptTrace>,
        deadline: tokio::time::Instant,
    ) -> Attempt {
        let reply = tokio::select! {
            r = tokio::time::timeout_at(deadline, self.exchange(span)) => r.unwrap_or_else(|_| Err(self.timed_out(deadline))),
            () = client.gone() => return Attempt::Cancelled,
        };
        match reply {
            Err(e) => Attempt::Failed(e),
            Ok(Upstream::Stream(resp)) => {
                let provider = self.snap.routes.providers[self.member].name();
                stream(client, *resp, &self.id, provider, deadline, || self.timed_out(deadline)).await
            }
            Ok(Upstream::Whole { status, content_type, body }) => {
                if let Err(why) = check_reply(&body, &self.id) {
                    return Attempt::Failed(CallError::Protocol(why));
                }
                let mut scan = ReplyScan::new(false);
                scan.feed(&body);
                match client.whole(status, &content_type, body).await {
                    Ok(()) => Attempt::Answered(scan.outcome().into()),
                    Err(e) => Attempt::Broken(CallError::Unavailable {
                        reason: format!("client went away: {e}"),
                        never_sent: false,
                    }),
                }
            }
        }
    }

    /// The error of a call that missed its deadline.
    fn timed_out(&self, deadline: tokio::time::Instant) -> CallError {
        let limit = deadline.into_std().saturating_duration_since(self.started);
        CallError::Timeout(format!("no answer within {} s (call_timeout_s)", limit.as_secs_f64().round()))
    }

    /// Sends the request and, for a JSON reply, reads it whole.
    async fn exchange(&self, span: Option<&AttemptTrace>) -> Result<Upstream, CallError> {
        let mut headers: Vec<(HeaderName, std::borrow::Cow<'_, str>)> = Vec::with_capacity(8);
        headers.push((http::header::CONTENT_TYPE, "application/json".into()));
        headers.push((http::header::ACCEPT, "application/json, text/event-stream".into()));
        headers.push((HeaderName::from_static("mcp-protocol-version"), MODERN_VERSION.into()));
        headers.push((HeaderName::from_static("mcp-method"), self.method.into()));
        headers.push((HeaderName::from_static("mcp-name"), self.upstream_name.as_str().into()));
        if let Some(s) = span {
            for (k, v) in s.propagation() {
                headers.push((HeaderName::from_static(k), v.into()));
            }
        }
        let req = Request { method: "POST", headers, body: self.body.clone(), replayable: self.idempotent };
        let resp = self.remote.pass_through(req, self.credential.as_ref()).await?;
        if resp.is_event_stream() {
            return Ok(Upstream::Stream(Box::new(resp)));
        }
        let (status, content_type) =
            (resp.status, resp.header("content-type").unwrap_or("application/json").to_owned());
        let body = resp.body(self.remote.max_body()).await?;
        match status {
            200 | 201 => Ok(Upstream::Whole { status, content_type, body }),
            202 => Err(CallError::Protocol("request accepted without an answer (HTTP 202)".into())),
            // A JSON-RPC error with a 4xx status is the upstream answering; anything else with a
            // failure status is the upstream failing.
            400..=499 if check_reply(&body, &self.id).is_ok() => Ok(Upstream::Whole { status, content_type, body }),
            _ => {
                let text = String::from_utf8_lossy(&body[..body.len().min(200)]).trim().to_owned();
                Err(CallError::Unavailable { reason: format!("HTTP {status}: {text}"), never_sent: false })
            }
        }
    }

    /// Records the call: metrics, audit, the request span.
    fn finish(&self, state: &AppState, outcome: CallOutcome, error: Option<&str>) {
        if let Some(t) = &self.trace {
            t.end(outcome.as_str(), error);
        }
        if self.method != "tools/call" {
            return;
        }
        let routes = &self.snap.routes;
        let record = CallRecord {
            provider: routes.providers[self.target].name(),
            tool: &self.name,
            tool_label: routes.tool_label(&self.name),
            outcome,
            elapsed: self.started.elapsed(),
            caller: self.caller.as_deref().unwrap_or_default(),
            principal: &self.principal.id,
            era: Era::Modern,
            error,
            arguments: self.arguments.clone(),
        };
        record.record(&state.metrics, &state.audit);
    }
}

fn end(span: Option<AttemptTrace>, outcome: CallOutcome, error: Option<&str>) {
    if let Some(s) = span {
        s.end(outcome.as_str(), error);
    }
}

/// Whether a whole reply is a JSON-RPC response to request `id`: anything else (invalid JSON, a
/// request, another id) must not reach the client as if it were the answer.
fn check_reply(body: &[u8], id: &RawValue) -> Result<(), String> {
    match Envelope::parse(body) {
        Ok((env, Kind::Response)) if env.id.is_some_and(|got| same_id(got, id)) => Ok(()),
        Ok((env, Kind::Response)) => {
            Err(format!("the reply answers id {}, not {}", env.id.map_or("none", RawValue::get), id.get()))
        }
        Ok(_) => Err("the reply is not a JSON-RPC response".into()),
        Err(e) => Err(format!("the reply is not valid JSON-RPC: {}", e.error.message)),
    }
}

/// Whether two JSON ids are the same value, however written (`"ab"` and `"a\u0062"` are equal).
fn same_id(a: &RawValue, b: &RawValue) -> bool {
    a.get() == b.get()
        || matches!(
            (serde_json::from_str::<serde_json::Value>(a.get()), serde_json::from_str::<serde_json::Value>(b.get())),
            (Ok(x), Ok(y)) if x == y
        )
}

/// Watches a relayed SSE reply for the response to the request, decoding events as they pass.
struct ResponseWatch {
    decoder: sse::Decoder,
    answered: bool,
}

impl ResponseWatch {
    fn new() -> Self {
        Self { decoder: sse::Decoder::new(MAX_WATCHED_EVENT), answered: false }
    }

    /// Feeds a chunk; an error when the stream cannot be decoded.
    fn feed(&mut self, chunk: &[u8], id: &RawValue) -> Result<(), String> {
        let events = self.decoder.feed(chunk).map_err(|e| e.to_string())?;
        for ev in events.iter().filter(|e| e.is_message() && !e.data.is_empty()) {
            if let Ok((env, Kind::Response)) = Envelope::parse(ev.data.as_bytes()) {
                self.answered |= env.id.is_some_and(|got| same_id(got, id));
            }
        }
        Ok(())
    }
}

/// Largest SSE event the fast path's watch decodes (bigger ones pass through undecoded and the
/// reply then ends with an error, as if no response came).
const MAX_WATCHED_EVENT: usize = 16 << 20;

/// Relays an SSE reply as it arrives. Once its header is written nothing can be retried. A stream
/// that ends or breaks without the response to `id` ends with an error event for it, so the
/// client is never left with an empty answer.
async fn stream(
    client: &mut impl Replier,
    mut resp: Response,
    id: &RawValue,
    provider: &str,
    deadline: tokio::time::Instant,
    timed_out: impl Fn() -> CallError,
) -> Attempt {
    if let Err(e) = client.stream_head(resp.status).await {
        return Attempt::Broken(CallError::Unavailable { reason: format!("client went away: {e}"), never_sent: false });
    }
    let mut scan = ReplyScan::new(true);
    let mut watch = ResponseWatch::new();
    let failure = loop {
        let next = tokio::select! {
            next = resp.chunk() => next,
            () = client.gone() => return Attempt::Cancelled,
            () = tokio::time::sleep_until(deadline) => break Some(timed_out()),
        };
        match next {
            Ok(Some(chunk)) => {
                scan.feed(&chunk);
                let decoded = watch.feed(&chunk, id);
                // The answer is in and the upstream's body is over: the last piece and the end
                // of our response go out together.
                let last = decoded.is_ok() && watch.answered && resp.ended();
                let written = if last { client.stream_last(chunk).await } else { client.stream_chunk(chunk).await };
                if let Err(e) = written {
                    return Attempt::Broken(CallError::Unavailable {
                        reason: format!("client went away: {e}"),
                        never_sent: false,
                    });
                }
                if let Err(why) = decoded {
                    break Some(CallError::Protocol(why));
                }
                if last {
                    resp.release().await;
                    return Attempt::Answered(scan.outcome().into());
                }
            }
            Ok(None) if watch.answered => break None,
            Ok(None) => break Some(CallError::Protocol("the stream ended before the response".into())),
            Err(e) => break Some(e.into()),
        }
    };
    let Some(failure) = failure else {
        resp.release().await;
        return match client.stream_end().await {
            Ok(()) => Attempt::Answered(scan.outcome().into()),
            Err(e) => {
                Attempt::Broken(CallError::Unavailable { reason: format!("client went away: {e}"), never_sent: false })
            }
        };
    };
    // The client still gets an answer to its request: the error, as the stream's last event. The
    // blank lines first end an event the upstream may have left half-written.
    let error = failure.to_rpc(provider);
    let mut tail = BytesMut::from(&b"\n\n"[..]);
    tail.extend_from_slice(&sse::frame_message(&error_bytes(id, &error)));
    let _ = client.stream_chunk(tail.freeze()).await;
    let _ = client.stream_end().await;
    Attempt::Broken(failure)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).expect("raw id")
    }

    #[test]
    fn replies_must_answer_the_request() {
        let seven = id("7");
        assert_eq!(check_reply(br#"{"jsonrpc":"2.0","id":7,"result":{}}"#, &seven), Ok(()));
        assert_eq!(check_reply(br#"{"jsonrpc":"2.0","id":7,"error":{"code":1,"message":"m"}}"#, &seven), Ok(()));
        assert_eq!(check_reply(b" { \"id\" : 7 , \"jsonrpc\":\"2.0\",\"result\":null}", &seven), Ok(()));
        let other = check_reply(br#"{"jsonrpc":"2.0","id":8,"result":{}}"#, &seven).expect_err("another id");
        assert!(other.contains("answers id 8, not 7"), "{other}");
        assert!(check_reply(b"{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":", &seven).is_err(), "truncated JSON");
        assert!(check_reply(b"<html>oops</html>", &seven).is_err());
        assert!(check_reply(br#"{"jsonrpc":"2.0","id":7,"method":"x"}"#, &seven).is_err(), "a request");
        assert_eq!(check_reply(br#"{"jsonrpc":"2.0","id":"a\u0062","result":{}}"#, &id(r#""ab""#)), Ok(()));
    }

    #[test]
    fn the_sse_watch_sees_the_response_across_chunks() {
        let seven = id("7");
        let mut w = ResponseWatch::new();
        let stream = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n\
                      event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":8,\"result\":{}}\n\n";
        w.feed(stream.as_bytes(), &seven).expect("decodes");
        assert!(!w.answered, "a notification and a response to another id are not the answer");
        w.feed(b"data: {\"jsonrpc\":\"2.0\",\"id\":7,", &seven).expect("half");
        assert!(!w.answered);
        w.feed(b"\"result\":{}}\n\n", &seven).expect("rest");
        assert!(w.answered);
        assert!(ResponseWatch::new().feed(b"data: \xff\n\n", &seven).is_err(), "not UTF-8");
    }
}
