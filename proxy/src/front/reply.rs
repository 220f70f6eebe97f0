//! Writing MCP replies: one JSON body, or an SSE stream (`event: message` framing) when
//! messages precede the response or the client only accepts SSE. Written against
//! [`Replier`], so the same reply goes out through Pingora's session or the express path's
//! own connection.

use bytes::Bytes;

use super::checks::Accepts;
use super::replier::Replier;
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
    pub async fn start_stream(&mut self, out: &mut impl Replier) -> pingora_core::Result<()> {
        if self.sse {
            return Ok(());
        }
        out.stream_head(200, &self.extra).await?;
        self.sse = true;
        Ok(())
    }

    /// Writes one message as an SSE event with an event id (resumable legacy streams). A client
    /// that does not take SSE gets only the final response: messages before it are dropped.
    pub async fn event_with_id(&mut self, out: &mut impl Replier, id: &str, json: &[u8]) -> pingora_core::Result<()> {
        if !self.accepts.sse {
            return Ok(());
        }
        self.start_stream(out).await?;
        out.stream_chunk(sse::frame_message_with_id(id, json)).await
    }

    /// Writes the priming event of a resumable stream: an id, the reconnection delay, no data.
    pub async fn priming(&mut self, out: &mut impl Replier, id: &str, retry_ms: u64) -> pingora_core::Result<()> {
        if !self.accepts.sse {
            return Ok(());
        }
        self.start_stream(out).await?;
        out.stream_chunk(Bytes::from(format!("id: {id}\nretry: {retry_ms}\ndata: \n\n"))).await
    }

    /// Whether a lone response would be written as plain JSON.
    pub fn plain_json(&self) -> bool {
        !self.sse && self.accepts.json && !self.accepts.prefer_sse
    }

    /// Writes one message as an SSE event (starting the stream if needed). A client that does not
    /// take SSE gets only the final response: messages before it are dropped.
    pub async fn event(&mut self, out: &mut impl Replier, json: &[u8]) -> pingora_core::Result<()> {
        if !self.accepts.sse {
            return Ok(());
        }
        self.start_stream(out).await?;
        out.stream_chunk(sse::frame_message(json)).await
    }

    /// Writes a keep-alive comment on a started stream.
    pub async fn keep_alive(&mut self, out: &mut impl Replier) -> pingora_core::Result<()> {
        if self.sse {
            out.stream_chunk(Bytes::from_static(sse::KEEP_ALIVE)).await?;
        }
        Ok(())
    }

    /// Writes the final message and ends the reply. `status` applies to a plain JSON reply.
    pub async fn finish(mut self, out: &mut impl Replier, status: u16, json: Vec<u8>) -> pingora_core::Result<()> {
        if self.plain_json() {
            return out.whole(status, "application/json", &self.extra, Bytes::from(json)).await;
        }
        self.start_stream(out).await?;
        if self.accepts.sse {
            out.stream_last(sse::frame_message(&json)).await
        } else {
            // Only a stream started already gets here for such a client: no event on it.
            out.stream_end().await
        }
    }

    /// Ends the stream without a final message (cancelled requests, closed streams), starting it
    /// first if it has not started.
    pub async fn end(mut self, out: &mut impl Replier) -> pingora_core::Result<()> {
        self.start_stream(out).await?;
        out.stream_end().await
    }
}
