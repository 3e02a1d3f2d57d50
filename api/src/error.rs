//! API errors, all in the one shape of [`ErrorBody`]: `{"error": {"field": .., "message": ..}}`
//! with the right status. `field` names the query or path parameter, body member or header at
//! fault; it is absent when the error is not about one input (404, 405, 429, 503).
//!
//! Server errors are not logged here but by [`log_server_errors`], a layer over every route: the
//! answer carries its cause in a response extension ([`Cause`]) for it.

use axum::Json;
use axum::extract::Request;
use axum::http::{StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use fleetstream_schemas::{ErrorBody, FieldError};
use fleetstream_storage::StoreError;

#[derive(Debug)]
pub enum ApiError {
    /// A bad query or path parameter, body member or header, named (400).
    Invalid { field: String, message: String },
    /// Nothing by that name (404).
    NotFound(String),
    /// The path exists, but not with this method (405; axum adds `Allow`).
    MethodNotAllowed,
    /// The request body is over its limit (413).
    TooLarge(String),
    /// The body is not declared as JSON (415).
    NotJson,
    /// Too many history queries at once (429, retry after a second).
    TooBusy { limit: usize },
    /// Storage failed (503: the reader may retry).
    Storage(StoreError),
    /// A service this request needs is not there or full (503, retry after a second).
    Unavailable(String),
}

/// Why a request failed on our side, kept in the response for [`log_server_errors`].
#[derive(Debug, Clone)]
pub struct Cause(pub String);

impl ApiError {
    /// A bad input, named: `field` is a parameter, a dotted path in the body, or a header.
    pub fn bad(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Invalid { field: field.into(), message: message.into() }
    }

    /// The input this error is about, if it is about one.
    pub fn field(&self) -> Option<&str> {
        match self {
            ApiError::Invalid { field, .. } => Some(field),
            ApiError::TooLarge(_) => Some("body"),
            ApiError::NotJson => Some("content-type"),
            _ => None,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Invalid { .. } => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotJson => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooBusy { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Storage(_) | ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn message(&self) -> String {
        match self {
            ApiError::Invalid { message, .. }
            | ApiError::NotFound(message)
            | ApiError::TooLarge(message)
            | ApiError::Unavailable(message) => message.clone(),
            ApiError::MethodNotAllowed => "this path does not take this method (see Allow)".into(),
            ApiError::NotJson => "must be application/json".into(),
            ApiError::TooBusy { limit } => format!("{limit} history queries are running; retry in a second"),
            // The cause stays in our logs: readers learn only that they may retry.
            ApiError::Storage(_) => "storage unavailable, retry later".into(),
        }
    }

    /// The whole error in the one shape.
    pub fn body(&self) -> ErrorBody {
        match self.field() {
            Some(field) => ErrorBody::field(field, self.message()),
            None => ErrorBody::message(self.message()),
        }
    }
}

/// A rule of [`fleetstream_schemas`] refused an input, by name.
impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        ApiError::bad(e.field, e.message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Storage(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), Json(self.body())).into_response();
        match self {
            ApiError::TooBusy { .. } | ApiError::Unavailable(_) => {
                response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            }
            ApiError::Storage(e) => {
                response.extensions_mut().insert(Cause(e.to_string()));
            }
            _ => {}
        }
        response
    }
}

/// Middleware over every route: logs each 5xx answer with the request and its cause. An answer
/// without a cause is a refusal the API chose (at capacity, not ready): a warning, not an error.
pub async fn log_server_errors(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    if response.status().is_server_error() {
        match response.extensions().get::<Cause>() {
            Some(cause) => tracing::error!(%method, path, status, error = cause.0.as_str(), "request failed"),
            None => tracing::warn!(%method, path, status, "request refused"),
        }
    }
    response
}

/// The answer for a path no route serves.
pub async fn no_route(uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no endpoint {}; see /openapi.json", uri.path()))
}

/// The answer for a method a route does not take.
pub async fn wrong_method() -> ApiError {
    ApiError::MethodNotAllowed
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn answer(error: ApiError) -> (StatusCode, Option<String>, serde_json::Value) {
        let response = error.into_response();
        let status = response.status();
        let retry = response.headers().get(header::RETRY_AFTER).map(|v| v.to_str().unwrap().to_string());
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, retry, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn every_error_has_the_one_shape() {
        let (status, _, body) = answer(ApiError::bad("from", "must be a time")).await;
        assert_eq!(status, 400);
        assert_eq!(body, serde_json::json!({"error": {"field": "from", "message": "must be a time"}}));
        let (status, _, body) = answer(ApiError::NotFound("no fence \"x\"".into())).await;
        assert_eq!((status.as_u16(), body["error"].get("field")), (404, None));
        let (status, retry, body) = answer(ApiError::TooBusy { limit: 3 }).await;
        assert_eq!((status.as_u16(), retry.as_deref()), (429, Some("1")));
        assert!(body["error"]["message"].as_str().unwrap().starts_with("3 history queries"));
        let (status, _, body) = answer(ApiError::TooLarge("over 16 MiB".into())).await;
        assert_eq!((status.as_u16(), body["error"]["field"].as_str()), (413, Some("body")));
        let (status, _, body) = answer(ApiError::NotJson).await;
        assert_eq!((status.as_u16(), body["error"]["field"].as_str()), (415, Some("content-type")));
        let (status, _, body) = answer(ApiError::MethodNotAllowed).await;
        assert_eq!((status.as_u16(), body["error"].get("field")), (405, None));
    }
}
