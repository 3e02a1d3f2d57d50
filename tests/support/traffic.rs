//! Healthy devices posting fixes while a test breaks something (a database, a broker, a
//! processor, a poison input), and the checks that what they were acknowledged is stored
//! exactly once, with its enrichment, and on both output topics exactly once per id.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use fleetstream_kafka::KafkaConfig;
use fleetstream_storage::Store;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{eventually, read_topic, topic_len};

/// West and east of this longitude: the test fence covers the east side, so every device
/// crosses it twice every [`SWING`] fixes.
pub const FENCE_WEST_LON: f64 = -74.0;
const SWING: i64 = 10;

/// A fence covering everything east of [`FENCE_WEST_LON`] around the devices' lane.
pub fn east_fence() -> Value {
    json!({"type": "FeatureCollection", "features": [{
        "type": "Feature", "id": "east", "properties": {"name": "East"},
        "geometry": {"type": "Polygon", "coordinates": [[
            [FENCE_WEST_LON, 40.5], [-73.9, 40.5], [-73.9, 40.9], [FENCE_WEST_LON, 40.9], [FENCE_WEST_LON, 40.5]
        ]]}
    }]})
}

/// Puts [`east_fence`] into the store.
pub async fn put_east_fence(store: &Store) {
    let max_vertices = fleetstream_api::ApiConfig::local().max_fence_vertices as usize;
    for row in fleetstream_api::fences::fence_rows(east_fence(), max_vertices).unwrap() {
        store.put_fence(&row).await.unwrap();
    }
}

/// The position of device `k`'s fix number `i`: east-west swings across the fence boundary.
pub fn fix_json(device: &str, k: usize, fix_ms: i64, i: i64) -> Value {
    let lon = FENCE_WEST_LON + 0.002 * ((i % SWING) as f64 - 4.5);
    json!({"device_id": device, "fix_time": fix_ms, "lat": 40.7 + k as f64 * 0.001, "lon": lon})
}

/// Devices posting one fix per request, in time order, resending a fix until it is answered
/// 200 (as trackers do), until stopped.
pub struct Traffic {
    pub prefix: String,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<DeviceLog>>,
    started: Instant,
}

#[derive(Default)]
struct DeviceLog {
    device: String,
    attempted: Vec<i64>,
    acknowledged: Vec<(i64, Duration)>,
    answers: BTreeMap<String, usize>,
}

/// What the devices sent and what they were told.
#[derive(Debug, Default)]
pub struct TrafficReport {
    /// Every (device, fix time) posted at least once.
    pub attempted: BTreeSet<(String, i64)>,
    /// Those answered 200: durable in Kafka, and so owed to storage.
    pub acknowledged: BTreeSet<(String, i64)>,
    /// When (since the start) each acknowledged fix was acknowledged.
    pub acknowledged_at: BTreeMap<(String, i64), Duration>,
    /// Answers by kind (`200`, `503`, `error`...).
    pub answers: BTreeMap<String, usize>,
}

impl Traffic {
    /// `devices` devices named `{prefix}-{k}` posting to `ingest_url`, a fix every `pause`.
    pub fn start(ingest_url: &str, prefix: &str, devices: usize, pause: Duration) -> Traffic {
        let stop = CancellationToken::new();
        let started = Instant::now();
        // Fix times an hour ago, a second apart: well inside ingest's accepted range.
        let base_ms = fleetstream_schemas::time::now_millis() - 3_600_000;
        let tasks = (0..devices)
            .map(|k| {
                let (url, stop, device) = (format!("{ingest_url}/v1/positions"), stop.clone(), format!("{prefix}-{k}"));
                tokio::spawn(async move {
                    let http = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
                    let mut log = DeviceLog { device: device.clone(), ..DeviceLog::default() };
                    let mut i = 0i64;
                    while !stop.is_cancelled() {
                        let fix_ms = base_ms + i * 1_000;
                        log.attempted.push(fix_ms);
                        let answer = http.post(&url).json(&fix_json(&device, k, fix_ms, i)).send().await;
                        let kind = match &answer {
                            Ok(r) => r.status().as_u16().to_string(),
                            Err(_) => "error".to_string(),
                        };
                        *log.answers.entry(kind.clone()).or_default() += 1;
                        if kind == "200" {
                            log.acknowledged.push((fix_ms, started.elapsed()));
                            i += 1;
                            tokio::time::sleep(pause).await;
                        } else {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                    log
                })
            })
            .collect();
        Traffic { prefix: prefix.to_string(), stop, tasks, started }
    }

    /// Time since the traffic started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Stops every device after its request in flight and returns what happened.
    pub async fn stop(self) -> TrafficReport {
        self.stop.cancel();
        let mut report = TrafficReport::default();
        for task in self.tasks {
            let log = task.await.unwrap();
            for fix in &log.attempted {
                report.attempted.insert((log.device.clone(), *fix));
            }
            for (fix, at) in &log.acknowledged {
                report.acknowledged.insert((log.device.clone(), *fix));
                report.acknowledged_at.insert((log.device.clone(), *fix), *at);
            }
            for (kind, n) in log.answers {
                *report.answers.entry(kind).or_default() += n;
            }
        }
        report
    }
}

/// Waits until every acknowledged fix of the report is stored, and returns how long that took.
pub async fn wait_stored(store: &Store, prefix: &str, report: &TrafficReport, within: Duration) -> Duration {
    let started = Instant::now();
    let expected = report.acknowledged.len();
    eventually("every acknowledged fix stored", within, || async {
        let stored = stored_keys(store, prefix).await;
        let missing = report.acknowledged.iter().filter(|k| !stored.contains(*k)).count();
        if missing == 0 { Ok(()) } else { Err(format!("{missing} of {expected} acknowledged fixes not stored yet")) }
    })
    .await;
    started.elapsed()
}

async fn stored_keys(store: &Store, prefix: &str) -> BTreeSet<(String, i64)> {
    let sql = format!("SELECT device_id, fix_time_ms FROM positions FINAL WHERE startsWith(device_id, '{prefix}-')");
    store.query_trusted::<(String, i64)>(&sql).await.unwrap().into_iter().collect()
}

#[derive(clickhouse::Row, serde::Deserialize)]
struct Row {
    device_id: String,
    fix_time_ms: i64,
    prev_fix_ms: Option<i64>,
    distance_m: Option<f64>,
    distance_total_m: f64,
    late: u8,
    fence_ids: Vec<String>,
}

/// One stored row's enrichment, as the checks compare it.
type Enrichment = (Option<i64>, Option<f64>, f64, u8, Vec<String>);

/// Checks, once the processors are done, that every acknowledged fix of the traffic is stored
/// exactly once with its enrichment (each device's chain of previous fix, distance and odometer
/// intact), that nothing was stored that was never sent, and that `positions.enriched` and
/// `geofence.events` hold exactly the stored positions and events, once per id after keeping
/// the newest version of each. Returns (positions, events) stored.
pub async fn verify_outputs(
    store: &Store,
    kafka: &KafkaConfig,
    report: &TrafficReport,
    prefix: &str,
) -> (usize, usize) {
    let sql = format!(
        "SELECT device_id, fix_time_ms, prev_fix_ms, distance_m, distance_total_m, late, fence_ids FROM positions FINAL \
         WHERE startsWith(device_id, '{prefix}-') ORDER BY device_id, fix_time_ms"
    );
    let rows: Vec<Row> = store.query_trusted(&sql).await.unwrap();
    let rows: Vec<_> = rows
        .into_iter()
        .map(|r| (r.device_id, r.fix_time_ms, r.prev_fix_ms, r.distance_m, r.distance_total_m, r.late, r.fence_ids))
        .collect();
    let stored: BTreeSet<(String, i64)> = rows.iter().map(|r| (r.0.clone(), r.1)).collect();
    assert_eq!(stored.len(), rows.len(), "one row per position");
    let missing: Vec<_> = report.acknowledged.difference(&stored).take(5).collect();
    assert!(missing.is_empty(), "acknowledged but not stored: {missing:?}");
    let invented: Vec<_> = stored.difference(&report.attempted).take(5).collect();
    assert!(invented.is_empty(), "stored but never sent: {invented:?}");

    // Each device's chain: previous fix, distance from it, odometer as their running sum.
    let mut by_key: HashMap<(String, i64), Enrichment> = HashMap::new();
    for pair in rows.windows(2).filter(|w| w[0].0 == w[1].0) {
        let (prev, row) = (&pair[0], &pair[1]);
        assert_eq!(row.2, Some(prev.1), "{} at {}: previous fix", row.0, row.1);
        let d = row.3.unwrap_or_else(|| panic!("{} at {}: no distance", row.0, row.1));
        assert!(
            (row.4 - (prev.4 + d)).abs() < 1e-6,
            "{} at {}: odometer {} after {} + {d}",
            row.0,
            row.1,
            row.4,
            prev.4
        );
    }
    for row in &rows {
        assert_eq!(row.5, 0, "{} at {}: in-order traffic is never late", row.0, row.1);
        by_key.insert((row.0.clone(), row.1), (row.2, row.3, row.4, row.5, row.6.clone()));
    }

    // positions.enriched: newest version of each position equals its row.
    let mut newest: HashMap<(String, i64), (u64, Value)> = HashMap::new();
    for message in read_topic(&kafka.brokers, &kafka.enriched_topic) {
        let m: Value = serde_json::from_slice(&message).unwrap();
        let device = m["device_id"].as_str().unwrap().to_string();
        if !device.starts_with(&format!("{prefix}-")) {
            continue;
        }
        let key = (device, m["fix_time_ms"].as_i64().unwrap());
        let version = m["version"].as_u64().unwrap();
        if newest.get(&key).is_none_or(|(v, _)| version > *v) {
            newest.insert(key, (version, m));
        }
    }
    let on_topic: BTreeSet<(String, i64)> = newest.keys().cloned().collect();
    assert_eq!(on_topic, stored, "positions.enriched holds exactly the stored positions");
    for (key, (_, m)) in &newest {
        let row = &by_key[key];
        let topic_total = m["distance_total_m"].as_f64().unwrap();
        assert!((topic_total - row.2).abs() < 1e-6, "{key:?}: odometer on the topic {topic_total}, stored {}", row.2);
        assert_eq!(m["prev_fix_ms"].as_i64(), row.0, "{key:?}: previous fix on the topic");
    }

    // geofence.events: newest version of each event id, not retracted, equals the stored events.
    let stored_events: BTreeSet<String> = store
        .geofence_events(i64::MIN, i64::MAX, 10_000_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.device_id.starts_with(&format!("{prefix}-")))
        .map(|e| e.event_id)
        .collect();
    let mut newest_events: HashMap<String, (u64, bool)> = HashMap::new();
    for message in read_topic(&kafka.brokers, &kafka.events_topic) {
        let m: Value = serde_json::from_slice(&message).unwrap();
        if !m["device_id"].as_str().unwrap().starts_with(&format!("{prefix}-")) {
            continue;
        }
        let (id, version) = (m["event_id"].as_str().unwrap().to_string(), m["version"].as_u64().unwrap());
        let retracted = m["retracted"].as_bool().expect("retracted is a boolean");
        if newest_events.get(&id).is_none_or(|(v, _)| version > *v) {
            newest_events.insert(id, (version, retracted));
        }
    }
    let topic_events: BTreeSet<String> =
        newest_events.into_iter().filter(|(_, (_, retracted))| !retracted).map(|(id, _)| id).collect();
    assert_eq!(topic_events, stored_events, "geofence.events holds exactly the stored events");
    assert!(!stored_events.is_empty() || rows.len() < 2 * SWING as usize, "the traffic crosses the fence");
    (rows.len(), stored_events.len())
}

/// Nothing was set aside: the processing dead-letter topic is empty.
pub fn assert_no_dead_letters(kafka: &KafkaConfig) {
    assert_eq!(topic_len(&kafka.brokers, &kafka.processing_dlq_topic), 0, "processing.dlq is empty");
}
