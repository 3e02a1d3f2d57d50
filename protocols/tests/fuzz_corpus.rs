//! Replays the saved fuzz corpus of the protocol decoders (`fuzz/corpus/teltonika_stream/`,
//! `fuzz/corpus/gt06_stream/`) through the entry points the fuzz targets use, on stable Rust, so
//! that every test run re-checks each input kept there (the documented examples, their damaged
//! variants, and whatever the fuzzer adds).

use fleetstream_schemas::fuzzing::replay_corpus as replay;

#[test]
fn teltonika_stream_corpus_replays_cleanly() {
    let n = replay("teltonika_stream", fleetstream_protocols::fuzzing::teltonika_stream);
    assert!(n >= 50, "the teltonika_stream corpus has only {n} inputs");
}

#[test]
fn gt06_stream_corpus_replays_cleanly() {
    let n = replay("gt06_stream", fleetstream_protocols::fuzzing::gt06_stream);
    assert!(n >= 50, "the gt06_stream corpus has only {n} inputs");
}
