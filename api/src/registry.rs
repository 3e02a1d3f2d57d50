//! The device registry: name, fleet and type per device, which processors stamp onto positions.
//! Entries are versioned rows, like fences; processors poll for changes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use fleetstream_schemas::time::now_millis;
use fleetstream_storage::{DeviceRow, next_version};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::checks::{MAX_ID_BYTES, MAX_TEXT_BYTES, check_text};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery, PathId};
use crate::params::{Limit, limit};
use crate::state::ApiState;

pub fn routes() -> Router<ApiState> {
    Router::new().route("/v1/registry", get(list)).route("/v1/registry/{id}", get(get_one).put(put).delete(delete))
}

/// What a client sends and gets back for one device.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceMeta {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub fleet: String,
    #[serde(default, rename = "type")]
    pub device_type: String,
}

fn view(row: &DeviceRow) -> Value {
    json!({ "device_id": row.device_id, "name": row.name, "fleet": row.fleet, "type": row.device_type })
}

async fn put(
    State(state): State<ApiState>,
    PathId(id): PathId,
    ApiJson(meta): ApiJson<DeviceMeta>,
) -> Result<Json<Value>, ApiError> {
    check_text("name", &meta.name, MAX_TEXT_BYTES)?;
    check_text("fleet", &meta.fleet, MAX_TEXT_BYTES)?;
    check_text("type", &meta.device_type, MAX_TEXT_BYTES)?;
    let row = DeviceRow {
        device_id: id,
        version: next_version(),
        deleted: 0,
        name: meta.name,
        fleet: meta.fleet,
        device_type: meta.device_type,
        updated_at_ms: now_millis(),
    };
    state.store().put_device(&row).await?;
    Ok(Json(view(&row)))
}

async fn get_one(State(state): State<ApiState>, PathId(id): PathId) -> Result<Json<Value>, ApiError> {
    match state.store().registered_device(&id).await? {
        Some(row) => Ok(Json(view(&row))),
        None => Err(ApiError::NotFound(format!("no registered device {id:?}"))),
    }
}

async fn delete(State(state): State<ApiState>, PathId(id): PathId) -> Result<StatusCode, ApiError> {
    if state.store().registered_device(&id).await?.is_none() {
        return Err(ApiError::NotFound(format!("no registered device {id:?}")));
    }
    let row = DeviceRow {
        device_id: id,
        version: next_version(),
        deleted: 1,
        name: String::new(),
        fleet: String::new(),
        device_type: String::new(),
        updated_at_ms: now_millis(),
    };
    state.store().put_device(&row).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
struct ListParams {
    after: Option<String>,
}

/// Registered devices by id; page with `after` = the last id of the previous page.
async fn list(
    State(state): State<ApiState>,
    limit: Limit<limit::Devices>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<Value>, ApiError> {
    let limit = limit.get();
    let after = params.after.unwrap_or_default();
    check_text("after", &after, MAX_ID_BYTES)?;
    let rows = state.store().registered_devices(&after, limit).await?;
    let next_after = (rows.len() as u64 == limit).then(|| rows.last().map(|r| r.device_id.clone())).flatten();
    let devices: Vec<Value> = rows.iter().map(view).collect();
    Ok(Json(json!({ "count": devices.len(), "devices": devices, "next_after": next_after })))
}
