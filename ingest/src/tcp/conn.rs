//! One tracker connection: frames read under the idle and frame deadlines, answers written
//! under a deadline, and an end at shutdown between frames.

use std::time::Duration;

use fleetstream_protocols::FrameBuffer;
use fleetstream_protocols::frames::Split;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::TcpLimits;
use crate::registry::Admission;

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 4096;

/// Why a connection stops giving frames.
#[derive(Debug)]
pub enum End {
    /// The device closed it.
    Closed,
    /// Silent longer than the idle timeout between frames.
    Idle,
    /// A frame begun but not finished within the frame timeout (or an answer not written).
    Slow,
    /// Ingest is stopping.
    Shutdown,
    /// The brokers could not take a frame's records: it is not answered, and the device resends.
    NotDurable,
    /// The device is not in the registry (`--require-registered`), or the registry is not loaded.
    NotAdmitted(Admission),
    Io(std::io::Error),
    /// The bytes are not a frame of this protocol (or one over the size limit).
    Malformed(fleetstream_protocols::DecodeError),
}

pub struct Conn {
    pub protocol: &'static str,
    stream: TcpStream,
    buf: FrameBuffer,
    /// When the bytes now buffered began to arrive.
    started: Option<Instant>,
    pub max_frame: usize,
    idle: Duration,
    frame_timeout: Duration,
    shutdown: CancellationToken,
}

impl Conn {
    pub fn new(protocol: &'static str, stream: TcpStream, limits: &TcpLimits, shutdown: CancellationToken) -> Self {
        let _ = stream.set_nodelay(true);
        Conn {
            protocol,
            stream,
            buf: FrameBuffer::new(),
            started: None,
            max_frame: limits.tcp_max_frame_bytes,
            idle: limits.idle_timeout(),
            frame_timeout: limits.frame_timeout(),
            shutdown,
        }
    }

    /// The next whole frame as `split` cuts it.
    pub async fn frame(&mut self, split: impl Fn(&[u8]) -> Split) -> Result<Vec<u8>, End> {
        let mut chunk = [0u8; READ_CHUNK];
        loop {
            if let Some(frame) = self.buf.next_frame(&split).map_err(End::Malformed)? {
                self.started = (self.buf.buffered() > 0).then(Instant::now);
                return Ok(frame);
            }
            let (deadline, timed_out) = match self.started {
                Some(started) => (started + self.frame_timeout, End::Slow),
                None => (Instant::now() + self.idle, End::Idle),
            };
            let read = tokio::select! {
                _ = self.shutdown.cancelled() => return Err(End::Shutdown),
                read = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)) => read,
            };
            match read {
                Err(_) => return Err(timed_out),
                Ok(Ok(0)) => return Err(End::Closed),
                Ok(Ok(n)) => {
                    if self.buf.buffered() == 0 {
                        self.started = Some(Instant::now());
                    }
                    self.buf.extend(&chunk[..n]);
                }
                Ok(Err(e)) => return Err(End::Io(e)),
            }
        }
    }

    /// The bytes buffered that did not make a frame (for the dead letter of a malformed one).
    pub fn buffered(&mut self) -> Vec<u8> {
        self.buf.next_frame(|b| Ok(Some(b.len()))).ok().flatten().unwrap_or_default()
    }

    /// Writes an answer, within the frame timeout.
    pub async fn answer(&mut self, bytes: &[u8]) -> Result<(), End> {
        match tokio::time::timeout(self.frame_timeout, self.stream.write_all(bytes)).await {
            Err(_) => Err(End::Slow),
            Ok(result) => result.map_err(End::Io),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetstream_protocols::gt06;
    use tokio::net::TcpListener;

    fn limits(idle_secs: u64, frame_secs: u64) -> TcpLimits {
        TcpLimits {
            tcp_max_connections: 10,
            tcp_max_frame_bytes: 1024,
            tcp_idle_timeout_secs: idle_secs,
            tcp_frame_timeout_secs: frame_secs,
        }
    }

    /// A connected pair: the server side as a [`Conn`], and the client's stream.
    async fn pair(limits: &TcpLimits, shutdown: CancellationToken) -> (Conn, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (Conn::new("gt06", server, limits, shutdown), client)
    }

    const LOGIN: [u8; 18] =
        [0x78, 0x78, 0x0D, 0x01, 0x01, 0x23, 0x45, 0x67, 0x89, 0x01, 0x23, 0x45, 0x00, 0x01, 0x8C, 0xDD, 0x0D, 0x0A];

    #[tokio::test(start_paused = true)]
    async fn a_frame_that_never_finishes_ends_the_connection_at_the_frame_deadline() {
        let (mut conn, mut client) = pair(&limits(900, 30), CancellationToken::new()).await;
        client.write_all(&LOGIN[..5]).await.unwrap();
        let started = Instant::now();
        let end = conn.frame(|b| gt06::frame_len(b, 1024)).await.unwrap_err();
        assert!(matches!(end, End::Slow), "{end:?}");
        let took = started.elapsed();
        assert!(took >= Duration::from_secs(30) && took < Duration::from_secs(31), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn silence_between_frames_ends_at_the_idle_timeout_and_shutdown_at_once() {
        let (mut conn, mut client) = pair(&limits(60, 5), CancellationToken::new()).await;
        client.write_all(&[&LOGIN[..], &LOGIN[..3]].concat()).await.unwrap();
        assert_eq!(conn.frame(|b| gt06::frame_len(b, 1024)).await.unwrap(), LOGIN, "frames come whole");
        client.write_all(&LOGIN[3..]).await.unwrap();
        assert_eq!(conn.frame(|b| gt06::frame_len(b, 1024)).await.unwrap(), LOGIN, "and split across reads");
        let started = Instant::now();
        assert!(matches!(conn.frame(|b| gt06::frame_len(b, 1024)).await, Err(End::Idle)));
        assert!(started.elapsed() >= Duration::from_secs(60));

        let shutdown = CancellationToken::new();
        let (mut conn, _client) = pair(&limits(60, 5), shutdown.clone()).await;
        shutdown.cancel();
        assert!(matches!(conn.frame(|b| gt06::frame_len(b, 1024)).await, Err(End::Shutdown)));
    }

    #[tokio::test]
    async fn garbage_and_oversized_frames_are_malformed_and_closing_is_closed() {
        let (mut conn, mut client) = pair(&limits(60, 5), CancellationToken::new()).await;
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        assert!(matches!(conn.frame(|b| gt06::frame_len(b, 1024)).await, Err(End::Malformed(e)) if e.field == "start"));
        let (mut conn, mut client) = pair(&limits(60, 5), CancellationToken::new()).await;
        client.write_all(&[0x79, 0x79, 0x10, 0x00]).await.unwrap();
        assert!(
            matches!(conn.frame(|b| gt06::frame_len(b, 1024)).await, Err(End::Malformed(e)) if e.field == "length")
        );
        drop(client);
        let (mut conn, client) = pair(&limits(60, 5), CancellationToken::new()).await;
        drop(client);
        assert!(matches!(conn.frame(|b| gt06::frame_len(b, 1024)).await, Err(End::Closed)));
    }
}
