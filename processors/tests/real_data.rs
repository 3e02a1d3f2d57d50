//! The processor logic (no I/O) on the recorded week of NY Harbor positions: hysteresis turns
//! boundary jitter into fewer, longer visits, and never breaks the enter/exit alternation.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};

use fleetstream_geofence::{FenceIndex, Hysteresis, fences_from_geojson};
use fleetstream_processors::enrich::{Applied, Settings, Source, Tracker};
use fleetstream_processors::history::Context;
use fleetstream_schemas::outputs::EventKind;
use fleetstream_schemas::{Limits, Position, parse_position};
use fleetstream_storage::GeofenceEventRow;

fn data(file: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data").join(file)
}

fn week() -> Vec<Position> {
    let gz = std::fs::File::open(data("nyharbor-2020-12-week1.csv.gz")).unwrap();
    BufReader::new(flate2::read::GzDecoder::new(gz))
        .lines()
        .skip(1)
        .map(|l| {
            let l = l.unwrap();
            let c: Vec<&str> = l.split(',').collect();
            let json = format!(r#"{{"device_id":"{}","fix_time":"{}","lat":{},"lon":{}}}"#, c[1], c[0], c[2], c[3]);
            parse_position(&json, 1_700_000_000_000, &Limits::default()).unwrap()
        })
        .collect()
}

fn run(positions: &[Position], fences: &FenceIndex, hysteresis: Hysteresis) -> Vec<GeofenceEventRow> {
    let settings = Settings { hysteresis, ..Settings::default() };
    let mut tracker = Tracker::default();
    let mut events = Vec::new();
    for (i, p) in positions.iter().enumerate() {
        if let Applied::Stored(out) =
            tracker.apply(p, Source { partition: 0, offset: i as i64 }, &Context::without_rules(fences), &settings)
        {
            events.extend(out.events);
        }
    }
    events
}

fn alternate(events: &[GeofenceEventRow]) {
    let mut inside: HashMap<(&str, &str), bool> = HashMap::new();
    for e in events {
        let now_inside = inside.entry((&e.device_id, &e.fence_id)).or_insert(false);
        assert_eq!(e.event_type == EventKind::Enter, !*now_inside, "{e:?}");
        *now_inside = !*now_inside;
    }
}

#[test]
fn hysteresis_reduces_boundary_flapping_on_real_tracks() {
    let positions = week();
    let text = std::fs::read_to_string(data("nyc-area-counties.geojson")).unwrap();
    let fences = FenceIndex::new(fences_from_geojson(&text).unwrap());
    let raw = run(&positions, &fences, Hysteresis::NONE);
    let damped = run(&positions, &fences, Hysteresis { min_time_ms: 120_000, min_distance_m: 50.0 });
    alternate(&raw);
    alternate(&damped);
    let short_visits =
        |events: &[GeofenceEventRow]| events.iter().filter(|e| e.dwell_ms.is_some_and(|d| d < 120_000)).count();
    eprintln!(
        "events without hysteresis: {} ({} visits under 2 min); with 2 min / 50 m: {} ({} under 2 min)",
        raw.len(),
        short_visits(&raw),
        damped.len(),
        short_visits(&damped)
    );
    assert!(damped.len() < raw.len(), "hysteresis removes flapping transitions");
    assert!(short_visits(&damped) < short_visits(&raw));
}
