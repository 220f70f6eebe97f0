//! Front doors: how clients reach the gateway (HTTP through Pingora, or stdio).

/// `AsyncRead` for a wrapper of a connection, by its field `$inner`.
macro_rules! read_through {
    ($wrapper:ty, $inner:ident) => {
        impl tokio::io::AsyncRead for $wrapper {
            fn poll_read(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.$inner).poll_read(cx, buf)
            }
        }
    };
}

/// `AsyncWrite` for a wrapper of a connection, by its field `$inner`.
macro_rules! write_through {
    ($wrapper:ty, $inner:ident) => {
        impl tokio::io::AsyncWrite for $wrapper {
            fn poll_write(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.$inner).poll_write(cx, buf)
            }

            fn poll_flush(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.$inner).poll_flush(cx)
            }

            fn poll_shutdown(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.$inner).poll_shutdown(cx)
            }

            fn poll_write_vectored(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.$inner).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.$inner.is_write_vectored()
            }
        }
    };
}

pub mod body;
pub mod checks;
pub mod connection;
pub mod cors;
pub mod detached;
pub mod express;
pub mod fast;
pub mod health;
pub mod http;
pub mod mcp;
pub mod plain;
pub mod replier;
pub mod reply;
pub mod request_head;
pub mod respond;
pub mod rewind;
pub mod stdio;
pub mod tls;
