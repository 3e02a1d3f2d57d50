//! The broker dies in the middle of a load: devices get 503s with Retry-After, never a hang and
//! never a 2xx for a position that is not durable; after the broker is back, every position that
//! got a 2xx is in `positions.raw`.

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fleetstream_ingest::{IngestConfig, Listeners};
use fleetstream_kafka::KafkaConfig;
use fleetstream_schemas::ids::derived_event_id;
use serde_json::Value;
use support::{OwnBroker, read_topic, unique};
use tokio::net::TcpListener;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

const CLIENTS: usize = 8;
const BATCH: usize = 20;
const PRODUCE_TIMEOUT_MS: u64 = 3_000;

#[derive(Default)]
struct Outcome {
    acknowledged: Vec<String>,
    ok: usize,
    unavailable: usize,
    unavailable_without_retry_after: usize,
    other: Vec<String>,
    slowest: Duration,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_positions_survive_a_broker_crash() {
    let mut broker = OwnBroker::start("outage");
    let kafka = KafkaConfig::with_topic_suffix(&broker.brokers(), &unique("outage"));
    let config = IngestConfig { produce_timeout_ms: PRODUCE_TIMEOUT_MS, ..IngestConfig::local() };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/positions", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let ingest = tokio::spawn(fleetstream_ingest::serve(
        config,
        kafka.clone(),
        None,
        Listeners { http: listener, osmand: None, teltonika: None, gt06: None },
        shutdown.clone(),
    ));

    let outcome = Arc::new(Mutex::new(Outcome::default()));
    let start = Instant::now();
    let run_for = Duration::from_secs(10);
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (url, outcome) = (url.clone(), outcome.clone());
        clients.push(tokio::spawn(async move {
            // No request may take longer than the produce timeout plus slack: that would be a hang.
            let http = reqwest::Client::builder().timeout(Duration::from_millis(PRODUCE_TIMEOUT_MS + 7_000)).build().unwrap();
            let mut fix_ms = 1_607_389_900_000i64;
            while start.elapsed() < run_for {
                let batch: Vec<Value> = (0..BATCH)
                    .map(|_| {
                        fix_ms += 1_000;
                        serde_json::json!({"device_id": format!("client-{c}"), "fix_time": fix_ms, "lat": 40.7, "lon": -74.0})
                    })
                    .collect();
                let ids: Vec<String> = batch.iter().map(|p| derived_event_id(&format!("client-{c}"), p["fix_time"].as_i64().unwrap())).collect();
                let sent = Instant::now();
                let result = http.post(&url).json(&batch).send().await;
                let took = sent.elapsed();
                let mut o = outcome.lock().await;
                o.slowest = o.slowest.max(took);
                match result {
                    Ok(r) if r.status() == 200 => {
                        o.ok += 1;
                        o.acknowledged.extend(ids);
                    }
                    Ok(r) if r.status() == 503 => {
                        o.unavailable += 1;
                        if !r.headers().contains_key("retry-after") {
                            o.unavailable_without_retry_after += 1;
                        }
                    }
                    Ok(r) => o.other.push(format!("status {}", r.status())),
                    Err(e) => o.other.push(format!("request failed after {took:?}: {e}")),
                }
                drop(o);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }

    tokio::time::sleep(Duration::from_millis(1_500)).await;
    broker.kill();
    let killed_at = start.elapsed();
    tokio::time::sleep(Duration::from_millis(4_000)).await;
    broker.restart();
    let restarted_at = start.elapsed();
    for client in clients {
        client.await.unwrap();
    }
    shutdown.cancel();
    ingest.await.unwrap().unwrap();

    let o = outcome.lock().await;
    eprintln!(
        "broker killed at {killed_at:?}, back at {restarted_at:?}: {} requests 200 ({} positions), {} requests 503, slowest answer {:?}",
        o.ok,
        o.acknowledged.len(),
        o.unavailable,
        o.slowest
    );
    assert!(o.other.is_empty(), "every answer is a 200 or a 503: {:?}", o.other);
    assert!(o.unavailable > 0, "the outage was answered with 503s");
    assert_eq!(o.unavailable_without_retry_after, 0, "every 503 carries Retry-After");
    assert!(o.ok > 0, "positions were acknowledged");
    assert!(o.slowest <= Duration::from_millis(PRODUCE_TIMEOUT_MS + 2_000), "slowest answer took {:?}", o.slowest);

    let stored: HashSet<String> = read_topic(&kafka.brokers, &kafka.positions_topic)
        .iter()
        .map(|m| serde_json::from_slice::<Value>(m).unwrap()["event_id"].as_str().unwrap().to_string())
        .collect();
    let missing: Vec<&String> = o.acknowledged.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged positions are not in the topic, e.g. {:?}",
        missing.len(),
        o.acknowledged.len(),
        &missing[..missing.len().min(5)]
    );
    eprintln!(
        "all {} acknowledged positions are in {} ({} messages there)",
        o.acknowledged.len(),
        kafka.positions_topic,
        stored.len()
    );
}
