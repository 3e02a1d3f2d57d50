//! Entry points shared by the fuzz targets (`fuzz/`) and the test that replays their saved
//! corpus in CI (`schemas/tests/fuzz_corpus.rs`), so that both exercise exactly the same code.
//!
//! Beyond "does not panic", each checks what must hold for any input: whatever is accepted is
//! within the contract's ranges and survives the trip through Kafka unchanged.

use crate::input::{Limits, parse_position};
use crate::osmand::{parse_osmand_json, parse_osmand_params};
use crate::position::Position;
use crate::split_body;

const NOW: i64 = 1_700_000_000_000;

fn check_accepted(p: &Position) {
    assert!(p.lat.is_finite() && (-90.0..=90.0).contains(&p.lat), "lat {}", p.lat);
    assert!(p.lon.is_finite() && (-180.0..=180.0).contains(&p.lon), "lon {}", p.lon);
    assert!(!p.device_id.trim().is_empty() && p.device_id.len() <= 128);
    assert!(!p.device_id.chars().any(char::is_control));
    assert!(p.speed_mps.is_none_or(|s| (0.0..=500.0).contains(&s)));
    assert!(p.heading_deg.is_none_or(|h| (0.0..360.0).contains(&h)));
    assert!(p.fix_time_ms <= NOW + 600_000);
    let back = Position::from_message(&p.to_message()).expect("an accepted position decodes");
    assert_eq!(&back, p, "an accepted position survives the trip through Kafka");
}

/// A `POST /v1/positions` body.
pub fn json_body(data: &[u8]) {
    let limits = Limits::default();
    if let Ok(items) = split_body(data, 1_000) {
        for item in items {
            if let Ok(p) = parse_position(item, NOW, &limits) {
                check_accepted(&p);
            }
        }
    }
}

/// An OsmAnd request: the bytes as a query string, and as the apps' JSON body.
pub fn osmand_request(data: &[u8]) {
    let limits = Limits::default();
    if let Ok(params) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(data)
        && let Ok(p) = parse_osmand_params(&params, NOW, &limits)
    {
        check_accepted(&p);
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(results) = parse_osmand_json(text, NOW, &limits)
    {
        results.iter().flatten().for_each(check_accepted);
    }
}

/// Runs `run` on every input saved in `fuzz/corpus/<target>/` and returns how many there were;
/// panics naming the input that fails. The corpus replays of every crate share it.
pub fn replay_corpus(target: &str, run: fn(&[u8])) -> usize {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "{} fails on {}", target, path.display());
        count += 1;
    }
    count
}
