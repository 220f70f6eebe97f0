//! Bridging server→client interactions between the eras.
//!
//! - A legacy client calling a modern upstream: the upstream answers `input_required`; each of
//!   its `inputRequests` is sent to the client as a server→client request on the call's stream,
//!   and the call is retried upstream with the answers as `inputResponses` (and its
//!   `requestState`), until the upstream completes.
//! - A modern client calling a legacy upstream: the upstream sends a server→client request in the
//!   middle of the call. The call is parked (it keeps running upstream) and the client gets an
//!   `input_required` result whose `requestState` is an opaque gateway token; the client's retry
//!   carries the answers, which go to the waiting upstream, and the call resumes.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, oneshot};

use crate::jsonrpc::{code, RpcError};
use crate::mcp::hub::ClientCtx;
use crate::upstream::{CallEvent, Events, ServerRequest, Upstream};

/// Prefix of the gateway's own `requestState` tokens (anything else belongs to an upstream).
const TOKEN_PREFIX: &str = "hangar1.";
/// Most input rounds a legacy client is taken through for one call.
const MAX_ROUNDS: usize = 16;
/// How long a parked call waits for the client's retry.
const PARK_TTL: Duration = Duration::from_secs(600);
/// Most calls parked at once; the oldest is dropped beyond it.
const MAX_PARKED: usize = 10_000;

/// Whether a result is an MRTR interim result.
pub fn is_input_required(result: &Value) -> bool {
    result.get("resultType").and_then(Value::as_str) == Some("input_required")
}

/// Legacy client, modern upstream: answers each `input_required` round by asking the client.
pub async fn legacy_rounds(
    upstream: &Arc<dyn Upstream>,
    provider: &str,
    ctx: &ClientCtx,
    method: &str,
    params: Value,
    mut result: Value,
    events: &Events,
) -> Result<Value, RpcError> {
    for _ in 0..MAX_ROUNDS {
        if !is_input_required(&result) {
            return Ok(result);
        }
        let Some(tx) = events else {
            return Err(RpcError::new(
                code::INTERNAL_ERROR,
                "the provider needs input but this request cannot carry questions",
            ));
        };
        let requests = result.get("inputRequests").and_then(Value::as_object).cloned().unwrap_or_default();
        let asks = requests.into_iter().map(|(key, req)| {
            let tx = tx.clone();
            async move {
                let method = req.get("method").and_then(Value::as_str).unwrap_or_default().to_owned();
                let params = req.get("params").cloned().unwrap_or_else(|| json!({}));
                let (respond, answer) = oneshot::channel();
                tx.send(CallEvent::Request(ServerRequest { method, params, respond }))
                    .await
                    .map_err(|_| RpcError::new(code::INTERNAL_ERROR, "the client went away"))?;
                let reply =
                    answer.await.map_err(|_| RpcError::new(code::INTERNAL_ERROR, "the question was dropped"))?;
                reply.map(|r| (key, r))
            }
        });
        let mut responses = Map::new();
        for answer in join_all(asks).await {
            let (key, value) = answer?;
            responses.insert(key, value);
        }
        let mut retry = params.clone();
        retry["inputResponses"] = Value::Object(responses);
        match result.get("requestState") {
            Some(state) => retry["requestState"] = state.clone(),
            None => {
                if let Some(obj) = retry.as_object_mut() {
                    obj.remove("requestState");
                }
            }
        }
        result = upstream.call(method, retry, &ctx.caller, events.clone()).await.map_err(|e| e.to_rpc(provider))?;
    }
    Err(RpcError::new(
        code::INTERNAL_ERROR,
        format!("provider {provider:?} asked for input more than {MAX_ROUNDS} times"),
    ))
}

/// A call to a legacy upstream waiting for a modern client's retry.
struct Parked {
    method: String,
    name: Option<String>,
    /// Questions asked, by input key.
    pending: Vec<(String, ServerRequest)>,
    events: mpsc::Receiver<CallEvent>,
    done: oneshot::Receiver<Result<Value, RpcError>>,
    task: tokio::task::AbortHandle,
    parked_at: Instant,
}

impl Drop for Parked {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Calls parked for MRTR, by token.
#[derive(Default)]
pub struct ParkedCalls {
    calls: Mutex<HashMap<String, Parked>>,
}

impl ParkedCalls {
    fn park(&self, parked: Parked) -> String {
        let token = format!("{TOKEN_PREFIX}{:032x}", rand::random::<u128>());
        let mut map = self.calls.lock();
        map.retain(|_, p| p.parked_at.elapsed() < PARK_TTL);
        if map.len() >= MAX_PARKED {
            if let Some(oldest) = map.iter().min_by_key(|(_, p)| p.parked_at).map(|(k, _)| k.clone()) {
                map.remove(&oldest);
            }
        }
        map.insert(token.clone(), parked);
        token
    }

    fn take(&self, token: &str) -> Option<Parked> {
        let p = self.calls.lock().remove(token)?;
        (p.parked_at.elapsed() < PARK_TTL).then_some(p)
    }

    /// Number of parked calls.
    pub fn len(&self) -> usize {
        self.calls.lock().len()
    }

    /// Whether no call is parked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Modern client, any upstream, for a method that may need input. Server→client requests from
/// a legacy upstream become `input_required` results; modern upstreams' own `input_required`
/// results pass through untouched. `start` makes the upstream call, relaying what the upstream
/// sends meanwhile to the given channel; it runs on its own task, so a call can stay parked
/// between the client's rounds.
pub async fn modern_call<Call>(
    parked: &ParkedCalls,
    ctx: &ClientCtx,
    method: &str,
    params: Value,
    events: Events,
    start: impl FnOnce(Value, mpsc::Sender<CallEvent>) -> Call,
) -> Result<Value, RpcError>
where
    Call: std::future::Future<Output = Result<Value, RpcError>> + Send + 'static,
{
    let name = params.get("name").or_else(|| params.get("uri")).and_then(Value::as_str).map(str::to_owned);
    let token =
        params.get("requestState").and_then(Value::as_str).filter(|t| t.starts_with(TOKEN_PREFIX)).map(str::to_owned);
    let call = match token {
        Some(token) => {
            let mut call = parked.take(&token).ok_or_else(|| {
                RpcError::new(code::INVALID_PARAMS, "requestState is unknown or expired: call again without it")
            })?;
            if call.method != method || call.name != name {
                return Err(RpcError::new(code::INVALID_PARAMS, "requestState belongs to a different request"));
            }
            let answers = params.get("inputResponses").and_then(Value::as_object).cloned().unwrap_or_default();
            let mut unanswered = Vec::new();
            for (key, request) in std::mem::take(&mut call.pending) {
                match answers.get(&key) {
                    Some(answer) => {
                        let _ = request.respond.send(Ok(answer.clone()));
                    }
                    None => unanswered.push((key, request)),
                }
            }
            call.pending = unanswered;
            call
        }
        None => {
            // Not a gateway token: a first call, or the retry of a modern upstream's own
            // `input_required` (its `inputResponses` and `requestState` pass through untouched).
            let (tx, rx) = mpsc::channel(64);
            let (done_tx, done) = oneshot::channel();
            let call = start(params, tx);
            let task = tokio::spawn(async move {
                let _ = done_tx.send(call.await);
            });
            Parked {
                method: method.to_owned(),
                name,
                pending: Vec::new(),
                events: rx,
                done,
                task: task.abort_handle(),
                parked_at: Instant::now(),
            }
        }
    };
    advance(parked, ctx, call, &events).await
}

/// Runs a (possibly resumed) call until it completes or asks a question the client must answer.
async fn advance(parked: &ParkedCalls, ctx: &ClientCtx, mut call: Parked, events: &Events) -> Result<Value, RpcError> {
    if call.pending.is_empty() {
        loop {
            tokio::select! {
                biased;
                Some(ev) = call.events.recv() => match ev {
                    CallEvent::Notification(n) => {
                        if let Some(tx) = events {
                            let _ = tx.send(CallEvent::Notification(n)).await;
                        }
                    }
                    CallEvent::Request(req) => {
                        let capability = req.method.split('/').next().unwrap_or_default();
                        if ctx.caller.capabilities.get(capability).is_none() {
                            let _ = req.respond.send(Err(RpcError::new(
                                code::METHOD_NOT_FOUND,
                                format!("the client did not declare the {capability} capability"),
                            )));
                            continue;
                        }
                        call.pending.push((format!("q{}", call.pending.len() + 1), req));
                        break;
                    }
                },
                done = &mut call.done => {
                    // Everything the upstream sent before its answer is queued already.
                    while let Ok(CallEvent::Notification(n)) = call.events.try_recv() {
                        if let Some(tx) = events {
                            let _ = tx.send(CallEvent::Notification(n)).await;
                        }
                    }
                    return done.unwrap_or_else(|_| Err(RpcError::new(code::INTERNAL_ERROR, "the provider call ended without an answer")));
                }
            }
        }
    }
    let mut input_requests = Map::new();
    for (key, req) in &call.pending {
        input_requests.insert(key.clone(), json!({"method": req.method, "params": req.params}));
    }
    call.parked_at = Instant::now();
    let token = parked.park(call);
    Ok(json!({"resultType": "input_required", "inputRequests": input_requests, "requestState": token}))
}
