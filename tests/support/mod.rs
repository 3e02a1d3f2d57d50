//! Shared scaffolding for the end-to-end tests: the real services `scripts/test` started, a
//! private topic, group and database per test, the pipeline running in-process, and the
//! recorded AIS data from `data/`.

#![allow(dead_code)]

pub mod own;
pub mod pki;
pub mod sse;
pub mod traffic;
pub mod week;

#[allow(unused_imports)]
pub use own::{OwnBroker, OwnClickHouse};

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fleetstream_api::ApiConfig;
use fleetstream_ingest::{IngestConfig, Listeners, RegistryStore};
use fleetstream_kafka::KafkaConfig;
use fleetstream_processors::ProcessorConfig;
use fleetstream_storage::{ClickHouseConfig, Store};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use fleetstream_storage::testing::required_env;

/// The nisshi binary `scripts/test` built.
pub fn nisshi() -> String {
    required_env("FLEETSTREAM_TEST_NISSHI")
}

pub fn brokers() -> String {
    required_env("FLEETSTREAM_TEST_BROKERS")
}

/// The ClickHouse configuration for `database` on this run's engine (`FLEETSTREAM_TEST_ENGINE`).
pub fn clickhouse_config(database: &str) -> ClickHouseConfig {
    fleetstream_storage::testing::config(database)
}

/// Runs a query of the test's own on the store and returns the first row.
pub async fn query_one<T: fleetstream_storage::ReadRow>(store: &Store, sql: &str) -> T {
    store.query_trusted::<T>(sql).await.unwrap().into_iter().next().expect("a row")
}

/// GETs `url` and returns its JSON body, asserting a 200.
pub async fn get_json(client: &reqwest::Client, url: &str) -> serde_json::Value {
    let response = client.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    response.json().await.unwrap()
}

/// Shows the services' warnings and errors in the output of a failing test (`RUST_LOG` overrides).
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn,rdkafka=error".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
}

/// A name no other test (or earlier run against the same services) uses.
pub fn unique(tag: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("{tag}_{}_{}", std::process::id(), nanos % 10_000_000_000)
}

/// Polls `probe` every 100 ms until it answers `Ok(value)`, and fails the test once `within` has
/// passed, saying `what` was awaited and the probe's last `Err(progress)`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(progress) => {
                assert!(tokio::time::Instant::now() < deadline, "{what}: not so after {within:?}: {progress}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The whole pipeline, in this process, on the real services.
pub struct Pipeline {
    pub ingest_url: String,
    pub osmand_url: String,
    /// The Teltonika and GT06 tracker ports, `host:port`.
    pub teltonika_addr: String,
    pub gt06_addr: String,
    pub api_url: String,
    pub kafka: KafkaConfig,
    pub clickhouse: ClickHouseConfig,
    pub store: Store,
    /// The processor's counters (dead letters, retries, late positions...).
    pub processor_metrics: fleetstream_processors::Metrics,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
}

impl Pipeline {
    pub async fn start(tag: &str) -> Pipeline {
        Pipeline::start_with(tag, IngestConfig::local(), ApiConfig::local()).await
    }

    pub async fn start_with(tag: &str, ingest_config: IngestConfig, api_config: ApiConfig) -> Pipeline {
        let name = unique(tag);
        let clickhouse = clickhouse_config(&format!("fs_{name}"));
        Pipeline::start_on(&name, &brokers(), clickhouse, ingest_config, api_config).await
    }

    /// The pipeline on a broker and ClickHouse of the caller's choice (e.g. its own, to stop).
    pub async fn start_on(
        name: &str,
        brokers: &str,
        clickhouse: ClickHouseConfig,
        ingest_config: IngestConfig,
        api_config: ApiConfig,
    ) -> Pipeline {
        init_logs();
        let kafka = KafkaConfig::with_topic_suffix(brokers, name);
        let store = Store::open(&clickhouse).await.expect("open ClickHouse store");
        let shutdown = CancellationToken::new();
        let processor_metrics = fleetstream_processors::Metrics::default();

        let ingest_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let osmand_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let teltonika_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gt06_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let teltonika_addr = teltonika_listener.local_addr().unwrap().to_string();
        let gt06_addr = gt06_listener.local_addr().unwrap().to_string();
        let api_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ingest_url = format!("http://{}", ingest_listener.local_addr().unwrap());
        let osmand_url = format!("http://{}", osmand_listener.local_addr().unwrap());
        let api_url = format!("http://{}", api_listener.local_addr().unwrap());
        let tasks = vec![
            tokio::spawn(fleetstream_ingest::serve(
                ingest_config,
                kafka.clone(),
                // The store is open already (an embedded engine can be opened only once).
                Some(RegistryStore::Open(store.clone())),
                Listeners {
                    http: ingest_listener,
                    osmand: Some(osmand_listener),
                    teltonika: Some(teltonika_listener),
                    gt06: Some(gt06_listener),
                },
                shutdown.clone(),
            )),
            tokio::spawn(fleetstream_processors::run(
                ProcessorConfig::local(&format!("group-{name}")),
                kafka.clone(),
                store.clone(),
                processor_metrics.clone(),
                shutdown.clone(),
            )),
            tokio::spawn(fleetstream_api::serve_with(
                api_config,
                store.clone(),
                Some(kafka.clone()),
                api_listener,
                shutdown.clone(),
            )),
        ];
        let pipeline = Pipeline {
            ingest_url,
            osmand_url,
            teltonika_addr,
            gt06_addr,
            api_url,
            kafka,
            clickhouse,
            store,
            processor_metrics,
            shutdown,
            tasks,
        };
        pipeline.wait_ready().await;
        pipeline
    }

    async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        for url in [format!("{}/readyz", self.ingest_url), format!("{}/readyz", self.api_url)] {
            let (client, url) = (&client, url.as_str());
            eventually(url, Duration::from_secs(30), move || async move {
                match client.get(url).send().await {
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(format!("status {}", r.status())),
                    Err(e) => Err(e.to_string()),
                }
            })
            .await;
        }
    }

    /// Stops every service and checks each one stopped cleanly and promptly.
    /// Until the processor uses the newest fences (its `fences_version` gauge): it loads them
    /// between batches, once per poll interval.
    pub async fn wait_fences_loaded(&self) {
        let newest = self.store.fences_version().await.unwrap() as i64;
        let gauge = self.processor_metrics.fences_version.clone();
        eventually("the processor loading the newest fences", Duration::from_secs(30), || {
            let loaded = gauge.get();
            async move { if loaded >= newest { Ok(()) } else { Err(format!("version {loaded} of {newest}")) } }
        })
        .await;
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("a service did not stop within 30 s of shutdown")
                .expect("a service panicked")
                .expect("a service failed");
        }
    }
}

/// One row of a `data/nyharbor-*.csv.gz` file: `ts,device_id,lat,lon`.
#[derive(Debug, Clone)]
pub struct Fix {
    pub ts: String,
    pub device_id: String,
    pub lat: f64,
    pub lon: f64,
}

pub fn data_dir() -> PathBuf {
    std::env::var_os("FLEETSTREAM_SAMPLE_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data"))
}

/// The first `n` rows of a recorded NY Harbor file.
pub fn read_fixes(file: &str, n: usize) -> Vec<Fix> {
    let path = data_dir().join(file);
    let gz = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let reader = BufReader::new(flate2::read::GzDecoder::new(gz));
    let mut lines = reader.lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ts,device_id,lat,lon", "unexpected header in {file}");
    lines
        .take(n)
        .map(|line| {
            let line = line.unwrap();
            let cols: Vec<&str> = line.split(',').collect();
            Fix {
                ts: cols[0].into(),
                device_id: cols[1].into(),
                lat: cols[2].parse().unwrap(),
                lon: cols[3].parse().unwrap(),
            }
        })
        .collect()
}

impl Fix {
    /// The device-facing JSON for this fix.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "device_id": self.device_id, "fix_time": self.ts, "lat": self.lat, "lon": self.lon })
    }
}

/// A consumer for reading topics by explicit assignment (its group never commits).
fn reader(brokers: &str) -> rdkafka::consumer::BaseConsumer {
    rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap()
}

/// Every message currently in `topic`, read from the beginning of each partition.
/// Every message of `topic` as JSON, each checked against `schema`, its contract in `schemas/`.
pub fn read_contract_topic(brokers: &str, topic: &str, schema: &str) -> Vec<serde_json::Value> {
    let schema: serde_json::Value = serde_json::from_str(schema).unwrap();
    let contract = jsonschema::validator_for(&schema).expect("the schema is a valid JSON Schema");
    read_topic(brokers, topic)
        .iter()
        .map(|message| {
            let m: serde_json::Value = serde_json::from_slice(message).expect("a JSON message");
            if let Err(e) = contract.validate(&m) {
                panic!("a message of {topic} breaks {}: {e} at {}\n{m}", schema["$id"], e.instance_path());
            }
            m
        })
        .collect()
}

pub fn read_topic(brokers: &str, topic: &str) -> Vec<Vec<u8>> {
    use rdkafka::consumer::Consumer;
    use rdkafka::{Message, Offset, TopicPartitionList};
    let consumer = reader(brokers);
    let timeout = Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some(topic), timeout).unwrap();
    let partitions: Vec<i32> = metadata.topics()[0].partitions().iter().map(|p| p.id()).collect();
    let mut assignment = TopicPartitionList::new();
    let mut remaining = 0i64;
    let mut ends = std::collections::HashMap::new();
    for &p in &partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, timeout).unwrap();
        if high > low {
            assignment.add_partition_offset(topic, p, Offset::Offset(low)).unwrap();
            remaining += high - low;
            ends.insert(p, high);
        }
    }
    let mut out = Vec::new();
    if remaining == 0 {
        return out;
    }
    consumer.assign(&assignment).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while (out.len() as i64) < remaining {
        assert!(std::time::Instant::now() < deadline, "read only {} of {remaining} messages of {topic}", out.len());
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.unwrap();
            if message.offset() < ends[&message.partition()] {
                out.push(message.payload().unwrap_or_default().to_vec());
            }
        }
    }
    out
}

/// The first message of the first partition of `topic` that holds any.
pub fn read_topic_head(brokers: &str, topic: &str) -> Vec<u8> {
    use rdkafka::consumer::Consumer;
    use rdkafka::{Message, Offset, TopicPartitionList};
    let consumer = reader(brokers);
    let timeout = Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some(topic), timeout).unwrap();
    for p in metadata.topics()[0].partitions() {
        let (low, high) = consumer.fetch_watermarks(topic, p.id(), timeout).unwrap();
        if high > low {
            let mut assignment = TopicPartitionList::new();
            assignment.add_partition_offset(topic, p.id(), Offset::Offset(low)).unwrap();
            consumer.assign(&assignment).unwrap();
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while std::time::Instant::now() < deadline {
                if let Some(message) = consumer.poll(Duration::from_millis(200)) {
                    return message.unwrap().payload().unwrap_or_default().to_vec();
                }
            }
        }
    }
    panic!("{topic} has no message");
}

/// Messages in `topic` (sum of high minus low watermarks).
pub fn topic_len(brokers: &str, topic: &str) -> i64 {
    use rdkafka::consumer::Consumer;
    let consumer = reader(brokers);
    let timeout = Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some(topic), timeout).unwrap();
    metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| {
            let (low, high) = consumer.fetch_watermarks(topic, p.id(), timeout).unwrap();
            high - low
        })
        .sum()
}

/// `fleetstream process` as a child of the test, on `kafka`'s topics and `clickhouse`, in
/// consumer group `group`, with `env` on top (e.g. a smaller batch).
pub fn spawn_processor(
    kafka: &KafkaConfig,
    clickhouse: &ClickHouseConfig,
    group: &str,
    env: &[(&str, &str)],
) -> std::process::Child {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_fleetstream"));
    if let Some(cluster) = &clickhouse.cluster {
        command.env("FLEETSTREAM_CLICKHOUSE_CLUSTER", cluster);
    }
    command
        .arg("process")
        .envs(kafka.topic_env())
        .env("FLEETSTREAM_CLICKHOUSE_URL", &clickhouse.url)
        .env("FLEETSTREAM_CLICKHOUSE_DATABASE", &clickhouse.database)
        .env("FLEETSTREAM_GROUP_ID", group)
        .env("FLEETSTREAM_PROCESSOR_METRICS_LISTEN", "")
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .spawn()
        .expect("start fleetstream process")
}

/// The field an ingest error names, from a whole-request error or the first item error.
pub fn named_field(body: &serde_json::Value) -> String {
    body["error"]["field"]
        .as_str()
        .or_else(|| body["errors"][0]["field"].as_str())
        .unwrap_or_else(|| panic!("no field named in {body}"))
        .to_string()
}
