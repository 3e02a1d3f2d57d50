//! `fleetstream up`, the embedded stack, as a user runs it: the real binary on an empty data
//! directory (the nisshi broker as its child on SQLite, current ClickHouse in-process through
//! chDB), fed the NY Harbor day file by `fleetstream replay`.
//!
//! - every replayed position reads back through the API;
//! - positions acknowledged to `replay` survive a kill -9 of the whole stack right after the
//!   last acknowledgement (the broker dies with it), and appear once it is started again;
//! - Ctrl-C (SIGINT) stops it cleanly, the broker with it, and a restart keeps all data.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{data_dir, eventually, read_fixes};

const DAY: &str = "nyharbor-2020-12-08.csv.gz";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Stack {
    child: Child,
    api: String,
    ingest: String,
}

struct Ports {
    broker: u16,
    ingest: u16,
    osmand: u16,
    api: u16,
}

fn start(dir: &Path, ports: &Ports) -> Stack {
    let child = Command::new(env!("CARGO_BIN_EXE_fleetstream"))
        .arg("up")
        .env("FLEETSTREAM_DATA_DIR", dir)
        .env("FLEETSTREAM_BROKER_PORT", ports.broker.to_string())
        .env("FLEETSTREAM_INGEST_LISTEN", format!("127.0.0.1:{}", ports.ingest))
        .env("FLEETSTREAM_OSMAND_LISTEN", format!("127.0.0.1:{}", ports.osmand))
        .env("FLEETSTREAM_API_LISTEN", format!("127.0.0.1:{}", ports.api))
        .env("FLEETSTREAM_PROCESSOR_METRICS_LISTEN", "")
        .env("FLEETSTREAM_NISSHI", support::nisshi())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start fleetstream up");
    Stack {
        child,
        api: format!("http://127.0.0.1:{}", ports.api),
        ingest: format!("http://127.0.0.1:{}", ports.ingest),
    }
}

impl Stack {
    async fn wait_ready(&self) -> Duration {
        let started = Instant::now();
        let http = reqwest::Client::new();
        for url in [format!("{}/readyz", self.api), format!("{}/readyz", self.ingest)] {
            let (http, url) = (&http, url.as_str());
            eventually(url, Duration::from_secs(60), move || async move {
                match http.get(url).send().await {
                    Ok(r) if r.status().is_success() => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            })
            .await;
        }
        started.elapsed()
    }

    fn signal(&mut self, signal: libc::c_int) -> std::process::ExitStatus {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "fleetstream up did not exit within 60 s of signal {signal}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn replay(ingest: &str) {
    let output = Command::new(env!("CARGO_BIN_EXE_fleetstream"))
        .args(["replay", data_dir().join(DAY).to_str().unwrap(), "--ingest-url", ingest, "--batch", "500"])
        .output()
        .expect("run fleetstream replay");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "replay failed: {stderr}");
    assert!(stderr.contains("9091 accepted, 0 rejected"), "{stderr}");
}

/// Positions per device the API serves, once it serves `expected` for every device.
async fn wait_for_all(api: &str, expected: &BTreeMap<String, u64>) {
    let http = reqwest::Client::new();
    let (http, expected) = (&http, expected);
    eventually("every replayed position through the API", Duration::from_secs(180), move || async move {
        let summary: Value =
            http.get(format!("{api}/v1/live/summary")).send().await.map_err(|e| e.to_string())?.json().await.unwrap();
        if summary["devices"]["total"].as_u64() != Some(expected.len() as u64) {
            return Err(format!("{} devices", summary["devices"]["total"]));
        }
        for (device, count) in expected {
            let url = format!("{api}/v1/devices/{device}/track?from=2020-12-08T00:00:00Z&to=2020-12-09T00:00:00Z");
            let track: Value = http.get(url).send().await.map_err(|e| e.to_string())?.json().await.unwrap();
            if track["count"].as_u64() != Some(*count) {
                return Err(format!("{device}: {} of {count}", track["count"]));
            }
        }
        Ok(())
    })
    .await;
}

/// Whether a broker listens on this stack's broker port (by its command line).
fn broker_running(port: u16) -> bool {
    let pattern = format!("nisshi broker --listener-url tcp://127.0.0.1:{port} ");
    Command::new("pgrep").args(["-f", &pattern]).output().unwrap().status.success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_stack_replays_a_day_survives_kill_9_and_restarts_with_all_data() {
    support::init_logs();
    let dir = tempdir();
    let ports = Ports { broker: free_port(), ingest: free_port(), osmand: free_port(), api: free_port() };
    let fixes = read_fixes(DAY, usize::MAX);
    let distinct: BTreeSet<(&str, &str)> = fixes.iter().map(|f| (f.device_id.as_str(), f.ts.as_str())).collect();
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for (device, _) in &distinct {
        *expected.entry(device.to_string()).or_default() += 1;
    }

    // From an empty directory.
    let mut stack = start(&dir, &ports);
    let ready = stack.wait_ready().await;
    eprintln!("ready {} ms after start on an empty directory", ready.as_millis());
    replay(&stack.ingest);
    // Every position is acknowledged: kill everything at once, before processing catches up.
    let status = stack.signal(libc::SIGKILL);
    assert!(!status.success());
    // The kernel kills the broker when `up` dies (PR_SET_PDEATHSIG); it takes a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while broker_running(ports.broker) {
        assert!(std::time::Instant::now() < deadline, "the broker outlived a kill -9 of fleetstream up");
        std::thread::sleep(Duration::from_millis(20));
    }

    let mut stack = start(&dir, &ports);
    stack.wait_ready().await;
    wait_for_all(&stack.api, &expected).await;

    // Ctrl-C: a clean stop, the broker with it; then everything is still there.
    let status = stack.signal(libc::SIGINT);
    assert!(status.success(), "fleetstream up exited with {status} on SIGINT");
    assert!(!broker_running(ports.broker), "the broker outlived a clean stop");
    let mut stack = start(&dir, &ports);
    let ready = stack.wait_ready().await;
    eprintln!("ready {} ms after a restart with the day on disk", ready.as_millis());
    wait_for_all(&stack.api, &expected).await;
    assert!(stack.signal(libc::SIGTERM).success());
    std::fs::remove_dir_all(&dir).unwrap();
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(support::unique("fleetstream-up"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
