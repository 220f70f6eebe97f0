//! What the front door does per connection, before its requests: the connection cap (with a
//! clear refusal), waiting for a first byte without holding an HTTP session, and the open-file
//! limit the cap is derived from. Each bounds what one client can hold: a connection, a
//! file descriptor, a task. And what a connection is to the front door ([`ClientConn`]),
//! whichever listener accepted it.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pingora_core::protocols::Stream;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::rewind::Rewind;

/// A client connection as the express path reads and writes it (used as a trait object, so
/// that the fast path's code is not made twice, once per kind of connection).
pub trait ClientIo: AsyncRead + AsyncWrite + Unpin + Send + Sync {
    /// The client's address, for the access log.
    fn peer(&self) -> Option<String>;
    /// The client's IP address: an anonymous caller's rate-limit buckets are keyed by it.
    fn peer_ip(&self) -> Option<std::net::IpAddr>;
}

/// A client connection, whichever listener accepted it: a plain-TCP one of the gateway's own
/// loop (`front::plain`) or Pingora's stream (TLS). A request the express path declines is
/// read by Pingora's HTTP session, from the connection as a [`Stream`]; the connection comes
/// back after it.
pub trait ClientConn: ClientIo + Sized + 'static {
    /// Waits for the first byte of a request, at most `idle`; `false` when none came (or the
    /// client closed the connection). The byte stays unread.
    fn first_byte(&mut self, idle: Duration) -> impl Future<Output = bool> + Send;

    /// The connection as Pingora's stream, the bytes already `read` to be read first.
    fn into_stream(self, read: Bytes) -> Stream;

    /// The connection back from Pingora's session; `Err` (the stream as it is) when it cannot
    /// be one of this kind again.
    fn from_stream(stream: Stream) -> Result<Self, Stream>;
}

impl ClientIo for Stream {
    fn peer(&self) -> Option<String> {
        self.get_socket_digest().and_then(|d| d.peer_addr().map(ToString::to_string))
    }

    fn peer_ip(&self) -> Option<std::net::IpAddr> {
        self.get_socket_digest().and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(std::net::SocketAddr::ip))
    }
}

impl ClientConn for Stream {
    async fn first_byte(&mut self, idle: Duration) -> bool {
        let mut first = [0u8; 1];
        // A stream that cannot peek reports `false`: its header deadline then covers the idle wait.
        matches!(tokio::time::timeout(idle, self.try_peek(&mut first)).await, Ok(Ok(_)))
    }

    fn into_stream(self, read: Bytes) -> Stream {
        Rewind::wrap(read, self)
    }

    fn from_stream(stream: Stream) -> Result<Self, Stream> {
        Ok(Rewind::unwrap_spent(stream))
    }
}

/// File descriptors kept back from the client-connection cap for everything else: upstream
/// connections, subprocess pipes, the audit file, the listener.
const RESERVED_FDS: usize = 256;
/// The smallest connection cap derived from the open-file limit.
const MIN_AUTO_CAP: usize = 64;
/// How long a refusal may take to write before the connection is just closed.
const REFUSAL_WRITE: Duration = Duration::from_secs(1);

/// The refusal sent to a connection over the cap: it says why and when to come back.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
connection: close\r\ncontent-length: 53\r\n\r\n{\"error\":\"too many connections; retry in a second\"}\r\n";

/// Counts open client connections against a cap.
pub struct ConnectionGate {
    open: Arc<AtomicUsize>,
    max: usize,
}

/// One admitted connection; dropping it frees its place.
pub struct Admitted(Arc<AtomicUsize>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ConnectionGate {
    /// A gate admitting `max` connections at once.
    pub fn new(max: usize) -> Self {
        Self { open: Arc::new(AtomicUsize::new(0)), max }
    }

    /// The cap: configured, or half of what the open-file limit leaves after a reserve (each
    /// client connection may need an upstream one), so clients can never take the descriptors
    /// the gateway needs to serve them.
    pub fn cap(configured: Option<usize>, open_files: u64) -> usize {
        configured.unwrap_or_else(|| {
            let fds = usize::try_from(open_files).unwrap_or(usize::MAX);
            (fds.saturating_sub(RESERVED_FDS) / 2).max(MIN_AUTO_CAP)
        })
    }

    /// Admits one more connection, or `None` at the cap.
    pub fn admit(&self) -> Option<Admitted> {
        let before = self.open.fetch_add(1, Ordering::AcqRel);
        if before >= self.max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Admitted(self.open.clone()))
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

/// Answers a connection over the cap with 503 and closes it.
pub async fn refuse(mut stream: impl AsyncWrite + Unpin) {
    let _ = tokio::time::timeout(REFUSAL_WRITE, async {
        stream.write_all(REFUSAL).await?;
        stream.flush().await
    })
    .await;
    AsyncWriteExt::shutdown(&mut stream).await.ok();
}

/// Raises the soft open-file limit to the hard one (as nginx's `worker_rlimit_nofile` does) and
/// returns the limit in force.
pub fn raise_open_files_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else { return 1024 };
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return hard;
    }
    soft
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_admits_up_to_its_cap_and_frees_places() {
        let gate = ConnectionGate::new(2);
        let a = gate.admit().expect("1st");
        let _b = gate.admit().expect("2nd");
        assert!(gate.admit().is_none(), "at the cap");
        drop(a);
        assert!(gate.admit().is_some(), "a freed place is taken again");
    }

    #[test]
    fn the_automatic_cap_stays_below_the_descriptor_limit() {
        assert_eq!(ConnectionGate::cap(Some(10), 1 << 20), 10);
        assert_eq!(ConnectionGate::cap(None, 20_480), (20_480 - RESERVED_FDS) / 2);
        assert_eq!(ConnectionGate::cap(None, 100), MIN_AUTO_CAP);
    }

    #[test]
    fn the_refusal_is_well_formed() {
        let text = std::str::from_utf8(REFUSAL).expect("ascii");
        let (head, body) = text.split_once("\r\n\r\n").expect("header end");
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|n| n.parse().ok())
            .expect("content-length");
        assert_eq!(body.len(), length);
        assert!(serde_json::from_str::<serde_json::Value>(body.trim_end()).is_ok());
    }
}
