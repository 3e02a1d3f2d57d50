//! Why a frame was refused: the field (a dotted path such as `records[2].io.n4`) and the reason,
//! for the person debugging a tracker's firmware from a dead letter.

use std::fmt;

use fleetstream_schemas::FieldError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub field: String,
    pub message: String,
}

impl DecodeError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        DecodeError { field: field.into(), message: message.into() }
    }

    /// The same error with its field placed under `parent` (`records[1]` + `gps.lat`).
    pub fn under(self, parent: &str) -> Self {
        DecodeError { field: format!("{parent}.{}", self.field), message: self.message }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for DecodeError {}

impl From<DecodeError> for FieldError {
    fn from(e: DecodeError) -> Self {
        FieldError::new(e.field, e.message)
    }
}
