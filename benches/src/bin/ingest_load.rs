//! Positions/s through `POST /v1/positions` (batches of 1 and of 100), against producing the
//! same payloads straight to Kafka with rdkafka (same producer settings) as the reference.
//!
//! Ingest runs in this process; the broker is the one in `FLEETSTREAM_BROKERS` (benches/ingest.sh
//! starts a local nisshi). Clients, ingest and broker share the machine's cores, so compare the
//! ratio, not the absolute numbers, across machines.
//!
//! benches/ingest.sh [POSITIONS_FOR_BATCH_100] [CONCURRENCY] [LINGER_MS]

use std::time::{Duration, Instant};

use fleetstream_benches::recorded_positions_json;
use fleetstream_ingest::{IngestConfig, Listeners};
use fleetstream_kafka::KafkaConfig;
use fleetstream_schemas::{Limits, parse_position};
use futures::StreamExt;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

fn arg(n: usize, default: usize) -> usize {
    std::env::args().nth(n).and_then(|a| a.parse().ok()).unwrap_or(default)
}

/// Posts `bodies` with `concurrency` requests in flight; returns the elapsed time.
async fn post_all(url: &str, bodies: Vec<String>, concurrency: usize) -> Duration {
    let client = reqwest::Client::new();
    let start = Instant::now();
    let statuses: Vec<u16> = futures::stream::iter(bodies)
        .map(|body| {
            let client = client.clone();
            async move { client.post(url).body(body).send().await.map(|r| r.status().as_u16()).unwrap_or(0) }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let took = start.elapsed();
    let bad = statuses.iter().filter(|s| **s != 200).count();
    assert_eq!(bad, 0, "{bad} requests were not answered 200");
    took
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let brokers = std::env::var("FLEETSTREAM_BROKERS").expect("FLEETSTREAM_BROKERS: run benches/ingest.sh");
    let n100 = arg(1, 100_000);
    let concurrency = arg(2, 64);
    let n1 = (n100 / 10).max(1_000);
    let linger_ms = arg(3, 5) as u64;
    let items = recorded_positions_json("nyharbor-2020-12-week1.csv.gz");
    let items: Vec<String> = items.into_iter().cycle().take(n100).collect();

    let run = format!("bench{}", std::process::id());
    let kafka = KafkaConfig::with_topic_suffix(&brokers, &run);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/v1/positions", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    let ingest = tokio::spawn(fleetstream_ingest::serve(
        IngestConfig { produce_linger_ms: linger_ms, ..IngestConfig::local() },
        kafka.clone(),
        None,
        Listeners { http: listener, osmand: None, teltonika: None, gt06: None },
        shutdown.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Reference: the exact payloads ingest produces, straight to the broker.
    let now = fleetstream_schemas::time::now_millis();
    let payloads: Vec<(String, Vec<u8>)> = items
        .iter()
        .map(|i| {
            let p = parse_position(i, now, &Limits::default()).unwrap();
            (p.device_id.clone(), p.to_message())
        })
        .collect();
    let producer: FutureProducer = kafka
        .durable_producer_config("bench-reference")
        .set("linger.ms", linger_ms.to_string())
        .set("queue.buffering.max.messages", "200000")
        .create()?;
    // Its own fresh topic, and the same window of messages in flight as the HTTP clients have
    // (`concurrency` requests of 100): enqueue a window, await its acknowledgements, repeat.
    let reference_topic = format!("bench.reference.{run}");
    fleetstream_kafka::ensure_topics(&kafka, &[reference_topic.as_str()]).await?;
    let window = concurrency * 100;
    let start = Instant::now();
    for chunk in payloads.chunks(window) {
        let deliveries: Vec<_> = chunk
            .iter()
            .map(|(key, payload)| {
                let record = FutureRecord::to(&reference_topic).key(key).payload(payload);
                producer.send_result(record).map_err(|(e, _)| e).expect("reference enqueue")
            })
            .collect();
        let results = futures::future::join_all(deliveries).await;
        assert!(results.iter().all(|r| matches!(r, Ok(Ok(_)))), "reference produce failed");
    }
    let tref = start.elapsed();

    // Warm-up: connections, topic metadata, producer id.
    post_all(&url, items[..200].to_vec(), concurrency).await;

    let ones: Vec<String> = items[..n1].to_vec();
    let t1 = post_all(&url, ones, concurrency).await;
    let hundreds: Vec<String> = items.chunks(100).map(|c| format!("[{}]", c.join(","))).collect();
    let t100 = post_all(&url, hundreds, concurrency).await;

    shutdown.cancel();
    ingest.await??;

    let rate = |n: usize, t: Duration| n as f64 / t.as_secs_f64();
    let (r1, r100, rref) = (rate(n1, t1), rate(n100, t100), rate(n100, tref));
    println!("concurrency {concurrency}, linger.ms {linger_ms}, broker {brokers}");
    println!(
        "POST batch of 1   : {n1:>7} positions in {:>7.2} s = {r1:>9.0} positions/s ({:.3} of reference)",
        t1.as_secs_f64(),
        r1 / rref
    );
    println!(
        "POST batch of 100 : {n100:>7} positions in {:>7.2} s = {r100:>9.0} positions/s ({:.3} of reference)",
        t100.as_secs_f64(),
        r100 / rref
    );
    println!("rdkafka reference : {n100:>7} messages  in {:>7.2} s = {rref:>9.0} messages/s", tref.as_secs_f64());
    Ok(())
}
