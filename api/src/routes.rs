//! Handlers: parse and bound the parameters, call the store, shape the answer.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use fleetstream_schemas::time::{now_millis, parse_time_param};
use fleetstream_storage::{EventQuery, Store};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::ApiTokens;
use crate::checks::optional_id;
use crate::config::ApiConfig;
use crate::error::{self, ApiError};
use crate::extract::ApiQuery;
use crate::limits::{self, QuerySlots};
use crate::live::{self, LiveCache};
use crate::metrics::{self, ApiMetrics};
use crate::stream::{self, Streams};
use crate::views::EventView;
use crate::{auth, dashboard, fences, latest, openapi, registry, reports, track};

/// Everything a handler needs, shared.
#[derive(Clone)]
pub struct ApiState {
    inner: Arc<Inner>,
}

struct Inner {
    tokens: ApiTokens,
    config: ApiConfig,
    store: Store,
    summary: LiveCache<Value>,
    latest: LiveCache<latest::Snapshot>,
    query_slots: QuerySlots,
    metrics: ApiMetrics,
    streams: Option<Arc<Streams>>,
}

impl ApiState {
    pub fn new(config: ApiConfig, store: Store, tokens: ApiTokens) -> Self {
        ApiState::with_streams(config, store, tokens, ApiMetrics::default(), None)
    }
    /// With live streams (`streams` shares `metrics`).
    pub fn with_streams(
        config: ApiConfig,
        store: Store,
        tokens: ApiTokens,
        metrics: ApiMetrics,
        streams: Option<Streams>,
    ) -> Self {
        let query_slots = QuerySlots::new(config.max_concurrent_queries as usize);
        let (summary, latest, streams) = (LiveCache::default(), LiveCache::default(), streams.map(Arc::new));
        let inner = Inner { tokens, config, store, summary, latest, query_slots, metrics, streams };
        ApiState { inner: Arc::new(inner) }
    }
    pub(crate) fn tokens(&self) -> &ApiTokens {
        &self.inner.tokens
    }
    pub(crate) fn config(&self) -> &ApiConfig {
        &self.inner.config
    }
    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }
    pub(crate) fn summary_cache(&self) -> &LiveCache<Value> {
        &self.inner.summary
    }
    pub(crate) fn latest_cache(&self) -> &LiveCache<latest::Snapshot> {
        &self.inner.latest
    }
    pub(crate) fn metrics(&self) -> &ApiMetrics {
        &self.inner.metrics
    }
    pub(crate) fn streams(&self) -> Option<&Arc<Streams>> {
        self.inner.streams.as_ref()
    }
}

pub fn router(state: ApiState) -> Router {
    // History reads go to ClickHouse on every request: bounded, 429 beyond the bound. The live
    // endpoints are served from shared snapshots and need no bound.
    let history = Router::new()
        .route("/v1/devices/{id}/track", get(track::track))
        .route("/v1/geofence-events", get(geofence_events))
        .merge(reports::routes())
        .layer(axum::middleware::from_fn_with_state(state.inner.query_slots.clone(), limits::limit_queries));
    Router::new()
        .route("/v1/devices/latest", get(latest::latest))
        .route("/v1/live/summary", get(live::summary))
        .route("/v1/stream/positions", get(stream::positions))
        .route("/v1/stream/events", get(stream::events))
        .merge(history)
        .merge(fences::routes())
        .merge(registry::routes())
        // Everything above needs a token when tokens are configured; health checks below never do.
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_token))
        // The dashboard page holds no data: it reads the endpoints above with the reader's token.
        .route("/", get(dashboard::page))
        .route("/openapi.json", get(openapi::document))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics::metrics))
        .route("/readyz", get(readyz))
        // Every answer is JSON, even for paths and methods no route serves (after all routes:
        // the 405 fallback is set on the routes present).
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::wrong_method)
        .layer(axum::middleware::from_fn(error::log_server_errors))
        .with_state(state)
}

/// Query parameters arrive as strings so that a bad one gets our error naming it, not axum's.
#[derive(Debug, Deserialize)]
pub(crate) struct LatestParams {
    pub(crate) limit: Option<String>,
}

const DEFAULT_WINDOW_MS: i64 = 24 * 3600 * 1000;
const MAX_EVENTS: u64 = 100_000;

pub(crate) fn parse_limit(raw: Option<&str>, default: u64, max: u64) -> Result<u64, ApiError> {
    let Some(raw) = raw else { return Ok(default.min(max)) };
    match raw.parse::<u64>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(ApiError::bad("limit", format!("must be an integer from 1 to {max}, got {raw:?}"))),
    }
}

/// A `from`/`to` pair: `to` defaults to now, `from` to a day before `to`, and `from < to`.
pub(crate) fn parse_range(from: Option<&str>, to: Option<&str>) -> Result<(i64, i64), ApiError> {
    let to = parse_time("to", to, now_millis())?;
    let from = parse_time("from", from, to.saturating_sub(DEFAULT_WINDOW_MS))?;
    if from >= to {
        return Err(ApiError::bad("from", "must be before `to`"));
    }
    Ok((from, to))
}

fn parse_time(name: &str, raw: Option<&str>, default: i64) -> Result<i64, ApiError> {
    raw.map_or(Ok(default), |r| parse_time_param(r).map_err(|e| ApiError::bad(name, e)))
}

#[derive(Debug, Deserialize)]
struct EventParams {
    from: Option<String>,
    to: Option<String>,
    limit: Option<String>,
    order: Option<String>,
    device: Option<String>,
    fence: Option<String>,
}

/// Geofence enter/exit events with `from <= time < to`, of one `device` and one `fence` when
/// given, oldest first (`order=desc`: newest first). Defaults: the last 24 h.
async fn geofence_events(
    State(state): State<ApiState>,
    ApiQuery(params): ApiQuery<EventParams>,
) -> Result<Json<Value>, ApiError> {
    let (from, to) = parse_range(params.from.as_deref(), params.to.as_deref())?;
    let limit = parse_limit(params.limit.as_deref(), 10_000, MAX_EVENTS)?;
    let newest_first = match params.order.as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(other) => return Err(ApiError::bad("order", format!("must be asc or desc, got {other:?}"))),
    };
    let device = optional_id("device", params.device.as_deref())?;
    let fence = optional_id("fence", params.fence.as_deref())?;
    let query = EventQuery { from_ms: from, to_ms: to, device_id: &device, fence_id: &fence, limit, newest_first };
    let rows = state.store().geofence_events_where(&query).await?;
    let events: Vec<EventView> = rows.into_iter().map(Into::into).collect();
    Ok(Json(json!({ "count": events.len(), "events": events })))
}

/// Ready while ClickHouse answers.
async fn readyz(State(state): State<ApiState>) -> (StatusCode, &'static str) {
    match state.store().server_version().await {
        Ok(_) => (StatusCode::OK, "ready"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "clickhouse unreachable"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_bounded() {
        assert_eq!(parse_limit(None, 50, 100).unwrap(), 50);
        assert_eq!(parse_limit(None, 500, 100).unwrap(), 100);
        assert_eq!(parse_limit(Some("7"), 50, 100).unwrap(), 7);
        for bad in ["0", "101", "-1", "ten", ""] {
            assert_eq!(parse_limit(Some(bad), 50, 100).unwrap_err().field(), Some("limit"), "{bad}");
        }
    }

    /// `to` is any integer of milliseconds; the default `from` a day before it must not
    /// overflow (a panic closes the connection in debug builds and wraps in release builds,
    /// where the answer then blames a `from` the reader never sent).
    #[test]
    fn the_earliest_to_is_refused_by_name_not_a_panic() {
        let refused = parse_range(None, Some("-9223372036854775808")).unwrap_err();
        assert_eq!(refused.field(), Some("from"), "{refused:?}");
        assert!(parse_range(None, Some("-9223372036854775000")).is_ok());
        assert!(parse_range(Some("-9223372036854775808"), Some("-9223372036854775807")).is_ok());
    }

    #[test]
    fn times_name_their_parameter() {
        assert_eq!(parse_time("from", Some("1000"), 5).unwrap(), 1000);
        assert_eq!(parse_time("from", None, 5).unwrap(), 5);
        assert_eq!(parse_time("to", Some("soon"), 0).unwrap_err().field(), Some("to"));
    }
}
