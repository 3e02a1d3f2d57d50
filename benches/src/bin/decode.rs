//! Ingest's CPU cost per position: splitting a request body and validating every item, on the
//! week of recorded NY Harbor positions (172,679 rows), as JSON arrays and as NDJSON of 100.
//!
//! cargo run --release -p fleetstream-benches --bin decode

use fleetstream_benches::{best_of, recorded_positions_json};
use fleetstream_schemas::{Limits, parse_position, split_body};

fn main() {
    let items = recorded_positions_json("nyharbor-2020-12-week1.csv.gz");
    let limits = Limits::default();
    let now = fleetstream_schemas::time::now_millis();
    let arrays: Vec<String> = items.chunks(100).map(|c| format!("[{}]", c.join(","))).collect();
    let ndjson: Vec<String> = items.chunks(100).map(|c| c.join("\n")).collect();
    let bytes: usize = arrays.iter().map(String::len).sum();

    for (name, bodies) in [("array of 100", &arrays), ("ndjson of 100", &ndjson)] {
        let (took, accepted) = best_of(5, || {
            let mut accepted = 0usize;
            for body in bodies {
                for item in split_body(body.as_bytes(), 10_000).unwrap() {
                    accepted += usize::from(parse_position(item, now, &limits).is_ok());
                }
            }
            accepted
        });
        assert_eq!(accepted, items.len(), "every recorded position is valid");
        let per_s = items.len() as f64 / took.as_secs_f64();
        println!(
            "{name:>14}: {} positions in {:.1} ms = {:.0} positions/s/core ({:.0} MB/s)",
            items.len(),
            took.as_secs_f64() * 1e3,
            per_s,
            bytes as f64 / took.as_secs_f64() / 1e6
        );
    }
}
