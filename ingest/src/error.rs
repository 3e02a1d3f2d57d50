//! Whole-request failures, answered in fleetstream's one error shape ([`ErrorBody`]:
//! `{"error": {"field": .., "message": ..}}`), axum's own 404 and 405 included.

use axum::Json;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use fleetstream_schemas::{ErrorBody, FieldError};

#[derive(Debug)]
pub struct IngestError {
    pub status: StatusCode,
    pub body: ErrorBody,
    /// Sent as `Retry-After` (seconds) with 503s.
    pub retry_after_secs: Option<u64>,
    /// The request body was left unread, so the connection cannot carry another request.
    pub close: bool,
}

impl IngestError {
    /// An error about one input, named.
    pub fn new(status: StatusCode, field: &str, message: impl Into<String>) -> Self {
        IngestError::of(status, ErrorBody::field(field, message))
    }

    pub fn field(status: StatusCode, error: &FieldError) -> Self {
        IngestError::of(status, ErrorBody::from(error))
    }

    /// An error about the request as a whole or about the server (404, 405, 503).
    pub fn message(status: StatusCode, message: impl Into<String>) -> Self {
        IngestError::of(status, ErrorBody::message(message))
    }

    fn of(status: StatusCode, body: ErrorBody) -> Self {
        IngestError { status, body, retry_after_secs: None, close: false }
    }

    /// Marks the answer as the last on its connection: the body was not read.
    pub fn closing(self) -> Self {
        IngestError { close: true, ..self }
    }
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.close {
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Any path the JSON port does not serve.
pub async fn not_found(uri: Uri) -> IngestError {
    IngestError::message(
        StatusCode::NOT_FOUND,
        format!("no such path: {}; positions go to POST /v1/positions", uri.path()),
    )
}

/// A known path with a method it does not take (axum adds the `Allow` header).
pub async fn method_not_allowed(method: Method, uri: Uri) -> IngestError {
    IngestError::message(StatusCode::METHOD_NOT_ALLOWED, format!("{} does not take {method}", uri.path()))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn answer(error: IngestError) -> (StatusCode, Response, serde_json::Value) {
        let response = error.into_response();
        let status = response.status();
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
        (status, Response::from_parts(parts, axum::body::Body::empty()), serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn errors_have_the_one_shape() {
        let (status, response, body) = answer(IngestError::new(StatusCode::BAD_REQUEST, "lat", "too far north")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body, serde_json::json!({"error": {"field": "lat", "message": "too far north"}}));
        assert!(response.headers().get(header::CONNECTION).is_none());

        let (_, _, body) = answer(not_found("/v2/nothing?token=x".parse().unwrap()).await).await;
        assert_eq!(body["error"]["field"], serde_json::Value::Null);
        assert!(body["error"]["message"].as_str().unwrap().contains("/v2/nothing"), "{body}");
        assert!(!body.to_string().contains("token"), "queries are not echoed: {body}");

        let unread = IngestError::new(StatusCode::UNAUTHORIZED, "token", "required").closing();
        let (_, response, _) = answer(unread).await;
        assert_eq!(response.headers()[header::CONNECTION], "close");
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
    }
}
