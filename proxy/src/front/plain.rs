//! Plain-TCP client connections, accepted by the gateway's own loop rather than Pingora's
//! listener.
//!
//! Why: the express path reads and writes every request's bytes, and Pingora's stream layer
//! (`l4::Stream`: a boxed trait object, a clock reading around every read for its statistics, a
//! write buffer our one-piece response is copied into before the write) and its listener's two
//! task levels cost about 740 instructions a call there, 2.6% of the gateway's user-space work. A
//! connection of our loop is a tokio `TcpStream` for the express path; a request it declines
//! still goes to Pingora's HTTP session, through [`SlowTcp`] (the same socket with the write
//! buffer Pingora's writes expect), and the connection comes back after it. TLS connections stay
//! on Pingora's listener and its stream.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use nix::libc::{EMFILE, ENFILE, ENOBUFS, ENOMEM};
use pingora_core::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora_core::protocols::l4::stream::DEFAULT_L4_WRITE_BUFFER_SIZE;
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream, TimingDigest,
    UniqueID, UniqueIDType,
};
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::connection::{ClientConn, ClientIo};
use super::http::HttpFront;
use super::rewind::Rewind;

/// The backlog of the listening socket (Pingora's; the kernel caps it at `somaxconn`).
const BACKLOG: i32 = 65_535;
/// How long the loop rests after an accept failed for want of descriptors or memory: the
/// failure would repeat at once and spin.
const ACCEPT_REST: Duration = Duration::from_secs(1);

/// Makes `listener` (bound, non-blocking) the loop's listening socket, with Pingora's backlog.
pub fn listener(listener: std::net::TcpListener) -> std::io::Result<TcpListener> {
    socket2::SockRef::from(&listener).listen(BACKLOG)?;
    TcpListener::from_std(listener)
}

/// Accepts client connections on `listener` and serves each on a task of its own, until `stop`
/// turns true (connections already open end by the same signal, as Pingora's do).
pub async fn accept_loop(listener: TcpListener, front: Arc<HttpFront>, mut stop: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((tcp, peer)) => {
                // As Pingora's listener does: a response's last segment is not held back.
                let _ = tcp.set_nodelay(true);
                let (front, shutdown) = (front.clone(), stop.clone());
                tokio::spawn(async move { front.serve_connection(PlainTcp::new(tcp, peer), &shutdown).await });
            }
            Err(e) => {
                tracing::error!("accept() failed: {e}");
                if matches!(e.raw_os_error(), Some(EMFILE | ENFILE | ENOBUFS | ENOMEM)) {
                    tokio::time::sleep(ACCEPT_REST).await;
                }
            }
        }
    }
}

/// A client connection of the gateway's own accept loop, as the express path uses it.
#[derive(Debug)]
pub struct PlainTcp {
    tcp: TcpStream,
    /// What Pingora's session asks of a connection (the client's address), made once.
    digest: Arc<SocketDigest>,
}

impl PlainTcp {
    fn new(tcp: TcpStream, peer: SocketAddr) -> Self {
        use std::os::fd::AsRawFd;
        let digest = SocketDigest::from_raw_fd(tcp.as_raw_fd());
        // Known from the accept: never asked of the kernel again.
        let _ = digest.peer_addr.set(Some(PingoraAddr::Inet(peer)));
        Self { tcp, digest: Arc::new(digest) }
    }
}

impl ClientIo for PlainTcp {
    fn peer(&self) -> Option<String> {
        self.digest.peer_addr().map(ToString::to_string)
    }

    fn peer_ip(&self) -> Option<std::net::IpAddr> {
        self.digest.peer_addr().and_then(|a| a.as_inet()).map(std::net::SocketAddr::ip)
    }
}

impl ClientConn for PlainTcp {
    async fn first_byte(&mut self, idle: Duration) -> bool {
        let mut first = [0u8; 1];
        matches!(tokio::time::timeout(idle, self.tcp.peek(&mut first)).await, Ok(Ok(1..)))
    }

    fn into_stream(self, read: Bytes) -> Stream {
        let slow =
            SlowTcp { inner: BufWriter::with_capacity(DEFAULT_L4_WRITE_BUFFER_SIZE, self.tcp), digest: self.digest };
        Rewind::wrap(read, Box::new(slow))
    }

    fn from_stream(stream: Stream) -> Result<Self, Stream> {
        let stream = Rewind::unwrap_spent(stream);
        if !stream.as_any().downcast_ref::<SlowTcp>().is_some_and(|s| s.inner.buffer().is_empty()) {
            return Err(stream);
        }
        match stream.into_any().downcast::<SlowTcp>() {
            Ok(slow) => Ok(Self { tcp: slow.inner.into_inner(), digest: slow.digest }),
            // Checked just above.
            Err(_) => unreachable!("the stream is a SlowTcp"),
        }
    }
}

read_through!(PlainTcp, tcp);
write_through!(PlainTcp, tcp);

/// A connection of the gateway's accept loop as Pingora's HTTP session uses it: writes held in
/// a small buffer until a flush, as Pingora's own stream holds them, so that a response's head
/// and body leave together.
#[derive(Debug)]
pub struct SlowTcp {
    inner: BufWriter<TcpStream>,
    digest: Arc<SocketDigest>,
}

read_through!(SlowTcp, inner);
write_through!(SlowTcp, inner);

#[async_trait]
impl Shutdown for SlowTcp {
    async fn shutdown(&mut self) {
        let _ = AsyncWriteExt::shutdown(&mut self.inner).await;
    }
}

impl UniqueID for SlowTcp {
    fn id(&self) -> UniqueIDType {
        use std::os::fd::AsRawFd;
        self.inner.get_ref().as_raw_fd()
    }
}

impl Ssl for SlowTcp {}

impl GetTimingDigest for SlowTcp {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        Vec::new()
    }
}

impl GetProxyDigest for SlowTcp {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        None
    }
}

impl GetSocketDigest for SlowTcp {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        Some(self.digest.clone())
    }
}

#[async_trait]
impl Peek for SlowTcp {
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        Ok(self.inner.get_ref().peek(buf).await? > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn pair() -> (PlainTcp, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).await.expect("connect");
        let (server, peer) = listener.accept().await.expect("accept");
        (PlainTcp::new(server, peer), client)
    }

    #[tokio::test]
    async fn a_connection_goes_to_pingoras_session_and_comes_back_whole() {
        let (plain, mut client) = pair().await;
        let peer = plain.peer().expect("the peer");
        assert_eq!(peer, client.local_addr().expect("addr").to_string());
        client.write_all(b"rest").await.expect("write");
        let mut stream = plain.into_stream(Bytes::from_static(b"read "));
        assert_eq!(
            stream.get_socket_digest().and_then(|d| d.peer_addr().map(ToString::to_string)),
            Some(peer),
            "Pingora's session sees the client's address"
        );
        let mut got = [0u8; 9];
        stream.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"read rest", "the bytes read before come first");
        // Held until the flush: head and body leave together.
        stream.write_all(b"head ").await.expect("write");
        stream.write_all(b"body").await.expect("write");
        stream.flush().await.expect("flush");
        let mut back = [0u8; 9];
        client.read_exact(&mut back).await.expect("read back");
        assert_eq!(&back, b"head body");
        let mut plain = PlainTcp::from_stream(stream).expect("back on the express path");
        plain.write_all(b"!").await.expect("write");
        let mut bang = [0u8; 1];
        client.read_exact(&mut bang).await.expect("read");
        assert_eq!(&bang, b"!");
    }

    #[tokio::test]
    async fn unread_put_back_bytes_keep_the_connection_on_pingoras_stream() {
        let (plain, _client) = pair().await;
        let stream = plain.into_stream(Bytes::from_static(b"never read"));
        assert!(PlainTcp::from_stream(stream).is_err(), "its bytes would be lost");
    }

    #[tokio::test]
    async fn unflushed_writes_keep_the_connection_on_pingoras_stream() {
        let (plain, _client) = pair().await;
        let mut stream = plain.into_stream(Bytes::new());
        stream.write_all(b"held").await.expect("write");
        assert!(PlainTcp::from_stream(stream).is_err(), "its bytes would be lost");
    }

    #[tokio::test]
    async fn the_first_byte_is_waited_for_and_left_unread() {
        let (mut plain, mut client) = pair().await;
        assert!(!plain.first_byte(Duration::from_millis(50)).await, "nothing came");
        client.write_all(b"P").await.expect("write");
        assert!(plain.first_byte(Duration::from_secs(5)).await);
        let mut got = [0u8; 1];
        plain.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"P");
        drop(client);
        assert!(!plain.first_byte(Duration::from_secs(5)).await, "a closed connection has none");
    }
}
