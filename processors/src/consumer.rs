//! The processor loop: consume `positions.raw`, batch, enrich, insert into ClickHouse, and only
//! then store the offsets for the next commit.
//!
//! Offsets follow the rule in `../shared/docs/infra.md`: `enable.auto.offset.store=false`, and an
//! offset is stored after ClickHouse accepted its row. A crash therefore re-delivers at most the
//! rows since the last commit, and the ReplacingMergeTree tables collapse those copies.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use anyhow::Context as _;
use fleetstream_kafka::KafkaConfig;
use fleetstream_schemas::Position;
use fleetstream_storage::Store;
use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tokio::time::{Instant, sleep, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::config::ProcessorConfig;
use crate::enrich::{LastFix, Source, Tracker};

/// A consumed message, detached from the consumer so that it can wait in a batch.
struct Pending {
    partition: i32,
    offset: i64,
    position: Position,
}

/// Runs until `shutdown` is cancelled; writes what it holds and commits before returning.
pub async fn run(
    config: ProcessorConfig,
    kafka: KafkaConfig,
    store: Store,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    fleetstream_kafka::ensure_topics(&kafka, &[kafka.positions_topic.as_str()]).await?;
    let consumer: StreamConsumer = kafka
        .client_config("fleetstream-processor")
        .set("group.id", &config.group_id)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("heartbeat.interval.ms", "1000")
        .create()
        .context("create the Kafka consumer")?;
    consumer.subscribe(&[&kafka.positions_topic]).context("subscribe")?;
    tracing::info!(topic = %kafka.positions_topic, group = %config.group_id, "processor consuming");

    let mut tracker = Tracker::default();
    let mut batch: Vec<Pending> = Vec::with_capacity(config.batch_max_rows);
    let mut deadline = Instant::now() + config.batch_max_wait();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = sleep_until(deadline), if !batch.is_empty() => {
                flush(&consumer, &kafka.positions_topic, &store, &mut tracker, &mut batch, &shutdown).await?;
            }
            received = consumer.recv() => {
                let message = match received {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(error = %e, "consume error");
                        continue;
                    }
                };
                let (partition, offset) = (message.partition(), message.offset());
                match Position::from_message(message.payload().unwrap_or_default()) {
                    Ok(position) => {
                        if batch.is_empty() {
                            deadline = Instant::now() + config.batch_max_wait();
                        }
                        batch.push(Pending { partition, offset, position });
                    }
                    // Ingest only produces valid positions; anything else is skipped loudly
                    // rather than blocking the partition forever.
                    Err(e) => tracing::error!(partition, offset, error = %e, "skipping undecodable message"),
                }
                if batch.len() >= config.batch_max_rows {
                    flush(&consumer, &kafka.positions_topic, &store, &mut tracker, &mut batch, &shutdown).await?;
                }
            }
        }
    }
    flush(&consumer, &kafka.positions_topic, &store, &mut tracker, &mut batch, &shutdown).await?;
    match consumer.commit_consumer_state(CommitMode::Sync) {
        // Nothing stored since the last automatic commit: nothing to do.
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => tracing::warn!(error = %e, "final offset commit failed; the last batch will be re-delivered"),
    }
    tracing::info!("processor stopped");
    Ok(())
}

/// Enriches and writes the batch, retrying ClickHouse until it accepts or shutdown is asked
/// for; stores offsets only after success.
async fn flush(
    consumer: &StreamConsumer,
    topic: &str,
    store: &Store,
    tracker: &mut Tracker,
    batch: &mut Vec<Pending>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    seed_unknown_devices(store, tracker, batch).await;
    let rows: Vec<_> = batch
        .iter()
        .map(|p| tracker.enrich(&p.position, Source { partition: p.partition, offset: p.offset }))
        .collect();

    let mut backoff = Duration::from_millis(200);
    loop {
        match store.insert_positions(&rows).await {
            Ok(()) => break,
            Err(e) if shutdown.is_cancelled() => {
                // Not stored, not committed: the next owner of these partitions re-reads them.
                tracing::warn!(error = %e, rows = rows.len(), "stopping with an unwritten batch");
                batch.clear();
                return Ok(());
            }
            Err(e) => {
                tracing::warn!(error = %e, rows = rows.len(), retry_in = ?backoff, "ClickHouse insert failed; retrying");
                tokio::select! {
                    _ = sleep(backoff) => {}
                    _ = shutdown.cancelled() => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }

    let mut next_offsets: BTreeMap<i32, i64> = BTreeMap::new();
    for p in batch.iter() {
        let entry = next_offsets.entry(p.partition).or_insert(p.offset);
        *entry = (*entry).max(p.offset);
    }
    for (partition, offset) in next_offsets {
        // Fails only when the partition was revoked meanwhile; its new owner re-reads the rows
        // and the duplicates collapse.
        if let Err(e) = consumer.store_offset(topic, partition, offset) {
            tracing::debug!(partition, offset, error = %e, "offset not stored");
        }
    }
    tracing::debug!(rows = rows.len(), "batch written");
    batch.clear();
    Ok(())
}

/// After a restart or a rebalance this processor has not seen a device's earlier fixes; its
/// newest stored fix is the predecessor of the next one.
async fn seed_unknown_devices(store: &Store, tracker: &mut Tracker, batch: &[Pending]) {
    let unknown: HashSet<&str> =
        batch.iter().map(|p| p.position.device_id.as_str()).filter(|d| !tracker.knows(d)).collect();
    if unknown.is_empty() {
        return;
    }
    let ids: Vec<String> = unknown.into_iter().map(str::to_string).collect();
    match store.latest_of_devices(&ids).await {
        Ok(rows) => {
            for r in rows {
                tracker.seed(&r.device_id, LastFix { fix_time_ms: r.fix_time_ms, lat: r.lat, lon: r.lon });
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not load previous fixes; deltas start afresh"),
    }
}
