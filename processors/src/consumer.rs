//! The processor loop: consume `positions.raw`, batch, apply each position to its device's
//! state, write the batch ([`crate::sink`]), and only then store the offsets for the next commit.
//!
//! Offsets follow the rule in `../shared/docs/infra.md`: `enable.auto.offset.store=false`, and an
//! offset is stored after its effects are durable. Device states are stored with the offset of
//! the last message applied to them, so an instance taking over a partition (after a crash or a
//! rebalance) loads them, skips messages it finds already applied, and carries on exactly where
//! the state left off: the output equals that of an uninterrupted run.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use fleetstream_kafka::KafkaConfig;
use fleetstream_schemas::Position;
use fleetstream_schemas::processing_dlq::{ProcessingDeadLetter, Stage};
use fleetstream_schemas::time::now_millis;
use fleetstream_storage::{DeviceStateRow, PositionRow, Store, WindowRow};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{ClientContext, Message};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::config::ProcessorConfig;
use crate::enrich::{Applied, Correction, DeviceState, Output, Settings, Source, Tracker};
use crate::metrics::Metrics;
use crate::reference::Reference;
use crate::retry::retry_transient;
use crate::sink::{Batch, Sink};

/// Counts rebalances, so that the loop knows when its in-memory device states may be stale.
#[derive(Clone, Default)]
struct RebalanceCounter(Arc<AtomicU64>);

impl ClientContext for RebalanceCounter {}

impl ConsumerContext for RebalanceCounter {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        tracing::info!(?rebalance, "partitions rebalanced");
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A consumed message, detached from the consumer so that it can wait in a batch: a position,
/// or the dead letter of a payload that is not one.
struct Pending {
    source: Source,
    position: Result<Position, ProcessingDeadLetter>,
}

/// Everything a batch needs besides the messages.
struct Processor {
    consumer: StreamConsumer<RebalanceCounter>,
    rebalances: RebalanceCounter,
    seen_rebalances: u64,
    topic: String,
    sink: Sink,
    tracker: Tracker,
    reference: Reference,
    settings: Settings,
    metrics: Metrics,
    /// Devices of the current batch whose stored state storage refused to return, with the error.
    unloadable: HashMap<String, String>,
    last_eviction: Instant,
}

/// A device that sent nothing for this long is dropped from memory (and restored from storage
/// when it comes back).
const IDLE_DEVICE: Duration = Duration::from_secs(15 * 60);

/// Runs until `shutdown` is cancelled; writes what it holds and commits before returning.
/// Serves `metrics` on `config.metrics_listen` when set.
pub async fn run(
    config: ProcessorConfig,
    kafka: KafkaConfig,
    store: Store,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if !config.metrics_listen.is_empty() {
        // Several processors on one host need an address each; without one, processing goes on.
        match tokio::net::TcpListener::bind(&config.metrics_listen).await {
            Ok(listener) => drop(tokio::spawn(crate::metrics::serve(listener, metrics.clone(), shutdown.clone()))),
            Err(e) => tracing::warn!(
                addr = %config.metrics_listen, error = %e,
                "cannot serve processor metrics; set --processor-metrics-listen to a free address (empty: none)"
            ),
        }
    }
    let topics = [
        kafka.positions_topic.as_str(),
        kafka.enriched_topic.as_str(),
        kafka.events_topic.as_str(),
        kafka.processing_dlq_topic.as_str(),
    ];
    fleetstream_kafka::ensure_topics(&kafka, &topics).await?;
    let rebalances = RebalanceCounter::default();
    let consumer: StreamConsumer<RebalanceCounter> = kafka
        .client_config("fleetstream-processor")
        .set("group.id", &config.group_id)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("heartbeat.interval.ms", "1000")
        .set("session.timeout.ms", config.session_timeout_ms.to_string())
        .create_with_context(rebalances.clone())
        .context("create the Kafka consumer")?;
    consumer.subscribe(&[&kafka.positions_topic]).context("subscribe")?;
    tracing::info!(topic = %kafka.positions_topic, group = %config.group_id, "processor consuming");

    let mut processor = Processor {
        consumer,
        rebalances,
        seen_rebalances: 0,
        topic: kafka.positions_topic.clone(),
        sink: Sink::new(store, &kafka, metrics.clone())?,
        tracker: Tracker::default(),
        reference: Reference::new(Duration::from_millis(config.fences_poll_ms)),
        settings: config.settings(),
        metrics,
        unloadable: HashMap::new(),
        last_eviction: Instant::now(),
    };
    let mut batch: Vec<Pending> = Vec::with_capacity(config.batch_max_rows);
    let mut deadline = Instant::now() + config.batch_max_wait();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = sleep_until(deadline), if !batch.is_empty() => processor.flush(&mut batch, &shutdown).await?,
            received = processor.consumer.recv() => {
                let message = match received {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(error = %e, "consume error");
                        continue;
                    }
                };
                let source = Source { partition: message.partition(), offset: message.offset() };
                let payload = message.payload().unwrap_or_default();
                // Ingest only produces valid positions; anything else is set aside with its
                // payload rather than blocking the partition forever.
                let position = Position::from_message(payload).map_err(|e| {
                    tracing::error!(?source, error = %e, "undecodable message; dead-lettering it");
                    ProcessingDeadLetter::new(Stage::Decode, &e, source.partition, source.offset, now_millis())
                        .with_raw(payload)
                });
                if batch.is_empty() {
                    deadline = Instant::now() + config.batch_max_wait();
                }
                batch.push(Pending { source, position });
                if batch.len() >= config.batch_max_rows {
                    processor.flush(&mut batch, &shutdown).await?;
                }
            }
        }
    }
    processor.flush(&mut batch, &shutdown).await?;
    match processor.consumer.commit_consumer_state(CommitMode::Sync) {
        // Nothing stored since the last automatic commit: nothing to do.
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => tracing::warn!(error = %e, "final offset commit failed; the last batch will be re-delivered"),
    }
    tracing::info!("processor stopped");
    Ok(())
}

impl Processor {
    async fn flush(&mut self, batch: &mut Vec<Pending>, shutdown: &CancellationToken) -> anyhow::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let rebalances = self.rebalances.0.load(Ordering::SeqCst);
        if rebalances != self.seen_rebalances {
            // Another instance may have advanced devices we remember: reload them from storage.
            self.tracker.clear();
            self.seen_rebalances = rebalances;
        }
        if let Err(e) = self.reference.refresh(self.sink.store()).await {
            tracing::warn!(error = %e, "could not refresh fences or registry; keeping what is loaded");
        }
        if let Err(e) = self.restore_unknown_devices(batch, shutdown).await {
            // Shutting down before storage answered: nothing applied, nothing stored; the
            // batch is re-delivered to whoever owns these partitions next.
            tracing::warn!(error = %e, "stopping with an unprocessed batch");
            batch.clear();
            return Ok(());
        }

        let (mut out, corrections) = self.apply(batch)?;
        if !self.correct(&mut out, corrections, shutdown).await {
            batch.clear();
            return Ok(());
        }
        if !self.sink.write(&out, shutdown).await {
            batch.clear();
            return Ok(());
        }
        self.store_offsets(batch);
        self.evict_idle_devices();
        tracing::debug!(positions = out.positions.len(), events = out.events.len(), "batch written");
        batch.clear();
        Ok(())
    }

    /// Applies each message to its device's state: the batch's outputs, dead letters and the
    /// states of the devices it touched.
    fn apply(&mut self, batch: &[Pending]) -> anyhow::Result<(Batch, Vec<Correction>)> {
        let mut out = Batch::default();
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
            match self.tracker.apply(position, p.source, &self.reference.fences, &self.settings) {
                Applied::Redelivered => {
                    self.metrics.redelivered.inc();
                    continue;
                }
                Applied::Duplicate => {
                    self.metrics.duplicates.inc();
                }
                Applied::Stored(output) => {
                    let Output { mut row, corrections: corrected, events } = *output;
                    if row.late == 1 {
                        self.metrics.late_positions.inc();
                    }
                    self.reference.annotate(&mut row);
                    out.positions.push(row);
                    out.events.extend(events);
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

    /// Applies corrections to the rows they concern: rows of this batch in place, earlier rows
    /// read back from storage (everything but their enrichment stays as stored) and added to
    /// the batch. False when shutdown came first.
    async fn correct(&self, out: &mut Batch, corrections: Vec<Correction>, shutdown: &CancellationToken) -> bool {
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

    /// Stores the offsets of a written batch, for the next (automatic) commit.
    fn store_offsets(&self, batch: &[Pending]) {
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        for p in batch {
            let entry = next.entry(p.source.partition).or_insert(p.source.offset);
            *entry = (*entry).max(p.source.offset);
        }
        for (partition, offset) in next {
            // Fails only when the partition was revoked meanwhile; its new owner finds the
            // device states and skips what this batch applied.
            if let Err(e) = self.consumer.store_offset(&self.topic, partition, offset) {
                tracing::debug!(partition, offset, error = %e, "offset not stored");
            }
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
            if !self.tracker.restore(&device_id, state, &window) {
                tracing::warn!(device = %device_id, "recent positions incomplete in storage; history restarts at the newest fix");
                self.metrics.histories_restarted.inc();
            }
        }
        for id in ids {
            if !self.tracker.knows(&id) && !self.unloadable.contains_key(&id) {
                self.tracker.restore(&id, DeviceState::default(), &[]);
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

/// The dead letter of a position whose device's state could not be loaded.
fn letter_for(error: &str, source: Source, position: &Position) -> ProcessingDeadLetter {
    let item = serde_json::to_value(position).expect("a Position always serialises");
    ProcessingDeadLetter::new(Stage::LoadState, error, source.partition, source.offset, now_millis())
        .with_item(&position.device_id, item)
}
