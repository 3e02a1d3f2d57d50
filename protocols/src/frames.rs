//! Cutting a TCP byte stream into frames. A device's frames arrive in whatever reads the network
//! makes of them: one frame split across several reads, or several frames in one. A
//! [`FrameBuffer`] holds what was read and hands out whole frames, whatever the reads were; a
//! protocol's splitter says where the first frame ends.
//!
//! Bounded: the splitters refuse a frame longer than their limit as soon as its header is in, so
//! the buffer never holds more than one frame's limit plus one read.

use crate::error::DecodeError;

/// What a splitter says about the start of the buffered bytes: a whole frame of `n` bytes
/// (`Some(n)`), not enough bytes yet (`None`), or not a frame at all (an error: close the
/// connection).
pub type Split = Result<Option<usize>, DecodeError>;

#[derive(Debug, Default)]
pub struct FrameBuffer {
    buf: Vec<u8>,
}

impl FrameBuffer {
    pub fn new() -> Self {
        FrameBuffer::default()
    }

    /// Appends the bytes of one read.
    pub fn extend(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes held that are not yet part of a whole frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next whole frame, removed from the buffer, as `split` finds it.
    pub fn next_frame(&mut self, split: impl FnOnce(&[u8]) -> Split) -> Result<Option<Vec<u8>>, DecodeError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        match split(&self.buf)? {
            Some(n) => {
                debug_assert!(n > 0 && n <= self.buf.len(), "a splitter returned {n} of {}", self.buf.len());
                Ok(Some(self.buf.drain(..n).collect()))
            }
            None => Ok(None),
        }
    }
}
