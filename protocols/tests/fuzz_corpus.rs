//! Replays the saved fuzz corpus of the protocol decoders (`fuzz/corpus/teltonika_stream/`,
//! `fuzz/corpus/gt06_stream/`) through the entry points the fuzz targets use, on stable Rust, so
//! that every test run re-checks each input kept there (the documented examples, their damaged
//! variants, and whatever the fuzzer adds).

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
fn teltonika_stream_corpus_replays_cleanly() {
    let n = replay("teltonika_stream", fleetstream_protocols::fuzzing::teltonika_stream);
    assert!(n >= 50, "the teltonika_stream corpus has only {n} inputs");
}

#[test]
fn gt06_stream_corpus_replays_cleanly() {
    let n = replay("gt06_stream", fleetstream_protocols::fuzzing::gt06_stream);
    assert!(n >= 50, "the gt06_stream corpus has only {n} inputs");
}
