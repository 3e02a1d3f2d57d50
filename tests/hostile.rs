//! Inputs real fleets send that must never stop the processors or degrade a stored row, each
//! through the whole pipeline on the real broker and ClickHouse (both engines):
//! - a decade of history in one request (more months than ClickHouse takes in one INSERT);
//! - 6,000 new devices with 120-byte ids in one request (more ids than one state query holds);
//! - retransmitted older fixes (a tracker resending what it got no acknowledgement for);
//! - a row ClickHouse refuses for what it is, and payloads that are not positions: set aside on
//!   `processing.dlq` with the stage and the error, counted, and the partition moves on.
//!
//! After each, a healthy device's fix posted next is stored within seconds.

mod support;

use std::time::{Duration, Instant};

use fleetstream_schemas::processing_dlq::{PROCESSING_DEAD_LETTER_JSON_SCHEMA, ProcessingDeadLetter, Stage};
use fleetstream_schemas::time::parse_rfc3339_millis;
use fleetstream_storage::PositionRow;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};
use support::{Pipeline, eventually, query_one, read_contract_topic};

async fn post(pipeline: &Pipeline, body: &Value) -> Value {
    let client = reqwest::Client::new();
    let response = client.post(format!("{}/v1/positions", pipeline.ingest_url)).json(body).send().await.unwrap();
    let status = response.status();
    let report: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{report}");
    report
}

async fn stored(pipeline: &Pipeline, device: &str) -> u64 {
    let sql = format!("SELECT count() FROM positions FINAL WHERE device_id = '{device}'");
    query_one(&pipeline.store, &sql).await
}

/// Posts one fix of a healthy device and returns how long until it was stored.
async fn healthy_fix_stored(pipeline: &Pipeline, device: &str) -> Duration {
    let fix_ms = fleetstream_schemas::time::now_millis() - 1_000;
    post(pipeline, &json!({"device_id": device, "fix_time": fix_ms, "lat": 40.7, "lon": -74.0})).await;
    let started = Instant::now();
    let sql = format!("SELECT count() FROM positions WHERE device_id = '{device}' AND fix_time_ms = {fix_ms}");
    let sql = sql.as_str();
    eventually("a healthy device's next fix stored", Duration::from_secs(20), || async {
        let n: u64 = query_one(&pipeline.store, sql).await;
        if n > 0 { Ok(()) } else { Err("not yet".into()) }
    })
    .await;
    started.elapsed()
}

fn letters(pipeline: &Pipeline) -> Vec<ProcessingDeadLetter> {
    let (brokers, topic) = (&pipeline.kafka.brokers, &pipeline.kafka.processing_dlq_topic);
    read_contract_topic(brokers, topic, PROCESSING_DEAD_LETTER_JSON_SCHEMA)
        .into_iter()
        .map(|m| serde_json::from_value(m).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_decade_of_history_in_one_request_is_stored_whole() {
    let pipeline = Pipeline::start("decade").await;
    let fixes: Vec<Value> = (0..120)
        .map(|m| {
            let ts = format!("{}-{:02}-15T12:00:00Z", 2010 + m / 12, m % 12 + 1);
            json!({"device_id": "importer", "fix_time": ts, "lat": 40.0 + m as f64 * 0.01, "lon": -74.0})
        })
        .collect();
    assert_eq!(post(&pipeline, &Value::Array(fixes)).await["accepted"], 120);

    let took = healthy_fix_stored(&pipeline, "healthy").await;
    eventually("the whole decade stored", Duration::from_secs(20), || async {
        let n = stored(&pipeline, "importer").await;
        if n == 120 { Ok(()) } else { Err(format!("{n} of 120")) }
    })
    .await;
    let (total, summed): (f64, f64) = query_one(
        &pipeline.store,
        "SELECT argMax(distance_total_m, fix_time_ms), sum(ifNull(distance_m, 0)) FROM positions FINAL WHERE device_id = 'importer'",
    )
    .await;
    assert!((total - summed).abs() < 1e-6 && total > 100_000.0, "odometer {total} vs distances {summed}");
    assert!(letters(&pipeline).is_empty(), "nothing set aside");
    eprintln!("120 months in one request stored whole; the next healthy fix stored after {took:?}");
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn six_thousand_new_devices_with_long_ids_in_one_request() {
    let pipeline = Pipeline::start("newdevices").await;
    let fix_ms = fleetstream_schemas::time::now_millis() - 60_000;
    let fixes: Vec<Value> = (0..6_000)
        .map(|i| {
            let id = format!("burst-{i:06}-{}", "x".repeat(107));
            assert_eq!(id.len(), 120);
            json!({"device_id": id, "fix_time": fix_ms, "lat": 40.7, "lon": -74.0})
        })
        .collect();
    assert_eq!(post(&pipeline, &Value::Array(fixes)).await["accepted"], 6_000);

    let took = healthy_fix_stored(&pipeline, "healthy").await;
    eventually("every new device stored", Duration::from_secs(30), || async {
        let n: u64 =
            query_one(&pipeline.store, "SELECT count() FROM positions FINAL WHERE startsWith(device_id, 'burst-')")
                .await;
        if n == 6_000 { Ok(()) } else { Err(format!("{n} of 6000")) }
    })
    .await;
    // A second fix of each: their states are loaded back, in chunks, and the chain continues.
    let fixes: Vec<Value> = (0..6_000)
        .map(|i| json!({"device_id": format!("burst-{i:06}-{}", "x".repeat(107)), "fix_time": fix_ms + 1_000, "lat": 40.701, "lon": -74.0}))
        .collect();
    post(&pipeline, &Value::Array(fixes)).await;
    eventually("every device's second fix chained to its first", Duration::from_secs(30), || async {
        let n: u64 = query_one(
            &pipeline.store,
            &format!(
                "SELECT count() FROM positions FINAL WHERE startsWith(device_id, 'burst-') AND prev_fix_ms = {fix_ms}"
            ),
        )
        .await;
        if n == 6_000 { Ok(()) } else { Err(format!("{n} of 6000")) }
    })
    .await;
    assert!(letters(&pipeline).is_empty(), "nothing set aside");
    eprintln!("6,000 new devices with 120-byte ids in one request; the next healthy fix stored after {took:?}");
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retransmitted_older_fixes_never_degrade_a_stored_row() {
    let pipeline = Pipeline::start("retransmit").await;
    let at = |minute: u32| format!("2024-03-01T08:0{minute}:00Z");
    let fix = |minute: u32| json!({"device_id": "tracker", "fix_time": at(minute), "lat": 40.0 + f64::from(minute) * 0.01, "lon": -74.0});
    for minute in 0..3 {
        post(&pipeline, &fix(minute)).await;
    }
    eventually("three fixes stored", Duration::from_secs(20), || async {
        let n = stored(&pipeline, "tracker").await;
        if n == 3 { Ok(()) } else { Err(format!("{n} of 3")) }
    })
    .await;
    let day =
        (parse_rfc3339_millis("2024-03-01T00:00:00Z").unwrap(), parse_rfc3339_millis("2024-03-02T00:00:00Z").unwrap());
    let original: Vec<PositionRow> = pipeline.store.track("tracker", day.0, day.1, 100).await.unwrap();
    let report = pipeline.store.distance_per_day("tracker", day.0, day.1, 10).await.unwrap();
    assert!((report[0].2 - 2_223.9).abs() < 1.0, "{report:?}");

    // The tracker resends what it got no answer for: one at a time, in any order, in batches.
    post(&pipeline, &fix(1)).await;
    post(&pipeline, &fix(0)).await;
    post(&pipeline, &fix(2)).await;
    for _ in 0..2 {
        post(&pipeline, &json!([fix(2), fix(0), fix(1)])).await;
    }
    // A new fix after the resends: once it is stored, every resend before it has been applied.
    post(&pipeline, &fix(3)).await;
    eventually("the next fix stored", Duration::from_secs(20), || async {
        let n = stored(&pipeline, "tracker").await;
        if n == 4 { Ok(()) } else { Err(format!("{n} of 4")) }
    })
    .await;

    let now: Vec<PositionRow> = pipeline.store.track("tracker", day.0, day.1, 100).await.unwrap();
    assert_eq!(&now[..3], &original[..], "the stored rows are exactly as first enriched");
    assert_eq!(now[3].prev_fix_ms, Some(original[2].fix_time_ms), "the chain goes on from the newest fix");
    let report = pipeline.store.distance_per_day("tracker", day.0, day.1, 10).await.unwrap();
    assert!((report[0].2 - 3_335.8).abs() < 1.0, "distance report unchanged by resends: {report:?}");
    assert_eq!(report[0].3, 4, "each position counted once");
    let late: u64 = pipeline.processor_metrics.late_positions.get();
    let duplicates: u64 = pipeline.processor_metrics.duplicates.get();
    eprintln!("9 resends: {late} stored as late copies (which lose to the enriched rows), {duplicates} ignored");
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_row_clickhouse_refuses_is_set_aside_and_the_partition_moves_on() {
    let pipeline = Pipeline::start("poisonrow").await;
    // Make ClickHouse refuse one device's rows for what they are, as a constraint would.
    pipeline
        .store
        .execute_trusted(
            "CREATE MATERIALIZED VIEW poison_guard ENGINE = Memory AS \
             SELECT throwIf(device_id = 'poison') AS refused FROM positions",
        )
        .await
        .unwrap();
    let t0 = fleetstream_schemas::time::now_millis() - 60_000;
    let fix = |device: &str, i: i64| json!({"device_id": device, "fix_time": t0 + i * 1_000, "lat": 40.7, "lon": -74.0 + i as f64 * 0.001});
    let body = json!([fix("healthy", 0), fix("poison", 0), fix("healthy", 1), fix("poison", 1), fix("healthy", 2)]);
    assert_eq!(post(&pipeline, &body).await["accepted"], 5);

    let took = healthy_fix_stored(&pipeline, "healthy").await;
    assert_eq!(stored(&pipeline, "healthy").await, 4, "every healthy position stored once");
    let letters = eventually("two dead letters", Duration::from_secs(20), || async {
        let l = letters(&pipeline);
        if l.len() == 2 { Ok(l) } else { Err(format!("{} letters", l.len())) }
    })
    .await;
    for letter in &letters {
        assert_eq!(letter.stage, Stage::StorePosition);
        assert_eq!(letter.device_id.as_deref(), Some("poison"));
        assert!(letter.error.contains("Code: 395"), "the ClickHouse error: {}", letter.error);
        assert_eq!(letter.item.as_ref().unwrap()["device_id"], "poison", "the row itself");
    }
    assert_eq!(pipeline.processor_metrics.dead_letter_count(Stage::StorePosition), 2);
    eprintln!("2 refused rows set aside; the next healthy fix stored after {took:?}");
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn messages_that_are_not_positions_are_set_aside() {
    let pipeline = Pipeline::start("undecodable").await;
    let producer: FutureProducer = pipeline.kafka.durable_producer_config("test-garbage").create().unwrap();
    let newer = json!({"v": 99, "event_id": "x", "device_id": "future", "fix_time_ms": 1, "received_at_ms": 1, "lat": 0.0, "lon": 0.0});
    let payloads: Vec<Vec<u8>> =
        vec![b"not json".to_vec(), newer.to_string().into_bytes(), Vec::new(), vec![0xff; 40_000]];
    for payload in &payloads {
        let record = FutureRecord::to(&pipeline.kafka.positions_topic).key("garbage").payload(payload);
        producer.send(record, Duration::from_secs(10)).await.unwrap();
    }
    let took = healthy_fix_stored(&pipeline, "healthy").await;
    let letters = eventually("four dead letters", Duration::from_secs(20), || async {
        let l = letters(&pipeline);
        if l.len() == 4 { Ok(l) } else { Err(format!("{} letters", l.len())) }
    })
    .await;
    assert!(letters.iter().all(|l| l.stage == Stage::Decode), "{letters:#?}");
    let raw = |text: &str| letters.iter().find(|l| l.raw.as_deref() == Some(text));
    assert!(raw("not json").is_some(), "{letters:#?}");
    assert!(raw(&newer.to_string()).unwrap().error.contains("newer"), "{letters:#?}");
    assert!(raw("").is_some(), "{letters:#?}");
    let big = letters.iter().map(|l| l.raw.as_ref().unwrap().len()).max().unwrap();
    assert!(big > 1_000 && big <= 16 * 1024, "a large payload is kept, cut: {big} bytes");
    assert_eq!(pipeline.processor_metrics.dead_letter_count(Stage::Decode), 4);
    eprintln!("4 undecodable messages set aside; the next healthy fix stored after {took:?}");
    pipeline.stop().await;
}
