//! The one JSON error shape of every failed request, at ingest and at the query API:
//!
//! ```json
//! {"error": {"field": "lat", "message": "must be within [-90, 90] degrees, got 91"}}
//! ```
//!
//! `field` names the body field, query or path parameter or header at fault (dotted path for
//! nested fields); it is absent when the error is not about one input (404, 429, 503).

use serde::{Deserialize, Serialize};

use crate::input::FieldError;

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
}

impl ErrorBody {
    /// An error about one input.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorBody { error: ErrorDetail { field: Some(field.into()), message: message.into() } }
    }

    /// An error about the request as a whole, or about the server.
    pub fn message(message: impl Into<String>) -> Self {
        ErrorBody { error: ErrorDetail { field: None, message: message.into() } }
    }
}

impl From<&FieldError> for ErrorBody {
    fn from(e: &FieldError) -> Self {
        ErrorBody::field(e.field.clone(), e.message.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_is_error_field_message() {
        let text = serde_json::to_string(&ErrorBody::field("lat", "too far north")).unwrap();
        assert_eq!(text, r#"{"error":{"field":"lat","message":"too far north"}}"#);
        let text = serde_json::to_string(&ErrorBody::message("storage unavailable")).unwrap();
        assert_eq!(text, r#"{"error":{"message":"storage unavailable"}}"#);
        let back: ErrorBody = serde_json::from_str(r#"{"error":{"field":"x","message":"y"}}"#).unwrap();
        assert_eq!(back, ErrorBody::field("x", "y"));
    }
}
