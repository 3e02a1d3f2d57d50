//! The device-facing HTTP routes: `POST /v1/positions`, `GET /healthz`, `GET /readyz`.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use fleetstream_schemas::time::now_millis;
use fleetstream_schemas::{FieldError, Limits, Position, parse_position, split_body};
use serde::Serialize;

use crate::config::IngestConfig;
use crate::producer::{PositionProducer, ProduceError};

#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: IngestConfig,
    limits: Limits,
    producer: PositionProducer,
}

impl AppState {
    pub fn new(config: IngestConfig, producer: PositionProducer) -> Self {
        let limits = config.limits();
        AppState { inner: Arc::new(Inner { config, limits, producer }) }
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/positions", post(post_positions))
        // The body is read with our own limit so that the 413 names it.
        .layer(DefaultBodyLimit::disable())
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// One rejected item of a batch.
#[derive(Debug, Serialize)]
pub struct ItemError {
    pub index: usize,
    #[serde(flatten)]
    pub error: FieldError,
}

/// The answer to `POST /v1/positions`.
#[derive(Debug, Serialize)]
pub struct IngestReport {
    /// Positions now durable in Kafka.
    pub accepted: usize,
    pub rejected: usize,
    /// One entry per rejected item, in input order.
    pub errors: Vec<ItemError>,
}

/// A whole-request failure, answered as `{"error": {"field": .., "message": ..}}`.
struct ApiError {
    status: StatusCode,
    error: FieldError,
    retry_after_secs: Option<u64>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response =
            (self.status, Json(serde_json::json!({ "error": self.error }))).into_response();
        if let Some(secs) = self.retry_after_secs {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

fn body_error(status: StatusCode, message: String) -> ApiError {
    ApiError { status, error: FieldError::new("body", message), retry_after_secs: None }
}

async fn post_positions(State(state): State<AppState>, body: Body) -> Result<Response, ApiError> {
    let received_at_ms = now_millis();
    let inner = &state.inner;
    let limit = inner.config.max_body_bytes;
    let bytes = to_bytes(body, limit).await.map_err(|_| {
        body_error(StatusCode::PAYLOAD_TOO_LARGE, format!("exceeds the limit of {limit} bytes"))
    })?;
    let items = split_body(&bytes, inner.config.max_batch_items).map_err(|e| {
        let status = match e {
            fleetstream_schemas::BodyError::TooManyItems { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        // BodyError's text already starts with "body: ".
        let text = e.to_string();
        body_error(status, text.trim_start_matches("body: ").to_string())
    })?;

    let mut accepted: Vec<Position> = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (index, item) in items.iter().enumerate() {
        match parse_position(item, received_at_ms, &inner.limits) {
            Ok(position) => accepted.push(position),
            Err(error) => errors.push(ItemError { index, error }),
        }
    }

    if !accepted.is_empty() {
        inner.producer.produce_all(&accepted).await.map_err(|e| {
            tracing::warn!(error = %e, positions = accepted.len(), "positions not durable; answering 503");
            let retry_after_secs = Some(match e {
                ProduceError::QueueFull(_) => 1,
                _ => 5,
            });
            ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                error: FieldError::new("kafka", e.to_string()),
                retry_after_secs,
            }
        })?;
    }

    let status = if accepted.is_empty() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    let report = IngestReport { accepted: accepted.len(), rejected: errors.len(), errors };
    Ok((status, Json(report)).into_response())
}

/// Ready while a broker answers: a load balancer then stops sending devices to an ingest that
/// could only answer 503.
async fn readyz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if state.inner.producer.brokers_reachable(Duration::from_secs(2)).await {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "kafka unreachable")
    }
}
