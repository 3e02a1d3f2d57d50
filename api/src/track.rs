//! A device's track: positions between two times as JSON, GeoJSON (a LineString or points),
//! CSV or NDJSON, optionally downsampled to at most N points. CSV and NDJSON without a `limit`
//! stream the whole range, page by page from ClickHouse, in bounded memory.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use fleetstream_schemas::time::format_millis;
use fleetstream_storage::PositionRow;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::extract::{ApiQuery, PathId};
use crate::params::{Limit, TimeRange, bounded, limit};
use crate::state::ApiState;
use crate::views::{TrackPointView, TrackResponse};

#[derive(Debug, Deserialize)]
pub struct TrackParams {
    /// `json` (default), `geojson`, `csv` or `ndjson`.
    format: Option<String>,
    /// With `format=geojson`: `linestring` (default) or `points`.
    geometry: Option<String>,
    /// Downsample to at most this many points, first and last kept.
    points: Option<String>,
}

enum Format {
    Json,
    GeoJsonLine,
    GeoJsonPoints,
    Csv,
    Ndjson,
}

fn parse_format(format: Option<&str>, geometry: Option<&str>) -> Result<Format, ApiError> {
    let geojson = match geometry {
        None | Some("linestring") => Format::GeoJsonLine,
        Some("points") => Format::GeoJsonPoints,
        Some(other) => return Err(ApiError::bad("geometry", format!("must be linestring or points, got {other:?}"))),
    };
    match format {
        None | Some("json") => Ok(Format::Json),
        Some("geojson") => Ok(geojson),
        Some("csv") => Ok(Format::Csv),
        Some("ndjson") => Ok(Format::Ndjson),
        Some(other) => Err(ApiError::bad("format", format!("must be json, geojson, csv or ndjson, got {other:?}"))),
    }
}

/// At most `n` rows, evenly spread over the track, always keeping the first and the last.
pub fn downsample<T>(rows: Vec<T>, n: usize) -> Vec<T> {
    let len = rows.len();
    if n >= len || n == 0 {
        return rows;
    }
    if n == 1 {
        return rows.into_iter().take(1).collect();
    }
    let keep: Vec<usize> = (0..n).map(|i| i * (len - 1) / (n - 1)).collect();
    let mut next = keep.iter().peekable();
    rows.into_iter()
        .enumerate()
        .filter(|(i, _)| {
            if next.peek() == Some(&i) {
                next.next();
                true
            } else {
                false
            }
        })
        .map(|(_, r)| r)
        .collect()
}

/// A text cell of CSV: neutralised against formula injection, then quoted when it needs it
/// (RFC 4180). Spreadsheets may run a cell that starts with `=`, `+`, `-`, `@`, a tab or a
/// carriage return as a formula, and device and fence ids are whatever a device or a user sent:
/// such a cell gets a leading `'`, as OWASP recommends, and shows as the text it is. Numeric
/// cells are written from our numbers and never pass through here, so a negative longitude
/// stays a number.
fn csv_text(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{text}") } else { text.to_string() };
    if text.contains([',', '"', '\n', '\r']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text }
}

fn opt(v: Option<f64>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

pub const CSV_HEADER: &str = "device_id,fix_time,lat,lon,speed_mps,heading_deg,altitude_m,accuracy_m,distance_from_prev_m,distance_total_m,moving,fence_ids\n";

pub fn to_csv(rows: &[PositionRow]) -> String {
    CSV_HEADER.to_string() + &csv_rows(rows)
}

fn csv_rows(rows: &[PositionRow]) -> String {
    let mut out = String::new();
    for r in rows {
        let line = [
            csv_text(&r.device_id),
            format_millis(r.fix_time_ms),
            r.lat.to_string(),
            r.lon.to_string(),
            opt(r.speed_mps),
            opt(r.heading_deg),
            opt(r.altitude_m),
            opt(r.accuracy_m),
            opt(r.distance_m),
            r.distance_total_m.to_string(),
            r.moving.to_string(),
            csv_text(&r.fence_ids.join(";")),
        ];
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

fn ndjson_rows(rows: &[PositionRow]) -> String {
    let mut out = String::new();
    for r in rows {
        out.push_str(&serde_json::to_string(&TrackPointView::from(r.clone())).expect("track points serialise"));
        out.push('\n');
    }
    out
}

/// The whole range as one response body, rendered page by page as ClickHouse returns them.
/// Pages follow on from the last fix time (a device has one position per fix time).
fn stream_range(
    store: fleetstream_storage::Store,
    page: u64,
    device_id: String,
    (from, to): (i64, i64),
    head: &'static str,
    render: fn(&[PositionRow]) -> String,
) -> axum::body::Body {
    let pages = futures::stream::unfold(Some(from), move |cursor| {
        let (store, device_id) = (store.clone(), device_id.clone());
        async move {
            let from = cursor?;
            match store.track(&device_id, from, to, page).await {
                Ok(rows) => {
                    let next = (rows.len() as u64 == page).then(|| rows.last().map(|r| r.fix_time_ms + 1)).flatten();
                    Some((Ok(render(&rows)), next))
                }
                // The status line is sent: all we can do is cut the body short, which clients see.
                Err(e) => {
                    tracing::error!(error = %e, device_id, "track stream failed");
                    Some((Err(std::io::Error::other(e.to_string())), None))
                }
            }
        }
    });
    let head = futures::stream::once(async move { Ok::<_, std::io::Error>(head.to_string()) });
    axum::body::Body::from_stream(futures::StreamExt::chain(head, pages))
}

pub fn to_geojson_line(device_id: &str, rows: &[PositionRow]) -> Value {
    let coordinates: Vec<[f64; 2]> = rows.iter().map(|r| [r.lon, r.lat]).collect();
    let times: Vec<String> = rows.iter().map(|r| format_millis(r.fix_time_ms)).collect();
    json!({
        "type": "Feature",
        "geometry": { "type": "LineString", "coordinates": coordinates },
        "properties": { "device_id": device_id, "count": rows.len(), "times": times },
    })
}

pub fn to_geojson_points(rows: Vec<PositionRow>) -> Value {
    let features: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            let geometry = json!({ "type": "Point", "coordinates": [r.lon, r.lat] });
            json!({ "type": "Feature", "geometry": geometry, "properties": TrackPointView::from(r) })
        })
        .collect();
    json!({ "type": "FeatureCollection", "features": features })
}

/// Positions of one device with `from <= fix_time < to`, oldest first. Defaults: the last 24 h.
pub async fn track(
    State(state): State<ApiState>,
    PathId(device_id): PathId,
    TimeRange { from, to }: TimeRange,
    ApiQuery(params): ApiQuery<TrackParams>,
    limit: Limit<limit::TrackPoints>,
) -> Result<Response, ApiError> {
    let format = parse_format(params.format.as_deref(), params.geometry.as_deref())?;
    let max = state.config().max_track_points;
    let points = match params.points.as_deref() {
        None => None,
        Some(raw) => Some(bounded("points", Some(raw), max, max)? as usize),
    };
    if points.is_none() && !limit.given() {
        let stream = |content_type, head, render| {
            let page = state.config().stream_page_rows;
            let body = stream_range(state.store().clone(), page, device_id.clone(), (from, to), head, render);
            ([(header::CONTENT_TYPE, content_type)], body).into_response()
        };
        match format {
            Format::Csv => return Ok(stream("text/csv; charset=utf-8", CSV_HEADER, csv_rows)),
            Format::Ndjson => return Ok(stream("application/x-ndjson", "", ndjson_rows)),
            _ => {}
        }
    }
    let limit = limit.get();
    // One extra row tells whether the range goes on past this page.
    let mut rows = state.store().track(&device_id, from, to, limit + 1).await?;
    let next_from = if rows.len() as u64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|r| format_millis(r.fix_time_ms + 1))
    } else {
        None
    };
    if let Some(n) = points {
        rows = downsample(rows, n);
    }
    Ok(match format {
        Format::Json => {
            let positions: Vec<TrackPointView> = rows.into_iter().map(Into::into).collect();
            Json(TrackResponse {
                device_id,
                from: format_millis(from),
                to: format_millis(to),
                count: positions.len(),
                next_from,
                positions,
            })
            .into_response()
        }
        Format::GeoJsonLine => {
            ([(header::CONTENT_TYPE, "application/geo+json")], Json(to_geojson_line(&device_id, &rows))).into_response()
        }
        Format::GeoJsonPoints => {
            ([(header::CONTENT_TYPE, "application/geo+json")], Json(to_geojson_points(rows))).into_response()
        }
        Format::Csv => ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], to_csv(&rows)).into_response(),
        Format::Ndjson => ([(header::CONTENT_TYPE, "application/x-ndjson")], ndjson_rows(&rows)).into_response(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn downsampling_keeps_ends_and_spreads_evenly() {
        let rows: Vec<i32> = (0..10).collect();
        assert_eq!(downsample(rows.clone(), 3), vec![0, 4, 9]);
        assert_eq!(downsample(rows.clone(), 2), vec![0, 9]);
        assert_eq!(downsample(rows.clone(), 1), vec![0]);
        assert_eq!(downsample(rows.clone(), 10), rows);
        assert_eq!(downsample(rows.clone(), 50), rows);
        assert!(downsample(Vec::<i32>::new(), 3).is_empty());
    }

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(csv_text("plain"), "plain");
        assert_eq!(csv_text("a,b"), "\"a,b\"");
        assert_eq!(csv_text("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    #[test]
    fn csv_text_cells_cannot_be_formulas() {
        for (cell, written) in [
            ("=HYPERLINK(\"http://x\")", "\"'=HYPERLINK(\"\"http://x\"\")\""),
            ("=1+2", "'=1+2"),
            ("+1", "'+1"),
            ("-2", "'-2"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\t=1", "'\t=1"),
            ("\r=1", "\"'\r=1\""),
            ("=a,b", "\"'=a,b\""),
            ("truck=1", "truck=1"),
            ("", ""),
        ] {
            assert_eq!(csv_text(cell), written, "{cell:?}");
        }
    }

    #[test]
    fn csv_numbers_stay_numbers_and_text_is_neutralised() {
        let row = PositionRow {
            speed_mps: Some(-0.5),
            fence_ids: vec!["=evil".into(), "pier".into()],
            ..PositionRow::at("=HYPERLINK(\"http://x\",\"y\")", 1_607_385_600_000, -33.5, -74.25)
        };
        let csv = to_csv(&[row]);
        let line = csv.lines().nth(1).unwrap();
        assert!(line.starts_with("\"'=HYPERLINK("), "{line}");
        assert!(line.contains(",2020-12-08T00:00:00.000Z,-33.5,-74.25,-0.5,"), "{line}");
        assert!(line.ends_with(",'=evil;pier"), "{line}");
    }

    #[test]
    fn formats_name_their_parameter() {
        assert_eq!(parse_format(Some("xml"), None).err().unwrap().field(), Some("format"));
        assert_eq!(parse_format(Some("geojson"), Some("polygon")).err().unwrap().field(), Some("geometry"));
        assert!(matches!(parse_format(None, None), Ok(Format::Json)));
        assert!(matches!(parse_format(Some("geojson"), Some("points")), Ok(Format::GeoJsonPoints)));
    }

    proptest! {
        #[test]
        fn downsample_is_an_ordered_subset_of_the_right_size(len in 0usize..500, n in 1usize..600) {
            let rows: Vec<usize> = (0..len).collect();
            let out = downsample(rows, n);
            prop_assert_eq!(out.len(), len.min(n));
            prop_assert!(out.windows(2).all(|w| w[0] < w[1]));
            if len > 0 {
                prop_assert_eq!(out[0], 0);
                if n > 1 { prop_assert_eq!(*out.last().unwrap(), len - 1); }
            }
        }
    }
}
