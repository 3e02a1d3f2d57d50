//! API errors as JSON: `{"error": {"parameter": .., "message": ..}}` with the right status.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use fleetstream_storage::StoreError;

#[derive(Debug)]
pub enum ApiError {
    /// A bad query or path parameter (400).
    BadParameter { parameter: &'static str, message: String },
    /// Nothing by that name (404).
    NotFound(String),
    /// Storage failed (503: the reader may retry).
    Storage(StoreError),
    /// Too many history queries at once (429, retry after a second).
    TooBusy { limit: usize },
    /// The request body is over its limit (413).
    TooLarge(String),
}

impl ApiError {
    pub fn bad(parameter: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadParameter { parameter, message: message.into() }
    }
}

/// A JSON request body, or the error naming it: 413 when it is over the limit, 400 otherwise.
pub fn json_body<T>(body: Result<axum::Json<T>, axum::extract::rejection::JsonRejection>) -> Result<T, ApiError> {
    match body {
        Ok(axum::Json(value)) => Ok(value),
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::TooLarge(e.body_text())),
        Err(e) => Err(ApiError::bad("body", e.body_text())),
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Storage(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            ApiError::BadParameter { parameter, message } => (
                StatusCode::BAD_REQUEST,
                serde_json::json!({ "error": { "parameter": parameter, "message": message } }),
            ),
            ApiError::NotFound(message) => {
                (StatusCode::NOT_FOUND, serde_json::json!({ "error": { "message": message } }))
            }
            ApiError::TooLarge(message) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                serde_json::json!({ "error": { "parameter": "body", "message": message } }),
            ),
            ApiError::TooBusy { limit } => {
                let body = serde_json::json!({ "error": {
                    "message": format!("{limit} history queries are running; retry in a second") } });
                return (StatusCode::TOO_MANY_REQUESTS, [(axum::http::header::RETRY_AFTER, "1")], Json(body))
                    .into_response();
            }
            ApiError::Storage(e) => {
                tracing::error!(error = %e, "storage error");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    serde_json::json!({ "error": { "message": "storage unavailable, retry later" } }),
                )
            }
        };
        (status, Json(body)).into_response()
    }
}
