//! Alert rules, evaluated in event time on each device's fixes.
//!
//! A rule has a condition (faster than a speed; stopped with the ignition on or unknown; inside
//! a fence) and a duration. A device's *episode* of a rule starts at the first fix where the
//! condition holds (for dwell: the enter time of the fence) and lasts while every following fix
//! keeps it; the first fix at least `duration` after the start fires the alert, once per
//! episode. The state per (device, rule) is the episode's start and whether it fired: it lives
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

/// One alert rule, as the processors apply it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub id: String,
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
    pub fn from_row(row: &AlertRuleRow) -> Rule {
        Rule {
            id: row.rule_id.clone(),
            kind: row.kind,
            speed_mps: row.speed_mps,
            duration_ms: row.duration_ms,
            device_id: row.device_id.clone(),
            fleet: row.fleet.clone(),
            fence_id: row.fence_id.clone(),
        }
    }

    /// A rule for every device (tests and benchmarks).
    pub fn any_device(id: &str, kind: AlertKind, speed_mps: f64, duration_ms: i64, fence_id: &str) -> Rule {
        Rule {
            id: id.into(),
            kind,
            speed_mps,
            duration_ms,
            device_id: String::new(),
            fleet: String::new(),
            fence_id: fence_id.into(),
        }
    }

    /// When the current episode of this rule started, if the condition holds at this fix.
    fn holding_since(&self, fix: &Observation<'_>) -> Option<i64> {
        let fence = (!self.fence_id.is_empty()).then(|| fix.fences.get(&self.fence_id).filter(|f| f.inside));
        if fence.is_some_and(|inside| inside.is_none()) {
            return None;
        }
        let holds = match self.kind {
            AlertKind::Overspeed => fix.speed_mps.is_some_and(|v| v > self.speed_mps),
            AlertKind::Idle => !fix.moving && fix.ignition != Some(false),
            // The fence's enter time, not the first fix seen inside it.
            AlertKind::Dwell => return fence.flatten().map(|f| f.since_ms),
        };
        holds.then_some(fix.t)
    }
}

/// The rules loaded, indexed by what they are scoped to, so that finding a device's rules
/// costs little however many rules there are.
#[derive(Debug, Default)]
pub struct RuleSet {
    any_device: Vec<Arc<Rule>>,
    by_device: HashMap<String, Vec<Arc<Rule>>>,
    by_fleet: HashMap<String, Vec<Arc<Rule>>>,
    len: usize,
}

impl RuleSet {
    pub fn new(rows: &[AlertRuleRow]) -> RuleSet {
        let mut set = RuleSet { len: rows.len(), ..RuleSet::default() };
        for row in rows {
            let rule = Arc::new(Rule::from_row(row));
            if !rule.device_id.is_empty() {
                set.by_device.entry(rule.device_id.clone()).or_default().push(rule);
            } else if !rule.fleet.is_empty() {
                set.by_fleet.entry(rule.fleet.clone()).or_default().push(rule);
            } else {
                set.any_device.push(rule);
            }
        }
        set
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The rules that concern this device, in its fleet (`""`: none), by id.
    pub fn for_device(&self, device_id: &str, fleet: &str) -> Vec<Arc<Rule>> {
        if self.is_empty() {
            return Vec::new();
        }
        let mut rules: Vec<Arc<Rule>> = self.any_device.clone();
        if let Some(own) = self.by_device.get(device_id) {
            // A rule scoped to a device and a fleet needs both.
            rules.extend(own.iter().filter(|r| r.fleet.is_empty() || r.fleet == fleet).cloned());
        }
        if let Some(fleet_rules) = self.by_fleet.get(fleet).filter(|_| !fleet.is_empty()) {
            rules.extend(fleet_rules.iter().cloned());
        }
        rules.sort_by(|a, b| a.id.cmp(&b.id));
        rules
    }
}

/// One (device, rule) episode in progress: kept while the condition holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertState {
    pub since_ms: i64,
    /// The episode's alert has fired.
    pub fired: bool,
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
/// of rules no longer in `rules` (deleted, or out of scope) end.
pub fn step(states: &mut BTreeMap<String, AlertState>, rules: &[Arc<Rule>], fix: &Observation<'_>) -> Vec<Fired> {
    if rules.is_empty() {
        states.clear();
        return Vec::new();
    }
    states.retain(|id, _| rules.iter().any(|r| &r.id == id));
    let mut fired = Vec::new();
    for rule in rules {
        let Some(start) = rule.holding_since(fix) else {
            states.remove(&rule.id);
            continue;
        };
        let state = states.entry(rule.id.clone()).or_insert(AlertState { since_ms: start, fired: false });
        if !state.fired && fix.t - state.since_ms >= rule.duration_ms {
            state.fired = true;
            fired.push(Fired {
                rule: rule.clone(),
                started_ms: state.since_ms,
                at_ms: fix.t,
                speed_mps: fix.speed_mps,
            });
        }
    }
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
            kind: AlertKind::Idle,
            speed_mps: 0.0,
            duration_ms: 1,
            device_id: device.into(),
            fleet: fleet.into(),
            fence_id: String::new(),
            updated_at_ms: 0,
        };
        let set = RuleSet::new(&[
            row("all", "", ""),
            row("mine", "d1", ""),
            row("mine-in-a", "d1", "a"),
            row("fleet-a", "", "a"),
            row("fleet-b", "", "b"),
        ]);
        let ids = |device, fleet| set.for_device(device, fleet).iter().map(|r| r.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids("d1", "a"), ["all", "fleet-a", "mine", "mine-in-a"]);
        assert_eq!(ids("d1", ""), ["all", "mine"]);
        assert_eq!(ids("d2", "b"), ["all", "fleet-b"]);
        assert!(RuleSet::default().for_device("d1", "a").is_empty());
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
