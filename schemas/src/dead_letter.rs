//! What ingest writes to `positions.dlq` for every rejected item: why, and what was sent.

pub mod redact;

use serde::{Deserialize, Serialize};

use crate::input::FieldError;
use crate::time::EpochMillis;

/// Raw items are kept up to this size; a larger one is cut and marked `raw_truncated`.
pub const MAX_DEAD_LETTER_RAW_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// `json` or `osmand`.
    pub protocol: String,
    pub field: String,
    pub message: String,
    pub received_at_ms: EpochMillis,
    /// The item as received (lossy UTF-8), at most [`MAX_DEAD_LETTER_RAW_BYTES`].
    pub raw: String,
    pub raw_truncated: bool,
}

impl DeadLetter {
    pub fn new(protocol: &str, error: &FieldError, raw: &[u8], received_at_ms: EpochMillis) -> Self {
        let cut = raw.len().min(MAX_DEAD_LETTER_RAW_BYTES);
        DeadLetter {
            protocol: protocol.into(),
            field: error.field.clone(),
            message: error.message.clone(),
            received_at_ms,
            raw: String::from_utf8_lossy(&raw[..cut]).into_owned(),
            raw_truncated: cut < raw.len(),
        }
    }

    pub fn to_message(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a DeadLetter always serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_raw_items_are_cut_and_marked() {
        let e = FieldError::new("lat", "bad");
        let small = DeadLetter::new("json", &e, b"{\"lat\":91}", 5);
        assert_eq!((small.raw.as_str(), small.raw_truncated), ("{\"lat\":91}", false));
        let big = DeadLetter::new("json", &e, &vec![b'x'; MAX_DEAD_LETTER_RAW_BYTES + 10], 5);
        assert_eq!((big.raw.len(), big.raw_truncated), (MAX_DEAD_LETTER_RAW_BYTES, true));
        let back: DeadLetter = serde_json::from_slice(&small.to_message()).unwrap();
        assert_eq!(back, small);
    }

    #[test]
    fn invalid_utf8_is_kept_lossily() {
        let d = DeadLetter::new("json", &FieldError::new("body", "x"), b"\xff\xfeok", 0);
        assert!(d.raw.ends_with("ok"));
    }
}
