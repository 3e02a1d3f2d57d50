//! One batch, from consumed messages to the writer: restore the states of devices this instance
//! does not hold, apply each message to its device, resolve corrections, and hand the result to
//! the [`Writer`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fleetstream_schemas::Position;
use fleetstream_schemas::processing_dlq::{ProcessingDeadLetter, Stage};
use fleetstream_schemas::time::now_millis;
use fleetstream_storage::{DeviceStateRow, PositionRow, WindowRow};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::consumer::{PartitionEnds, Pending, RebalanceCounter};
use crate::enrich::{Applied, Correction, DeviceState, Output, Settings, Source, Tracker};
use crate::incarnation;
use crate::metrics::Metrics;
use crate::reference::Reference;
use crate::retry::{Backoff, retry_transient};
use crate::sink::{Batch, Sink};
use crate::writer::{Job, Writer};

/// A device that sent nothing for this long is dropped from memory (and restored from storage
/// when it comes back).
const IDLE_DEVICE: Duration = Duration::from_secs(15 * 60);

/// Everything a batch needs besides its messages.
pub struct Processor {
    pub ends: PartitionEnds,
    pub rebalances: RebalanceCounter,
    pub seen_rebalances: u64,
    pub sink: Arc<Sink>,
    pub writer: Writer,
    pub tracker: Tracker,
    pub reference: Reference,
    pub settings: Settings,
    pub metrics: Metrics,
    /// Devices of the current batch whose stored state storage refused to return, with the error.
    pub unloadable: HashMap<String, String>,
    pub last_eviction: Instant,
}

impl Processor {
    /// Applies a batch and queues it for writing. False when shutdown came first: nothing of
    /// the batch is acknowledged, and it is re-delivered to whoever owns its partitions next.
    pub async fn process(&mut self, batch: &[Pending], shutdown: &CancellationToken) -> bool {
        if batch.is_empty() {
            return true;
        }
        let rebalances = self.rebalances.0.load(Ordering::SeqCst);
        if rebalances != self.seen_rebalances {
            // Another instance may have advanced devices we remember: reload them from storage,
            // once what we wrote ourselves is there.
            if !self.writer.drain().await {
                return false;
            }
            self.tracker.clear();
            self.seen_rebalances = rebalances;
        }
        if !self.refresh_reference(shutdown).await {
            tracing::warn!("stopping with an unprocessed batch");
            return false;
        }
        if let Err(e) = self.restore_unknown_devices(batch, shutdown).await {
            tracing::warn!(error = %e, "stopping with an unprocessed batch");
            return false;
        }
        let ends = self.ends_of_doubtful_partitions(batch).await;
        let (mut out, corrections) = match self.apply(batch, &ends) {
            Ok(applied) => applied,
            Err(e) => {
                tracing::error!(error = %e, "could not encode device states; stopping with an unprocessed batch");
                return false;
            }
        };
        if !self.correct(&mut out, corrections, shutdown).await {
            return false;
        }
        let job = Job { batch: out, offsets: offsets_of(batch) };
        if !self.writer.submit(job).await {
            return false;
        }
        self.evict_idle_devices();
        true
    }

    /// Refreshes the fences, the alert rules and the registry. Once they are loaded, a failure keeps what is
    /// loaded; until then, transient failures are waited out as for device states, because a
    /// batch applied without fences would take every fence for deleted. False when shutdown
    /// came first.
    async fn refresh_reference(&mut self, shutdown: &CancellationToken) -> bool {
        let mut backoff = Backoff::default();
        loop {
            let refreshed = self.reference.refresh(self.sink.store()).await;
            self.note_reference_versions();
            match refreshed {
                Ok(()) => return true,
                Err(e) if self.reference.is_loaded() || e.is_permanent() => {
                    self.metrics.reference_refresh_failures.inc();
                    tracing::warn!(error = %e, "could not refresh fences, alert rules or registry; keeping what is loaded");
                    return true;
                }
                Err(e) => {
                    self.metrics.retried("load fences, alert rules and registry");
                    if backoff.wait("loading fences and the registry", &e.to_string(), shutdown).await.is_none() {
                        return false;
                    }
                }
            }
        }
    }

    /// Between batches, once per poll interval: loads what changed, so that the first fix after
    /// a quiet spell is judged against the fences as they are now. A failure is only logged:
    /// the next batch refreshes (and waits) as usual. Nothing before the first batch: the first
    /// load goes with it, which waits for the fences as a batch must.
    pub async fn refresh_when_idle(&mut self) {
        if !self.reference.is_loaded() {
            return;
        }
        if let Err(e) = self.reference.refresh(self.sink.store()).await {
            self.metrics.reference_refresh_failures.inc();
            tracing::debug!(error = %e, "could not refresh fences, alert rules or registry while idle");
        }
        self.note_reference_versions();
    }

    /// Publishes the versions of the fences and rules in use.
    fn note_reference_versions(&self) {
        if let Some(version) = self.reference.fences_version() {
            self.metrics.fences_version.set(i64::try_from(version).unwrap_or(i64::MAX));
        }
        if let Some(version) = self.reference.alert_rules_version() {
            self.metrics.alert_rules_version.set(i64::try_from(version).unwrap_or(i64::MAX));
        }
    }

    /// Applies each message to its device's state: the batch's outputs, dead letters and the
    /// states of the devices it touched.
    fn apply(&mut self, batch: &[Pending], ends: &HashMap<i32, i64>) -> anyhow::Result<(Batch, Vec<Correction>)> {
        // Sized once: growing a vector of rows by doubling held up to twice the batch in memory.
        let mut out = Batch { positions: Vec::with_capacity(batch.len()), ..Batch::default() };
        let mut corrections = Vec::new();
        let mut touched: HashSet<&str> = HashSet::new();
        for p in batch {
            let position = match &p.position {
                Ok(position) => position,
                Err(letter) => {
                    out.dead_letters.push(letter.clone());
                    continue;
                }
            };
            if let Some(error) = self.unloadable.get(position.device_id.as_str()) {
                out.dead_letters.push(letter_for(error, p.source, position));
                continue;
            }
            let end = ends.get(&p.source.partition).copied();
            if let Some(evidence) = self.tracker.restart_other_incarnation(position, p.source, end) {
                tracing::warn!(
                    device = %position.device_id, partition = p.source.partition, offset = p.source.offset,
                    ?evidence,
                    "device state belongs to another incarnation of its partition (topic recreated or \
                     broker data lost): its offsets start afresh instead of skipping the message"
                );
                self.metrics.incarnation_restarted(evidence);
            }
            let context = self.reference.context(&position.device_id);
            match self.tracker.apply(position, p.source, &context, &self.settings) {
                Applied::Redelivered => {
                    self.metrics.redelivered.inc();
                    continue;
                }
                Applied::Duplicate => {
                    self.metrics.duplicates.inc();
                }
                Applied::Stored(output) => {
                    let Output { mut row, corrections: corrected, events, alerts } = *output;
                    if row.late == 1 {
                        self.metrics.late_positions.inc();
                    }
                    self.reference.annotate(&mut row);
                    out.positions.push(row);
                    out.events.extend(events);
                    out.alerts.extend(alerts);
                    corrections.extend(corrected);
                }
            }
            touched.insert(&position.device_id);
        }
        self.unloadable.clear();
        let now = now_millis();
        for device_id in touched {
            let state = self.tracker.state(device_id).expect("an applied device has state");
            let applied = state.applied.expect("an applied device has an offset");
            out.states.push(DeviceStateRow {
                device_id: device_id.to_string(),
                kafka_partition: applied.partition,
                kafka_offset: applied.offset,
                state: serde_json::to_string(state)?,
                updated_at_ms: now,
            });
        }
        Ok((out, corrections))
    }

    /// Where the partitions end that hold messages their devices' states would skip as
    /// redelivered, unless their fixes already prove otherwise ([`incarnation`]). Such messages
    /// follow a restart, a rebalance or a recreated topic; other batches ask the broker nothing.
    async fn ends_of_doubtful_partitions(&self, batch: &[Pending]) -> HashMap<i32, i64> {
        let mut doubtful: Vec<i32> = batch
            .iter()
            .filter_map(|p| {
                let position = p.position.as_ref().ok()?;
                let state = self.tracker.state(&position.device_id)?;
                let doubt = incarnation::would_skip(state, p.source)
                    && incarnation::other_incarnation(state, position.fix_time_ms, p.source, None).is_none();
                doubt.then_some(p.source.partition)
            })
            .collect();
        if doubtful.is_empty() {
            return HashMap::new();
        }
        doubtful.sort_unstable();
        doubtful.dedup();
        self.ends.high_watermarks(doubtful).await
    }

    /// Applies corrections to the rows they concern: rows of this batch in place, earlier rows
    /// read back from storage (everything but their enrichment stays as stored) and added to
    /// the batch. False when shutdown came first.
    async fn correct(&mut self, out: &mut Batch, corrections: Vec<Correction>, shutdown: &CancellationToken) -> bool {
        if corrections.is_empty() {
            return true;
        }
        self.metrics.corrections.inc_by(corrections.len() as u64);
        let mut in_batch: HashMap<(&str, i64), usize> = HashMap::new();
        for (i, row) in out.positions.iter().enumerate() {
            in_batch.insert((row.device_id.as_str(), row.fix_time_ms), i);
        }
        let mut stored: Vec<Correction> = Vec::new();
        let mut patches: Vec<(usize, Correction)> = Vec::new();
        for c in corrections {
            match in_batch.get(&(c.device_id.as_str(), c.fix_time_ms)) {
                Some(&i) => patches.push((i, c)),
                None => stored.push(c),
            }
        }
        for (i, c) in patches {
            c.apply_to(&mut out.positions[i]);
        }
        if stored.is_empty() {
            return true;
        }
        // The rows may be in the batch being written right now.
        if !self.writer.drain().await {
            return false;
        }
        let devices: Vec<String> =
            stored.iter().map(|c| c.device_id.clone()).collect::<HashSet<_>>().into_iter().collect();
        let from = stored.iter().map(|c| c.fix_time_ms).min().unwrap_or_default();
        let to = stored.iter().map(|c| c.fix_time_ms).max().unwrap_or_default();
        let store = self.sink.store();
        let retried = || self.metrics.retried("load positions to correct");
        let rows = match retry_transient("loading positions to correct", shutdown, &retried, || {
            store.positions_of_devices(&devices, from, to)
        })
        .await
        {
            None => return false,
            Some(Ok(rows)) => rows,
            Some(Err(e)) => {
                tracing::error!(error = %e, corrections = stored.len(), "positions to correct could not be read; left as they were");
                return true;
            }
        };
        let mut by_key: HashMap<(String, i64), PositionRow> =
            rows.into_iter().map(|r| ((r.device_id.clone(), r.fix_time_ms), r)).collect();
        let mut corrected: Vec<(String, i64)> = Vec::new();
        // Several corrections of one row in a batch come in order: the later one wins.
        for c in stored {
            let key = (c.device_id.clone(), c.fix_time_ms);
            match by_key.get_mut(&key) {
                Some(row) => {
                    c.apply_to(row);
                    corrected.push(key);
                }
                None => {
                    tracing::warn!(device = %c.device_id, fix_time_ms = c.fix_time_ms, "a position to correct is not stored")
                }
            }
        }
        corrected.sort_unstable();
        corrected.dedup();
        out.positions.extend(corrected.into_iter().filter_map(|key| by_key.remove(&key)));
        true
    }

    /// Drops devices that sent nothing for [`IDLE_DEVICE`] from memory, at most once a minute:
    /// memory follows the devices that are active, not every device ever seen.
    fn evict_idle_devices(&mut self) {
        if self.last_eviction.elapsed() < Duration::from_secs(60) {
            return;
        }
        self.last_eviction = Instant::now();
        let dropped = self.tracker.evict_idle(IDLE_DEVICE);
        if dropped > 0 {
            tracing::debug!(dropped, kept = self.tracker.len(), "idle devices dropped from memory");
        }
    }

    /// Devices this instance holds no state for get theirs from storage (or start fresh).
    /// Without its stored state a device would be processed from scratch and its output would
    /// differ from an uninterrupted run, so transient failures are waited out. Should storage
    /// refuse the query itself, devices are loaded one by one, and the positions of a device
    /// whose state cannot be read at all are set aside (dead letters) for this batch.
    async fn restore_unknown_devices(&mut self, batch: &[Pending], shutdown: &CancellationToken) -> anyhow::Result<()> {
        let unknown: HashSet<&str> = batch
            .iter()
            .filter_map(|p| p.position.as_ref().ok())
            .map(|p| p.device_id.as_str())
            .filter(|d| !self.tracker.knows(d))
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = unknown.iter().map(|d| d.to_string()).collect();
        let rows = match self.load_states(&ids, shutdown).await? {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!(error = %e, devices = ids.len(), "loading device states refused; loading them one by one");
                let mut rows = Vec::new();
                for id in &ids {
                    match self.load_states(std::slice::from_ref(id), shutdown).await? {
                        Ok(found) => rows.extend(found),
                        Err(e) => {
                            self.unloadable.insert(id.clone(), e.to_string());
                        }
                    }
                }
                rows
            }
        };
        let mut states: Vec<(String, DeviceState)> = Vec::with_capacity(rows.len());
        for row in rows {
            match serde_json::from_str::<DeviceState>(&row.state) {
                Ok(state) => states.push((row.device_id, state)),
                Err(e) => {
                    tracing::error!(device = %row.device_id, error = %e, "stored state unreadable; starting afresh")
                }
            }
        }
        let mut windows = self.load_windows(&states, shutdown).await?;
        for (device_id, state) in states {
            let window = windows.remove(&device_id).unwrap_or_default();
            let rules = self.reference.rules_for(&device_id);
            if !self.tracker.restore(&device_id, state, &window, &rules) {
                tracing::warn!(device = %device_id, "recent positions incomplete in storage; history restarts at the newest fix");
                self.metrics.histories_restarted.inc();
            }
        }
        for id in ids {
            if !self.tracker.knows(&id) && !self.unloadable.contains_key(&id) {
                self.tracker.restore(&id, DeviceState::default(), &[], &self.reference.rules_for(&id));
            }
        }
        Ok(())
    }

    /// The stored positions the restored devices' histories are rebuilt from, by device. Should
    /// storage refuse the query, the histories restart at their newest fix (they are checked).
    async fn load_windows(
        &self,
        states: &[(String, DeviceState)],
        shutdown: &CancellationToken,
    ) -> anyhow::Result<HashMap<String, Vec<WindowRow>>> {
        let wanted: Vec<&(String, DeviceState)> = states.iter().filter(|(_, s)| s.history.window_len > 0).collect();
        let mut by_device: HashMap<String, Vec<WindowRow>> = HashMap::new();
        let Some(after) = wanted.iter().map(|(_, s)| s.history.window_start_ms()).min() else {
            return Ok(by_device);
        };
        let ids: Vec<String> = wanted.iter().map(|(id, _)| id.clone()).collect();
        let store = self.sink.store();
        let retried = || self.metrics.retried("load recent positions");
        let loaded = retry_transient("loading recent positions", shutdown, &retried, || store.window_rows(&ids, after))
            .await
            .ok_or_else(|| anyhow::anyhow!("stopped before recent positions could be loaded"))?;
        match loaded {
            Ok(rows) => {
                for row in rows {
                    by_device.entry(row.device_id.clone()).or_default().push(row);
                }
            }
            Err(e) => tracing::error!(error = %e, "recent positions refused; histories restart at the newest fix"),
        }
        Ok(by_device)
    }

    /// The stored states of `ids`, retrying transient failures; `Err` inside when refused.
    async fn load_states(
        &self,
        ids: &[String],
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Result<Vec<DeviceStateRow>, fleetstream_storage::StoreError>> {
        let store = self.sink.store();
        let retried = || self.metrics.retried("load states");
        retry_transient("loading device states", shutdown, &retried, || store.device_states(ids))
            .await
            .ok_or_else(|| anyhow::anyhow!("stopped before device states could be loaded"))
    }
}

/// Per partition, the offset of the batch's last message.
fn offsets_of(batch: &[Pending]) -> BTreeMap<i32, i64> {
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    for p in batch {
        let entry = next.entry(p.source.partition).or_insert(p.source.offset);
        *entry = (*entry).max(p.source.offset);
    }
    next
}

/// The dead letter of a position whose device's state could not be loaded.
fn letter_for(error: &str, source: Source, position: &Position) -> ProcessingDeadLetter {
    let item = serde_json::to_value(position).expect("a Position always serialises");
    ProcessingDeadLetter::new(Stage::LoadState, error, source.partition, source.offset, now_millis())
        .with_item(&position.device_id, item)
}
