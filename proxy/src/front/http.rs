//! The Pingora `ProxyHttp` implementation: a thin dispatcher. Each phase delegates to the module
//! that owns the concern; per-request state lives in [`RequestCtx`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

use crate::front::fast::FastRoute;
use crate::front::{health, mcp, respond};
use crate::jsonrpc::error_bytes;
use crate::jsonrpc::outcome::ReplyScan;
use crate::mcp::protocol::Era;
use crate::state::{AppState, InflightGuard};
use crate::telemetry::calls::{CallOutcome, CallRecord};
use crate::telemetry::openmetrics;
use crate::upstream::CallError;

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
    /// Set when the request is proxied on the fast path.
    pub fast: Option<FastRoute>,
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
            fast: None,
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

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Self::CTX) -> Result<Box<HttpPeer>> {
        match &mut ctx.fast {
            Some(route) => {
                route.begin_attempt();
                Ok(Box::new(route.peer.as_ref().clone()))
            }
            None => Err(Error::explain(ErrorType::InternalError, "no upstream chosen for this request")),
        }
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        if let Some(route) = &ctx.fast {
            route.rewrite_request(upstream_request)?;
        }
        Ok(())
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        if let Some(route) = &mut ctx.fast {
            route.splice(body);
        }
        Ok(())
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Self::CTX,
        mut e: Box<Error>,
    ) -> Box<Error> {
        // Nothing reached the member: any call may go to another one.
        if let Some(route) = &mut ctx.fast {
            let moved = route.retarget(&format!("cannot connect ({})", e.etype().as_str()));
            e.set_retry(moved);
        }
        e
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        if let Some(route) = &mut ctx.fast {
            let sse = upstream_response
                .headers
                .get(http::header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
            route.scan = Some(ReplyScan::new(sse));
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<Option<std::time::Duration>> {
        if let (Some(scan), Some(chunk)) = (ctx.fast.as_mut().and_then(|r| r.scan.as_mut()), body.as_ref()) {
            scan.feed(chunk);
        }
        Ok(None)
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Self::CTX) -> FailToProxy {
        let Some(route) = &ctx.fast else {
            let code = if matches!(e.etype(), ErrorType::HTTPStatus(_)) { 500 } else { 502 };
            let _ = session.respond_error(code).await;
            return FailToProxy { error_code: code, can_reuse_downstream: false };
        };
        let snap = &route.snap;
        let provider = snap.routes.providers.get(route.provider).map_or("", |p| p.name());
        let err = proxy_error(e, snap.config.server.limits.first_byte_timeout).to_rpc(provider);
        let written = session.response_written().is_some();
        if !written && respond::json(session, 200, error_bytes(&route.id, &err)).await.is_ok() {
            return FailToProxy { error_code: 200, can_reuse_downstream: true };
        }
        FailToProxy { error_code: 502, can_reuse_downstream: false }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Self::CTX) {
        let code = session.response_written().map_or(0, |r| r.status.as_u16());
        if let Some(route) = &mut ctx.fast {
            let routes = &route.snap.routes;
            if !route.recorded {
                routes.providers[route.provider].lifecycle.record(e.map(|e| e.etype().as_str()));
            }
            let outcome = match (e, &route.scan) {
                (Some(e), _) => CallOutcome::of_error(
                    &proxy_error(e, route.snap.config.server.limits.first_byte_timeout).to_rpc(""),
                ),
                (None, Some(scan)) => scan.outcome().into(),
                (None, None) => CallOutcome::Ok,
            };
            let message = e.map(|e| proxy_error(e, Duration::ZERO).to_string());
            if let Some(attempt) = route.attempt.take() {
                attempt.end(outcome.as_str(), message.as_deref());
            }
            if let Some(trace) = route.trace.take() {
                trace.end(outcome.as_str(), message.as_deref());
            }
            if let Some(tool) = &route.tool {
                let record = CallRecord {
                    provider: routes.providers[route.target()].name(),
                    tool,
                    outcome,
                    elapsed: route.started.elapsed(),
                    caller: route.caller.as_deref().unwrap_or_default(),
                    era: Era::Modern,
                    error: message.as_deref(),
                    arguments: route.arguments.take(),
                };
                record.record(routes, &self.state.metrics, &self.state.audit);
            }
        }
        self.state.metrics.http_responses.with_label_values(&[ctx.endpoint, status_label(code)]).inc();
        if ctx.endpoint != "health" && self.state.snapshot().config.observability.access_log {
            let req = session.req_header();
            let provider = ctx.fast.as_ref().map(|r| r.snap.routes.providers[r.provider].name());
            tracing::info!(
                target: "mcp_hangar::access",
                client = %session.client_addr().map(ToString::to_string).unwrap_or_default(),
                http_method = %req.method,
                path = req.uri.path(),
                status = code,
                mcp_method = ctx.method,
                era = ctx.era.map_or("", Era::as_str),
                fast_path = provider.is_some(),
                provider = provider.unwrap_or_default(),
                duration_ms = ctx.started.elapsed().as_secs_f64() * 1000.0,
                error = e.map(|e| e.etype().as_str()).unwrap_or_default(),
                "request"
            );
        }
    }
}

/// What a failed proxied exchange means for the caller, in the terms the slow path uses.
fn proxy_error(e: &Error, first_byte: std::time::Duration) -> CallError {
    match e.etype() {
        ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
            CallError::Timeout(format!("no answer within {first_byte:?}"))
        }
        ErrorType::ConnectTimedout => CallError::Timeout("connecting timed out".into()),
        ErrorType::ConnectRefused | ErrorType::ConnectNoRoute | ErrorType::ConnectError | ErrorType::SocketError => {
            CallError::Unavailable { reason: format!("cannot connect ({})", e.etype().as_str()), never_sent: true }
        }
        other => CallError::Unavailable { reason: other.as_str().to_owned(), never_sent: false },
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
