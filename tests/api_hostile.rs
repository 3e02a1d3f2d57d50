//! The query API against hostile input, over HTTP, on the real broker and real ClickHouse (issue
//! 10, item 5): every refusal is a 4xx in the one JSON error shape naming the field, nothing
//! panics, what is accepted can be found and deleted by the same id, CSV cells cannot be
//! formulas, and a streamed track holds its query slot until its body ends.

mod support;

use std::time::Duration;

use fleetstream_storage::PositionRow;
use serde_json::{Value, json};
use support::{Pipeline, eventually, get_json};

/// Every byte but letters, digits and `-_.~` percent-encoded, as a path segment or query value.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn circle(coordinates: Value) -> Value {
    json!({"type": "Feature", "properties": {"name": "Pier", "radius_m": 150},
           "geometry": {"type": "Point", "coordinates": coordinates}})
}

/// `feature` with the member at `path` (`/properties/name`) set to `value`, added if absent.
fn with(mut feature: Value, path: &str, value: Value) -> Value {
    let member = path.split('/').skip(1).fold(&mut feature, |v, key| &mut v[key]);
    *member = value;
    feature
}

/// A closed ring of `n` positions.
fn ring(n: usize) -> Value {
    let mut positions: Vec<[f64; 2]> = (0..n - 1).map(|i| [(i % 300) as f64 * 0.001 - 74.0, 40.7]).collect();
    positions.push(positions[0]);
    json!([positions])
}

/// One hostile request and what it must get: a status and the field its error names.
struct Case {
    method: &'static str,
    path: String,
    /// The body and its content type.
    body: Option<(&'static str, String)>,
    status: u16,
    field: Option<&'static str>,
}

fn get(path: impl Into<String>, status: u16, field: Option<&'static str>) -> Case {
    Case { method: "GET", path: path.into(), body: None, status, field }
}

fn send(method: &'static str, path: impl Into<String>, body: &Value, status: u16, field: &'static str) -> Case {
    Case { method, path: path.into(), body: Some(("application/json", body.to_string())), status, field: Some(field) }
}

fn cases() -> Vec<Case> {
    let pier = circle(json!([-74.0, 40.7]));
    // An import of a valid fence and `feature` (given an id unless it has one).
    let collection = |mut feature: Value| {
        if feature.get("id").is_none() && feature["properties"].get("id").is_none() {
            feature["id"] = json!("second");
        }
        json!({"type": "FeatureCollection", "features": [with(circle(json!([0, 0])), "/id", json!("first")), feature]})
    };
    let polygon = |rings: Value| json!({"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": rings}});
    // Nothing is stored unless all of an import is valid.
    vec![
        // Query strings and paths that axum's own extractors answer in plain text.
        get("/v1/devices/x/track?limit=1&limit=2", 400, Some("limit")),
        get("/v1/geofence-events?fence=a&fence=b", 400, Some("fence")),
        get("/v1/devices/latest?state=moving&state=stopped", 400, Some("state")),
        get("/v1/devices/%FF/track", 400, Some("id")),
        get("/v1/fences/%FF/inside", 400, Some("id")),
        get("/v1/registry/%C3%28", 400, Some("id")),
        // Every id parameter goes through the one id check.
        get("/v1/devices/latest?fence=%00", 400, Some("fence")),
        get("/v1/devices/latest?fence=a%0Ab", 400, Some("fence")),
        get("/v1/visits?device=%1B%5B31m", 400, Some("device")),
        get("/v1/fences/a%00b", 400, Some("id")),
        get(format!("/v1/devices/{}/trips", "d".repeat(129)), 400, Some("id")),
        get("/v1/devices/%20/track", 400, Some("id")),
        Case { method: "DELETE", path: "/v1/fences/a%7F".into(), body: None, status: 400, field: Some("id") },
        // No route, no such method: JSON too.
        get("/v1/nothing", 404, None),
        get("/v1/fences/nobody", 404, None),
        Case { method: "PATCH", path: "/v1/fences/x".into(), body: None, status: 405, field: None },
        Case { method: "POST", path: "/v1/devices/latest".into(), body: None, status: 405, field: None },
        // Fences: coordinates, rings, radius, size, names and ids.
        send(
            "PUT",
            "/v1/fences/f",
            &with(pier.clone(), "/geometry/coordinates", json!([1e300, 40.7])),
            400,
            "geometry.coordinates",
        ),
        send(
            "PUT",
            "/v1/fences/f",
            &with(pier.clone(), "/geometry/coordinates", json!([-74.0, 1000])),
            400,
            "geometry.coordinates",
        ),
        send(
            "PUT",
            "/v1/fences/f",
            &with(pier.clone(), "/geometry/coordinates", json!([1])),
            400,
            "geometry.coordinates",
        ),
        send(
            "PUT",
            "/v1/fences/f",
            &with(pier.clone(), "/geometry/coordinates", json!([])),
            400,
            "geometry.coordinates",
        ),
        send("PUT", "/v1/fences/f", &polygon(json!([[]])), 400, "geometry.coordinates"),
        send("PUT", "/v1/fences/f", &polygon(json!([[[1], [2], [3], [1]]])), 400, "geometry.coordinates"),
        send("PUT", "/v1/fences/f", &polygon(json!([[[0, 0], [1, 0], [1, 1], [0, 1]]])), 400, "geometry.coordinates"),
        send("PUT", "/v1/fences/f", &polygon(ring(200_000)), 400, "geometry.coordinates"),
        send(
            "PUT",
            "/v1/fences/f",
            &with(pier.clone(), "/properties/radius_m", json!(1e300)),
            400,
            "properties.radius_m",
        ),
        send(
            "PUT",
            "/v1/fences/f",
            &with(pier.clone(), "/properties/name", json!("n".repeat(100_000))),
            400,
            "properties.name",
        ),
        send(
            "PUT",
            "/v1/fences/f",
            &with(pier.clone(), "/properties/name", json!("bell\u{7}")),
            400,
            "properties.name",
        ),
        send(
            "POST",
            "/v1/fences",
            &collection(with(pier.clone(), "/geometry/coordinates", json!([1]))),
            400,
            "features[1].geometry.coordinates",
        ),
        send("POST", "/v1/fences", &collection(polygon(ring(200_000))), 400, "features[1].geometry.coordinates"),
        send(
            "POST",
            "/v1/fences",
            &collection(with(pier.clone(), "/properties/id", json!("ctl\u{1}id"))),
            400,
            "features[1].id",
        ),
        send(
            "POST",
            "/v1/fences",
            &collection(json!({"type": "Feature", "id": "x".repeat(200), "properties": {"radius_m": 5},
            "geometry": {"type": "Point", "coordinates": [0, 0]}})),
            400,
            "features[1].id",
        ),
        send("POST", "/v1/fences", &json!({"type": "FeatureCollection"}), 400, "features"),
        // Bodies.
        send("PUT", "/v1/registry/d1", &json!({"name": 5}), 400, "name"),
        send("PUT", "/v1/registry/d1", &json!({"name": "x".repeat(300)}), 400, "name"),
        Case {
            method: "PUT",
            path: "/v1/fences/f".into(),
            body: Some(("application/json", "{".into())),
            status: 400,
            field: Some("body"),
        },
        Case {
            method: "PUT",
            path: "/v1/fences/f".into(),
            body: Some(("text/plain", pier.to_string())),
            status: 415,
            field: Some("content-type"),
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_requests_get_json_errors_naming_the_field() {
    let pipeline = Pipeline::start("hostile").await;
    let client = reqwest::Client::new();
    let api = &pipeline.api_url;
    for case in cases() {
        let url = format!("{api}{}", case.path);
        let mut request = client.request(case.method.parse().unwrap(), &url);
        if let Some((content_type, body)) = &case.body {
            request = request.header("content-type", *content_type).body(body.clone());
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("{} {}: {e}", case.method, case.path));
        let status = response.status().as_u16();
        let what = format!("{} {}", case.method, &case.path[..case.path.len().min(80)]);
        assert_eq!(
            response.headers().get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/json"),
            "{what}"
        );
        let text = response.text().await.unwrap();
        let body: fleetstream_schemas::ErrorBody =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: not the error shape ({e}): {text}"));
        assert_eq!((status, body.error.field.as_deref()), (case.status, case.field), "{what}: {text}");
    }
    // Nothing was stored, and the API still answers: no handler panicked.
    assert_eq!(get_json(&client, &format!("{api}/v1/fences")).await["features"], json!([]));
    assert_eq!(client.get(format!("{api}/healthz")).send().await.unwrap().status(), 200);
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn what_is_accepted_can_be_found_and_deleted_by_the_same_id() {
    let pipeline = Pipeline::start("hostileids").await;
    let client = reqwest::Client::new();
    let api = &pipeline.api_url;
    // Ids with spaces, punctuation and non-ASCII letters, by PUT and by import.
    let put_id = "pier 7/north ✓";
    let response = client
        .put(format!("{api}/v1/fences/{}", encode(put_id)))
        .json(&circle(json!([-74.0, 40.7])))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let imported_id = "dock=#3 \"east\"";
    let import = json!({"type": "FeatureCollection", "features": [with(circle(json!([-73.9, 40.6])), "/properties/id", json!(imported_id))]});
    let response = client.post(format!("{api}/v1/fences")).json(&import).send().await.unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    for id in [put_id, imported_id] {
        let url = format!("{api}/v1/fences/{}", encode(id));
        assert_eq!(get_json(&client, &url).await["properties"]["name"], "Pier", "{id}");
        get_json(&client, &format!("{url}/inside")).await;
        get_json(&client, &format!("{api}/v1/devices/latest?fence={}", encode(id))).await;
        get_json(&client, &format!("{api}/v1/visits?fence={}", encode(id))).await;
        assert_eq!(client.delete(&url).send().await.unwrap().status(), 204, "{id}");
        assert_eq!(client.get(&url).send().await.unwrap().status(), 404, "{id}");
    }
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn csv_tracks_neutralise_formulas_and_keep_numbers() {
    let pipeline = Pipeline::start("hostilecsv").await;
    let client = reqwest::Client::new();
    let api = &pipeline.api_url;
    let device = "=HYPERLINK(\"http://evil.example/\",\"click\")";
    let positions = json!([
        {"device_id": device, "fix_time": "2020-12-08T10:00:00Z", "lat": -33.5, "lon": -70.25},
        {"device_id": device, "fix_time": "2020-12-08T10:01:00Z", "lat": -33.6, "lon": -70.35},
    ]);
    let response = client.post(format!("{}/v1/positions", pipeline.ingest_url)).json(&positions).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let track = format!("{api}/v1/devices/{}/track?from=2020-12-08T00:00:00Z&to=2020-12-09T00:00:00Z", encode(device));
    let client_ref = &client;
    let track_ref = &track;
    eventually("two positions stored", Duration::from_secs(60), move || async move {
        let stored = get_json(client_ref, track_ref).await["count"].as_u64();
        if stored == Some(2) { Ok(()) } else { Err(format!("{stored:?}")) }
    })
    .await;
    // Streamed (no limit) and paged (with one): the same cells.
    for url in [format!("{track}&format=csv"), format!("{track}&format=csv&limit=10")] {
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let csv = response.text().await.unwrap();
        let rows: Vec<&str> = csv.lines().skip(1).collect();
        assert_eq!(rows.len(), 2, "{csv}");
        for row in rows {
            assert!(row.starts_with("\"'=HYPERLINK(\"\"http://evil.example/\"\",\"\"click\"\")\","), "{row}");
            assert!(row.contains(",-33.5,-70.25,") || row.contains(",-33.6,-70.35,"), "numbers stay numbers: {row}");
        }
    }
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_streamed_track_holds_its_query_slot_until_its_body_ends() {
    let api_config = fleetstream_api::ApiConfig { max_concurrent_queries: 1, ..fleetstream_api::ApiConfig::local() };
    let pipeline = Pipeline::start_with("hostileslot", fleetstream_ingest::IngestConfig::local(), api_config).await;
    let client = reqwest::Client::new();
    let api = &pipeline.api_url;
    // About 30 MB of CSV: far more than the socket buffers between the API and a reader that
    // has stopped reading, so the stream cannot end before the reader goes on.
    let device = "slow-".repeat(20);
    let fences: Vec<String> = (0..4).map(|i| format!("{i}-{}", "f".repeat(100))).collect();
    const ROWS: i64 = 50_000;
    let start_ms = 1_607_385_600_000; // 2020-12-08
    let rows: Vec<PositionRow> = (0..ROWS)
        .map(|i| PositionRow {
            fence_ids: fences.clone(),
            ..PositionRow::at(&device, start_ms + i * 1000, 40.7, -74.0)
        })
        .collect();
    pipeline.store.insert_positions(&rows).await.unwrap();
    let history = format!("{api}/v1/reports/distance?from=2020-12-08T00:00:00Z&to=2020-12-09T00:00:00Z");
    assert_eq!(client.get(&history).send().await.unwrap().status(), 200, "a slot is free before the stream");

    let track = format!("{api}/v1/devices/{device}/track?from=2020-12-08T00:00:00Z&to=2020-12-09T00:00:00Z&format=csv");
    let stream = client.get(&track).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    // The headers are out and the reader is not reading: the stream still holds the one slot.
    let busy = client.get(&history).send().await.unwrap();
    assert_eq!(busy.status(), 429, "a second history query while the stream is unread");
    assert_eq!(busy.headers()["retry-after"], "1");
    let body: fleetstream_schemas::ErrorBody = busy.json().await.unwrap();
    assert_eq!(body.error.field, None);

    let csv = stream.text().await.unwrap();
    assert_eq!(csv.lines().count() as i64, ROWS + 1, "the whole range, after the header");
    let (client_ref, history_ref) = (&client, &history);
    eventually("the slot given back once the stream ended", Duration::from_secs(10), move || async move {
        match client_ref.get(history_ref).send().await.unwrap().status().as_u16() {
            200 => Ok(()),
            other => Err(format!("status {other}")),
        }
    })
    .await;
    pipeline.stop().await;
}

/// The other side of holding a slot until the body ends: a reader that opens streamed tracks
/// and stops reading holds the slots for as long as it keeps the connections open, and there
/// is no bound on that. With `--max-concurrent-queries` (16) such connections, held by anyone
/// who may read (everyone, with no reader tokens configured), every history query of every
/// other reader gets 429, for good. A stalled stream must give its slot back at some point; 45 s
/// here.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reader_that_stops_reading_does_not_hold_a_query_slot_for_good() {
    let api_config = fleetstream_api::ApiConfig { max_concurrent_queries: 1, ..fleetstream_api::ApiConfig::local() };
    let pipeline = Pipeline::start_with("stalledslot", fleetstream_ingest::IngestConfig::local(), api_config).await;
    let client = reqwest::Client::new();
    let api = &pipeline.api_url;
    // About 30 MB of CSV, far more than the socket buffers hold (as in the test above).
    let device = "stalled-".repeat(12);
    let fences: Vec<String> = (0..4).map(|i| format!("{i}-{}", "f".repeat(100))).collect();
    let start_ms = 1_607_385_600_000; // 2020-12-08
    let rows: Vec<PositionRow> = (0..50_000)
        .map(|i| PositionRow {
            fence_ids: fences.clone(),
            ..PositionRow::at(&device, start_ms + i * 1000, 40.7, -74.0)
        })
        .collect();
    pipeline.store.insert_positions(&rows).await.unwrap();

    let track = format!("{api}/v1/devices/{device}/track?from=2020-12-08T00:00:00Z&to=2020-12-09T00:00:00Z&format=csv");
    let stalled = client.get(&track).send().await.unwrap();
    assert_eq!(stalled.status(), 200);
    // Never read, never closed.
    let history = format!("{api}/v1/reports/distance?from=2020-12-08T00:00:00Z&to=2020-12-09T00:00:00Z");
    let (client_ref, history_ref) = (&client, &history);
    eventually("another reader's history query answered", Duration::from_secs(45), move || async move {
        match client_ref.get(history_ref).send().await.unwrap().status().as_u16() {
            200 => Ok(()),
            other => Err(format!("status {other}")),
        }
    })
    .await;
    drop(stalled);
    pipeline.stop().await;
}
