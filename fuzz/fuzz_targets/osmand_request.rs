//! Fuzzes the OsmAnd decoders: query/form parameters and the apps' JSON body.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| fleetstream_schemas::fuzzing::osmand_request(data));
