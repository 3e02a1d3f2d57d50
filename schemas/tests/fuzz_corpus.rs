//! Replays the saved fuzz corpus (`fuzz/corpus/<target>/`) through the same entry points the
//! fuzz targets use, on stable Rust, so that CI re-checks every input the fuzzer found
//! interesting (and every crash once fixed and added there).

use fleetstream_schemas::fuzzing::replay_corpus as replay;

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
