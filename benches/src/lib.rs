//! Shared helpers for fleetstream's benchmarks and load generators: the recorded NY Harbor
//! positions from `data/`, and timing.

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
