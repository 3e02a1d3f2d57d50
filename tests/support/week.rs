//! The recorded week of NY Harbor positions (172,679 fixes, 140 vessels) through the processors
//! on the real broker and ClickHouse: producing it, processors running in this process, waiting
//! until they are done, and what they wrote, in forms that compare exactly.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use fleetstream_kafka::KafkaConfig;
use fleetstream_processors::ProcessorConfig;
use fleetstream_schemas::outputs::{ALERT_JSON_SCHEMA, ENRICHED_POSITION_JSON_SCHEMA, GEOFENCE_EVENT_JSON_SCHEMA};
use fleetstream_schemas::{Limits, Position, parse_position};
use fleetstream_storage::{AlertQuery, AlertRow, AlertRuleRow, ClickHouseConfig, GeofenceEventRow, Store};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{clickhouse_config, data_dir, eventually, query_one, read_fixes};

pub const WEEK: &str = "nyharbor-2020-12-week1.csv.gz";

/// What the topic holds: the number of distinct (device, fix time) and each device's last offset.
pub struct Produced {
    pub distinct: u64,
    pub last_offsets: HashMap<String, i64>,
}

/// The week's fixes as positions, in the file's order (time order).
pub fn week_positions() -> Vec<Position> {
    let fixes = read_fixes(WEEK, usize::MAX);
    assert_eq!(fixes.len(), 172_679);
    let now = fleetstream_schemas::time::now_millis();
    fixes.iter().map(|fix| parse_position(&fix.to_json().to_string(), now, &Limits::default()).unwrap()).collect()
}

pub async fn produce_week(kafka: &KafkaConfig) -> Produced {
    produce(kafka, &week_positions()).await
}

/// Produces `positions` in this order, keyed by device, and waits for every acknowledgement.
pub async fn produce(kafka: &KafkaConfig, positions: &[Position]) -> Produced {
    fleetstream_kafka::ensure_topics(kafka, &[kafka.positions_topic.as_str()]).await.unwrap();
    // Every message is queued before the first acknowledgement is awaited: room for all of them
    // (librdkafka's default queue of 100,000 messages refuses the rest of the week's 172,679).
    let mut config = kafka.durable_producer_config("test-producer");
    config.set("queue.buffering.max.messages", (positions.len() + 1).max(100_000).to_string());
    let producer: FutureProducer = config.create().unwrap();
    let mut deliveries = Vec::with_capacity(positions.len());
    let mut keys = std::collections::HashSet::new();
    for p in positions {
        keys.insert((p.device_id.clone(), p.fix_time_ms));
        let payload = p.to_message();
        let record = FutureRecord::to(&kafka.positions_topic).key(&p.device_id).payload(&payload);
        deliveries.push((p.device_id.clone(), producer.send_result(record).map_err(|(e, _)| e).unwrap()));
    }
    let mut last_offsets = HashMap::new();
    for (device, delivery) in deliveries {
        let d = delivery.await.unwrap().unwrap();
        let last = last_offsets.entry(device).or_insert(d.offset);
        *last = (*last).max(d.offset);
    }
    Produced { distinct: keys.len() as u64, last_offsets }
}

pub async fn store_with_counties(name: &str) -> (ClickHouseConfig, Store) {
    let config = clickhouse_config(&format!("fs_{name}"));
    let store = Store::open(&config).await.unwrap();
    let counties: Value =
        serde_json::from_str(&std::fs::read_to_string(data_dir().join("nyc-area-counties.geojson")).unwrap()).unwrap();
    let max_vertices = fleetstream_api::ApiConfig::local().max_fence_vertices as usize;
    for row in fleetstream_api::fences::fence_rows(counties, max_vertices).unwrap() {
        store.put_fence(&row).await.unwrap();
    }
    for row in week_rules() {
        store.put_alert_rule(&row).await.unwrap();
    }
    (config, store)
}

/// Alert rules of every kind that the week's vessels meet: moving faster than 8 m/s for two
/// minutes, stopped for 20 minutes, and an hour in Richmond County (Staten Island's waters).
pub fn week_rules() -> Vec<AlertRuleRow> {
    let rule = |id: &str, kind: &str, speed_mps: f64, duration_ms: i64, fence_id: &str| AlertRuleRow {
        rule_id: id.into(),
        version: 1,
        deleted: 0,
        kind: kind.into(),
        speed_mps,
        duration_ms,
        device_id: String::new(),
        fleet: String::new(),
        fence_id: fence_id.into(),
        updated_at_ms: 0,
    };
    vec![
        rule("fast", "overspeed", 8.0, 120_000, ""),
        rule("idle", "idle", 0.0, 1_200_000, ""),
        rule("staten-island-hour", "dwell", 0.0, 3_600_000, "county-36085"),
    ]
}

/// Waits until every device's stored state has reached its last message (states are written
/// last in a batch, so then every position and event is written too).
pub async fn wait_until_done(store: &Store, produced: &Produced, within: Duration) {
    let expected: i64 = produced.last_offsets.values().sum();
    let expected_devices = produced.last_offsets.len();
    eventually("every device's state at its last message", within, move || async move {
        let (devices, offsets): (u64, i64) =
            query_one(store, "SELECT count(), sum(kafka_offset) FROM processor_state FINAL").await;
        if devices as usize == expected_devices && offsets == expected {
            Ok(())
        } else {
            Err(format!("{devices} devices, offsets {offsets} of {expected}"))
        }
    })
    .await;
}

/// Processors running in this process, stopped gracefully by [`Running::stop`].
pub struct Running {
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Running {
    /// `instances` processors in one group, each counting into metrics of its own.
    pub fn start(kafka: &KafkaConfig, store: &Store, group: &str, instances: usize) -> Running {
        Running::start_each(kafka, store, group, (0..instances).map(|_| Default::default()).collect())
    }

    /// One processor counting into `metrics`.
    pub fn start_with_metrics(
        kafka: &KafkaConfig,
        store: &Store,
        group: &str,
        metrics: fleetstream_processors::Metrics,
    ) -> Running {
        Running::start_each(kafka, store, group, vec![metrics])
    }

    fn start_each(
        kafka: &KafkaConfig,
        store: &Store,
        group: &str,
        metrics: Vec<fleetstream_processors::Metrics>,
    ) -> Running {
        let shutdown = CancellationToken::new();
        let tasks = metrics
            .into_iter()
            .map(|metrics| {
                let config = ProcessorConfig::local(group);
                tokio::spawn(fleetstream_processors::run(
                    config,
                    kafka.clone(),
                    store.clone(),
                    metrics,
                    shutdown.clone(),
                ))
            })
            .collect();
        Running { shutdown, tasks }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            tokio::time::timeout(Duration::from_secs(30), task).await.expect("processor stops").unwrap().unwrap();
        }
    }
}

/// Everything the processors wrote, in a form that compares exactly: positions (with their
/// enrichment) hashed, the events and the alerts in order.
pub async fn output(store: &Store) -> (u64, u64, Vec<GeofenceEventRow>, Vec<AlertRow>) {
    let (count, hash): (u64, u64) = query_one(
        store,
        "SELECT count(), groupBitXor(cityHash64(device_id, fix_time_ms, toString(lat), toString(lon), \
         toString(distance_total_m), toString(ifNull(distance_m, -1)), toString(ifNull(speed_mps, -1)), \
         arrayStringConcat(fence_ids, ','), moving, h3_cell)) FROM positions FINAL",
    )
    .await;
    let events = store.geofence_events(i64::MIN, i64::MAX, 10_000_000).await.unwrap();
    let everything = AlertQuery { from_ms: i64::MIN, to_ms: i64::MAX, limit: 10_000_000, ..Default::default() };
    let alerts = store.alerts(&everything).await.unwrap();
    (count, hash, events, alerts)
}

/// The same input topic, with output topics of the run's own.
pub fn outputs_of(kafka: &KafkaConfig, run: &str) -> KafkaConfig {
    KafkaConfig {
        enriched_topic: format!("{}.{run}", kafka.enriched_topic),
        events_topic: format!("{}.{run}", kafka.events_topic),
        alerts_topic: format!("{}.{run}", kafka.alerts_topic),
        processing_dlq_topic: format!("{}.{run}", kafka.processing_dlq_topic),
        ..kafka.clone()
    }
}

/// Per topic, each id's newest message.
pub type Newest<K> = BTreeMap<K, Value>;

/// What a run produced to its output topics, each id's newest version: positions by (device,
/// fix time), events and alerts by id. Every message must satisfy its topic's JSON Schema (the
/// public contract in `schemas/`).
pub fn topic_output(kafka: &KafkaConfig) -> (Newest<(String, i64)>, Newest<String>, Newest<String>) {
    fn newest<K: Ord>(messages: Vec<Value>, key: impl Fn(&Value) -> K) -> BTreeMap<K, Value> {
        let mut out: BTreeMap<K, Value> = BTreeMap::new();
        for m in messages {
            let k = key(&m);
            if out.get(&k).is_none_or(|old| m["version"].as_u64() > old["version"].as_u64()) {
                out.insert(k, m);
            }
        }
        out
    }
    let read = |topic: &str, schema: &str| super::read_contract_topic(&kafka.brokers, topic, schema);
    let positions = newest(read(&kafka.enriched_topic, ENRICHED_POSITION_JSON_SCHEMA), |m| {
        (m["device_id"].as_str().unwrap().to_string(), m["fix_time_ms"].as_i64().unwrap())
    });
    let events =
        newest(read(&kafka.events_topic, GEOFENCE_EVENT_JSON_SCHEMA), |m| m["event_id"].as_str().unwrap().to_string());
    let alerts = newest(read(&kafka.alerts_topic, ALERT_JSON_SCHEMA), |m| m["alert_id"].as_str().unwrap().to_string());
    (positions, events, alerts)
}
