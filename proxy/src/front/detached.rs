//! Long-lived SSE streams (`subscriptions/listen`, a legacy session's GET stream, the admin API's
//! event feed) once opened.
//!
//! The request that opens one is handled like any other, up to its first event. Then the HTTP
//! session is taken apart and the stream goes on in a task of its own that holds only the socket,
//! the stream's feed and its timers. Ten thousand idle streams then cost their sockets and channels
//! rather than ten thousand request-handling futures, each sized for the largest request path, and
//! HTTP sessions with their buffers.

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use pingora_core::protocols::Stream;
use serde_json::value::RawValue;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::jsonrpc::{result_bytes, sse};
use crate::mcp::server::McpServer;
use crate::mcp::session::StreamReader;
use crate::mcp::subscriptions::{self, ListenerGuard};
use crate::state::{AppState, InflightGuard, StreamSlot};
use crate::telemetry::metrics::Limit;

/// Interval of keep-alive comments on open SSE streams.
pub const KEEP_ALIVE_EVERY: Duration = Duration::from_secs(15);

/// Where a stream's messages come from.
pub enum Feed {
    /// `subscriptions/listen`: change notifications, tagged with the listen request's id. The
    /// stream ends with the request's result when the server ends it.
    Listen {
        /// The notifications.
        rx: mpsc::Receiver<Value>,
        /// The registration; dropping it unsubscribes.
        guard: ListenerGuard,
        /// The `subscriptions/listen` request's id.
        id: Box<RawValue>,
    },
    /// A legacy session's GET stream: messages the session pushes, already serialised (the
    /// reader keeps the session while its stream is open).
    Session(StreamReader),
    /// The admin API's event feed: the audit trail as it happens.
    Admin {
        /// The records, as JSON.
        rx: tokio::sync::broadcast::Receiver<Arc<str>>,
    },
}

/// An open SSE stream whose response header (and first events) were written through the HTTP
/// session, waiting for its socket.
pub struct DetachedStream {
    server: Arc<McpServer>,
    feed: Feed,
    _slot: StreamSlot,
    /// A client that does not take a message within this time stopped reading: it is dropped,
    /// not waited for.
    write_timeout: Duration,
}

impl DetachedStream {
    /// A stream fed by `feed`, holding one of the `max_concurrent_streams` slots.
    pub fn new(server: &Arc<McpServer>, feed: Feed, slot: StreamSlot) -> Self {
        let write_timeout = server.state.snapshot().config.server.limits.client_write_timeout;
        Self { server: server.clone(), feed, _slot: slot, write_timeout }
    }

    /// Writes `out` (and flushes) within the write deadline; `false` when the client is gone or
    /// too slow.
    async fn send(&self, io: &mut Stream, out: &[u8]) -> bool {
        let write = async {
            io.write_all(out).await?;
            io.flush().await
        };
        match tokio::time::timeout(self.write_timeout, write).await {
            Ok(Ok(())) => true,
            Ok(Err(_)) => false,
            Err(_) => {
                self.server.state.metrics.limit_hit(Limit::SlowReader);
                false
            }
        }
    }

    /// Runs the stream on `io` (positioned in the chunked body of its response) until the client
    /// goes away or the server ends it; the stream counts as a request in flight until then.
    pub async fn run(mut self, mut io: Stream, inflight: Option<InflightGuard>) {
        let ended_by_server = self.pump(&mut io).await;
        if ended_by_server {
            let last = match &self.feed {
                Feed::Listen { id, .. } => Some(result_bytes(id, &subscriptions::closing_result(id))),
                Feed::Session(_) | Feed::Admin { .. } => None,
            };
            let mut tail = BytesMut::new();
            if let Some(json) = last {
                tail.extend_from_slice(&chunk(&sse::frame_message(&json)));
            }
            tail.extend_from_slice(b"0\r\n\r\n");
            self.send(&mut io, &tail).await;
        }
        io.shutdown().await.ok();
        if let Feed::Listen { guard, .. } = self.feed {
            drop(guard);
            let server = self.server.clone();
            tokio::spawn(async move { subscriptions::refresh(&server).await });
        }
        drop(inflight);
    }

    /// Relays messages and keep-alives; `true` when the server ended the stream, `false` when
    /// the client went away.
    async fn pump(&mut self, io: &mut Stream) -> bool {
        let mut shutdown = self.server.state.shutdown_signal();
        let start = tokio::time::Instant::now() + KEEP_ALIVE_EVERY;
        let mut keep_alive = tokio::time::interval_at(start, KEEP_ALIVE_EVERY);
        let mut probe = [0u8; 1];
        if !self.send(io, &[]).await {
            return false;
        }
        loop {
            let out = tokio::select! {
                message = self.feed.next() => match message {
                    Some(json) => chunk(&sse::frame_message(&json)),
                    None => return true,
                },
                _ = keep_alive.tick() => chunk(sse::KEEP_ALIVE),
                () = AppState::shutdown_begun(&mut shutdown) => return true,
                read = io.read(&mut probe) => match read {
                    // Bytes from the client on a streaming connection are not requests; ignored.
                    Ok(n) if n > 0 => continue,
                    _ => return false,
                },
            };
            if !self.send(io, &out).await {
                return false;
            }
        }
    }
}

impl Feed {
    /// The next message's JSON, `None` once the feed ended.
    async fn next(&mut self) -> Option<Bytes> {
        match self {
            Feed::Listen { rx, id, .. } => {
                let n = rx.recv().await?;
                Some(serde_json::to_vec(&subscriptions::tag(n, id)).unwrap_or_default().into())
            }
            Feed::Session(reader) => reader.next().await,
            Feed::Admin { rx } => match rx.recv().await {
                Ok(json) => Some(Bytes::copy_from_slice(json.as_bytes())),
                // A reader that fell behind is told how much it missed, and goes on.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    Some(Bytes::from(format!(r#"{{"type":"lagged","missed":{n}}}"#)))
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => None,
            },
        }
    }
}

/// `data` as one HTTP/1.1 chunk.
fn chunk(data: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(data.len() + 12);
    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.put_slice(data);
    out.put_slice(b"\r\n");
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::chunk;

    #[test]
    fn chunks_are_framed_with_hex_lengths() {
        assert_eq!(&chunk(b"hello")[..], b"5\r\nhello\r\n");
        assert_eq!(&chunk(&[b'x'; 26])[..12], b"1a\r\nxxxxxxxx");
    }
}
