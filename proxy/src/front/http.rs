//! The Pingora `ProxyHttp` implementation: a thin dispatcher. Each phase delegates to the module
//! that owns the concern; per-request state lives in [`RequestCtx`].

use std::sync::Arc;

use async_trait::async_trait;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorType, Result};
use pingora_proxy::{ProxyHttp, Session};

use crate::front::{health, respond};
use crate::state::{AppState, InflightGuard};

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
}

#[async_trait]
impl ProxyHttp for HttpFront {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> Self::CTX {
        RequestCtx {
            _inflight: self.state.begin_request(),
            endpoint: "other",
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
        let metrics = &snap.config.observability.metrics;
        if metrics.enabled && path == metrics.endpoint {
            ctx.endpoint = "metrics";
            let body = self.state.metrics.render();
            respond::send(
                session,
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                &[],
                body,
            )
            .await?;
            return Ok(true);
        }
        ctx.endpoint = "not_found";
        respond::json(session, 404, r#"{"error":"not found"}"#).await?;
        Ok(true)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        Err(Error::explain(
            ErrorType::InternalError,
            "no upstream chosen for this request",
        ))
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Self::CTX) {
        let code = session.response_written().map_or(0, |r| r.status.as_u16());
        self.state
            .metrics
            .http_responses
            .with_label_values(&[ctx.endpoint, status_label(code)])
            .inc();
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
        413 => "413",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        0 => "none",
        _ => "other",
    }
}
