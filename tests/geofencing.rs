//! Geofencing on a week of real AIS positions (172,679, NY Harbor) against the 15 county
//! polygons around it, on the real broker and real ClickHouse:
//! - positions inside each county equal ClickHouse's own `pointInPolygon` count (an independent
//!   implementation) and the shares documented in `data/README.md`;
//! - per (device, fence), enter and exit strictly alternate, each exit after its enter, with
//!   dwell = exit - enter;
//! - a processor SIGKILLed in the middle and restarted, and two processors in one group, give
//!   exactly the output of one uninterrupted processor: positions, geofence events and alerts
//!   (the rules of `week_rules`, every kind of them met), in ClickHouse and on the topics.
//!
//! The week is produced once to one topic; each run consumes it with its own group into its own
//! database.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use fleetstream_kafka::KafkaConfig;
use fleetstream_schemas::outputs::EventKind;
use fleetstream_storage::GeofenceEventRow;
use serde_json::Value;
use support::week::{Running, output, outputs_of, produce_week, store_with_counties, topic_output, wait_until_done};
use support::{brokers, data_dir, eventually, get_json, query_one, unique};
use tokio_util::sync::CancellationToken;

/// `pointInPolygon` over all parts of a (multi)polygon feature, holes included.
fn point_in_feature_sql(geometry: &Value) -> String {
    let ring = |ring: &Value| {
        let points: Vec<String> = ring
            .as_array()
            .unwrap()
            .iter()
            .map(|p| format!("({:?}, {:?})", p[0].as_f64().unwrap(), p[1].as_f64().unwrap()))
            .collect();
        format!("[{}]", points.join(", "))
    };
    let polygon = |rings: &Value| {
        let rings: Vec<String> = rings.as_array().unwrap().iter().map(ring).collect();
        format!("pointInPolygon((lon, lat), {})", rings.join(", "))
    };
    match geometry["type"].as_str().unwrap() {
        "Polygon" => polygon(&geometry["coordinates"]),
        "MultiPolygon" => {
            let parts: Vec<String> = geometry["coordinates"].as_array().unwrap().iter().map(polygon).collect();
            format!("({})", parts.join(" OR "))
        }
        other => panic!("unexpected geometry {other}"),
    }
}

fn check_alternation(events: &[GeofenceEventRow]) -> usize {
    let mut by_pair: BTreeMap<(&str, &str), Vec<&GeofenceEventRow>> = BTreeMap::new();
    for e in events {
        by_pair.entry((e.device_id.as_str(), e.fence_id.as_str())).or_default().push(e);
    }
    for ((device, fence), list) in &by_pair {
        let mut enter_at: Option<i64> = None;
        let mut last = i64::MIN;
        for e in list {
            assert!(e.event_time_ms >= last, "{device}/{fence}: events out of order");
            last = e.event_time_ms;
            match (e.event_type, enter_at) {
                (EventKind::Enter, None) => enter_at = Some(e.event_time_ms),
                (EventKind::Exit, Some(at)) => {
                    assert!(e.event_time_ms >= at, "{device}/{fence}: exit before its enter");
                    assert_eq!(e.dwell_ms, Some(e.event_time_ms - at), "{device}/{fence}: dwell");
                    enter_at = None;
                }
                (t, state) => panic!("{device}/{fence}: event {t:?} while {state:?}: enter and exit must alternate"),
            }
        }
    }
    by_pair.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_week_of_vessels_against_county_fences() {
    let name = unique("week");
    let kafka = KafkaConfig::with_topic_suffix(&brokers(), &name);
    let produced = produce_week(&kafka).await;
    let (_, store) = store_with_counties(&name).await;
    let running = Running::start(&kafka, &store, &format!("g-{name}"), 1);
    wait_until_done(&store, &produced, Duration::from_secs(300)).await;
    running.stop().await;

    let (stored, _, events, _) = output(&store).await;
    assert_eq!(stored, produced.distinct, "every distinct position stored once");

    // Our Rust containment against ClickHouse's pointInPolygon, county by county.
    let counties: Value =
        serde_json::from_str(&std::fs::read_to_string(data_dir().join("nyc-area-counties.geojson")).unwrap()).unwrap();
    let ours: Vec<(String, u64)> = store
        .query_trusted("SELECT f, count() FROM positions FINAL ARRAY JOIN fence_ids AS f GROUP BY f ORDER BY f")
        .await
        .unwrap();
    let ours: BTreeMap<String, u64> = ours.into_iter().collect();
    let (mut total_inside, mut boundary_ties) = (0, 0);
    for feature in counties["features"].as_array().unwrap() {
        let id = feature["id"].as_str().unwrap();
        let inside_sql = point_in_feature_sql(&feature["geometry"]);
        assert!(id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'), "{id} is written into SQL below");
        let independent: u64 = query_one(&store, &format!("SELECT countIf({inside_sql}) FROM positions FINAL")).await;
        // Where the two disagree, the point must lie on the boundary (to 1 cm): there, "inside"
        // is a floating-point tie that each implementation may break its own way.
        let disagreements: Vec<(f64, f64, u8)> = store
            .query_trusted(&format!(
                "SELECT lat, lon, has(fence_ids, '{id}') AS ours FROM positions FINAL WHERE ours != {inside_sql}"
            ))
            .await
            .unwrap();
        let fence = fleetstream_geofence::fences_from_geojson(&feature.to_string()).unwrap().remove(0);
        for (lat, lon, _) in &disagreements {
            let d = fence.distance_to_boundary_m(*lat, *lon);
            assert!(d < 0.01, "{id}: ({lat}, {lon}) is {d} m from the boundary, yet the counts disagree");
        }
        let ours_count = ours.get(id).copied().unwrap_or(0);
        let ties = disagreements.len() as u64;
        assert!(ours_count.abs_diff(independent) <= ties, "{id}: ours {ours_count}, pointInPolygon {independent}");
        assert!(ties <= 3, "{id}: {ties} boundary ties");
        boundary_ties += ties;
        total_inside += independent;
    }
    // The figures in data/README.md (computed with shapely), within 1%.
    for (id, approx) in [
        ("county-36061", 54_700.0),
        ("county-36047", 36_800.0),
        ("county-34017", 32_500.0),
        ("county-36085", 17_000.0),
        ("county-36081", 7_700.0),
    ] {
        let got = ours[id] as f64;
        assert!((got - approx).abs() / approx < 0.01, "{id}: {got} positions, README says about {approx}");
    }
    let share = total_inside as f64 / stored as f64;
    assert!(share > 0.98, "about 99% of positions fall inside a county, got {share:.3}");

    let pairs = check_alternation(&events);
    assert!(events.len() > 100 && pairs > 20, "{} events over {pairs} (device, fence) pairs", events.len());
    // Who is inside each county now, through the API, matches the events.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", listener.local_addr().unwrap());
    let stop_api = CancellationToken::new();
    // Small stream pages, so that streaming a vessel's week takes several.
    let api_config = fleetstream_api::ApiConfig { stream_page_rows: 1_000, ..fleetstream_api::ApiConfig::local() };
    let api_task = tokio::spawn(fleetstream_api::serve(api_config, store.clone(), listener, stop_api.clone()));
    let mut last_event: BTreeMap<(&str, &str), &GeofenceEventRow> = BTreeMap::new();
    for e in &events {
        last_event.insert((e.fence_id.as_str(), e.device_id.as_str()), e);
    }
    let http = reqwest::Client::new();
    let mut occupied = 0;
    for feature in counties["features"].as_array().unwrap() {
        let id = feature["id"].as_str().unwrap();
        let inside: Value =
            http.get(format!("{api}/v1/fences/{id}/inside")).send().await.unwrap().json().await.unwrap();
        let got: Vec<(String, i64)> = inside["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| (d["device_id"].as_str().unwrap().to_string(), d["since_ms"].as_i64().unwrap()))
            .collect();
        let expected: Vec<(String, i64)> = last_event
            .iter()
            .filter(|((fence, _), e)| *fence == id && e.event_type == EventKind::Enter)
            .map(|((_, device), e)| (device.to_string(), e.event_time_ms))
            .collect();
        assert_eq!(got, expected, "{id}: devices inside now");
        occupied += got.len();
    }
    assert!(occupied > 0, "some vessels are inside a county at the end of the week");
    // The dashboard summary agrees: 140 vessels, all offline now (the data is from 2020), and
    // the same occupancy per fence.
    let summary: Value = http.get(format!("{api}/v1/live/summary")).send().await.unwrap().json().await.unwrap();
    assert_eq!(summary["devices"]["total"], 140, "{summary}");
    assert_eq!((summary["devices"]["online"].as_u64(), summary["devices"]["offline"].as_u64()), (Some(0), Some(140)));
    let per_fence: u64 = summary["fences"].as_array().unwrap().iter().map(|f| f["inside"].as_u64().unwrap()).sum();
    assert_eq!(per_fence as usize, occupied, "{summary}");
    // Visits to Manhattan: one closed visit per exit, dwell = exit - enter, open ones at the end.
    let range = "from=2020-11-30T00:00:00Z&to=2020-12-09T00:00:00Z";
    let visits = get_json(&http, &format!("{api}/v1/visits?{range}&fence=county-36061&limit=100000")).await;
    let visits = visits["visits"].as_array().unwrap();
    let exits = events.iter().filter(|e| e.fence_id == "county-36061" && e.event_type == EventKind::Exit).count();
    let closed: Vec<&Value> = visits.iter().filter(|v| !v["exit_time"].is_null()).collect();
    assert_eq!(closed.len(), exits, "one closed visit per exit");
    assert!(visits.iter().all(|v| v["fence_id"] == "county-36061"));
    let open = visits.len() - closed.len();
    let inside_now =
        last_event.iter().filter(|((f, _), e)| *f == "county-36061" && e.event_type == EventKind::Enter).count();
    assert_eq!(open, inside_now, "open visits are the vessels inside now");
    // Distance per vessel per day adds up to each vessel's odometer at its last fix.
    let report = get_json(&http, &format!("{api}/v1/reports/distance?{range}&limit=100000")).await;
    let reported: f64 = report["days"].as_array().unwrap().iter().map(|d| d["distance_m"].as_f64().unwrap()).sum();
    let odometers: f64 = query_one(
        &store,
        "SELECT sum(m) FROM (SELECT argMax(distance_total_m, fix_time_ms) AS m FROM positions FINAL GROUP BY device_id)",
    )
    .await;
    assert!((reported - odometers).abs() <= odometers * 1e-6, "per-day distances {reported} vs odometers {odometers}");
    // Trips and stops of the busiest vessel on its busiest day.
    let (device, day, day_m, day_positions) = report["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["device_id"].as_str().unwrap(),
                d["date"].as_str().unwrap(),
                d["distance_m"].as_f64().unwrap(),
                d["positions"].as_u64().unwrap(),
            )
        })
        .max_by_key(|d| d.3)
        .unwrap();
    let trips = get_json(&http, &format!("{api}/v1/devices/{device}/trips?date={day}")).await;
    assert_eq!(trips["positions"].as_u64(), Some(day_positions), "{device} {day}");
    let segments = trips["segments"].as_array().unwrap();
    assert!(segments.iter().any(|s| s["kind"] == "trip"), "{trips}");
    let trip_m: f64 = segments.iter().filter_map(|s| s["distance_m"].as_f64()).sum();
    assert!(trip_m <= day_m + 1e-6 && trip_m >= day_m * 0.5, "{device} {day}: trips {trip_m} m of {day_m} m");
    eprintln!("{device} on {day}: {} segments, {trip_m:.0} m in trips of {day_m:.0} m", segments.len());
    // Its events, by the API's device and fence filters, newest first.
    let fence = "county-36061";
    let url = format!("{api}/v1/geofence-events?{range}&device={device}&fence={fence}&order=desc&limit=100000");
    let filtered = get_json(&http, &url).await;
    let mut expected: Vec<i64> =
        events.iter().filter(|e| e.device_id == device && e.fence_id == fence).map(|e| e.event_time_ms).collect();
    expected.reverse();
    let got: Vec<i64> = filtered["events"].as_array().unwrap().iter().map(|e| e["time_ms"].as_i64().unwrap()).collect();
    assert_eq!(got, expected, "{device} in {fence}");
    // The vessel's whole week streamed as CSV and NDJSON (in pages of 1,000): every position once.
    let week_positions: u64 = report["days"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["device_id"] == device)
        .map(|d| d["positions"].as_u64().unwrap())
        .sum();
    assert!(week_positions > 3_000, "{device}: {week_positions} positions, too few to need pages");
    for (format, header_lines) in [("csv", 1), ("ndjson", 0)] {
        let body = http
            .get(format!("{api}/v1/devices/{device}/track?{range}&format={format}"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let times: Vec<&str> = body.lines().skip(header_lines).map(|l| &l[..l.find("Z").unwrap()]).collect();
        assert_eq!(times.len() as u64, week_positions, "{format}");
        assert!(times.windows(2).all(|w| w[0] < w[1]), "{format}: in time order, no repeats across pages");
    }

    let missing = http.get(format!("{api}/v1/fences/county-00000/inside")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    stop_api.cancel();
    api_task.await.unwrap().unwrap();

    let topic_events = support::topic_len(&kafka.brokers, &kafka.events_topic);
    assert!(topic_events >= events.len() as i64, "geofence.events has {topic_events} of {} events", events.len());
    let topic_positions = support::topic_len(&kafka.brokers, &kafka.enriched_topic);
    assert!(topic_positions >= stored as i64, "positions.enriched has {topic_positions} of {stored} positions");
    let sample: Value =
        serde_json::from_slice(&support::read_topic_head(&kafka.brokers, &kafka.enriched_topic)).unwrap();
    assert!(sample["fence_ids"].is_array() && sample["h3_cell"].as_str().unwrap().len() == 15, "{sample}");
    assert!(sample["moving"].is_boolean() && sample["attributes"].is_object(), "{sample}");
    eprintln!(
        "{stored} positions, {total_inside} inside a county, {boundary_ties} on a boundary, {} events over {pairs} pairs",
        events.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_processor_and_two_processors_give_the_uninterrupted_output() {
    let name = unique("crash");
    let kafka = KafkaConfig::with_topic_suffix(&brokers(), &name);
    let produced = produce_week(&kafka).await;

    // Reference: one uninterrupted processor.
    let ref_kafka = outputs_of(&kafka, "ref");
    let (_, ref_store) = store_with_counties(&format!("{name}_ref")).await;
    let running = Running::start(&ref_kafka, &ref_store, &format!("ref-{name}"), 1);
    wait_until_done(&ref_store, &produced, Duration::from_secs(300)).await;
    running.stop().await;
    let reference = output(&ref_store).await;
    assert_eq!(reference.0, produced.distinct);
    let ref_topics = topic_output(&ref_kafka);
    assert_eq!(ref_topics.0.len() as u64, produced.distinct, "positions.enriched: every position");
    assert_eq!(ref_topics.1.len(), reference.2.len(), "geofence.events: every event");
    // The week's vessels meet every kind of alert rule (`week_rules`).
    let kinds: std::collections::BTreeSet<&str> = reference.3.iter().map(|a| a.kind.as_str()).collect();
    assert_eq!(kinds, ["dwell", "idle", "overspeed"].into(), "alerts of every kind");
    let live_alerts = ref_topics.2.values().filter(|a| a["retracted"] == false).count();
    assert_eq!(live_alerts, reference.3.len(), "alerts: every alert, on the topic as stored");

    // The `fleetstream process` binary, SIGKILLed in the middle and started again.
    let kill_kafka = outputs_of(&kafka, "kill");
    let (kill_config, kill_store) = store_with_counties(&format!("{name}_kill")).await;
    let group = format!("kill-{name}");
    let spawn =
        || support::spawn_processor(&kill_kafka, &kill_config, &group, &[("FLEETSTREAM_BATCH_MAX_ROWS", "2000")]);
    let mut child = spawn();
    let (rows, third) = (&kill_store, produced.distinct / 3);
    eventually("the processor writing a third of the week", Duration::from_secs(300), move || async move {
        let written: u64 = query_one(rows, "SELECT count() FROM positions").await;
        if written > third { Ok(()) } else { Err(format!("{written} rows written")) }
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    let at_kill: u64 = query_one(&kill_store, "SELECT count() FROM positions").await;
    assert!(at_kill < produced.distinct, "killed too late to prove anything");
    let mut child = spawn();
    wait_until_done(&kill_store, &produced, Duration::from_secs(300)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let killed = output(&kill_store).await;
    eprintln!(
        "killed after {at_kill} of {} rows; reference {} events, {} alerts",
        produced.distinct,
        reference.2.len(),
        reference.3.len()
    );
    assert_eq!((killed.0, killed.1), (reference.0, reference.1), "positions and their enrichment");
    assert_eq!(killed.2, reference.2, "geofence events");
    assert_eq!(killed.3, reference.3, "alerts");
    // States are written after both topics: whatever the kill interrupted, the topics hold the
    // uninterrupted output once each id keeps its newest version.
    let kill_topics = topic_output(&kill_kafka);
    assert!(kill_topics.0 == ref_topics.0, "positions.enriched differs from the uninterrupted run");
    assert!(kill_topics.1 == ref_topics.1, "geofence.events differs from the uninterrupted run");
    assert!(kill_topics.2 == ref_topics.2, "alerts differs from the uninterrupted run");
    assert_eq!(support::topic_len(&kill_kafka.brokers, &kill_kafka.processing_dlq_topic), 0, "nothing set aside");

    // Two processors in one group.
    let two_kafka = outputs_of(&kafka, "two");
    let (_, two_store) = store_with_counties(&format!("{name}_two")).await;
    let running = Running::start(&two_kafka, &two_store, &format!("two-{name}"), 2);
    wait_until_done(&two_store, &produced, Duration::from_secs(300)).await;
    running.stop().await;
    let two = output(&two_store).await;
    assert_eq!((two.0, two.1), (reference.0, reference.1), "positions and their enrichment");
    assert_eq!(two.2.len(), reference.2.len());
    // Partition and offset provenance is the same too: same topic, same messages.
    assert_eq!(two.2, reference.2, "geofence events");
    assert_eq!(two.3, reference.3, "alerts");
    let two_topics = topic_output(&two_kafka);
    assert!(two_topics.0 == ref_topics.0, "positions.enriched differs from the single processor's");
    assert!(two_topics.1 == ref_topics.1, "geofence.events differs from the single processor's");
    assert!(two_topics.2 == ref_topics.2, "alerts differs from the single processor's");
}
