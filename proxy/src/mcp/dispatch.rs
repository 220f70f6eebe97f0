//! Sending a routed call to its provider, or for a group to the member its strategy picks:
//! another member is tried when that is safe (see [`crate::balance::retry`]), and a legacy client
//! session stays on the member that holds its upstream session.

use std::sync::Arc;

use serde_json::Value;

use crate::balance::retry::{self, MAX_ATTEMPTS};
use crate::jsonrpc::{code, RpcError};
use crate::mcp::hub::ClientCtx;
use crate::mcp::session::{ClientSession, Pin};
use crate::proto::protocol::Era;
use crate::routing::{Backend, Routes};
use crate::telemetry::traces::RequestTrace;
use crate::upstream::{CallError, Caller, Events};

/// One call addressed to a provider or group.
pub struct Dispatch {
    routes: Arc<Routes>,
    idx: usize,
    /// Whether repeating the call is harmless.
    idempotent: bool,
    /// The tool it calls (its own name), whose annotations a failure looks up again: the gateway
    /// may have learnt them since the call began.
    tool: Option<String>,
    /// What `consistent_hash` hashes.
    key: Vec<u8>,
    /// The legacy session, which a group pins.
    session: Option<Arc<ClientSession>>,
    /// The member the session is pinned to.
    pinned: Option<usize>,
    /// The request's span, when tracing is on (attempts are its children).
    trace: Option<RequestTrace>,
}

impl Dispatch {
    /// A call of `method` with `params` to provider `idx`; `idempotent_tool` says whether the
    /// tool it names is marked safe to repeat. Fails with [`code::SESSION_LOST`] when the member
    /// holding the legacy session's upstream session went down since.
    pub fn new(
        routes: Arc<Routes>,
        ctx: &ClientCtx,
        idx: usize,
        method: &str,
        params: &Value,
        idempotent_tool: bool,
    ) -> Result<Self, RpcError> {
        let mut key = Vec::new();
        let mut pinned = None;
        let mut session = None;
        if let Some(pool) = routes.pool(idx) {
            if let Some(hash_key) = &pool.hash_key {
                key = hash_key.bytes(params, &ctx.identity());
            }
            if let Some(s) = &ctx.session {
                pinned = pinned_member(&routes, idx, s)?;
                session = Some(s.clone());
            }
        }
        let idempotent = idempotent_tool || retry::is_read_only_method(method);
        let tool = (method == "tools/call" && !idempotent)
            .then(|| params.get("name").and_then(Value::as_str).map(str::to_owned))
            .flatten();
        Ok(Self { routes, idx, idempotent, tool, key, session, pinned, trace: ctx.trace.clone() })
    }

    /// The routing table the call is made in.
    pub fn routes(&self) -> &Arc<Routes> {
        &self.routes
    }

    /// Makes the call; returns the member (or provider) that answered, and its answer.
    pub async fn call(
        &self,
        method: &str,
        mut params: Value,
        caller: &Caller,
        events: Events,
    ) -> Result<(usize, Value), RpcError> {
        let routes = &self.routes;
        let pool = routes.pool(self.idx);
        if let Some(pool) = pool {
            pool.budget.earn();
        }
        let mut tried: Vec<usize> = Vec::new();
        let mut last_error: Option<RpcError> = None;
        let started = tokio::time::Instant::now();
        loop {
            let chosen = match self.pinned {
                Some(m) => routes.concrete(m).map(|u| (m, u)),
                None => routes.choose(self.idx, &self.key, &tried),
            };
            let (member, upstream) = match (chosen, last_error) {
                (Ok(c), _) => c,
                // Out of members to try: the last call's failure says more.
                (Err(_), Some(e)) => return Err(e),
                (Err(e), None) => return Err(e),
            };
            let last_try = pool.is_none() || self.pinned.is_some() || tried.len() + 1 >= MAX_ATTEMPTS;
            let mut attempt = if last_try { std::mem::take(&mut params) } else { params.clone() };
            let name = routes.providers[member].name();
            let span = self.trace.as_ref().map(|t| t.attempt(name, tried.len() + 1));
            if let Some(s) = &span {
                s.inject_meta(&mut attempt);
            }
            // The call's deadline: the target's (a group's covers its retries) or the member's,
            // whichever ends first. Dropping the call cancels it upstream.
            let limit =
                routes.providers[self.idx].config.call_timeout.min(routes.providers[member].config.call_timeout);
            let call = upstream.call(method, attempt, caller, events.clone());
            let outcome = match tokio::time::timeout_at(started + limit, call).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    let e = CallError::Timeout(format!("no answer within {} s (call_timeout_s)", limit.as_secs_f64()));
                    crate::upstream::record_outcome(&routes.providers[member].lifecycle, Some(&e));
                    Err(e)
                }
            };
            if let Some(s) = &span {
                let error = outcome.as_ref().err().map(ToString::to_string);
                s.end(attempt_outcome(&outcome), error.as_deref());
            }
            match outcome {
                Ok(result) => {
                    self.pin(member);
                    return Ok((member, result));
                }
                Err(e @ CallError::Unavailable { .. }) if self.pinned.is_some() => {
                    // The member holding the session cannot be reached: the session is gone
                    // with it, and the client is better off starting afresh elsewhere.
                    return Err(self.lost(&format!("{name} failed: {e}")));
                }
                Err(e) => {
                    let out_of_time = started.elapsed() >= routes.providers[self.idx].config.call_timeout;
                    let retry = !last_try
                        && !out_of_time
                        && retry::may_retry(&e, self.idempotent())
                        && pool.is_some_and(|p| p.budget.spend());
                    if !retry {
                        return Err(e.to_rpc(name));
                    }
                    tracing::info!(
                        group = routes.providers[self.idx].name(),
                        member = name,
                        "{e}; trying another member"
                    );
                    routes.metrics.retries.with_label_values(&[routes.providers[self.idx].name()]).inc();
                    tried.push(member);
                    last_error = Some(e.to_rpc(name));
                    tokio::time::sleep(retry::backoff()).await;
                }
            }
        }
    }

    /// Whether repeating the call is harmless, as far as is known now.
    fn idempotent(&self) -> bool {
        self.idempotent
            || self
                .tool
                .as_deref()
                .is_some_and(|t| crate::mcp::aggregate::tool_is_idempotent(&self.routes, self.idx, t) == Some(true))
    }

    /// Ends the pin of a session whose member went down, with the error that ends the session.
    fn lost(&self, why: &str) -> RpcError {
        let group = self.routes.providers[self.idx].name();
        if let Some(s) = &self.session {
            s.unpin(group);
        }
        session_lost(group, why)
    }

    /// Pins the legacy session to `member` when the member holds per-client upstream sessions.
    fn pin(&self, member: usize) {
        let Some(session) = &self.session else { return };
        if self.pinned == Some(member) {
            return;
        }
        let p = &self.routes.providers[member];
        let Backend::Remote(remote) = &p.backend else { return };
        if remote.known_era() == Some(Era::Legacy) {
            session.pin(Pin {
                group: self.routes.providers[self.idx].name().to_owned(),
                member: p.name().to_owned(),
                generation: p.lifecycle.generation(),
            });
        }
    }
}

/// How one attempt ended, for its span.
fn attempt_outcome(outcome: &Result<Value, CallError>) -> &'static str {
    match outcome {
        Ok(v) if v.get("isError").and_then(Value::as_bool) == Some(true) => "tool_error",
        Ok(_) => "ok",
        Err(CallError::Rpc(_)) => "error",
        Err(CallError::Unavailable { .. }) => "unavailable",
        Err(CallError::Timeout(_)) => "timeout",
        Err(CallError::Protocol(_)) => "protocol_error",
        Err(CallError::Rejected(_)) => "rejected",
    }
}

/// The member of group `idx` that `session` is pinned to, if it still holds the session. A lost
/// pin is dropped: over HTTP the session ends (the front door answers 404 from now on), while a
/// stdio client, which cannot open another session, goes on with a fresh member.
fn pinned_member(routes: &Routes, idx: usize, session: &ClientSession) -> Result<Option<usize>, RpcError> {
    let group = routes.providers[idx].name();
    let Some(pin) = session.pin_for(group) else { return Ok(None) };
    match routes.provider(&pin.member) {
        Some((m, p)) if p.lifecycle.generation() == pin.generation => Ok(Some(m)),
        _ => {
            session.unpin(group);
            Err(session_lost(group, &format!("{} went down", pin.member)))
        }
    }
}

/// The error that ends a legacy session whose upstream session was lost (the front door answers
/// it with HTTP 404).
fn session_lost(group: &str, why: &str) -> RpcError {
    RpcError::new(
        code::SESSION_LOST,
        format!("this session's upstream session in group {group:?} is lost ({why}): initialize a new session"),
    )
}
