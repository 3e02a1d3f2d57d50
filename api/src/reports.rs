//! Analysts' reports derived from stored positions and events: trips and stops of a device for a
//! day, distance per device per day, and geofence visits (enter, exit, dwell) by device and fence.
//! The segmentation and pairing are plain functions over rows, tested on their own.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use fleetstream_schemas::EventKind;
use fleetstream_schemas::time::format_millis;
use fleetstream_storage::{EventQuery, GeofenceEventRow, PositionRow};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::extract::{ApiQuery, PathId};
use crate::params::{Limit, QueryId, TimeRange, id, limit};
use crate::state::ApiState;

const DAY_MS: i64 = 24 * 3600 * 1000;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/devices/{id}/trips", get(trips))
        .route("/v1/reports/distance", get(distance))
        .route("/v1/visits", get(visits))
}

/// One piece of a day: driving between stops, or standing still.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Segment {
    Trip {
        start_ms: i64,
        end_ms: i64,
        distance_m: f64,
        positions: usize,
        max_speed_mps: Option<f64>,
        start: [f64; 2],
        end: [f64; 2],
    },
    Stop {
        start_ms: i64,
        end_ms: i64,
        duration_ms: i64,
        at: [f64; 2],
    },
}

/// Splits a time-ordered track into trips and stops: a stop is a run of fixes that are not
/// moving and lasts at least `min_stop_ms`; what lies between stops is a trip (a trip needs two
/// fixes). Shorter pauses belong to the trip around them.
pub fn segment(points: &[PositionRow], min_stop_ms: i64) -> Vec<Segment> {
    // Runs of stationary fixes long enough to count, as index ranges.
    let mut stops: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < points.len() {
        if points[i].moving != 0 {
            i += 1;
            continue;
        }
        let start = i;
        while i + 1 < points.len() && points[i + 1].moving == 0 {
            i += 1;
        }
        if points[i].fix_time_ms - points[start].fix_time_ms >= min_stop_ms {
            stops.push((start, i));
        }
        i += 1;
    }
    let mut out = Vec::new();
    let mut cursor = 0; // first index not yet in a segment
    for &(first, last) in &stops {
        // A trip runs from the previous stop's last fix (the departure) to this stop's first.
        if first > cursor {
            push_trip(&mut out, &points[cursor.saturating_sub(1)..=first]);
        }
        let (a, b) = (&points[first], &points[last]);
        out.push(Segment::Stop {
            start_ms: a.fix_time_ms,
            end_ms: b.fix_time_ms,
            duration_ms: b.fix_time_ms - a.fix_time_ms,
            at: [a.lon, a.lat],
        });
        cursor = last + 1;
    }
    if cursor < points.len() {
        push_trip(&mut out, &points[cursor.saturating_sub(1)..]);
    }
    out
}

/// A trip over `points` (from the last fix of the previous stop, when there is one).
fn push_trip(out: &mut Vec<Segment>, points: &[PositionRow]) {
    let (Some(first), Some(last)) = (points.first(), points.last()) else { return };
    if points.len() < 2 {
        return;
    }
    out.push(Segment::Trip {
        start_ms: first.fix_time_ms,
        end_ms: last.fix_time_ms,
        distance_m: points[1..].iter().map(|p| p.distance_m.unwrap_or(0.0)).sum(),
        positions: points.len(),
        max_speed_mps: points.iter().filter_map(|p| p.speed_mps).reduce(f64::max),
        start: [first.lon, first.lat],
        end: [last.lon, last.lat],
    });
}

#[derive(Debug, Deserialize)]
struct TripParams {
    /// A UTC day, `YYYY-MM-DD` (default: today).
    date: Option<String>,
    /// Shortest stop, minutes (default 5).
    min_stop_minutes: Option<String>,
}

fn parse_day(raw: Option<&str>) -> Result<i64, ApiError> {
    let today = fleetstream_schemas::time::now_millis().div_euclid(DAY_MS) * DAY_MS;
    let Some(raw) = raw else { return Ok(today) };
    let well_formed = raw.len() == 10
        && raw.bytes().enumerate().all(|(i, b)| if i == 4 || i == 7 { b == b'-' } else { b.is_ascii_digit() });
    well_formed
        .then(|| fleetstream_schemas::time::parse_rfc3339_millis(&format!("{raw}T00:00:00Z")).ok())
        .flatten()
        .ok_or_else(|| ApiError::bad("date", format!("must be a day as YYYY-MM-DD, got {raw:?}")))
}

/// `GET /v1/devices/{id}/trips?date=&min_stop_minutes=`.
async fn trips(
    State(state): State<ApiState>,
    PathId(device_id): PathId,
    ApiQuery(params): ApiQuery<TripParams>,
) -> Result<Json<Value>, ApiError> {
    let day = parse_day(params.date.as_deref())?;
    let min_stop_minutes = match params.min_stop_minutes.as_deref() {
        None => 5,
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|m| (1..=1440).contains(m))
            .ok_or_else(|| ApiError::bad("min_stop_minutes", format!("must be 1 to 1440, got {raw:?}")))?,
    };
    let limit = state.config().max_track_points;
    let points = state.store().track(&device_id, day, day + DAY_MS, limit + 1).await?;
    if points.len() as u64 > limit {
        return Err(ApiError::bad("date", format!("the day has more than {limit} positions; use the track endpoint")));
    }
    let segments = segment(&points, min_stop_minutes * 60_000);
    let distance_m: f64 =
        segments.iter().map(|s| if let Segment::Trip { distance_m, .. } = s { *distance_m } else { 0.0 }).sum();
    let segments: Vec<Value> = segments.iter().map(with_times).collect();
    Ok(Json(json!({
        "device_id": device_id,
        "date": format_millis(day)[..10],
        "positions": points.len(),
        "distance_m": distance_m,
        "segments": segments,
    })))
}

/// A segment with its times also as RFC 3339.
fn with_times(segment: &Segment) -> Value {
    let mut value = serde_json::to_value(segment).expect("segments serialise");
    for key in ["start", "end"] {
        if let Some(ms) = value[format!("{key}_ms")].as_i64() {
            value[format!("{key}_time")] = json!(format_millis(ms));
        }
    }
    value
}

/// `GET /v1/reports/distance?from=&to=&device=&limit=`: metres per device per UTC day.
async fn distance(
    State(state): State<ApiState>,
    TimeRange { from, to }: TimeRange,
    device: QueryId<id::Device>,
    limit: Limit<limit::Rows>,
) -> Result<Json<Value>, ApiError> {
    let rows = state.store().distance_per_day(device.filter(), from, to, limit.get()).await?;
    let days: Vec<Value> = rows
        .into_iter()
        .map(|(device_id, day, distance_m, positions)| {
            json!({ "device_id": device_id, "date": day, "distance_m": distance_m, "positions": positions })
        })
        .collect();
    Ok(Json(json!({ "count": days.len(), "days": days })))
}

/// One stay of a device inside a fence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Visit {
    pub device_id: String,
    pub fence_id: String,
    pub enter_ms: i64,
    /// None while the device is still inside (as far as the range shows).
    pub exit_ms: Option<i64>,
    pub dwell_ms: Option<i64>,
}

/// Pairs events (ordered by device, fence, time) into visits. An exit whose enter lies before
/// the range still makes a visit: exits carry their dwell, so the enter time is known.
pub fn pair_visits(events: &[GeofenceEventRow]) -> Vec<Visit> {
    let mut visits: Vec<Visit> = Vec::new();
    let mut open: Option<usize> = None; // index in `visits` of the open visit of the current pair
    let mut current: Option<(&str, &str)> = None;
    for e in events {
        let key = (e.device_id.as_str(), e.fence_id.as_str());
        if current != Some(key) {
            current = Some(key);
            open = None;
        }
        if e.event_type == EventKind::Enter {
            visits.push(Visit {
                device_id: e.device_id.clone(),
                fence_id: e.fence_id.clone(),
                enter_ms: e.event_time_ms,
                exit_ms: None,
                dwell_ms: None,
            });
            open = Some(visits.len() - 1);
        } else {
            let dwell = e.dwell_ms;
            match open.take() {
                Some(i) => {
                    visits[i].exit_ms = Some(e.event_time_ms);
                    visits[i].dwell_ms = Some(dwell.unwrap_or(e.event_time_ms - visits[i].enter_ms));
                }
                None => visits.push(Visit {
                    device_id: e.device_id.clone(),
                    fence_id: e.fence_id.clone(),
                    enter_ms: dwell.map_or(e.event_time_ms, |d| e.event_time_ms - d),
                    exit_ms: Some(e.event_time_ms),
                    dwell_ms: dwell,
                }),
            }
        }
    }
    visits.sort_by(|a, b| (a.enter_ms, &a.device_id, &a.fence_id).cmp(&(b.enter_ms, &b.device_id, &b.fence_id)));
    visits
}

/// `GET /v1/visits?device=&fence=&from=&to=&limit=`.
async fn visits(
    State(state): State<ApiState>,
    TimeRange { from, to }: TimeRange,
    device: QueryId<id::Device>,
    fence: QueryId<id::Fence>,
    limit: Limit<limit::Rows>,
) -> Result<Json<Value>, ApiError> {
    let limit = limit.get();
    let query = EventQuery {
        from_ms: from,
        to_ms: to,
        device_id: device.filter(),
        fence_id: fence.filter(),
        limit,
        newest_first: false,
    };
    let mut events = state.store().geofence_events_where(&query).await?;
    events.sort_by(|a, b| {
        (&a.device_id, &a.fence_id, a.event_time_ms, a.event_type).cmp(&(
            &b.device_id,
            &b.fence_id,
            b.event_time_ms,
            b.event_type,
        ))
    });
    let visits: Vec<Value> = pair_visits(&events)
        .into_iter()
        .map(|v| {
            json!({
                "device_id": v.device_id, "fence_id": v.fence_id,
                "enter_time": format_millis(v.enter_ms), "exit_time": v.exit_ms.map(format_millis),
                "dwell_ms": v.dwell_ms,
            })
        })
        .collect();
    Ok(Json(json!({ "count": visits.len(), "truncated": events.len() as u64 == limit, "visits": visits })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fix(t_s: i64, moving: bool) -> PositionRow {
        PositionRow {
            speed_mps: Some(if moving { 5.0 } else { 0.0 }),
            distance_m: Some(if moving { 50.0 } else { 0.0 }),
            moving: moving as u8,
            ..PositionRow::at("d", t_s * 1000, 40.0, -74.0 + t_s as f64 * 1e-5)
        }
    }

    #[test]
    fn a_drive_a_long_stop_and_a_drive() {
        // Moving 0-100 s, standing 110-800 s (690 s), moving 810-900 s; a 20 s pause at 40-60 s.
        let mut points: Vec<PositionRow> = (0..=10).map(|i| fix(i * 10, !(4..=6).contains(&i))).collect();
        points.extend((11..=80).map(|i| fix(i * 10, false)));
        points.extend((81..=90).map(|i| fix(i * 10, true)));
        let segments = segment(&points, 300_000);
        assert_eq!(segments.len(), 3, "{segments:#?}");
        assert!(matches!(segments[0], Segment::Trip { start_ms: 0, end_ms: 110_000, .. }));
        assert!(matches!(segments[1], Segment::Stop { start_ms: 110_000, end_ms: 800_000, duration_ms: 690_000, .. }));
        assert!(matches!(segments[2], Segment::Trip { start_ms: 800_000, end_ms: 900_000, positions: 11, .. }));
    }

    proptest! {
        /// Segments are in time order, never overlap (a trip may start where a stop ends), stops
        /// last at least the minimum, and trip distances add up to the moving distance.
        #[test]
        fn segments_partition_the_day(moving in proptest::collection::vec(any::<bool>(), 0..200), min_stop in 1i64..120) {
            let points: Vec<PositionRow> = moving.iter().enumerate().map(|(i, m)| fix(i as i64 * 10, *m)).collect();
            let segments = segment(&points, min_stop * 1000);
            let mut last_end = i64::MIN;
            let mut trip_distance = 0.0;
            for s in &segments {
                let (start, end) = match s {
                    Segment::Trip { start_ms, end_ms, distance_m, .. } => { trip_distance += distance_m; (*start_ms, *end_ms) }
                    Segment::Stop { start_ms, end_ms, duration_ms, .. } => {
                        prop_assert!(*duration_ms >= min_stop * 1000);
                        (*start_ms, *end_ms)
                    }
                };
                prop_assert!(start >= last_end && end >= start);
                last_end = end;
            }
            let total: f64 = points.iter().skip(1).map(|p| p.distance_m.unwrap()).sum();
            // Distance inside stops is zero (stationary fixes), so trips carry all of it.
            prop_assert!((trip_distance - total).abs() < 1e-6, "{} vs {}", trip_distance, total);
        }
    }

    fn event(device: &str, fence: &str, kind: EventKind, t: i64, dwell: Option<i64>) -> GeofenceEventRow {
        GeofenceEventRow {
            event_id: String::new(),
            device_id: device.into(),
            fence_id: fence.into(),
            event_type: kind,
            event_time_ms: t,
            dwell_ms: dwell,
            fix_time_ms: t,
            lat: 0.0,
            lon: 0.0,
            kafka_partition: 0,
            kafka_offset: 0,
            version: 0,
            retracted: 0,
        }
    }

    #[test]
    fn visits_pair_enters_and_exits_even_across_the_range_start() {
        let events = vec![
            event("a", "f", EventKind::Exit, 100, Some(60)), // entered at 40, before the range
            event("a", "f", EventKind::Enter, 200, None),
            event("a", "f", EventKind::Exit, 260, Some(60)),
            event("a", "f", EventKind::Enter, 300, None), // still inside
            event("b", "f", EventKind::Enter, 10, None),
        ];
        let visits = pair_visits(&events);
        let summary: Vec<(&str, i64, Option<i64>, Option<i64>)> =
            visits.iter().map(|v| (v.device_id.as_str(), v.enter_ms, v.exit_ms, v.dwell_ms)).collect();
        assert_eq!(
            summary,
            vec![
                ("b", 10, None, None),
                ("a", 40, Some(100), Some(60)),
                ("a", 200, Some(260), Some(60)),
                ("a", 300, None, None)
            ]
        );
    }

    #[test]
    fn bad_parameters_are_named() {
        assert_eq!(parse_day(Some("2020-13-01")).unwrap_err().field(), Some("date"));
        assert_eq!(parse_day(Some("2020-12-08")).unwrap(), 1_607_385_600_000);
    }
}
