//! Faults that real deployments see, each with healthy devices' traffic flowing through it:
//! ClickHouse stopped for 20 s and restarted, the broker killed and restarted, a processor
//! killed mid-batch. After each, every acknowledged position is stored exactly once with its
//! enrichment, both output topics hold every position and event exactly once per id (newest
//! version kept), nothing is dead-lettered, and the pipeline moved on by itself within seconds
//! of the fault ending. Each test prints its figures (positions during the fault, recovery).
//!
//! These tests stop and start servers of their own (a ClickHouse 18.16 server, a durable broker,
//! `fleetstream process` children), so they run in the ClickHouse-server pass of `scripts/test`
//! only: the embedded engine is not a process that can be stopped apart from its user.

mod support;

use std::time::Duration;

use fleetstream_api::ApiConfig;
use fleetstream_ingest::IngestConfig;
use fleetstream_kafka::KafkaConfig;
use fleetstream_storage::Store;
use support::traffic::{Traffic, TrafficReport, assert_no_dead_letters, put_east_fence, verify_outputs, wait_stored};
use support::{OwnBroker, OwnClickHouse, Pipeline, brokers, clickhouse_config, eventually, spawn_processor, unique};

const DEVICES: usize = 8;
const PAUSE: Duration = Duration::from_millis(50);

/// When a fault began and ended, in traffic time.
struct Outage {
    from: Duration,
    to: Duration,
}

/// What happened around one fault.
struct Figures {
    report: TrafficReport,
    outage: Outage,
    /// From the end of the fault to the first fix posted after it being stored.
    recovered: Duration,
    /// From the end of the traffic to every acknowledged fix being stored.
    caught_up: Duration,
}

impl Figures {
    /// Positions acknowledged to devices while the fault lasted.
    fn during(&self) -> usize {
        self.report.acknowledged_at.values().filter(|at| **at >= self.outage.from && **at < self.outage.to).count()
    }

    fn answers(&self) -> String {
        self.report.answers.iter().map(|(kind, n)| format!("{n} x {kind}")).collect::<Vec<_>>().join(", ")
    }

    /// The checks every fault ends with, and its figures printed as `what`.
    async fn check(&self, what: &str, store: &Store, kafka: &KafkaConfig) {
        let (positions, events) = verify_outputs(store, kafka, &self.report, "dev").await;
        assert_no_dead_letters(kafka);
        eprintln!(
            "{what} {:?}..{:?} of traffic: {} positions acknowledged meanwhile; new fixes stored {:?} after it ended, \
             the backlog {:?} after traffic stopped; {positions} positions and {events} events, each stored once and \
             once per id on both topics; answers to devices: {}",
            self.outage.from,
            self.outage.to,
            self.during(),
            self.recovered,
            self.caught_up,
            self.answers()
        );
        assert!(self.recovered < Duration::from_secs(30), "the pipeline took {:?} to move again", self.recovered);
    }
}

/// Healthy devices post to `ingest_url` while `fault` breaks something and repairs it; then the
/// traffic goes on a little, stops, and the backlog is awaited.
async fn under_traffic(ingest_url: &str, store: &Store, fault: impl AsyncFnOnce(&Traffic) -> Outage) -> Figures {
    let traffic = Traffic::start(ingest_url, "dev", DEVICES, PAUSE);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let outage = fault(&traffic).await;
    let recovered = recovery(store, &traffic.prefix).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = traffic.stop().await;
    let caught_up = wait_stored(store, "dev", &report, Duration::from_secs(120)).await;
    Figures { report, outage, recovered, caught_up }
}

/// How long until a fix posted from now on is stored: the pipeline moving again.
async fn recovery(store: &Store, prefix: &str) -> Duration {
    let started = std::time::Instant::now();
    let since_ms = fleetstream_schemas::time::now_millis();
    let sql = format!(
        "SELECT count() FROM positions WHERE startsWith(device_id, '{prefix}-') AND received_at_ms >= {since_ms}"
    );
    let sql = sql.as_str();
    eventually("a fix posted after the fault stored", Duration::from_secs(60), move || async move {
        match store.query_trusted::<u64>(sql).await {
            Ok(rows) if rows.first().copied().unwrap_or(0) > 0 => Ok(()),
            Ok(_) => Err("none yet".to_string()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clickhouse_stopped_for_20_seconds() {
    let mut clickhouse = OwnClickHouse::start("fault-clickhouse");
    let name = unique("chstop");
    let config = clickhouse.config(&format!("fs_{name}"));
    let pipeline = Pipeline::start_on(&name, &brokers(), config, IngestConfig::local(), ApiConfig::local()).await;
    put_east_fence(&pipeline.store).await;
    let figures = under_traffic(&pipeline.ingest_url, &pipeline.store, async |traffic: &Traffic| {
        clickhouse.kill();
        let from = traffic.elapsed();
        tokio::time::sleep(Duration::from_secs(20)).await;
        clickhouse.restart();
        Outage { from, to: traffic.elapsed() }
    })
    .await;
    let (store, kafka) = (pipeline.store.clone(), pipeline.kafka.clone());
    pipeline.stop().await;

    figures.check("ClickHouse down", &store, &kafka).await;
    assert!(figures.during() > 0, "devices were acknowledged while ClickHouse was down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_killed_and_restarted() {
    let mut broker = OwnBroker::start("fault-broker");
    let name = unique("brokerkill");
    let ingest = IngestConfig { produce_timeout_ms: 3_000, ..IngestConfig::local() };
    let clickhouse = clickhouse_config(&format!("fs_{name}"));
    let pipeline = Pipeline::start_on(&name, &broker.brokers(), clickhouse, ingest, ApiConfig::local()).await;
    put_east_fence(&pipeline.store).await;
    let figures = under_traffic(&pipeline.ingest_url, &pipeline.store, async |traffic: &Traffic| {
        broker.kill();
        let from = traffic.elapsed();
        tokio::time::sleep(Duration::from_secs(5)).await;
        broker.restart();
        Outage { from, to: traffic.elapsed() }
    })
    .await;
    let (store, kafka) = (pipeline.store.clone(), pipeline.kafka.clone());
    pipeline.stop().await;

    figures.check("broker down", &store, &kafka).await;
    assert!(figures.report.answers.get("503").copied().unwrap_or(0) > 0, "devices were told to retry meanwhile");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn processor_killed_mid_batch() {
    support::init_logs();
    let name = unique("prockill");
    let kafka = KafkaConfig::with_topic_suffix(&brokers(), &name);
    let clickhouse = clickhouse_config(&format!("fs_{name}"));
    let store = Store::open(&clickhouse).await.unwrap();
    put_east_fence(&store).await;
    // Ingest in this process; the processor a child, killed with SIGKILL.
    let ingest_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ingest_url = format!("http://{}", ingest_listener.local_addr().unwrap());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let listeners = fleetstream_ingest::Listeners { http: ingest_listener, osmand: None, teltonika: None, gt06: None };
    let ingest = tokio::spawn(fleetstream_ingest::serve(
        IngestConfig::local(),
        kafka.clone(),
        None,
        listeners,
        shutdown.clone(),
    ));
    let (group, env) = (format!("group-{name}"), PROCESSOR_ENV);
    let mut processor = spawn_processor(&kafka, &clickhouse, &group, env);
    let figures = under_traffic(&ingest_url, &store, async |traffic: &Traffic| {
        // Kill it while it writes: once rows arrive, at a moment that is not a batch boundary on
        // purpose (batches every 200 ms, the kill lands anywhere within one).
        let sql = "SELECT count() FROM positions WHERE startsWith(device_id, 'dev-')";
        eventually("the processor writing", Duration::from_secs(60), || async {
            let n: Vec<u64> = store.query_trusted(sql).await.map_err(|e| e.to_string())?;
            if n[0] > 200 { Ok(()) } else { Err(format!("{} rows", n[0])) }
        })
        .await;
        tokio::time::sleep(Duration::from_millis(137)).await;
        processor.kill().unwrap();
        processor.wait().unwrap();
        let from = traffic.elapsed();
        tokio::time::sleep(Duration::from_secs(2)).await;
        processor = spawn_processor(&kafka, &clickhouse, &group, env);
        Outage { from, to: traffic.elapsed() }
    })
    .await;
    // Let it finish the topics too: SIGTERM stops it gracefully (batch written, offsets committed).
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(processor.id() as libc::pid_t, libc::SIGTERM) };
    processor.wait().unwrap();
    shutdown.cancel();
    ingest.await.unwrap().unwrap();

    figures.check("processor killed and restarted", &store, &kafka).await;
}

/// The killed processor's settings: a dead member leaves the group after 6 s, small batches.
const PROCESSOR_ENV: &[(&str, &str)] = &[
    ("FLEETSTREAM_SESSION_TIMEOUT_MS", "6000"),
    ("FLEETSTREAM_BATCH_MAX_WAIT_MS", "200"),
    ("FLEETSTREAM_FENCES_POLL_MS", "500"),
];

/// A fence table that cannot be read for a while (here: a column an operator dropped and then
/// added back; in real life a ClickHouse blip between the two queries of a poll) must not leave
/// the processor without fences once it can be read again. (The poll used to record the newest
/// fence version as loaded before reading the fences: when that read failed, the processor never
/// loaded them again until someone changed a fence.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fences_that_failed_to_load_are_loaded_once_they_can_be() {
    let pipeline = Pipeline::start("stale_fences").await;
    // A running processor, its fences (none yet) loaded.
    let start = fleetstream_schemas::time::now_millis() - 180_000;
    post_fix(&pipeline, "visitor", start).await;
    wait_fix_stored(&pipeline.store, "visitor", start).await;

    // A fence is added; then the fences cannot be read, but their version can.
    put_pier(&pipeline).await;
    pipeline.store.execute_trusted("ALTER TABLE geofences DROP COLUMN name").await.unwrap();
    assert!(pipeline.store.live_fences().await.is_err(), "the fence table is unreadable");
    assert!(pipeline.store.fences_version().await.is_ok(), "its version is readable");

    // The processor has polled since: it tried to load the new fence and failed (or, when its
    // poll fell between the fence and the broken table, loaded it, which the rest allows for).
    let newest = pipeline.store.fences_version().await.unwrap() as i64;
    let (failures, loaded) =
        (&pipeline.processor_metrics.reference_refresh_failures, &pipeline.processor_metrics.fences_version);
    let before = failures.get();
    eventually("the processor polling the fences", Duration::from_secs(30), || {
        let (failed, version) = (failures.get(), loaded.get());
        async move {
            if failed > before || version >= newest {
                Ok(())
            } else {
                Err(format!("{failed} failures, version {version}"))
            }
        }
    })
    .await;
    let first = start + 60_000;
    post_fix(&pipeline, "visitor", first).await;
    wait_fix_stored(&pipeline.store, "visitor", first).await;

    // The operator repairs the table; no fence changes.
    pipeline.store.execute_trusted("ALTER TABLE geofences ADD COLUMN name String").await.unwrap();
    assert_eq!(pipeline.store.live_fences().await.unwrap().len(), 1, "the fence table is readable again");
    pipeline.wait_fences_loaded().await;

    let second = first + 60_000;
    post_fix(&pipeline, "visitor", second).await;
    wait_fix_stored(&pipeline.store, "visitor", second).await;
    let in_pier: Vec<u8> = pipeline
        .store
        .query_trusted(&format!(
            "SELECT has(fence_ids, 'pier') FROM positions FINAL WHERE device_id = 'visitor' AND fix_time_ms = {second}"
        ))
        .await
        .unwrap();
    let events = pipeline.store.geofence_events(i64::MIN, i64::MAX, 100).await.unwrap();
    assert_eq!(
        (in_pier[0], events.len()),
        (1, 1),
        "a fix inside the pier once its fence can be read again: stored in the pier, and an enter event"
    );
    pipeline.stop().await;
}

/// A processor that starts (after a crash, a deploy, a rebalance onto a new instance) while the
/// fences cannot be read processes its first batches with no fences at all: to the geofence
/// rules a fence missing from the index was deleted, so every device its stored state has
/// inside a fence gets an exit it never made, and an enter once the fences are back. The
/// processor must wait for the fences as it waits for device states, not run without them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_processor_that_starts_while_fences_cannot_be_read_makes_no_false_exits() {
    let name = unique("fenceless_start");
    let clickhouse = clickhouse_config(&format!("fs_{name}"));
    let brokers = brokers();
    let start = || Pipeline::start_on(&name, &brokers, clickhouse.clone(), IngestConfig::local(), ApiConfig::local());
    let first = fleetstream_schemas::time::now_millis() - 300_000;

    let pipeline = start().await;
    put_pier(&pipeline).await;
    post_fix(&pipeline, "visitor", first).await;
    wait_fix_stored(&pipeline.store, "visitor", first).await;
    pipeline.stop().await;

    // A new processor; its fences cannot be read (their version can) while its first batch comes.
    let pipeline = start().await;
    pipeline.store.execute_trusted("ALTER TABLE geofences DROP COLUMN name").await.unwrap();
    post_fix(&pipeline, "visitor", first + 60_000).await;
    // The processor has the batch and is waiting for the fences, retrying.
    let retries = pipeline.processor_metrics.retries.clone();
    let label = fleetstream_processors::metrics::OperationLabel { operation: "load fences, alert rules and registry" };
    eventually("the processor retrying the fences", Duration::from_secs(30), || {
        let count = retries.get_or_create(&label).get();
        async move { if count >= 1 { Ok(()) } else { Err("no retry yet".to_string()) } }
    })
    .await;
    pipeline.store.execute_trusted("ALTER TABLE geofences ADD COLUMN name String").await.unwrap();
    wait_fix_stored(&pipeline.store, "visitor", first + 60_000).await;
    post_fix(&pipeline, "visitor", first + 120_000).await;
    wait_fix_stored(&pipeline.store, "visitor", first + 120_000).await;

    let in_pier: Vec<u8> = pipeline
        .store
        .query_trusted(
            "SELECT has(fence_ids, 'pier') FROM positions FINAL WHERE device_id = 'visitor' ORDER BY fix_time_ms",
        )
        .await
        .unwrap();
    let events: Vec<String> = pipeline
        .store
        .geofence_events(i64::MIN, i64::MAX, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| format!("{} at +{} s", e.event_type.as_str(), (e.event_time_ms - first) / 1000))
        .collect();
    assert_eq!(
        (in_pier, events),
        (vec![1, 1, 1], vec!["enter at +0 s".to_string()]),
        "three fixes inside the pier: each stored in it, and one enter"
    );
    pipeline.stop().await;
}

/// Fence `pier`: 1 km around (40.7, -74.0), through the API.
async fn put_pier(pipeline: &Pipeline) {
    let pier = serde_json::json!({"type": "Feature", "properties": {"name": "Pier", "radius_m": 1000},
        "geometry": {"type": "Point", "coordinates": [-74.0, 40.7]}});
    let url = format!("{}/v1/fences/pier", pipeline.api_url);
    assert_eq!(reqwest::Client::new().put(url).json(&pier).send().await.unwrap().status(), 200);
}

/// Posts a fix of `device` at (40.7, -74.0), in the pier.
async fn post_fix(pipeline: &Pipeline, device: &str, fix_ms: i64) {
    let body = serde_json::json!({"device_id": device, "fix_time": fix_ms, "lat": 40.7, "lon": -74.0});
    let url = format!("{}/v1/positions", pipeline.ingest_url);
    assert_eq!(reqwest::Client::new().post(url).json(&body).send().await.unwrap().status(), 200);
}

async fn wait_fix_stored(store: &Store, device: &str, fix_ms: i64) {
    let sql = format!("SELECT count() FROM positions WHERE device_id = '{device}' AND fix_time_ms = {fix_ms}");
    let sql = sql.as_str();
    eventually("the fix stored", Duration::from_secs(30), || async move {
        let n: Vec<u64> = store.query_trusted(sql).await.map_err(|e| e.to_string())?;
        if n[0] > 0 { Ok(()) } else { Err("not yet".into()) }
    })
    .await
}
