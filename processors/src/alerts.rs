//! Alert rules, evaluated in event time on each device's fixes.
//!
//! A rule has a condition (faster than a speed; stopped with the ignition on or unknown; inside
//! a fence) and a duration. A device's *episode* of a rule starts at the first fix where the
//! condition holds (for dwell: the enter time of the fence) and lasts while every following fix
//! keeps it; the first fix at least `duration` after the start fires the alert, once per
//! episode. While a fence-scoped condition waits on a pending exit (hysteresis), the episode
//! neither fires nor ends. A rule changed through the API starts new episodes (its version is
//! part of the state). The state per (device, rule) is the episode's start and whether it fired: it lives
//! in the device's [`crate::history::Snapshot`], so replays after a late fix, restarts and
//! rebalances give the same alerts as the fixes in time order (an alert a late fix breaks is
//! withdrawn, like a fence event).
//!
//! Pure and synchronous; the rules come from the `alert_rules` table ([`RuleSet`]), polled with
//! the other reference data.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use fleetstream_geofence::FenceState;
use fleetstream_schemas::AlertKind;
use fleetstream_storage::AlertRuleRow;
use serde::{Deserialize, Serialize};

/// The rules that concern one device, sorted by id: shared by every fix applied with them, so
/// that a replay applies each fix with the rules it was first applied with.
pub type Rules = Arc<[Arc<Rule>]>;

/// One alert rule, as the processors apply it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub id: String,
    /// Changes with every PUT of the rule: an episode of an older version does not go on.
    pub version: u64,
    pub kind: AlertKind,
    /// Overspeed: strictly faster than this, m/s.
    pub speed_mps: f64,
    /// How long the condition must hold before the alert fires (0: at once).
    pub duration_ms: i64,
    /// Scope: only this device, this fleet, while inside this fence (empty: any).
    pub device_id: String,
    pub fleet: String,
    pub fence_id: String,
}

impl Rule {
    /// The rule a row describes; `None` for a kind this build does not know (a newer release's).
    pub fn from_row(row: &AlertRuleRow) -> Option<Rule> {
        Some(Rule {
            id: row.rule_id.clone(),
            version: row.version,
            kind: AlertKind::parse(&row.kind)?,
            speed_mps: row.speed_mps,
            duration_ms: row.duration_ms,
            device_id: row.device_id.clone(),
            fleet: row.fleet.clone(),
            fence_id: row.fence_id.clone(),
        })
    }

    /// A rule for every device (tests and benchmarks).
    pub fn any_device(id: &str, kind: AlertKind, speed_mps: f64, duration_ms: i64, fence_id: &str) -> Rule {
        Rule {
            id: id.into(),
            version: 1,
            kind,
            speed_mps,
            duration_ms,
            device_id: String::new(),
            fleet: String::new(),
            fence_id: fence_id.into(),
        }
    }

    /// Whether the condition holds at this fix.
    fn holding(&self, fix: &Observation<'_>) -> Holding {
        let mut fence_since = None;
        if !self.fence_id.is_empty() {
            match fix.fences.get(&self.fence_id).filter(|f| f.inside) {
                None => return Holding::No,
                // Leaving, unless the device comes back before the exit is confirmed.
                Some(f) if f.pending_since_ms.is_some() => return Holding::Paused,
                Some(f) => fence_since = Some(f.since_ms),
            }
        }
        let holds = match self.kind {
            AlertKind::Overspeed => fix.speed_mps.is_some_and(|v| v > self.speed_mps),
            AlertKind::Idle => !fix.moving && fix.ignition != Some(false),
            // From the fence's enter time, not from the first fix seen inside it.
            AlertKind::Dwell => return fence_since.map_or(Holding::No, Holding::Since),
        };
        if holds { Holding::Since(fix.t) } else { Holding::No }
    }
}

/// A rule's condition at one fix.
enum Holding {
    /// Holds, in an episode that starts here unless one is going on.
    Since(i64),
    /// Undecided (a pending fence exit): the episode goes on without firing.
    Paused,
    No,
}

/// The rules loaded, indexed by what they are scoped to: the rules of a device without rules of
/// its own are shared by its whole fleet, so finding them costs a lookup and no allocation.
#[derive(Debug)]
pub struct RuleSet {
    /// Rules for every device.
    any_device: Rules,
    /// Per fleet with rules of its own: those and the rules for every device.
    by_fleet: HashMap<String, Rules>,
    /// Rules scoped to one device (and maybe a fleet too).
    by_device: HashMap<String, Vec<Arc<Rule>>>,
    len: usize,
}

impl Default for RuleSet {
    fn default() -> Self {
        RuleSet::new(&[])
    }
}

fn sorted(mut rules: Vec<Arc<Rule>>) -> Rules {
    rules.sort_by(|a, b| a.id.cmp(&b.id));
    rules.into()
}

impl RuleSet {
    /// The set of these rows; a row of an unknown kind (written by a newer release) is skipped
    /// loudly, never taken for another kind.
    pub fn new(rows: &[AlertRuleRow]) -> RuleSet {
        let mut any_device = Vec::new();
        let mut fleet_rules: HashMap<String, Vec<Arc<Rule>>> = HashMap::new();
        let mut by_device: HashMap<String, Vec<Arc<Rule>>> = HashMap::new();
        let mut len = 0;
        for row in rows {
            let Some(rule) = Rule::from_row(row) else {
                tracing::error!(rule = %row.rule_id, kind = %row.kind, "alert rule of an unknown kind; skipped");
                continue;
            };
            len += 1;
            let rule = Arc::new(rule);
            if !rule.device_id.is_empty() {
                by_device.entry(rule.device_id.clone()).or_default().push(rule);
            } else if !rule.fleet.is_empty() {
                fleet_rules.entry(rule.fleet.clone()).or_default().push(rule);
            } else {
                any_device.push(rule);
            }
        }
        let by_fleet = fleet_rules
            .into_iter()
            .map(|(fleet, mut rules)| {
                rules.extend(any_device.iter().cloned());
                (fleet, sorted(rules))
            })
            .collect();
        RuleSet { any_device: sorted(any_device), by_fleet, by_device, len }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The rules that concern this device, in its fleet (`""`: none), sorted by id. The fleet
    /// is asked for only when some rule is scoped by fleet or to this device: without such
    /// rules (or any), a position costs no lookup here.
    pub fn for_device<'f>(&self, device_id: &str, fleet: impl FnOnce() -> &'f str) -> Rules {
        let own = if self.by_device.is_empty() { None } else { self.by_device.get(device_id) };
        if own.is_none() && self.by_fleet.is_empty() {
            return self.any_device.clone();
        }
        let fleet = fleet();
        let shared = self.by_fleet.get(fleet).filter(|_| !fleet.is_empty()).unwrap_or(&self.any_device);
        match own {
            None => shared.clone(),
            Some(own) => {
                let mut rules = shared.to_vec();
                // A rule scoped to a device and a fleet needs both.
                rules.extend(own.iter().filter(|r| r.fleet.is_empty() || r.fleet == fleet).cloned());
                sorted(rules)
            }
        }
    }
}

/// One (device, rule) episode in progress: kept while the condition holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertState {
    pub since_ms: i64,
    /// The episode's alert has fired.
    pub fired: bool,
    /// The version of the rule the episode is of.
    #[serde(default)]
    pub rule_version: u64,
}

/// An alert a fix fired.
#[derive(Debug, Clone, PartialEq)]
pub struct Fired {
    pub rule: Arc<Rule>,
    pub started_ms: i64,
    pub at_ms: i64,
    pub speed_mps: Option<f64>,
}

/// What the rules look at in one fix: the fix as enriched, and the device's fence states after it.
pub struct Observation<'a> {
    pub t: i64,
    pub speed_mps: Option<f64>,
    pub moving: bool,
    pub ignition: Option<bool>,
    pub fences: &'a BTreeMap<String, FenceState>,
}

/// Applies one fix (in event time) to a device's episodes; returns the alerts it fires. Episodes
/// of rules no longer in `rules` (deleted, changed, or out of scope) end. `rules` is sorted by id.
pub fn step(states: &mut BTreeMap<String, AlertState>, rules: &[Arc<Rule>], fix: &Observation<'_>) -> Vec<Fired> {
    if rules.is_empty() {
        states.clear();
        return Vec::new();
    }
    // One pass over the rules and the episodes together, both sorted by rule id: no lookup per
    // rule, so a device's step costs one comparison per rule and episode.
    let mut episodes = std::mem::take(states).into_iter().peekable();
    let mut kept: Vec<(String, AlertState)> = Vec::new();
    let mut fired = Vec::new();
    for rule in rules {
        let mut episode = None;
        while let Some((id, _)) = episodes.peek() {
            match id.as_str().cmp(&rule.id) {
                std::cmp::Ordering::Less => drop(episodes.next()), // its rule is gone
                std::cmp::Ordering::Equal => {
                    episode = episodes.next().filter(|(_, state)| state.rule_version == rule.version);
                    break;
                }
                std::cmp::Ordering::Greater => break,
            }
        }
        let start = match rule.holding(fix) {
            Holding::No => continue,
            Holding::Paused => {
                kept.extend(episode);
                continue;
            }
            Holding::Since(start) => start,
        };
        let (id, mut state) = episode.unwrap_or_else(|| {
            (rule.id.clone(), AlertState { since_ms: start, fired: false, rule_version: rule.version })
        });
        if !state.fired && fix.t - state.since_ms >= rule.duration_ms {
            state.fired = true;
            fired.push(Fired {
                rule: rule.clone(),
                started_ms: state.since_ms,
                at_ms: fix.t,
                speed_mps: fix.speed_mps,
            });
        }
        kept.push((id, state));
    }
    // Sorted already: built without comparisons beyond the check.
    *states = kept.into_iter().collect();
    fired
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rule(id: &str, kind: AlertKind, speed_mps: f64, duration_ms: i64) -> Arc<Rule> {
        Arc::new(Rule::any_device(id, kind, speed_mps, duration_ms, ""))
    }

    fn at(t: i64, speed: f64) -> Observation<'static> {
        static NO_FENCES: BTreeMap<String, FenceState> = BTreeMap::new();
        Observation { t, speed_mps: Some(speed), moving: speed >= 0.5, ignition: None, fences: &NO_FENCES }
    }

    fn fired_at(rules: &[Arc<Rule>], fixes: &[Observation<'_>]) -> Vec<(String, i64, i64)> {
        let mut states = BTreeMap::new();
        fixes
            .iter()
            .flat_map(|f| step(&mut states, rules, f))
            .map(|f| (f.rule.id.clone(), f.started_ms, f.at_ms))
            .collect()
    }

    #[test]
    fn overspeed_fires_once_per_episode_after_its_duration() {
        let rules = [rule("fast", AlertKind::Overspeed, 20.0, 30_000)];
        let fixes = [at(0, 25.0), at(10_000, 25.0), at(30_000, 22.0), at(40_000, 30.0), at(50_000, 10.0)];
        assert_eq!(fired_at(&rules, &fixes), [("fast".into(), 0, 30_000)], "once, by the fix completing 30 s");
        let broken = [at(0, 25.0), at(20_000, 19.0), at(25_000, 25.0), at(50_000, 25.0), at(55_000, 25.0)];
        assert_eq!(fired_at(&rules, &broken), [("fast".into(), 25_000, 55_000)], "a slower fix restarts it");
        assert_eq!(fired_at(&rules, &[at(0, 20.0), at(60_000, 20.0)]), [], "at the limit is not over it");
    }

    #[test]
    fn a_zero_duration_fires_at_the_first_fix() {
        let rules = [rule("fast", AlertKind::Overspeed, 20.0, 0)];
        assert_eq!(fired_at(&rules, &[at(5, 21.0), at(6, 21.0)]), [("fast".into(), 5, 5)]);
    }

    #[test]
    fn idle_is_stopped_with_the_ignition_on_or_unknown() {
        let rules = [rule("idle", AlertKind::Idle, 0.0, 60_000)];
        let stopped = |t, ignition| Observation { ignition, ..at(t, 0.0) };
        assert_eq!(
            fired_at(&rules, &[stopped(0, Some(true)), stopped(60_000, Some(true))]),
            [("idle".into(), 0, 60_000)]
        );
        assert_eq!(fired_at(&rules, &[stopped(0, None), stopped(60_000, None)]), [("idle".into(), 0, 60_000)]);
        assert_eq!(fired_at(&rules, &[stopped(0, Some(false)), stopped(60_000, Some(false))]), [], "parked");
        assert_eq!(fired_at(&rules, &[stopped(0, None), at(30_000, 5.0), stopped(60_000, None)]), [], "it moved");
    }

    #[test]
    fn dwell_counts_from_the_enter_time_and_a_fence_scopes_other_kinds() {
        let mut inside = BTreeMap::new();
        inside.insert("port".to_string(), FenceState { inside: true, since_ms: -50_000, pending_since_ms: None });
        let dwell = Arc::new(Rule::any_device("dwell", AlertKind::Dwell, 0.0, 60_000, "port"));
        let fast = Arc::new(Rule::any_device("fast", AlertKind::Overspeed, 5.0, 0, "port"));
        let rules = [dwell, fast];
        let in_port = |t, speed| Observation { fences: &inside, ..at(t, speed) };
        assert_eq!(
            fired_at(&rules, &[in_port(0, 1.0), in_port(10_000, 6.0)]),
            [("dwell".into(), -50_000, 10_000), ("fast".into(), 10_000, 10_000)]
        );
        assert_eq!(fired_at(&rules, &[at(0, 9.0), at(100_000, 9.0)]), [], "outside the fence neither applies");
    }

    #[test]
    fn a_pending_exit_pauses_a_fence_scoped_episode_and_a_changed_rule_starts_anew() {
        let dwell = [Arc::new(Rule::any_device("dwell", AlertKind::Dwell, 0.0, 60_000, "port"))];
        let mut leaving = BTreeMap::new();
        leaving.insert("port".to_string(), FenceState { inside: true, since_ms: 0, pending_since_ms: Some(50_000) });
        let mut states = BTreeMap::new();
        let mut inside = BTreeMap::new();
        inside.insert("port".to_string(), FenceState { inside: true, since_ms: 0, pending_since_ms: None });
        step(&mut states, &dwell, &Observation { fences: &inside, ..at(10_000, 0.0) });
        assert!(step(&mut states, &dwell, &Observation { fences: &leaving, ..at(70_000, 0.0) }).is_empty(), "paused");
        assert_eq!(states["dwell"].since_ms, 0, "not ended either");
        let back = step(&mut states, &dwell, &Observation { fences: &inside, ..at(80_000, 0.0) });
        assert_eq!(back.len(), 1, "it came back: the stay goes on and fires");
        // The same id, a new version (a PUT changed it): a new episode, not the fired one.
        let changed = [Arc::new(Rule { version: 2, ..(*dwell[0]).clone() })];
        let again = step(&mut states, &changed, &Observation { fences: &inside, ..at(90_000, 0.0) });
        assert_eq!(again.len(), 1, "fires for the new version, from the enter time (the same stay: the same id)");
        assert_eq!(states["dwell"].rule_version, 2);
    }

    #[test]
    fn episodes_of_rules_gone_end() {
        let rules = [rule("fast", AlertKind::Overspeed, 20.0, 60_000)];
        let mut states = BTreeMap::new();
        step(&mut states, &rules, &at(0, 25.0));
        assert!(states.contains_key("fast"));
        step(&mut states, &[], &at(10_000, 25.0));
        assert!(states.is_empty());
        assert!(step(&mut states, &rules, &at(60_000, 25.0)).is_empty(), "a new episode starts with the rule's return");
    }

    #[test]
    fn a_device_gets_its_own_its_fleets_and_everyones_rules() {
        let row = |id: &str, device: &str, fleet: &str| AlertRuleRow {
            rule_id: id.into(),
            version: 1,
            deleted: 0,
            kind: "idle".into(),
            speed_mps: 0.0,
            duration_ms: 1,
            device_id: device.into(),
            fleet: fleet.into(),
            fence_id: String::new(),
            updated_at_ms: 0,
        };
        let newer = AlertRuleRow { kind: "offline".into(), ..row("newer", "", "") };
        let set = RuleSet::new(&[
            newer,
            row("all", "", ""),
            row("mine", "d1", ""),
            row("mine-in-a", "d1", "a"),
            row("fleet-a", "", "a"),
            row("fleet-b", "", "b"),
        ]);
        let ids = |device, fleet| set.for_device(device, || fleet).iter().map(|r| r.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids("d1", "a"), ["all", "fleet-a", "mine", "mine-in-a"]);
        assert_eq!(ids("d1", ""), ["all", "mine"]);
        assert_eq!(ids("d2", "b"), ["all", "fleet-b"]);
        assert_eq!(ids("d2", "c"), ["all"], "a kind this build does not know is skipped");
        assert_eq!(set.len(), 5);
        assert!(RuleSet::default().for_device("d1", || unreachable!("no rule needs the fleet")).is_empty());
    }

    proptest! {
        /// Per rule, alerts fire in time order, at most one per episode, never before the
        /// episode's duration, and each at a fix where the condition held.
        #[test]
        fn an_alert_fires_once_per_episode_and_never_early(
            speeds in proptest::collection::vec((1i64..120, 0.0f64..40.0), 1..80),
            duration_s in 0i64..200,
        ) {
            let rules = [rule("fast", AlertKind::Overspeed, 20.0, duration_s * 1_000)];
            let mut t = 0;
            let fixes: Vec<Observation<'_>> = speeds.iter().map(|(gap, v)| { t += gap * 1_000; at(t, *v) }).collect();
            let fired = fired_at(&rules, &fixes);
            let mut last_start = i64::MIN;
            for (_, started, fired_at) in &fired {
                prop_assert!(*started > last_start, "one alert per episode");
                prop_assert!(fired_at - started >= duration_s * 1_000);
                let fix = fixes.iter().find(|f| f.t == *fired_at).unwrap();
                prop_assert!(fix.speed_mps.unwrap() > 20.0);
                // Every fix of the episode up to the alert was over the limit.
                prop_assert!(fixes.iter().filter(|f| f.t >= *started && f.t <= *fired_at).all(|f| f.speed_mps.unwrap() > 20.0));
                last_start = *started;
            }
        }
    }
}
