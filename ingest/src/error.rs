//! Whole-request failures, answered as `{"error": {"field": .., "message": ..}}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fleetstream_schemas::FieldError;

#[derive(Debug)]
pub struct IngestError {
    pub status: StatusCode,
    pub error: FieldError,
    /// Sent as `Retry-After` (seconds) with 503s.
    pub retry_after_secs: Option<u64>,
}

impl IngestError {
    pub fn new(status: StatusCode, field: &str, message: impl Into<String>) -> Self {
        IngestError { status, error: FieldError::new(field, message), retry_after_secs: None }
    }
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(serde_json::json!({ "error": self.error }))).into_response();
        if let Some(secs) = self.retry_after_secs {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body was never read: the connection cannot carry another request.
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
