//! Fence management: GeoJSON in and out, validated with the same code the processors use, and
//! stored as versioned rows that processors poll.

use fleetstream_geofence::fences_from_geojson;
use fleetstream_storage::FenceRow;
use serde_json::{Value, json};

use crate::error::ApiError;

/// Most fences one import may carry.
pub const MAX_FENCES_PER_IMPORT: usize = 10_000;

fn version_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

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
        .map_err(|e| ApiError::bad("body", e))?
        .pop()
        .ok_or_else(|| ApiError::bad("body", "no fence"))?;
    Ok(FenceRow {
        fence_id: fence.id,
        version: version_now(),
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
        version: version_now(),
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
