//! Reference data the processors poll: the fences, the alert rules and the device registry.
//!
//! Both are managed through the API, which writes a new version per change; processors poll
//! each table's newest version (one tiny query) and reload only when it moved, so a change
//! reaches every processor within the poll interval, without a restart.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use fleetstream_geofence::{FenceIndex, fences_from_geojson};
use fleetstream_storage::{FenceRow, PositionRow, Store, StoreError};

use crate::alerts::{RuleSet, Rules};
use crate::history::Context;

/// When a polled table was last checked, and at which version.
struct PollClock {
    version: Option<u64>,
    checked_at: Option<Instant>,
    every: Duration,
}

impl PollClock {
    fn new(every: Duration) -> Self {
        PollClock { version: None, checked_at: None, every }
    }

    /// Time to check again; always, while nothing is loaded.
    fn due(&self) -> bool {
        self.version.is_none() || self.checked_at.is_none_or(|t| t.elapsed() >= self.every)
    }

    /// Records a check; true when the version moved from the last one loaded (or nothing is).
    fn changed(&mut self, version: u64) -> bool {
        self.checked_at = Some(Instant::now());
        self.version != Some(version)
    }

    /// Records that `version` is now loaded: only once the load succeeded, so that a failed
    /// load is tried again at the next poll.
    fn loaded(&mut self, version: u64) {
        self.version = Some(version);
    }
}

/// Registry fields stamped onto positions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceMeta {
    pub name: String,
    pub fleet: String,
    pub device_type: String,
}

pub struct Reference {
    fences_clock: PollClock,
    rules_clock: PollClock,
    registry_clock: PollClock,
    pub fences: FenceIndex,
    pub rules: RuleSet,
    pub registry: HashMap<String, DeviceMeta>,
}

/// Builds an index from stored fences; a row that no longer parses is skipped loudly (the API
/// validates fences before storing them, so this means a hand-edited table).
pub fn index_of(rows: &[FenceRow]) -> FenceIndex {
    let mut fences = Vec::with_capacity(rows.len());
    for row in rows {
        match fences_from_geojson(&row.feature) {
            Ok(mut parsed) if parsed.len() == 1 => fences.push(parsed.remove(0)),
            Ok(_) => tracing::error!(fence = %row.fence_id, "stored fence is not a single Feature; skipped"),
            Err(e) => tracing::error!(fence = %row.fence_id, error = %e, "stored fence does not parse; skipped"),
        }
    }
    FenceIndex::new(fences)
}

impl Reference {
    pub fn new(poll: Duration) -> Self {
        Reference {
            fences_clock: PollClock::new(poll),
            rules_clock: PollClock::new(poll),
            registry_clock: PollClock::new(poll),
            fences: FenceIndex::default(),
            rules: RuleSet::default(),
            registry: HashMap::new(),
        }
    }

    /// The version of the fences loaded, once they are.
    pub fn fences_version(&self) -> Option<u64> {
        self.fences_clock.version
    }

    /// The version of the alert rules loaded, once they are.
    pub fn alert_rules_version(&self) -> Option<u64> {
        self.rules_clock.version
    }

    /// True once the fences, the rules and the registry have each been loaded: before that,
    /// positions would be processed as if no fence existed (a device inside one would leave it)
    /// or no rule (an episode in progress would end).
    pub fn is_loaded(&self) -> bool {
        self.fences_clock.version.is_some()
            && self.rules_clock.version.is_some()
            && self.registry_clock.version.is_some()
    }

    /// Reloads what changed, once per poll interval. Each table on its own: one that cannot be
    /// read keeps its last load without holding back the others; the first error is returned.
    pub async fn refresh(&mut self, store: &Store) -> Result<(), StoreError> {
        let fences = self.refresh_fences(store).await;
        let rules = self.refresh_rules(store).await;
        let registry = self.refresh_registry(store).await;
        fences.and(rules).and(registry)
    }

    async fn refresh_fences(&mut self, store: &Store) -> Result<(), StoreError> {
        if self.fences_clock.due() {
            let version = store.fences_version().await?;
            if self.fences_clock.changed(version) {
                self.fences = index_of(&store.live_fences().await?);
                self.fences_clock.loaded(version);
                tracing::info!(fences = self.fences.len(), "fences loaded");
            }
        }
        Ok(())
    }

    async fn refresh_rules(&mut self, store: &Store) -> Result<(), StoreError> {
        if self.rules_clock.due() {
            let version = store.alert_rules_version().await?;
            if self.rules_clock.changed(version) {
                self.rules = RuleSet::new(&store.alert_rules().await?);
                self.rules_clock.loaded(version);
                tracing::info!(rules = self.rules.len(), "alert rules loaded");
            }
        }
        Ok(())
    }

    async fn refresh_registry(&mut self, store: &Store) -> Result<(), StoreError> {
        if self.registry_clock.due() {
            let version = store.registry_version().await?;
            if self.registry_clock.changed(version) {
                self.registry = store
                    .all_registered_devices()
                    .await?
                    .into_iter()
                    .map(|r| (r.device_id, DeviceMeta { name: r.name, fleet: r.fleet, device_type: r.device_type }))
                    .collect();
                self.registry_clock.loaded(version);
                tracing::info!(devices = self.registry.len(), "device registry loaded");
            }
        }
        Ok(())
    }

    /// The rules that concern a device, by its registry entry.
    pub fn rules_for(&self, device_id: &str) -> Rules {
        self.rules.for_device(device_id, || self.registry.get(device_id).map_or("", |m| m.fleet.as_str()))
    }

    /// What a device's fixes are applied against now.
    pub fn context(&self, device_id: &str) -> Context<'_> {
        Context { fences: &self.fences, rules: self.rules_for(device_id) }
    }

    /// Stamps the device's registry entry onto its row.
    pub fn annotate(&self, row: &mut PositionRow) {
        if let Some(meta) = self.registry.get(&row.device_id) {
            row.device_name.clone_from(&meta.name);
            row.fleet.clone_from(&meta.fleet);
            row.device_type.clone_from(&meta.device_type);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_counts_as_loaded_only_once_its_load_succeeded() {
        let mut clock = PollClock::new(Duration::ZERO);
        assert!(clock.changed(7), "nothing loaded yet");
        assert!(clock.changed(7), "the load failed: the next poll tries again");
        clock.loaded(7);
        assert!(!clock.changed(7));
        assert!(clock.changed(8));
    }

    #[test]
    fn nothing_loaded_is_always_due() {
        let mut clock = PollClock::new(Duration::from_secs(3600));
        assert!(clock.due());
        assert!(clock.changed(7));
        assert!(clock.due(), "the load failed: try again at once");
        clock.loaded(7);
        assert!(!clock.due());
    }
}
