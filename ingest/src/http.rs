//! fleetstream's own HTTP API: `POST /v1/positions` (JSON object, array or NDJSON), plus
//! `GET /healthz`, `GET /readyz` and `GET /metrics`.

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use fleetstream_schemas::time::now_millis;
use fleetstream_schemas::{BodyError, FieldError, parse_position, split_body};
use futures::StreamExt;

use crate::accept::{AppState, Item, accept};
use crate::auth::bearer;
use crate::error::IngestError;

const PROTOCOL: &str = "json";

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/positions", post(post_positions))
        // The body is read with our own limit so that the 413 names it.
        .layer(DefaultBodyLimit::disable())
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// How much of an oversized body is read and thrown away so that the client, still sending,
/// can read our 413 instead of a connection reset; beyond this the connection is cut.
const DRAIN_MAX_BYTES: usize = 64 * 1024 * 1024;
const DRAIN_MAX_TIME: Duration = Duration::from_secs(5);

/// Reads a body of at most the configured size, or answers 413 naming the limit.
pub async fn read_body(
    state: &AppState,
    protocol: &'static str,
    body: Body,
    received_at_ms: i64,
) -> Result<Bytes, IngestError> {
    let limit = state.get().config.max_body_bytes;
    let mut stream = body.into_data_stream();
    let mut kept: Vec<u8> = Vec::new();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| IngestError::new(StatusCode::BAD_REQUEST, "body", format!("could not be read: {e}")))?;
        total += chunk.len();
        if total > limit {
            break;
        }
        kept.extend_from_slice(&chunk);
    }
    if total <= limit {
        return Ok(Bytes::from(kept));
    }
    drop(kept);
    let drain = async {
        while let Some(Ok(chunk)) = stream.next().await {
            total += chunk.len();
            if total > limit + DRAIN_MAX_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_MAX_TIME, drain).await;
    let error = IngestError::new(StatusCode::PAYLOAD_TOO_LARGE, "body", format!("exceeds the limit of {limit} bytes"));
    state.reject(protocol, &error.error, b"", received_at_ms);
    Err(error)
}

pub fn authorization(headers: &HeaderMap) -> Option<&str> {
    bearer(headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()))
}

async fn post_positions(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, IngestError> {
    let received_at_ms = now_millis();
    let scope = state.authorize(PROTOCOL, authorization(&headers))?;
    let bytes = read_body(&state, PROTOCOL, body, received_at_ms).await?;
    let texts = split_body(&bytes, state.get().config.max_batch_items).map_err(|e| {
        let status = match e {
            BodyError::TooManyItems { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        let text = e.to_string();
        let error = FieldError::new("body", text.trim_start_matches("body: "));
        state.reject(PROTOCOL, &error, &bytes, received_at_ms);
        IngestError { status, error, retry_after_secs: None }
    })?;
    let limits = &state.get().limits;
    let items = texts
        .into_iter()
        .map(|text| Item { raw: text.as_bytes(), result: parse_position(text, received_at_ms, limits) })
        .collect();
    let report = accept(&state, PROTOCOL, scope, items, received_at_ms).await?;
    Ok((report.status(), Json(report)).into_response())
}

/// Ready while a broker answers: a load balancer then stops sending devices to an ingest that
/// could only answer 503.
async fn readyz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if state.get().producer.brokers_reachable(Duration::from_secs(2)).await {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "kafka unreachable")
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let inner = state.get();
    inner.metrics.queue_depth.set(i64::from(inner.producer.queue_depth()));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], inner.metrics.render())
}
