//! Fence management: GeoJSON in and out, validated with the same code the processors use, and
//! stored as versioned rows that processors poll; and who is inside a fence now.

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use fleetstream_geofence::fences_from_geojson;
use fleetstream_schemas::time::{format_millis, now_millis};
use fleetstream_storage::{FenceRow, next_version};
use serde_json::{Value, json};

use crate::error::{ApiError, json_body};
use crate::routes::{ApiState, LatestParams, check_id, parse_limit};

/// Fence uploads carry real shapes (the NYC boroughs are 0.9 MB).
const MAX_FENCE_BODY_BYTES: usize = 16 * 1024 * 1024;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/fences", get(list_fences).post(import_fences))
        .route("/v1/fences/{id}", get(get_fence).put(put_fence).delete(delete_fence))
        .route("/v1/fences/{id}/inside", get(fence_inside))
        .layer(DefaultBodyLimit::max(MAX_FENCE_BODY_BYTES))
}

/// All fences as a GeoJSON FeatureCollection.
async fn list_fences(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let rows = state.store().live_fences().await?;
    let features: Vec<Value> = rows.iter().map(feature_of).collect();
    Ok(Json(json!({ "type": "FeatureCollection", "features": features })))
}

async fn get_fence(State(state): State<ApiState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    check_id("id", &id)?;
    match state.store().fence(&id).await? {
        Some(row) => Ok(Json(feature_of(&row))),
        None => Err(ApiError::NotFound(format!("no fence {id:?}"))),
    }
}

/// Creates or replaces one fence from a GeoJSON Feature.
async fn put_fence(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    check_id("id", &id)?;
    let feature = json_body(body)?;
    let row = fence_row(feature, Some(&id))?;
    state.store().put_fence(&row).await?;
    Ok(Json(json!({ "id": row.fence_id, "version": row.version })))
}

/// Imports every fence of a FeatureCollection; nothing is stored unless all are valid.
async fn import_fences(
    State(state): State<ApiState>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = json_body(body)?;
    let rows = fence_rows(body)?;
    for row in &rows {
        state.store().put_fence(row).await?;
    }
    let ids: Vec<&str> = rows.iter().map(|r| r.fence_id.as_str()).collect();
    Ok(Json(json!({ "imported": ids.len(), "ids": ids })))
}

async fn delete_fence(State(state): State<ApiState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    check_id("id", &id)?;
    if state.store().fence(&id).await?.is_none() {
        return Err(ApiError::NotFound(format!("no fence {id:?}")));
    }
    state.store().put_fence(&deletion(&id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who is inside a fence right now, since when, and for how long so far.
async fn fence_inside(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Query(params): Query<LatestParams>,
) -> Result<Json<Value>, ApiError> {
    check_id("id", &id)?;
    let max = state.config().max_devices;
    let limit = parse_limit(params.limit.as_deref(), max, max)?;
    if state.store().fence(&id).await?.is_none() {
        return Err(ApiError::NotFound(format!("no fence {id:?}")));
    }
    let now = now_millis();
    let devices: Vec<Value> = state
        .store()
        .fence_occupants(&id, limit)
        .await?
        .into_iter()
        .map(|(device_id, since_ms)| {
            json!({ "device_id": device_id, "since": format_millis(since_ms), "since_ms": since_ms, "dwell_ms": now - since_ms })
        })
        .collect();
    Ok(Json(json!({ "fence_id": id, "count": devices.len(), "devices": devices })))
}

/// Most fences one import may carry.
pub const MAX_FENCES_PER_IMPORT: usize = 10_000;

/// Validates one GeoJSON Feature as a fence and makes its stored row. `path_id`, when given,
/// is the fence id (from the URL) and wins over the feature's own.
pub fn fence_row(mut feature: Value, path_id: Option<&str>) -> Result<FenceRow, ApiError> {
    if feature.get("type").and_then(Value::as_str) != Some("Feature") {
        return Err(ApiError::bad("body", "must be a GeoJSON Feature"));
    }
    if let Some(id) = path_id {
        feature["id"] = json!(id);
    }
    let text = feature.to_string();
    let fence = fences_from_geojson(&text)
        .map_err(|e| ApiError::bad("body", e.to_string()))?
        .pop()
        .ok_or_else(|| ApiError::bad("body", "no fence"))?;
    Ok(FenceRow {
        fence_id: fence.id,
        version: next_version(),
        deleted: 0,
        name: fence.name,
        feature: text,
        updated_at_ms: fleetstream_schemas::time::now_millis(),
    })
}

/// All the fences of a FeatureCollection (or one Feature), validated before any is stored.
pub fn fence_rows(body: Value) -> Result<Vec<FenceRow>, ApiError> {
    let features = match body.get("type").and_then(Value::as_str) {
        Some("FeatureCollection") => match body.get("features") {
            Some(Value::Array(features)) => features.clone(),
            _ => return Err(ApiError::bad("body", "a FeatureCollection needs a features array")),
        },
        Some("Feature") => vec![body],
        _ => return Err(ApiError::bad("body", "must be a GeoJSON Feature or FeatureCollection")),
    };
    if features.len() > MAX_FENCES_PER_IMPORT {
        return Err(ApiError::bad("body", format!("{} fences, the limit is {MAX_FENCES_PER_IMPORT}", features.len())));
    }
    features
        .into_iter()
        .enumerate()
        .map(|(i, f)| {
            fence_row(f, None).map_err(|e| match e {
                ApiError::BadParameter { message, .. } => ApiError::bad("body", format!("feature {i}: {message}")),
                other => other,
            })
        })
        .collect()
}

/// The stored row of a deletion.
pub fn deletion(fence_id: &str) -> FenceRow {
    FenceRow {
        fence_id: fence_id.into(),
        version: next_version(),
        deleted: 1,
        name: String::new(),
        feature: String::new(),
        updated_at_ms: fleetstream_schemas::time::now_millis(),
    }
}

/// A stored fence as GeoJSON.
pub fn feature_of(row: &FenceRow) -> Value {
    serde_json::from_str(&row.feature).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_feature_becomes_a_row_with_the_path_id() {
        let f = json!({"type":"Feature","id":"x","properties":{"name":"Pier 7","radius_m":150},"geometry":{"type":"Point","coordinates":[-74.0,40.7]}});
        let row = fence_row(f, Some("pier-7")).unwrap();
        assert_eq!((row.fence_id.as_str(), row.name.as_str(), row.deleted), ("pier-7", "Pier 7", 0));
        assert_eq!(feature_of(&row)["id"], "pier-7");
    }

    #[test]
    fn invalid_fences_are_refused_with_the_reason() {
        let e = fence_row(json!({"type":"Point","coordinates":[0,0]}), Some("a")).unwrap_err();
        assert!(matches!(e, ApiError::BadParameter { parameter: "body", .. }));
        let e = fence_row(
            json!({"type":"Feature","properties":{},"geometry":{"type":"Point","coordinates":[0,0]}}),
            Some("a"),
        )
        .unwrap_err();
        assert!(format!("{e:?}").contains("radius_m"));
        let e = fence_rows(json!({"type":"FeatureCollection","features":[
            {"type":"Feature","id":"ok","properties":{"radius_m":5},"geometry":{"type":"Point","coordinates":[0,0]}},
            {"type":"Feature","id":"bad","properties":{},"geometry":{"type":"LineString","coordinates":[[0,0],[1,1]]}}]})).unwrap_err();
        assert!(format!("{e:?}").contains("feature 1"), "{e:?}");
    }

    #[test]
    fn real_counties_import() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/nyc-area-counties.geojson");
        let body: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let rows = fence_rows(body).unwrap();
        assert_eq!(rows.len(), 15);
        assert!(rows.iter().all(|r| r.fence_id.starts_with("county-")));
    }
}
