//! The processors' copy of the fences, reloaded when the `geofences` table changes.
//!
//! Fences are managed through the API, which writes a new version per change; processors poll
//! the newest version (one tiny query) and rebuild their index only when it moved, so a fence
//! change reaches every processor within the poll interval, without a restart.

use std::time::{Duration, Instant};

use fleetstream_geofence::{FenceIndex, fences_from_geojson};
use fleetstream_storage::{FenceRow, Store, StoreError};

pub struct FenceCache {
    version: Option<u64>,
    checked_at: Option<Instant>,
    poll: Duration,
    pub index: FenceIndex,
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

impl FenceCache {
    pub fn new(poll: Duration) -> Self {
        FenceCache { version: None, checked_at: None, poll, index: FenceIndex::default() }
    }

    /// Reloads the fences if the poll interval has passed and their version moved.
    pub async fn refresh(&mut self, store: &Store) -> Result<(), StoreError> {
        if self.checked_at.is_some_and(|t| t.elapsed() < self.poll) {
            return Ok(());
        }
        let version = store.fences_version().await?;
        self.checked_at = Some(Instant::now());
        if self.version == Some(version) {
            return Ok(());
        }
        let rows = store.live_fences().await?;
        self.index = index_of(&rows);
        self.version = Some(version);
        tracing::info!(fences = self.index.len(), version, "fences loaded");
        Ok(())
    }
}
