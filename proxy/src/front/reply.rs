//! Writing MCP replies: one JSON body, or an SSE stream (`event: message` framing) when
//! messages precede the response or the client only accepts SSE.

use bytes::Bytes;
use pingora_core::protocols::http::ServerSession as Session;
use pingora_http::ResponseHeader;

use super::checks::Accepts;
use crate::jsonrpc::sse;

/// One reply in the making.
pub struct Reply {
    accepts: Accepts,
    sse: bool,
    extra: Vec<(&'static str, String)>,
}

impl Reply {
    /// A reply for a client accepting `accepts`, with `extra` headers (e.g. `Mcp-Session-Id`).
    pub fn new(accepts: Accepts, extra: Vec<(&'static str, String)>) -> Self {
        Self { accepts, sse: false, extra }
    }

    /// Whether the SSE stream has started.
    pub fn streaming(&self) -> bool {
        self.sse
    }

    /// Starts the SSE stream (idempotent).
    pub async fn start_stream(&mut self, session: &mut Session) -> pingora_core::Result<()> {
        if self.sse {
            return Ok(());
        }
        let mut h = ResponseHeader::build(200, Some(6 + self.extra.len()))?;
        h.insert_header("content-type", "text/event-stream")?;
        h.insert_header("cache-control", "no-cache, no-transform")?;
        h.insert_header("x-accel-buffering", "no")?;
        // Framed, so the connection stays usable after the stream ends.
        h.insert_header("transfer-encoding", "chunked")?;
        for (n, v) in &self.extra {
            h.insert_header(*n, v.as_str())?;
        }
        super::cors::decorate(&mut h)?;
        session.write_response_header(Box::new(h)).await?;
        self.sse = true;
        Ok(())
    }

    /// Writes one message as an SSE event with an event id (resumable legacy streams). A client
    /// that does not take SSE gets only the final response: messages before it are dropped.
    pub async fn event_with_id(&mut self, session: &mut Session, id: &str, json: &[u8]) -> pingora_core::Result<()> {
        if !self.accepts.sse {
            return Ok(());
        }
        self.start_stream(session).await?;
        session.write_response_body(sse::frame_message_with_id(id, json), false).await
    }

    /// Writes the priming event of a resumable stream: an id, the reconnection delay, no data.
    pub async fn priming(&mut self, session: &mut Session, id: &str, retry_ms: u64) -> pingora_core::Result<()> {
        if !self.accepts.sse {
            return Ok(());
        }
        self.start_stream(session).await?;
        let event = format!("id: {id}\nretry: {retry_ms}\ndata: \n\n");
        session.write_response_body(Bytes::from(event), false).await
    }

    /// Whether a lone response would be written as plain JSON.
    pub fn plain_json(&self) -> bool {
        !self.sse && self.accepts.json && !self.accepts.prefer_sse
    }

    /// Writes one message as an SSE event (starting the stream if needed). A client that does not
    /// take SSE gets only the final response: messages before it are dropped.
    pub async fn event(&mut self, session: &mut Session, json: &[u8]) -> pingora_core::Result<()> {
        if !self.accepts.sse {
            return Ok(());
        }
        self.start_stream(session).await?;
        session.write_response_body(sse::frame_message(json), false).await
    }

    /// Writes a keep-alive comment on a started stream.
    pub async fn keep_alive(&mut self, session: &mut Session) -> pingora_core::Result<()> {
        if self.sse {
            session.write_response_body(Bytes::from_static(sse::KEEP_ALIVE), false).await?;
        }
        Ok(())
    }

    /// Writes the final message and ends the reply. `status` applies to a plain JSON reply.
    pub async fn finish(mut self, session: &mut Session, status: u16, json: Vec<u8>) -> pingora_core::Result<()> {
        if !self.sse && self.accepts.json && !self.accepts.prefer_sse {
            let mut h = ResponseHeader::build(status, Some(3 + self.extra.len()))?;
            h.insert_header("content-type", "application/json")?;
            h.insert_header("content-length", json.len())?;
            for (n, v) in &self.extra {
                h.insert_header(*n, v.as_str())?;
            }
            super::cors::decorate(&mut h)?;
            session.write_response_header(Box::new(h)).await?;
            return session.write_response_body(Bytes::from(json), true).await;
        }
        self.event(session, &json).await?;
        session.write_response_body(Bytes::new(), true).await
    }

    /// Ends a started stream without a final message (cancelled requests, closed streams).
    pub async fn end(self, session: &mut Session) -> pingora_core::Result<()> {
        if self.sse {
            session.write_response_body(Bytes::new(), true).await
        } else {
            session.respond_error(204).await
        }
    }
}
