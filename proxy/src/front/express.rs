//! The express path: a `tools/call` or `prompts/get` (modern, or in a legacy session) read,
//! checked and answered on the connection itself, without Pingora's HTTP session. The head is
//! parsed once into views over the connection's read buffer (`front::request_head`), the body is
//! the next `Content-Length` bytes of the same buffer (no copy), and the answer goes out with
//! one write.
//!
//! It is optimistic: every check the MCP endpoint makes is made here, on the views, by the same
//! functions (`front::checks`, `proto::headers`, `auth`, `front::fast`). A request that is not
//! the plain case — any check failing, an `Origin` the endpoint does not admit, a call the
//! fast path does not take, a slow or unusual body — is *declined* before anything about it
//! was recorded, and handed with every byte read so far to Pingora's session
//! (`front::rewind`), which answers it exactly as it did before this path existed. Rate limits
//! are the one thing taken before a decline can still come (they are taken where the MCP
//! endpoint takes them, before routing): a declined request says so, and Pingora's session does
//! not take them again. A browser's request from an admitted origin is answered here with the
//! CORS fields the endpoint gives it (`front::cors`).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pingora_core::server::ShutdownWatch;
use pingora_core::{Error, ErrorType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::body;
use super::checks::{accepts, conflicting_duplicate, host_allowed, is_json_body, origin_allowed};
use super::connection::ClientIo;
use super::fast;
use super::http::{AccessLine, HttpFront, RequestCtx};
use super::replier::Replier;
use super::request_head::{HeadView, RequestHead, Scan, MAX_HEAD};
use crate::jsonrpc::null_id;
use crate::jsonrpc::parse::{Envelope, Kind};
use crate::proto::fields::Fields;
use crate::proto::headers::check_modern;
use crate::proto::protocol::{Era, LEGACY_VERSIONS, MODERN_VERSION};
use crate::ratelimit;
use crate::state::Phase;
use crate::telemetry::metrics::Limit;
use crate::upstream::wire::put_number;

/// Room made in the read buffer before each read.
const READ_CHUNK: usize = 4 << 10;
/// A whole reply up to this size goes out in the same write as its head (copied once); a larger
/// one is written after it.
const COALESCE: usize = 16 << 10;

/// A connection's state kept between its requests.
#[derive(Default)]
pub struct Connection {
    /// Bytes read and not yet used: the next request's, or its start.
    buf: BytesMut,
    head: RequestHead,
    /// Where a whole response is put together, kept from one response to the next while it is
    /// small ([`KEPT_OUT`]): one allocation and its free less per call.
    out: BytesMut,
}

/// The largest response buffer a connection keeps between its requests.
const KEPT_OUT: usize = 4 << 10;

/// How the express path left a request.
pub enum Served {
    /// Answered.
    Answered {
        /// Whether the connection carries another request.
        keep: bool,
    },
    /// Not taken: these bytes (the request so far) go to Pingora's reader first.
    Declined {
        /// The request so far.
        read: Bytes,
        /// Whether its rate limits were taken here (a request spends its tokens once).
        rate_limits_taken: bool,
    },
    /// The connection is done (closed by the client, timed out, shutting down, broken).
    Closed,
}

impl Connection {
    /// The request so far, for Pingora's reader: its `extent` when known and read whole (what
    /// follows, a pipelined request, stays for the next turn), else everything read.
    fn decline(&mut self, extent: Option<usize>) -> Served {
        let read = match extent {
            Some(n) if n <= self.buf.len() => self.buf.split_to(n).freeze(),
            _ => self.buf.split().freeze(),
        };
        Served::Declined { read, rate_limits_taken: false }
    }
}

/// The body's length, when one plain `Content-Length` gives it (no transfer coding).
fn content_length(head: HeadView<'_>) -> Option<usize> {
    if head.first("transfer-encoding").is_some() {
        return None;
    }
    let mut lengths = head.each("content-length");
    let body = usize::try_from(crate::upstream::wire::parse_decimal(lengths.next()?)?).ok()?;
    lengths.next().is_none().then_some(body)
}

impl HttpFront {
    /// Answers requests on `stream` by the express path while they are plain and the
    /// connection stays open, each kept-alive request given the idle limit and then the header
    /// time; what ends the run (a request declined, the connection closed) is returned.
    pub(super) async fn express_run(
        self: &Arc<Self>,
        stream: &mut dyn ClientIo,
        conn: &mut Connection,
        shutdown: &ShutdownWatch,
        mut header_deadline: std::pin::Pin<&mut tokio::time::Sleep>,
        header_timeout: std::time::Duration,
    ) -> Served {
        loop {
            match self.express(stream, conn, shutdown, header_deadline.as_mut()).await {
                Served::Answered { keep: true } => {
                    let next = tokio::time::Instant::now() + super::http::KEEP_ALIVE_IDLE + header_timeout;
                    header_deadline.as_mut().reset(next);
                }
                ended => return ended,
            }
        }
    }

    /// Reads the next request on `stream` and answers it when it is the plain fast-path case.
    async fn express(
        self: &Arc<Self>,
        stream: &mut dyn ClientIo,
        conn: &mut Connection,
        shutdown: &ShutdownWatch,
        mut header_deadline: std::pin::Pin<&mut tokio::time::Sleep>,
    ) -> Served {
        let len = loop {
            // An empty buffer (the usual start: the last request was read whole) is read first.
            if !conn.buf.is_empty() {
                match conn.head.scan(&conn.buf) {
                    Scan::Complete(len) => break len,
                    Scan::Declined => return conn.decline(None),
                    Scan::Partial => {}
                }
            }
            let mut draining = shutdown.clone();
            conn.buf.reserve(READ_CHUNK);
            let read = tokio::select! {
                biased;
                _ = draining.wait_for(|stop| *stop) => return Served::Closed,
                read = stream.read_buf(&mut conn.buf) => Ok(read),
                () = header_deadline.as_mut() => Err(()),
            };
            match read {
                Ok(Ok(0)) if conn.buf.is_empty() => return Served::Closed,
                // A head cut short: Pingora's reader says so as it always has.
                Ok(Ok(0)) => return conn.decline(None),
                Ok(Ok(_)) => {}
                Ok(Err(_)) => return Served::Closed,
                Err(_) => {
                    self.state.metrics.limit_hit(Limit::HeaderTimeout);
                    return Served::Closed;
                }
            }
        };
        let arrived = std::time::Instant::now();
        let snap = self.state.snapshot();
        let Some(plan) = self.plain(conn.head.view(&conn.buf[..len]), &snap) else {
            let extent = content_length(conn.head.view(&conn.buf[..len])).and_then(|n| n.checked_add(len));
            return conn.decline(extent);
        };
        let mut held = self.state.memory.reservation();
        if held.grow(plan.body_len).is_err() {
            return conn.decline(Some(len + plan.body_len));
        }
        let limits = &snap.config.server.limits;
        let started = tokio::time::Instant::from_std(arrived);
        while conn.buf.len() < len + plan.body_len {
            conn.buf.reserve((len + plan.body_len - conn.buf.len()).min(1 << 20));
            let due = body::due(started, conn.buf.len() - len, limits.min_body_rate);
            match tokio::time::timeout_at(due, stream.read_buf(&mut conn.buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                // Slow, cut short or broken: Pingora's reader goes on from here.
                _ => return conn.decline(None),
            }
        }
        let request = conn.buf.split_to(len + plan.body_len).freeze();
        let body = request.slice(len..);
        let view = conn.head.view(&request[..len]);
        let (answer, principal, method) = match self.route(view, &snap, &plan, &body, arrived, &*stream).await {
            Routing::Taken { answer, principal, method } => (answer, principal, method),
            Routing::Declined { rate_limits_taken } => return Served::Declined { read: request, rate_limits_taken },
        };
        // Committed: from here on the request is this path's to answer.
        let mut ctx = RequestCtx::arrived(snap.clone(), arrived);
        ctx.endpoint = "mcp";
        ctx.inflight = Some(self.state.begin_request());
        ctx.era = Some(plan.era);
        ctx.method = self.state.metrics.request(method, plan.era.as_str());
        ctx.fast_path = matches!(answer, Answer::Fast(_));
        ctx.principal = Some(principal);
        let keep = !*shutdown.borrow();
        let mut client = Client::new(stream, &mut conn.buf, &mut conn.out, limits.client_write_timeout, keep);
        client.origin = view.text("origin");
        let served = match answer {
            Answer::Fast(route) => super::http::guarded(route.run(&self.state, &mut client)).await,
            Answer::OverLimit { retry_after, body } => {
                client.whole(429, "application/json", &[("retry-after", retry_after)], body).await
            }
        };
        drop(held);
        let error = served.as_ref().err().map(|e| &**e);
        if let Some(e) = error {
            if client.status == 0 {
                let _ = client.whole(super::http::error_status(e), "text/plain", &[], Bytes::new()).await;
            }
            if matches!(e.etype(), ErrorType::WriteTimedout) {
                self.state.metrics.limit_hit(Limit::SlowReader);
            }
        }
        let peer = || client.stream.peer();
        let line = AccessLine { status: client.status, http_method: "POST", path: view.target(), client: &peer };
        self.record(&line, error, &ctx);
        if error.is_some() || !client.clean {
            return Served::Closed;
        }
        Served::Answered { keep }
    }

    /// The request's plan when its head is the plain fast-path case, else `None`. Only looks.
    fn plain(&self, head: HeadView<'_>, snap: &crate::state::Snapshot) -> Option<Plan> {
        let settings = &snap.config.server;
        if self.state.phase() == Phase::Draining || head.method() != b"POST" || !head.http11() {
            return None;
        }
        let path = std::str::from_utf8(head.target()).ok()?;
        let door = super::mcp::door_of(snap, path)?;
        // What only Pingora's reader handles: framing other than a plain length, `Expect`,
        // upgrades, a connection the client wants closed.
        let unusual = ["transfer-encoding", "expect", "upgrade"];
        if unusual.iter().any(|n| head.first(n).is_some())
            || head.each("connection").any(|v| !v.eq_ignore_ascii_case(b"keep-alive"))
        {
            return None;
        }
        // A browser's request from an origin the MCP endpoint admits is answered here, its
        // responses marked for that origin (CORS); any other `Origin` is refused there.
        let mut origins = head.each("origin");
        if let Some(origin) = origins.next() {
            let admitted = std::str::from_utf8(origin).is_ok_and(|o| origin_allowed(o, &settings.allowed_origins));
            if !admitted || origins.next().is_some() {
                return None;
            }
        }
        let body_len = content_length(head)?;
        if body_len > settings.limits.max_body_bytes {
            return None;
        }
        let header_bytes: usize = head.all().map(|(n, v)| n.len() + v.len() + 4).sum();
        let accepts = accepts(&head);
        // A modern call names its method in the head; a legacy one only in its body, read next.
        let (era, method) = match head.text_bytes("mcp-protocol-version")? {
            v if v == MODERN_VERSION.as_bytes() => match head.text_bytes("mcp-method")? {
                b"tools/call" => (Era::Modern, Some("tools/call")),
                b"prompts/get" => (Era::Modern, Some("prompts/get")),
                _ => return None,
            },
            v if LEGACY_VERSIONS.iter().any(|l| l.as_bytes() == v) && head.first("mcp-session-id").is_some() => {
                (Era::Legacy, None)
            }
            _ => return None,
        };
        let plain = header_bytes <= settings.limits.max_header_bytes
            && conflicting_duplicate(&head).is_none()
            && host_allowed(head.text("host"), &settings.host)
            && is_json_body(&head)
            && accepts.json
            && accepts.sse;
        plain.then_some(Plan { door, body_len, era, method, accepts })
    }

    /// How a plain request whose body is in is answered here, or that it is declined.
    async fn route(
        &self,
        head: HeadView<'_>,
        snap: &Arc<crate::state::Snapshot>,
        plan: &Plan,
        body: &Bytes,
        arrived: std::time::Instant,
        client: &dyn ClientIo,
    ) -> Routing {
        let untouched = Routing::Declined { rate_limits_taken: false };
        let Ok((env, kind, params)) = Envelope::parse_request(body) else { return untouched };
        let method = match env.method_str() {
            "tools/call" => "tools/call",
            "prompts/get" => "prompts/get",
            _ => return untouched,
        };
        if kind != Kind::Request || plan.method.is_some_and(|m| m != method) {
            return untouched;
        }
        let Ok(params) = params else { return untouched };
        if plan.era == Era::Modern && check_modern(&head, method, &params, MODERN_VERSION).is_err() {
            return untouched;
        }
        let Ok(principal) = plan.door.authenticate(&head).await else { return untouched };
        // Where the MCP endpoint takes them: after the caller is known, before any routing.
        let limited = snap.rate_limits.active();
        if limited {
            let key = ratelimit::principal_key(&principal, client.peer_ip());
            if let Err(over) = ratelimit::admit(snap, &principal, &key, method, &params) {
                let (retry_after, body) = super::mcp::over_limit(&self.state, env.id.unwrap_or(null_id()), over);
                return Routing::Taken { answer: Answer::OverLimit { retry_after, body }, principal, method };
            }
        }
        let declined = Routing::Declined { rate_limits_taken: limited };
        let session = match plan.era {
            Era::Modern => None,
            Era::Legacy => {
                let Some(sid) = head.text("mcp-session-id") else { return declined };
                let Some(session) = super::mcp::session_of(&self.server, sid, &principal) else { return declined };
                Some(session)
            }
        };
        let call = fast::Call {
            env: &env,
            head: &params,
            body,
            fields: &head,
            accepts: plan.accepts,
            principal: &principal,
            session: session.as_ref(),
            arrived,
        };
        match fast::route(&self.state, snap, call) {
            Some(route) => Routing::Taken { answer: Answer::Fast(route), principal, method },
            None => declined,
        }
    }
}

/// What [`HttpFront::route`] made of a request. (A fast route is large and the other cases
/// small; it is not boxed: it lives in the request's future once, where a box would cost an
/// allocation per call.)
#[allow(clippy::large_enum_variant)]
enum Routing {
    /// Answered here.
    Taken {
        /// How it is answered.
        answer: Answer,
        /// Who calls.
        principal: Arc<crate::auth::Principal>,
        /// The JSON-RPC method.
        method: &'static str,
    },
    /// Declined, for Pingora's session to answer.
    Declined {
        /// Whether the request's rate limits were taken on the way.
        rate_limits_taken: bool,
    },
}

/// How a request taken by the express path is answered.
#[allow(clippy::large_enum_variant)]
enum Answer {
    /// Relayed to the upstream by the fast path.
    Fast(fast::FastRoute),
    /// Refused over a rate limit (429), as the MCP endpoint refuses it.
    OverLimit {
        /// The `Retry-After` value.
        retry_after: String,
        /// The JSON-RPC error.
        body: Bytes,
    },
}

/// What the head of a plain request says.
struct Plan {
    door: Arc<crate::auth::Security>,
    body_len: usize,
    era: Era,
    /// The method the head names (a modern request's `Mcp-Method`).
    method: Option<&'static str>,
    accepts: super::checks::Accepts,
}

/// The client side of an express call: our response written straight to the connection.
struct Client<'s> {
    stream: &'s mut dyn ClientIo,
    /// The connection's read buffer, where bytes of a pipelined next request go meanwhile.
    read: &'s mut BytesMut,
    /// The connection's response buffer (see [`Connection::out`]).
    out: &'s mut BytesMut,
    write_timeout: Duration,
    keep: bool,
    /// The status written, 0 before the head.
    status: u16,
    /// Whether the response ended where the connection can carry another.
    clean: bool,
    /// A streamed response's head, sent with its first chunk.
    pending: BytesMut,
    /// The admitted origin of a browser's request: every response carries its CORS fields.
    origin: Option<&'s str>,
}

impl<'s> Client<'s> {
    fn new(
        stream: &'s mut dyn ClientIo,
        read: &'s mut BytesMut,
        out: &'s mut BytesMut,
        write_timeout: Duration,
        keep: bool,
    ) -> Self {
        Self { stream, read, out, write_timeout, keep, status: 0, clean: false, pending: BytesMut::new(), origin: None }
    }

    /// The status line and the fields every response has, into `out`.
    fn head(&self, out: &mut BytesMut, status: u16) {
        let reason = http::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("");
        out.extend_from_slice(b"HTTP/1.1 ");
        put_number(out, usize::from(status), 10);
        out.extend_from_slice(b" ");
        out.extend_from_slice(reason.as_bytes());
        out.extend_from_slice(b"\r\n");
    }

    /// The fields that end every head (a browser's CORS fields first), and the blank line.
    fn end_head(&self, out: &mut BytesMut) {
        if let Some(origin) = self.origin {
            for (name, value) in super::cors::fields(origin) {
                put_field(out, name, value);
            }
        }
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(pingora_core::protocols::http::date::get_cached_date().as_bytes());
        out.extend_from_slice(if self.keep {
            b"\r\nconnection: keep-alive\r\n\r\n"
        } else {
            b"\r\nconnection: close\r\n\r\n"
        });
    }

    /// Writes `parts` and flushes, within the write timeout.
    async fn send(&mut self, parts: &[&[u8]]) -> pingora_core::Result<()> {
        let stream = &mut *self.stream;
        let mut write = std::pin::pin!(async {
            for part in parts {
                stream.write_all(part).await?;
            }
            stream.flush().await
        });
        // The socket takes nearly every response at once: the timeout's timer (and the clock
        // reading for its deadline) is made only for a write that has to wait.
        let written = match std::future::poll_fn(|cx| {
            std::task::Poll::Ready(std::future::Future::poll(write.as_mut(), cx))
        })
        .await
        {
            std::task::Poll::Ready(done) => Ok(done),
            std::task::Poll::Pending => tokio::time::timeout(self.write_timeout, write).await,
        };
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Error::e_because(ErrorType::WriteError, "writing the response", e),
            Err(_) => Error::e_explain(ErrorType::WriteTimedout, "writing the response"),
        }
    }
}

impl Replier for Client<'_> {
    async fn whole(
        &mut self,
        status: u16,
        content_type: &str,
        extra: &[(&'static str, String)],
        body: Bytes,
    ) -> pingora_core::Result<()> {
        let mut out = std::mem::take(&mut *self.out);
        out.clear();
        out.reserve(160 + if body.len() <= COALESCE { body.len() } else { 0 });
        self.head(&mut out, status);
        if !body.is_empty() {
            out.extend_from_slice(b"content-type: ");
            out.extend_from_slice(content_type.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"content-length: ");
        put_number(&mut out, body.len(), 10);
        out.extend_from_slice(b"\r\ncache-control: no-store\r\n");
        put_fields(&mut out, extra);
        self.end_head(&mut out);
        self.status = status;
        if body.len() <= COALESCE {
            out.extend_from_slice(&body);
            self.send(&[&out]).await?;
        } else {
            self.send(&[&out, &body]).await?;
        }
        if out.capacity() <= KEPT_OUT {
            *self.out = out;
        }
        self.clean = true;
        Ok(())
    }

    async fn stream_head(&mut self, status: u16, extra: &[(&'static str, String)]) -> pingora_core::Result<()> {
        let mut out = BytesMut::with_capacity(224);
        self.head(&mut out, status);
        out.extend_from_slice(b"content-type: text/event-stream\r\ncache-control: no-cache, no-transform\r\n");
        out.extend_from_slice(b"x-accel-buffering: no\r\ntransfer-encoding: chunked\r\n");
        put_fields(&mut out, extra);
        self.end_head(&mut out);
        self.status = status;
        self.pending = out;
        Ok(())
    }

    async fn stream_chunk(&mut self, chunk: Bytes) -> pingora_core::Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        let mut out = std::mem::take(&mut self.pending);
        put_number(&mut out, chunk.len(), 16);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&chunk);
        out.extend_from_slice(b"\r\n");
        self.send(&[&out]).await
    }

    async fn stream_end(&mut self) -> pingora_core::Result<()> {
        let mut out = std::mem::take(&mut self.pending);
        out.extend_from_slice(b"0\r\n\r\n");
        self.send(&[&out]).await?;
        self.clean = true;
        Ok(())
    }

    async fn stream_last(&mut self, chunk: Bytes) -> pingora_core::Result<()> {
        // Head (if not yet sent), the piece and the last-chunk marker: often the whole reply.
        let mut out = std::mem::take(&mut self.pending);
        if !chunk.is_empty() {
            put_number(&mut out, chunk.len(), 16);
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&chunk);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
        self.send(&[&out]).await?;
        self.clean = true;
        Ok(())
    }

    async fn gone(&mut self) {
        // A close or an error ends the call. Bytes are the next request of a pipelining client:
        // kept for its turn, up to a head's worth, after which the socket is left unread (the
        // client waits for its answers, as TCP makes it).
        while self.read.len() < MAX_HEAD {
            // The room left behind the request is read into first: the request's bytes still
            // share the buffer, so a reservation now would allocate a new one.
            if self.read.capacity() == self.read.len() {
                self.read.reserve(READ_CHUNK);
            }
            match self.stream.read_buf(self.read).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
        std::future::pending().await
    }
}

/// Appends header fields (the gateway's own names and values: no control characters).
fn put_fields(out: &mut BytesMut, fields: &[(&'static str, String)]) {
    for (name, value) in fields {
        put_field(out, name, value);
    }
}

/// Appends one header field: a name of the gateway's, a value of its own or one a request's
/// head carried and a check admitted (a field value of a parsed head has no line break).
fn put_field(out: &mut BytesMut, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::front::request_head::{RequestHead, Scan};

    fn length_of(fields: &str) -> Option<usize> {
        let text = format!("POST /mcp HTTP/1.1\r\nHost: h\r\n{fields}\r\n");
        let mut head = RequestHead::default();
        assert!(matches!(head.scan(text.as_bytes()), Scan::Complete(_)), "{fields}");
        content_length(head.view(text.as_bytes()))
    }

    /// The body of chunked HTTP/1.1 response `raw`, and whether its last chunk ended it.
    fn dechunk(raw: &[u8]) -> (Vec<u8>, bool) {
        let at = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a head") + 4;
        let (mut rest, mut body) = (&raw[at..], Vec::new());
        while let Some(line) = rest.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..line]).expect("hex"), 16).expect("size");
            if size == 0 {
                return (body, &rest[line..] == b"\r\n\r\n");
            }
            body.extend_from_slice(&rest[line + 2..line + 2 + size]);
            assert_eq!(&rest[line + 2 + size..line + 4 + size], b"\r\n", "a chunk's end");
            rest = &rest[line + 4 + size..];
        }
        (body, false)
    }

    #[tokio::test]
    async fn streamed_pieces_are_framed_as_chunks_whatever_their_size() {
        let (ours, mut theirs) = tokio::net::UnixStream::pair().expect("a socket pair");
        let mut stream: pingora_core::protocols::Stream =
            Box::new(pingora_core::protocols::l4::stream::Stream::from(ours));
        let pieces = [vec![b'a'; 10], vec![b'b'; COALESCE + 1], vec![b'c'; COALESCE], vec![b'd'; 3 * COALESCE]];
        let write = async {
            let mut read = BytesMut::new();
            let mut out = BytesMut::new();
            let mut client = Client::new(&mut stream, &mut read, &mut out, Duration::from_secs(5), true);
            client.stream_head(200, &[]).await.expect("head");
            for piece in &pieces[..3] {
                client.stream_chunk(Bytes::from(piece.clone())).await.expect("a piece");
            }
            client.stream_last(Bytes::from(pieces[3].clone())).await.expect("the last piece");
            drop(stream);
        };
        let mut raw = Vec::new();
        let (_, read) = tokio::join!(write, theirs.read_to_end(&mut raw));
        read.expect("read");
        assert_eq!(dechunk(&raw), (pieces.concat(), true));
    }

    #[tokio::test]
    async fn a_small_response_buffer_is_kept_for_the_next_and_a_large_one_is_not() {
        let (ours, _theirs) = tokio::net::UnixStream::pair().expect("a socket pair");
        let mut stream: pingora_core::protocols::Stream =
            Box::new(pingora_core::protocols::l4::stream::Stream::from(ours));
        let (mut read, mut out) = (BytesMut::new(), BytesMut::new());
        let mut client = Client::new(&mut stream, &mut read, &mut out, Duration::from_secs(5), true);
        client.whole(200, "application/json", &[], Bytes::from_static(b"{}")).await.expect("small");
        let kept = client.out.capacity();
        assert!(kept > 0 && kept <= KEPT_OUT, "kept: {kept}");
        client.whole(200, "application/json", &[], Bytes::from_static(b"[]")).await.expect("small");
        assert_eq!(client.out.capacity(), kept, "used again, not grown");
        // Coalesced with its head, so larger than a connection keeps.
        let large = Bytes::from(vec![b'x'; 2 * KEPT_OUT]);
        client.whole(200, "application/json", &[], large).await.expect("large");
        assert_eq!(client.out.capacity(), 0, "not kept");
    }

    #[tokio::test]
    async fn a_write_the_client_never_reads_ends_at_the_write_timeout() {
        let (ours, _theirs) = tokio::net::UnixStream::pair().expect("a socket pair");
        let mut stream: pingora_core::protocols::Stream =
            Box::new(pingora_core::protocols::l4::stream::Stream::from(ours));
        let mut read = BytesMut::new();
        let mut out = BytesMut::new();
        let mut client = Client::new(&mut stream, &mut read, &mut out, Duration::from_millis(200), true);
        // A small write the socket takes at once makes no timer and succeeds.
        client.whole(200, "application/json", &[], Bytes::from_static(b"{}")).await.expect("taken at once");
        // One larger than the socket's buffers, never read: it waits, and the timer ends it.
        let started = std::time::Instant::now();
        let body = Bytes::from(vec![b'x'; 64 << 20]);
        let err = client.whole(200, "application/json", &[], body).await.expect_err("never read");
        assert_eq!(err.etype(), &ErrorType::WriteTimedout, "{err}");
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    }

    #[test]
    fn only_a_plain_length_is_the_express_paths() {
        assert_eq!(length_of("Content-Length: 42\r\n"), Some(42));
        assert_eq!(length_of("content-length: 0\r\n"), Some(0));
        assert_eq!(length_of("Content-Length: 2\r\nContent-Length: 2\r\n"), None, "two copies: Pingora's to judge");
        for odd in ["+5", "-1", "5 5", "0x10", "", "99999999999999999999", "1,1"] {
            assert_eq!(length_of(&format!("Content-Length: {odd}\r\n")), None, "{odd:?}");
        }
        assert_eq!(length_of("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"), None);
        assert_eq!(length_of(""), None, "no length");
    }
}
