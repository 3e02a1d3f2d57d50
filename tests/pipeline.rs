//! End to end on the real broker and real ClickHouse: recorded AIS positions posted to ingest
//! come back from the query API with the same coordinates and times.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use fleetstream_schemas::time::parse_rfc3339_millis;
use serde_json::Value;
use support::{Fix, Pipeline, eventually, get_json, read_fixes};

const SAMPLE: usize = 2_000;

async fn post(client: &reqwest::Client, url: &str, body: String) -> Value {
    let response = client.post(format!("{url}/v1/positions")).body(body).send().await.unwrap();
    let status = response.status();
    let report: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{report}");
    report
}

async fn get(client: &reqwest::Client, url: String) -> Value {
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    response.json().await.unwrap()
}

/// Polls until the API returns `expected` positions for every device, or fails after 60 s.
async fn wait_for_tracks(
    client: &reqwest::Client,
    api: &str,
    expected: &BTreeMap<String, Vec<Fix>>,
) -> BTreeMap<String, Value> {
    eventually("every position readable", Duration::from_secs(60), move || async move {
        let mut tracks = BTreeMap::new();
        for device in expected.keys() {
            let url = format!("{api}/v1/devices/{device}/track?from=2020-12-01T00:00:00Z&to=2020-12-31T00:00:00Z");
            tracks.insert(device.clone(), get(client, url).await);
        }
        let stored: usize = tracks.values().map(|t| t["count"].as_u64().unwrap() as usize).sum();
        if stored == SAMPLE { Ok(tracks) } else { Err(format!("only {stored} of {SAMPLE} positions readable")) }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recorded_positions_read_back_through_the_api() {
    let fixes = read_fixes("nyharbor-2020-12-08.csv.gz", SAMPLE);
    assert_eq!(fixes.len(), SAMPLE);
    let pipeline = Pipeline::start("pipeline").await;
    let client = reqwest::Client::new();

    // Half as JSON arrays, half as NDJSON, 250 per request.
    let mut accepted = 0;
    for (i, chunk) in fixes.chunks(250).enumerate() {
        let body = if i % 2 == 0 {
            Value::Array(chunk.iter().map(Fix::to_json).collect()).to_string()
        } else {
            chunk.iter().map(|f| f.to_json().to_string() + "\n").collect()
        };
        let report = post(&client, &pipeline.ingest_url, body).await;
        assert_eq!(report["rejected"], 0, "{report}");
        accepted += report["accepted"].as_u64().unwrap();
    }
    assert_eq!(accepted, SAMPLE as u64);

    let mut by_device: BTreeMap<String, Vec<Fix>> = BTreeMap::new();
    for f in &fixes {
        by_device.entry(f.device_id.clone()).or_default().push(f.clone());
    }
    for track in by_device.values_mut() {
        track.sort_by_key(|f| parse_rfc3339_millis(&f.ts).unwrap());
    }

    let tracks = wait_for_tracks(&client, &pipeline.api_url, &by_device).await;
    for (device, expected) in &by_device {
        let got = tracks[device]["positions"].as_array().unwrap();
        assert_eq!(got.len(), expected.len(), "device {device}");
        for (g, e) in got.iter().zip(expected) {
            assert_eq!(g["fix_time_ms"].as_i64().unwrap(), parse_rfc3339_millis(&e.ts).unwrap(), "{device} {g}");
            assert_eq!(
                parse_rfc3339_millis(g["fix_time"].as_str().unwrap()).unwrap(),
                parse_rfc3339_millis(&e.ts).unwrap()
            );
            assert_eq!(
                (g["lat"].as_f64().unwrap(), g["lon"].as_f64().unwrap()),
                (e.lat, e.lon),
                "{device} at {}",
                e.ts
            );
        }
        // Enrichment: every fix after the first has a distance and a derived speed.
        for g in &got[1..] {
            assert!(g["distance_from_prev_m"].as_f64().unwrap() >= 0.0, "{g}");
            assert_eq!(g["speed_derived"], true, "{g}");
        }
    }

    // The latest position of each device is its newest fix.
    let latest = get(&client, format!("{}/v1/devices/latest", pipeline.api_url)).await;
    assert_eq!(latest["count"].as_u64().unwrap() as usize, by_device.len());
    for d in latest["devices"].as_array().unwrap() {
        let newest = by_device[d["device_id"].as_str().unwrap()].last().unwrap();
        assert_eq!(d["fix_time_ms"].as_i64().unwrap(), parse_rfc3339_millis(&newest.ts).unwrap());
        assert_eq!((d["lat"].as_f64().unwrap(), d["lon"].as_f64().unwrap()), (newest.lat, newest.lon));
    }

    // The same track as GeoJSON (line and points) and CSV, in full and downsampled.
    let (device, expected) = by_device.iter().max_by_key(|(_, v)| v.len()).unwrap();
    let base =
        format!("{}/v1/devices/{device}/track?from=2020-12-01T00:00:00Z&to=2020-12-31T00:00:00Z", pipeline.api_url);
    let line = get(&client, format!("{base}&format=geojson")).await;
    let coords = line["geometry"]["coordinates"].as_array().unwrap();
    assert_eq!((line["geometry"]["type"].as_str(), coords.len()), (Some("LineString"), expected.len()));
    for (c, e) in coords.iter().zip(expected) {
        assert_eq!((c[0].as_f64().unwrap(), c[1].as_f64().unwrap()), (e.lon, e.lat));
    }
    let points = get(&client, format!("{base}&format=geojson&geometry=points")).await;
    assert_eq!(points["features"].as_array().unwrap().len(), expected.len());
    assert_eq!(
        points["features"][0]["properties"]["fix_time_ms"].as_i64(),
        Some(parse_rfc3339_millis(&expected[0].ts).unwrap())
    );
    let csv = client.get(format!("{base}&format=csv")).send().await.unwrap();
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = csv.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("device_id,fix_time,lat,lon,"));
    assert_eq!(lines.len(), expected.len() + 1);
    let first: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(
        (first[2].parse::<f64>().unwrap(), first[3].parse::<f64>().unwrap()),
        (expected[0].lat, expected[0].lon)
    );
    let few = get(&client, format!("{base}&points=10")).await;
    let few = few["positions"].as_array().unwrap();
    assert_eq!(few.len(), 10.min(expected.len()));
    assert_eq!(
        few.last().unwrap()["fix_time_ms"].as_i64(),
        Some(parse_rfc3339_millis(&expected.last().unwrap().ts).unwrap())
    );
    let bad = client.get(format!("{base}&format=xml")).send().await.unwrap();
    assert_eq!(bad.status(), 400);

    // A device retrying 300 positions it already sent: each copy is either recognised as one (inside
    // the lateness window) or stored again under the same key (older than the window); either way it
    // is counted once. Whether ClickHouse has merged the copies yet is its business, so the probe
    // watches the processor account for all 300, not the table's raw row count.
    let metrics = &pipeline.processor_metrics;
    let accounted = || metrics.positions.get() + metrics.duplicates.get();
    // Every position is readable; its batch's counters follow once the states are written.
    let before = eventually("the first batches accounted for", Duration::from_secs(30), move || async move {
        let seen = accounted();
        tokio::time::sleep(Duration::from_millis(500)).await;
        if seen >= SAMPLE as u64 && accounted() == seen { Ok(seen) } else { Err(format!("{seen} and moving")) }
    })
    .await;
    let body = Value::Array(fixes[..300].iter().map(Fix::to_json).collect()).to_string();
    assert_eq!(post(&client, &pipeline.ingest_url, body).await["accepted"], 300);
    eventually("the retried positions accounted for", Duration::from_secs(60), move || async move {
        let seen = accounted() - before;
        if seen >= 300 { Ok(()) } else { Err(format!("{seen} of 300 stored or recognised")) }
    })
    .await;
    assert_eq!(accounted() - before, 300, "each retried copy is stored once or recognised once, never both");
    let tracks = wait_for_tracks(&client, &pipeline.api_url, &by_device).await;
    let counted: u64 = tracks.values().map(|t| t["count"].as_u64().unwrap()).sum();
    assert_eq!(counted, SAMPLE as u64, "retried positions are not double-counted");

    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invalid_items_are_named_and_valid_ones_kept() {
    let pipeline = Pipeline::start("mixed").await;
    let client = reqwest::Client::new();
    let body = concat!(
        r#"{"device_id":"ok-1","fix_time":"2020-12-08T01:00:00.125Z","lat":40.7,"lon":-74.0}"#,
        "\n",
        r#"{"device_id":"bad","fix_time":"2020-12-08T01:00:00Z","lat":91,"lon":-74.0}"#,
        "\n",
        r#"{"device_id":"bad","fix_time":"2020-12-08T01:00:00Z","lat":40.7}"#,
        "\n",
        r#"{"device_id":"bad","fix_t"#,
        "\n",
    );
    let response = client.post(format!("{}/v1/positions", pipeline.ingest_url)).body(body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let report: Value = response.json().await.unwrap();
    assert_eq!((report["accepted"].as_u64(), report["rejected"].as_u64()), (Some(1), Some(3)), "{report}");
    let named: Vec<(u64, &str)> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["index"].as_u64().unwrap(), e["field"].as_str().unwrap()))
        .collect();
    assert_eq!(named, vec![(1, "lat"), (2, "lon"), (3, "body")]);

    // All invalid: 400, nothing produced.
    let response = client
        .post(format!("{}/v1/positions", pipeline.ingest_url))
        .body(r#"{"device_id":"bad","fix_time":"2099-01-01T00:00:00Z","lat":1,"lon":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let report: Value = response.json().await.unwrap();
    assert_eq!(report["errors"][0]["field"], "fix_time", "{report}");

    // Too large: 413 naming the limit.
    let huge = "x".repeat(6 * 1024 * 1024);
    let response = client.post(format!("{}/v1/positions", pipeline.ingest_url)).body(huge).send().await.unwrap();
    assert_eq!(response.status(), 413);
    let report: Value = response.json().await.unwrap();
    assert!(report["error"]["message"].as_str().unwrap().contains("5242880"), "{report}");

    // The one valid position arrives, with millisecond precision; the invalid ones never do.
    let (client, url) = (&client, format!("{}/v1/devices/latest", pipeline.api_url));
    let url = url.as_str();
    let latest = eventually("the valid position stored", Duration::from_secs(60), move || async move {
        let latest: Value = client.get(url).send().await.unwrap().json().await.unwrap();
        if latest["count"] == 1 { Ok(latest) } else { Err(latest.to_string()) }
    })
    .await;
    assert_eq!(latest["devices"][0]["device_id"], "ok-1");
    assert_eq!(latest["devices"][0]["fix_time"], "2020-12-08T01:00:00.125Z");
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_rejects_bad_parameters_by_name_and_answers_empty_ranges() {
    let pipeline = Pipeline::start("params").await;
    let client = reqwest::Client::new();
    let api = &pipeline.api_url;
    for (path, parameter) in [
        ("/v1/devices/x/track?from=yesterday", "from"),
        ("/v1/devices/x/track?to=12/08/2020", "to"),
        ("/v1/devices/x/track?from=2020-12-09T00:00:00Z&to=2020-12-08T00:00:00Z", "from"),
        ("/v1/devices/x/track?limit=0", "limit"),
        ("/v1/devices/x/track?limit=999999999", "limit"),
        ("/v1/devices/x/trips?date=2020-12-32", "date"),
        ("/v1/devices/x/trips?date=yesterday", "date"),
        ("/v1/devices/x/trips?min_stop_minutes=0", "min_stop_minutes"),
        ("/v1/reports/distance?from=soon", "from"),
        ("/v1/reports/distance?device=", "device"),
        ("/v1/reports/distance?limit=0", "limit"),
        ("/v1/visits?fence=", "fence"),
        ("/v1/visits?from=2020-12-02T00:00:00Z&to=2020-12-01T00:00:00Z", "from"),
        ("/v1/geofence-events?order=sideways", "order"),
    ] {
        let response = client.get(format!("{api}{path}")).send().await.unwrap();
        assert_eq!(response.status(), 400, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["field"], parameter, "{path}: {body}");
    }
    let empty: Value =
        client.get(format!("{api}/v1/devices/nobody/track?from=0&to=1")).send().await.unwrap().json().await.unwrap();
    assert_eq!(empty["count"], 0);
    assert_eq!(empty["positions"], serde_json::json!([]));
    assert_eq!(empty["next_from"], Value::Null);
    let long_id = "d".repeat(200);
    assert_eq!(client.get(format!("{api}/v1/devices/{long_id}/track")).send().await.unwrap().status(), 400);
    // An oversized fence: 413 as JSON naming the body.
    let huge = format!("{{\"type\":\"Feature\",\"pad\":\"{}\"}}", "x".repeat(64 << 20));
    // The server answers from Content-Length and closes while the client may still be writing:
    // then the client sees a broken pipe instead of the answer, and tries again.
    let mut attempts = 0;
    let response = loop {
        attempts += 1;
        let sent = client
            .put(format!("{api}/v1/fences/huge"))
            .header("content-type", "application/json")
            .body(huge.clone())
            .send()
            .await;
        match sent {
            Ok(response) => break response,
            Err(e) if attempts < 10 => eprintln!("attempt {attempts}: {e:?}"),
            Err(e) => panic!("no answer to an oversized fence in {attempts} attempts: {e:?}"),
        }
    };
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["field"], "body", "{body}");
    // Every operation /openapi.json documents is served: no route-less 404 ("no endpoint") and no 405.
    let doc = get_json(&client, &format!("{api}/openapi.json")).await;
    for (path, operations) in doc["paths"].as_object().unwrap() {
        for method in operations.as_object().unwrap().keys() {
            let url = format!("{api}{}", path.replace("{id}", "nobody"));
            let request = client.request(method.to_uppercase().parse().unwrap(), &url);
            let response = request.header("content-type", "application/json").body("{}").send().await.unwrap();
            let status = response.status();
            // A live stream never ends: its status and headers are the answer.
            let streaming = response.headers().get("content-type").is_some_and(|t| t == "text/event-stream");
            let body = if streaming { String::new() } else { response.text().await.unwrap() };
            assert!(
                status != 405 && !(status == 404 && body.contains("no endpoint")),
                "{method} {path}: {status} {body}"
            );
        }
    }
    // The reports: empty results are empty.
    let trips = get_json(&client, &format!("{api}/v1/devices/nobody/trips?date=2020-12-08")).await;
    assert_eq!(
        (trips["positions"].as_u64(), trips["segments"].as_array().map(Vec::len)),
        (Some(0), Some(0)),
        "{trips}"
    );
    let visits = get_json(&client, &format!("{api}/v1/visits?fence=nowhere")).await;
    assert_eq!(visits["count"], 0);
    let distance = get_json(&client, &format!("{api}/v1/reports/distance?device=nobody")).await;
    assert_eq!(distance["days"], serde_json::json!([]));
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn registry_entries_are_managed_and_stamped_on_positions() {
    let pipeline = Pipeline::start("registry").await;
    let client = reqwest::Client::new();
    let api = &pipeline.api_url;
    let put = |id: &str, body: Value| client.put(format!("{api}/v1/registry/{id}")).json(&body).send();

    let response =
        put("truck-1", serde_json::json!({"name": "Ann's van", "fleet": "north", "type": "van"})).await.unwrap();
    assert_eq!(response.status(), 200);
    let response = put("truck-2", serde_json::json!({"name": "spare", "colour": "red"})).await.unwrap();
    assert_eq!(response.status(), 400, "unknown fields are refused");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["field"], "colour", "the unknown field is named");
    let response = put("truck-2", serde_json::json!({"name": "x".repeat(300)})).await.unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["field"], "name");
    assert_eq!(client.get(format!("{api}/v1/registry/nobody")).send().await.unwrap().status(), 404);
    let one: Value = client.get(format!("{api}/v1/registry/truck-1")).send().await.unwrap().json().await.unwrap();
    assert_eq!(one, serde_json::json!({"device_id": "truck-1", "name": "Ann's van", "fleet": "north", "type": "van"}));
    put("truck-3", serde_json::json!({"fleet": "south"})).await.unwrap();
    let page: Value = client.get(format!("{api}/v1/registry?limit=1")).send().await.unwrap().json().await.unwrap();
    assert_eq!((page["count"].as_u64(), page["next_after"].as_str()), (Some(1), Some("truck-1")));
    let page: Value =
        client.get(format!("{api}/v1/registry?after=truck-1")).send().await.unwrap().json().await.unwrap();
    assert_eq!(page["devices"][0]["device_id"], "truck-3");
    assert_eq!(client.delete(format!("{api}/v1/registry/truck-3")).send().await.unwrap().status(), 204);
    assert_eq!(client.get(format!("{api}/v1/registry/truck-3")).send().await.unwrap().status(), 404);

    let body = r#"[{"device_id":"truck-1","fix_time":1607389900000,"lat":40.7,"lon":-74.0},
                   {"device_id":"unregistered","fix_time":1607389900000,"lat":40.7,"lon":-74.0}]"#;
    assert_eq!(
        client.post(format!("{}/v1/positions", pipeline.ingest_url)).body(body).send().await.unwrap().status(),
        200
    );
    let store = &pipeline.store;
    let rows: Vec<(String, String, String, String)> =
        eventually("both positions stored", Duration::from_secs(60), move || async move {
            let rows: Vec<(String, String, String, String)> = store
                .query_trusted(
                    "SELECT device_id, device_name, fleet, device_type FROM positions FINAL ORDER BY device_id",
                )
                .await
                .unwrap();
            if rows.len() == 2 { Ok(rows) } else { Err(format!("{rows:?}")) }
        })
        .await;
    assert_eq!(rows[0], ("truck-1".into(), "Ann's van".into(), "north".into(), "van".into()));
    assert_eq!(rows[1], ("unregistered".into(), String::new(), String::new(), String::new()));
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fence_changes_reach_running_processors_without_a_restart() {
    let pipeline = Pipeline::start("fencechange").await;
    let client = reqwest::Client::new();
    let (api, ingest) = (&pipeline.api_url, &pipeline.ingest_url);
    let post = |t: i64, lat: f64| {
        let body = format!(r#"{{"device_id":"boat","fix_time":{t},"lat":{lat},"lon":-74.0}}"#);
        client.post(format!("{ingest}/v1/positions")).body(body).send()
    };
    let events = || async {
        let url = format!("{api}/v1/geofence-events?from=2020-01-01T00:00:00Z&to=2021-01-01T00:00:00Z");
        let body: Value = client.get(url).send().await.unwrap().json().await.unwrap();
        body["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["event"].as_str().unwrap().to_string(), e["time_ms"].as_i64().unwrap()))
            .collect::<Vec<_>>()
    };
    let wait_for = |n: usize| {
        eventually("geofence events", Duration::from_secs(30), move || async move {
            let got = events().await;
            if got.len() >= n { Ok(got) } else { Err(format!("{got:?}")) }
        })
    };
    let t0 = 1_607_389_900_000i64;
    // Inside where no fence exists yet: nothing happens.
    assert_eq!(post(t0, 40.7).await.unwrap().status(), 200);
    // Counted once its batch, events included, is written.
    let metrics = &pipeline.processor_metrics;
    eventually("the fix outside any fence written", Duration::from_secs(30), move || async move {
        if metrics.positions.get() >= 1 { Ok(()) } else { Err("not yet".to_string()) }
    })
    .await;
    assert!(events().await.is_empty());

    // A 500 m circle appears around the boat; the next fix enters it.
    let fence = serde_json::json!({"type":"Feature","properties":{"name":"Anchorage","radius_m":500},"geometry":{"type":"Point","coordinates":[-74.0,40.7]}});
    assert_eq!(client.put(format!("{api}/v1/fences/anchorage")).json(&fence).send().await.unwrap().status(), 200);
    pipeline.wait_fences_loaded().await;
    post(t0 + 60_000, 40.7).await.unwrap();
    assert_eq!(wait_for(1).await, vec![("enter".to_string(), t0 + 60_000)]);
    let inside: Value =
        client.get(format!("{api}/v1/fences/anchorage/inside")).send().await.unwrap().json().await.unwrap();
    assert_eq!(inside["devices"][0]["device_id"], "boat");

    // The fence is deleted; the next fix ends the visit.
    assert_eq!(client.delete(format!("{api}/v1/fences/anchorage")).send().await.unwrap().status(), 204);
    assert_eq!(client.get(format!("{api}/v1/fences/anchorage")).send().await.unwrap().status(), 404);
    pipeline.wait_fences_loaded().await;
    post(t0 + 120_000, 40.7).await.unwrap();
    let got = wait_for(2).await;
    assert_eq!(got[1], ("exit".to_string(), t0 + 120_000));
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn latest_positions_filter_by_fleet_box_fence_state_and_staleness() {
    let pipeline = Pipeline::start("latestfilters").await;
    let client = reqwest::Client::new();
    let api = &pipeline.api_url;
    for (id, fleet) in [("fa", "north"), ("fb", "south")] {
        let body = serde_json::json!({"name": format!("vessel {id}"), "fleet": fleet});
        assert_eq!(client.put(format!("{api}/v1/registry/{id}")).json(&body).send().await.unwrap().status(), 200);
    }
    let pier = serde_json::json!({"type":"Feature","properties":{"radius_m":1000},"geometry":{"type":"Point","coordinates":[-74.0,40.7]}});
    assert_eq!(client.put(format!("{api}/v1/fences/pier")).json(&pier).send().await.unwrap().status(), 200);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let body = serde_json::json!([
        {"device_id": "fa", "fix_time": now - 60_000, "lat": 40.70, "lon": -74.00, "speed": 5.0},
        {"device_id": "fb", "fix_time": now - 30 * 60_000, "lat": 40.75, "lon": -73.95, "speed": 0.0},
        {"device_id": "fc", "fix_time": now - 120_000, "lat": 41.5, "lon": -72.0},
    ]);
    assert_eq!(
        client.post(format!("{}/v1/positions", pipeline.ingest_url)).json(&body).send().await.unwrap().status(),
        200
    );

    let ids = |v: &Value| -> Vec<String> {
        v["devices"].as_array().unwrap().iter().map(|d| d["device_id"].as_str().unwrap().to_string()).collect()
    };
    let client_ref = &client;
    let all = eventually("three devices latest", Duration::from_secs(60), move || async move {
        let all = get(client_ref, format!("{api}/v1/devices/latest")).await;
        if all["count"] == 3 { Ok(all) } else { Err(all.to_string()) }
    })
    .await;
    assert_eq!(ids(&all), ["fa", "fb", "fc"]);
    assert_eq!(
        (all["devices"][0]["fleet"].as_str(), all["devices"][0]["name"].as_str()),
        (Some("north"), Some("vessel fa"))
    );
    assert_eq!(all["devices"][2]["fleet"], Value::Null, "unregistered");

    for (query, expected) in [
        ("fleet=north", vec!["fa"]),
        ("bbox=-74.1,40.6,-73.9,40.8", vec!["fa", "fb"]),
        ("state=moving", vec!["fa"]),
        ("state=stopped", vec!["fb", "fc"]),
        ("stale_minutes=10", vec!["fb"]),
        ("fence=pier", vec!["fa"]),
        ("state=stopped&bbox=-74.1,40.6,-73.9,40.8", vec!["fb"]),
        ("after=fb", vec!["fc"]),
    ] {
        assert_eq!(ids(&get(&client, format!("{api}/v1/devices/latest?{query}")).await), expected, "{query}");
    }
    let page = get(&client, format!("{api}/v1/devices/latest?limit=2")).await;
    assert_eq!((ids(&page), page["next_after"].as_str()), (vec!["fa".to_string(), "fb".to_string()], Some("fb")));
    for (query, parameter) in
        [("bbox=1,2,3", "bbox"), ("state=parked", "state"), ("stale_minutes=-1", "stale_minutes"), ("limit=0", "limit")]
    {
        let response = client.get(format!("{api}/v1/devices/latest?{query}")).send().await.unwrap();
        assert_eq!(response.status(), 400, "{query}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["field"], parameter, "{query}");
    }
    assert_eq!(client.get(format!("{api}/v1/devices/latest?fence=nope")).send().await.unwrap().status(), 404);
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reader_and_admin_tokens_guard_the_query_api() {
    const READER: &str = "reader-token-0123456789";
    const ADMIN: &str = "admin-token-0123456789";
    let api_config = fleetstream_api::ApiConfig {
        read_tokens: Some(READER.into()),
        admin_tokens: Some(ADMIN.into()),
        ..fleetstream_api::ApiConfig::local()
    };
    let pipeline = Pipeline::start_with("apitokens", fleetstream_ingest::IngestConfig::local(), api_config).await;
    let client = reqwest::Client::new();
    let api = &pipeline.api_url;
    let latest = format!("{api}/v1/devices/latest");
    let fence = serde_json::json!({"type":"Feature","properties":{"radius_m":50},"geometry":{"type":"Point","coordinates":[-74.0,40.7]}});

    let response = client.get(&latest).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["field"], "authorization");
    assert_eq!(client.get(&latest).bearer_auth("wrong-token-0123456789").send().await.unwrap().status(), 401);
    assert_eq!(client.get(&latest).bearer_auth(READER).send().await.unwrap().status(), 200);
    assert_eq!(client.get(&latest).bearer_auth(ADMIN).send().await.unwrap().status(), 200);

    let put = |token: &'static str| client.put(format!("{api}/v1/fences/f1")).bearer_auth(token).json(&fence).send();
    assert_eq!(put(READER).await.unwrap().status(), 401, "readers cannot change fences");
    assert_eq!(put(ADMIN).await.unwrap().status(), 200);
    let registry =
        client.put(format!("{api}/v1/registry/d1")).bearer_auth(READER).json(&serde_json::json!({"fleet": "x"}));
    assert_eq!(registry.send().await.unwrap().status(), 401);

    assert_eq!(client.get(format!("{api}/healthz")).send().await.unwrap().status(), 200, "health stays open");
    pipeline.stop().await;
}
