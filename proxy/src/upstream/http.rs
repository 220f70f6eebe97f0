//! A small HTTP/1.1 client for talking to upstream MCP servers. Used by every path: the fast
//! path, era probes, legacy sessions, aggregation fan-out, bridging.
//!
//! TLS connections are made by Pingora's transport connector (rustls, the peer's trust options),
//! plain TCP ones here (`upstream::conn`); the exchange on them is this module's own
//! (`upstream::wire`): the request head and body leave in one write (on loopback every write
//! wakes the server), the response head is parsed once into offsets over its bytes, and
//! connections wait in an idle stack per origin of our own. Pingora's HTTP client session and pool cost, per request, a `HeaderMap` per head, a
//! `getpeername` per reuse, a timer per read and write and a watcher task per release (README,
//! "Performance"); here a reused connection is checked by polling it once without a waker.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use sha2::Digest as _;

use arc_swap::ArcSwapOption;
use bytes::{Bytes, BytesMut};
use pingora_core::connectors::TransportConnector;
use pingora_core::protocols::tls::CaType;
use pingora_core::upstreams::peer::{HttpPeer, Peer as _};
use pingora_core::utils::tls::{parse_x509, WrappedX509};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};

use super::conn::Conn;
use super::wire::{self, BodyDecoder, ResponseHead};
use crate::memory::MemoryBudget;

/// Why an HTTP exchange with an upstream failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The URL cannot be used.
    #[error("invalid upstream URL {url:?}: {reason}")]
    BadUrl {
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The host name did not resolve.
    #[error("cannot resolve {host}: {reason}")]
    Resolve {
        /// The host.
        host: String,
        /// The resolver's message.
        reason: String,
    },
    /// Connecting or sending failed; nothing reached the upstream's application.
    #[error("cannot reach {url}: {reason}")]
    Connect {
        /// The URL.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The upstream did not start answering within the first-byte timeout.
    #[error("{url} did not answer within {0:?}", .timeout)]
    Timeout {
        /// The URL.
        url: String,
        /// The limit.
        timeout: Duration,
    },
    /// The exchange's deadline ([`Timeouts::deadline`]) passed before it was over.
    #[error("{url} did not answer before the call's deadline")]
    Deadline {
        /// The URL.
        url: String,
    },
    /// The certificate authorities to trust cannot be loaded.
    #[error("cannot load the certificate authorities in {path}: {reason}")]
    Trust {
        /// The PEM file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The exchange broke after the request was sent.
    #[error("exchange with {url} failed: {reason}")]
    Io {
        /// The URL.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The request cannot be written (a header value that is not a valid field value): it never
    /// left the gateway.
    #[error("{reason}")]
    Unbuildable {
        /// What is wrong with it.
        reason: String,
    },
    /// Reading the reply would pass the gateway's memory budget.
    #[error(transparent)]
    Overloaded(#[from] crate::memory::Exhausted),
    /// A response body exceeded the size limit.
    #[error("response from {url} exceeds {limit} bytes")]
    TooLarge {
        /// The URL.
        url: String,
        /// The limit.
        limit: usize,
    },
}

impl HttpError {
    /// Whether the request certainly never reached the upstream application (safe to retry).
    pub fn never_sent(&self) -> bool {
        matches!(self, Self::Resolve { .. } | Self::Connect { .. } | Self::BadUrl { .. } | Self::Unbuildable { .. })
    }
}

/// Timeouts applied to each exchange.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// TCP (and TLS) connect.
    pub connect: Duration,
    /// From the end of the request to the response header.
    pub first_byte: Duration,
    /// Longest gap between two body chunks.
    pub idle: Duration,
    /// When the whole exchange, body included, must be over (a call's deadline): every wait
    /// in it ends by then at the latest. A caller bounded by it needs no timer of its own
    /// around the exchange, which would be a second one to arm and clear on every call.
    pub deadline: Option<tokio::time::Instant>,
}

impl Timeouts {
    /// When a wait that may last `limit` must end: `limit` from now, or the deadline if sooner;
    /// and whether the deadline is what ends it.
    fn until(&self, limit: Duration) -> (tokio::time::Instant, bool) {
        let by_limit = tokio::time::Instant::now() + limit;
        match self.deadline {
            Some(deadline) if deadline <= by_limit => (deadline, true),
            _ => (by_limit, false),
        }
    }
}

/// `wait`, ended with a [`HttpError::Deadline`] for `url` if `deadline` comes first.
async fn by<T>(
    deadline: Option<tokio::time::Instant>,
    url: impl FnOnce() -> String,
    wait: impl std::future::Future<Output = Result<T, HttpError>>,
) -> Result<T, HttpError> {
    match deadline {
        Some(deadline) => {
            tokio::time::timeout_at(deadline, wait).await.unwrap_or_else(|_| Err(HttpError::Deadline { url: url() }))
        }
        None => wait.await,
    }
}

/// How an `https` endpoint's certificate is checked: against the system's roots (the default),
/// against the authorities of a PEM file, or (only when configured so) not at all.
#[derive(Clone, Default)]
pub struct TlsTrust {
    roots: Option<Arc<CaType>>,
    insecure: bool,
    /// A digest of the roots: connections are pooled apart by it. (Pingora's pool key covers
    /// whether certificates are verified, not against what: without it, a connection verified
    /// against one provider's `ca_file` would be reused for another provider of the same address
    /// that trusts only the system's roots.)
    roots_digest: u64,
}

impl TlsTrust {
    /// The trust a remote provider's `ca_file` and `insecure_skip_verify` ask for.
    pub fn load(ca_file: Option<&std::path::Path>, insecure: bool) -> Result<Self, HttpError> {
        let Some(path) = ca_file else { return Ok(Self { roots: None, insecure, roots_digest: 0 }) };
        let fail = |reason: String| HttpError::Trust { path: path.display().to_string(), reason };
        let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
        let mut roots = Vec::new();
        for block in x509_parser::pem::Pem::iter_from_buffer(&pem) {
            let block = block.map_err(|e| fail(format!("not PEM: {e}")))?;
            if block.label != "CERTIFICATE" {
                continue;
            }
            // Checked here: Pingora's wrapper panics on a certificate it cannot parse.
            x509_parser::parse_x509_certificate(&block.contents)
                .map_err(|e| fail(format!("a bad certificate: {e}")))?;
            roots.push(WrappedX509::new(block.contents, parse_x509));
        }
        if roots.is_empty() {
            return Err(fail("no certificates".into()));
        }
        let digest = sha2::Sha256::digest(&pem);
        let roots_digest = u64::from_be_bytes(digest[..8].try_into().unwrap_or_default()).max(1);
        Ok(Self { roots: Some(roots.into()), insecure, roots_digest })
    }
}

/// A parsed `http(s)://host[:port]/path` URL and its resolved peer.
pub struct Endpoint {
    url: String,
    /// The URL as errors show it ([`hangar_config::redact_url`]): errors reach clients and logs.
    shown: Arc<str>,
    tls: bool,
    host: String,
    port: u16,
    authority: String,
    path: String,
    trust: TlsTrust,
    peer: ArcSwapOption<Resolved>,
}

/// An endpoint's resolved peer and the key its connections are pooled under (Pingora's reuse
/// hash: address, TLS, SNI, verification and the trusted roots' digest).
pub struct Resolved {
    /// How to connect over TLS.
    pub peer: HttpPeer,
    /// The address, for plain TCP.
    pub addr: std::net::SocketAddr,
    /// Connections that are interchangeable share this key.
    pub key: u64,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint").field("url", &self.shown).finish()
    }
}

impl Endpoint {
    /// Parses `url` (validated by the configuration already, checked again here).
    pub fn parse(url: &str) -> Result<Self, HttpError> {
        let bad = |reason| HttpError::BadUrl { url: hangar_config::redact_url(url), reason };
        let (tls, rest) = if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else {
            return Err(bad("scheme must be http or https"));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'?' => (&rest[..i], format!("/{}", &rest[i..])),
            Some(i) => (&rest[..i], rest[i..].to_owned()),
            None => (rest, "/".to_owned()),
        };
        let host_port = authority;
        let (host, port) = if let Some(v6) = host_port.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed IPv6 address"))?;
            (h.to_owned(), after.strip_prefix(':'))
        } else {
            match host_port.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (host_port.to_owned(), None),
            }
        };
        let port = match port {
            Some(p) => p.parse::<u16>().map_err(|_| bad("invalid port"))?,
            None if tls => 443,
            None => 80,
        };
        if host.is_empty() {
            return Err(bad("missing host"));
        }
        if authority.contains('@') {
            return Err(bad("credentials in the URL are never sent; use headers"));
        }
        // The path goes on the request line as it is.
        if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(bad("spaces or control characters in the path"));
        }
        Ok(Self {
            url: url.to_owned(),
            shown: hangar_config::redact_url(url).into(),
            tls,
            host,
            port,
            authority: host_port.to_owned(),
            path,
            trust: TlsTrust::default(),
            peer: ArcSwapOption::empty(),
        })
    }

    /// The endpoint with its certificate checked as `trust` says.
    pub fn with_trust(mut self, trust: TlsTrust) -> Self {
        self.trust = trust;
        self
    }

    /// The start of a `method` request's head to this endpoint with `fields`, for a
    /// [`Request::start`] rendered once and sent many times.
    pub fn head_start(&self, method: &str, fields: &[wire::Field<'_>]) -> Result<Bytes, String> {
        wire::head_start(method, &self.path, &self.authority, fields).map(BytesMut::freeze)
    }

    /// The URL as configured.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL with credentials and query values hidden, for messages.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// Whether `other` is on the same origin (scheme, host and port) as this endpoint.
    pub fn same_origin(&self, other: &Endpoint) -> bool {
        self.tls == other.tls && self.host.eq_ignore_ascii_case(&other.host) && self.port == other.port
    }

    /// Path and query to put on the request line.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The `Host` header value.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// Another endpoint on the same origin (HTTP+SSE servers name their POST URL relatively).
    pub fn join(&self, reference: &str) -> Result<Self, HttpError> {
        if reference.starts_with("http://") || reference.starts_with("https://") {
            return Self::parse(reference).map(|e| e.with_trust(self.trust.clone()));
        }
        let scheme = if self.tls { "https" } else { "http" };
        let path = if reference.starts_with('/') {
            reference.to_owned()
        } else {
            let dir = self.path.rsplit_once('/').map_or("", |(d, _)| d);
            format!("{dir}/{reference}")
        };
        Self::parse(&format!("{scheme}://{}{path}", self.authority)).map(|e| e.with_trust(self.trust.clone()))
    }

    /// The peer to connect to, resolving the host on first use (asynchronously: the resolver
    /// never blocks a worker thread).
    pub async fn peer(&self, timeouts: &Timeouts) -> Result<Arc<Resolved>, HttpError> {
        if let Some(p) = self.peer.load_full() {
            return Ok(p);
        }
        // The resolver runs on a blocking thread; the wait for it is bounded like a connect.
        let resolve = |reason: String| HttpError::Resolve { host: self.host.clone(), reason };
        let addr = tokio::time::timeout(timeouts.connect, tokio::net::lookup_host((self.host.as_str(), self.port)))
            .await
            .map_err(|_| resolve(format!("no answer within {:?}", timeouts.connect)))?
            .map_err(|e| resolve(e.to_string()))?
            .next()
            .ok_or_else(|| resolve("no addresses".into()))?;
        let mut peer = HttpPeer::new(addr, self.tls, self.host.clone());
        peer.options.connection_timeout = Some(timeouts.connect);
        peer.options.total_connection_timeout = Some(timeouts.connect);
        // A default for sessions on this peer; each exchange sets its reads' timeouts itself.
        peer.options.read_timeout = Some(timeouts.first_byte);
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        peer.options.verify_cert = !self.trust.insecure;
        peer.options.verify_hostname = !self.trust.insecure;
        if let Some(roots) = &self.trust.roots {
            peer.options.ca = Some(roots.clone());
        }
        peer.group_key = self.trust.roots_digest;
        let key = peer.reuse_hash();
        let resolved = Arc::new(Resolved { peer, addr, key });
        self.peer.store(Some(resolved.clone()));
        Ok(resolved)
    }

    /// Forgets the resolved address so the next exchange resolves again (after connect failures).
    pub fn forget_peer(&self) {
        self.peer.store(None);
    }
}

/// The shared upstream HTTP client.
pub struct HttpClient {
    connector: TransportConnector,
    idle: IdleConnections,
    budget: Arc<MemoryBudget>,
}

impl HttpClient {
    /// A client whose reply bodies are read within `budget`.
    pub fn new(budget: Arc<MemoryBudget>) -> Self {
        Self { connector: TransportConnector::new(None), idle: IdleConnections::default(), budget }
    }

    /// A new connection to `resolved`, within `limit`: plain TCP made here, TLS by Pingora's
    /// connector (boxed: its future is large, and every exchange's would otherwise be as large).
    async fn connect(&self, resolved: &Resolved, limit: Duration) -> Result<Conn, String> {
        if resolved.peer.is_tls() {
            let tls = Box::pin(self.connector.new_stream(&resolved.peer)).await;
            return tls.map(Conn::Pingora).map_err(|e| e.to_string());
        }
        match tokio::time::timeout(limit, Conn::tcp(resolved.addr)).await {
            Ok(tcp) => tcp.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no connection within {limit:?}")),
        }
    }

    /// Closes the connections that have been idle longer than the idle limit (a server that
    /// closed one left it half-closed here until then). Called periodically.
    pub fn close_expired(&self) {
        self.idle.close_expired();
    }
}

impl Default for HttpClient {
    /// A client with an unlimited budget (tests).
    fn default() -> Self {
        Self::new(MemoryBudget::new(usize::MAX, Arc::default()))
    }
}

/// How long a connection may wait in the idle stack (servers commonly close theirs after 60 s
/// or more; one closed earlier is noticed when taken).
const IDLE_LIMIT: Duration = Duration::from_secs(55);
/// The most idle connections kept per origin (nginx's `keepalive 128`).
const IDLE_PER_ORIGIN: usize = 128;
/// What a read asks for at least: a whole small reply in one read.
const READ_SIZE: usize = 8 << 10;
/// The largest buffer an idle connection keeps for its next exchange (one that grew past it,
/// for a large reply, is let go): the head of the next request is written from it and its
/// reply read into it, without an allocation.
const KEPT_BUFFER: usize = 2 * READ_SIZE;
/// The most buffer reserved ahead for a body of known length.
const MAX_RESERVE: usize = 1 << 20;

/// Connections ready for another request, per pool key, the most recently used on top: it is
/// the one most likely still open and warm in cache. The lock is held for a push or a pop only,
/// never across an await.
#[derive(Default)]
struct IdleConnections {
    stacks: parking_lot::Mutex<foldhash::HashMap<u64, VecDeque<Idle>>>,
}

struct Idle {
    link: Link,
    since: Instant,
}

/// An upstream connection with what goes with it from one exchange to the next: the buffer of
/// its last exchange (emptied, [`KEPT_BUFFER`] at most) and the timer that bounds its waits.
/// The timer is reset for each exchange and each wait for the rest of a body: moving a
/// registered timer later is an atomic store, where a timer made for each wait was registered
/// with tokio's timer wheel, and taken out of it, every time.
struct Link {
    stream: Conn,
    buf: BytesMut,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl Link {
    fn new(stream: Conn) -> Self {
        let timer = Box::pin(tokio::time::sleep_until(tokio::time::Instant::now()));
        Link { stream, buf: BytesMut::with_capacity(READ_SIZE), timer }
    }
}

/// `wait`, or `None` if `timer` fires first.
async fn within<F: std::future::Future>(timer: Pin<&mut tokio::time::Sleep>, wait: F) -> Option<F::Output> {
    tokio::select! {
        biased;
        out = wait => Some(out),
        () = timer => None,
    }
}

impl IdleConnections {
    /// The most recent idle connection for `key` that is still open. One the server closed (or
    /// wrote to unasked) is dropped: polling it once, without a waker, says so without a
    /// syscall unless the socket has become readable since its last read.
    fn take(&self, key: u64) -> Option<Link> {
        loop {
            let mut idle = {
                let mut stacks = self.stacks.lock();
                let stack = stacks.get_mut(&key)?;
                match stack.pop_back() {
                    Some(idle) => idle,
                    None => {
                        stacks.remove(&key);
                        return None;
                    }
                }
            };
            if idle.since.elapsed() < IDLE_LIMIT && still_open(&mut idle.link.stream) {
                return Some(idle.link);
            }
        }
    }

    /// Puts a connection back on top of its stack, with its emptied buffer; the oldest goes when
    /// the stack is full or has waited too long.
    fn put(&self, key: u64, mut link: Link) {
        // The timer forgets the waker of the task that last waited on it (that task may end
        // now; a waker held until the timer fires would keep its memory).
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        let _ = std::future::Future::poll(link.timer.as_mut(), &mut cx);
        let mut closed = Vec::new();
        {
            let mut stacks = self.stacks.lock();
            let stack = stacks.entry(key).or_default();
            let now = Instant::now();
            stack.push_back(Idle { link, since: now });
            drop_oldest(stack, IDLE_PER_ORIGIN, now, &mut closed);
        }
        drop(closed); // closed outside the lock
    }

    fn close_expired(&self) {
        let mut closed = Vec::new();
        {
            let mut stacks = self.stacks.lock();
            let now = Instant::now();
            for stack in stacks.values_mut() {
                drop_oldest(stack, usize::MAX, now, &mut closed);
            }
            stacks.retain(|_, s| !s.is_empty());
        }
        drop(closed);
    }

    #[cfg(test)]
    fn count(&self) -> usize {
        self.stacks.lock().values().map(VecDeque::len).sum()
    }

    /// The capacities of the buffers the idle connections keep.
    #[cfg(test)]
    fn kept_buffers(&self) -> Vec<usize> {
        self.stacks.lock().values().flatten().map(|i| i.link.buf.capacity()).collect()
    }
}

/// Moves into `closed` the oldest connections of `stack` while it holds more than `keep` or its
/// oldest has waited past the idle limit by `now`.
fn drop_oldest(stack: &mut VecDeque<Idle>, keep: usize, now: Instant, closed: &mut Vec<Idle>) {
    while stack.len() > keep || stack.front().is_some_and(|i| now.saturating_duration_since(i.since) >= IDLE_LIMIT) {
        closed.extend(stack.pop_front());
    }
}

/// Whether an idle connection can carry a request: a read polled once must find nothing yet.
/// End of stream, an error or unasked bytes (a late reply, garbage) all make it unusable.
fn still_open(stream: &mut Conn) -> bool {
    let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
    let mut byte = [0u8; 1];
    let mut buf = ReadBuf::new(&mut byte);
    matches!(Pin::new(stream).poll_read(&mut cx, &mut buf), Poll::Pending)
}

/// An outgoing request.
pub struct Request<'a> {
    /// `GET`, `POST` or `DELETE`.
    pub method: &'static str,
    /// The head's start for this endpoint and method, rendered ahead ([`wire::head_start`]):
    /// what every request of a kind shares is rendered and checked once. `None` starts the head
    /// with the request line and `Host` alone.
    pub start: Option<&'a [u8]>,
    /// Headers besides `Host`, `Content-Length` and those in `start`.
    pub headers: Vec<wire::Field<'a>>,
    /// Body (empty for GET/DELETE).
    pub body: Body,
    /// Whether sending it twice is harmless. A pooled connection that closes after the request
    /// was written may or may not have delivered it; only a replayable request is then sent again.
    pub replayable: bool,
}

/// A request body: one piece, or two — a body with a span cut out of it (the fast path's tool
/// prefix), sent as it lies in the client's read buffer. A small body is copied after the head
/// into one buffer; a large one leaves with the head in one vectored write, never copied.
#[derive(Debug, Clone, Default)]
pub struct Body {
    first: Bytes,
    second: Bytes,
}

/// Bodies up to this size are copied after the request head (one buffer, one plain write);
/// larger ones are written from where they lie.
const COPIED_BODY: usize = 4 << 10;

impl Body {
    /// `whole` without the bytes in `cut` (`whole` itself when `cut` does not fit it).
    pub fn without(whole: &Bytes, cut: std::ops::Range<usize>) -> Self {
        if cut.start > cut.end || cut.end > whole.len() {
            return Self::from(whole.clone());
        }
        Self { first: whole.slice(..cut.start), second: whole.slice(cut.end..) }
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.first.len() + self.second.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Its bytes in one piece (joined only when it is in two).
    pub fn contiguous(&self) -> std::borrow::Cow<'_, [u8]> {
        if self.second.is_empty() {
            return std::borrow::Cow::Borrowed(&self.first);
        }
        std::borrow::Cow::Owned([&self.first[..], &self.second[..]].concat())
    }
}

impl From<Bytes> for Body {
    fn from(first: Bytes) -> Self {
        Self { first, second: Bytes::new() }
    }
}

/// A response whose body has not been read yet.
pub struct Response {
    /// The connection, and in its buffer what was read from it past the head.
    conn: Option<Link>,
    /// Whether the buffer never grew past [`KEPT_BUFFER`]: a buffer's capacity right after each
    /// reservation covers every allocation it has made (within one earlier allocation), so the
    /// connection keeps only buffers that are small.
    keeps_buffer: bool,
    decoder: BodyDecoder,
    /// A piece of the body decoded ahead by [`Response::ended`], for the next [`Response::chunk`].
    ahead: Option<Bytes>,
    head: ResponseHead,
    key: u64,
    client: Arc<HttpClient>,
    url: Arc<str>,
    /// The body's waits: `idle` each, and the exchange's deadline.
    timeouts: Timeouts,
    /// The status code.
    pub status: u16,
}

impl HttpClient {
    /// Sends `req` to `endpoint` and returns once the response header has arrived. A request that
    /// could not be written to a pooled connection (the server had closed it) is sent again on a
    /// new one; so is a replayable request whose pooled connection closed before any reply byte.
    pub async fn send(
        self: &Arc<Self>,
        endpoint: &Endpoint,
        req: &Request<'_>,
        timeouts: &Timeouts,
    ) -> Result<Response, HttpError> {
        // Checked before a connection is taken: a request that cannot be written costs nothing.
        let fields = wire::check_fields(&req.headers).map_err(|reason| HttpError::Unbuildable { reason })?;
        let body = &req.body;
        let copied = body.len() <= COPIED_BODY;
        let shown = || endpoint.shown.to_string();
        let resolved = match endpoint.peer.load_full() {
            Some(resolved) => resolved,
            None => by(timeouts.deadline, shown, endpoint.peer(timeouts)).await?,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (mut link, reused) = match self.idle.take(resolved.key) {
                Some(link) => (link, true),
                // Boxed: connecting (TCP, TLS) is a large future, and every exchange's future
                // would otherwise be that large and copied whole when created.
                None => {
                    let connect = async {
                        self.connect(&resolved, timeouts.connect).await.map_err(|reason| {
                            endpoint.forget_peer();
                            HttpError::Connect { url: shown(), reason }
                        })
                    };
                    (Link::new(by(timeouts.deadline, shown, connect).await?), false)
                }
            };
            let buf = &mut link.buf;
            // The head, and a small body after it, in the connection's buffer; a large body
            // leaves from where it lies, in the same vectored write.
            buf.clear();
            match req.start {
                Some(start) => buf.extend_from_slice(start),
                None => wire::put_request_line(buf, req.method, &endpoint.path, &endpoint.authority),
            }
            wire::end_head(buf, fields, req.method, body.len());
            let rest: [&[u8]; 2] = if copied {
                buf.extend_from_slice(&body.first);
                buf.extend_from_slice(&body.second);
                [&[], &[]]
            } else {
                [&body.first, &body.second]
            };
            let (due, deadline_first) = timeouts.until(timeouts.first_byte);
            match exchange(link, rest, req.method == "HEAD", due).await {
                Ok((link, head, keeps_buffer)) => {
                    return Ok(Response {
                        status: head.status,
                        decoder: BodyDecoder::new(head.framing),
                        ahead: None,
                        head,
                        conn: Some(link),
                        keeps_buffer,
                        key: resolved.key,
                        client: self.clone(),
                        url: endpoint.shown.clone(),
                        timeouts: *timeouts,
                    });
                }
                Err(Failure::Unsent) if reused && attempt == 1 => continue,
                Err(Failure::Unsent) => {
                    return Err(HttpError::Connect {
                        url: shown(),
                        reason: "connection closed before the request was sent".into(),
                    })
                }
                Err(Failure::Closed) if reused && attempt == 1 && req.replayable => continue,
                Err(Failure::Closed) => {
                    return Err(HttpError::Io {
                        url: shown(),
                        reason: "connection closed before a response (the request may have been received)".into(),
                    })
                }
                Err(Failure::Timeout) if deadline_first => return Err(HttpError::Deadline { url: shown() }),
                Err(Failure::Timeout) => return Err(HttpError::Timeout { url: shown(), timeout: timeouts.first_byte }),
                Err(Failure::Io(reason)) => return Err(HttpError::Io { url: shown(), reason }),
            }
        }
    }
}

enum Failure {
    /// The request could not be written: the connection was dead (typical of a pooled one the
    /// server closed); nothing reached the server.
    Unsent,
    /// The request was written, then the connection closed with no reply byte: a pooled
    /// connection the server closed meanwhile, or a server that died handling the request.
    Closed,
    Timeout,
    Io(String),
}

/// Writes the request (the link's buffer, then the `rest` of its body: one vectored write, as
/// far as the socket takes them) and reads the response head into the buffer, both by
/// `deadline`. Interim (1xx) responses are skipped; what follows the head stays in the buffer,
/// with whether it is small enough for the connection to keep ([`KEPT_BUFFER`]).
async fn exchange(
    mut link: Link,
    rest: [&[u8]; 2],
    head_request: bool,
    deadline: tokio::time::Instant,
) -> Result<(Link, ResponseHead, bool), Failure> {
    let Link { stream, buf, timer } = &mut link;
    // One reset for the write and the head's reads: each costs a clock-to-tick conversion.
    timer.as_mut().reset(deadline);
    let write = async {
        write_all_vectored(stream, [buf, rest[0], rest[1]]).await?;
        stream.flush().await
    };
    match within(timer.as_mut(), write).await {
        Some(Ok(())) => {}
        Some(Err(_)) => return Err(Failure::Unsent),
        None => return Err(Failure::Timeout),
    }
    let mut small = buf.capacity() <= KEPT_BUFFER;
    buf.clear();
    let mut read_any = false;
    loop {
        match wire::parse_head(buf, head_request) {
            Ok(Some(head)) if head.status == 101 => return Err(Failure::Io("the upstream switched protocols".into())),
            Ok(Some(head)) if head.status < 200 => continue,
            Ok(Some(head)) => return Ok((link, head, small)),
            Ok(None) => {}
            Err(e) => return Err(Failure::Io(e.to_string())),
        }
        buf.reserve(READ_SIZE);
        small &= buf.capacity() <= KEPT_BUFFER;
        match within(timer.as_mut(), stream.read_buf(buf)).await {
            None => return Err(Failure::Timeout),
            Some(Ok(0)) | Some(Err(_)) if !read_any => return Err(Failure::Closed),
            Some(Ok(0)) => return Err(Failure::Io("the connection closed inside the response head".into())),
            Some(Err(e)) => return Err(Failure::Io(e.to_string())),
            Some(Ok(_)) => read_any = true,
        }
    }
}

/// Writes every byte of `pieces`, as few writes as the socket allows.
async fn write_all_vectored(stream: &mut Conn, pieces: [&[u8]; 3]) -> std::io::Result<()> {
    let mut slices = pieces.map(std::io::IoSlice::new);
    let mut left: &mut [std::io::IoSlice<'_>] = &mut slices;
    while !left.is_empty() {
        match stream.write_vectored(left).await? {
            0 => return Err(std::io::ErrorKind::WriteZero.into()),
            n => std::io::IoSlice::advance_slices(&mut left, n),
        }
    }
    Ok(())
}

impl Response {
    /// A response header value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.field(name)
    }

    /// The `Content-Type` value, as sent.
    pub fn content_type(&self) -> Option<&[u8]> {
        self.head.content_type()
    }

    /// Whether the body is an SSE stream.
    pub fn is_event_stream(&self) -> bool {
        self.content_type().is_some_and(|c| c.trim_ascii_start().starts_with(b"text/event-stream"))
    }

    fn io(&self, reason: String) -> HttpError {
        HttpError::Io { url: self.url.to_string(), reason }
    }

    /// The next body chunk, `None` at the end. Each wait is bounded by the idle timeout.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, HttpError> {
        if let Some(data) = self.ahead.take() {
            return Ok(Some(data));
        }
        loop {
            let Some(Link { stream, buf, timer }) = self.conn.as_mut() else { return Ok(None) };
            match self.decoder.decode(buf) {
                Ok(Some(data)) => return Ok(Some(data)),
                Ok(None) if self.decoder.done() => return Ok(None),
                Ok(None) => {}
                Err(e) => return Err(self.io(e.to_string())),
            }
            // Room for the rest of a body of known length (one read once it has arrived).
            let rest = self.decoder.remaining().and_then(|r| usize::try_from(r).ok()).unwrap_or(0);
            buf.reserve(rest.clamp(READ_SIZE, MAX_RESERVE));
            self.keeps_buffer &= buf.capacity() <= KEPT_BUFFER;
            let (due, deadline_first) = self.timeouts.until(self.timeouts.idle);
            timer.as_mut().reset(due);
            let read = match within(timer.as_mut(), stream.read_buf(buf)).await {
                Some(read) => read,
                None if deadline_first => return Err(HttpError::Deadline { url: self.url.to_string() }),
                None => return Err(self.io(format!("no data for {:?}", self.timeouts.idle))),
            };
            match read {
                Ok(0) => {
                    // The connection is over either way; whether that ends the body or cuts it
                    // short depends on the framing.
                    self.conn = None;
                    return match self.decoder.closed() {
                        Ok(()) => Ok(None),
                        Err(e) => Err(self.io(e.to_string())),
                    };
                }
                Ok(_) => {}
                Err(e) => return Err(self.io(e.to_string())),
            }
        }
    }

    /// Whether the body is over, as far as the bytes already read show (no wait): a relay then
    /// ends its own response in the same write as the last piece.
    pub fn ended(&mut self) -> bool {
        if self.ahead.is_some() {
            return false;
        }
        let Some(Link { buf, .. }) = self.conn.as_mut() else { return true };
        match self.decoder.decode(buf) {
            Ok(Some(data)) => {
                self.ahead = Some(data);
                false
            }
            Ok(None) => self.decoder.done(),
            // The next `chunk` meets the same error and reports it.
            Err(_) => false,
        }
    }

    /// Reads the whole body, refusing more than `limit` bytes, and returns the connection to the
    /// pool.
    pub async fn body(mut self, limit: usize) -> Result<Bytes, HttpError> {
        if self.decoder.remaining().is_some_and(|r| r > limit as u64) {
            return Err(HttpError::TooLarge { url: self.url.to_string(), limit });
        }
        let mut held = self.client.budget.reservation();
        // Most replies arrive in one piece, which is returned as it is, without a copy.
        let (mut only, mut joined, mut total) = (None::<Bytes>, BytesMut::new(), 0);
        while let Some(chunk) = self.chunk().await? {
            total += chunk.len();
            if total > limit {
                return Err(HttpError::TooLarge { url: self.url.to_string(), limit });
            }
            held.grow(chunk.len())?;
            if only.is_none() && joined.is_empty() {
                only = Some(chunk);
                continue;
            }
            if let Some(first) = only.take() {
                joined.extend_from_slice(&first);
            }
            joined.extend_from_slice(&chunk);
        }
        self.release().await;
        Ok(only.unwrap_or_else(|| joined.freeze()))
    }

    /// Returns the connection to the pool if the response was read to its end and the server
    /// keeps it; otherwise the connection is closed (a half-read body cannot be reused).
    pub async fn release(mut self) {
        if let Some(mut link) = self.conn.take() {
            // Bytes past the response (a server answering twice) make the connection unusable.
            if self.decoder.done() && self.head.keep_alive && link.buf.is_empty() {
                if !self.keeps_buffer {
                    link.buf = BytesMut::new();
                }
                self.client.idle.put(self.key, link);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed CA certificate (P-256), for trust tests.
    const TEST_CA: &str = "-----BEGIN CERTIFICATE-----\nMIIBezCCASGgAwIBAgIUNbVqD0EY9nOtPV/YOoXs/Zbz+O0wCgYIKoZIzj0EAwIw\nEjEQMA4GA1UEAwwHdGVzdCBjYTAgFw0yNjEyMDEyMDI1NDNaGA8yMTI2MTEwNzIw\nMjU0M1owEjEQMA4GA1UEAwwHdGVzdCBjYTBZMBMGByqGSM49AgEGCCqGSM49AwEH\nA0IABLqlUpQkSWdGIgNw6IwaVfwWYBP4a/m7VGkWmTp4gbYhDaeRK3gdt8EICqkK\nE6kNOZjWn2eEizMf7MdLYJPnRwOjUzBRMB0GA1UdDgQWBBSaWFobf6o+R/92uJYv\nrpZqOJChHTAfBgNVHSMEGDAWgBSaWFobf6o+R/92uJYvrpZqOJChHTAPBgNVHRMB\nAf8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIQCcn7BtHImltjKwEw7EqE7QTrAt\nhJCR7RzoERovYPuEiQIgKD4Q6jQEOnctZAExds1UN+4izlR5tK6+g0UnfZDCT/c=\n-----END CERTIFICATE-----\n";

    #[tokio::test]
    async fn connections_are_pooled_apart_by_what_they_trust() {
        let dir = std::env::temp_dir().join(format!("hangar-trust-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, TEST_CA).expect("ca written");
        let timeouts = Timeouts {
            connect: Duration::from_secs(1),
            first_byte: Duration::from_secs(1),
            idle: Duration::from_secs(1),
            deadline: None,
        };
        let peer = |trust: TlsTrust| {
            let e = Endpoint::parse("https://127.0.0.1:8443/mcp").expect("url").with_trust(trust);
            async move { e.peer(&timeouts).await.expect("peer").key }
        };
        let system = peer(TlsTrust::load(None, false).expect("system roots")).await;
        let own = peer(TlsTrust::load(Some(&ca), false).expect("own roots")).await;
        let again = peer(TlsTrust::load(Some(&ca), false).expect("own roots")).await;
        assert_ne!(
            system, own,
            "a connection verified against a ca_file is not one verified against the system's roots"
        );
        assert_eq!(own, again, "the same roots share connections");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn parses_urls() {
        let e = Endpoint::parse("http://127.0.0.1:9001/mcp").expect("url");
        assert_eq!(
            (e.tls, e.host.as_str(), e.port, e.path(), e.authority()),
            (false, "127.0.0.1", 9001, "/mcp", "127.0.0.1:9001")
        );
        let e = Endpoint::parse("https://example.com").expect("url");
        assert_eq!((e.tls, e.port, e.path()), (true, 443, "/"));
        let e = Endpoint::parse("http://[::1]:8080/a?b=c").expect("url");
        assert_eq!((e.host.as_str(), e.port, e.path()), ("::1", 8080, "/a?b=c"));
        let e = Endpoint::parse("http://h?x=1").expect("url");
        assert_eq!(e.path(), "/?x=1");
        assert!(Endpoint::parse("ftp://x").is_err());
        assert!(Endpoint::parse("http://h:99999/").is_err());
    }

    #[test]
    fn errors_show_the_url_without_secrets_and_origins_compare() {
        let e = Endpoint::parse("http://127.0.0.1:1/mcp?token=s3cret").expect("url");
        assert_eq!(e.shown(), "http://127.0.0.1:1/mcp?token=***");
        assert!(!format!("{e:?}").contains("s3cret"));
        let err = Endpoint::parse("http://u:pw@h/mcp").expect_err("userinfo refused");
        assert!(!err.to_string().contains("pw"), "{err}");
        let other = e.join("http://127.0.0.1:2/steal").expect("join");
        assert!(!e.same_origin(&other));
        assert!(e.same_origin(&e.join("/messages?s=1").expect("join")));
        assert!(!e.same_origin(&Endpoint::parse("https://127.0.0.1:1/mcp").expect("url")), "scheme counts");
    }

    #[test]
    fn joins_relative_references() {
        let e = Endpoint::parse("http://127.0.0.1:9/sse").expect("url");
        assert_eq!(e.join("/messages?sessionId=1").expect("join").url(), "http://127.0.0.1:9/messages?sessionId=1");
        assert_eq!(e.join("messages").expect("join").url(), "http://127.0.0.1:9/messages");
        let e = Endpoint::parse("http://127.0.0.1:9/a/sse").expect("url");
        assert_eq!(e.join("messages").expect("join").url(), "http://127.0.0.1:9/a/messages");
    }

    /// A server that answers its first request with keep-alive, then reads the next request on
    /// that connection and closes it without a reply; later connections are answered. Returns
    /// its address and the number of requests it has read.
    async fn closing_server() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = seen.clone();
        tokio::spawn(async move {
            let mut first = true;
            while let Ok((mut conn, _)) = listener.accept().await {
                let (counter, close_second) = (counter.clone(), std::mem::take(&mut first));
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    for n in 0.. {
                        let Ok(read) = conn.read(&mut buf).await else { return };
                        if read == 0 {
                            return;
                        }
                        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        if close_second && n == 1 {
                            return; // dies handling the request
                        }
                        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if conn.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (addr, seen)
    }

    /// A server that answers each request on a connection with `reply`, then closes the
    /// connection when `close_after_first`; returns its address and the connections it accepted.
    async fn scripted_server(
        reply: &'static [u8],
        close_after_first: bool,
    ) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    while matches!(conn.read(&mut buf).await, Ok(n) if n > 0) {
                        if conn.write_all(reply).await.is_err() || close_after_first {
                            return;
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    /// A server that answers each request with the body it received (read by its
    /// `content-length`), on a kept-alive connection; a request whose body is `stall` it reads
    /// and leaves unanswered.
    async fn echoing_server() -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            let mut more = [0u8; 4096];
                            match conn.read(&mut more).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&more[..n]),
                            }
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length: "))
                            .and_then(|n| n.trim().parse().ok())
                            .unwrap_or(0);
                        while buf.len() < end + 4 + len {
                            let mut more = [0u8; 4096];
                            match conn.read(&mut more).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&more[..n]),
                            }
                        }
                        let body: Vec<u8> = buf.drain(..end + 4 + len).skip(end + 4).collect();
                        if body == b"stall" {
                            continue;
                        }
                        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
                        if conn.write_all(&[head.as_bytes(), &body].concat()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn bodies_with_a_span_cut_out_arrive_whole_small_or_large() {
        let endpoint = Endpoint::parse(&format!("http://{}/mcp", echoing_server().await)).expect("url");
        let client = Arc::new(HttpClient::default());
        for size in [10, COPIED_BODY, COPIED_BODY + 1, 256 << 10] {
            let whole = Bytes::from((0..size + 6).map(|i| b'a' + (i % 26) as u8).collect::<Vec<u8>>());
            let body = Body::without(&whole, 3..9);
            assert_eq!(body.len(), size);
            let want = [&whole[..3], &whole[9..]].concat();
            assert_eq!(body.contiguous().as_ref(), want.as_slice());
            let req = Request { method: "POST", start: None, headers: Vec::new(), body, replayable: false };
            let resp = client.send(&endpoint, &req, &quick()).await.expect("reply");
            let echoed = resp.body(1 << 20).await.expect("body");
            assert_eq!(echoed.as_ref(), want.as_slice(), "{size} bytes, the pieces in order");
        }
        assert_eq!(client.idle.count(), 1, "one connection carried them all");
        let whole = Bytes::from_static(b"abc");
        assert_eq!(Body::without(&whole, 2..5).contiguous().as_ref(), b"abc", "a cut past the end cuts nothing");
    }

    #[tokio::test]
    async fn a_connection_keeps_its_buffer_for_the_next_exchange_unless_a_large_reply_grew_it() {
        let endpoint = Endpoint::parse(&format!("http://{}/mcp", echoing_server().await)).expect("url");
        let client = Arc::new(HttpClient::default());
        let (client, endpoint) = (&client, &endpoint);
        let send = |text: Vec<u8>| async move {
            let body = Bytes::from(text).into();
            let req = Request { method: "POST", start: None, headers: Vec::new(), body, replayable: false };
            client.send(endpoint, &req, &quick()).await.expect("reply").body(1 << 20).await.expect("body")
        };
        // The first reply is still held while the next request is written and its reply read
        // on the same connection, into what is left of the same buffer: neither may be touched.
        let first = send(b"first".to_vec()).await;
        assert_eq!(client.idle.kept_buffers().len(), 1);
        assert!(client.idle.kept_buffers()[0] > 0, "a small exchange's buffer is kept");
        let second = send(vec![b'2'; 3000]).await;
        assert_eq!(first.as_ref(), b"first");
        assert_eq!(second.as_ref(), vec![b'2'; 3000].as_slice());
        drop((first, second));
        for _ in 0..3 {
            assert_eq!(send(b"again".to_vec()).await.as_ref(), b"again");
        }
        // A large reply grows the buffer: the connection is kept, its buffer is not.
        let large = send(vec![b'L'; 100 << 10]).await;
        assert_eq!(large.len(), 100 << 10);
        assert_eq!(client.idle.kept_buffers(), [0], "one connection, its grown buffer let go");
        assert_eq!(send(b"after".to_vec()).await.as_ref(), b"after");
        assert!(client.idle.kept_buffers()[0] > 0, "a new buffer is kept again");
    }

    #[tokio::test]
    async fn a_connection_s_timer_bounds_each_exchange_by_its_own_deadline() {
        let endpoint = Endpoint::parse(&format!("http://{}/mcp", echoing_server().await)).expect("url");
        let client = Arc::new(HttpClient::default());
        let (client, endpoint) = (&client, &endpoint);
        let send = |text: &'static [u8], first_byte: Duration| async move {
            let body = Bytes::from_static(text).into();
            let req = Request { method: "POST", start: None, headers: Vec::new(), body, replayable: false };
            let timeouts = Timeouts { first_byte, ..quick() };
            let started = std::time::Instant::now();
            let reply = match client.send(endpoint, &req, &timeouts).await {
                Ok(resp) => resp.body(1024).await.map(|b| b.to_vec()),
                Err(e) => Err(e),
            };
            (reply, started.elapsed())
        };
        // A short wait after a long one on the same connection: its timer is moved earlier.
        let (reply, _) = send(b"one", Duration::from_secs(10)).await;
        assert_eq!(reply.expect("reply"), b"one");
        let (reply, took) = send(b"stall", Duration::from_millis(200)).await;
        assert!(matches!(reply, Err(HttpError::Timeout { .. })), "{reply:?}");
        assert!(took < Duration::from_secs(5), "bounded by its own 200 ms, not the 10 s before it: {took:?}");
        // A connection whose timer fired while it waited in the pool: the next exchange sets
        // it again, and is not cut short by the old firing.
        let (reply, _) = send(b"two", Duration::from_millis(50)).await;
        assert_eq!(reply.expect("reply"), b"two");
        tokio::time::sleep(Duration::from_millis(150)).await;
        let (reply, _) = send(b"three", Duration::from_secs(2)).await;
        assert_eq!(reply.expect("reply"), b"three");
        assert_eq!(client.idle.count(), 1, "the connection that timed out was not kept");
    }

    fn quick() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(2),
            first_byte: Duration::from_secs(2),
            idle: Duration::from_secs(2),
            deadline: None,
        }
    }

    #[tokio::test]
    async fn connections_are_reused_and_chunked_bodies_decoded() {
        let reply = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let (addr, accepted) = scripted_server(reply, false).await;
        let endpoint = Endpoint::parse(&format!("http://{addr}/mcp")).expect("url");
        let client = Arc::new(HttpClient::default());
        for _ in 0..3 {
            let resp = client.send(&endpoint, &request(false), &quick()).await.expect("reply");
            assert_eq!(resp.body(1024).await.expect("body").as_ref(), b"abcde");
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1, "one connection carried all three");
        assert_eq!(client.idle.count(), 1);
    }

    #[tokio::test]
    async fn the_end_of_a_body_is_seen_without_waiting_and_nothing_is_lost_looking() {
        let reply = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let (addr, _) = scripted_server(reply, false).await;
        let endpoint = Endpoint::parse(&format!("http://{addr}/mcp")).expect("url");
        let client = Arc::new(HttpClient::default());
        let mut resp = client.send(&endpoint, &request(false), &quick()).await.expect("reply");
        // The whole reply arrived with the head (one write by the server).
        let first = resp.chunk().await.expect("ok").expect("a piece");
        assert_eq!(first.as_ref(), b"abc");
        assert!(!resp.ended(), "a piece is still buffered");
        assert_eq!(resp.chunk().await.expect("ok").expect("the piece looked ahead").as_ref(), b"de");
        assert!(resp.ended(), "the last-chunk marker is in the buffer");
        assert!(resp.chunk().await.expect("ok").is_none());
        resp.release().await;
        assert_eq!(client.idle.count(), 1, "an ended body leaves its connection reusable");
    }

    #[tokio::test]
    async fn a_pooled_connection_the_server_closed_is_not_used() {
        let (addr, accepted) = scripted_server(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", true).await;
        let endpoint = Endpoint::parse(&format!("http://{addr}/mcp")).expect("url");
        let client = Arc::new(HttpClient::default());
        let first = client.send(&endpoint, &request(false), &quick()).await.expect("first reply");
        assert_eq!(first.body(1024).await.expect("body").as_ref(), b"ok");
        assert_eq!(client.idle.count(), 1, "kept: the reply did not say close");
        // The server's FIN arrives; the next request is not replayable, so it could not be sent
        // again had it gone to the closed connection.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let second = client.send(&endpoint, &request(false), &quick()).await.expect("sent on a new connection");
        assert_eq!(second.body(1024).await.expect("body").as_ref(), b"ok");
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_body_past_the_limit_or_cut_short_is_an_error_and_its_connection_not_kept() {
        let (addr, _) = scripted_server(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n0123456789", false).await;
        let endpoint = Endpoint::parse(&format!("http://{addr}/mcp")).expect("url");
        let client = Arc::new(HttpClient::default());
        let resp = client.send(&endpoint, &request(false), &quick()).await.expect("reply");
        assert!(matches!(resp.body(4).await, Err(HttpError::TooLarge { limit: 4, .. })));
        assert_eq!(client.idle.count(), 0);
        let (addr, _) = scripted_server(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n01234", true).await;
        let endpoint = Endpoint::parse(&format!("http://{addr}/mcp")).expect("url");
        let resp = client.send(&endpoint, &request(false), &quick()).await.expect("reply");
        let err = resp.body(1024).await.expect_err("truncated");
        assert!(err.to_string().contains("closed before the response body ended"), "{err}");
        assert_eq!(client.idle.count(), 0);
    }

    fn request(replayable: bool) -> Request<'static> {
        Request { method: "POST", start: None, headers: Vec::new(), body: Bytes::from_static(b"{}").into(), replayable }
    }

    #[tokio::test]
    async fn an_unbuildable_request_never_takes_a_connection_and_is_not_the_upstreams_fault() {
        let (addr, seen) = closing_server().await;
        let endpoint = Endpoint::parse(&format!("http://{addr}/mcp")).expect("url");
        let timeouts = quick();
        let mut req = request(false);
        req.headers.push((http::HeaderName::from_static("traceparent"), "00-1\r\nx-injected: 1".into()));
        let err = Arc::new(HttpClient::default()).send(&endpoint, &req, &timeouts).await.err().expect("unbuildable");
        assert!(matches!(err, HttpError::Unbuildable { .. }), "{err}");
        assert!(err.never_sent());
        let call_error = crate::upstream::CallError::from(err);
        assert_eq!(call_error.health_failure(), None, "not counted against the provider");
        assert_eq!(call_error.to_rpc("p").code, crate::jsonrpc::code::INVALID_PARAMS);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 0, "nothing reached the server");
    }

    #[tokio::test]
    async fn a_request_that_may_have_been_received_is_sent_again_only_if_replayable() {
        let timeouts = quick();
        for replayable in [false, true] {
            let (addr, seen) = closing_server().await;
            let endpoint = Endpoint::parse(&format!("http://{addr}/mcp")).expect("url");
            let client = Arc::new(HttpClient::default());
            let first = client.send(&endpoint, &request(false), &timeouts).await.expect("first reply");
            assert_eq!(first.body(1024).await.expect("body").as_ref(), b"ok");
            let second = client.send(&endpoint, &request(replayable), &timeouts).await;
            if replayable {
                assert!(second.is_ok(), "resent on a new connection");
                assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 3);
            } else {
                let err = second.err().expect("the connection closed");
                assert!(!err.never_sent(), "it may have been received: {err}");
                assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 2, "not sent twice");
            }
        }
    }
}
