//! The MCP endpoint over HTTP: both protocol eras on one path.
//!
//! Each POST is classified by its `MCP-Protocol-Version` header (and `initialize`, which always
//! opens a legacy session), checked, and either passed through on the fast path or answered
//! here through the hub. Legacy sessions also get their GET stream and DELETE.

use std::sync::Arc;

use bytes::Bytes;
use hangar_config::Secret;
use pingora_core::protocols::http::ServerSession as Session;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::body::read_body;
use super::checks::{accepts, conflicting_duplicate, host_allowed, is_json_body, origin_allowed, Accepts};
use super::cors;
use super::detached::{DetachedStream, Feed, KEEP_ALIVE_EVERY};
use super::fast;
use super::http::RequestCtx;
use super::replier::Replier;
use super::reply::Reply;
use super::respond;
use crate::auth::{self, Principal, Refusal, Security};
use crate::jsonrpc::parse::{Envelope, Kind};
use crate::jsonrpc::{code, error_bytes, null_id, result_bytes, RpcError};
use crate::mcp::hub::{self, ClientCtx};
use crate::mcp::replay::{self, ReplyBuffer};
use crate::mcp::server::McpServer;
use crate::mcp::session::{ClientSession, TrackError, Tracked};
use crate::mcp::subscriptions;
use crate::proto::headers::check_modern;
use crate::proto::protocol::{era_of, Era, LEGACY_VERSIONS, MODERN_VERSION, SUPPORTED_VERSIONS};
use crate::ratelimit;
use crate::state::{AppState, Snapshot};
use crate::telemetry::metrics::Limit;
use crate::upstream::CallEvent;

/// Reconnection delay announced to legacy clients on resumable streams.
const RECONNECT_DELAY_MS: u64 = 1000;
/// How long a legacy request goes on with nobody reading its reply. A dropped connection is not a
/// cancellation in the 2025-xx protocol (the client may resume with `Last-Event-ID`), but a
/// request nobody comes back for within this time is cancelled (`notifications/cancelled`
/// upstream) instead of running until the upstream's timeout.
pub(super) const RESUME_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// What the `MCP-Protocol-Version` header says.
enum VersionHeader {
    Absent,
    Known(Era),
    Unsupported(String),
}

fn version_header(session: &Session) -> VersionHeader {
    match session.req_header().headers.get("mcp-protocol-version").map(|v| v.to_str().unwrap_or("")) {
        None => VersionHeader::Absent,
        Some(v) => match era_of(v) {
            Some(era) => VersionHeader::Known(era),
            None => VersionHeader::Unsupported(v.to_owned()),
        },
    }
}

fn header<'s>(session: &'s Session, name: &str) -> Option<&'s str> {
    session.req_header().headers.get(name).and_then(|v| v.to_str().ok())
}

/// Handles a request to the MCP path; `Ok` once it was answered.
pub async fn handle(server: &Arc<McpServer>, session: &mut Session, ctx: &mut RequestCtx) -> pingora_core::Result<()> {
    let snap = ctx.snap.clone();
    let settings = &snap.config.server;
    if let Some(name) = conflicting_duplicate(session.req_header()) {
        let e = RpcError::new(code::INVALID_REQUEST, format!("Bad Request: conflicting values for header {name}"));
        plain_error(session, 400, e).await?;
        return Ok(());
    }
    let origin = header(session, "origin").map(str::to_owned);
    if let Some(origin) = &origin {
        if !origin_allowed(origin, &settings.allowed_origins) {
            tracing::info!(origin, "rejected a request from a disallowed Origin");
            plain_error(session, 403, RpcError::new(code::INVALID_REQUEST, "Forbidden: Origin not allowed")).await?;
            return Ok(());
        }
    }
    // Admitted: what follows answers a page of that origin readably (CORS).
    cors::admitted(origin.as_deref(), admitted(server, session, ctx, origin.as_deref())).await
}

/// The rest of [`handle`], for a request whose `Origin` (if any) is allowed.
async fn admitted(
    server: &Arc<McpServer>,
    session: &mut Session,
    ctx: &mut RequestCtx,
    origin: Option<&str>,
) -> pingora_core::Result<()> {
    let snap = ctx.snap.clone();
    let settings = &snap.config.server;
    if !host_allowed(header(session, "host"), &settings.host) {
        plain_error(session, 403, RpcError::new(code::INVALID_REQUEST, "Forbidden: Host not allowed")).await?;
        return Ok(());
    }
    let header_bytes: usize = session.req_header().headers.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum();
    if header_bytes > settings.limits.max_header_bytes {
        plain_error(session, 431, RpcError::new(code::INVALID_REQUEST, "request headers too large")).await?;
        return Ok(());
    }
    let method = session.req_header().method.as_str();
    let security = ctx.door.clone().unwrap_or_else(|| snap.security.clone());
    if method == "OPTIONS" {
        // A browser's preflight: it carries no credentials, so it is answered before
        // authentication (RFC 9110 OPTIONS, Fetch's CORS preflight).
        let headers = match origin {
            Some(_) => cors::preflight(security.api_key_header()),
            None => vec![("allow", cors::METHODS.to_owned())],
        };
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        return respond::empty(session, 204, &headers).await;
    }
    if !matches!(method, "POST" | "GET" | "DELETE") {
        return respond::send(
            session,
            405,
            "application/json",
            &[("allow", "GET, POST, DELETE, OPTIONS")],
            r#"{"error":"method not allowed"}"#,
        )
        .await;
    }
    let principal = match security.authenticate(&session.req_header().headers).await {
        Ok(p) => p,
        Err(refusal) => return Box::pin(unauthorized(server, session, &snap, &security, &refusal)).await,
    };
    ctx.principal = Some(principal.clone());
    match session.req_header().method.as_str() {
        "POST" => post(server, session, ctx, principal).await,
        // Boxed, as post's slow branches are: a future is as large as its largest state, and
        // creating it copies all of it, so the fast path would pay for states it never enters.
        "GET" => Box::pin(get(server, session, ctx, &principal)).await,
        _ => Box::pin(delete(server, session, &principal)).await,
    }
}

/// 401 (503 when credentials cannot be checked now) with the challenge that tells the client how
/// to authenticate (RFC 6750, and RFC 9728's `resource_metadata` for token clients).
async fn unauthorized(
    server: &McpServer,
    session: &mut Session,
    snap: &Snapshot,
    security: &Security,
    refusal: &Refusal,
) -> pingora_core::Result<()> {
    server.state.metrics.auth_failures.with_label_values(&[refusal.label()]).inc();
    let client = session.client_addr().map(ToString::to_string).unwrap_or_default();
    tracing::info!(client, "refused a request: {refusal}");
    let status = refusal.status();
    let resource = resource_url(session, snap, security);
    let challenge = security.challenge(refusal, &auth::metadata_url(&resource));
    let body = error_bytes(null_id(), &RpcError::new(code::INVALID_REQUEST, format!("Unauthorized: {refusal}")));
    respond::send(session, status, "application/json", &[("www-authenticate", challenge.as_str())], body).await
}

/// 429 with `Retry-After` (whole seconds, rounded up) and a JSON-RPC error saying which limit.
async fn too_many_requests(
    state: &AppState,
    session: &mut Session,
    id: &RawValue,
    over: ratelimit::Exceeded,
) -> pingora_core::Result<()> {
    let (seconds, body) = over_limit(state, id, over);
    respond::send(session, 429, "application/json", &[("retry-after", seconds.as_str())], body).await
}

/// What a request over a rate limit is answered, by either front door: `Retry-After` (whole
/// seconds, rounded up) and the body, a JSON-RPC error saying which limit. Counted as refused.
pub(super) fn over_limit(state: &AppState, id: &RawValue, over: ratelimit::Exceeded) -> (String, Bytes) {
    state.metrics.rate_limited.with_label_values(&[over.bucket.as_str()]).inc();
    let ms = u64::try_from(over.retry_after.as_millis()).unwrap_or(u64::MAX);
    let e =
        RpcError::new(code::RATE_LIMITED, format!("Too many requests: over the {} rate limit", over.bucket.as_str()))
            .with_data(json!({"limit": over.bucket.as_str(), "retry_after_ms": ms}));
    (ms.div_ceil(1000).max(1).to_string(), error_bytes(id, &e).into())
}

/// The URL of the MCP endpoint of `door` as the client reached it (its `auth.resource_url` when
/// configured).
pub fn resource_url(session: &Session, snap: &Snapshot, door: &Security) -> String {
    if let Some(url) = door.resource_url() {
        return url.to_owned();
    }
    let host = header(session, "host").unwrap_or("localhost");
    let scheme = if snap.config.server.tls.is_some() { "https" } else { "http" };
    let (path, name) = (&snap.config.server.mcp_path, door.door());
    if name.is_empty() {
        format!("{scheme}://{host}{path}")
    } else {
        format!("{scheme}://{host}{}/{name}", path.trim_end_matches('/'))
    }
}

/// The door an MCP path leads to: the default endpoint (`mcp_path`) or a virtual server
/// (`mcp_path/<name>`); `None` for any other path.
pub fn door_of(snap: &Snapshot, path: &str) -> Option<Arc<Security>> {
    let base = &snap.config.server.mcp_path;
    if path == base {
        return Some(snap.security.clone());
    }
    let name = path.strip_prefix(base.trim_end_matches('/'))?.strip_prefix('/')?;
    snap.virtual_servers.get(name).cloned()
}

/// An error reply with no request id, as a JSON body.
async fn plain_error(session: &mut Session, status: u16, error: RpcError) -> pingora_core::Result<()> {
    respond::json(session, status, error_bytes(null_id(), &error)).await
}

/// The HTTP status for a JSON-RPC error answered as plain JSON.
fn error_status(era: Era, code_: i64) -> u16 {
    match code_ {
        code::PARSE_ERROR | code::INVALID_REQUEST => 400,
        code::HEADER_MISMATCH | code::UNSUPPORTED_PROTOCOL_VERSION | code::MISSING_CLIENT_CAPABILITY => 400,
        code::METHOD_NOT_FOUND if era == Era::Modern => 404,
        _ => 200,
    }
}

fn unsupported_version(requested: &str) -> RpcError {
    RpcError::new(code::UNSUPPORTED_PROTOCOL_VERSION, format!("Unsupported protocol version: {requested}"))
        .with_data(json!({"supported": SUPPORTED_VERSIONS, "requested": requested}))
}

async fn post(
    server: &Arc<McpServer>,
    session: &mut Session,
    ctx: &mut RequestCtx,
    principal: Arc<Principal>,
) -> pingora_core::Result<()> {
    let state = &server.state;
    let snap = ctx.snap.clone();
    let limits = &snap.config.server.limits;
    if !is_json_body(session.req_header()) {
        plain_error(session, 415, RpcError::new(code::INVALID_REQUEST, "Content-Type must be application/json"))
            .await?;
        return Ok(());
    }
    let accepts = accepts(session.req_header());
    if !accepts.json && !accepts.sse {
        plain_error(
            session,
            406,
            RpcError::new(code::INVALID_REQUEST, "Accept must allow application/json or text/event-stream"),
        )
        .await?;
        return Ok(());
    }
    let version = version_header(session);
    if let VersionHeader::Unsupported(v) = &version {
        plain_error(session, 400, unsupported_version(v)).await?;
        return Ok(());
    }
    let (body, _held) = match read_body(state, session, limits.max_body_bytes, limits.min_body_rate).await {
        Ok(b) => b,
        Err((status, e)) => {
            plain_error(session, status, e).await?;
            return Ok(());
        }
    };
    let (env, kind, head) = match Envelope::parse_request(&body) {
        Ok(x) => x,
        Err(invalid) => {
            let id = invalid.id.as_deref().unwrap_or(null_id());
            respond::json(session, 400, error_bytes(id, &invalid.error)).await?;
            return Ok(());
        }
    };
    let method = env.method_str();
    let head = match head {
        Ok(h) => h,
        Err(e) => {
            respond::json(session, 400, error_bytes(env.id.unwrap_or(null_id()), &e)).await?;
            return Ok(());
        }
    };
    let era = match (&version, method) {
        (_, "initialize") => Era::Legacy,
        (VersionHeader::Known(era), _) => *era,
        (VersionHeader::Absent, _) if head.protocol_version() == Some(MODERN_VERSION) => {
            let e = RpcError::new(
                code::HEADER_MISMATCH,
                "Header mismatch: required header MCP-Protocol-Version is missing",
            );
            respond::json(session, 400, error_bytes(env.id.unwrap_or(null_id()), &e)).await?;
            return Ok(());
        }
        _ => Era::Legacy,
    };
    ctx.era = Some(era);
    if kind != Kind::Response {
        ctx.method = state.metrics.request(method, era.as_str());
    }
    // Taken once: the express path may have taken them before it handed the request here.
    if kind == Kind::Request && !ctx.rate_limits_taken {
        let client = session.client_addr().and_then(|a| a.as_inet()).map(std::net::SocketAddr::ip);
        let key = ratelimit::principal_key(&principal, client);
        if let Err(over) = ratelimit::admit(&snap, &principal, &key, method, &head) {
            return too_many_requests(state, session, env.id.unwrap_or(null_id()), over).await;
        }
    }
    if era == Era::Modern {
        if kind == Kind::Response {
            let e = RpcError::new(code::INVALID_REQUEST, "clients must not send responses in the 2026-07-28 protocol");
            respond::json(session, 400, error_bytes(env.id.unwrap_or(null_id()), &e)).await?;
            return Ok(());
        }
        if let Err(e) = check_modern(session.req_header(), method, &head, MODERN_VERSION) {
            let status = if e.code == code::HEADER_MISMATCH { 400 } else { error_status(era, e.code) };
            respond::json(session, status, error_bytes(env.id.unwrap_or(null_id()), &e)).await?;
            return Ok(());
        }
        if kind == Kind::Notification {
            respond::send(session, 202, "application/json", &[], Bytes::new()).await?;
            return Ok(());
        }
    }
    if kind == Kind::Request {
        // A legacy call goes fast in its session only: without one, the slow path answers why.
        let client = match era {
            Era::Legacy if fast::takes(method) => {
                header(session, "mcp-session-id").and_then(|sid| session_of(server, sid, &principal))
            }
            _ => None,
        };
        if era == Era::Modern || client.is_some() {
            let call = fast::Call {
                env: &env,
                head: &head,
                body: &body,
                fields: session.req_header(),
                accepts,
                principal: &principal,
                session: client.as_ref(),
                arrived: ctx.started,
            };
            if let Some(route) = fast::route(state, &snap, call) {
                ctx.fast_path = true;
                drop(env);
                route.run(state, session).await?;
                return Ok(());
            }
        }
    }
    let id: Box<RawValue> = env.id.map(|i| i.to_owned()).unwrap_or_else(|| null_id().to_owned());
    let params = match env.payload(kind) {
        Ok(p) => p,
        Err(e) => {
            let status = if kind == Kind::Request { error_status(era, e.code) } else { 400 };
            return respond::json(session, status, error_bytes(&id, &e)).await;
        }
    };
    let method = method.to_owned();
    drop(env);
    match era {
        Era::Modern if method == "subscriptions/listen" => {
            Box::pin(listen(server, session, ctx, accepts, &id, &params, &principal)).await?;
        }
        Era::Modern => {
            let mut client = ClientCtx::modern(&params, principal);
            client.caller.credential = client_credential(session);
            client.trace = hub::trace_request(state, &client, &method, &params, Some(&session.req_header().headers));
            Box::pin(run_modern(server, &snap, session, accepts, &client, &id, &method, params)).await?;
        }
        Era::Legacy => {
            Box::pin(legacy_post(server, &snap, session, accepts, kind, &id, &method, params, principal)).await?;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn legacy_post(
    server: &Arc<McpServer>,
    snap: &Arc<Snapshot>,
    session: &mut Session,
    accepts: Accepts,
    kind: Kind,
    id: &RawValue,
    method: &str,
    params: Value,
    principal: Arc<Principal>,
) -> pingora_core::Result<()> {
    let state = &server.state;
    if kind == Kind::Request && method == "initialize" {
        let client_addr = session.client_addr().and_then(|a| a.as_inet()).map(std::net::SocketAddr::ip);
        return match hub::initialize(server, snap, &params, client_addr, principal).await {
            Ok((client, result)) => {
                let reply = Reply::new(accepts, vec![("mcp-session-id", client.id.to_string())]);
                reply.finish(session, 200, result_bytes(id, &result)).await
            }
            Err(e) => Reply::new(accepts, Vec::new()).finish(session, 200, error_bytes(id, &e)).await,
        };
    }
    let client = match header(session, "mcp-session-id") {
        None => {
            let e = RpcError::new(
                code::INVALID_REQUEST,
                "Bad Request: Mcp-Session-Id header is required (call initialize first)",
            );
            return respond::json(session, 400, error_bytes(id, &e)).await;
        }
        Some(sid) => match session_of(server, sid, &principal) {
            Some(c) => c,
            None => {
                let e = RpcError::new(code::INVALID_REQUEST, "Session not found: initialize a new session");
                return respond::json(session, 404, error_bytes(id, &e)).await;
            }
        },
    };
    match kind {
        Kind::Request => {
            let tracked = match client.track(id.get()) {
                Ok(t) => t,
                Err(TrackError::InUse) => {
                    let e = RpcError::new(
                        code::INVALID_REQUEST,
                        format!("Bad Request: request id {} is already in use by a request in flight", id.get()),
                    );
                    return respond::json(session, 400, error_bytes(id, &e)).await;
                }
                Err(e @ TrackError::TooMany(_)) => {
                    let e = RpcError::new(code::OVERLOADED, format!("{e}; retry later"));
                    return respond::send(
                        session,
                        429,
                        "application/json",
                        &[("retry-after", "1")],
                        error_bytes(id, &e),
                    )
                    .await;
                }
            };
            let (stream, buf) = client.replies.open();
            let mut ctx = ClientCtx::legacy(client.clone());
            // This request's credentials decide (a token's roles may have changed since initialize).
            ctx.principal = principal;
            ctx.caller.credential = client_credential(session);
            ctx.trace = hub::trace_request(state, &ctx, method, &params, Some(&session.req_header().headers));
            let work = LegacyWork { ctx, id: id.to_owned(), method: method.to_owned(), params, tracked };
            tokio::spawn(produce_legacy(server.clone(), snap.clone(), work, buf.clone()));
            serve_reply(session, accepts, &client, stream, &buf, 0).await
        }
        Kind::Notification => {
            client_notification(snap, &client, method, &params).await;
            respond::send(session, 202, "application/json", &[], Bytes::new()).await
        }
        Kind::Response => {
            let reply = match (params_of_response(&params), id.get().parse::<i64>()) {
                (_, Err(_)) => false,
                (r, Ok(n)) => client.answer(n, r),
            };
            if !reply {
                tracing::debug!(session = %client.audit_id, "a response matched no pending request");
            }
            respond::send(session, 202, "application/json", &[], Bytes::new()).await
        }
    }
}

/// The answer carried by a response's [`Envelope::payload`].
fn params_of_response(v: &Value) -> Result<Value, RpcError> {
    match (v.get("result"), v.get("error")) {
        (_, Some(e)) => Err(RpcError::from_value(e)),
        (Some(r), _) => Ok(r.clone()),
        _ => Ok(Value::Null),
    }
}

async fn client_notification(snap: &Snapshot, client: &Arc<ClientSession>, method: &str, params: &Value) {
    match method {
        "notifications/cancelled" => {
            if let Some(rid) = params.get("requestId") {
                let key = rid.to_string();
                if !client.cancel(&key) {
                    tracing::debug!(session = %client.audit_id, request = %key, "cancellation for a request not in flight");
                }
            }
        }
        "notifications/roots/list_changed" => {
            let caller = client.caller();
            for upstream in snap.routes.all_upstreams() {
                let _ = upstream.notify(method, params.clone(), &caller).await;
            }
        }
        _ => {}
    }
}

/// Runs a modern request through the hub, relaying upstream messages as SSE events, until it
/// finishes or the client closes the stream (which, in the modern protocol, cancels it).
#[allow(clippy::too_many_arguments)]
async fn run_modern(
    server: &Arc<McpServer>,
    snap: &Arc<Snapshot>,
    session: &mut Session,
    accepts: Accepts,
    ctx: &ClientCtx,
    id: &RawValue,
    method: &str,
    params: Value,
) -> pingora_core::Result<()> {
    let (tx, mut rx) = mpsc::channel::<CallEvent>(64);
    let work = hub::request(server, snap, ctx, method, params, Some(tx));
    tokio::pin!(work);
    let mut reply = Reply::new(accepts, Vec::new());
    let mut keep_alive = tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE_EVERY, KEEP_ALIVE_EVERY);
    let outcome = loop {
        tokio::select! {
            out = &mut work => break out,
            Some(ev) = rx.recv() => {
                if let Some(bytes) = hub::relay_event(ctx, ev) {
                    reply.event(session, &bytes).await?;
                }
            }
            _ = keep_alive.tick() => reply.keep_alive(session).await?,
            _ = session.read_body_or_idle(true) => {
                tracing::debug!(method, "client closed the stream; cancelling the request");
                hub::end_trace(ctx, None);
                return Ok(());
            }
        }
    };
    hub::end_trace(ctx, Some(&outcome));
    while let Ok(ev) = rx.try_recv() {
        if let Some(bytes) = hub::relay_event(ctx, ev) {
            reply.event(session, &bytes).await?;
        }
    }
    match outcome {
        Ok(result) => reply.finish(session, 200, result_bytes(id, &result)).await,
        Err(e) => reply.finish(session, error_status(ctx.era, e.code), error_bytes(id, &e)).await,
    }
}

/// A legacy request to run: who asks, what, and its place among the requests in flight (with the
/// receiver `notifications/cancelled` fires).
struct LegacyWork {
    ctx: ClientCtx,
    id: Box<RawValue>,
    method: String,
    params: Value,
    tracked: Tracked,
}

/// Produces a legacy request's reply into the session's buffer. It runs on its own task: in the
/// legacy protocol a dropped connection does not cancel a request (`notifications/cancelled`
/// does), and the client may come back for the rest with `Last-Event-ID`.
async fn produce_legacy(server: Arc<McpServer>, snap: Arc<Snapshot>, work: LegacyWork, buf: Arc<ReplyBuffer>) {
    let LegacyWork { ctx, id, method, params, tracked } = work;
    let (tx, rx) = mpsc::channel::<CallEvent>(64);
    let request = hub::request(&server, &snap, &ctx, &method, params, Some(tx));
    let mut tracked = tracked;
    let outcome = produce_into(&server.state, &ctx, request, rx, &mut tracked.cancelled, &buf).await;
    if let Some(client) = &ctx.session {
        client.untrack(id.get());
    }
    drop(tracked);
    hub::end_trace(&ctx, outcome.as_ref());
    answer_into(&buf, &id, outcome);
}

/// Runs `work`, a legacy request, relaying the messages it sends meanwhile (`events`) into the
/// reply buffer, until it ends, the client cancels it or nobody has read the reply for
/// [`RESUME_GRACE`]; `None` when it was cancelled (`cancelled` resolved).
pub(super) async fn produce_into(
    state: &Arc<AppState>,
    ctx: &ClientCtx,
    work: impl std::future::Future<Output = Result<Value, RpcError>>,
    mut events: mpsc::Receiver<CallEvent>,
    cancelled: impl std::future::Future,
    buf: &ReplyBuffer,
) -> Option<Result<Value, RpcError>> {
    let _inflight = state.begin_request();
    tokio::pin!(work);
    tokio::pin!(cancelled);
    let outcome = loop {
        tokio::select! {
            out = &mut work => break Some(out),
            Some(ev) = events.recv() => {
                if let Some(bytes) = hub::relay_event(ctx, ev) {
                    if buf.push(Bytes::from(bytes)) {
                        state.metrics.limit_hit(Limit::ReplayBuffer);
                    }
                }
            }
            _ = &mut cancelled => break None,
            () = buf.orphaned(RESUME_GRACE) => {
                tracing::debug!(
                    session = ctx.session.as_ref().map_or("", |s| &*s.audit_id),
                    "no client reads the reply any more; cancelling the request"
                );
                break None;
            }
        }
    };
    while let Ok(ev) = events.try_recv() {
        if let Some(bytes) = hub::relay_event(ctx, ev) {
            let _ = buf.push(Bytes::from(bytes));
        }
    }
    outcome
}

/// Ends a legacy reply with the request's outcome (none for a cancelled request).
pub(super) fn answer_into(buf: &ReplyBuffer, id: &RawValue, outcome: Option<Result<Value, RpcError>>) {
    match outcome {
        Some(Ok(result)) => buf.answer(Bytes::from(result_bytes(id, &result))),
        Some(Err(e)) if e.code == code::SESSION_LOST => buf.answer_with_status(Bytes::from(error_bytes(id, &e)), 404),
        Some(Err(e)) => buf.answer(Bytes::from(error_bytes(id, &e))),
        // A cancelled request gets no response.
        None => buf.finish(),
    }
}

/// Writes a legacy reply from its buffer, starting after message `from`: as plain JSON when it is
/// a lone response the client takes as JSON, otherwise as a resumable SSE stream (event ids, a
/// priming event for 2025-11-25 clients). Returns when the reply ends or the client goes away.
pub(super) async fn serve_reply(
    out: &mut impl Replier,
    accepts: Accepts,
    client: &ClientSession,
    stream: u64,
    buf: &Arc<ReplyBuffer>,
    from: usize,
) -> pingora_core::Result<()> {
    let _reading = buf.reader();
    let mut reply = Reply::new(accepts, Vec::new());
    if from == 0 && reply.plain_json() {
        // A lone response goes as JSON. A client that takes JSON only gets the response alone,
        // once it is there: what came before it (progress, log messages) has no way to it; one
        // that takes SSE too gets a stream as soon as there is more than the response.
        loop {
            let (msgs, end, done, answered) = buf.read_from(0);
            if done && answered && (end == 1 || !accepts.sse) {
                if let Some(response) = msgs.last() {
                    return reply.finish(out, buf.status(), response.to_vec()).await;
                }
            }
            if done || (accepts.sse && !msgs.is_empty()) {
                break;
            }
            tokio::select! {
                () = buf.changed(end) => {}
                () = out.gone() => return Ok(()),
            }
        }
    }
    if from == 0 && client.version.as_str() >= LEGACY_VERSIONS[0] {
        reply.priming(out, &replay::event_id(stream, 0), RECONNECT_DELAY_MS).await?;
    }
    let mut seen = from;
    let mut keep_alive = tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE_EVERY, KEEP_ALIVE_EVERY);
    loop {
        let (msgs, end, done, _) = buf.read_from(seen);
        // Messages dropped from the buffer (it keeps a bounded tail) are skipped, not renumbered.
        seen = end - msgs.len();
        for m in msgs {
            seen += 1;
            reply.event_with_id(out, &replay::event_id(stream, seen), &m).await?;
        }
        if done {
            return reply.end(out).await;
        }
        tokio::select! {
            () = buf.changed(seen) => {}
            _ = keep_alive.tick() => reply.keep_alive(out).await?,
            () = out.gone() => return Ok(()),
        }
    }
}

/// `subscriptions/listen`: a long-lived SSE stream of the change notifications the client chose.
/// The acknowledgment is written here; the stream then goes on detached from the HTTP session.
async fn listen(
    server: &Arc<McpServer>,
    session: &mut Session,
    ctx: &mut RequestCtx,
    accepts: Accepts,
    id: &RawValue,
    params: &Value,
    principal: &Principal,
) -> pingora_core::Result<()> {
    if !accepts.sse {
        let e = RpcError::new(code::INVALID_REQUEST, "subscriptions/listen needs Accept: text/event-stream");
        return respond::json(session, 406, error_bytes(id, &e)).await;
    }
    let Some(slot) = server.state.open_stream() else {
        let e = RpcError::new(code::INTERNAL_ERROR, "too many open streams");
        return respond::json(session, 503, error_bytes(id, &e)).await;
    };
    let (granted, guard, rx) = subscriptions::open(server, params, principal).await;
    let mut reply = Reply::new(accepts, Vec::new());
    let ack = subscriptions::acknowledgment(id, &granted);
    reply.event(session, &serde_json::to_vec(&ack).unwrap_or_default()).await?;
    ctx.detached = Some(DetachedStream::new(server, Feed::Listen { rx, guard, id: id.to_owned() }, slot));
    Ok(())
}

/// The request's `Authorization` header, for the providers that are sent their clients' tokens
/// (`forward_client_token`).
fn client_credential(session: &Session) -> Option<Secret> {
    header(session, "authorization").map(Secret::new)
}

/// The legacy session `sid`, when `principal` opened it through the same door: to anyone else it
/// does not exist (a session id that leaked does not let another caller in, nor tells them it is
/// valid).
pub(super) fn session_of(server: &McpServer, sid: &str, principal: &Principal) -> Option<Arc<ClientSession>> {
    server.sessions.get(sid).filter(|c| c.principal.id == principal.id && c.principal.door == principal.door)
}

/// Legacy GET: the session's stream of server-initiated messages.
async fn get(
    server: &Arc<McpServer>,
    session: &mut Session,
    ctx: &mut RequestCtx,
    principal: &Principal,
) -> pingora_core::Result<()> {
    if let VersionHeader::Known(Era::Modern) = version_header(session) {
        return respond::send(
            session,
            405,
            "application/json",
            &[("allow", "POST")],
            r#"{"error":"GET is not part of MCP 2026-07-28"}"#,
        )
        .await;
    }
    if !accepts(session.req_header()).sse {
        return plain_error(
            session,
            406,
            RpcError::new(code::INVALID_REQUEST, "Accept must include text/event-stream"),
        )
        .await;
    }
    let client = match header(session, "mcp-session-id") {
        None => {
            return plain_error(
                session,
                400,
                RpcError::new(code::INVALID_REQUEST, "Bad Request: Mcp-Session-Id header is required"),
            )
            .await
        }
        Some(sid) => match session_of(server, sid, principal) {
            Some(c) => c,
            None => return plain_error(session, 404, RpcError::new(code::INVALID_REQUEST, "Session not found")).await,
        },
    };
    let Some(slot) = server.state.open_stream() else {
        return plain_error(session, 503, RpcError::new(code::INTERNAL_ERROR, "too many open streams")).await;
    };
    let resume = header(session, "last-event-id")
        .and_then(replay::parse_event_id)
        .and_then(|(stream, seq)| client.replies.find(stream).map(|buf| (stream, seq, buf)));
    if let Some((stream, seq, buf)) = resume {
        let accepts = Accepts { json: false, sse: true, prefer_sse: true };
        return serve_reply(session, accepts, &client, stream, &buf, seq).await;
    }
    let reader = client.attach_stream();
    let mut reply = Reply::new(Accepts { json: false, sse: true, prefer_sse: true }, Vec::new());
    reply.start_stream(session).await?;
    // The messages kept for the session go first, from the stream itself.
    ctx.detached = Some(DetachedStream::new(server, Feed::Session(reader), slot));
    Ok(())
}

/// Legacy DELETE: ends the session and its upstream sessions.
async fn delete(server: &Arc<McpServer>, session: &mut Session, principal: &Principal) -> pingora_core::Result<()> {
    if let VersionHeader::Known(Era::Modern) = version_header(session) {
        return respond::send(
            session,
            405,
            "application/json",
            &[("allow", "POST")],
            r#"{"error":"DELETE is not part of MCP 2026-07-28"}"#,
        )
        .await;
    }
    let Some(sid) = header(session, "mcp-session-id").map(str::to_owned) else {
        return plain_error(
            session,
            400,
            RpcError::new(code::INVALID_REQUEST, "Bad Request: Mcp-Session-Id header is required"),
        )
        .await;
    };
    if session_of(server, &sid, principal).is_none() {
        return plain_error(session, 404, RpcError::new(code::INVALID_REQUEST, "Session not found")).await;
    }
    let Some(client) = server.sessions.remove(&sid) else {
        return plain_error(session, 404, RpcError::new(code::INVALID_REQUEST, "Session not found")).await;
    };
    hub::end_session(&server.state, &client);
    respond::send(session, 200, "application/json", &[], Bytes::new()).await
}
