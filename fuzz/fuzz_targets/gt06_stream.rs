//! Fuzzes the gt06 decoder over a whole connection's bytes: framing, decoding, positions.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| fleetstream_protocols::fuzzing::gt06_stream(data));
