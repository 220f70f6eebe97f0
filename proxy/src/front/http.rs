//! The HTTP front door on Pingora's HTTP server (not its proxy pipeline): reads each request,
//! dispatches it by path, writes the access log and metrics, and hands the connection back for
//! keep-alive. The gateway makes its own upstream exchanges, so Pingora's proxy state (cache,
//! modules, upstream phases) would be per-connection weight and per-request work for nothing.

use std::sync::Arc;

use async_trait::async_trait;
use pingora_core::apps::{HttpPersistentSettings, ReusedHttpStream, ServerApp};
use pingora_core::protocols::http::ServerSession as Session;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use pingora_core::{Error, ErrorSource, ErrorType, Result};

use crate::front::connection::{self, ClientConn, ConnectionGate};
use crate::front::detached::DetachedStream;
use crate::front::express::{self, Served};
use crate::front::rewind::Rewind;
use crate::front::{health, mcp, respond};
use crate::mcp::server::McpServer;
use crate::proto::protocol::Era;
use crate::state::{AppState, InflightGuard, Phase, Snapshot};
use crate::telemetry::metrics::Limit;
use crate::telemetry::openmetrics;

/// How long an idle keep-alive connection waits for its next request.
pub(super) const KEEP_ALIVE_IDLE: std::time::Duration = std::time::Duration::from_secs(60);

/// The HTTP front door.
pub struct HttpFront {
    pub(super) server: Arc<McpServer>,
    /// The server's gateway state (health, metrics, limits).
    pub(super) state: Arc<AppState>,
    connections: ConnectionGate,
}

impl HttpFront {
    /// A front door serving `server`, admitting at most `max_connections` at once.
    pub fn new(server: Arc<McpServer>, max_connections: usize) -> Self {
        Self { state: server.state.clone(), server, connections: ConnectionGate::new(max_connections) }
    }

    /// Answers one request; `Ok` when a complete response was written.
    async fn serve(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
        let path = session.req_header().uri.path();
        if let Some((code, body)) = health::answer(&self.state, path) {
            ctx.endpoint = "health";
            return respond::json(session, code, body).await;
        }
        let snap = ctx.snap.clone();
        if let Some(door) = mcp::door_of(&snap, path) {
            ctx.endpoint = "mcp";
            ctx.door = Some(door);
            if self.state.phase() == Phase::Draining {
                // Until the listener closes, new work is refused with a status a load balancer
                // understands, and the connection is not kept.
                session.set_keepalive(None);
                let body = r#"{"error":"the gateway is shutting down; retry on another instance"}"#;
                return respond::send(session, 503, "application/json", &[("retry-after", "1")], body).await;
            }
            ctx.inflight = Some(self.state.begin_request());
            return mcp::handle(&self.server, session, ctx).await;
        }
        if let Some(endpoint) = path.strip_prefix(crate::auth::WELL_KNOWN) {
            let door = if endpoint.is_empty() { Some(snap.security.clone()) } else { mcp::door_of(&snap, endpoint) };
            if let Some(door) = door {
                ctx.endpoint = "oauth_metadata";
                let resource = mcp::resource_url(session, &snap, &door);
                // Public by design (RFC 9728), so any page may read it: browser OAuth clients do.
                return match door.resource_metadata(&resource) {
                    Some(doc) => {
                        let cors = [("access-control-allow-origin", "*")];
                        respond::send(session, 200, "application/json", &cors, doc.to_string()).await
                    }
                    None => respond::json(session, 404, r#"{"error":"not found"}"#).await,
                };
            }
        }
        if crate::admin::owns(path) {
            ctx.endpoint = "admin";
            // Boxed: the MCP fast path's future stays as small as its own states (creating a
            // future copies its largest state).
            return Box::pin(crate::admin::handle(&self.server, session, ctx)).await;
        }
        let metrics = &snap.config.observability.metrics;
        if metrics.enabled && path == metrics.endpoint {
            ctx.endpoint = "metrics";
            let in_flight = i64::try_from(self.state.inflight()).unwrap_or(i64::MAX);
            self.state.metrics.requests_in_flight.set(in_flight);
            let accept = session.req_header().headers.get(http::header::ACCEPT).and_then(|v| v.to_str().ok());
            return if openmetrics::wanted(accept) {
                let body = self.state.metrics.render_openmetrics();
                respond::send(session, 200, openmetrics::CONTENT_TYPE, &[], body).await
            } else {
                let body = self.state.metrics.render();
                respond::send(session, 200, "text/plain; version=0.0.4; charset=utf-8", &[], body).await
            };
        }
        ctx.endpoint = "not_found";
        respond::json(session, 404, r#"{"error":"not found"}"#).await
    }

    /// Counts the response and writes the access-log line of a request Pingora's session read.
    fn log(&self, session: &Session, error: Option<&Error>, ctx: &RequestCtx) {
        let req = session.req_header();
        let client = || session.client_addr().map(ToString::to_string);
        let line = AccessLine {
            status: session.response_written().map_or(0, |r| r.status.as_u16()),
            http_method: req.method.as_str(),
            path: req.uri.path().as_bytes(),
            client: &client,
        };
        self.record(&line, error, ctx);
    }

    /// Counts the response and writes the access-log line.
    pub(super) fn record(&self, line: &AccessLine<'_>, error: Option<&Error>, ctx: &RequestCtx) {
        let code = line.status;
        self.state.metrics.response(ctx.endpoint, code);
        if ctx.endpoint != "health" && ctx.snap.config.observability.access_log {
            tracing::info!(
                target: "mcp_hangar::access",
                client = (line.client)().unwrap_or_default(),
                http_method = line.http_method,
                path = %String::from_utf8_lossy(line.path),
                status = code,
                mcp_method = ctx.method,
                era = ctx.era.map_or("", Era::as_str),
                principal = ctx.principal.as_ref().map_or("", |p| p.id.as_str()),
                fast_path = ctx.fast_path,
                duration_ms = ctx.started.elapsed().as_secs_f64() * 1000.0,
                error = error.map(|e| e.etype().as_str()).unwrap_or_default(),
                "request"
            );
        }
    }
}

/// What the access log says of a request, whichever reader read it.
pub struct AccessLine<'a> {
    /// The status written, 0 when none was.
    pub status: u16,
    /// The request's method.
    pub http_method: &'a str,
    /// The request's path, as bytes: the express path's are its head's, UTF-8 checked only when
    /// a line is written.
    pub path: &'a [u8],
    /// The client's address, looked up only when the line is written.
    pub client: &'a dyn Fn() -> Option<String>,
}

/// What a connection keeps from one request to the next.
struct Turns {
    /// The express path's buffer and head reader.
    conn: express::Connection,
    /// Pingora's keep-alive settings from the session of the request before, if it had one.
    settings: Option<HttpPersistentSettings>,
    header_timeout: std::time::Duration,
}

/// Per-request state.
pub struct RequestCtx {
    /// Set for MCP requests only: health probes and scrapes are not work a drain waits for, and
    /// a probe reporting itself as in flight would never see an idle gateway.
    pub(super) inflight: Option<InflightGuard>,
    pub(super) endpoint: &'static str,
    /// Whether the request took the fast path (for the access log).
    pub fast_path: bool,
    /// The request's protocol era, once known.
    pub era: Option<Era>,
    /// Who the request was authenticated as (MCP requests), for the access log.
    pub principal: Option<Arc<crate::auth::Principal>>,
    /// The door an MCP request came by (the default endpoint or a virtual server).
    pub door: Option<Arc<crate::auth::Security>>,
    /// The JSON-RPC method, once known (bounded, for logs).
    pub method: &'static str,
    /// When the request arrived.
    pub(super) started: std::time::Instant,
    /// A long-lived stream the request opened, to go on without the HTTP session.
    pub detached: Option<DetachedStream>,
    /// The configuration snapshot the request uses throughout: loaded once when it arrives, so a
    /// reload never mixes two configurations in one request.
    pub snap: Arc<Snapshot>,
    /// Whether the request's rate limits were taken already (by the express path, before it
    /// declined the request): a request spends its tokens once.
    pub(super) rate_limits_taken: bool,
}

impl RequestCtx {
    /// The state of a request that just arrived, under `snap`.
    pub(super) fn new(snap: Arc<Snapshot>) -> Self {
        Self::arrived(snap, std::time::Instant::now())
    }

    /// The state of a request that arrived at `started`, under `snap`.
    pub(super) fn arrived(snap: Arc<Snapshot>, started: std::time::Instant) -> Self {
        Self {
            inflight: None,
            endpoint: "other",
            fast_path: false,
            era: None,
            principal: None,
            door: None,
            method: "",
            started,
            detached: None,
            snap,
            rate_limits_taken: false,
        }
    }
}

#[async_trait]
impl ServerApp for HttpFront {
    /// One connection of Pingora's listener (TLS), from accept to close.
    async fn process_new(self: &Arc<Self>, stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        self.serve_stream(stream, shutdown).await;
        None
    }
}

impl HttpFront {
    /// [`Self::serve_connection`] of Pingora's stream, as a future whose type says it is `Send`
    /// for every lifetime (`async_trait` asks that; the compiler cannot see it through the
    /// generic function).
    fn serve_stream<'a>(
        self: &'a Arc<Self>,
        stream: Stream,
        shutdown: &'a ShutdownWatch,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        Box::pin(self.serve_connection(stream, shutdown))
    }

    /// One connection, from accept to close: its requests one after the other (HTTP/1.1
    /// keep-alive), within the connection cap and the header and idle deadlines.
    pub(super) async fn serve_connection(self: &Arc<Self>, mut stream: impl ClientConn, shutdown: &ShutdownWatch) {
        let Some(_admitted) = self.connections.admit() else {
            self.state.metrics.limit_hit(Limit::Connections);
            connection::refuse(stream).await;
            return;
        };
        let header_timeout = self.state.snapshot().config.server.limits.header_timeout;
        let accepted = tokio::time::Instant::now();
        // Until its first byte arrives, a new connection holds no HTTP session and no header
        // buffer: a flood of idle connections costs little, and each goes at the header deadline.
        let mut draining = shutdown.clone();
        tokio::select! {
            biased;
            _ = draining.wait_for(|stop| *stop) => return,
            ready = stream.first_byte(header_timeout) => if !ready {
                self.state.metrics.limit_hit(Limit::HeaderTimeout);
                return;
            },
        }
        // The whole first header within the deadline from the accept, whatever the pace of its
        // bytes. A kept-alive connection waits up to the idle limit for its next request, then
        // has the same time for the header (no peek there: it would cost a read per request).
        // One timer for the connection, moved on for each request: moving it later costs an
        // atomic store (the timer wheel learns of it only when the old time comes), where a new
        // timer per request would be registered with the wheel, and removed, every time.
        let header_deadline = tokio::time::sleep_until(accepted + header_timeout);
        tokio::pin!(header_deadline);
        let turns = Turns { conn: express::Connection::default(), settings: None, header_timeout };
        self.requests(stream, turns, shutdown, header_deadline).await;
    }

    /// The requests of a connection, each by the express path or, declined there, by Pingora's
    /// session, until the connection ends.
    async fn requests<C: ClientConn>(
        self: &Arc<Self>,
        mut stream: C,
        mut turns: Turns,
        shutdown: &ShutdownWatch,
        mut header_deadline: std::pin::Pin<&mut tokio::time::Sleep>,
    ) {
        loop {
            // The express path first; what it declines goes to Pingora's session, which reads
            // the request from its first byte. Boxed, like the request path below, and for a run
            // of requests rather than each one (boxing copies the whole future).
            let express = self.express_run(
                &mut stream,
                &mut turns.conn,
                shutdown,
                header_deadline.as_mut(),
                turns.header_timeout,
            );
            let (read, rate_limits_taken) = match Box::pin(express).await {
                Served::Answered { .. } | Served::Closed => return,
                Served::Declined { read, rate_limits_taken } => (read, rate_limits_taken),
            };
            let mut session = Session::new_http1(stream.into_stream(read));
            if let Some(s) = turns.settings.take() {
                HttpPersistentSettings::apply_to_session(s, &mut session);
            }
            // Boxed, like the request path inside it: the connection's own future, which lives
            // as long as the connection, stays small.
            let request = self.process_request(session, shutdown, header_deadline.as_mut(), rate_limits_taken);
            let Some(reused) = Box::pin(request).await else {
                return;
            };
            let (back, settings) = reused.consume();
            turns.settings = settings;
            let next = tokio::time::Instant::now() + KEEP_ALIVE_IDLE + turns.header_timeout;
            header_deadline.as_mut().reset(next);
            stream = match C::from_stream(back) {
                Ok(stream) => stream,
                // Bytes still to be read from the session's stream: the connection stays on it.
                Err(back) => return self.requests_on_stream(back, turns, shutdown, header_deadline).await,
            };
        }
    }

    /// [`Self::requests`] of a connection that stays on Pingora's stream, as a boxed future
    /// whose type says it is `Send` (the compiler cannot prove it of a future that contains
    /// itself).
    fn requests_on_stream<'a>(
        self: &'a Arc<Self>,
        stream: Stream,
        turns: Turns,
        shutdown: &'a ShutdownWatch,
        header_deadline: std::pin::Pin<&'a mut tokio::time::Sleep>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        Box::pin(self.requests(stream, turns, shutdown, header_deadline))
    }
    /// Reads and answers one request; the connection back when it may carry another.
    async fn process_request(
        self: &Arc<Self>,
        mut session: Session,
        shutdown: &ShutdownWatch,
        mut header_deadline: std::pin::Pin<&mut tokio::time::Sleep>,
        rate_limits_taken: bool,
    ) -> Option<ReusedHttpStream> {
        let snap = self.state.snapshot();
        let limits = &snap.config.server.limits;
        let mut draining = shutdown.clone();
        let read = tokio::select! {
            biased;
            read = session.read_request() => Ok(read),
            () = header_deadline.as_mut() => Err(()),
            _ = draining.wait_for(|stop| *stop) => return None,
        };
        match read {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => return None,
            Ok(Err(e)) => {
                if matches!(e.etype(), ErrorType::InvalidHTTPHeader) {
                    let _ = session.respond_error(400).await;
                }
                session.shutdown().await;
                return None;
            }
            Err(_) => {
                self.state.metrics.limit_hit(Limit::HeaderTimeout);
                session.shutdown().await;
                return None;
            }
        }
        session.set_write_timeout(Some(limits.client_write_timeout));
        // Pingora already decided from the request whether the connection may be kept (not for
        // HTTP/1.0 without keep-alive, `Connection: close`, or both Content-Length and
        // Transfer-Encoding): only then is it kept, for the idle limit.
        let keep = session.get_keepalive().is_some() && !*shutdown.borrow();
        session.set_keepalive(keep.then_some(KEEP_ALIVE_IDLE.as_secs()));
        let mut ctx = RequestCtx::new(snap.clone());
        ctx.rate_limits_taken = rate_limits_taken;
        // Boxed: only a request that arrived pays for the request path's (large) future; a
        // connection waiting for its header holds a small one.
        let served = guarded(Box::pin(self.serve(&mut session, &mut ctx))).await;
        if let Err(e) = served {
            if session.response_written().is_none() {
                let _ = session.respond_error(error_status(&e)).await;
            }
            if !matches!(
                e.etype(),
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed | ErrorType::WriteTimedout
            ) {
                tracing::warn!("request failed: {e}");
            }
            if matches!(e.etype(), ErrorType::WriteTimedout) {
                self.state.metrics.limit_hit(Limit::SlowReader);
            }
            self.log(&session, Some(&e), &ctx);
            return None;
        }
        self.log(&session, None, &ctx);
        if let Some(stream) = ctx.detached.take() {
            match session {
                Session::H1(h1) => {
                    // A long-lived stream keeps no wrapper it no longer needs.
                    let socket = Rewind::unwrap_spent(h1.into_inner());
                    tokio::spawn(stream.run(socket, ctx.inflight.take()));
                }
                // Only HTTP/1.1 is served (no TLS, no h2c), so this is not reached; end cleanly.
                mut other => {
                    tracing::warn!("a long-lived stream on a non-HTTP/1.1 session was ended");
                    let _ = other.write_response_body(bytes::Bytes::new(), true).await;
                }
            }
            return None;
        }
        drop(ctx);
        let settings = HttpPersistentSettings::for_session(&session);
        session.finish().await.ok().flatten().map(|s| ReusedHttpStream::from_reusable_stream(s, settings))
    }
}

/// Runs a request handler, turning a panic in it into an internal error for this request alone:
/// the connection closes with a 500, the process and every other request go on. (Shared state
/// survives too: its locks do not poison and its counters are guards released on unwind.)
/// A plain function returning the wrapped future, not an `async fn`: an `async fn` keeps its
/// argument beside the future it makes of it, which would double the handler's size in every
/// future that awaits this one (and moving those futures costs in proportion).
pub(super) fn guarded(
    handler: impl std::future::Future<Output = Result<()>>,
) -> impl std::future::Future<Output = Result<()>> {
    use futures_util::FutureExt;
    std::panic::AssertUnwindSafe(handler).catch_unwind().map(|caught| match caught {
        Ok(result) => result,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!("a request handler panicked (the request gets a 500, nothing else is affected): {what}");
            Error::e_explain(ErrorType::InternalError, "the request handler panicked")
        }
    })
}

/// The status for a request that failed before its response started (as Pingora's proxy maps it).
pub(super) fn error_status(e: &Error) -> u16 {
    match (e.etype(), e.esource()) {
        (ErrorType::HTTPStatus(code), _) => *code,
        (_, ErrorSource::Downstream) => 400,
        _ => 500,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_handler_fails_its_request_only() {
        let err = guarded(async { panic!("boom") }).await.expect_err("the panic is an error");
        assert_eq!(err.etype(), &ErrorType::InternalError);
        assert_eq!(error_status(&err), 500);
        assert!(guarded(async { Ok(()) }).await.is_ok());
    }
}
