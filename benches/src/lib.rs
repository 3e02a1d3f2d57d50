//! Shared helpers for fleetstream's benchmarks and load generators: the recorded NY Harbor
//! positions from `data/`, timing, and a process's CPU time and memory from /proc.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub fn data_dir() -> PathBuf {
    std::env::var_os("FLEETSTREAM_SAMPLE_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data"))
}

/// Device-facing JSON objects for every row of a `nyharbor-*.csv.gz` file (`ts,device_id,lat,lon`).
pub fn recorded_positions_json(file: &str) -> Vec<String> {
    let path = data_dir().join(file);
    let gz = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    BufReader::new(flate2::read::GzDecoder::new(gz))
        .lines()
        .skip(1)
        .map(|line| {
            let line = line.unwrap();
            let c: Vec<&str> = line.split(',').collect();
            format!(r#"{{"device_id":"{}","fix_time":"{}","lat":{},"lon":{}}}"#, c[1], c[0], c[2], c[3])
        })
        .collect()
}

/// Runs `f` `rounds` times and returns the fastest round (least disturbed by other load).
pub fn best_of<T>(rounds: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best: Option<(Duration, T)> = None;
    for _ in 0..rounds {
        let start = Instant::now();
        let out = f();
        let took = start.elapsed();
        if best.as_ref().is_none_or(|(b, _)| took < *b) {
            best = Some((took, out));
        }
    }
    best.expect("rounds > 0")
}

/// CPU seconds (user + system) a process has used so far, from /proc.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|u| u.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|s| s.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// A memory figure of /proc/<pid>/status in MB: `VmRSS` (resident now) or `VmHWM` (peak).
pub fn memory_mb(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find(|l| l.strip_prefix(field).is_some_and(|rest| rest.starts_with(':')))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}
