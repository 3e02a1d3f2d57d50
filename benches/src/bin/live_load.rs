//! The live endpoints under constant polling, and long tracks.
//!
//! A fresh database gets 10,000 devices (one latest fix each) and one device with a week-long
//! track at 10-second resolution (60,480 fixes). Then 200 concurrent pollers hit
//! `/v1/live/summary` for a fixed time, with the server-side cache (1 s) and without it, and
//! `/v1/devices/latest` (10,000 devices per answer, and a 100-device map viewport); finally the week-long track is fetched as
//! JSON, GeoJSON and CSV, in full and downsampled to 1,000 points.
//!
//! benches/live.sh [SECONDS_PER_RUN]

use std::time::{Duration, Instant};

use fleetstream_api::ApiConfig;
use fleetstream_storage::{ClickHouseConfig, PositionRow, Store};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const POLLERS: usize = 200;

fn row(device: String, fix_ms: i64, lat: f64, lon: f64, speed: f64) -> PositionRow {
    PositionRow {
        received_at_ms: fix_ms + 800,
        speed_mps: Some(speed),
        moving: u8::from(speed >= 0.5),
        ..PositionRow::at(&device, fix_ms, lat, lon)
    }
}

async fn serve(store: &Store, config: ApiConfig) -> (String, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    tokio::spawn(fleetstream_api::serve(config, store.clone(), listener, shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    (url, shutdown)
}

/// `POLLERS` clients requesting `url` back to back for `run_for`; latency percentiles and rate.
async fn poll(url: &str, run_for: Duration) -> String {
    let client = reqwest::Client::builder().pool_max_idle_per_host(POLLERS).build().unwrap();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..POLLERS {
        let (client, url) = (client.clone(), url.to_string());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while start.elapsed() < run_for {
                let t = Instant::now();
                let r = client.get(&url).send().await.unwrap();
                assert!(r.status().is_success(), "{}", r.status());
                r.bytes().await.unwrap();
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let took = start.elapsed();
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)].as_secs_f64() * 1e3;
    format!(
        "{:>8.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  ({} requests)",
        all.len() as f64 / took.as_secs_f64(),
        pct(0.5),
        pct(0.99),
        all.len()
    )
}

async fn time_get(url: &str) -> (f64, usize) {
    let client = reqwest::Client::new();
    let mut best = f64::MAX;
    let mut size = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let body = client.get(url).send().await.unwrap().bytes().await.unwrap();
        best = best.min(t.elapsed().as_secs_f64() * 1e3);
        size = body.len();
    }
    (best, size)
}

#[tokio::main]
async fn main() {
    let url = std::env::var("FLEETSTREAM_CLICKHOUSE_URL").expect("FLEETSTREAM_CLICKHOUSE_URL: run benches/live.sh");
    let secs: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10);
    let run_for = Duration::from_secs(secs);
    let store =
        Store::open(&ClickHouseConfig::local(&url, &format!("bench_live_{}", std::process::id()))).await.unwrap();
    let now = fleetstream_schemas::time::now_millis();
    let fleet: Vec<PositionRow> = (0..10_000)
        .map(|i| row(format!("truck-{i:05}"), now - (i % 1200) * 1000, 40.0 + (i as f64) * 1e-4, -74.0, (i % 7) as f64))
        .collect();
    store.insert_positions(&fleet).await.unwrap();
    let week_start = now - 7 * 86_400_000;
    let track: Vec<PositionRow> = (0..60_480)
        .map(|i| {
            row(
                "week-long".into(),
                week_start + i * 10_000,
                40.5 + (i as f64 * 1e-3).sin() * 0.1,
                -74.0 + (i as f64) * 1e-6,
                5.0,
            )
        })
        .collect();
    store.insert_positions(&track).await.unwrap();
    println!(
        "{POLLERS} pollers, {secs} s per run, 10,000 devices, ClickHouse {}",
        store.server_version().await.unwrap()
    );

    for (label, cache_ms) in [("live/summary, 1 s cache", 1_000), ("live/summary, no cache ", 0)] {
        let (api, stop) = serve(&store, ApiConfig { live_cache_ms: cache_ms, ..ApiConfig::local() }).await;
        println!("{label}: {}", poll(&format!("{api}/v1/live/summary"), run_for).await);
        stop.cancel();
    }
    let (api, stop) = serve(&store, ApiConfig::local()).await;
    println!("devices/latest (10k)  : {}", poll(&format!("{api}/v1/devices/latest"), run_for).await);
    // A map viewport: the devices are spread from latitude 40.0 north, 100 of them below 40.01.
    let viewport = format!("{api}/v1/devices/latest?bbox=-74.1,40.0,-73.9,40.01");
    println!("devices/latest (bbox) : {}", poll(&viewport, run_for).await);
    let base = format!("{api}/v1/devices/week-long/track?from={}&to={}", week_start, now);
    for (label, query) in [
        ("track JSON, 60,480 points   ", ""),
        ("track GeoJSON line          ", "&format=geojson"),
        ("track CSV                   ", "&format=csv"),
        ("track JSON, 1,000 points    ", "&points=1000"),
    ] {
        let (ms, bytes) = time_get(&format!("{base}{query}")).await;
        println!("{label}: {ms:>7.1} ms, {:.1} MB", bytes as f64 / 1e6);
    }
    stop.cancel();
}
