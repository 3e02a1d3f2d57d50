//! A device's recent history in event time: what makes the output independent of arrival order.
//!
//! Each device keeps a *window*: its fixes of the last `max_lateness` of event time (behind its
//! newest fix, at most `max_fixes` of them), with the device's state just before the window
//! (`base`) and after it (`head`). A fix newer than the head is applied to the head, as any
//! in-order fix is. A fix that falls inside the window is placed where it belongs: the window
//! is replayed from the base with the fix inserted, and whatever the replay changes comes out as
//! corrections: the enrichment of later fixes (previous fix, distance, derived speed and heading,
//! odometer, moving), and the geofence events that now hold, change or no longer hold. Replays
//! use each fix's fences as computed when it arrived (geometry runs once per fix), so a replay
//! of unchanged fixes reproduces exactly what was written before. Alert rules ([`crate::alerts`])
//! are evaluated in the same steps, so alerts are corrected the same way as fence events.
//!
//! Pure and synchronous: [`Tracker`] in `enrich.rs` drives it.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use fleetstream_geofence::{FenceIndex, FenceState, Transition};
use fleetstream_storage::{WindowRow, version};
use geo::{Bearing, Distance, Haversine, Point};
use serde::{Deserialize, Serialize};

use crate::alerts::{self, AlertState, Fired, Observation, Rules};
use crate::enrich::{Settings, Source};

/// Great-circle distance in metres.
pub fn distance_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    Haversine.distance(Point::new(a.1, a.0), Point::new(b.1, b.0))
}

/// Initial bearing from `a` to `b`, degrees clockwise from north in [0, 360).
pub fn bearing_deg(a: (f64, f64), b: (f64, f64)) -> f64 {
    Haversine.bearing(Point::new(a.1, a.0), Point::new(b.1, b.0)).rem_euclid(360.0)
}

/// One fix as history keeps it: everything re-applying it needs, nothing more.
#[derive(Debug, Clone, PartialEq)]
pub struct Fix {
    pub t: i64,
    pub lat: f64,
    pub lon: f64,
    /// Speed and heading as the device sent them (not derived ones).
    pub speed: Option<f64>,
    pub heading: Option<f64>,
    pub ignition: Option<bool>,
    /// The fences containing it, by id, computed when it arrived (shared: fixes are cloned into
    /// outputs and replays).
    pub fences: Arc<[String]>,
    /// The alert rules it was applied with: a replay applies it with the same ones, so that a
    /// rule changed since changes only what comes after the change.
    pub rules: Rules,
    pub source: Source,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LastFix {
    pub fix_time_ms: i64,
    pub lat: f64,
    pub lon: f64,
}

/// A device's state after some of its fixes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub last: Option<LastFix>,
    pub distance_total_m: f64,
    /// Fences the device is inside or about to change for; idle pairs are not kept.
    #[serde(default)]
    pub fences: BTreeMap<String, FenceState>,
    /// Alert rule episodes in progress, by rule id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub alerts: BTreeMap<String, AlertState>,
}

/// What the fixes of a device are applied against: the fences, and the alert rules that concern
/// the device now (a new fix keeps them: see [`Fix::rules`]).
#[derive(Clone)]
pub struct Context<'a> {
    pub fences: &'a FenceIndex,
    pub rules: Rules,
}

impl<'a> Context<'a> {
    /// The fences alone, no alert rule.
    pub fn without_rules(fences: &'a FenceIndex) -> Context<'a> {
        Context { fences, rules: Arc::from(Vec::new()) }
    }
}

/// What a fix's position row gets from the fix before it.
#[derive(Debug, Clone, PartialEq)]
pub struct Enrichment {
    pub prev_fix_ms: Option<i64>,
    pub distance_m: Option<f64>,
    pub speed_mps: Option<f64>,
    pub speed_derived: bool,
    pub heading_deg: Option<f64>,
    pub heading_derived: bool,
    pub distance_total_m: f64,
    pub moving: bool,
}

impl Fix {
    /// A fix as stored in `positions` (speed and heading the processor derived are not the
    /// device's), with the rules in force now (which it was applied with is not stored).
    fn from_row(row: &WindowRow, rules: &Rules) -> Fix {
        Fix {
            t: row.fix_time_ms,
            lat: row.lat,
            lon: row.lon,
            speed: if row.speed_derived == 0 { row.speed_mps } else { None },
            heading: if row.heading_derived == 0 { row.heading_deg } else { None },
            ignition: row.ignition.map(|on| on != 0),
            fences: row.fence_ids.as_slice().into(),
            rules: rules.clone(),
            source: Source { partition: row.kafka_partition, offset: row.kafka_offset },
        }
    }
}

/// A transition confirmed by a fix.
#[derive(Debug, Clone, PartialEq)]
pub struct FenceTransition {
    pub fence_id: String,
    pub transition: Transition,
}

/// Something a fix makes happen: a fence transition or an alert.
#[derive(Debug, Clone, PartialEq)]
pub enum Occurrence {
    Fence(FenceTransition),
    Alert(Fired),
}

/// An occurrence's identity: what a replay compares to tell an occurrence withdrawn from one that
/// still holds (perhaps differently).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Identity {
    Fence { fence_id: String, enter: bool, at_ms: i64 },
    Alert { rule_id: String, started_ms: i64 },
}

impl Occurrence {
    fn identity(&self) -> Identity {
        match self {
            Occurrence::Fence(t) => match t.transition {
                Transition::Enter { at_ms } => Identity::Fence { fence_id: t.fence_id.clone(), enter: true, at_ms },
                Transition::Exit { at_ms, .. } => Identity::Fence { fence_id: t.fence_id.clone(), enter: false, at_ms },
            },
            Occurrence::Alert(a) => Identity::Alert { rule_id: a.rule.id.clone(), started_ms: a.started_ms },
        }
    }
}

impl Snapshot {
    /// Applies one fix (newer than `last`): its enrichment, the transitions it confirms and the
    /// alerts it fires.
    pub fn step(&mut self, fix: &Fix, ctx: &Context<'_>, settings: &Settings) -> (Enrichment, Vec<Occurrence>) {
        let here = (fix.lat, fix.lon);
        let previous = self.last.filter(|l| l.fix_time_ms < fix.t);
        let distance = previous.map(|prev| distance_m((prev.lat, prev.lon), here));
        let (mut speed, mut speed_derived) = (fix.speed, false);
        let (mut heading, mut heading_derived) = (fix.heading, false);
        if let (Some(prev), Some(d)) = (previous, distance) {
            if speed.is_none() {
                speed = Some(d / ((fix.t - prev.fix_time_ms) as f64 / 1000.0));
                speed_derived = true;
            }
            if heading.is_none() && d > 0.0 {
                heading = Some(bearing_deg((prev.lat, prev.lon), here));
                heading_derived = true;
            }
        }
        self.distance_total_m += distance.unwrap_or(0.0);
        self.last = Some(LastFix { fix_time_ms: fix.t, lat: fix.lat, lon: fix.lon });
        let mut occurred: Vec<Occurrence> =
            self.step_fences(fix, ctx.fences, settings).into_iter().map(Occurrence::Fence).collect();
        let enrichment = Enrichment {
            prev_fix_ms: previous.map(|p| p.fix_time_ms),
            distance_m: distance,
            speed_mps: speed,
            speed_derived,
            heading_deg: heading,
            heading_derived,
            distance_total_m: self.distance_total_m,
            moving: speed.is_some_and(|s| s >= settings.moving_speed_mps),
        };
        if !fix.rules.is_empty() || !self.alerts.is_empty() {
            let observed = Observation {
                t: fix.t,
                speed_mps: enrichment.speed_mps,
                moving: enrichment.moving,
                ignition: fix.ignition,
                fences: &self.fences,
            };
            occurred.extend(alerts::step(&mut self.alerts, &fix.rules, &observed).into_iter().map(Occurrence::Alert));
        }
        (enrichment, occurred)
    }

    fn step_fences(&mut self, fix: &Fix, index: &FenceIndex, settings: &Settings) -> Vec<FenceTransition> {
        if fix.fences.is_empty() && self.fences.is_empty() {
            return Vec::new();
        }
        let candidates: BTreeSet<String> = fix.fences.iter().chain(self.fences.keys()).cloned().collect();
        let mut transitions = Vec::new();
        for fence_id in candidates {
            let mut state = self.fences.get(&fence_id).cloned().unwrap_or_default();
            let transition = match index.get(&fence_id) {
                Some(fence) => {
                    let inside = fix.fences.contains(&fence_id);
                    let past = if inside != state.inside && settings.hysteresis.min_distance_m > 0.0 {
                        fence.distance_to_boundary_m(fix.lat, fix.lon)
                    } else {
                        0.0
                    };
                    state.step(inside, past, fix.t, settings.hysteresis)
                }
                // The fence was deleted while the device was inside or pending: it leaves now.
                None if state.inside => Some(state.confirm(false, fix.t)),
                None => {
                    state = FenceState::default();
                    None
                }
            };
            if let Some(transition) = transition {
                transitions.push(FenceTransition { fence_id: fence_id.clone(), transition });
            }
            if state.is_idle() {
                self.fences.remove(&fence_id);
            } else {
                self.fences.insert(fence_id, state);
            }
        }
        transitions
    }
}

/// Where a fix belongs in its device's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Newer than every fix: applied to the head.
    Newest,
    /// The same fix time as one already applied: a copy.
    Copy,
    /// Inside the window, before the fix at this index.
    Before(usize),
    /// Too old for the window: stored without history.
    Outside,
}

/// The outcome of placing one fix.
#[derive(Debug, Clone, PartialEq)]
pub struct Placed {
    /// The fix's own enrichment (`None` when placed outside the history).
    pub enrichment: Option<Enrichment>,
    /// What the fix itself makes happen.
    pub occurred: Vec<Occurrence>,
    /// Earlier-placed fixes whose enrichment the new one changed: (fix, new enrichment).
    pub corrected: Vec<(Fix, Enrichment)>,
    /// Occurrences at earlier fixes that no longer hold: (the fix that made it, occurrence).
    pub withdrawn: Vec<(Fix, Occurrence)>,
    /// Occurrences at earlier fixes that hold now and did not, or hold differently.
    pub confirmed: Vec<(Fix, Occurrence)>,
}

/// A device's history: the state before the window, the window, and the state after it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// The device's state after every fix it has: the next in-order fix applies here.
    #[serde(flatten)]
    pub head: Snapshot,
    /// The state before the window's first fix. Absent in states written before windows
    /// existed: then the window starts empty at the head.
    #[serde(default)]
    pub base: Option<Snapshot>,
    /// How many fixes the window holds. The fixes themselves are not persisted with the state:
    /// they are the device's stored positions after the base, rebuilt from storage after a
    /// restart ([`History::rebuild_window`]), and this checks they all came back.
    #[serde(default)]
    pub window_len: usize,
    #[serde(skip)]
    pub window: VecDeque<Fix>,
}

impl History {
    /// The state the window starts from: the base, or the head when there is no window yet.
    fn start(&self) -> &Snapshot {
        self.base.as_ref().unwrap_or(&self.head)
    }

    /// The enrichment of a fix placed outside the history: nothing derived from neighbours,
    /// and the odometer of the oldest state kept.
    pub fn outside_enrichment(&self, fix: &Fix, settings: &Settings) -> Enrichment {
        Enrichment {
            prev_fix_ms: None,
            distance_m: None,
            speed_mps: fix.speed,
            speed_derived: false,
            heading_deg: fix.heading,
            heading_derived: false,
            distance_total_m: self.start().distance_total_m,
            moving: fix.speed.is_some_and(|s| s >= settings.moving_speed_mps),
        }
    }

    /// Rebuilds the window after a restart from the device's stored positions: `rows` holds
    /// every stored version of them (and may hold more); the window is, per fix time after the
    /// base, the newest version written by a message the state covers (at or before `applied`):
    /// a version written by a batch whose states were never stored is not history yet. True
    /// when that gives back exactly the window the state describes.
    pub fn rebuild_window(&mut self, rows: &[WindowRow], applied: Option<Source>, rules: &Rules) -> bool {
        self.window.clear();
        if self.window_len == 0 {
            return true;
        }
        let (Some(newest_fix), Some(applied)) = (self.head.last, applied) else { return false };
        let from = self.start().last.map(|l| l.fix_time_ms);
        let mut newest: BTreeMap<i64, &WindowRow> = BTreeMap::new();
        for row in rows {
            let in_window = from.is_none_or(|f| row.fix_time_ms > f) && row.fix_time_ms <= newest_fix.fix_time_ms;
            let covered = version::tier(row.version) == version::CURRENT
                && row.kafka_partition == applied.partition
                && version::sequence(row.version) <= applied.offset;
            if in_window && covered && newest.get(&row.fix_time_ms).is_none_or(|kept| row.version > kept.version) {
                newest.insert(row.fix_time_ms, row);
            }
        }
        if newest.len() != self.window_len || newest.keys().next_back() != Some(&newest_fix.fix_time_ms) {
            return false;
        }
        for row in newest.values() {
            let mut fix = Fix::from_row(row, rules);
            share_fences(&mut fix, self.window.back());
            self.window.push_back(fix);
        }
        true
    }

    /// The fix time after which the window's fixes lie (`i64::MIN` for a device's first ones).
    pub fn window_start_ms(&self) -> i64 {
        self.start().last.map_or(i64::MIN, |l| l.fix_time_ms)
    }

    /// Drops the window: the history restarts at the head.
    pub fn forget_window(&mut self) {
        self.window.clear();
        self.window_len = 0;
        self.base = Some(self.head.clone());
    }

    /// Where a fix taken at `t` belongs.
    pub fn place(&self, t: i64, settings: &Settings) -> Placement {
        let Some(newest) = self.head.last else { return Placement::Newest };
        if t > newest.fix_time_ms {
            return Placement::Newest;
        }
        if t == newest.fix_time_ms {
            return Placement::Copy;
        }
        // Without a base (a state from before windows), the window starts at the head.
        let base_t = self.start().last.map(|l| l.fix_time_ms);
        if base_t == Some(t) {
            return Placement::Copy;
        }
        if t < newest.fix_time_ms - settings.max_lateness_ms || base_t.is_some_and(|b| t < b) {
            return Placement::Outside;
        }
        match self.window.binary_search_by_key(&t, |f| f.t) {
            Ok(_) => Placement::Copy,
            Err(k) => Placement::Before(k),
        }
    }

    /// Applies `fix` where it belongs. `None` for a copy of a fix already applied.
    pub fn apply(&mut self, fix: Fix, ctx: &Context<'_>, settings: &Settings) -> Option<Placed> {
        let placed = match self.place(fix.t, settings) {
            Placement::Copy => return None,
            Placement::Outside => Placed::empty(),
            Placement::Newest => {
                if self.base.is_none() {
                    // A new device, or a state from before windows: the window starts here.
                    debug_assert!(self.window.is_empty());
                    self.base = Some(self.head.clone());
                }
                let (enrichment, occurred) = self.head.step(&fix, ctx, settings);
                let mut fix = fix;
                share_fences(&mut fix, self.window.back());
                // Make room first, so that a full window never grows its buffer.
                if self.window.len() >= settings.max_history_fixes {
                    self.pop_into_base(ctx, settings);
                }
                self.window.push_back(fix);
                Placed { enrichment: Some(enrichment), occurred, ..Placed::empty() }
            }
            Placement::Before(k) => self.insert(k, fix, ctx, settings),
        };
        self.slide(ctx, settings);
        Some(placed)
    }

    /// Replays the window from the base with `fix` inserted before position `k`.
    fn insert(&mut self, k: usize, fix: Fix, ctx: &Context<'_>, settings: &Settings) -> Placed {
        let mut before = self.base.clone().unwrap_or_default();
        for f in self.window.range(..k) {
            before.step(f, ctx, settings);
        }
        let mut old_state = before.clone();
        let old: Vec<(Enrichment, Vec<Occurrence>)> =
            self.window.range(k..).map(|f| old_state.step(f, ctx, settings)).collect();
        let mut new_state = before;
        let (enrichment, occurred) = new_state.step(&fix, ctx, settings);
        let new: Vec<(Enrichment, Vec<Occurrence>)> =
            self.window.range(k..).map(|f| new_state.step(f, ctx, settings)).collect();
        // Unless the fences changed since the window's fixes were applied (each fix keeps its
        // rules), or the window was rebuilt after a restart with the rules in force then.
        debug_assert!(
            old_state.last == self.head.last && old_state.distance_total_m == self.head.distance_total_m,
            "a replay of unchanged fixes reproduces the head"
        );

        let mut placed = Placed { enrichment: Some(enrichment), occurred, ..Placed::empty() };
        // Occurrences are compared by identity (fence, kind, time; rule, episode start): what
        // the old replay made happen and the new one does not is withdrawn; what is new or now
        // different (dwell, confirming fix) is confirmed. The new fix's own are its own.
        let mut old_occurred: HashMap<Identity, (Fix, Occurrence)> = HashMap::new();
        for (f, (_, os)) in self.window.range(k..).zip(&old) {
            for o in os {
                old_occurred.insert(o.identity(), (f.clone(), o.clone()));
            }
        }
        for o in &placed.occurred {
            old_occurred.remove(&o.identity());
        }
        for (f, (_, os)) in self.window.range(k..).zip(&new) {
            for o in os {
                match old_occurred.remove(&o.identity()) {
                    Some((old_fix, old_o)) if old_o == *o && old_fix.source == f.source => {}
                    _ => placed.confirmed.push((f.clone(), o.clone())),
                }
            }
        }
        let mut withdrawn: Vec<(Identity, (Fix, Occurrence))> = old_occurred.into_iter().collect();
        withdrawn.sort_by(|(a, (fa, _)), (b, (fb, _))| (fa.t, a).cmp(&(fb.t, b)));
        placed.withdrawn = withdrawn.into_iter().map(|(_, w)| w).collect();
        for (f, ((old_e, _), (new_e, _))) in self.window.range(k..).zip(old.iter().zip(&new)) {
            if old_e != new_e {
                placed.corrected.push((f.clone(), new_e.clone()));
            }
        }
        self.head = new_state;
        let mut fix = fix;
        share_fences(&mut fix, self.window.get(k).or(k.checked_sub(1).and_then(|i| self.window.get(i))));
        self.window.insert(k, fix);
        placed
    }

    /// Moves fixes that fell out of the lateness bound (or beyond the count cap) into the base.
    fn slide(&mut self, ctx: &Context<'_>, settings: &Settings) {
        let Some(newest) = self.head.last else { return };
        while let Some(front) = self.window.front() {
            let too_old = front.t < newest.fix_time_ms - settings.max_lateness_ms;
            if !too_old && self.window.len() <= settings.max_history_fixes {
                break;
            }
            self.pop_into_base(ctx, settings);
        }
        self.window_len = self.window.len();
    }

    /// Moves the oldest fix of the window into the base.
    fn pop_into_base(&mut self, ctx: &Context<'_>, settings: &Settings) {
        if let Some(fix) = self.window.pop_front() {
            self.base.get_or_insert_with(Snapshot::default).step(&fix, ctx, settings);
        }
    }
}

impl Placed {
    fn empty() -> Placed {
        Placed {
            enrichment: None,
            occurred: Vec::new(),
            corrected: Vec::new(),
            withdrawn: Vec::new(),
            confirmed: Vec::new(),
        }
    }
}

/// A device usually stays in the same fences for many fixes: those fixes share one list.
fn share_fences(fix: &mut Fix, neighbour: Option<&Fix>) {
    if let Some(n) = neighbour
        && n.fences == fix.fences
    {
        fix.fences = n.fences.clone();
    }
}
