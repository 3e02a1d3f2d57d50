//! Live streams at scale (run by `benches/stream.sh`, which starts the broker and ClickHouse):
//!
//! - memory per idle stream: the RSS of `fleetstream run` (ingest, processor and API in one
//!   process) with `BENCH_SUBSCRIBERS` (1,000) idle `/v1/stream/positions` connections open,
//!   minus its RSS before they opened, over the connections;
//! - push latency: single fixes posted to ingest one every `BENCH_EVERY_MS` (50), each
//!   followed from just before its POST until every subscriber has received it; p50, p99 and
//!   max over all (fix, subscriber) pairs, and the messages that never arrived.
//!
//! Environment: `FLEETSTREAM_BIN` (the release binary), `FLEETSTREAM_BROKERS`,
//! `FLEETSTREAM_CLICKHOUSE_URL`; `BENCH_SUBSCRIBERS`, `BENCH_FIXES` (200), `BENCH_EVERY_MS`.

use std::collections::HashMap;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fleetstream_benches::{cpu_seconds, memory_mb};
use fleetstream_kafka::KafkaConfig;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run benches/stream.sh"))
}

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `fleetstream run` on private topics and database.
fn start_pipeline(run: &str, ingest_port: u16, api_port: u16) -> Child {
    let kafka = KafkaConfig::with_topic_suffix(&env("FLEETSTREAM_BROKERS"), &format!("stream_{run}"));
    Command::new(env("FLEETSTREAM_BIN"))
        .arg("run")
        .envs(kafka.topic_env())
        .env("FLEETSTREAM_CLICKHOUSE_URL", env("FLEETSTREAM_CLICKHOUSE_URL"))
        .env("FLEETSTREAM_CLICKHOUSE_DATABASE", format!("stream_{run}"))
        .env("FLEETSTREAM_GROUP_ID", format!("stream_{run}"))
        .env("FLEETSTREAM_INGEST_LISTEN", format!("127.0.0.1:{ingest_port}"))
        .env("FLEETSTREAM_API_LISTEN", format!("127.0.0.1:{api_port}"))
        .env("FLEETSTREAM_OSMAND_LISTEN", "")
        .env("FLEETSTREAM_TELTONIKA_LISTEN", "")
        .env("FLEETSTREAM_GT06_LISTEN", "")
        .env("FLEETSTREAM_PROCESSOR_METRICS_LISTEN", "")
        .env("FLEETSTREAM_MAX_STREAMS", "100000")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start fleetstream run")
}

/// When each probe fix was posted, by fix time.
type Sent = Arc<Mutex<HashMap<i64, Instant>>>;

/// One subscriber: reads its stream and records, for each probe fix, the time since its post.
async fn subscribe(http: reqwest::Client, url: String, sent: Sent, ready: tokio::sync::mpsc::Sender<()>) -> Vec<f64> {
    let mut response = http.get(&url).send().await.expect("open a stream");
    assert_eq!(response.status(), 200, "{url}");
    let mut latencies = Vec::new();
    let mut buf = String::new();
    let mut announced = false;
    while let Ok(Some(chunk)) = response.chunk().await {
        if !announced {
            announced = true;
            let _ = ready.send(()).await;
        }
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) else { continue };
            let Ok(message) = serde_json::from_str::<serde_json::Value>(data) else { continue };
            if message["device_id"] != "probe" {
                continue;
            }
            let fix = message["fix_time_ms"].as_i64().unwrap_or_default();
            if let Some(at) = sent.lock().unwrap().get(&fix) {
                latencies.push(at.elapsed().as_secs_f64() * 1000.0);
            }
        }
    }
    latencies
}

async fn post_fix(http: &reqwest::Client, ingest: &str, device: &str, fix_ms: i64) {
    let body = format!(r#"{{"device_id":"{device}","fix_time":{fix_ms},"lat":40.7,"lon":-74.0}}"#);
    let answer = http.post(format!("{ingest}/v1/positions")).body(body).send().await.expect("post a fix");
    assert!(answer.status().is_success(), "ingest answered {}", answer.status());
}

#[tokio::main]
async fn main() {
    let subscribers = setting("BENCH_SUBSCRIBERS", 1_000) as usize;
    let fixes = setting("BENCH_FIXES", 200) as i64;
    let every = Duration::from_millis(setting("BENCH_EVERY_MS", 50));
    let run = std::process::id().to_string();
    let (ingest_port, api_port) = (free_port(), free_port());
    let mut child = start_pipeline(&run, ingest_port, api_port);
    let pid = child.id();
    let (ingest, api) = (format!("http://127.0.0.1:{ingest_port}"), format!("http://127.0.0.1:{api_port}"));
    let http = reqwest::Client::builder().pool_max_idle_per_host(subscribers + 16).build().unwrap();
    for url in [format!("{ingest}/readyz"), format!("{api}/readyz")] {
        while !http.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let stream_url = format!("{api}/v1/stream/positions");

    // Warm up: the output topic exists and the API streams it.
    let base_ms = fleetstream_schemas::time::now_millis() - 600_000;
    let warm_sent: Sent = Arc::default();
    let (ready, mut readied) = tokio::sync::mpsc::channel(subscribers + 1);
    let mut warm = tokio::spawn(subscribe(http.clone(), stream_url.clone(), warm_sent, ready.clone()));
    readied.recv().await;
    let mut i = 0;
    loop {
        post_fix(&http, &ingest, "warm", base_ms + i * 1_000).await;
        i += 1;
        let metrics = http.get(format!("{api}/metrics")).send().await.unwrap().text().await.unwrap();
        if metrics.lines().any(|l| l.starts_with("fleetstream_api_stream_messages_total") && !l.ends_with(" 0")) {
            break;
        }
        assert!(i < 600, "the stream delivered nothing");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    warm.abort();
    let _ = (&mut warm).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_before = memory_mb(pid, "VmRSS");

    // Idle subscribers.
    let sent: Sent = Arc::default();
    let opened = Instant::now();
    let tasks: Vec<_> = (0..subscribers)
        .map(|_| tokio::spawn(subscribe(http.clone(), stream_url.clone(), sent.clone(), ready.clone())))
        .collect();
    for _ in 0..subscribers {
        readied.recv().await;
    }
    let open_secs = opened.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_idle = memory_mb(pid, "VmRSS");
    let per_connection_kb = (rss_idle - rss_before) * 1024.0 / subscribers as f64;
    println!(
        "idle: {subscribers} streams opened in {open_secs:.1} s; RSS {rss_before:.1} MB before, {rss_idle:.1} MB with them open: \
         {per_connection_kb:.1} KB per idle stream"
    );

    // Push latency.
    let cpu_before = cpu_seconds(pid);
    let started = Instant::now();
    for n in 0..fixes {
        let fix_ms = base_ms + 100_000 + n * 1_000;
        sent.lock().unwrap().insert(fix_ms, Instant::now());
        post_fix(&http, &ingest, "probe", fix_ms).await;
        tokio::time::sleep(every).await;
    }
    // Time for the last fixes to arrive, then the streams end with the pipeline.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu_before;
    let rss_peak = memory_mb(pid, "VmHWM");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let _ = child.wait();
    let expected = subscribers * fixes as usize;
    latencies.sort_by(f64::total_cmp);
    let at =
        |q: f64| latencies.get(((latencies.len().max(1) - 1) as f64 * q).round() as usize).copied().unwrap_or(f64::NAN);
    println!(
        "push: {fixes} fixes, one every {} ms, to {subscribers} subscribers: {} of {expected} messages received; \
         post-to-received p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; fleetstream run {:.1} CPU s over {secs:.0} s, peak RSS {rss_peak:.0} MB",
        every.as_millis(),
        latencies.len(),
        at(0.5),
        at(0.99),
        at(1.0),
        cpu
    );
}
