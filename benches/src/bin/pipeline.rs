//! The whole pipeline, measured (run by `benches/pipeline.sh`, which starts the broker and
//! ClickHouse and passes their addresses):
//!
//! - (a) drain: one `fleetstream process` on a topic pre-filled with the NY Harbor week three
//!   times over (518,037 positions), against inserting the same rows, exported as RowBinary,
//!   into an empty copy of `positions` over the same HTTP interface: the database's limit here;
//! - (b) sustained: `fleetstream ingest` and `fleetstream process` together under a load
//!   generator (batches of 100 from many devices): positions/s acknowledged and stored, lag;
//! - (c) post-to-queryable latency of single fixes, on the idle pipeline and during (b);
//! - (d) CPU seconds per million positions and peak RSS of each service (from /proc);
//! - (e) many devices, one fix each: 1,000 clients (`BENCH_CLIENTS`) posting single positions
//!   to ingest alone: requests/s and acknowledgement latency p50/p99/p999;
//! - (f) the embedded stack, `fleetstream up`, under the load of (b) with the probes of (c)
//!   through its API, with one partition per topic (its default) and eight.
//!
//! Environment: `FLEETSTREAM_BIN` (the release binary), `FLEETSTREAM_BROKERS`,
//! `FLEETSTREAM_CLICKHOUSE_URL`; `BENCH_SECONDS` for (b) and (f) (default 20).

use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fleetstream_benches::{cpu_seconds, memory_mb, recorded_positions_json};
use fleetstream_kafka::KafkaConfig;
use fleetstream_schemas::{Limits, Position, parse_position};
use rdkafka::producer::{FutureProducer, FutureRecord};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run benches/pipeline.sh"))
}

/// A service of ours as a child process, watched through /proc.
struct Service {
    child: Child,
    name: &'static str,
}

impl Service {
    fn start(name: &'static str, subcommand: &str, vars: &[(&str, String)]) -> Service {
        let child = Command::new(env("FLEETSTREAM_BIN"))
            .arg(subcommand)
            .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
            .env("FLEETSTREAM_PROCESSOR_METRICS_LISTEN", "")
            .env("RUST_LOG", "warn")
            .spawn()
            .expect("start fleetstream");
        Service { child, name }
    }

    /// CPU seconds (user + system) used so far.
    fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.child.id())
    }

    /// Peak resident memory in MB.
    fn peak_rss_mb(&self) -> f64 {
        memory_mb(self.child.id(), "VmHWM")
    }

    /// Stops the service and waits for it to exit (what dropping it does).
    fn stop(self) {
        drop(self)
    }
}

/// A service is stopped however the bench ends, a failed assertion included: a `fleetstream up`
/// left running would hold its ports, its data directory and its broker child.
impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: signalling our own child, which has not been reaped yet.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
            let _ = self.child.wait();
        }
    }
}

/// CPU seconds of the broker and of ClickHouse (started by benches/pipeline.sh) so far.
fn engines_cpu_seconds() -> (f64, f64) {
    let pid = |name: &str| env(name).parse::<u32>().unwrap_or_else(|_| panic!("{name} is not a pid"));
    (cpu_seconds(pid("FS_BROKER_PID")), cpu_seconds(pid("FS_CLICKHOUSE_PID")))
}

struct ClickHouse {
    http: reqwest::Client,
    url: String,
}

impl ClickHouse {
    async fn query(&self, database: &str, sql: &str) -> String {
        let response = self
            .http
            .post(format!("{}/?database={database}", self.url))
            .body(sql.to_string())
            .send()
            .await
            .expect("ClickHouse answers");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "{sql}: {text}");
        text
    }

    async fn count(&self, database: &str, sql: &str) -> u64 {
        self.query(database, sql).await.trim().parse().unwrap_or(0)
    }
}

/// The week three times over, device ids shifted per copy, in time order per copy.
fn three_weeks() -> Vec<Position> {
    let week = recorded_positions_json("nyharbor-2020-12-week1.csv.gz");
    let mut out = Vec::with_capacity(week.len() * 3);
    for copy in 0..3 {
        for json in &week {
            let mut p = parse_position(json, 1_700_000_000_000, &Limits::default()).expect("a recorded position");
            p.device_id = format!("{}-{copy}", p.device_id);
            p.event_id = fleetstream_schemas::ids::derived_event_id(&p.device_id, p.fix_time_ms);
            out.push(p);
        }
    }
    out
}

async fn produce(kafka: &KafkaConfig, positions: &[Position]) {
    fleetstream_kafka::ensure_topics(kafka, &[kafka.positions_topic.as_str()]).await.expect("topic");
    let producer: FutureProducer = kafka.durable_producer_config("bench-fill").create().expect("producer");
    let mut deliveries = Vec::with_capacity(positions.len());
    for p in positions {
        let payload = p.to_message();
        let mut record = FutureRecord::to(&kafka.positions_topic).key(&p.device_id).payload(&payload);
        loop {
            match producer.send_result(record) {
                Ok(d) => {
                    deliveries.push(d);
                    break;
                }
                // The local queue is full: wait for deliveries, then try again.
                Err((_, back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    }
    for d in deliveries {
        d.await.expect("delivered").expect("acknowledged");
    }
}

fn processor_vars(kafka: &KafkaConfig, database: &str, group: &str) -> Vec<(&'static str, String)> {
    let mut vars = kafka.topic_env();
    vars.extend([
        ("FLEETSTREAM_CLICKHOUSE_URL", env("FLEETSTREAM_CLICKHOUSE_URL")),
        ("FLEETSTREAM_CLICKHOUSE_DATABASE", database.to_string()),
        ("FLEETSTREAM_GROUP_ID", group.to_string()),
    ]);
    vars
}

async fn wait_for(ch: &ClickHouse, database: &str, rows: u64, within: Duration) -> Duration {
    let started = Instant::now();
    while ch.count(database, "SELECT count() FROM positions").await < rows {
        assert!(started.elapsed() < within, "not all {rows} rows stored within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

/// (a) One processor draining a pre-filled topic, against the raw insert of the same rows.
async fn drain(ch: &ClickHouse, run: &str) {
    let positions = three_weeks();
    let n = positions.len() as u64;
    let kafka = KafkaConfig::with_topic_suffix(&env("FLEETSTREAM_BROKERS"), &format!("drain_{run}"));
    produce(&kafka, &positions).await;
    drop(positions);
    let database = format!("bench_drain_{run}");
    let processor = Service::start("processor", "process", &processor_vars(&kafka, &database, "drain"));
    // Time from the first row stored (the schema is ready) to the last.
    let started = Instant::now();
    while ch
        .count(
            "system",
            &format!("SELECT count() FROM system.tables WHERE database = '{database}' AND name = 'positions'"),
        )
        .await
        == 0
        || ch.count(&database, "SELECT count() FROM positions").await == 0
    {
        assert!(started.elapsed() < Duration::from_secs(120), "the processor did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cpu_before = processor.cpu_seconds();
    let (broker_before, clickhouse_before) = engines_cpu_seconds();
    let took = wait_for(ch, &database, n, Duration::from_secs(900)).await;
    let cpu = processor.cpu_seconds() - cpu_before;
    let (broker_after, clickhouse_after) = engines_cpu_seconds();
    let rss = processor.peak_rss_mb();
    processor.stop();
    let drain_rate = n as f64 / took.as_secs_f64();

    // What a position costs on disk (compressed, all columns), once merges have settled.
    ch.query(&database, "OPTIMIZE TABLE positions FINAL").await;
    let bytes = ch
        .count(
            "system",
            &format!("SELECT sum(bytes_on_disk) FROM system.parts WHERE database = '{database}' AND table = 'positions' AND active"),
        )
        .await;
    let rows = ch
        .http
        .post(format!("{}/?database={database}", ch.url))
        .body("SELECT * FROM positions FORMAT RowBinary")
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    ch.query(&database, "CREATE TABLE positions_copy AS positions").await;
    let clickhouse_before_raw = engines_cpu_seconds().1;
    let started = Instant::now();
    let insert = ch
        .http
        .post(format!("{}/?database={database}&query=INSERT%20INTO%20positions_copy%20FORMAT%20RowBinary", ch.url))
        .body(rows.clone())
        .send()
        .await
        .unwrap();
    assert!(insert.status().is_success(), "{}", insert.text().await.unwrap_or_default());
    let raw = started.elapsed();
    let clickhouse_raw = engines_cpu_seconds().1 - clickhouse_before_raw;
    let raw_rate = n as f64 / raw.as_secs_f64();
    println!("(a) drain of {n} positions by one processor: {:.1} s = {drain_rate:.0}/s", took.as_secs_f64());
    println!(
        "    raw RowBinary insert of the same rows ({:.0} MB): {:.2} s = {raw_rate:.0}/s; ratio {:.2}",
        rows.len() as f64 / 1e6,
        raw.as_secs_f64(),
        drain_rate / raw_rate
    );
    let per_million = |seconds: f64| seconds / n as f64 * 1e6;
    println!("    positions on disk after merges: {:.1} MB per million positions", per_million(bytes as f64) / 1e6);
    println!("    processor: {:.2} CPU s per million positions, peak RSS {rss:.0} MB", per_million(cpu));
    // Where the machine went: the drain is bounded by the sum of these on its cores.
    println!(
        "    CPU s per million during the drain: processor {:.2} + broker {:.2} + ClickHouse {:.2}; raw insert: ClickHouse {:.2}",
        per_million(cpu),
        per_million(broker_after - broker_before),
        per_million(clickhouse_after - clickhouse_before),
        per_million(clickhouse_raw)
    );
}

/// Percentiles of a sample, in milliseconds.
fn percentiles(mut samples: Vec<f64>) -> String {
    if samples.is_empty() {
        return "no samples".into();
    }
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    format!("p50 {:.0} ms, p99 {:.0} ms ({} fixes)", at(0.5), at(0.99), samples.len())
}

/// Where a probe looks for its fix: in ClickHouse directly, or through the API (the embedded
/// stack keeps ClickHouse inside its process).
enum Queryable<'a> {
    ClickHouse { ch: &'a ClickHouse, database: &'a str },
    Api { http: reqwest::Client, url: String },
}

impl Queryable<'_> {
    async fn has_fix(&self, device: &str, fix_ms: i64) -> bool {
        match self {
            Queryable::ClickHouse { ch, database } => {
                let sql =
                    format!("SELECT count() FROM positions WHERE device_id = '{device}' AND fix_time_ms = {fix_ms}");
                ch.count(database, &sql).await > 0
            }
            Queryable::Api { http, url } => {
                let track = format!("{url}/v1/devices/{device}/track?from={fix_ms}&to={}&format=ndjson", fix_ms + 1);
                match http.get(track).send().await {
                    Ok(r) if r.status().is_success() => !r.text().await.unwrap_or_default().trim().is_empty(),
                    _ => false,
                }
            }
        }
    }
}

/// Posts single fixes of one device every `every`, each followed until it is queryable, for
/// `count` fixes or until `budget` has passed.
async fn probe(ingest: &str, queryable: &Queryable<'_>, count: usize, every: Duration, budget: Duration) -> Vec<f64> {
    let http = reqwest::Client::new();
    let mut latencies = Vec::new();
    let base = fleetstream_schemas::time::now_millis() - 60_000;
    let started = Instant::now();
    for i in 0..count {
        if started.elapsed() >= budget {
            break;
        }
        let fix_ms = base + i as i64 * 100;
        let body = format!(r#"{{"device_id":"probe","fix_time":{fix_ms},"lat":40.7,"lon":-74.0}}"#);
        let sent = Instant::now();
        let answer = http.post(format!("{ingest}/v1/positions")).body(body).send().await.unwrap();
        assert!(answer.status().is_success());
        while !queryable.has_fix("probe", fix_ms).await {
            assert!(sent.elapsed() < Duration::from_secs(60), "a probe fix never became queryable");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(every).await;
    }
    latencies
}

/// The load of (b): 16 clients, each posting batches of 100 positions of its own 100 devices,
/// one second apart on the fixes' clock, one request after the other, until `stop`. Each returns
/// the fix time of its last acknowledged batch.
/// What [`load_with_probes`] measured.
struct LoadRun {
    /// Post-to-queryable of the probes sent during the load, in milliseconds.
    under_load: Vec<f64>,
    /// From the first request to the load's stop.
    elapsed: Duration,
    /// Positions acknowledged.
    acked: u64,
    /// The fix time of each client's last acknowledged batch (its devices' newest fix).
    last_acked: Vec<i64>,
}

/// 16 clients (`LOAD_CLIENTS`) posting batches of 100 devices' fixes back to back for
/// `BENCH_SECONDS`, while a probe checks post-to-queryable every 250 ms.
async fn load_with_probes(ingest_url: &str, queryable: &Queryable<'_>) -> LoadRun {
    let (stop, acked) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let started = Instant::now();
    let clients = start_load(ingest_url, stop.clone(), acked.clone());
    let under_load =
        probe(ingest_url, queryable, usize::MAX, Duration::from_millis(250), Duration::from_secs(bench_seconds()))
            .await;
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut last_acked = Vec::new();
    for c in clients {
        last_acked.push(c.await.expect("a load client"));
    }
    LoadRun { under_load, elapsed, acked: acked.load(Ordering::Relaxed), last_acked }
}

/// `BENCH_SECONDS` (default 20).
fn bench_seconds() -> u64 {
    std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(20)
}

/// Single fixes on an otherwise idle pipeline: 5 to warm up, then 100 measured. Returns how many
/// were posted and the measured latencies in milliseconds.
async fn idle_probes(ingest_url: &str, queryable: &Queryable<'_>) -> (usize, Vec<f64>) {
    let forever = Duration::from_secs(3600);
    let warm = probe(ingest_url, queryable, 5, Duration::from_millis(50), forever).await;
    let idle = probe(ingest_url, queryable, 100, Duration::from_millis(20), forever).await;
    (warm.len() + idle.len(), idle)
}

fn start_load(ingest_url: &str, stop: Arc<AtomicBool>, acked: Arc<AtomicU64>) -> Vec<tokio::task::JoinHandle<i64>> {
    (0..LOAD_CLIENTS)
        .map(|c| {
            let (stop, acked, url) = (stop.clone(), acked.clone(), format!("{ingest_url}/v1/positions"));
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let (mut t, mut last_acked) = (1_700_000_000_000i64, 0);
                while !stop.load(Ordering::Relaxed) {
                    t += 1_000;
                    let body: Vec<String> = (0..LOAD_DEVICES_PER_CLIENT)
                        .map(|d| {
                            format!(
                                r#"{{"device_id":"load-{c}-{d}","fix_time":{t},"lat":{},"lon":-74.0}}"#,
                                40.6 + d as f64 * 1e-3
                            )
                        })
                        .collect();
                    if let Ok(r) = http.post(&url).body(format!("[{}]", body.join(","))).send().await
                        && r.status().is_success()
                    {
                        acked.fetch_add(LOAD_DEVICES_PER_CLIENT, Ordering::Relaxed);
                        last_acked = t;
                    }
                }
                last_acked
            })
        })
        .collect()
}

const LOAD_CLIENTS: u64 = 16;
const LOAD_DEVICES_PER_CLIENT: u64 = 100;

/// (b)-(d) Ingest and processor together under load, with latency probes.
async fn sustained(ch: &ClickHouse, run: &str) {
    let kafka = KafkaConfig::with_topic_suffix(&env("FLEETSTREAM_BROKERS"), &format!("load_{run}"));
    let database = format!("bench_load_{run}");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let ingest_url = format!("http://127.0.0.1:{port}");
    let mut ingest_vars = processor_vars(&kafka, &database, "load");
    ingest_vars.push(("FLEETSTREAM_INGEST_LISTEN", format!("127.0.0.1:{port}")));
    ingest_vars.push(("FLEETSTREAM_OSMAND_LISTEN", String::new()));
    let ingest = Service::start("ingest", "ingest", &ingest_vars);
    let processor = Service::start("processor", "process", &processor_vars(&kafka, &database, "load"));
    let http = reqwest::Client::new();
    while !http.get(format!("{ingest_url}/readyz")).send().await.is_ok_and(|r| r.status().is_success()) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let queryable = Queryable::ClickHouse { ch, database: &database };
    let (probes_before, idle) = idle_probes(&ingest_url, &queryable).await;

    let (ingest_cpu, processor_cpu) = (ingest.cpu_seconds(), processor.cpu_seconds());
    let stored_before = ch.count(&database, "SELECT count() FROM positions").await;
    let LoadRun { under_load, elapsed, acked, .. } = load_with_probes(&ingest_url, &queryable).await;
    let stored_at_stop = ch.count(&database, "SELECT count() FROM positions").await - stored_before;
    let expected = stored_before + acked + under_load.len() as u64;
    let drained_in = wait_for(ch, &database, expected, Duration::from_secs(600)).await;
    let total = acked + (under_load.len() + probes_before) as u64;
    let ingest_cpu = ingest.cpu_seconds() - ingest_cpu;
    let processor_cpu = processor.cpu_seconds() - processor_cpu;
    let secs = elapsed.as_secs_f64();
    println!(
        "(b) sustained, 16 clients posting batches of 100 for {secs:.0} s: {:.0} positions/s acknowledged, {:.0}/s stored \
         meanwhile; lag at the end {} positions, stored {:.1} s later",
        acked as f64 / secs,
        stored_at_stop as f64 / secs,
        acked.saturating_sub(stored_at_stop),
        drained_in.as_secs_f64()
    );
    println!("(c) post-to-queryable, single fixes: idle {}; during (b) {}", percentiles(idle), percentiles(under_load));
    for (service, cpu) in [(&ingest, ingest_cpu), (&processor, processor_cpu)] {
        println!(
            "(d) {}: {:.2} CPU s per million positions, peak RSS {:.0} MB",
            service.name,
            cpu / total as f64 * 1e6,
            service.peak_rss_mb()
        );
    }
    ingest.stop();
    processor.stop();
}

/// (e) Many devices, one fix each: `clients` concurrent clients, each posting single-position
/// requests one after the other, against `fleetstream ingest` alone; requests/s and the
/// acknowledgement latency.
async fn many_devices(run: &str, clients: usize) {
    let kafka = KafkaConfig::with_topic_suffix(&env("FLEETSTREAM_BROKERS"), &format!("many_{run}"));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let mut vars = processor_vars(&kafka, "unused", "unused");
    vars.push(("FLEETSTREAM_INGEST_LISTEN", format!("127.0.0.1:{port}")));
    vars.push(("FLEETSTREAM_OSMAND_LISTEN", String::new()));
    let ingest = Service::start("ingest", "ingest", &vars);
    let http = reqwest::Client::builder().pool_max_idle_per_host(clients).build().unwrap();
    while !http.get(format!("{url}/readyz")).send().await.is_ok_and(|r| r.status().is_success()) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seconds = bench_seconds().min(10);
    let cpu_before = ingest.cpu_seconds();
    let (broker_before, clients_before) = (engines_cpu_seconds().0, cpu_seconds(std::process::id()));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (http, url) = (http.clone(), format!("{url}/v1/positions"));
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut failed = 0u64;
                let mut t = 1_700_000_000_000i64;
                while Instant::now() < deadline {
                    t += 1_000;
                    let body = format!(r#"{{"device_id":"many-{c}","fix_time":{t},"lat":40.7,"lon":-74.0}}"#);
                    let sent = Instant::now();
                    match http.post(&url).body(body).send().await {
                        Ok(r) if r.status().is_success() => latencies.push(sent.elapsed().as_secs_f64() * 1000.0),
                        _ => failed += 1,
                    }
                }
                (latencies, failed)
            })
        })
        .collect();
    let (mut latencies, mut failed) = (Vec::new(), 0);
    for task in tasks {
        let (l, f) = task.await.unwrap();
        latencies.extend(l);
        failed += f;
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = ingest.cpu_seconds() - cpu_before;
    let broker_cpu = engines_cpu_seconds().0 - broker_before;
    let clients_cpu = cpu_seconds(std::process::id()) - clients_before;
    let n = latencies.len();
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies.get(((n.max(1) - 1) as f64 * q).round() as usize).copied().unwrap_or(f64::NAN);
    println!(
        "(e) {clients} clients posting single positions for {secs:.0} s: {:.0} requests/s acknowledged ({failed} failed); \
         acknowledgement p50 {:.1} ms, p99 {:.1} ms, p999 {:.1} ms; ingest {:.2} CPU s per million, peak RSS {:.0} MB",
        n as f64 / secs,
        at(0.5),
        at(0.99),
        at(0.999),
        cpu / n.max(1) as f64 * 1e6,
        ingest.peak_rss_mb()
    );
    // What bounds it on this machine: every request costs CPU in the clients, ingest and the
    // broker, all on the same cores.
    let per_million = |cpu: f64| cpu / n.max(1) as f64 * 1e6;
    let all = per_million(cpu + broker_cpu + clients_cpu);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    println!(
        "(e) where the CPU went, per million requests: ingest {:.1}, broker {:.1}, the {clients} clients {:.1} \
         = {all:.1} CPU s: {cores:.0} cores cannot serve more than {:.0} requests/s with all three on them",
        per_million(cpu),
        per_million(broker_cpu),
        per_million(clients_cpu),
        cores * 1e6 / all
    );
    ingest.stop();
}

/// (f) The embedded stack: `fleetstream up` (nisshi on SQLite, ClickHouse in-process) with its
/// topics created with `partitions` partitions, under the load of (b), with the probes of (c)
/// through the API, and CPU and memory of `up` and of the broker it supervises.
async fn embedded(run: &str, partitions: i32) {
    let dir = std::env::temp_dir().join(format!("fleetstream-bench-up-{run}-{partitions}"));
    let port = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (api_url, ingest_url) = (format!("http://127.0.0.1:{}", port()), format!("http://127.0.0.1:{}", port()));
    let vars = [
        ("FLEETSTREAM_DATA_DIR", dir.display().to_string()),
        ("FLEETSTREAM_BROKER_PORT", port().to_string()),
        ("FLEETSTREAM_API_LISTEN", api_url["http://".len()..].to_string()),
        ("FLEETSTREAM_INGEST_LISTEN", ingest_url["http://".len()..].to_string()),
        ("FLEETSTREAM_OSMAND_LISTEN", String::new()),
        ("FLEETSTREAM_TELTONIKA_LISTEN", String::new()),
        ("FLEETSTREAM_GT06_LISTEN", String::new()),
        ("FLEETSTREAM_TOPIC_PARTITIONS", partitions.to_string()),
    ];
    let up = Service::start("up", "up", &vars);
    let http = reqwest::Client::new();
    for url in [&ingest_url, &api_url] {
        while !http.get(format!("{url}/readyz")).send().await.is_ok_and(|r| r.status().is_success()) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let broker = child_named(up.child.id(), "nisshi").expect("`up` runs its broker as a child");
    let queryable = Queryable::Api { http: http.clone(), url: api_url.clone() };
    let (probes_before, idle) = idle_probes(&ingest_url, &queryable).await;

    let (up_cpu, broker_cpu) = (up.cpu_seconds(), cpu_seconds(broker));
    let started = Instant::now();
    let LoadRun { under_load, elapsed, acked, last_acked: last } = load_with_probes(&ingest_url, &queryable).await;
    // Stored: every load device shows its client's last acknowledged fix through the API.
    let drained_in = loop {
        let latest = http.get(format!("{api_url}/v1/devices/latest?limit=10000")).send().await.unwrap();
        assert!(latest.status().is_success(), "/v1/devices/latest: {}", latest.status());
        let body: serde_json::Value = latest.json().await.unwrap();
        let at_last = body["devices"].as_array().map_or(0, |devices| {
            devices
                .iter()
                .filter(|d| {
                    let id = d["device_id"].as_str().unwrap_or_default();
                    let client = id.strip_prefix("load-").and_then(|r| r.split('-').next()?.parse::<usize>().ok());
                    client.is_some_and(|c| d["fix_time_ms"].as_i64() == Some(last[c]))
                })
                .count()
        });
        if at_last as u64 == LOAD_CLIENTS * LOAD_DEVICES_PER_CLIENT {
            break started.elapsed() - elapsed;
        }
        assert!(started.elapsed() - elapsed < Duration::from_secs(600), "the embedded stack never caught up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let total = acked + (probes_before + under_load.len()) as u64;
    let secs = elapsed.as_secs_f64();
    println!(
        "(f) embedded (`up`, {partitions} partition(s) per topic), 16 clients posting batches of 100 for {secs:.0} s: \
         {:.0} positions/s acknowledged; all stored {:.1} s after the load stopped ({:.0}/s over both)",
        acked as f64 / secs,
        drained_in.as_secs_f64(),
        acked as f64 / (secs + drained_in.as_secs_f64())
    );
    println!(
        "(f) post-to-queryable through the API: idle {}; under load {}",
        percentiles(idle),
        percentiles(under_load)
    );
    let per_million = |cpu: f64| cpu / total as f64 * 1e6;
    println!(
        "(f) CPU s per million positions: up (ingest, processor, API, chDB) {:.1}, broker {:.1}; peak RSS up {:.0} MB, broker {:.0} MB",
        per_million(up.cpu_seconds() - up_cpu),
        per_million(cpu_seconds(broker) - broker_cpu),
        up.peak_rss_mb(),
        memory_mb(broker, "VmHWM")
    );
    up.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The first child process of `parent` whose command name is `name`.
fn child_named(parent: u32, name: &str) -> Option<u32> {
    let tasks = std::fs::read_dir(format!("/proc/{parent}/task")).ok()?;
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("children")).ok())
        .flat_map(|children| children.split_whitespace().filter_map(|pid| pid.parse().ok()).collect::<Vec<u32>>())
        .find(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim() == name))
}

/// `pipeline [drain] [load] [many] [up]`: all parts by default.
#[tokio::main]
async fn main() {
    let ch = ClickHouse { http: reqwest::Client::new(), url: env("FLEETSTREAM_CLICKHOUSE_URL") };
    let run = std::process::id().to_string();
    let parts: Vec<String> = std::env::args().skip(1).collect();
    let wanted = |part: &str| parts.is_empty() || parts.iter().any(|p| p == part);
    if wanted("drain") {
        drain(&ch, &run).await;
    }
    if wanted("load") {
        sustained(&ch, &run).await;
    }
    if wanted("many") {
        let clients = std::env::var("BENCH_CLIENTS").ok().and_then(|s| s.parse().ok()).unwrap_or(1000);
        many_devices(&run, clients).await;
    }
    if wanted("up") {
        // One partition per topic is `up`'s default; eight is what a cluster deployment gets.
        for partitions in [1, 8] {
            embedded(&run, partitions).await;
        }
    }
}
