//! Reference data the processors poll: the fences and the device registry.
//!
//! Both are managed through the API, which writes a new version per change; processors poll
//! each table's newest version (one tiny query) and reload only when it moved, so a change
//! reaches every processor within the poll interval, without a restart.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use fleetstream_geofence::{FenceIndex, fences_from_geojson};
use fleetstream_storage::{DeviceRow, FenceRow, PositionRow, Store, StoreError};

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

const REGISTRY_PAGE: u64 = 10_000;

async fn load_registry(store: &Store) -> Result<HashMap<String, DeviceMeta>, StoreError> {
    let mut registry = HashMap::new();
    let mut after = String::new();
    loop {
        let page: Vec<DeviceRow> = store.registered_devices(&after, REGISTRY_PAGE).await?;
        let full = page.len() as u64 == REGISTRY_PAGE;
        for row in page {
            after.clone_from(&row.device_id);
            registry
                .insert(row.device_id, DeviceMeta { name: row.name, fleet: row.fleet, device_type: row.device_type });
        }
        if !full {
            return Ok(registry);
        }
    }
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
            self.registry = load_registry(store).await?;
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
