//! Write coalescing between TLS and TCP, for the nodes' gRPC connections.
//!
//! hyper hands each HTTP/2 frame of a gRPC message (HEADERS, DATA, the empty DATA that ends a
//! request, the trailers of a response) to the h2 connection task. On a multi-threaded runtime
//! that task usually runs at once on the other worker and flushes each frame alone: one unary
//! call leaves in two or three `writev`s, and on loopback each one wakes the receiver
//! (docs/PERFORMANCE.md, "Three TLS records per gRPC message").
//!
//! [`Coalescing`] sits under TLS. Writes go into a buffer. A flush that finds bytes in the buffer
//! first yields [`YIELDS`] times: it wakes its own task and returns `Pending`, so that the tasks
//! already queued, such as the one producing the rest of the message, run first. Then it writes
//! everything buffered in one system call. A yield is a trip through the scheduler's queue, not a
//! timer, so an idle connection pays microseconds for it. Two yields are what it takes for the
//! frame that ends a unary request to join its message (one merged only HEADERS with DATA).
//! Bytes are never held without a flush pending: every writer above (h2, rustls) flushes after
//! it writes, and shutdown writes the buffer out.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Above this many buffered bytes, writes go out without waiting for a flush.
const BUFFER_BYTES_MAX: usize = 64 * 1024;
/// Times a flush yields before it writes.
const YIELDS: u32 = 2;

/// An I/O stream whose writes are coalesced until a flush (see the module doc).
#[derive(Debug)]
pub struct Coalescing<T> {
    inner: T,
    buffer: Vec<u8>,
    /// How many times this flush has yielded so far.
    yields: u32,
}

impl<T> Coalescing<T> {
    pub fn new(inner: T) -> Coalescing<T> {
        Coalescing {
            inner,
            buffer: Vec::new(),
            yields: 0,
        }
    }
}

impl<T: AsyncWrite + Unpin> Coalescing<T> {
    /// Writes out the whole buffer.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.buffer.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buffer))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.buffer.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Coalescing<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Coalescing<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.buffer.len() + data.len() > BUFFER_BYTES_MAX {
            ready!(self.poll_drain(cx))?;
            if data.len() > BUFFER_BYTES_MAX {
                return Pin::new(&mut self.inner).poll_write(cx, data);
            }
        }
        self.buffer.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        if self.buffer.len() + len > BUFFER_BYTES_MAX {
            ready!(self.poll_drain(cx))?;
            if len > BUFFER_BYTES_MAX {
                return Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
            }
        }
        for b in bufs {
            self.buffer.extend_from_slice(b);
        }
        Poll::Ready(Ok(len))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.buffer.is_empty() && self.yields < YIELDS {
            self.yields += 1;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        ready!(self.poll_drain(cx))?;
        self.yields = 0;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Opens a TCP connection (no Nagle delay) for a tonic channel, its writes coalesced; tonic puts
/// the endpoint's TLS on top. Use with `Endpoint::connect_with_connector_lazy`.
pub async fn connect(
    uri: tonic::transport::Uri,
) -> io::Result<hyper_util::rt::TokioIo<Coalescing<tokio::net::TcpStream>>> {
    connect_from(None, uri).await
}

/// [`connect`], from `local` when given: a node's connections to other nodes leave from the
/// address it listens on for them, so that a firewall (or a test's partition) can tell the nodes
/// apart. If that address cannot be bound (not on this host), the system picks one.
pub async fn connect_from(
    local: Option<std::net::IpAddr>,
    uri: tonic::transport::Uri,
) -> io::Result<hyper_util::rt::TokioIo<Coalescing<tokio::net::TcpStream>>> {
    Ok(hyper_util::rt::TokioIo::new(
        connect_tcp_from(local, &uri).await?,
    ))
}

/// The TCP connection of [`connect_from`], for a caller that puts TLS on it itself.
pub async fn connect_tcp_from(
    local: Option<std::net::IpAddr>,
    uri: &tonic::transport::Uri,
) -> io::Result<Coalescing<tokio::net::TcpStream>> {
    let host = uri
        .host()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("no host in {uri}")))?;
    // An IPv6 literal comes bracketed in a URI.
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri
        .port_u16()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("no port in {uri}")))?;
    let tcp = match local {
        None => tokio::net::TcpStream::connect((host, port)).await?,
        Some(ip) => {
            let target = tokio::net::lookup_host((host, port))
                .await?
                .find(|a| a.is_ipv4() == ip.is_ipv4())
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::AddrNotAvailable,
                        format!("{host} has no address of the family of {ip}"),
                    )
                })?;
            let socket = if ip.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            if let Err(e) = socket.bind(std::net::SocketAddr::new(ip, 0)) {
                tracing::debug!(local = %ip, error = %e, "cannot connect from the listen address");
                tokio::net::TcpStream::connect(target).await?
            } else {
                socket.connect(target).await?
            }
        }
    };
    tcp.set_nodelay(true)?;
    Ok(Coalescing::new(tcp))
}

impl<T: tonic::transport::server::Connected> tonic::transport::server::Connected for Coalescing<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn writes_wait_for_a_flush_and_leave_together() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let mut w = Coalescing::new(a);
        w.write_all(b"HEADERS").await.expect("write");
        w.write_all(b"DATA").await.expect("write");
        // Nothing has reached the other side before the flush.
        let mut probe = [0u8; 16];
        assert!(
            futures::FutureExt::now_or_never(b.read(&mut probe)).is_none(),
            "bytes left before the flush"
        );
        w.flush().await.expect("flush");
        let mut got = vec![0u8; 11];
        b.read_exact(&mut got).await.expect("read");
        assert_eq!(got, b"HEADERSDATA");
    }

    #[tokio::test]
    async fn large_writes_and_shutdown_lose_nothing() {
        let (a, mut b) = tokio::io::duplex(1 << 22);
        let mut w = Coalescing::new(a);
        let big: Vec<u8> = (0..3 * BUFFER_BYTES_MAX).map(|i| i as u8).collect();
        w.write_all(b"head").await.expect("write");
        w.write_all(&big).await.expect("write");
        w.write_all(b"tail").await.expect("write");
        w.shutdown().await.expect("shutdown");
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.expect("read");
        let mut want = b"head".to_vec();
        want.extend_from_slice(&big);
        want.extend_from_slice(b"tail");
        assert_eq!(got, want);
    }
}
