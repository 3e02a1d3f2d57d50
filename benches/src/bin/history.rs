//! What placing late fixes in order costs: memory per device for the recent history the
//! processors keep (`--max-lateness-secs`, `--max-history-fixes`), and the CPU time of an
//! in-order fix against a late one (which replays the device's window).
//!
//! `cargo run --release -p fleetstream-benches --bin history`
//!
//! Devices report every `interval` for 12 minutes, so that each holds a full window (10 minutes
//! of fixes, at most 256); half of the fixes lie inside a fence. Memory is the process's
//! resident set before and after, divided by the devices.

use std::time::Instant;

use fleetstream_geofence::{Fence, FenceIndex};
use fleetstream_processors::enrich::{Applied, Settings, Source, Tracker};
use fleetstream_processors::history::Context;
use fleetstream_schemas::{POSITION_SCHEMA_VERSION, Position};

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

fn position(device: &str, k: usize, t: i64) -> Position {
    // Devices on a grid around (40.7, -74.0), moving east; the fence covers the western half.
    let lat = 40.6 + (k % 300) as f64 * 0.001;
    let lon = -74.05 + (k / 300 % 300) as f64 * 0.0003 + (t / 1_000) as f64 * 1e-5;
    Position {
        v: POSITION_SCHEMA_VERSION,
        event_id: fleetstream_schemas::ids::derived_event_id(device, t),
        device_id: device.into(),
        fix_time_ms: t,
        received_at_ms: t,
        lat,
        lon,
        speed_mps: None,
        heading_deg: None,
        altitude_m: None,
        accuracy_m: None,
        satellites: None,
        ignition: None,
        odometer_m: None,
        battery_pct: None,
        attributes: Default::default(),
    }
}

fn run(devices: usize, interval_s: i64, fences: &FenceIndex) {
    let settings = Settings::default();
    let ids: Vec<String> = (0..devices).map(|k| format!("vehicle-{k:06}")).collect();
    let fixes_each = 12 * 60 / interval_s;
    let before = resident_bytes();
    let mut tracker = Tracker::default();
    let mut offset = 0i64;
    let started = Instant::now();
    for i in 0..fixes_each {
        for (k, id) in ids.iter().enumerate() {
            let p = position(id, k, 1_700_000_000_000 + i * interval_s * 1_000);
            tracker.apply(&p, Source { partition: 0, offset }, &Context::without_rules(fences), &settings);
            offset += 1;
        }
    }
    let in_order = started.elapsed();
    let applied = (fixes_each as usize * devices) as f64;
    let after = resident_bytes();
    let window = tracker.state(&ids[0]).map(|s| s.history.window_len).unwrap_or(0);

    // One late fix per device, half a window behind its newest: placed, the rest replayed.
    let late_at = 1_700_000_000_000 + (fixes_each - window as i64 / 2) * interval_s * 1_000 - 500;
    let started = Instant::now();
    let mut corrected = 0usize;
    for (k, id) in ids.iter().enumerate() {
        let p = position(id, k, late_at);
        if let Applied::Stored(out) =
            tracker.apply(&p, Source { partition: 0, offset }, &Context::without_rules(fences), &settings)
        {
            corrected += out.corrections.len();
        }
        offset += 1;
    }
    let late = started.elapsed();
    println!(
        "| {devices} | {interval_s} s | {window} | {:.0} bytes | {:.2} µs | {:.1} µs ({} corrections each) | {:.0} MB |",
        (after.saturating_sub(before)) as f64 / devices as f64,
        in_order.as_secs_f64() * 1e6 / applied,
        late.as_secs_f64() * 1e6 / devices as f64,
        corrected / devices,
        after as f64 / 1e6,
    );
}

/// Each scenario runs in a process of its own (`history DEVICES INTERVAL_S`), so that memory
/// freed by one does not hide what the next takes.
fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, devices, interval] = &args[..] {
        let fences =
            FenceIndex::new(vec![Fence::circle("west", "West", 40.75, -74.05, 6_000.0).expect("a valid circle")]);
        run(devices.parse().expect("devices"), interval.parse().expect("interval"), &fences);
        return;
    }
    println!(
        "| devices | reporting every | fixes kept per device | memory per device | in-order fix | late fix | RSS after |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (devices, interval) in [(100_000, 30), (100_000, 10), (10_000, 1)] {
        let status = std::process::Command::new(&args[0])
            .args([devices.to_string(), interval.to_string()])
            .status()
            .expect("run a scenario");
        assert!(status.success());
    }
}
