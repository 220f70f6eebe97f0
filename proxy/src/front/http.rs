//! The Pingora `ProxyHttp` implementation: a thin dispatcher. Each phase delegates to the module
//! that owns the concern; per-request state lives in [`RequestCtx`].

use std::sync::Arc;

use async_trait::async_trait;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorType, Result};
use pingora_proxy::{ProxyHttp, Session};

use crate::front::{health, mcp, respond};
use crate::mcp::protocol::Era;
use crate::state::{AppState, InflightGuard};
use crate::telemetry::openmetrics;

/// The HTTP front door.
pub struct HttpFront {
    state: Arc<AppState>,
}

impl HttpFront {
    /// A front door serving `state`.
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }
}

/// Per-request state.
pub struct RequestCtx {
    _inflight: InflightGuard,
    endpoint: &'static str,
    /// Whether the request took the fast path (for the access log).
    pub fast_path: bool,
    /// The request's protocol era, once known.
    pub era: Option<Era>,
    /// The JSON-RPC method, once known (bounded, for logs).
    pub method: &'static str,
    /// When the request arrived.
    started: std::time::Instant,
}

#[async_trait]
impl ProxyHttp for HttpFront {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> Self::CTX {
        RequestCtx {
            _inflight: self.state.begin_request(),
            endpoint: "other",
            fast_path: false,
            era: None,
            method: "",
            started: std::time::Instant::now(),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        let path = session.req_header().uri.path();
        if let Some((code, body)) = health::answer(&self.state, path) {
            ctx.endpoint = "health";
            respond::json(session, code, body).await?;
            return Ok(true);
        }
        let snap = self.state.snapshot();
        if path == snap.config.server.mcp_path {
            ctx.endpoint = "mcp";
            return mcp::handle(&self.state, session, ctx).await;
        }
        let metrics = &snap.config.observability.metrics;
        if metrics.enabled && path == metrics.endpoint {
            ctx.endpoint = "metrics";
            let in_flight = i64::try_from(self.state.inflight()).unwrap_or(i64::MAX);
            self.state.metrics.requests_in_flight.set(in_flight);
            let accept = session.req_header().headers.get(http::header::ACCEPT).and_then(|v| v.to_str().ok());
            if openmetrics::wanted(accept) {
                let body = self.state.metrics.render_openmetrics();
                respond::send(session, 200, openmetrics::CONTENT_TYPE, &[], body).await?;
            } else {
                let body = self.state.metrics.render();
                respond::send(session, 200, "text/plain; version=0.0.4; charset=utf-8", &[], body).await?;
            }
            return Ok(true);
        }
        ctx.endpoint = "not_found";
        respond::json(session, 404, r#"{"error":"not found"}"#).await?;
        Ok(true)
    }

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut Self::CTX) -> Result<Box<HttpPeer>> {
        // Every request is answered in `request_filter` (the fast path makes its own exchange).
        Err(Error::explain(ErrorType::InternalError, "the gateway proxies nothing through Pingora's pipeline"))
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Self::CTX) {
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
                error = e.map(|e| e.etype().as_str()).unwrap_or_default(),
                "request"
            );
        }
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
