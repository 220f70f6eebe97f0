//! The HTTP front door on Pingora's HTTP server (not its proxy pipeline): reads each request,
//! dispatches it by path, writes the access log and metrics, and hands the connection back for
//! keep-alive. The gateway makes its own upstream exchanges, so Pingora's proxy state (cache,
//! modules, upstream phases) would be per-connection weight and per-request work for nothing.

use std::sync::Arc;

use async_trait::async_trait;
use pingora_core::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream};
use pingora_core::protocols::http::ServerSession as Session;
use pingora_core::server::ShutdownWatch;
use pingora_core::{Error, ErrorSource, ErrorType, Result};

use crate::front::detached::DetachedStream;
use crate::front::{health, mcp, respond};
use crate::mcp::protocol::Era;
use crate::state::{AppState, InflightGuard};
use crate::telemetry::openmetrics;

/// How long an idle keep-alive connection waits for its next request.
const KEEP_ALIVE_IDLE_S: u64 = 60;

/// The HTTP front door.
pub struct HttpFront {
    state: Arc<AppState>,
}

impl HttpFront {
    /// A front door serving `state`.
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }

    /// Answers one request; `Ok` when a complete response was written.
    async fn serve(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
        let path = session.req_header().uri.path();
        if let Some((code, body)) = health::answer(&self.state, path) {
            ctx.endpoint = "health";
            return respond::json(session, code, body).await;
        }
        let snap = self.state.snapshot();
        if path == snap.config.server.mcp_path {
            ctx.endpoint = "mcp";
            ctx.inflight = Some(self.state.begin_request());
            return mcp::handle(&self.state, session, ctx).await;
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

    /// Counts the response and writes the access-log line.
    fn log(&self, session: &Session, error: Option<&Error>, ctx: &RequestCtx) {
        let code = session.response_written().map_or(0, |r| r.status.as_u16());
        self.state.metrics.http_responses.with_label_values(&[ctx.endpoint, status_label(code)]).inc();
        if ctx.endpoint != "health" && self.state.snapshot().config.observability.access_log {
            let req = session.req_header();
            tracing::info!(
                target: "mcp_hangar::access",
                client = %session.client_addr().map(ToString::to_string).unwrap_or_default(),
                http_method = %req.method,
                path = req.uri.path(),
                status = code,
                mcp_method = ctx.method,
                era = ctx.era.map_or("", Era::as_str),
                fast_path = ctx.fast_path,
                duration_ms = ctx.started.elapsed().as_secs_f64() * 1000.0,
                error = error.map(|e| e.etype().as_str()).unwrap_or_default(),
                "request"
            );
        }
    }
}

/// Per-request state.
pub struct RequestCtx {
    /// Set for MCP requests only: health probes and scrapes are not work a drain waits for, and
    /// a probe reporting itself as in flight would never see an idle gateway.
    inflight: Option<InflightGuard>,
    endpoint: &'static str,
    /// Whether the request took the fast path (for the access log).
    pub fast_path: bool,
    /// The request's protocol era, once known.
    pub era: Option<Era>,
    /// The JSON-RPC method, once known (bounded, for logs).
    pub method: &'static str,
    /// When the request arrived.
    started: std::time::Instant,
    /// A long-lived stream the request opened, to go on without the HTTP session.
    pub detached: Option<DetachedStream>,
}

#[async_trait]
impl HttpServerApp for HttpFront {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: Session,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        // An idle keep-alive connection stops waiting when the server starts draining.
        let mut draining = shutdown.clone();
        let read = tokio::select! {
            biased;
            read = session.read_request() => read,
            _ = draining.wait_for(|stop| *stop) => return None,
        };
        match read {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                if matches!(e.etype(), ErrorType::InvalidHTTPHeader) {
                    let _ = session.respond_error(400).await;
                }
                session.shutdown().await;
                return None;
            }
        }
        session.set_keepalive(if *shutdown.borrow() { None } else { Some(KEEP_ALIVE_IDLE_S) });
        let mut ctx = RequestCtx {
            inflight: None,
            endpoint: "other",
            fast_path: false,
            era: None,
            method: "",
            started: std::time::Instant::now(),
            detached: None,
        };
        if let Err(e) = self.serve(&mut session, &mut ctx).await {
            if session.response_written().is_none() {
                let _ = session.respond_error(error_status(&e)).await;
            }
            if !matches!(e.etype(), ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed) {
                tracing::warn!("request failed: {e}");
            }
            self.log(&session, Some(&e), &ctx);
            return None;
        }
        self.log(&session, None, &ctx);
        if let Some(stream) = ctx.detached.take() {
            match session {
                Session::H1(h1) => {
                    tokio::spawn(stream.run(h1.into_inner(), ctx.inflight.take()));
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

/// The status for a request that failed before its response started (as Pingora's proxy maps it).
fn error_status(e: &Error) -> u16 {
    match (e.etype(), e.esource()) {
        (ErrorType::HTTPStatus(code), _) => *code,
        (_, ErrorSource::Downstream) => 400,
        _ => 500,
    }
}

/// A `'static` label for common status codes, so the counter never allocates per request.
fn status_label(code: u16) -> &'static str {
    match code {
        200 => "200",
        202 => "202",
        400 => "400",
        403 => "403",
        404 => "404",
        405 => "405",
        406 => "406",
        413 => "413",
        415 => "415",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        0 => "none",
        _ => "other",
    }
}
