//! What one position means for its device: distance, time, speed and heading since the previous
//! fix, odometer, moving or stopped, H3 cell, the fences containing it, and the geofence
//! transitions it confirms.
//!
//! Pure and synchronous, and deterministic given a device's [`DeviceState`]: replaying the same
//! messages from the same state gives the same rows and events, which is what makes a crash or a
//! rebalance invisible in the output. Event time, not arrival time, orders a device's fixes: a
//! late position is stored (with the fences containing it) but gets no deltas and never moves
//! the device's state backwards; an exact duplicate (same device and fix time) is ignored.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use fleetstream_geofence::{FenceIndex, FenceState, Hysteresis, Transition};
use fleetstream_schemas::Position;
use fleetstream_storage::{EVENT_ENTER, EVENT_EXIT, GeofenceEventRow, PositionRow, version};
use geo::{Bearing, Distance, Haversine, Point};
use serde::{Deserialize, Serialize};

/// Great-circle distance in metres.
pub fn distance_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    Haversine.distance(Point::new(a.1, a.0), Point::new(b.1, b.0))
}

/// Initial bearing from `a` to `b`, degrees clockwise from north in [0, 360).
pub fn bearing_deg(a: (f64, f64), b: (f64, f64)) -> f64 {
    Haversine.bearing(Point::new(a.1, a.0), Point::new(b.1, b.0)).rem_euclid(360.0)
}

/// Where a message came from in Kafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub partition: i32,
    pub offset: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LastFix {
    pub fix_time_ms: i64,
    pub lat: f64,
    pub lon: f64,
}

/// Everything the processors remember about one device; persisted with every batch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceState {
    pub last: Option<LastFix>,
    pub distance_total_m: f64,
    /// The last message applied to this device: anything at or before it is a redelivery.
    pub applied: Option<Source>,
    /// Fences the device is inside or about to change for; idle pairs are not kept.
    #[serde(default)]
    pub fences: BTreeMap<String, FenceState>,
}

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub hysteresis: Hysteresis,
    /// At or above this speed a device counts as moving.
    pub moving_speed_mps: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { hysteresis: Hysteresis::NONE, moving_speed_mps: 0.5 }
    }
}

/// The outcome of one message.
#[derive(Debug, PartialEq)]
pub enum Applied {
    /// Already applied before (a redelivery after a crash or rebalance): write nothing.
    Redelivered,
    /// The same device and fix time as the newest fix: ignored.
    Duplicate,
    Stored {
        row: Box<PositionRow>,
        events: Vec<GeofenceEventRow>,
    },
}

/// Per-device state of one processor.
#[derive(Debug, Default)]
pub struct Tracker {
    devices: HashMap<String, DeviceState>,
}

impl Tracker {
    pub fn knows(&self, device_id: &str) -> bool {
        self.devices.contains_key(device_id)
    }

    pub fn state(&self, device_id: &str) -> Option<&DeviceState> {
        self.devices.get(device_id)
    }

    /// Installs a device's state loaded from storage.
    pub fn restore(&mut self, device_id: &str, state: DeviceState) {
        self.devices.insert(device_id.to_string(), state);
    }

    /// Forgets every device (after a rebalance: another instance may have moved them on).
    pub fn clear(&mut self) {
        self.devices.clear();
    }

    pub fn apply(&mut self, p: &Position, source: Source, fences: &FenceIndex, settings: &Settings) -> Applied {
        let state = self.devices.entry(p.device_id.clone()).or_default();
        if let Some(done) = state.applied
            && done.partition == source.partition
            && source.offset <= done.offset
        {
            return Applied::Redelivered;
        }
        state.applied = Some(source);
        if state.last.is_some_and(|l| l.fix_time_ms == p.fix_time_ms) {
            return Applied::Duplicate;
        }

        let containing = fences.containing(p.lat, p.lon);
        let fence_ids: Vec<String> = containing.iter().map(|f| f.id.clone()).collect();
        let previous = state.last.filter(|l| l.fix_time_ms < p.fix_time_ms);
        let is_late = state.last.is_some() && previous.is_none();
        let here = (p.lat, p.lon);

        let distance = previous.map(|prev| distance_m((prev.lat, prev.lon), here));
        let (mut speed, mut speed_derived) = (p.speed_mps, false);
        let (mut heading, mut heading_derived) = (p.heading_deg, false);
        if let (Some(prev), Some(d)) = (previous, distance) {
            if speed.is_none() {
                speed = Some(d / ((p.fix_time_ms - prev.fix_time_ms) as f64 / 1000.0));
                speed_derived = true;
            }
            if heading.is_none() && d > 0.0 {
                heading = Some(bearing_deg((prev.lat, prev.lon), here));
                heading_derived = true;
            }
        }

        let mut events = Vec::new();
        if !is_late {
            state.distance_total_m += distance.unwrap_or(0.0);
            state.last = Some(LastFix { fix_time_ms: p.fix_time_ms, lat: p.lat, lon: p.lon });
            let candidates: BTreeSet<String> = fence_ids.iter().chain(state.fences.keys()).cloned().collect();
            let mut transitions = Vec::new();
            for fence_id in candidates {
                let fence_id = fence_id.as_str();
                let mut fence_state = state.fences.get(fence_id).cloned().unwrap_or_default();
                let transition = match fences.get(fence_id) {
                    Some(fence) => {
                        let inside = fence_ids.iter().any(|id| id == fence_id);
                        let past = if inside != fence_state.inside && settings.hysteresis.min_distance_m > 0.0 {
                            fence.distance_to_boundary_m(p.lat, p.lon)
                        } else {
                            0.0
                        };
                        fence_state.step(inside, past, p.fix_time_ms, settings.hysteresis)
                    }
                    // The fence was deleted while the device was inside or pending: it leaves now.
                    None if fence_state.inside => Some(fence_state.confirm(false, p.fix_time_ms)),
                    None => {
                        fence_state = FenceState::default();
                        None
                    }
                };
                if let Some(t) = transition {
                    transitions.push((fence_id.to_string(), t));
                }
                if fence_state.is_idle() {
                    state.fences.remove(fence_id);
                } else {
                    state.fences.insert(fence_id.to_string(), fence_state);
                }
            }
            events = transitions.into_iter().map(|(fence_id, t)| event_row(p, source, fence_id, t)).collect();
        }

        let row = PositionRow {
            event_id: p.event_id.clone(),
            device_id: p.device_id.clone(),
            fix_time_ms: p.fix_time_ms,
            received_at_ms: p.received_at_ms,
            lat: p.lat,
            lon: p.lon,
            speed_mps: speed,
            speed_derived: u8::from(speed_derived),
            heading_deg: heading,
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
            heading_derived: u8::from(heading_derived),
            distance_total_m: state.distance_total_m,
            moving: u8::from(speed.is_some_and(|s| s >= settings.moving_speed_mps)),
            h3_cell: h3_cell(p.lat, p.lon),
            fence_ids,
            device_name: String::new(),
            fleet: String::new(),
            device_type: String::new(),
            late: u8::from(is_late),
            version: if is_late { version::late(source.offset) } else { version::current(source.offset) },
        };
        Applied::Stored { row: Box::new(row), events }
    }
}

/// The H3 cell at resolution 9, 0 where the coordinates have none.
pub fn h3_cell(lat: f64, lon: f64) -> u64 {
    h3o::LatLng::new(lat, lon).map(|ll| u64::from(ll.to_cell(h3o::Resolution::Nine))).unwrap_or(0)
}

fn event_row(p: &Position, source: Source, fence_id: String, t: Transition) -> GeofenceEventRow {
    let (event_type, name, at_ms, dwell_ms) = match t {
        Transition::Enter { at_ms } => (EVENT_ENTER, "enter", at_ms, None),
        Transition::Exit { at_ms, dwell_ms } => (EVENT_EXIT, "exit", at_ms, Some(dwell_ms)),
    };
    GeofenceEventRow {
        event_id: format!("{}|{fence_id}|{name}|{at_ms}", p.device_id),
        device_id: p.device_id.clone(),
        fence_id,
        event_type,
        event_time_ms: at_ms,
        dwell_ms,
        fix_time_ms: p.fix_time_ms,
        lat: p.lat,
        lon: p.lon,
        kafka_partition: source.partition,
        kafka_offset: source.offset,
        version: version::current(source.offset),
        retracted: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetstream_geofence::Fence;
    use fleetstream_schemas::POSITION_SCHEMA_VERSION;
    use proptest::prelude::*;

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

    /// A 1 km circle around (40.7, -74.0).
    fn fences() -> FenceIndex {
        FenceIndex::new(vec![Fence::circle("pier", "Pier", 40.7, -74.0, 1_000.0).unwrap()])
    }

    fn src(offset: i64) -> Source {
        Source { partition: 0, offset }
    }

    fn stored(a: Applied) -> (PositionRow, Vec<GeofenceEventRow>) {
        match a {
            Applied::Stored { row, events } => (*row, events),
            other => panic!("not stored: {other:?}"),
        }
    }

    const IN: (f64, f64) = (40.7, -74.0);
    const OUT: (f64, f64) = (40.8, -74.0);

    #[test]
    fn deltas_odometer_speed_heading_and_h3() {
        let (mut t, f, s) = (Tracker::default(), FenceIndex::default(), Settings::default());
        let (first, _) = stored(t.apply(&pos("a", 0, 40.0, -74.0, None), src(0), &f, &s));
        assert_eq!((first.prev_fix_ms, first.distance_m, first.speed_mps, first.moving), (None, None, None, 0));
        let (row, _) = stored(t.apply(&pos("a", 100_000, 40.01, -74.0, None), src(1), &f, &s));
        let d = row.distance_m.unwrap();
        assert!((d - 1_111.95).abs() < 1.0, "{d}");
        assert!((row.speed_mps.unwrap() - d / 100.0).abs() < 1e-9);
        assert_eq!((row.speed_derived, row.moving), (1, 1));
        assert!(row.heading_deg.unwrap().abs() < 1e-6, "due north");
        assert_eq!(row.heading_derived, 1);
        assert_eq!(row.distance_total_m, d);
        assert_ne!(row.h3_cell, 0);
        assert_eq!(row.h3_cell, h3_cell(40.01, -74.0));
        let (row, _) = stored(t.apply(&pos("a", 200_000, 40.01, -74.01, Some(0.1)), src(2), &f, &s));
        assert_eq!((row.speed_mps, row.speed_derived, row.moving), (Some(0.1), 0, 0));
        assert!((row.heading_deg.unwrap() - 270.0).abs() < 0.1, "due west");
        assert!(row.distance_total_m > d);
    }

    #[test]
    fn enter_then_exit_with_dwell() {
        let (mut t, f, s) = (Tracker::default(), fences(), Settings::default());
        let (_, e) = stored(t.apply(&pos("a", 0, OUT.0, OUT.1, None), src(0), &f, &s));
        assert!(e.is_empty());
        let (row, e) = stored(t.apply(&pos("a", 10_000, IN.0, IN.1, None), src(1), &f, &s));
        assert_eq!(row.fence_ids, vec!["pier"]);
        assert_eq!((e.len(), e[0].event_type, e[0].event_time_ms), (1, EVENT_ENTER, 10_000));
        let (_, e) = stored(t.apply(&pos("a", 70_000, OUT.0, OUT.1, None), src(2), &f, &s));
        assert_eq!((e[0].event_type, e[0].event_time_ms, e[0].dwell_ms), (EVENT_EXIT, 70_000, Some(60_000)));
        assert_eq!(e[0].event_id, "a|pier|exit|70000");
        assert!(t.state("a").unwrap().fences.is_empty(), "idle pairs are dropped");
    }

    #[test]
    fn redeliveries_duplicates_and_late_fixes() {
        let (mut t, f, s) = (Tracker::default(), fences(), Settings::default());
        stored(t.apply(&pos("a", 10_000, IN.0, IN.1, None), src(5), &f, &s));
        assert_eq!(t.apply(&pos("a", 10_000, IN.0, IN.1, None), src(5), &f, &s), Applied::Redelivered);
        assert_eq!(t.apply(&pos("a", 9_000, OUT.0, OUT.1, None), src(3), &f, &s), Applied::Redelivered);
        assert_eq!(t.apply(&pos("a", 10_000, IN.0, IN.1, None), src(6), &f, &s), Applied::Duplicate);
        // Late: stored with its fences, no deltas, no transition, state unchanged.
        let (row, e) = stored(t.apply(&pos("a", 5_000, OUT.0, OUT.1, None), src(7), &f, &s));
        assert!(e.is_empty());
        assert_eq!((row.prev_fix_ms, row.distance_m), (None, None));
        assert!(row.fence_ids.is_empty());
        assert_eq!(row.late, 1);
        assert_eq!(version::tier(row.version), version::LATE);
        assert_eq!(t.state("a").unwrap().last.unwrap().fix_time_ms, 10_000);
        assert!(t.state("a").unwrap().fences["pier"].inside);
    }

    #[test]
    fn a_deleted_fence_ends_the_visit() {
        let (mut t, s) = (Tracker::default(), Settings::default());
        stored(t.apply(&pos("a", 0, IN.0, IN.1, None), src(0), &fences(), &s));
        let (_, e) = stored(t.apply(&pos("a", 5_000, IN.0, IN.1, None), src(1), &FenceIndex::default(), &s));
        assert_eq!((e[0].event_type, e[0].dwell_ms), (EVENT_EXIT, Some(5_000)));
    }

    #[test]
    fn state_survives_serialisation_and_resumes_identically() {
        let (f, s) = (
            fences(),
            Settings { hysteresis: Hysteresis { min_time_ms: 20_000, min_distance_m: 50.0 }, ..Settings::default() },
        );
        let track: Vec<Position> = (0..40)
            .map(|i| {
                let (lat, lon) = if (i / 7) % 2 == 0 { OUT } else { IN };
                pos("a", i * 5_000, lat, lon, None)
            })
            .collect();
        let mut straight = Tracker::default();
        let all: Vec<Applied> =
            track.iter().enumerate().map(|(i, p)| straight.apply(p, src(i as i64), &f, &s)).collect();
        // Stop after 17 messages, persist, restore elsewhere, and redeliver from message 10.
        let mut first = Tracker::default();
        for (i, p) in track[..17].iter().enumerate() {
            first.apply(p, src(i as i64), &f, &s);
        }
        let saved = serde_json::to_string(first.state("a").unwrap()).unwrap();
        let mut second = Tracker::default();
        second.restore("a", serde_json::from_str(&saved).unwrap());
        for (i, p) in track.iter().enumerate().skip(10) {
            let out = second.apply(p, src(i as i64), &f, &s);
            if i < 17 {
                assert_eq!(out, Applied::Redelivered);
            } else {
                assert_eq!(out, all[i], "message {i}");
            }
        }
        assert_eq!(second.state("a"), straight.state("a"));
    }

    proptest! {
        /// In any arrival order, with duplicates: per fence, events alternate enter/exit starting
        /// with enter, in time order, and the device's state never goes back in time.
        #[test]
        fn events_alternate_whatever_the_arrival_order(
            fixes in proptest::collection::vec((0i64..500, any::<bool>()), 1..120),
        ) {
            let (mut t, f, s) = (Tracker::default(), fences(), Settings::default());
            let mut last_type = EVENT_EXIT;
            let mut last_time = i64::MIN;
            let mut newest = i64::MIN;
            for (offset, (minute, inside)) in fixes.into_iter().enumerate() {
                let (lat, lon) = if inside { IN } else { OUT };
                if let Applied::Stored { events, .. } = t.apply(&pos("d", minute * 60_000, lat, lon, None), src(offset as i64), &f, &s) {
                    for e in events {
                        prop_assert_ne!(e.event_type, last_type);
                        prop_assert!(e.event_time_ms >= last_time);
                        last_type = e.event_type;
                        last_time = e.event_time_ms;
                    }
                }
                let now = t.state("d").unwrap().last.unwrap().fix_time_ms;
                prop_assert!(now >= newest);
                newest = now;
            }
        }
    }
}
