//! A connection with bytes put back in front of it. The express path (`front::express`) reads a
//! request itself; when it declines one, Pingora's HTTP session must see the request from its
//! first byte, so the bytes already read are replayed before the socket's.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use bytes::{Buf, Bytes};
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::tls::{SslDigest, TlsRef};
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream, TimingDigest,
    UniqueID, UniqueIDType, ALPN,
};
use tokio::io::{AsyncRead, ReadBuf};

/// A stream whose first reads return `replay`, then the inner stream's bytes.
#[derive(Debug)]
pub struct Rewind {
    replay: Bytes,
    inner: Stream,
}

impl Rewind {
    /// `stream` with `replay` read first. A stream that is already a `Rewind` is not wrapped
    /// twice: its own unread bytes go after `replay`.
    pub fn wrap(replay: Bytes, stream: Stream) -> Stream {
        if replay.is_empty() {
            return stream;
        }
        if !stream.as_any().is::<Rewind>() {
            return Box::new(Rewind { replay, inner: stream });
        }
        let mut rewind = into_rewind(stream);
        rewind.replay = if rewind.replay.is_empty() {
            replay
        } else {
            let mut joined = bytes::BytesMut::with_capacity(replay.len() + rewind.replay.len());
            joined.extend_from_slice(&replay);
            joined.extend_from_slice(&rewind.replay);
            joined.freeze()
        };
        rewind
    }

    /// The inner stream again once everything put back was read (a kept-alive connection does
    /// not go through the wrapper for the rest of its life).
    pub fn unwrap_spent(stream: Stream) -> Stream {
        match stream.as_any().downcast_ref::<Rewind>() {
            Some(r) if r.replay.is_empty() => into_rewind(stream).inner,
            _ => stream,
        }
    }
}

/// A stream known to be a `Rewind` as one.
fn into_rewind(stream: Stream) -> Box<Rewind> {
    match stream.into_any().downcast::<Rewind>() {
        Ok(rewind) => rewind,
        // Callers check the type first.
        Err(_) => unreachable!("into_rewind is called on a Rewind only"),
    }
}

impl AsyncRead for Rewind {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if !self.replay.is_empty() {
            let n = self.replay.len().min(buf.remaining());
            buf.put_slice(&self.replay[..n]);
            self.replay.advance(n);
            if self.replay.is_empty() {
                // An empty slice still holds the read buffer it was cut from: let it go (a
                // long-lived stream would keep it for its whole life).
                self.replay = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

write_through!(Rewind, inner);

#[async_trait]
impl Shutdown for Rewind {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await;
    }
}

impl UniqueID for Rewind {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Rewind {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for Rewind {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> std::time::Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> std::time::Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for Rewind {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest);
    }
}

impl GetSocketDigest for Rewind {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest);
    }
}

#[async_trait]
impl Peek for Rewind {
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        if self.replay.is_empty() {
            return self.inner.try_peek(buf).await;
        }
        let n = self.replay.len().min(buf.len());
        buf[..n].copy_from_slice(&self.replay[..n]);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn pair() -> (Stream, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        let stream: Stream = Box::new(pingora_core::protocols::l4::stream::Stream::from(server));
        (stream, client)
    }

    #[tokio::test]
    async fn put_back_bytes_come_first_then_the_socket() {
        let (stream, mut client) = pair().await;
        client.write_all(b" world").await.expect("write");
        let mut stream = Rewind::wrap(Bytes::from_static(b"hello"), stream);
        let mut got = vec![0u8; 11];
        stream.read_exact(&mut got).await.expect("read");
        assert_eq!(got, b"hello world");
        stream.write_all(b"back").await.expect("write");
        stream.flush().await.expect("flush");
        let mut back = [0u8; 4];
        client.read_exact(&mut back).await.expect("read back");
        assert_eq!(&back, b"back");
        let stream = Rewind::unwrap_spent(stream);
        assert!(!stream.as_any().is::<Rewind>(), "a spent wrapper is taken off");
    }

    #[tokio::test]
    async fn a_read_replay_lets_its_buffer_go() {
        let (stream, _client) = pair().await;
        let mut buf = bytes::BytesMut::with_capacity(4096);
        buf.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        let replay = buf.split().freeze();
        buf.clear();
        let mut stream = Rewind::wrap(replay, stream);
        let mut got = [0u8; 18];
        stream.read_exact(&mut got).await.expect("read");
        // The replay no longer shares the allocation: the buffer has it to itself again (a
        // long-lived stream through the wrapper would otherwise hold it for its life).
        assert!(buf.try_reclaim(4096), "the read buffer is free to reuse");
        drop(stream);
    }

    #[tokio::test]
    async fn a_wrapper_is_never_wrapped_again() {
        let (stream, _client) = pair().await;
        let stream = Rewind::wrap(Bytes::from_static(b"second"), stream);
        let mut stream = Rewind::wrap(Bytes::from_static(b"first "), stream);
        let rewind = stream.as_any().downcast_ref::<Rewind>().expect("a rewind");
        assert!(!rewind.inner.as_any().is::<Rewind>(), "one layer");
        let mut got = vec![0u8; 12];
        stream.read_exact(&mut got).await.expect("read");
        assert_eq!(got, b"first second");
        let unspent = Rewind::wrap(Bytes::from_static(b"x"), stream);
        assert!(Rewind::unwrap_spent(unspent).as_any().is::<Rewind>(), "unread bytes keep the wrapper");
    }
}
