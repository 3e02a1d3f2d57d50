//! What one position means for its device: distance, time, speed and heading since the previous
//! fix, odometer, moving or stopped, H3 cell, the fences containing it, and the geofence
//! transitions it confirms — in event time, whatever the order the fixes arrive in.
//!
//! Pure and synchronous, and deterministic given a device's [`DeviceState`]: replaying the same
//! messages from the same state gives the same rows and events, which is what makes a crash or a
//! rebalance invisible in the output. Each device keeps its recent history ([`crate::history`]):
//! a fix up to `max_lateness` behind the device's newest fix is placed where it belongs, and the
//! fixes after it are corrected (versioned rows that win in ClickHouse, events added or
//! withdrawn); an older fix is stored with its fences, flagged late, and changes nothing else; a
//! copy of a fix already applied (same device and fix time) is ignored.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use fleetstream_geofence::{Hysteresis, Transition};
use fleetstream_schemas::{EventKind, Position};
use fleetstream_storage::{AlertRow, GeofenceEventRow, PositionRow, WindowRow, version};
use serde::{Deserialize, Serialize};

use crate::alerts::{Fired, Rules};
use crate::history::{Context, Enrichment, FenceTransition, Fix, History, Occurrence, Placement};
use crate::incarnation;

pub use crate::history::{bearing_deg, distance_m};

/// Where a message came from in Kafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub partition: i32,
    pub offset: i64,
}

/// Everything the processors remember about one device; persisted with every batch (the
/// history's window itself is rebuilt from the stored positions, see [`Tracker::restore`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceState {
    #[serde(flatten)]
    pub history: History,
    /// The last message applied to this device: anything at or before it is a redelivery.
    pub applied: Option<Source>,
    /// When a message of this device was last applied here (not persisted): idle devices are
    /// dropped from memory and restored from storage if they come back.
    #[serde(skip)]
    pub touched: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub hysteresis: Hysteresis,
    /// At or above this speed a device counts as moving.
    pub moving_speed_mps: f64,
    /// How far behind its device's newest fix a fix may arrive and still be placed in order.
    pub max_lateness_ms: i64,
    /// Most fixes a device's history keeps (a bound on memory for devices reporting often).
    pub max_history_fixes: usize,
}

/// The defaults of the processor's flags (no hysteresis, 0.5 m/s, 10 minutes, 256 fixes).
impl Default for Settings {
    fn default() -> Self {
        crate::config::ProcessorConfig::local("default").settings()
    }
}

/// The outcome of one message.
#[derive(Debug, PartialEq)]
pub enum Applied {
    /// Already applied before (a redelivery after a crash or rebalance): write nothing.
    Redelivered,
    /// The same device and fix time as a fix already applied: ignored.
    Duplicate,
    Stored(Box<Output>),
}

/// What one position adds to the output.
#[derive(Debug, PartialEq)]
pub struct Output {
    /// The position's own row (flagged late when it fell outside its device's history).
    pub row: PositionRow,
    /// Earlier positions of the device whose enrichment this one changed.
    pub corrections: Vec<Correction>,
    /// Geofence events confirmed by this position, or new, changed or withdrawn
    /// (`retracted = 1`) because it was placed before others.
    pub events: Vec<GeofenceEventRow>,
    /// Alerts fired by this position, or new, changed or withdrawn, in the same way.
    pub alerts: Vec<AlertRow>,
}

/// A stored position's new enrichment: applied to its row, with a version that wins.
#[derive(Debug, Clone, PartialEq)]
pub struct Correction {
    pub device_id: String,
    pub fix_time_ms: i64,
    pub enrichment: Enrichment,
    pub version: u64,
}

impl Correction {
    /// Rewrites the row's enrichment (everything else about a position never changes).
    pub fn apply_to(&self, row: &mut PositionRow) {
        set_enrichment(row, &self.enrichment);
        row.late = 0;
        row.version = self.version;
    }
}

fn set_enrichment(row: &mut PositionRow, e: &Enrichment) {
    row.prev_fix_ms = e.prev_fix_ms;
    row.distance_m = e.distance_m;
    row.speed_mps = e.speed_mps;
    row.speed_derived = u8::from(e.speed_derived);
    row.heading_deg = e.heading_deg;
    row.heading_derived = u8::from(e.heading_derived);
    row.distance_total_m = e.distance_total_m;
    row.moving = u8::from(e.moving);
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

    /// Installs a device's state loaded from storage, with `window`: its stored positions after
    /// the history's base (every stored version; those the state does not cover are ignored).
    /// When they do not add up to the window the state describes (a row refused by storage,
    /// say), the history restarts at the head: later fixes are still placed, earlier ones are
    /// flagged late. Returns false then.
    pub fn restore(&mut self, device_id: &str, mut state: DeviceState, window: &[WindowRow], rules: &Rules) -> bool {
        let complete = state.history.rebuild_window(window, state.applied, rules);
        if !complete {
            state.history.forget_window();
        }
        state.touched = Some(Instant::now());
        self.devices.insert(device_id.to_string(), state);
        complete
    }

    /// Forgets devices that sent nothing for `idle` (their states are stored: a device that
    /// comes back is restored from storage). Call only between batches, once the last one is
    /// written. Returns how many were dropped.
    pub fn evict_idle(&mut self, idle: Duration) -> usize {
        let before = self.devices.len();
        let now = Instant::now();
        self.devices.retain(|_, s| s.touched.is_some_and(|t| now.duration_since(t) < idle));
        before - self.devices.len()
    }

    /// Forgets every device (after a rebalance: another instance may have moved them on).
    pub fn clear(&mut self) {
        self.devices.clear();
    }

    /// Devices held in memory.
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// Restarts the offsets of `p`'s device when its state belongs to another incarnation of
    /// the message's partition ([`incarnation`]), so that the message is applied instead of
    /// skipped as a redelivery; returns the evidence then. What the state knows of the device
    /// stays (newest fix, odometer, fences: those positions are stored); its window of recent
    /// fixes goes, because their versions are offsets of the old incarnation, which corrections
    /// written at the new, smaller offsets could not beat: older fixes are flagged late instead.
    pub fn restart_other_incarnation(
        &mut self,
        p: &Position,
        source: Source,
        high_watermark: Option<i64>,
    ) -> Option<incarnation::Evidence> {
        let state = self.devices.get_mut(&p.device_id)?;
        let evidence = incarnation::other_incarnation(state, p.fix_time_ms, source, high_watermark)?;
        state.applied = None;
        state.history.forget_window();
        Some(evidence)
    }

    pub fn apply(&mut self, p: &Position, source: Source, ctx: &Context<'_>, settings: &Settings) -> Applied {
        let state = self.devices.entry(p.device_id.clone()).or_default();
        if incarnation::would_skip(state, source) {
            return Applied::Redelivered;
        }
        state.applied = Some(source);
        state.touched = Some(Instant::now());
        // A copy runs no geometry.
        if state.history.place(p.fix_time_ms, settings) == Placement::Copy {
            return Applied::Duplicate;
        }
        let fix = Fix {
            t: p.fix_time_ms,
            lat: p.lat,
            lon: p.lon,
            speed: p.speed_mps,
            heading: p.heading_deg,
            ignition: p.ignition,
            fences: ctx.fences.containing(p.lat, p.lon).iter().map(|f| f.id.clone()).collect::<Vec<_>>().into(),
            rules: ctx.rules.clone(),
            source,
        };
        let outside = state.history.outside_enrichment(&fix, settings);
        let Some(placed) = state.history.apply(fix.clone(), ctx, settings) else {
            return Applied::Duplicate;
        };
        let current = version::current(source.offset);
        let row = match &placed.enrichment {
            Some(e) => position_row(p, &fix, e, false, current),
            None => position_row(p, &fix, &outside, true, version::late(source.offset)),
        };
        let device = &p.device_id;
        let (mut events, mut alerts) = (Vec::new(), Vec::new());
        let occurred = placed.occurred.iter().map(|o| (&fix, o, false));
        let confirmed = placed.confirmed.iter().map(|(f, o)| (f, o, false));
        let withdrawn = placed.withdrawn.iter().map(|(f, o)| (f, o, true));
        for (f, occurrence, retracted) in occurred.chain(confirmed).chain(withdrawn) {
            match occurrence {
                Occurrence::Fence(t) => events.push(event_row(device, f, t, current, retracted)),
                Occurrence::Alert(a) => alerts.push(alert_row(device, f, a, current, retracted)),
            }
        }
        let corrections = placed
            .corrected
            .into_iter()
            .map(|(f, enrichment)| Correction {
                device_id: device.clone(),
                fix_time_ms: f.t,
                enrichment,
                version: current,
            })
            .collect();
        Applied::Stored(Box::new(Output { row, corrections, events, alerts }))
    }
}

/// The H3 cell at resolution 9, 0 where the coordinates have none.
pub fn h3_cell(lat: f64, lon: f64) -> u64 {
    h3o::LatLng::new(lat, lon).map(|ll| u64::from(ll.to_cell(h3o::Resolution::Nine))).unwrap_or(0)
}

fn position_row(p: &Position, fix: &Fix, e: &Enrichment, late: bool, version: u64) -> PositionRow {
    let mut row = PositionRow {
        event_id: p.event_id.clone(),
        device_id: p.device_id.clone(),
        fix_time_ms: p.fix_time_ms,
        received_at_ms: p.received_at_ms,
        lat: p.lat,
        lon: p.lon,
        speed_mps: None,
        speed_derived: 0,
        heading_deg: None,
        altitude_m: p.altitude_m,
        accuracy_m: p.accuracy_m,
        satellites: p.satellites,
        ignition: p.ignition.map(u8::from),
        odometer_m: p.odometer_m,
        battery_pct: p.battery_pct,
        attributes: p.attributes.get().to_owned(),
        prev_fix_ms: None,
        distance_m: None,
        kafka_partition: fix.source.partition,
        kafka_offset: fix.source.offset,
        heading_derived: 0,
        distance_total_m: 0.0,
        moving: 0,
        h3_cell: h3_cell(p.lat, p.lon),
        fence_ids: fix.fences.to_vec(),
        device_name: String::new(),
        fleet: String::new(),
        device_type: String::new(),
        late: u8::from(late),
        version,
    };
    set_enrichment(&mut row, e);
    row
}

fn event_row(device_id: &str, fix: &Fix, t: &FenceTransition, version: u64, retracted: bool) -> GeofenceEventRow {
    let (kind, at_ms, dwell_ms) = match t.transition {
        Transition::Enter { at_ms } => (EventKind::Enter, at_ms, None),
        Transition::Exit { at_ms, dwell_ms } => (EventKind::Exit, at_ms, Some(dwell_ms)),
    };
    GeofenceEventRow {
        event_id: fleetstream_schemas::ids::geofence_event_id(device_id, &t.fence_id, kind, at_ms),
        device_id: device_id.to_string(),
        fence_id: t.fence_id.clone(),
        event_type: kind,
        event_time_ms: at_ms,
        dwell_ms,
        fix_time_ms: fix.t,
        lat: fix.lat,
        lon: fix.lon,
        kafka_partition: fix.source.partition,
        kafka_offset: fix.source.offset,
        version,
        retracted: u8::from(retracted),
    }
}

fn alert_row(device_id: &str, fix: &Fix, a: &Fired, version: u64, retracted: bool) -> AlertRow {
    AlertRow {
        alert_id: fleetstream_schemas::ids::alert_id(device_id, &a.rule.id, a.started_ms),
        rule_id: a.rule.id.clone(),
        kind: a.rule.kind,
        device_id: device_id.to_string(),
        fence_id: a.rule.fence_id.clone(),
        started_ms: a.started_ms,
        alert_time_ms: a.at_ms,
        duration_ms: a.at_ms - a.started_ms,
        speed_mps: a.speed_mps,
        lat: fix.lat,
        lon: fix.lon,
        kafka_partition: fix.source.partition,
        kafka_offset: fix.source.offset,
        version,
        retracted: u8::from(retracted),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    use fleetstream_geofence::{Fence, FenceIndex};
    use fleetstream_schemas::POSITION_SCHEMA_VERSION;
    use proptest::prelude::*;

    /// What the doc comment of `Settings::default` promises, from the flags' defaults.
    #[test]
    fn default_settings_are_the_flags_defaults() {
        let s = Settings::default();
        assert_eq!((s.hysteresis.min_time_ms, s.hysteresis.min_distance_m), (0, 0.0));
        assert_eq!((s.moving_speed_mps, s.max_lateness_ms, s.max_history_fixes), (0.5, 600_000, 256));
    }

    pub(crate) fn pos(device: &str, t: i64, lat: f64, lon: f64, speed: Option<f64>) -> Position {
        Position {
            v: POSITION_SCHEMA_VERSION,
            event_id: fleetstream_schemas::ids::derived_event_id(device, t),
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
    fn ctx(fences: &FenceIndex) -> Context<'_> {
        Context::without_rules(fences)
    }

    fn fences() -> FenceIndex {
        FenceIndex::new(vec![Fence::circle("pier", "Pier", 40.7, -74.0, 1_000.0).unwrap()])
    }

    fn src(offset: i64) -> Source {
        Source { partition: 0, offset }
    }

    fn stored(a: Applied) -> Output {
        match a {
            Applied::Stored(output) => *output,
            other => panic!("not stored: {other:?}"),
        }
    }

    const IN: (f64, f64) = (40.7, -74.0);
    const OUT: (f64, f64) = (40.8, -74.0);

    #[test]
    fn deltas_odometer_speed_heading_and_h3() {
        let (mut t, f, s) = (Tracker::default(), FenceIndex::default(), Settings::default());
        let first = stored(t.apply(&pos("a", 0, 40.0, -74.0, None), src(0), &ctx(&f), &s)).row;
        assert_eq!((first.prev_fix_ms, first.distance_m, first.speed_mps, first.moving), (None, None, None, 0));
        let row = stored(t.apply(&pos("a", 100_000, 40.01, -74.0, None), src(1), &ctx(&f), &s)).row;
        let d = row.distance_m.unwrap();
        assert!((d - 1_111.95).abs() < 1.0, "{d}");
        assert!((row.speed_mps.unwrap() - d / 100.0).abs() < 1e-9);
        assert_eq!((row.speed_derived, row.moving), (1, 1));
        assert!(row.heading_deg.unwrap().abs() < 1e-6, "due north");
        assert_eq!(row.heading_derived, 1);
        assert_eq!(row.distance_total_m, d);
        assert_ne!(row.h3_cell, 0);
        assert_eq!(row.h3_cell, h3_cell(40.01, -74.0));
        assert_eq!((row.late, row.version), (0, version::current(1)));
        let row = stored(t.apply(&pos("a", 200_000, 40.01, -74.01, Some(0.1)), src(2), &ctx(&f), &s)).row;
        assert_eq!((row.speed_mps, row.speed_derived, row.moving), (Some(0.1), 0, 0));
        assert!((row.heading_deg.unwrap() - 270.0).abs() < 0.1, "due west");
        assert!(row.distance_total_m > d);
    }

    #[test]
    fn enter_then_exit_with_dwell() {
        let (mut t, f, s) = (Tracker::default(), fences(), Settings::default());
        let out = stored(t.apply(&pos("a", 0, OUT.0, OUT.1, None), src(0), &ctx(&f), &s));
        assert!(out.events.is_empty());
        let out = stored(t.apply(&pos("a", 10_000, IN.0, IN.1, None), src(1), &ctx(&f), &s));
        assert_eq!(out.row.fence_ids, vec!["pier"]);
        let e = &out.events;
        assert_eq!((e.len(), e[0].event_type, e[0].event_time_ms), (1, EventKind::Enter, 10_000));
        let e = stored(t.apply(&pos("a", 70_000, OUT.0, OUT.1, None), src(2), &ctx(&f), &s)).events;
        assert_eq!((e[0].event_type, e[0].event_time_ms, e[0].dwell_ms), (EventKind::Exit, 70_000, Some(60_000)));
        assert_eq!((e[0].event_id.as_str(), e[0].retracted), ("a|pier|exit|70000", 0));
        assert!(t.state("a").unwrap().history.head.fences.is_empty(), "idle pairs are dropped");
    }

    #[test]
    fn a_late_fix_is_placed_in_order_and_corrects_what_follows() {
        let (mut t, f, s) = (Tracker::default(), fences(), Settings::default());
        stored(t.apply(&pos("a", 0, OUT.0, OUT.1, None), src(0), &ctx(&f), &s));
        let exit_row = stored(t.apply(&pos("a", 120_000, OUT.0, OUT.1 + 0.01, None), src(1), &ctx(&f), &s)).row;
        // The fix in between arrives last: it was inside the fence.
        let out = stored(t.apply(&pos("a", 60_000, IN.0, IN.1, None), src(2), &ctx(&f), &s));
        assert_eq!((out.row.late, out.row.prev_fix_ms), (0, Some(0)));
        assert_eq!(out.row.version, version::current(2));
        assert_eq!(out.corrections.len(), 1, "{:?}", out.corrections);
        let c = &out.corrections[0];
        assert_eq!((c.fix_time_ms, c.enrichment.prev_fix_ms, c.version), (120_000, Some(60_000), version::current(2)));
        assert!(c.enrichment.distance_total_m > exit_row.distance_total_m, "the detour adds distance");
        let kinds: Vec<(EventKind, i64, u8)> =
            out.events.iter().map(|e| (e.event_type, e.event_time_ms, e.retracted)).collect();
        assert_eq!(
            kinds,
            vec![(EventKind::Enter, 60_000, 0), (EventKind::Exit, 120_000, 0)],
            "enter at the late fix, exit after it"
        );
        assert_eq!(out.events[1].dwell_ms, Some(60_000));
    }

    #[test]
    fn copies_redeliveries_and_fixes_beyond_the_bound() {
        let s = Settings { max_lateness_ms: 30_000, ..Settings::default() };
        let (mut t, f) = (Tracker::default(), fences());
        stored(t.apply(&pos("a", 100_000, IN.0, IN.1, None), src(5), &ctx(&f), &s));
        assert_eq!(t.apply(&pos("a", 100_000, IN.0, IN.1, None), src(5), &ctx(&f), &s), Applied::Redelivered);
        assert_eq!(t.apply(&pos("a", 90_000, OUT.0, OUT.1, None), src(3), &ctx(&f), &s), Applied::Redelivered);
        assert_eq!(t.apply(&pos("a", 100_000, IN.0, IN.1, None), src(6), &ctx(&f), &s), Applied::Duplicate);
        // 50 s behind the newest, beyond the 30 s bound: stored with its fences, flagged late.
        let out = stored(t.apply(&pos("a", 50_000, OUT.0, OUT.1, None), src(7), &ctx(&f), &s));
        assert!(out.events.is_empty() && out.corrections.is_empty());
        assert_eq!((out.row.prev_fix_ms, out.row.distance_m, out.row.late), (None, None, 1));
        assert!(out.row.fence_ids.is_empty());
        assert_eq!(version::tier(out.row.version), version::LATE);
        let state = &t.state("a").unwrap().history;
        assert_eq!(state.head.last.unwrap().fix_time_ms, 100_000);
        assert!(state.head.fences["pier"].inside);
        // A copy of the late one is a copy too (beyond the bound: a late copy, which loses).
        let again = stored(t.apply(&pos("a", 50_000, OUT.0, OUT.1, None), src(8), &ctx(&f), &s)).row;
        assert!(again.version < out.row.version, "the first late copy wins");
    }

    #[test]
    fn a_state_of_another_incarnation_restarts_its_offsets_and_keeps_the_device() {
        let s = Settings { max_lateness_ms: 600_000, ..Settings::default() };
        let (mut t, f) = (Tracker::default(), fences());
        stored(t.apply(&pos("a", 0, OUT.0, OUT.1, None), src(40), &ctx(&f), &s));
        let before = stored(t.apply(&pos("a", 60_000, IN.0, IN.1, None), src(41), &ctx(&f), &s)).row;
        // The topic is recreated: offsets start again. A real redelivery is still skipped...
        assert_eq!(t.restart_other_incarnation(&pos("a", 60_000, IN.0, IN.1, None), src(41), Some(42)), None);
        // ...a new fix at a small offset is not.
        let next = pos("a", 120_000, IN.0, IN.1 + 0.001, None);
        let evidence = t.restart_other_incarnation(&next, src(0), None);
        assert_eq!(evidence, Some(incarnation::Evidence::NewerFix { applied_offset: 41 }));
        let out = stored(t.apply(&next, src(0), &ctx(&f), &s));
        assert_eq!(out.row.prev_fix_ms, Some(60_000), "the device's history goes on");
        assert!(out.row.distance_total_m > before.distance_total_m);
        assert!(out.events.is_empty(), "still inside the fence: no new enter");
        assert_eq!(t.state("a").unwrap().applied, Some(src(0)));
        // A fix from before the recreation, now at a small offset: flagged late (its neighbours'
        // rows carry versions of the old offsets), not skipped and not correcting anything.
        let late = stored(t.apply(&pos("a", 30_000, IN.0, IN.1, None), src(1), &ctx(&f), &s));
        assert_eq!((late.row.late, late.corrections.len()), (1, 0));
        assert_eq!(t.restart_other_incarnation(&pos("a", 9, IN.0, IN.1, None), src(2), Some(1)), None, "not skipped");
    }

    #[test]
    fn a_late_fix_withdraws_the_alert_it_breaks() {
        let rules = rules();
        let (mut t, f, s) = (Tracker::default(), FenceIndex::default(), Settings::default());
        // Over 20 m/s for 60 s.
        let c = Context { fences: &f, rules: rules[1..2].into() };
        let (p1, p2) = ((OUT.0 + 0.1, OUT.1), (OUT.0 + 0.2, OUT.1));
        stored(t.apply(&pos("a", 0, OUT.0, OUT.1, None), src(0), &c, &s));
        let started = stored(t.apply(&pos("a", 60_000, p1.0, p1.1, None), src(1), &c, &s)).alerts;
        assert!(started.is_empty(), "11 km in 60 s is fast, for 0 s so far");
        let fired = stored(t.apply(&pos("a", 120_000, p2.0, p2.1, None), src(2), &c, &s)).alerts;
        assert_eq!(fired.len(), 1);
        assert_eq!((fired[0].started_ms, fired[0].alert_time_ms, fired[0].retracted), (60_000, 120_000, 0));
        assert_eq!(fired[0].alert_id, "a|fast|60000");
        // A late fix at 90 s, still where the device was at 60 s: it stood still in between.
        let late = stored(t.apply(&pos("a", 90_000, p1.0, p1.1, None), src(3), &c, &s)).alerts;
        let got: Vec<(&str, i64, u8)> =
            late.iter().map(|a| (a.alert_id.as_str(), a.alert_time_ms, a.retracted)).collect();
        assert_eq!(got, [("a|fast|60000", 120_000, 1)], "withdrawn, and the 30 s after it are not enough");
    }

    #[test]
    fn a_deleted_fence_ends_the_visit() {
        let (mut t, s) = (Tracker::default(), Settings::default());
        stored(t.apply(&pos("a", 0, IN.0, IN.1, None), src(0), &ctx(&fences()), &s));
        let e = stored(t.apply(&pos("a", 5_000, IN.0, IN.1, None), src(1), &ctx(&FenceIndex::default()), &s)).events;
        assert_eq!((e[0].event_type, e[0].dwell_ms), (EventKind::Exit, Some(5_000)));
    }

    /// The processor and a store that keeps every version written, as ClickHouse does.
    #[derive(Default)]
    struct Sim {
        tracker: Tracker,
        rows: Vec<PositionRow>,
        events: Vec<GeofenceEventRow>,
        alerts: Vec<AlertRow>,
        /// States as last persisted (at batch ends), by device.
        saved: HashMap<String, String>,
    }

    impl Sim {
        fn feed(&mut self, p: &Position, offset: i64, c: &Context<'_>, s: &Settings) {
            if let Applied::Stored(out) = self.tracker.apply(p, src(offset), c, s) {
                self.rows.push(out.row);
                for c in out.corrections {
                    let mut row =
                        self.newest_row(&c.device_id, c.fix_time_ms).expect("a corrected row is stored").clone();
                    c.apply_to(&mut row);
                    self.rows.push(row);
                }
                self.events.extend(out.events);
                self.alerts.extend(out.alerts);
            }
        }

        fn newest_row(&self, device: &str, t: i64) -> Option<&PositionRow> {
            self.rows.iter().filter(|r| r.device_id == device && r.fix_time_ms == t).max_by_key(|r| r.version)
        }

        /// Ends a batch: states are persisted after the outputs.
        fn persist(&mut self) {
            for device in ["d"] {
                if let Some(state) = self.tracker.state(device) {
                    self.saved.insert(device.into(), serde_json::to_string(state).unwrap());
                }
            }
        }

        /// A new processor takes over from the persisted states and the stored rows.
        fn restart(&mut self, rules: &Rules) {
            self.tracker = Tracker::default();
            for (device, state) in &self.saved {
                let window: Vec<WindowRow> = self
                    .rows
                    .iter()
                    .filter(|r| &r.device_id == device)
                    .map(|r| WindowRow {
                        device_id: r.device_id.clone(),
                        fix_time_ms: r.fix_time_ms,
                        lat: r.lat,
                        lon: r.lon,
                        speed_mps: r.speed_mps,
                        speed_derived: r.speed_derived,
                        heading_deg: r.heading_deg,
                        heading_derived: r.heading_derived,
                        ignition: r.ignition,
                        fence_ids: r.fence_ids.clone(),
                        kafka_partition: r.kafka_partition,
                        kafka_offset: r.kafka_offset,
                        version: r.version,
                    })
                    .collect();
                let restored = self.tracker.restore(device, serde_json::from_str(state).unwrap(), &window, rules);
                assert!(restored, "the window comes back from the stored rows");
            }
        }

        /// What readers see: per fix time the newest version; per event or alert id the newest,
        /// unless withdrawn. Versions and provenance (offsets differ between arrival orders) left out.
        fn view(&self) -> (BTreeMap<i64, String>, BTreeMap<String, String>, BTreeMap<String, String>) {
            let mut rows: BTreeMap<i64, &PositionRow> = BTreeMap::new();
            for r in &self.rows {
                if rows.get(&r.fix_time_ms).is_none_or(|kept| r.version > kept.version) {
                    rows.insert(r.fix_time_ms, r);
                }
            }
            let events = newest_by_id(&self.events, |e| (&e.event_id, e.version));
            let rows = rows
                .into_iter()
                .map(|(t, r)| {
                    let enrichment = format!(
                        "prev={:?} d={:?} v={:?}/{} h={:?}/{} total={} moving={} fences={:?} late={}",
                        r.prev_fix_ms,
                        r.distance_m,
                        r.speed_mps,
                        r.speed_derived,
                        r.heading_deg,
                        r.heading_derived,
                        r.distance_total_m,
                        r.moving,
                        r.fence_ids,
                        r.late
                    );
                    (t, enrichment)
                })
                .collect();
            let events = events
                .into_iter()
                .filter(|(_, e)| e.retracted == 0)
                .map(|(id, e)| {
                    (
                        id,
                        format!(
                            "{} {} dwell={:?} by {}",
                            e.event_type.as_str(),
                            e.event_time_ms,
                            e.dwell_ms,
                            e.fix_time_ms
                        ),
                    )
                })
                .collect();
            let alerts = newest_by_id(&self.alerts, |a| (&a.alert_id, a.version))
                .into_iter()
                .filter(|(_, a)| a.retracted == 0)
                .map(|(id, a)| (id, format!("{} at {} speed={:?}", a.kind.as_str(), a.alert_time_ms, a.speed_mps)))
                .collect();
            (rows, events, alerts)
        }
    }

    /// Per id, the copy with the highest version.
    fn newest_by_id<T>(items: &[T], key: fn(&T) -> (&String, u64)) -> BTreeMap<String, &T> {
        let mut newest: BTreeMap<String, &T> = BTreeMap::new();
        for item in items {
            let (id, version) = key(item);
            if newest.get(id).is_none_or(|kept| version > key(kept).1) {
                newest.insert(id.clone(), item);
            }
        }
        newest
    }

    /// A track of `n` fixes (gaps of 5 to 120 s) going in and out of the fence.
    fn track(gaps: &[(i64, bool)]) -> Vec<Position> {
        let mut t = 0;
        gaps.iter()
            .map(|(gap, inside)| {
                t += gap * 1_000;
                let (lat, lon) = if *inside { IN } else { OUT };
                pos("d", t, lat + (t % 7) as f64 * 1e-4, lon, None)
            })
            .collect()
    }

    /// One rule of each kind, with durations the tracks of [`track`] reach and break.
    fn rules() -> Vec<std::sync::Arc<crate::alerts::Rule>> {
        use crate::alerts::Rule;
        use fleetstream_schemas::AlertKind;
        let rule = |id, kind, speed_mps, duration_ms, fence_id| {
            std::sync::Arc::new(Rule::any_device(id, kind, speed_mps, duration_ms, fence_id))
        };
        vec![
            rule("dwell", AlertKind::Dwell, 0.0, 120_000, "pier"),
            rule("fast", AlertKind::Overspeed, 20.0, 60_000, ""),
            rule("idle", AlertKind::Idle, 0.0, 90_000, ""),
            rule("slow-in-pier", AlertKind::Overspeed, 1.0, 0, "pier"),
        ]
    }

    fn settings(min_time_ms: i64) -> Settings {
        Settings {
            hysteresis: Hysteresis { min_time_ms, min_distance_m: 0.0 },
            max_lateness_ms: 600_000,
            max_history_fixes: 100_000,
            ..Settings::default()
        }
    }

    /// The tracks of the property test below do fire the rules of [`rules`], each kind of them.
    #[test]
    fn the_property_tracks_fire_every_kind_of_alert() {
        let gaps: Vec<(i64, bool)> = (0..40).map(|i| (if i % 5 == 0 { 70 } else { 35 }, (i / 8) % 2 == 1)).collect();
        let (f, s) = (fences(), settings(0));
        let c = Context { fences: &f, rules: rules().into() };
        let mut sim = Sim::default();
        for (i, p) in track(&gaps).iter().enumerate() {
            sim.feed(p, i as i64, &c, &s);
        }
        let kinds: BTreeSet<String> = sim.view().2.values().map(|a| a.split(' ').next().unwrap().to_string()).collect();
        assert_eq!(kinds, BTreeSet::from(["dwell".into(), "idle".into(), "overspeed".into()]), "{:?}", sim.view().2);
    }

    proptest! {
        /// Any arrival order within the lateness bound, with copies sent again at any time and
        /// a restart anywhere (from the states of the last batch end): what readers see equals
        /// the output of the same fixes in time order.
        #[test]
        fn the_output_does_not_depend_on_arrival_order(
            gaps in proptest::collection::vec((5i64..120, any::<bool>()), 1..60),
            delays in proptest::collection::vec(0i64..600, 60),
            copies in proptest::collection::vec((0usize..60, 0i64..3_000), 0..10),
            hysteresis in prop_oneof![Just(0i64), Just(90_000i64)],
            batch in 1usize..8,
            restart_at in proptest::option::of(0usize..80),
        ) {
            let fixes = track(&gaps);
            let (f, s) = (fences(), settings(hysteresis));
            // Rules of every kind: alerts are part of the output that must not depend on order.
            let c = Context { fences: &f, rules: rules().into() };
            let mut ordered = Sim::default();
            for (i, p) in fixes.iter().enumerate() {
                ordered.feed(p, i as i64, &c, &s);
            }
            // Arrival: each fix delayed by less than the bound; copies at any later time.
            let mut arrivals: Vec<(i64, &Position)> =
                fixes.iter().zip(&delays).map(|(p, d)| (p.fix_time_ms + d * 999, p)).collect();
            for (which, later) in &copies {
                let p = &fixes[which % fixes.len()];
                arrivals.push((p.fix_time_ms + later * 1_000, p));
            }
            arrivals.sort_by_key(|(at, _)| *at);
            let mut shuffled = Sim::default();
            let (mut persisted_upto, mut restart_at) = (0, restart_at);
            let mut i = 0;
            while i < arrivals.len() {
                shuffled.feed(arrivals[i].1, i as i64, &c, &s);
                i += 1;
                if i % batch == 0 {
                    shuffled.persist();
                    persisted_upto = i;
                }
                if restart_at == Some(i) {
                    restart_at = None;
                    // Crash: outputs of the unfinished batch are stored, its states are not;
                    // the new owner redelivers from the last persisted batch end.
                    shuffled.restart(&c.rules);
                    i = persisted_upto;
                }
            }
            prop_assert_eq!(shuffled.view(), ordered.view());
        }

        /// Per fence, the events readers see alternate enter/exit in time order, whatever the
        /// arrival order.
        #[test]
        fn events_alternate_whatever_the_arrival_order(
            fixes in proptest::collection::vec((0i64..500, any::<bool>()), 1..120),
        ) {
            let (f, s) = (fences(), settings(0));
            let mut sim = Sim::default();
            for (offset, (minute, inside)) in fixes.into_iter().enumerate() {
                let (lat, lon) = if inside { IN } else { OUT };
                sim.feed(&pos("d", minute * 60_000, lat, lon, None), offset as i64, &ctx(&f), &s);
            }
            let (_, events, _) = sim.view();
            let mut last = (EventKind::Exit.as_str().to_string(), i64::MIN);
            let mut times: Vec<(i64, String)> = events.values().map(|e| {
                let mut parts = e.split(' ');
                let kind = parts.next().unwrap().to_string();
                (parts.next().unwrap().parse().unwrap(), kind)
            }).collect();
            times.sort();
            for (time, kind) in times {
                prop_assert_ne!(&kind, &last.0, "{:?}", events);
                prop_assert!(time >= last.1);
                last = (kind, time);
            }
        }
    }
}
