//! The CPU cost of the conversions one position goes through, on the week of recorded NY Harbor
//! positions (172,679 rows), single-threaded, no I/O:
//! - ingest: splitting a request body and validating every item, as JSON arrays and as NDJSON
//!   of 100;
//! - the chain from request to storage row: ingest's split, validation, token redaction and
//!   `positions.raw` encoding, then the processor's decoding and the row's attribute text,
//!   without attributes and with the ten attributes of a typical vehicle tracker.
//!
//! cargo run --release -p fleetstream-benches --bin decode

use fleetstream_benches::{best_of, recorded_positions_json};
use fleetstream_schemas::{Limits, Position, parse_position, split_body};

/// What a vehicle tracker typically sends besides the fix (Teltonika IO elements, a driver and
/// a trip), with the spacing of a hand-written client.
const TRACKER_ATTRIBUTES: &str = r#"{"priority": 0, "event_io": 0, "io21": 4, "io66": 12.713, "io67": 4.09,
    "io69": 1, "io113": 87, "io199": 1520, "driver": "d-0042", "trip": "t-17"}"#;

/// The token a request presents (at least 16 bytes, so that it is looked for in attributes).
const TOKEN: &str = "bench-device-token-0123456789";

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

    let with_attributes: Vec<String> = items
        .iter()
        .map(|item| format!(r#"{},"attributes":{TRACKER_ATTRIBUTES}}}"#, &item[..item.len() - 1]))
        .collect();
    for (name, items) in [("no attributes", &items), ("10 attributes", &with_attributes)] {
        let bodies: Vec<String> = items.chunks(100).map(|c| format!("[{}]", c.join(","))).collect();
        // Ingest: what the request becomes on `positions.raw`.
        let (ingest, messages) = best_of(5, || {
            let mut messages = Vec::with_capacity(items.len());
            for body in &bodies {
                for item in split_body(body.as_bytes(), 10_000).unwrap() {
                    let mut position = parse_position(item, now, &limits).expect("valid");
                    position.attributes.redact_token(Some(TOKEN));
                    messages.push(position.to_message());
                }
            }
            messages
        });
        // Processor: the message decoded, and the attributes as the storage row holds them.
        let (processor, attribute_bytes) = best_of(5, || {
            let mut attribute_bytes = 0usize;
            for message in &messages {
                let position = Position::from_message(message).expect("decodes");
                let row_attributes: String = position.attributes.get().to_owned();
                attribute_bytes += row_attributes.len();
            }
            attribute_bytes
        });
        assert!(attribute_bytes >= 2 * items.len());
        let per_position_ns = |took: std::time::Duration| took.as_secs_f64() * 1e9 / items.len() as f64;
        println!(
            "chain, {name}: ingest {:.0} ns + processor {:.0} ns per position ({} bytes on positions.raw each)",
            per_position_ns(ingest),
            per_position_ns(processor),
            messages.iter().map(Vec::len).sum::<usize>() / items.len()
        );
    }
}
