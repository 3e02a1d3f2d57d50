//! Fence management: GeoJSON in and out, validated with the same code the processors use, and
//! stored as versioned rows that processors poll; and who is inside a fence now.

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use fleetstream_geofence::fence_from_json;
use fleetstream_schemas::time::{format_millis, now_millis};
use fleetstream_storage::{FenceRow, next_version};
use serde_json::{Value, json};

use crate::checks::{MAX_TEXT_BYTES, check_id, check_text};
use crate::error::ApiError;
use crate::extract::{ApiJson, PathId};
use crate::params::{Limit, limit};
use crate::state::ApiState;

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

async fn get_fence(State(state): State<ApiState>, PathId(id): PathId) -> Result<Json<Value>, ApiError> {
    match state.store().fence(&id).await? {
        Some(row) => Ok(Json(feature_of(&row))),
        None => Err(ApiError::NotFound(format!("no fence {id:?}"))),
    }
}

/// Creates or replaces one fence from a GeoJSON Feature.
async fn put_fence(
    State(state): State<ApiState>,
    PathId(id): PathId,
    ApiJson(feature): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let row = fence_row(feature, Some(&id), max_vertices(&state), "")?;
    state.store().put_fence(&row).await?;
    Ok(Json(json!({ "id": row.fence_id, "version": row.version })))
}

/// Imports every fence of a FeatureCollection; nothing is stored unless all are valid.
async fn import_fences(State(state): State<ApiState>, ApiJson(body): ApiJson<Value>) -> Result<Json<Value>, ApiError> {
    let rows = fence_rows(body, max_vertices(&state))?;
    for row in &rows {
        state.store().put_fence(row).await?;
    }
    let ids: Vec<&str> = rows.iter().map(|r| r.fence_id.as_str()).collect();
    Ok(Json(json!({ "imported": ids.len(), "ids": ids })))
}

async fn delete_fence(State(state): State<ApiState>, PathId(id): PathId) -> Result<StatusCode, ApiError> {
    if state.store().fence(&id).await?.is_none() {
        return Err(ApiError::NotFound(format!("no fence {id:?}")));
    }
    state.store().put_fence(&deletion(&id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who is inside a fence right now, since when, and for how long so far.
async fn fence_inside(
    State(state): State<ApiState>,
    PathId(id): PathId,
    limit: Limit<limit::Devices>,
) -> Result<Json<Value>, ApiError> {
    if state.store().fence(&id).await?.is_none() {
        return Err(ApiError::NotFound(format!("no fence {id:?}")));
    }
    let now = now_millis();
    let devices: Vec<Value> = state
        .store()
        .fence_occupants(&id, limit.get())
        .await?
        .into_iter()
        .map(|(device_id, since_ms)| {
            json!({ "device_id": device_id, "since": format_millis(since_ms), "since_ms": since_ms, "dwell_ms": now - since_ms })
        })
        .collect();
    Ok(Json(json!({ "fence_id": id, "count": devices.len(), "devices": devices })))
}

fn max_vertices(state: &ApiState) -> usize {
    usize::try_from(state.config().max_fence_vertices).unwrap_or(usize::MAX)
}

/// Most fences one import may carry.
pub const MAX_FENCES_PER_IMPORT: usize = 10_000;

/// The name of `field` of the feature at `at` in the body: `at` is empty for a feature that is
/// the whole body (`body` then names the feature itself) or `features[i]` in a collection.
fn member(at: &str, field: &str) -> String {
    match (at, field) {
        ("", "") => "body".into(),
        ("", field) => field.into(),
        (at, "") => at.into(),
        (at, field) => format!("{at}.{field}"),
    }
}

/// Validates one GeoJSON Feature as a fence and makes its stored row: the geometry by the
/// geofence rules (positions in range, closed rings, at most `max_vertices` positions), the id
/// by [`check_id`] and the name by [`check_text`], as on every other path. `path_id`, when
/// given, is the fence id (from the URL, already checked) and wins over the feature's own.
/// Errors name the member at fault, under `at` (see [`member`]).
pub fn fence_row(
    mut feature: Value,
    path_id: Option<&str>,
    max_vertices: usize,
    at: &str,
) -> Result<FenceRow, ApiError> {
    if let (Some(id), Some(object)) = (path_id, feature.as_object_mut()) {
        object.insert("id".into(), json!(id));
    }
    let fence = fence_from_json(&feature, max_vertices).map_err(|e| ApiError::bad(member(at, &e.field), e.message))?;
    check_id(&member(at, "id"), &fence.id)?;
    check_text(&member(at, "properties.name"), &fence.name, MAX_TEXT_BYTES)?;
    Ok(FenceRow {
        fence_id: fence.id,
        version: next_version(),
        deleted: 0,
        name: fence.name,
        feature: feature.to_string(),
        updated_at_ms: now_millis(),
    })
}

/// All the fences of a FeatureCollection (or one Feature), validated before any is stored.
pub fn fence_rows(body: Value, max_vertices: usize) -> Result<Vec<FenceRow>, ApiError> {
    let kind = body.get("type").and_then(Value::as_str).map(str::to_owned);
    let features = match (kind.as_deref(), body) {
        (Some("FeatureCollection"), Value::Object(mut collection)) => match collection.remove("features") {
            Some(Value::Array(features)) => features,
            _ => return Err(ApiError::bad("features", "a FeatureCollection needs a features array")),
        },
        (Some("Feature"), feature) => return fence_row(feature, None, max_vertices, "").map(|row| vec![row]),
        _ => return Err(ApiError::bad("type", "must be \"Feature\" or \"FeatureCollection\"")),
    };
    if features.len() > MAX_FENCES_PER_IMPORT {
        return Err(ApiError::bad(
            "features",
            format!("{} fences, the limit is {MAX_FENCES_PER_IMPORT}", features.len()),
        ));
    }
    features
        .into_iter()
        .enumerate()
        .map(|(i, feature)| fence_row(feature, None, max_vertices, &format!("features[{i}]")))
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
        updated_at_ms: now_millis(),
    }
}

/// A stored fence as GeoJSON.
pub fn feature_of(row: &FenceRow) -> Value {
    serde_json::from_str(&row.feature).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAX: usize = 10_000;
    const SQUARE: [[f64; 2]; 5] = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]];

    fn circle(coordinates: Value) -> Value {
        json!({"type":"Feature","properties":{"name":"Pier 7","radius_m":150},"geometry":{"type":"Point","coordinates":coordinates}})
    }

    fn polygon(rings: Value) -> Value {
        json!({"type":"Feature","properties":{},"geometry":{"type":"Polygon","coordinates":rings}})
    }

    /// The field and message of the error for `feature` PUT as fence `a`.
    fn refusal(feature: Value) -> (String, String) {
        match fence_row(feature, Some("a"), MAX, "").unwrap_err() {
            ApiError::Invalid { field, message } => (field, message),
            other => panic!("{other:?}"),
        }
    }

    fn import_refusal(features: Vec<Value>) -> (String, String) {
        match fence_rows(json!({"type": "FeatureCollection", "features": features}), MAX).unwrap_err() {
            ApiError::Invalid { field, message } => (field, message),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_feature_becomes_a_row_with_the_path_id() {
        let mut f = circle(json!([-74.0, 40.7]));
        f["id"] = json!("x");
        let row = fence_row(f, Some("pier-7"), MAX, "").unwrap();
        assert_eq!((row.fence_id.as_str(), row.name.as_str(), row.deleted), ("pier-7", "Pier 7", 0));
        assert_eq!(feature_of(&row)["id"], "pier-7");
    }

    #[test]
    fn bad_coordinates_are_named() {
        for (coordinates, says) in [
            (json!([1e300, 0]), "longitude must be within [-180, 180], got 1e300"),
            (json!([0, 1000]), "latitude must be within [-90, 90], got 1000"),
            (json!([1]), "got 1 numbers"),
            (json!([]), "got 0 numbers"),
        ] {
            let (field, message) = refusal(circle(coordinates));
            assert_eq!(field, "geometry.coordinates");
            assert!(message.contains(says), "{message}");
        }
        let (field, message) = refusal(polygon(json!([[[0, 0], [1, 0], [1, 1], [0, 1]]])));
        assert_eq!(
            (field.as_str(), message.as_str()),
            ("geometry.coordinates", "ring 0: a ring must end where it starts (closed)")
        );
        let (_, message) = refusal(polygon(json!([[[0, 0], [1, 1], [0, 0]]])));
        assert!(message.contains("at least 4 positions"), "{message}");
    }

    #[test]
    fn empty_coordinates_of_every_geometry_type_are_refused() {
        for kind in ["Point", "Polygon", "MultiPolygon", "LineString", "MultiPoint", "MultiLineString"] {
            let feature =
                json!({"type":"Feature","properties":{"radius_m":5},"geometry":{"type":kind,"coordinates":[]}});
            assert!(refusal(feature).0.starts_with("geometry."), "{kind}");
        }
        let collection =
            json!({"type":"Feature","properties":{},"geometry":{"type":"GeometryCollection","geometries":[]}});
        assert_eq!(refusal(collection).0, "geometry.type");
    }

    #[test]
    fn the_vertex_bound_is_the_configured_one() {
        let ring: Vec<[f64; 2]> =
            (0..199_999).map(|i| [(i % 360) as f64 - 180.0, 0.5]).chain([[-180.0, 0.5]]).collect();
        let (field, message) = refusal(polygon(json!([ring])));
        assert_eq!(
            (field.as_str(), message.as_str()),
            ("geometry.coordinates", "200000 positions, the limit is 10000")
        );
        assert!(fence_row(polygon(json!([SQUARE])), Some("a"), 5, "").is_ok());
        assert!(fence_row(polygon(json!([SQUARE])), Some("a"), 4, "").is_err());
    }

    #[test]
    fn bad_radius_is_named() {
        for radius in [json!(0), json!(-1), json!(1e300), json!("150"), json!(null)] {
            let mut f = circle(json!([0, 0]));
            f["properties"]["radius_m"] = radius;
            assert_eq!(refusal(f).0, "properties.radius_m");
        }
    }

    #[test]
    fn names_and_ids_keep_the_rules_of_every_other_path() {
        let mut long_name = circle(json!([0, 0]));
        long_name["properties"]["name"] = json!("n".repeat(100_000));
        assert_eq!(refusal(long_name.clone()), ("properties.name".into(), "is 100000 bytes, the limit is 256".into()));
        let mut control = circle(json!([0, 0]));
        control["properties"]["name"] = json!("Pier\u{7}7");
        assert_eq!(refusal(control).0, "properties.name");
        // The import takes the id from the feature: the same rule as a path id.
        for (id, says) in [
            (json!("bad\u{1}id"), "contains control character U+0001"),
            (json!("x".repeat(129)), "is 129 bytes, the limit is 128"),
            (json!(" "), "must not be empty"),
        ] {
            let mut f = circle(json!([0, 0]));
            f["id"] = id;
            assert_eq!(import_refusal(vec![f]), ("features[0].id".into(), says.into()));
        }
        let mut by_property = circle(json!([0, 0]));
        by_property["properties"]["id"] = json!("tab\tid");
        assert_eq!(import_refusal(vec![by_property]).0, "features[0].id");
        long_name["id"] = json!("ok");
        assert_eq!(import_refusal(vec![long_name]).0, "features[0].properties.name");
    }

    #[test]
    fn imports_name_the_feature() {
        let mut ok = circle(json!([0, 0]));
        ok["id"] = json!("ok");
        let line = json!({"type":"Feature","id":"bad","properties":{},"geometry":{"type":"LineString","coordinates":[[0,0],[1,1]]}});
        assert_eq!(import_refusal(vec![ok.clone(), line]).0, "features[1].geometry.type");
        assert_eq!(import_refusal(vec![ok.clone(), json!(5)]).0, "features[1].type");
        let mut missing = ok.clone();
        missing.as_object_mut().unwrap().remove("geometry");
        assert_eq!(import_refusal(vec![missing]).0, "features[0].geometry");
        let e = fence_rows(json!({"type":"FeatureCollection"}), MAX).unwrap_err();
        assert_eq!(e.field(), Some("features"));
        assert_eq!(fence_rows(json!([ok]), MAX).unwrap_err().field(), Some("type"));
        assert_eq!(refusal(json!({"type":"Point","coordinates":[0,0]})).0, "type");
        assert_eq!(refusal(json!({"type":"Feature","geometry":{"type":"Point"}})).0, "geometry.coordinates");
        assert_eq!(refusal(json!({"type":"Feature","geometry":null})).0, "geometry");
        assert_eq!(refusal(json!({"type":"Feature","properties":[],"geometry":null})).0, "properties");
    }

    #[test]
    fn real_counties_import() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/nyc-area-counties.geojson");
        let body: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let rows = fence_rows(body, MAX).unwrap();
        assert_eq!(rows.len(), 15);
        assert!(rows.iter().all(|r| r.fence_id.starts_with("county-")));
    }

    proptest! {
        /// Whatever JSON a client sends as a fence, PUT or imported, the answer is a row or a
        /// 400 naming a field: never a panic, never another kind of error.
        #[test]
        fn any_json_is_a_fence_or_a_named_400(value in fleetstream_geofence::testing::hostile_fence()) {
            for result in [
                fence_row(value.clone(), Some("a"), 50, "").map(|_| ()),
                fence_rows(json!({"type": "FeatureCollection", "features": [value.clone()]}), 50).map(|_| ()),
                fence_rows(value, 50).map(|_| ()),
            ] {
                if let Err(e) = result {
                    prop_assert_eq!(e.status(), StatusCode::BAD_REQUEST);
                    prop_assert!(e.field().is_some_and(|f| !f.is_empty()));
                }
            }
        }
    }
}
