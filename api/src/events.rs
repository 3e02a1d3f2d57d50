//! `GET /v1/geofence-events`: stored enter/exit events, filtered by time, device and fence.

use axum::Json;
use axum::extract::State;
use fleetstream_storage::EventQuery;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::params::{Limit, QueryId, TimeRange, id, limit};
use crate::state::ApiState;
use crate::views::EventView;

#[derive(Debug, Deserialize)]
pub struct EventParams {
    /// `asc` (default) or `desc`.
    order: Option<String>,
}

/// Geofence enter/exit events with `from <= time < to`, of one `device` and one `fence` when
/// given, oldest first (`order=desc`: newest first). Defaults: the last 24 h.
pub async fn geofence_events(
    State(state): State<ApiState>,
    range: TimeRange,
    limit: Limit<limit::Rows>,
    ApiQuery(params): ApiQuery<EventParams>,
    device: QueryId<id::Device>,
    fence: QueryId<id::Fence>,
) -> Result<Json<Value>, ApiError> {
    let newest_first = crate::params::newest_first(params.order.as_deref())?;
    let query = EventQuery {
        from_ms: range.from,
        to_ms: range.to,
        device_id: device.filter(),
        fence_id: fence.filter(),
        limit: limit.get(),
        newest_first,
    };
    let rows = state.store().geofence_events_where(&query).await?;
    let events: Vec<EventView> = rows.into_iter().map(Into::into).collect();
    Ok(Json(json!({ "count": events.len(), "events": events })))
}
