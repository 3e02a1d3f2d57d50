//! Fuzzes the JSON ingest decoder: body splitting and position validation.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| fleetstream_schemas::fuzzing::json_body(data));
