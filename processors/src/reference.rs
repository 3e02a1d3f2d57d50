//! Reference data the processors poll: the fences and the device registry.
//!
//! Both are managed through the API, which writes a new version per change; processors poll
//! each table's newest version (one tiny query) and reload only when it moved, so a change
//! reaches every processor within the poll interval, without a restart.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use fleetstream_geofence::{FenceIndex, fences_from_geojson};
use fleetstream_storage::{FenceRow, PositionRow, Store, StoreError};

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

    fn due(&self) -> bool {
        self.checked_at.is_none_or(|t| t.elapsed() >= self.every)
    }

    /// Records a check; true when the version moved (or on the first check).
    fn changed(&mut self, version: u64) -> bool {
        self.checked_at = Some(Instant::now());
        let changed = self.version != Some(version);
        self.version = Some(version);
        changed
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
    registry_clock: PollClock,
    pub fences: FenceIndex,
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
            registry_clock: PollClock::new(poll),
            fences: FenceIndex::default(),
            registry: HashMap::new(),
        }
    }

    /// Reloads what changed, once per poll interval.
    pub async fn refresh(&mut self, store: &Store) -> Result<(), StoreError> {
        if self.fences_clock.due() && self.fences_clock.changed(store.fences_version().await?) {
            self.fences = index_of(&store.live_fences().await?);
            tracing::info!(fences = self.fences.len(), "fences loaded");
        }
        if self.registry_clock.due() && self.registry_clock.changed(store.registry_version().await?) {
            self.registry = store
                .all_registered_devices()
                .await?
                .into_iter()
                .map(|r| (r.device_id, DeviceMeta { name: r.name, fleet: r.fleet, device_type: r.device_type }))
                .collect();
            tracing::info!(devices = self.registry.len(), "device registry loaded");
        }
        Ok(())
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
