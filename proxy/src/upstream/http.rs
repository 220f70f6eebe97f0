//! A small HTTP/1.1 client for talking to upstream MCP servers, on Pingora's connector (pooled
//! keep-alive connections, rustls) and its HTTP/1.1 response reader. Used by every path: the fast
//! path, era probes, legacy sessions, aggregation fan-out, bridging.
//!
//! The request is written by this module, header and body in one write: Pingora's client flushes
//! the header on its own, and on loopback every write wakes the server (about a fifth of the fast
//! path's CPU went to the second write).

use std::sync::Arc;

use sha2::Digest as _;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::{Bytes, BytesMut};
use pingora_core::connectors::http::Connector;
use pingora_core::protocols::http::client::HttpSession;
use pingora_core::protocols::http::v1::client::{http_req_header_to_wire, HttpSession as HttpSessionV1};
use pingora_core::protocols::tls::CaType;
use pingora_core::protocols::Stream;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::utils::tls::{parse_x509, WrappedX509};
use pingora_http::{RequestHeader, ResponseHeader};
use tokio::io::AsyncWriteExt;

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
    shown: String,
    tls: bool,
    host: String,
    port: u16,
    authority: String,
    path: String,
    trust: TlsTrust,
    peer: ArcSwapOption<HttpPeer>,
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
        Ok(Self {
            url: url.to_owned(),
            shown: hangar_config::redact_url(url),
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
    pub async fn peer(&self, timeouts: &Timeouts) -> Result<Arc<HttpPeer>, HttpError> {
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
        let peer = Arc::new(peer);
        self.peer.store(Some(peer.clone()));
        Ok(peer)
    }

    /// The resolved peer, if the host was resolved already (the fast path never resolves).
    pub fn cached_peer(&self) -> Option<Arc<HttpPeer>> {
        self.peer.load_full()
    }

    /// Forgets the resolved address so the next exchange resolves again (after connect failures).
    pub fn forget_peer(&self) {
        self.peer.store(None);
    }
}

/// The shared upstream HTTP client.
pub struct HttpClient {
    connector: Connector,
    budget: Arc<MemoryBudget>,
}

impl HttpClient {
    /// A client whose reply bodies are read within `budget`.
    pub fn new(budget: Arc<MemoryBudget>) -> Self {
        Self { connector: Connector::new(None), budget }
    }
}

impl Default for HttpClient {
    /// A client with an unlimited budget (tests).
    fn default() -> Self {
        Self::new(MemoryBudget::new(usize::MAX, Arc::default()))
    }
}

/// An outgoing request.
pub struct Request<'a> {
    /// `GET`, `POST` or `DELETE`.
    pub method: &'static str,
    /// Headers besides `Host` and `Content-Length`.
    pub headers: Vec<(http::HeaderName, std::borrow::Cow<'a, str>)>,
    /// Body (empty for GET/DELETE).
    pub body: Bytes,
    /// Whether sending it twice is harmless. A pooled connection that closes after the request
    /// was written may or may not have delivered it; only a replayable request is then sent again.
    pub replayable: bool,
}

/// A response whose body has not been read yet.
pub struct Response {
    session: Option<HttpSession>,
    peer: Arc<HttpPeer>,
    client: Arc<HttpClient>,
    url: String,
    idle: Duration,
    /// The status code.
    pub status: u16,
    header: ResponseHeader,
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
        // Built before a connection is taken: a request that cannot be written costs nothing.
        let header = build_header(endpoint, req)?;
        let peer = endpoint.peer(timeouts).await?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (session, reused) = match self.connector.get_http_session(peer.as_ref()).await {
                Ok(s) => s,
                Err(e) => {
                    endpoint.forget_peer();
                    return Err(HttpError::Connect { url: endpoint.shown.clone(), reason: e.to_string() });
                }
            };
            match exchange(session, &peer, &header, &req.body, timeouts).await {
                Ok(session) => {
                    let Some(header) = session.response_header().cloned() else {
                        return Err(HttpError::Io { url: endpoint.shown.clone(), reason: "no response header".into() });
                    };
                    return Ok(Response {
                        status: header.status.as_u16(),
                        header,
                        session: Some(session),
                        peer,
                        client: self.clone(),
                        url: endpoint.shown.clone(),
                        idle: timeouts.idle,
                    });
                }
                Err(Failure::Unsent) if reused && attempt == 1 => continue,
                Err(Failure::Unsent) => {
                    return Err(HttpError::Connect {
                        url: endpoint.shown.clone(),
                        reason: "connection closed before the request was sent".into(),
                    })
                }
                Err(Failure::Closed) if reused && attempt == 1 && req.replayable => continue,
                Err(Failure::Closed) => {
                    return Err(HttpError::Io {
                        url: endpoint.shown.clone(),
                        reason: "connection closed before a response (the request may have been received)".into(),
                    })
                }
                Err(Failure::Timeout) => {
                    return Err(HttpError::Timeout { url: endpoint.shown.clone(), timeout: timeouts.first_byte })
                }
                Err(Failure::Io(reason)) => return Err(HttpError::Io { url: endpoint.shown.clone(), reason }),
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

async fn exchange(
    session: HttpSession,
    peer: &HttpPeer,
    header: &RequestHeader,
    body: &[u8],
    timeouts: &Timeouts,
) -> Result<HttpSession, Failure> {
    // Peers are built without ALPN for HTTP/2 (`Endpoint::peer`), so the connector hands out
    // HTTP/1.1 sessions only.
    let HttpSession::H1(h1) = session else {
        return Err(Failure::Io("the upstream connection is not HTTP/1.1".into()));
    };
    let stream = write_request(h1.into_inner(), header, body, timeouts.first_byte).await?;
    let mut session = HttpSession::H1(HttpSessionV1::new_with_options(stream, peer));
    session.set_read_timeout(Some(timeouts.first_byte));
    match session.read_response_header().await {
        Ok(()) => Ok(session),
        Err(e) if e.etype() == &pingora_core::ErrorType::ReadTimedout => Err(Failure::Timeout),
        Err(e) if matches!(e.etype(), pingora_core::ErrorType::ConnectionClosed) => Err(Failure::Closed),
        Err(e) => Err(Failure::Io(e.to_string())),
    }
}

/// The request header. A value that cannot be a header (a control character, say) makes the
/// request unbuildable, which is not the upstream's failure.
fn build_header(endpoint: &Endpoint, req: &Request<'_>) -> Result<RequestHeader, HttpError> {
    let bad =
        |what: &str, e: Box<pingora_core::Error>| HttpError::Unbuildable { reason: format!("invalid {what}: {e}") };
    let mut header = RequestHeader::build(req.method, endpoint.path.as_bytes(), Some(req.headers.len() + 2))
        .map_err(|e| bad("request line", e))?;
    header.insert_header("host", endpoint.authority.as_str()).map_err(|e| bad("Host header", e))?;
    for (name, value) in &req.headers {
        header.append_header(name.clone(), value.as_ref()).map_err(|e| bad(&format!("{name} header"), e))?;
    }
    if req.method != "GET" || !req.body.is_empty() {
        header.insert_header("content-length", req.body.len()).map_err(|e| bad("Content-Length", e))?;
    }
    Ok(header)
}

/// Writes `header` and `body` to `stream` in one write, within `limit`.
async fn write_request(
    mut stream: Stream,
    header: &RequestHeader,
    body: &[u8],
    limit: Duration,
) -> Result<Stream, Failure> {
    let mut wire = http_req_header_to_wire(header).ok_or_else(|| Failure::Io("invalid request header".into()))?;
    wire.extend_from_slice(body);
    let write = async {
        stream.write_all(&wire).await?;
        stream.flush().await
    };
    match tokio::time::timeout(limit, write).await {
        Ok(Ok(())) => Ok(stream),
        Ok(Err(_)) => Err(Failure::Unsent),
        Err(_) => Err(Failure::Timeout),
    }
}

impl Response {
    /// A response header value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Whether the body is an SSE stream.
    pub fn is_event_stream(&self) -> bool {
        self.header("content-type").is_some_and(|c| c.trim_start().starts_with("text/event-stream"))
    }

    /// The next body chunk, `None` at the end. Each wait is bounded by the idle timeout.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, HttpError> {
        let Some(session) = self.session.as_mut() else { return Ok(None) };
        session.set_read_timeout(Some(self.idle));
        session.read_response_body().await.map_err(|e| HttpError::Io { url: self.url.clone(), reason: e.to_string() })
    }

    /// Reads the whole body, refusing more than `limit` bytes, and returns the connection to the
    /// pool.
    pub async fn body(mut self, limit: usize) -> Result<Bytes, HttpError> {
        let mut buf = BytesMut::new();
        let mut held = self.client.budget.reservation();
        while let Some(chunk) = self.chunk().await? {
            if buf.len() + chunk.len() > limit {
                return Err(HttpError::TooLarge { url: self.url.clone(), limit });
            }
            held.grow(chunk.len())?;
            buf.extend_from_slice(&chunk);
        }
        self.release().await;
        Ok(buf.freeze())
    }

    /// Returns the connection to the pool if the response was read to its end; otherwise the
    /// connection is closed (a half-read body cannot be reused).
    pub async fn release(mut self) {
        if let Some(mut session) = self.session.take() {
            if session.response_done() {
                self.client
                    .connector
                    .release_http_session(session, self.peer.as_ref(), Some(Duration::from_secs(60)))
                    .await;
            } else {
                session.shutdown().await;
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
        };
        let peer = |trust: TlsTrust| {
            let e = Endpoint::parse("https://127.0.0.1:8443/mcp").expect("url").with_trust(trust);
            async move { pingora_core::upstreams::peer::Peer::reuse_hash(&*e.peer(&timeouts).await.expect("peer")) }
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

    fn request(replayable: bool) -> Request<'static> {
        Request { method: "POST", headers: Vec::new(), body: Bytes::from_static(b"{}"), replayable }
    }

    #[tokio::test]
    async fn an_unbuildable_request_never_takes_a_connection_and_is_not_the_upstreams_fault() {
        let (addr, seen) = closing_server().await;
        let endpoint = Endpoint::parse(&format!("http://{addr}/mcp")).expect("url");
        let timeouts = Timeouts {
            connect: Duration::from_secs(2),
            first_byte: Duration::from_secs(2),
            idle: Duration::from_secs(2),
        };
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
        let timeouts = Timeouts {
            connect: Duration::from_secs(2),
            first_byte: Duration::from_secs(2),
            idle: Duration::from_secs(2),
        };
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
