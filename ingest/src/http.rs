//! fleetstream's own HTTP API: `POST /v1/positions` (JSON object, array or NDJSON), plus
//! `GET /healthz`, `GET /readyz` and `GET /metrics`; anything else is a JSON 404 or 405.

use std::time::Duration;

use axum::Router;
use axum::body::{Body, BodyDataStream, Bytes, HttpBody};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use fleetstream_schemas::dead_letter::Raw;
use fleetstream_schemas::{FieldError, parse_position, split_body};
use futures::StreamExt;

use crate::accept::{AppState, IngestReport, Item, Request, accept};
use crate::auth::{Scope, bearer};
use crate::error::{IngestError, method_not_allowed, not_found};

const PROTOCOL: &str = "json";

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/positions", post(post_positions))
        // The body is read with our own limit so that the 413 names it.
        .layer(DefaultBodyLimit::disable())
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// How much of an oversized body is read and thrown away so that the client, still sending,
/// can read our 413 instead of a connection reset; beyond this the connection is cut.
const DRAIN_MAX_BYTES: usize = 64 * 1024 * 1024;
const DRAIN_MAX_TIME: Duration = Duration::from_secs(5);

/// Reads a body of at most the configured size, or answers 413 naming the limit.
pub async fn read_body(state: &AppState, request: &Request, body: Body) -> Result<Bytes, IngestError> {
    let limit = state.get().config.max_body_bytes;
    let mut stream = body.into_data_stream();
    if let Some(bytes) = read_at_most(&mut stream, limit).await? {
        return Ok(bytes);
    }
    let drain = async {
        let mut drained = 0;
        while let Some(Ok(chunk)) = stream.next().await {
            drained += chunk.len();
            if drained > DRAIN_MAX_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_MAX_TIME, drain).await;
    let error = FieldError::new("body", format!("exceeds the limit of {limit} bytes"));
    Err(state.refuse(request, StatusCode::PAYLOAD_TOO_LARGE, error, Raw::Json(b"")).closing())
}

/// The whole body when it is at most `limit` bytes; `None` as soon as it proves larger, the
/// rest left unread (nothing at all is read when its declared length is over the limit).
pub async fn read_at_most(stream: &mut BodyDataStream, limit: usize) -> Result<Option<Bytes>, IngestError> {
    if HttpBody::size_hint(stream).lower() > limit as u64 {
        return Ok(None);
    }
    let mut kept: Vec<u8> = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| IngestError::new(StatusCode::BAD_REQUEST, "body", format!("could not be read: {e}")))?;
        if kept.len() + chunk.len() > limit {
            return Ok(None);
        }
        kept.extend_from_slice(&chunk);
    }
    Ok(Some(Bytes::from(kept)))
}

/// Checks the request's token before its body is read. A refusal then ends the connection
/// (unless there is no body): the unread body cannot be skipped to reach a next request.
pub fn authorize_before_body<'s>(
    state: &'s AppState,
    request: &Request,
    body: &Body,
) -> Result<Option<&'s Scope>, IngestError> {
    let no_body = HttpBody::size_hint(body).exact() == Some(0);
    state.authorize(request).map_err(|e| if no_body { e } else { e.closing() })
}

pub fn authorization(headers: &HeaderMap) -> Option<&str> {
    bearer(headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()))
}

async fn post_positions(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<IngestReport, IngestError> {
    let mut request = Request::new(PROTOCOL);
    request.present(authorization(&headers));
    let scope = authorize_before_body(&state, &request, &body)?;
    let bytes = read_body(&state, &request, body).await?;
    let texts = split_body(&bytes, state.get().config.max_batch_items)
        .map_err(|e| state.refuse_body(&request, &e, Raw::Json(&bytes)))?;
    let limits = &state.get().limits;
    let items = texts
        .into_iter()
        .map(|text| Item {
            raw: Raw::Json(text.as_bytes()),
            result: parse_position(text, request.received_at_ms, limits),
        })
        .collect();
    accept(&state, &request, scope, items).await
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
