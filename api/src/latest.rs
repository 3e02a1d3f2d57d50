//! The latest position of every device, filtered, for maps and dashboards.
//!
//! All readers share one snapshot of every device's newest fix (with its registry entry),
//! refreshed at most once per `--live-cache-ms`; filters and pages are applied in memory, so a
//! dashboard's poll costs microseconds however many are open.
//! Filters: `fleet`, `bbox=minLon,minLat,maxLon,maxLat`, `fence` (inside that fence now),
//! `state=moving|stopped`, `stale_minutes=N` (no fix for N minutes); `after` + `limit` page.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use fleetstream_geofence::{Fence, fences_from_geojson};
use fleetstream_schemas::time::now_millis;
use fleetstream_storage::LatestRow;
use serde::Deserialize;

use crate::checks::{MAX_TEXT_BYTES, check_text};
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::params::{Limit, QueryId, id, limit};
use crate::state::ApiState;
use crate::views::LatestView;

/// Newest fix of every device, by device id, with its registry fleet and its answer already
/// serialised: a request filters and concatenates, it does not build JSON.
pub struct Snapshot {
    entries: Vec<Entry>,
}

struct Entry {
    row: LatestRow,
    fleet: Option<String>,
    json: String,
}

#[derive(serde::Serialize)]
struct DeviceView<'a> {
    #[serde(flatten)]
    latest: LatestView,
    name: Option<&'a str>,
    fleet: Option<&'a str>,
}

/// Most devices a snapshot holds; beyond this the query API needs a different design.
const MAX_SNAPSHOT_DEVICES: u64 = 1_000_000;

/// The filters and the page of `GET /v1/devices/latest` (`limit` and `fence` are extractors of
/// their own).
#[derive(Debug, Deserialize)]
pub struct LatestParams {
    after: Option<String>,
    fleet: Option<String>,
    bbox: Option<String>,
    state: Option<String>,
    stale_minutes: Option<String>,
}

/// The filters of one request, parsed and checked.
#[derive(Debug, Default)]
pub struct Filters {
    pub fleet: Option<String>,
    pub bbox: Option<[f64; 4]>,
    pub moving: Option<bool>,
    pub stale_before_ms: Option<i64>,
}

pub fn parse_bbox(raw: &str) -> Result<[f64; 4], ApiError> {
    let parts: Vec<f64> =
        raw.split(',').map(|p| p.trim().parse::<f64>()).collect::<Result<_, _>>().map_err(|_| {
            ApiError::bad("bbox", format!("must be minLon,minLat,maxLon,maxLat in degrees, got {raw:?}"))
        })?;
    let [min_lon, min_lat, max_lon, max_lat] = parts[..] else {
        return Err(ApiError::bad("bbox", format!("must have 4 numbers, got {}", parts.len())));
    };
    let lon_ok = |x: f64| (-180.0..=180.0).contains(&x);
    let lat_ok = |y: f64| (-90.0..=90.0).contains(&y);
    if !(lon_ok(min_lon) && lon_ok(max_lon) && lat_ok(min_lat) && lat_ok(max_lat))
        || min_lon > max_lon
        || min_lat > max_lat
    {
        return Err(ApiError::bad("bbox", "corners must be valid coordinates with min <= max"));
    }
    Ok([min_lon, min_lat, max_lon, max_lat])
}

fn parse_filters(params: &LatestParams, now_ms: i64) -> Result<Filters, ApiError> {
    let fleet = params.fleet.clone();
    if let Some(fleet) = &fleet {
        check_text("fleet", fleet, MAX_TEXT_BYTES)?;
    }
    let moving = match params.state.as_deref() {
        None => None,
        Some("moving") => Some(true),
        Some("stopped") => Some(false),
        Some(other) => return Err(ApiError::bad("state", format!("must be moving or stopped, got {other:?}"))),
    };
    let stale_before_ms = match params.stale_minutes.as_deref() {
        None => None,
        Some(raw) => match raw.parse::<u32>() {
            Ok(m) if m > 0 => Some(now_ms - i64::from(m) * 60_000),
            _ => return Err(ApiError::bad("stale_minutes", format!("must be a positive integer, got {raw:?}"))),
        },
    };
    let bbox = params.bbox.as_deref().map(parse_bbox).transpose()?;
    Ok(Filters { fleet, bbox, moving, stale_before_ms })
}

impl Filters {
    pub fn keeps(&self, row: &LatestRow, fleet: Option<&str>, moving_mps: f64) -> bool {
        if let Some(want) = &self.fleet
            && fleet != Some(want.as_str())
        {
            return false;
        }
        if let Some([min_lon, min_lat, max_lon, max_lat]) = self.bbox
            && !(row.lon >= min_lon && row.lon <= max_lon && row.lat >= min_lat && row.lat <= max_lat)
        {
            return false;
        }
        if let Some(moving) = self.moving
            && (row.speed_mps.unwrap_or(0.0) >= moving_mps) != moving
        {
            return false;
        }
        self.stale_before_ms.is_none_or(|before| row.fix_time_ms < before)
    }
}

async fn snapshot(state: &ApiState) -> Result<Snapshot, ApiError> {
    let rows = state.store().latest_positions(MAX_SNAPSHOT_DEVICES).await?;
    let registry: HashMap<String, (String, String)> =
        state.store().all_registered_devices().await?.into_iter().map(|r| (r.device_id, (r.name, r.fleet))).collect();
    let entries = rows
        .into_iter()
        .map(|row| {
            let registered = registry.get(&row.device_id);
            let view = DeviceView {
                latest: LatestView::from(row.clone()),
                name: registered.map(|(n, _)| n.as_str()),
                fleet: registered.map(|(_, f)| f.as_str()),
            };
            let json = serde_json::to_string(&view).expect("a view always serialises");
            Entry { fleet: registered.map(|(_, f)| f.clone()), row, json }
        })
        .collect();
    Ok(Snapshot { entries })
}

/// `GET /v1/devices/latest`.
pub async fn latest(
    State(state): State<ApiState>,
    limit: Limit<limit::Devices>,
    ApiQuery(params): ApiQuery<LatestParams>,
    fence: QueryId<id::Fence>,
) -> Result<Response, ApiError> {
    let config = state.config();
    let limit = limit.get() as usize;
    let filters = parse_filters(&params, now_millis())?;
    let fence: Option<Fence> = match fence.get() {
        None => None,
        Some(id) => {
            let row = state.store().fence(id).await?.ok_or_else(|| ApiError::NotFound(format!("no fence {id:?}")))?;
            let mut parsed = fences_from_geojson(&row.feature).map_err(|e| ApiError::bad("fence", e.to_string()))?;
            parsed.pop()
        }
    };
    let ttl = Duration::from_millis(config.live_cache_ms);
    let snap = state.latest_cache().get_or_compute(ttl, || snapshot(&state)).await?;
    let after = params.after.as_deref().unwrap_or("");
    let start = snap.entries.partition_point(|e| e.row.device_id.as_str() <= after);
    let mut picked: Vec<&Entry> = Vec::new();
    let mut next_after = None;
    for entry in &snap.entries[start..] {
        if !filters.keeps(&entry.row, entry.fleet.as_deref(), config.live_moving_speed_mps)
            || fence.as_ref().is_some_and(|f| !f.contains(entry.row.lat, entry.row.lon))
        {
            continue;
        }
        if picked.len() == limit {
            next_after = picked.last().map(|e| e.row.device_id.clone());
            break;
        }
        picked.push(entry);
    }
    let mut body = String::with_capacity(64 + picked.iter().map(|e| e.json.len() + 1).sum::<usize>());
    body.push_str(&format!("{{\"count\":{},\"devices\":[", picked.len()));
    for (i, entry) in picked.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&entry.json);
    }
    body.push_str("],\"next_after\":");
    body.push_str(&serde_json::to_string(&next_after).expect("a string serialises"));
    body.push('}');
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(lat: f64, lon: f64, speed: Option<f64>, fix: i64) -> LatestRow {
        LatestRow {
            device_id: "d".into(),
            fix_time_ms: fix,
            received_at_ms: fix,
            lat,
            lon,
            speed_mps: speed,
            heading_deg: None,
        }
    }

    #[test]
    fn bbox_parsing_names_the_parameter() {
        assert_eq!(parse_bbox("-74.1,40.6,-73.9,40.8").unwrap(), [-74.1, 40.6, -73.9, 40.8]);
        for bad in ["", "1,2,3", "a,b,c,d", "0,0,200,1", "1,1,0,0", "0,-91,1,1"] {
            assert_eq!(parse_bbox(bad).unwrap_err().field(), Some("bbox"), "{bad}");
        }
    }

    #[test]
    fn filters_combine() {
        let f = Filters {
            fleet: Some("north".into()),
            bbox: Some([-75.0, 40.0, -73.0, 41.0]),
            moving: Some(true),
            stale_before_ms: None,
        };
        assert!(f.keeps(&row(40.5, -74.0, Some(3.0), 0), Some("north"), 0.5));
        assert!(!f.keeps(&row(40.5, -74.0, Some(3.0), 0), Some("south"), 0.5), "fleet");
        assert!(!f.keeps(&row(40.5, -74.0, Some(3.0), 0), None, 0.5), "unregistered");
        assert!(!f.keeps(&row(42.0, -74.0, Some(3.0), 0), Some("north"), 0.5), "outside the box");
        assert!(!f.keeps(&row(40.5, -74.0, None, 0), Some("north"), 0.5), "no speed is stopped");
        let stale = Filters { stale_before_ms: Some(1_000), ..Filters::default() };
        assert!(stale.keeps(&row(0.0, 0.0, None, 999), None, 0.5));
        assert!(!stale.keeps(&row(0.0, 0.0, None, 1_000), None, 0.5));
    }

    #[test]
    fn request_parameters_are_checked() {
        let params = |state: Option<&str>, stale: Option<&str>| LatestParams {
            after: None,
            fleet: None,
            bbox: None,
            state: state.map(String::from),
            stale_minutes: stale.map(String::from),
        };
        assert_eq!(parse_filters(&params(Some("parked"), None), 0).unwrap_err().field(), Some("state"));
        assert_eq!(parse_filters(&params(None, Some("0")), 0).unwrap_err().field(), Some("stale_minutes"));
        assert_eq!(parse_filters(&params(None, Some("5")), 600_000).unwrap().stale_before_ms, Some(300_000));
        assert_eq!(parse_filters(&params(Some("stopped"), None), 0).unwrap().moving, Some(false));
    }
}
