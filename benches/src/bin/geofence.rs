//! Processor CPU cost per position with 10, 1,000 and 10,000 fences, and the fence lookup alone;
//! then with 0, 10 and 1,000 alert rules for every device (10 fences).
//!
//! Fences are the real county and borough shapes around New York Harbor: every set holds the
//! same 10 real counties, plus copies of real shapes translated far away, so the index holds
//! many fences of real complexity while positions meet the same ones.
//! Positions are the week of recorded AIS fixes (172,679). Single-threaded: the numbers are per
//! core. Kafka and ClickHouse I/O are not included (see the closing notes for end-to-end).
//!
//! cargo run --release -p fleetstream-benches --bin geofence

use std::time::Instant;

use fleetstream_benches::{best_of, recorded_positions_json};
use fleetstream_geofence::{Fence, FenceIndex, Shape, fences_from_geojson};
use std::sync::Arc;

use fleetstream_processors::alerts::{Rule, Rules};
use fleetstream_processors::enrich::{Applied, Settings, Source, Tracker};
use fleetstream_processors::history::Context;
use fleetstream_schemas::{AlertKind, Limits, Position, parse_position};
use geo::Translate;

fn real_fences() -> Vec<Fence> {
    let dir = fleetstream_benches::data_dir();
    let mut fences = Vec::new();
    for file in ["nyc-area-counties.geojson", "nyc-boroughs.geojson"] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        fences.extend(fences_from_geojson(&text).unwrap_or_else(|e| panic!("{file}: {e}")));
    }
    fences
}

/// `n` fences: the first 10 real counties (the ones positions meet, in every set), then copies
/// of all 20 real shapes on a grid in the southern hemisphere (latitudes -60 to -5), where no
/// position is, so each set differs only in how many fences the index must skip.
fn fence_set(real: &[Fence], n: usize) -> FenceIndex {
    let mut fences: Vec<Fence> = real.iter().take(10.min(n)).cloned().collect();
    let mut k = 0usize;
    while fences.len() < n {
        let template = &real[k % real.len()];
        let (row, col) = ((k / 100) as f64, (k % 100) as f64);
        let (dx, dy) = (-100.0 + col * 3.0, -100.0 + row * 0.55);
        if let Shape::Area(area) = &template.shape {
            let moved = area.translate(dx, dy);
            fences.push(Fence::area(format!("{}-copy-{k}", template.id), template.name.clone(), moved).unwrap());
        }
        k += 1;
    }
    FenceIndex::new(fences)
}

fn main() {
    let now = fleetstream_schemas::time::now_millis();
    let positions: Vec<Position> = recorded_positions_json("nyharbor-2020-12-week1.csv.gz")
        .iter()
        .map(|j| parse_position(j, now, &Limits::default()).unwrap())
        .collect();
    let real = real_fences();
    println!("{} positions; {} real fences (15 counties, 5 boroughs)", positions.len(), real.len());
    let mut results = Vec::new();
    for n in [10usize, 1_000, 10_000] {
        let build = Instant::now();
        let index = fence_set(&real, n);
        let built = build.elapsed();
        let (lookup, hits) =
            best_of(3, || positions.iter().map(|p| index.containing(p.lat, p.lon).len()).sum::<usize>());
        let (apply, (events, _)) = apply_all(&positions, &Context::without_rules(&index));
        let per_s = |d: std::time::Duration| positions.len() as f64 / d.as_secs_f64();
        println!(
            "{n:>6} fences: index built in {:>7.1} ms; lookup {:>10.0} positions/s ({hits} hits); full apply {:>9.0} positions/s/core ({events} events)",
            built.as_secs_f64() * 1e3,
            per_s(lookup),
            per_s(apply)
        );
        results.push(per_s(apply));
    }
    println!("apply throughput, 10,000 fences vs 10: {:.2}", results[2] / results[0]);

    let index = fence_set(&real, 10);
    let county = index.containing(positions[0].lat, positions[0].lon).first().map(|f| f.id.clone());
    let mut with_rules = Vec::new();
    for n in [0usize, 10, 1_000] {
        let rules = rule_set(n, county.as_deref().unwrap_or(""));
        let (apply, (_, alerts)) = apply_all(&positions, &Context { fences: &index, rules });
        let per_s = positions.len() as f64 / apply.as_secs_f64();
        println!("{n:>6} alert rules (10 fences): full apply {per_s:>9.0} positions/s/core ({alerts} alerts)");
        with_rules.push(per_s);
    }
    println!("apply throughput, 1,000 rules vs none: {:.2}", with_rules[2] / with_rules[0]);
}

/// Every position through one tracker, best of 3: the time, and the events and alerts written.
fn apply_all(positions: &[Position], ctx: &Context<'_>) -> (std::time::Duration, (usize, usize)) {
    let settings = Settings::default();
    best_of(3, || {
        let mut tracker = Tracker::default();
        let (mut events, mut alerts) = (0usize, 0usize);
        for (i, p) in positions.iter().enumerate() {
            if let Applied::Stored(out) = tracker.apply(p, Source { partition: 0, offset: i as i64 }, ctx, &settings) {
                events += out.events.len();
                alerts += out.alerts.len();
            }
        }
        (events, alerts)
    })
}

/// `n` rules for every device, the three kinds in turn, thresholds spread (speeds 5 to 15 m/s,
/// durations 1 to 30 minutes), dwell on a county the vessels cross.
fn rule_set(n: usize, county: &str) -> Rules {
    let rules: Vec<Arc<Rule>> = (0..n)
        .map(|i| {
            let minutes = 60_000 * (1 + (i % 30) as i64);
            let rule = match i % 3 {
                0 => {
                    Rule::any_device(&format!("r{i:04}"), AlertKind::Overspeed, 5.0 + (i % 11) as f64, minutes / 10, "")
                }
                1 => Rule::any_device(&format!("r{i:04}"), AlertKind::Idle, 0.0, minutes, ""),
                _ => Rule::any_device(&format!("r{i:04}"), AlertKind::Dwell, 0.0, minutes, county),
            };
            Arc::new(rule)
        })
        .collect();
    rules.into()
}
