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
