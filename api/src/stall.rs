//! Connections that stop taking bytes are closed. A client that never reads its socket (a
//! stalled stream subscriber, a slowloris download) would otherwise keep its connection, its
//! response's buffers and its stream slot for ever: hyper has no write timeout, and waits on the
//! socket without polling the response again. [`StallTimeout`] wraps every accepted connection
//! and fails a write that makes no progress for the given time; hyper then closes the
//! connection and drops the response.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;

/// A TCP listener whose connections fail writes stalled for longer than `after`.
pub struct StallTimeoutListener {
    pub inner: TcpListener,
    pub after: Duration,
}

impl Listener for StallTimeoutListener {
    type Io = StallTimeout<TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = Listener::accept(&mut self.inner).await;
        (StallTimeout::new(io, self.after), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// `io` whose writes and flushes fail with `TimedOut` once they have been pending for `after`
/// without progress. Reads are untouched: an idle keep-alive connection is not stalled.
pub struct StallTimeout<S> {
    io: S,
    after: Duration,
    /// Set while a write waits on the peer; cleared by any progress.
    stalled_since: Option<Pin<Box<Sleep>>>,
}

impl<S> StallTimeout<S> {
    pub fn new(io: S, after: Duration) -> Self {
        StallTimeout { io, after, stalled_since: None }
    }

    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.stalled_since = None;
            return poll;
        }
        let after = self.after;
        let deadline = self.stalled_since.get_or_insert_with(|| Box::pin(tokio::time::sleep(after)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.stalled_since = None;
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the peer took no bytes for {after:?}"),
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for StallTimeout<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for StallTimeout<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.io).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.io).poll_shutdown(cx);
        self.watch(cx, poll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_write_the_peer_never_takes_fails_after_the_timeout() {
        let (ours, _peer) = tokio::io::duplex(64);
        let mut io = StallTimeout::new(ours, Duration::from_secs(60));
        let started = tokio::time::Instant::now();
        let error = io.write_all(&[7; 1_024]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!((60..61).contains(&started.elapsed().as_secs()), "{:?}", started.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_that_keeps_taking_bytes_is_not_stalled() {
        let (ours, mut peer) = tokio::io::duplex(64);
        let mut io = StallTimeout::new(ours, Duration::from_secs(60));
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut chunk = [0; 64];
            loop {
                // Slower than the whole write would take, faster than the timeout each time.
                tokio::time::sleep(Duration::from_secs(50)).await;
                match peer.read(&mut chunk).await.unwrap() {
                    0 => return got,
                    n => got.extend_from_slice(&chunk[..n]),
                }
            }
        });
        io.write_all(&[7; 1_024]).await.unwrap();
        io.shutdown().await.unwrap();
        drop(io);
        assert_eq!(reader.await.unwrap().len(), 1_024);
    }

    #[tokio::test(start_paused = true)]
    async fn reads_never_time_out() {
        let (ours, mut peer) = tokio::io::duplex(64);
        let mut io = StallTimeout::new(ours, Duration::from_secs(1));
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3_600)).await;
            peer.write_all(b"late").await.unwrap();
        });
        let mut buf = [0; 4];
        io.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"late");
    }
}
