//! A recreated `positions.raw` loses no position, on the real broker and ClickHouse.
//!
//! The processors' device states remember the offset they applied last; when the topic is
//! deleted and created again (or the broker loses its data), offsets start again from 0 and the
//! new messages must not be skipped as redeliveries of the old ones (`processors::incarnation`).
//!
//! The pipeline is restarted around the recreation, as the README asks: a running librdkafka
//! consumer does not follow a topic recreated under it (confluentinc/librdkafka#4898; here it
//! stayed silent for a minute, then lost its assignment), so only the processors' own part is
//! tested: the states they find in storage are of the old topic.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use fleetstream_api::ApiConfig;
use fleetstream_ingest::IngestConfig;
use fleetstream_kafka::KafkaConfig;
use fleetstream_storage::Store;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use support::{Pipeline, brokers, clickhouse_config, eventually, unique};

const DEVICES: [&str; 3] = ["tug", "ferry", "barge"];
/// Fixes per device before the topic is recreated: their offsets lie beyond the new topic's end.
const BEFORE: i64 = 30;
const AFTER: i64 = 5;

/// Fix `k` of the test: minutes after an hour ago.
fn minute(start: i64, k: i64) -> i64 {
    start + k * 60_000
}

/// Before the recreation: [`BEFORE`] fixes of every device, stored. Returns the first fix time.
async fn before(pipeline: &Pipeline) -> i64 {
    let start = fleetstream_schemas::time::now_millis() - 3_600_000;
    for k in 0..BEFORE {
        for device in DEVICES {
            post_fix(pipeline, device, minute(start, k)).await;
        }
    }
    wait_stored(&pipeline.store, BEFORE as u64).await;
    start
}

/// After it: new fixes of `tug` and `ferry` (newer than every fix they sent), and of `barge`
/// fixes from between its old ones (a tracker sending what it buffered: no newer than its
/// newest, so only the end of the new log shows that they were never applied). Every one is
/// stored, each device's state was restarted, and the devices' histories went on.
async fn after(pipeline: &Pipeline, start: i64) {
    for k in 0..AFTER {
        post_fix(pipeline, "tug", minute(start, BEFORE + k)).await;
        post_fix(pipeline, "ferry", minute(start, BEFORE + k)).await;
        post_fix(pipeline, "barge", minute(start, k) + 30_000).await;
    }
    wait_stored(&pipeline.store, (BEFORE + AFTER) as u64).await;
    let metrics = &pipeline.processor_metrics;
    assert_eq!(metrics.incarnation_restart_count(), 3, "every device's state restarted once");
    let text = metrics.render();
    assert!(
        text.contains(r#"incarnation_restarts_total{evidence="beyond_end"} 1"#),
        "barge's state was recognised by the end of the new log: {text}"
    );
    // Odometers keep growing across the recreation.
    let odometers: Vec<(String, f64, f64)> = pipeline
        .store
        .query_trusted(
            "SELECT device_id, max(distance_total_m), argMax(distance_total_m, fix_time_ms) FROM positions FINAL \
             WHERE device_id IN ('tug', 'ferry') GROUP BY device_id ORDER BY device_id",
        )
        .await
        .unwrap();
    assert_eq!(odometers.len(), 2);
    for (device, max, newest) in odometers {
        assert!(newest > 0.0 && newest == max, "{device}: odometer {newest} at the newest fix, max {max}");
    }
}

/// The topic is deleted and created again while the pipeline is down (or the broker loses its
/// data: a Kafka container recreated without its volume): the processor that starts finds only
/// states of the old topic in storage.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_topic_recreated_while_the_pipeline_was_down_loses_no_position() {
    let name = unique("recreated_down");
    let clickhouse = clickhouse_config(&format!("fs_{name}"));
    let brokers = brokers();
    let start_pipeline =
        || Pipeline::start_on(&name, &brokers, clickhouse.clone(), IngestConfig::local(), ApiConfig::local());
    let pipeline = start_pipeline().await;
    let start = before(&pipeline).await;
    let kafka = pipeline.kafka.clone();
    pipeline.stop().await;
    recreate_topic(&kafka).await;
    let pipeline = start_pipeline().await;
    after(&pipeline, start).await;
    pipeline.stop().await;
}

async fn post_fix(pipeline: &Pipeline, device: &str, fix_ms: i64) {
    let lat = 40.6 + (fix_ms % 3_600_000) as f64 / 3_600_000.0 * 0.1;
    let body = serde_json::json!({"device_id": device, "fix_time": fix_ms, "lat": lat, "lon": -74.0});
    let url = format!("{}/v1/positions", pipeline.ingest_url);
    let response = reqwest::Client::new().post(url).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

/// Waits until every device has `n` stored positions.
async fn wait_stored(store: &Store, n: u64) {
    let expected: BTreeMap<String, u64> = DEVICES.iter().map(|d| (d.to_string(), n)).collect();
    let expected = &expected;
    eventually("every position stored", Duration::from_secs(60), || async move {
        let counts: Vec<(String, u64)> = store
            .query_trusted("SELECT device_id, count() FROM positions FINAL GROUP BY device_id ORDER BY device_id")
            .await
            .map_err(|e| e.to_string())?;
        let counts: BTreeMap<String, u64> = counts.into_iter().collect();
        if &counts == expected { Ok(()) } else { Err(format!("stored {counts:?}, expected {expected:?}")) }
    })
    .await
}

/// Deletes `positions.raw` and creates it again, empty, as the processors would.
async fn recreate_topic(kafka: &KafkaConfig) {
    let admin: AdminClient<DefaultClientContext> = kafka.client_config("test-admin").create().unwrap();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let deleted = admin.delete_topics(&[&kafka.positions_topic], &options).await.unwrap();
    assert!(deleted.iter().all(|r| r.is_ok()), "{deleted:?}");
    let topic = kafka.positions_topic.as_str();
    eventually("the topic recreated", Duration::from_secs(30), || async move {
        fleetstream_kafka::ensure_topics(kafka, &[topic]).await.map_err(|e| e.to_string())?;
        match support::topic_len(&kafka.brokers, topic) {
            0 => Ok(()),
            n => Err(format!("{n} messages still in it")),
        }
    })
    .await;
}
