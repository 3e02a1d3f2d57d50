//! Enrichment: what a position means relative to the device's previous fix.
//!
//! Pure and synchronous, so that every rule is unit- and property-tested without a broker.
//! Event time, not arrival time, orders a device's fixes: a late position is stored but gets no
//! deltas (its predecessor is not known here) and never moves the device's state backwards.

use std::collections::HashMap;

use fleetstream_schemas::Position;
use fleetstream_storage::PositionRow;
use geo::{Distance, Haversine, Point};

/// The newest fix seen of one device.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LastFix {
    pub fix_time_ms: i64,
    pub lat: f64,
    pub lon: f64,
}

/// Where the position came from in Kafka, kept with the row for provenance.
#[derive(Debug, Clone, Copy)]
pub struct Source {
    pub partition: i32,
    pub offset: i64,
}

/// Per-device state of one processor: the newest fix of each device it has seen.
#[derive(Debug, Default)]
pub struct Tracker {
    last: HashMap<String, LastFix>,
}

/// Great-circle distance in metres.
pub fn distance_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    Haversine.distance(Point::new(a.1, a.0), Point::new(b.1, b.0))
}

impl Tracker {
    pub fn knows(&self, device_id: &str) -> bool {
        self.last.contains_key(device_id)
    }

    pub fn last_fix(&self, device_id: &str) -> Option<LastFix> {
        self.last.get(device_id).copied()
    }

    /// Seeds a device's state from storage (after a restart or a rebalance); a newer fix
    /// already seen here wins.
    pub fn seed(&mut self, device_id: &str, fix: LastFix) {
        let entry = self.last.entry(device_id.to_string()).or_insert(fix);
        if fix.fix_time_ms > entry.fix_time_ms {
            *entry = fix;
        }
    }

    /// Enriches one position into a storage row and advances the device's state.
    pub fn enrich(&mut self, p: &Position, source: Source) -> PositionRow {
        let previous = self.last_fix(&p.device_id).filter(|prev| prev.fix_time_ms < p.fix_time_ms);
        let distance = previous.map(|prev| distance_m((prev.lat, prev.lon), (p.lat, p.lon)));
        let derived_speed = match (p.speed_mps, previous, distance) {
            (None, Some(prev), Some(d)) => Some(d / ((p.fix_time_ms - prev.fix_time_ms) as f64 / 1000.0)),
            _ => None,
        };
        let is_newest = self.last_fix(&p.device_id).is_none_or(|last| p.fix_time_ms > last.fix_time_ms);
        if is_newest {
            self.last.insert(p.device_id.clone(), LastFix { fix_time_ms: p.fix_time_ms, lat: p.lat, lon: p.lon });
        }
        PositionRow {
            event_id: p.event_id.clone(),
            device_id: p.device_id.clone(),
            fix_time_ms: p.fix_time_ms,
            received_at_ms: p.received_at_ms,
            lat: p.lat,
            lon: p.lon,
            speed_mps: p.speed_mps.or(derived_speed),
            speed_derived: u8::from(derived_speed.is_some()),
            heading_deg: p.heading_deg,
            altitude_m: p.altitude_m,
            accuracy_m: p.accuracy_m,
            satellites: p.satellites,
            ignition: p.ignition.map(u8::from),
            odometer_m: p.odometer_m,
            battery_pct: p.battery_pct,
            attributes: serde_json::Value::Object(p.attributes.clone()).to_string(),
            prev_fix_ms: previous.map(|prev| prev.fix_time_ms),
            distance_m: distance,
            kafka_partition: source.partition,
            kafka_offset: source.offset,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetstream_schemas::POSITION_SCHEMA_VERSION;
    use proptest::prelude::*;

    const SRC: Source = Source { partition: 0, offset: 0 };

    fn pos(device: &str, t: i64, lat: f64, lon: f64, speed: Option<f64>) -> Position {
        Position {
            v: POSITION_SCHEMA_VERSION,
            event_id: Position::derived_event_id(device, t),
            device_id: device.into(),
            fix_time_ms: t,
            received_at_ms: t,
            lat,
            lon,
            speed_mps: speed,
            heading_deg: None,
            altitude_m: None,
            accuracy_m: None,
            satellites: None,
            ignition: None,
            odometer_m: None,
            battery_pct: None,
            attributes: Default::default(),
        }
    }

    #[test]
    fn one_degree_of_latitude_is_about_111_km() {
        let d = distance_m((40.0, -74.0), (41.0, -74.0));
        assert!((d - 111_195.0).abs() < 100.0, "{d}");
        assert_eq!(distance_m((1.0, 2.0), (1.0, 2.0)), 0.0);
    }

    #[test]
    fn first_fix_has_no_deltas() {
        let mut t = Tracker::default();
        let row = t.enrich(&pos("a", 1_000, 40.0, -74.0, None), SRC);
        assert_eq!((row.prev_fix_ms, row.distance_m, row.speed_mps, row.speed_derived), (None, None, None, 0));
        assert!(t.knows("a"));
    }

    #[test]
    fn second_fix_gets_distance_time_and_derived_speed() {
        let mut t = Tracker::default();
        t.enrich(&pos("a", 0, 40.0, -74.0, None), SRC);
        let row = t.enrich(&pos("a", 100_000, 40.01, -74.0, None), SRC);
        assert_eq!(row.prev_fix_ms, Some(0));
        let d = row.distance_m.unwrap();
        assert!((d - 1_111.95).abs() < 1.0, "{d}");
        assert!((row.speed_mps.unwrap() - d / 100.0).abs() < 1e-9);
        assert_eq!(row.speed_derived, 1);
    }

    #[test]
    fn device_speed_is_kept_when_sent() {
        let mut t = Tracker::default();
        t.enrich(&pos("a", 0, 40.0, -74.0, None), SRC);
        let row = t.enrich(&pos("a", 1_000, 40.001, -74.0, Some(3.0)), SRC);
        assert_eq!((row.speed_mps, row.speed_derived), (Some(3.0), 0));
        assert!(row.distance_m.is_some());
    }

    #[test]
    fn late_and_duplicate_fixes_get_no_deltas_and_do_not_move_state_back() {
        let mut t = Tracker::default();
        t.enrich(&pos("a", 10_000, 40.0, -74.0, None), SRC);
        let late = t.enrich(&pos("a", 5_000, 41.0, -74.0, None), SRC);
        assert_eq!((late.prev_fix_ms, late.distance_m), (None, None));
        let dup = t.enrich(&pos("a", 10_000, 40.0, -74.0, None), SRC);
        assert_eq!(dup.distance_m, None);
        assert_eq!(t.last_fix("a").unwrap().fix_time_ms, 10_000);
    }

    #[test]
    fn devices_do_not_share_state() {
        let mut t = Tracker::default();
        t.enrich(&pos("a", 0, 40.0, -74.0, None), SRC);
        assert_eq!(t.enrich(&pos("b", 1_000, 41.0, -74.0, None), SRC).distance_m, None);
    }

    #[test]
    fn seeding_never_replaces_a_newer_fix() {
        let mut t = Tracker::default();
        t.seed("a", LastFix { fix_time_ms: 5, lat: 1.0, lon: 1.0 });
        t.seed("a", LastFix { fix_time_ms: 3, lat: 2.0, lon: 2.0 });
        assert_eq!(t.last_fix("a").unwrap().fix_time_ms, 5);
        t.seed("a", LastFix { fix_time_ms: 9, lat: 3.0, lon: 3.0 });
        assert_eq!(t.last_fix("a").unwrap().lat, 3.0);
    }

    #[test]
    fn values_and_provenance_are_carried_into_the_row() {
        let mut p = pos("a", 7, 1.5, 2.5, Some(1.0));
        p.ignition = Some(true);
        p.attributes.insert("k".into(), serde_json::json!("v"));
        let row = Tracker::default().enrich(&p, Source { partition: 3, offset: 99 });
        assert_eq!((row.lat, row.lon, row.fix_time_ms, row.ignition), (1.5, 2.5, 7, Some(1)));
        assert_eq!(row.attributes, r#"{"k":"v"}"#);
        assert_eq!((row.kafka_partition, row.kafka_offset), (3, 99));
    }

    proptest! {
        /// Whatever the arrival order, the state ends at the newest fix, every delta is
        /// non-negative and points backwards in event time.
        #[test]
        fn state_is_monotonic_in_event_time(times in proptest::collection::vec(0i64..1_000_000, 1..60)) {
            let mut t = Tracker::default();
            let mut newest = i64::MIN;
            for (i, &ms) in times.iter().enumerate() {
                let row = t.enrich(&pos("d", ms, 40.0 + i as f64 * 1e-4, -74.0, None), SRC);
                if let Some(prev) = row.prev_fix_ms {
                    prop_assert!(prev < ms);
                    prop_assert_eq!(prev, newest);
                    prop_assert!(row.distance_m.unwrap() >= 0.0);
                    prop_assert!(row.speed_mps.unwrap() >= 0.0);
                } else {
                    prop_assert!(ms <= newest || newest == i64::MIN);
                }
                newest = newest.max(ms);
                prop_assert_eq!(t.last_fix("d").unwrap().fix_time_ms, newest);
            }
        }
    }
}
