//! Where the fast path writes its answer. The same call runs behind two front-door readers —
//! Pingora's HTTP session and the express path's own connection (`front::express`) — so the
//! answer's few shapes (a whole reply, an SSE stream) and the client's going away are written
//! against this trait once.

use bytes::Bytes;
use pingora_core::protocols::http::ServerSession as Session;
use pingora_http::ResponseHeader;

/// The client side of a fast-path call.
// Implemented and called inside the crate only, on concrete types, so the futures' `Send` is
// inferred where they are used.
#[allow(async_fn_in_trait)]
pub trait Replier {
    /// Writes a whole response, with `extra` headers (`Mcp-Session-Id`), and ends it.
    async fn whole(
        &mut self,
        status: u16,
        content_type: &str,
        extra: &[(&'static str, String)],
        body: Bytes,
    ) -> pingora_core::Result<()>;

    /// Starts a streamed (chunked) SSE response, with `extra` headers.
    async fn stream_head(&mut self, status: u16, extra: &[(&'static str, String)]) -> pingora_core::Result<()>;

    /// Writes one piece of a streamed response.
    async fn stream_chunk(&mut self, chunk: Bytes) -> pingora_core::Result<()>;

    /// Ends a streamed response.
    async fn stream_end(&mut self) -> pingora_core::Result<()>;

    /// Writes the last piece of a streamed response and ends it (in one write where the
    /// connection allows).
    async fn stream_last(&mut self, chunk: Bytes) -> pingora_core::Result<()> {
        self.stream_chunk(chunk).await?;
        self.stream_end().await
    }

    /// Resolves when the client went away (closed, or sent bytes where none may come): in
    /// 2026-07-28 that cancels the call.
    async fn gone(&mut self);
}

impl Replier for Session {
    async fn whole(
        &mut self,
        status: u16,
        content_type: &str,
        extra: &[(&'static str, String)],
        body: Bytes,
    ) -> pingora_core::Result<()> {
        if extra.is_empty() {
            return super::respond::send(self, status, content_type, &[], body).await;
        }
        let extra: Vec<(&str, &str)> = extra.iter().map(|(n, v)| (*n, v.as_str())).collect();
        super::respond::send(self, status, content_type, &extra, body).await
    }

    async fn stream_head(&mut self, status: u16, extra: &[(&'static str, String)]) -> pingora_core::Result<()> {
        let mut h = ResponseHeader::build(status, Some(5 + extra.len()))?;
        h.insert_header("content-type", "text/event-stream")?;
        h.insert_header("cache-control", "no-cache, no-transform")?;
        h.insert_header("x-accel-buffering", "no")?;
        // Framed, so the connection stays usable after the stream ends.
        h.insert_header("transfer-encoding", "chunked")?;
        for (n, v) in extra {
            h.insert_header(*n, v.as_str())?;
        }
        super::cors::decorate(&mut h)?;
        self.write_response_header(Box::new(h)).await
    }

    async fn stream_chunk(&mut self, chunk: Bytes) -> pingora_core::Result<()> {
        self.write_response_body(chunk, false).await
    }

    async fn stream_end(&mut self) -> pingora_core::Result<()> {
        self.write_response_body(Bytes::new(), true).await
    }

    async fn gone(&mut self) {
        let _ = self.read_body_or_idle(true).await;
    }
}
