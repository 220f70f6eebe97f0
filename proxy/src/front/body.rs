//! Reading a request body whole, bounded in size, memory and time (the MCP endpoint's and the
//! admin API's).

use bytes::{Bytes, BytesMut};
use pingora_core::protocols::http::ServerSession as Session;

use crate::jsonrpc::{code, RpcError};
use crate::memory::Reservation;
use crate::state::AppState;
use crate::telemetry::metrics::Limit;

/// Time a request body is given before its rate is held against `min_body_rate`.
const BODY_RATE_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// When the next byte of a body begun at `started` must have come, `received` bytes in: the
/// [`BODY_RATE_GRACE`], then `min_rate` bytes per second on average.
pub fn due(started: tokio::time::Instant, received: usize, min_rate: usize) -> tokio::time::Instant {
    started + BODY_RATE_GRACE + std::time::Duration::from_secs_f64((received + 1) as f64 / min_rate.max(1) as f64)
}

/// Reads the whole body, refusing more than `limit` bytes, within the gateway's memory budget
/// (held until the returned reservation is dropped), and at no less than `min_rate` bytes per
/// second on average after [`BODY_RATE_GRACE`]: a body dripped a byte at a time is cut off.
pub async fn read_body(
    state: &AppState,
    session: &mut Session,
    limit: usize,
    min_rate: usize,
) -> Result<(Bytes, Reservation), (u16, RpcError)> {
    let too_large = || (413, RpcError::new(code::INVALID_REQUEST, "request body too large"));
    let mut held = state.memory.reservation();
    let busy = |e: crate::memory::Exhausted| (503, RpcError::new(code::OVERLOADED, e.to_string()));
    if let Some(len) = session
        .req_header()
        .headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        if len > limit {
            return Err(too_large());
        }
        held.grow(len).map_err(busy)?;
    }
    let expected = held.held();
    let mut buf = BytesMut::with_capacity(expected);
    let started = tokio::time::Instant::now();
    loop {
        let due = due(started, buf.len(), min_rate);
        let Ok(read) = tokio::time::timeout_at(due, session.read_request_body()).await else {
            state.metrics.limit_hit(Limit::BodyTooSlow);
            return Err((408, RpcError::new(code::INVALID_REQUEST, "the request body arrived too slowly")));
        };
        match read {
            Ok(Some(chunk)) => {
                if buf.len() + chunk.len() > limit {
                    return Err(too_large());
                }
                if buf.len() + chunk.len() > expected {
                    held.grow(chunk.len()).map_err(busy)?;
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok((buf.freeze(), held)),
            Err(_) => return Err((400, RpcError::new(code::INVALID_REQUEST, "cannot read the request body"))),
        }
    }
}
