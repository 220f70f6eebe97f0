//! A legacy (2025-xx) session's `tools/call` or `prompts/get` on the fast path, to a modern
//! upstream. The request is re-addressed as bytes (`jsonrpc::splice`): the modern `_meta`
//! envelope the slow path would add is spliced into its params and the gateway's id replaces the
//! client's; a whole JSON reply gets the client's id back and loses the fields a legacy client
//! never sees. Everything else goes on exactly as the slow path does it, by handing the call
//! over to the same machinery: an SSE reply or an MRTR `input_required` result is produced into
//! the session's resumable reply buffer by a task of its own, and written from there, so
//! progress, questions to the client, `Last-Event-ID` resumption, `notifications/cancelled` and
//! the grace a dropped connection gets are the slow path's own.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::Value;
use tokio::sync::mpsc;

use super::run::Upstream;
use super::FastRoute;
use crate::front::checks::Accepts;
use crate::front::mcp::{answer_into, produce_into, serve_reply, RESUME_GRACE};
use crate::front::replier::Replier;
use crate::front::reply::Reply;
use crate::jsonrpc::outcome;
use crate::jsonrpc::parse::{span_in, Envelope, Kind, ParamsHead};
use crate::jsonrpc::splice::{self, MetaSlot};
use crate::jsonrpc::{result_bytes, RpcError};
use crate::lifecycle::CallGuard;
use crate::mcp::bridge;
use crate::mcp::hub::{finish_result, ClientCtx};
use crate::mcp::session::{ClientSession, Tracked};
use crate::proto::protocol::Era;
use crate::routing::Routes;
use crate::state::AppState;
use crate::telemetry::calls::CallOutcome;
use crate::upstream::remote::Remote;
use crate::upstream::{record_outcome, CallError, CallEvent};

/// What a legacy session's call carries on the fast path besides a modern call's.
pub(super) struct LegacyCall {
    pub(super) session: Arc<ClientSession>,
    /// The client's own id, which its answer carries.
    pub(super) client_id: Box<RawValue>,
    /// The gateway's id for the call upstream.
    upstream_id: u64,
    /// The call's place among the session's requests in flight (fires on
    /// `notifications/cancelled`), until it is released.
    tracked: Option<Tracked>,
    accepts: Accepts,
}

/// A legacy call admitted to the fast path, not yet addressed: its place among the session's
/// requests in flight is taken, and given back if the call goes the slow way after all.
pub(super) struct Admission<'a> {
    session: &'a Arc<ClientSession>,
    client_id: &'a RawValue,
    params: &'a str,
    slot: MetaSlot,
    accepts: Accepts,
    tracked: Option<Tracked>,
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        if self.tracked.take().is_some() {
            self.session.untrack(self.client_id.get());
        }
    }
}

impl<'a> Admission<'a> {
    /// Admits a legacy session's call of provider or group `idx`, or `None` for the slow path,
    /// which answers what the fast path would not answer the same way:
    /// - a client that does not take a lone response as plain JSON (the slow path opens its
    ///   resumable stream at once);
    /// - a trace context to pass on: tracing on, or one in `_meta` (the slow path puts it in
    ///   `_meta` and in headers);
    /// - a group this session is pinned in;
    /// - a `_meta` that is no object or names 2026-07-28 keys already, a key written with
    ///   escapes, or params the slow path cannot read;
    /// - an id already in flight, or a session at its limits (the slow path says which).
    pub(super) fn check(
        state: &AppState,
        routes: &Routes,
        idx: usize,
        env: &Envelope<'a>,
        head: &ParamsHead<'a>,
        session: &'a Arc<ClientSession>,
        accepts: Accepts,
    ) -> Option<Self> {
        if !Reply::new(accepts, Vec::new()).plain_json() || state.traces.enabled() {
            return None;
        }
        if routes.pool(idx).is_some() && session.pin_for(routes.providers[idx].name()).is_some() {
            return None;
        }
        if head.meta.as_ref().is_some_and(|m| m.traceparent.is_some()) {
            return None;
        }
        let (client_id, params) = (env.id?, env.params?);
        let text = params.as_bytes();
        let slot = splice::meta_slot(text)?;
        if let MetaSlot::Inside(meta) = &slot {
            let meta = text.get(meta.clone())?;
            if splice::names_modern_keys(meta) {
                return None;
            }
        }
        // What the slow path cannot read it refuses (and says why): it must not pass here.
        if splice::may_not_make_a_tree(text) && serde_json::from_str::<Value>(params).is_err() {
            return None;
        }
        let tracked = Some(session.track(client_id.get()).ok()?);
        Some(Self { session, client_id, params, slot, accepts, tracked })
    }

    /// The request as `remote` gets it (`body`'s params with `cut`, the tool prefix's offsets in
    /// `body`, left out, and the envelope added), the id it answers to, and the call's state;
    /// `None` gives the call's place back (dropping an admission does too).
    pub(super) fn address(
        mut self,
        remote: &Remote,
        method: &str,
        body: &[u8],
        cut: std::ops::Range<usize>,
    ) -> Option<(Bytes, Box<RawValue>, LegacyCall)> {
        let upstream_id = remote.next_request_id();
        let request = self.request(upstream_id, method, body, cut)?;
        let id = RawValue::from_string(upstream_id.to_string()).ok()?;
        let call = LegacyCall {
            session: self.session.clone(),
            client_id: self.client_id.to_owned(),
            upstream_id,
            tracked: self.tracked.take(),
            accepts: self.accepts,
        };
        Some((Bytes::from(request), id, call))
    }

    fn request(&self, upstream_id: u64, method: &str, body: &[u8], cut: std::ops::Range<usize>) -> Option<Vec<u8>> {
        let params = self.params.as_bytes();
        let at = span_in(body, self.params)?.start;
        let cut = cut.start.checked_sub(at)?..cut.end.checked_sub(at)?;
        let envelope = self.session.modern_envelope();
        splice::modern_request(upstream_id, method, params, cut, &self.slot, envelope.as_bytes())
    }
}

/// How a legacy call goes on in the slow path's hands.
pub(super) enum Continuation {
    /// The upstream answered with an SSE stream: its messages are relayed as they come.
    Stream(Box<crate::upstream::http::Response>),
    /// The upstream asked for input (MRTR): the client is asked, and the call made again.
    Rounds(Value),
}

/// What a whole reply means for a legacy client.
enum Answer {
    /// The response to send, and what it says.
    Ready(Vec<u8>, CallOutcome),
    /// The upstream failed (another member may be tried).
    Failed(CallError),
    /// An `input_required` result.
    Rounds(Value),
}

/// Reads a whole successful reply to upstream request `id` for a legacy client whose request was
/// `client_id`, as the slow path reads it: an error is the upstream failing; a result is
/// re-addressed and trimmed as bytes where it can be, as a tree where it cannot.
fn answer(body: &[u8], id: &RawValue, client_id: &RawValue) -> Answer {
    let (env, outcome) = match super::run::response_to(body, id) {
        Ok(read) => read,
        Err(why) => return Answer::Failed(CallError::Protocol(why)),
    };
    let tree = |raw: &str| serde_json::from_str::<Value>(raw);
    if let Some(error) = env.error {
        let error = tree(error).unwrap_or(Value::Null);
        return Answer::Failed(CallError::Rpc(RpcError::from_value(&error)));
    }
    let Some(result) = env.result else {
        return Answer::Failed(CallError::Protocol("the reply has neither a result nor an error".into()));
    };
    if let Some(bytes) = splice::legacy_response(client_id, result) {
        return Answer::Ready(bytes, outcome.into());
    }
    match tree(result) {
        Ok(result) if bridge::is_input_required(&result) => Answer::Rounds(result),
        Ok(result) => Answer::Ready(result_bytes(client_id, &finish_result(result, Era::Legacy)), outcome.into()),
        Err(e) => Answer::Failed(CallError::Protocol(format!("the reply is not valid JSON: {e}"))),
    }
}

impl Drop for LegacyCall {
    fn drop(&mut self) {
        self.release();
    }
}

impl LegacyCall {
    /// Resolves when the client cancels the call with `notifications/cancelled`.
    pub(super) async fn cancelled(&mut self) {
        match &mut self.tracked {
            Some(t) => drop((&mut t.cancelled).await),
            None => std::future::pending().await,
        }
    }

    /// Frees the call's place among the session's requests in flight, before its answer can
    /// reach the client (who may reuse the id at once).
    pub(super) fn release(&mut self) {
        if self.tracked.take().is_some() {
            self.session.untrack(self.client_id.get());
        }
    }

    /// Writes the call's response as the slow path writes it to a client that takes a lone
    /// response as JSON (the only kind admitted): in one write. The call's place is released
    /// first.
    pub(super) async fn write(&mut self, client: &mut impl Replier, response: Vec<u8>) -> pingora_core::Result<()> {
        self.release();
        client.whole(200, "application/json", &[], Bytes::from(response)).await
    }

    /// Ends a cancelled call's reply as the slow path ends it: through a reply buffer, an ended
    /// stream (with its priming event for a 2025-11-25 client). The call's place is released
    /// first.
    pub(super) async fn write_cancelled(&mut self, client: &mut impl Replier) -> pingora_core::Result<()> {
        self.release();
        let (stream, buf) = self.session.replies.open();
        buf.finish();
        serve_reply(client, self.accepts, &self.session, stream, &buf, 0).await
    }
}

impl FastRoute {
    /// Reads a whole reply for the legacy client and answers it, or says how the call goes on.
    pub(super) async fn answer_legacy(
        &self,
        client: &mut impl Replier,
        legacy: &mut LegacyCall,
        body: &[u8],
    ) -> super::run::Attempt {
        use super::run::Attempt;
        match answer(body, &self.id, &legacy.client_id) {
            Answer::Failed(e) => Attempt::Failed(e),
            Answer::Rounds(result) => Attempt::HandOff(Continuation::Rounds(result)),
            Answer::Ready(bytes, outcome) => match legacy.write(client, bytes).await {
                Ok(()) => Attempt::Answered(outcome),
                Err(e) => Attempt::Broken(CallError::Unavailable {
                    reason: format!("client went away: {e}"),
                    never_sent: false,
                }),
            },
        }
    }

    /// The legacy client went away while the upstream was still working on its call: that is no
    /// cancellation in the legacy protocol, so the call is given the grace the slow path gives it
    /// (a cancellation still ends it). Its reply goes nowhere; what it said is still counted.
    pub(super) async fn abandoned(
        exchange: std::pin::Pin<&mut impl std::future::Future<Output = Result<Upstream, CallError>>>,
        legacy: &mut LegacyCall,
    ) -> super::run::Attempt {
        use super::run::Attempt;
        tokio::select! {
            reply = tokio::time::timeout(RESUME_GRACE, exchange) => match reply {
                Ok(Ok(Upstream::Whole { body, .. })) => Attempt::Abandoned(Some(outcome::of_json(&body).into())),
                _ => Attempt::Abandoned(None),
            },
            () = legacy.cancelled() => Attempt::Abandoned(None),
        }
    }

    /// Hands the call over: a task of its own produces the rest of it into a reply buffer of the
    /// session, and records it when it ends; the client is served from the buffer.
    pub(super) async fn hand_off(
        self,
        state: &Arc<AppState>,
        client: &mut impl Replier,
        legacy: Box<LegacyCall>,
        next: Continuation,
        in_flight: CallGuard,
    ) -> pingora_core::Result<()> {
        let (session, accepts) = (legacy.session.clone(), legacy.accepts);
        let (stream, buf) = session.replies.open();
        let (state, producing) = (state.clone(), buf.clone());
        tokio::spawn(async move {
            let mut legacy = legacy;
            let mut ctx = ClientCtx::legacy(legacy.session.clone());
            ctx.principal = self.principal.clone();
            ctx.caller.credential = self.credential.clone();
            let (tx, rx) = mpsc::channel::<CallEvent>(64);
            let work = self.go_on(next, legacy.upstream_id, &ctx, tx, in_flight);
            let outcome = produce_into(&state, &ctx, work, rx, legacy.cancelled(), &producing).await;
            legacy.release();
            let (recorded, error) = match &outcome {
                Some(result) => (CallOutcome::of(result), result.as_ref().err().map(|e| e.message.clone())),
                None => (CallOutcome::Cancelled, None),
            };
            self.finish(&state, recorded, error.as_deref());
            answer_into(&producing, &legacy.client_id, outcome);
        });
        serve_reply(client, accepts, &session, stream, &buf, 0).await
    }

    /// The rest of a handed-over call: the SSE reply read to its response (what comes before it
    /// goes to `events`), then any MRTR rounds, as the slow path makes them.
    async fn go_on(
        &self,
        next: Continuation,
        upstream_id: u64,
        ctx: &ClientCtx,
        events: mpsc::Sender<CallEvent>,
        in_flight: CallGuard,
    ) -> Result<Value, RpcError> {
        let provider = self.snap.routes.providers[self.member].name();
        let events = Some(events);
        let result = match next {
            Continuation::Stream(resp) => {
                let deadline = self.deadline();
                let read = self.remote.read_handed_over(*resp, upstream_id, self.credential.as_ref(), events.clone());
                let read =
                    tokio::time::timeout_at(deadline, read).await.unwrap_or_else(|_| Err(self.timed_out(deadline)));
                let read = self.by_deadline(read, deadline);
                record_outcome(&self.snap.routes.providers[self.member].lifecycle, read.as_ref().err());
                read.map_err(|e| e.to_rpc(provider))?
            }
            Continuation::Rounds(result) => result,
        };
        drop(in_flight);
        if !bridge::is_input_required(&result) {
            return Ok(finish_result(result, Era::Legacy));
        }
        let upstream = self.snap.routes.concrete(self.member)?;
        let body = self.body.contiguous();
        let params = match Envelope::parse(&body) {
            Ok((env, kind)) if kind == Kind::Request => env.payload(kind)?,
            _ => {
                return Err(RpcError::new(crate::jsonrpc::code::INTERNAL_ERROR, "the call's own request is unreadable"))
            }
        };
        let result = bridge::legacy_rounds(&upstream, provider, ctx, self.method, params, result, &events).await?;
        Ok(finish_result(result, Era::Legacy))
    }
}
