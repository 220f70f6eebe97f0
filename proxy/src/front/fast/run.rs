//! A fast-path call on its way: the exchange with the chosen member, another member when a
//! group's call failed where repeating it is safe, and the reply relayed to the client.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use hangar_config::Secret;
use http::HeaderName;
use serde_json::value::RawValue;

use super::legacy::{Continuation, LegacyCall};
use crate::balance::retry::{self, MAX_ATTEMPTS};
use crate::front::replier::Replier;
use crate::jsonrpc::error_bytes;
use crate::jsonrpc::outcome::{self, Outcome};
use crate::jsonrpc::parse::{Envelope, Kind};
use crate::jsonrpc::sse;
use crate::proto::protocol::Era;
use crate::state::{AppState, Snapshot};
use crate::telemetry::calls::{CallOutcome, CallRecord, ToolSeries, UNLISTED_TOOL};
use crate::telemetry::traces::{AttemptTrace, RequestTrace};
use crate::upstream::http::{Body, HttpError, Request, Response};
use crate::upstream::remote::Remote;
use crate::upstream::{record_outcome, CallError};

/// A call on the fast path: where it goes and what to record about it.
pub struct FastRoute {
    pub(super) snap: Arc<Snapshot>,
    /// The provider or group the call was addressed to.
    pub(super) target: usize,
    /// The member (or provider) of the current attempt.
    pub(super) member: usize,
    pub(super) remote: Arc<Remote>,
    /// Members tried and failed, in order.
    pub(super) tried: Vec<usize>,
    /// Whether repeating the call after it reached a member is harmless.
    pub(super) idempotent: bool,
    pub(super) method: &'static str,
    /// Whether a provider lists the name (see [`super::Destination::listed`]).
    pub(super) listed: bool,
    /// The tool's call series (see [`super::Destination::series`]).
    pub(super) series: Option<Arc<ToolSeries>>,
    /// The exposed tool or prompt name.
    pub(super) name: String,
    /// `Mcp-Name` for the upstream when it is not `name[own_at..]` as it is (a name that had
    /// to be encoded for a header): one allocation less for nearly every call.
    pub(super) encoded_name: Option<String>,
    /// Where the provider's own tool name starts in `name` (after the prefix).
    pub(super) own_at: usize,
    /// The body as the upstream gets it.
    pub(super) body: Body,
    /// The id the upstream answers: the client's for a modern call, the gateway's for a legacy
    /// session's.
    pub(super) id: Box<RawValue>,
    pub(super) caller: Option<String>,
    pub(super) arguments: Option<serde_json::Value>,
    pub(super) trace: Option<RequestTrace>,
    pub(super) principal: Arc<crate::auth::Principal>,
    /// The client's `Authorization` header, kept only when a provider the call may reach is sent
    /// its clients' tokens.
    pub(super) credential: Option<Secret>,
    pub(super) started: Instant,
    /// The client's era.
    pub(super) era: Era,
    /// What a legacy session's call needs besides.
    pub(super) legacy: Option<Box<LegacyCall>>,
}

/// What the upstream answered.
pub(super) enum Upstream {
    /// A reply read whole.
    Whole { status: u16, content_type: std::borrow::Cow<'static, str>, body: Bytes },
    /// An SSE stream, to relay as it comes.
    Stream(Box<Response>),
}

/// The content type a whole reply is relayed with: the upstream's, or JSON when it sent none
/// (or one that is not UTF-8). The usual one is not copied.
fn relayed_type(sent: Option<&[u8]>) -> std::borrow::Cow<'static, str> {
    const JSON: &str = "application/json";
    match sent {
        Some(b"application/json") | None => JSON.into(),
        Some(other) => std::str::from_utf8(other).map_or(JSON.into(), |t| t.to_owned().into()),
    }
}

/// How an attempt ended.
pub(super) enum Attempt {
    /// The reply went to the client.
    Answered(CallOutcome),
    /// Nothing reached the client; another member may be tried.
    Failed(CallError),
    /// The reply was partly written when it failed: nothing more can be done.
    Broken(CallError),
    /// The client cancelled the call (2026-07-28: by going away; legacy: with
    /// `notifications/cancelled`): says nothing about the member.
    Cancelled,
    /// A legacy client went away: the call had its grace, and said this if it ended within it.
    Abandoned(Option<CallOutcome>),
    /// A legacy session's call goes on in the slow path's hands.
    HandOff(Continuation),
}

impl FastRoute {
    /// Sends the call, trying another group member when that is safe, and answers the client.
    pub async fn run(mut self, state: &Arc<AppState>, client: &mut impl Replier) -> pingora_core::Result<()> {
        let pool = self.snap.routes.pool(self.target);
        let mut legacy = self.legacy.take();
        let (outcome, error) = loop {
            let lifecycle = self.snap.routes.providers[self.member].lifecycle.clone();
            let in_flight = lifecycle.begin_call();
            let span = self
                .trace
                .as_ref()
                .map(|t| t.attempt(self.snap.routes.providers[self.member].name(), self.tried.len() + 1));
            let attempt = self.attempt(client, span.as_ref(), self.deadline(), legacy.as_deref_mut()).await;
            match &attempt {
                Attempt::Answered(_) | Attempt::Abandoned(Some(_)) | Attempt::HandOff(Continuation::Rounds(_)) => {
                    record_outcome(&lifecycle, None);
                }
                Attempt::Failed(e) | Attempt::Broken(e) => record_outcome(&lifecycle, Some(e)),
                // A stream handed over is recorded when it has been read.
                Attempt::Cancelled | Attempt::Abandoned(None) | Attempt::HandOff(Continuation::Stream(_)) => {}
            }
            match attempt {
                Attempt::HandOff(next) => {
                    let Some(legacy) = legacy else { return Ok(()) };
                    // Boxed, as every branch a plain call never takes: a future is as large as
                    // its largest state, and the plain call would pay for moving it.
                    return Box::pin(self.hand_off(state, client, legacy, next, in_flight)).await;
                }
                Attempt::Cancelled => {
                    end(span, CallOutcome::Cancelled, None);
                    if let Some(l) = &mut legacy {
                        // The slow path's reply to a cancelled request: an ended stream.
                        let _ = Box::pin(l.write_cancelled(client)).await;
                    }
                    break (CallOutcome::Cancelled, None);
                }
                Attempt::Abandoned(outcome) => {
                    let outcome = outcome.unwrap_or(CallOutcome::Cancelled);
                    end(span, outcome, None);
                    break (outcome, None);
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
                    match &mut legacy {
                        Some(l) => l.write(client, error_bytes(&l.client_id, &err)).await?,
                        None => client.whole(200, "application/json", &[], error_bytes(&self.id, &err).into()).await?,
                    }
                    break (outcome, Some(err.message));
                }
            }
        };
        if let Some(l) = &mut legacy {
            l.release();
        }
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
        Some((member, super::modern_remote(&self.snap, member)?))
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
    pub(super) fn deadline(&self) -> tokio::time::Instant {
        let providers = &self.snap.routes.providers;
        let limit = providers[self.target].config.call_timeout.min(providers[self.member].config.call_timeout);
        tokio::time::Instant::from_std(self.started + limit)
    }

    /// One exchange with the current member. A modern client that goes away meanwhile cancels
    /// the call: the upstream connection is dropped, which is how a 2026-07-28 server learns of
    /// it; so does the deadline, after which the client gets a timeout error. A legacy session's
    /// call is cancelled by `notifications/cancelled` instead, and answered as the slow path
    /// answers it.
    ///
    /// Waiting for the reply and relaying it are functions of their own: a future keeps a local
    /// apart from every other one whose storage is live at the same time, so the exchange's
    /// state and the relay's would otherwise be kept side by side (a third of this future).
    async fn attempt(
        &self,
        client: &mut impl Replier,
        span: Option<&AttemptTrace>,
        deadline: tokio::time::Instant,
        mut legacy: Option<&mut LegacyCall>,
    ) -> Attempt {
        match self.reply(client, span, deadline, legacy.as_deref_mut()).await {
            Err(ended) => ended,
            Ok(Err(e)) => Attempt::Failed(e),
            Ok(Ok(reply)) => self.relay(client, reply, deadline, legacy).await,
        }
    }

    /// The member's reply, or how the attempt ended without one (see [`Self::attempt`]).
    async fn reply(
        &self,
        client: &mut impl Replier,
        span: Option<&AttemptTrace>,
        deadline: tokio::time::Instant,
        mut legacy: Option<&mut LegacyCall>,
    ) -> Result<Result<Upstream, CallError>, Attempt> {
        // The exchange's every wait ends by the deadline: no timer of its own around it.
        let exchange = async { self.by_deadline(self.exchange(span, deadline).await, deadline) };
        tokio::pin!(exchange);
        let cancelled = async {
            match legacy.as_deref_mut() {
                Some(l) => l.cancelled().await,
                None => std::future::pending().await,
            }
        };
        // Biased, the exchange first: no random draw to pick an order on every poll (an
        // exchange that is over wins over a client that left at the same moment).
        tokio::select! {
            biased;
            r = &mut exchange => Ok(r),
            () = client.gone() => Err(match legacy {
                Some(l) => Box::pin(Self::abandoned(exchange, l)).await,
                None => Attempt::Cancelled,
            }),
            () = cancelled => Err(Attempt::Cancelled),
        }
    }

    /// Relays what the member answered to the client (a legacy session's call: or hands it
    /// over). A function of its own, so the attempt's future holds one state for all of this.
    async fn relay(
        &self,
        client: &mut impl Replier,
        reply: Upstream,
        deadline: tokio::time::Instant,
        legacy: Option<&mut LegacyCall>,
    ) -> Attempt {
        let Some(legacy) = legacy else {
            return match reply {
                Upstream::Stream(resp) => {
                    let provider = self.snap.routes.providers[self.member].name();
                    stream(client, *resp, &self.id, provider, || self.timed_out(deadline)).await
                }
                Upstream::Whole { status, content_type, body } => {
                    let outcome = match response_to(&body, &self.id) {
                        Ok((_, outcome)) => outcome,
                        Err(why) => return Attempt::Failed(CallError::Protocol(why)),
                    };
                    match client.whole(status, &content_type, &[], body).await {
                        Ok(()) => Attempt::Answered(outcome.into()),
                        Err(e) => Attempt::Broken(CallError::Unavailable {
                            reason: format!("client went away: {e}"),
                            never_sent: false,
                        }),
                    }
                }
            };
        };
        match reply {
            Upstream::Stream(resp) => Attempt::HandOff(Continuation::Stream(resp)),
            Upstream::Whole { body, .. } => self.answer_legacy(client, legacy, &body).await,
        }
    }

    /// `result`, with a timeout that ended at `deadline` said as the call's own (not as the
    /// upstream wait that the deadline cut short).
    pub(super) fn by_deadline<T>(
        &self,
        result: Result<T, CallError>,
        deadline: tokio::time::Instant,
    ) -> Result<T, CallError> {
        match result {
            Err(CallError::Timeout(_)) if tokio::time::Instant::now() >= deadline => Err(self.timed_out(deadline)),
            other => other,
        }
    }

    /// The error of a call that missed its deadline.
    pub(super) fn timed_out(&self, deadline: tokio::time::Instant) -> CallError {
        let limit = deadline.into_std().saturating_duration_since(self.started);
        CallError::Timeout(format!("no answer within {} s (call_timeout_s)", limit.as_secs_f64().round()))
    }

    /// Sends the request and, for a JSON reply, reads it whole.
    async fn exchange(
        &self,
        span: Option<&AttemptTrace>,
        deadline: tokio::time::Instant,
    ) -> Result<Upstream, CallError> {
        // The fields every call carries are in the upstream's pass-through start.
        let mut headers: Vec<(HeaderName, std::borrow::Cow<'_, str>)> = Vec::with_capacity(5);
        headers.push((const { HeaderName::from_static("mcp-method") }, self.method.into()));
        let upstream_name = self.encoded_name.as_deref().or_else(|| self.name.get(self.own_at..)).unwrap_or_default();
        headers.push((const { HeaderName::from_static("mcp-name") }, upstream_name.into()));
        if let Some(s) = span {
            for (k, v) in s.propagation() {
                headers.push((HeaderName::from_static(k), v.into()));
            }
        }
        let req =
            Request { method: "POST", start: None, headers, body: self.body.clone(), replayable: self.idempotent };
        let resp = self.remote.pass_through(req, self.credential.as_ref(), deadline).await?;
        if resp.is_event_stream() {
            return Ok(Upstream::Stream(Box::new(resp)));
        }
        let (status, content_type) = (resp.status, relayed_type(resp.content_type()));
        let body = resp.body(self.remote.max_body()).await?;
        match status {
            200 | 201 => Ok(Upstream::Whole { status, content_type, body }),
            202 => Err(CallError::Protocol("request accepted without an answer (HTTP 202)".into())),
            // For a legacy client, as the slow path reads a failure status.
            _ if self.era == Era::Legacy => Err(crate::upstream::remote::status_failure(status, &body)),
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
    pub(super) fn finish(&self, state: &AppState, outcome: CallOutcome, error: Option<&str>) {
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
            tool_label: if self.listed { &self.name } else { UNLISTED_TOOL },
            series: self.series.as_deref(),
            outcome,
            elapsed: self.started.elapsed(),
            caller: self.caller.as_deref().unwrap_or_default(),
            principal: &self.principal.id,
            era: self.era,
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
    response_to(body, id).map(drop)
}

/// The envelope of a whole reply that is the JSON-RPC response to request `id`, and what it
/// said; else why it is not that response.
pub(super) fn response_to<'b>(body: &'b [u8], id: &RawValue) -> Result<(Envelope<'b>, Outcome), String> {
    let (envelope, outcome) = outcome::reply(body);
    match envelope {
        Ok((env, Kind::Response)) if env.id.is_some_and(|got| same_id(got, id)) => Ok((env, outcome)),
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

/// Watches a relayed SSE reply for the response to the request, and for what the reply said (an
/// error or a tool error in any event), decoding events as they pass.
struct ResponseWatch {
    decoder: sse::Decoder,
    answered: bool,
    said: Option<Outcome>,
}

impl ResponseWatch {
    fn new() -> Self {
        Self { decoder: sse::Decoder::new(MAX_WATCHED_EVENT), answered: false, said: None }
    }

    /// Feeds a chunk; an error when the stream cannot be decoded.
    fn feed(&mut self, chunk: &[u8], id: &RawValue) -> Result<(), String> {
        let (answered, said) = (&mut self.answered, &mut self.said);
        let decoded = self.decoder.feed_with(chunk, |ev| {
            let data = ev.data.as_bytes();
            if data.is_empty() {
                return;
            }
            let this = if ev.is_message() {
                let (envelope, this) = outcome::reply(data);
                if let Ok((env, Kind::Response)) = envelope {
                    *answered |= env.id.is_some_and(|got| same_id(got, id));
                }
                this
            } else {
                outcome::of_json(data)
            };
            if this != Outcome::Result {
                *said = Some(this);
            }
        });
        decoded.map_err(|e| e.to_string())
    }

    /// What the reply said: the last event that said something, else a result.
    fn outcome(&self) -> Outcome {
        self.said.unwrap_or(Outcome::Result)
    }
}

/// Largest SSE event the fast path's watch decodes (bigger ones pass through undecoded and the
/// reply then ends with an error, as if no response came).
const MAX_WATCHED_EVENT: usize = 16 << 20;

/// Relays an SSE reply as it arrives. Once its header is written nothing can be retried. A stream
/// that ends or breaks without the response to `id` ends with an error event for it, so the
/// client is never left with an empty answer. The call's deadline ends the reads of `resp`
/// (it was sent with it), and with them the stream.
async fn stream(
    client: &mut impl Replier,
    mut resp: Response,
    id: &RawValue,
    provider: &str,
    timed_out: impl Fn() -> CallError,
) -> Attempt {
    if let Err(e) = client.stream_head(resp.status, &[]).await {
        return Attempt::Broken(CallError::Unavailable { reason: format!("client went away: {e}"), never_sent: false });
    }
    let mut watch = ResponseWatch::new();
    let failure = loop {
        let next = tokio::select! {
            biased;
            next = resp.chunk() => next,
            () = client.gone() => return Attempt::Cancelled,
        };
        match next {
            Ok(Some(chunk)) => {
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
                    return Attempt::Answered(watch.outcome().into());
                }
            }
            Ok(None) if watch.answered => break None,
            Ok(None) => break Some(CallError::Protocol("the stream ended before the response".into())),
            Err(HttpError::Deadline { .. }) => break Some(timed_out()),
            Err(e) => break Some(e.into()),
        }
    };
    let Some(failure) = failure else {
        resp.release().await;
        return match client.stream_end().await {
            Ok(()) => Attempt::Answered(watch.outcome().into()),
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
    fn whole_replies_keep_the_upstreams_content_type() {
        assert_eq!(relayed_type(Some(b"application/json")), "application/json");
        assert_eq!(relayed_type(Some(b"application/json; charset=utf-8")), "application/json; charset=utf-8");
        assert_eq!(relayed_type(None), "application/json", "none sent");
        assert_eq!(relayed_type(Some(b"application/\xff")), "application/json", "not text");
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

    #[test]
    fn the_sse_watch_learns_what_the_reply_said() {
        let seven = id("7");
        let said = |stream: &str| {
            let mut w = ResponseWatch::new();
            for chunk in stream.as_bytes().chunks(7) {
                w.feed(chunk, &seven).expect("decodes");
            }
            w.outcome()
        };
        let progress = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"error\":1}}\n\n";
        let ok = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"isError\":false}}\n\n";
        assert_eq!(said(&format!("{progress}{ok}")), Outcome::Result, "an `error` in params says nothing");
        let failed = "data: {\"jsonrpc\":\"2.0\",\"id\":7,\r\ndata: \"result\":{\"isError\":true}}\r\n\r\n";
        assert_eq!(said(failed), Outcome::ToolError, "data lines joined, CRLF line ends");
        let error = ": keep-alive\n\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"error\":{\"code\":1,\"message\":\"m\"}}\n\n";
        assert_eq!(said(error), Outcome::Error);
    }
}
