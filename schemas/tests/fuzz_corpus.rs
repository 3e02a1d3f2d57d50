//! Replays the saved fuzz corpus (`fuzz/corpus/<target>/`) through the same entry points the
//! fuzz targets use, on stable Rust, so that CI re-checks every input the fuzzer found
//! interesting (and every crash once fixed and added there).

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target);
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

#[test]
fn json_body_corpus_replays_cleanly() {
    let n = replay("json_body", fleetstream_schemas::fuzzing::json_body);
    assert!(n >= 50, "the json_body corpus has only {n} inputs");
}

#[test]
fn osmand_request_corpus_replays_cleanly() {
    let n = replay("osmand_request", fleetstream_schemas::fuzzing::osmand_request);
    assert!(n >= 50, "the osmand_request corpus has only {n} inputs");
}
