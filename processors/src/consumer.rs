//! The processor loop: consume `positions.raw`, batch, apply each position to its device's state
//! ([`crate::process`]), and hand the batch to the [`Writer`], which makes it durable while the
//! next batch is consumed, and only then stores its offsets for the next commit.
//!
//! Offsets are stored by hand (`enable.auto.offset.store=false`; auto-commit then commits only
//! what was stored), and an offset is stored after its effects are durable. Device states are stored with the offset of
//! the last message applied to them, so an instance taking over a partition (after a crash or a
//! rebalance) loads them, skips messages it finds already applied, and carries on exactly where
//! the state left off: the output equals that of an uninterrupted run.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use fleetstream_kafka::KafkaConfig;
use fleetstream_schemas::Position;
use fleetstream_schemas::processing_dlq::{ProcessingDeadLetter, Stage};
use fleetstream_schemas::time::now_millis;
use fleetstream_storage::Store;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{ClientContext, Message};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::config::ProcessorConfig;
use crate::enrich::{Source, Tracker};
use crate::metrics::Metrics;
use crate::process::Processor;
use crate::reference::Reference;
use crate::sink::Sink;
use crate::writer::Writer;

/// Counts rebalances, so that the loop knows when its in-memory device states may be stale.
#[derive(Clone, Default)]
pub struct RebalanceCounter(pub Arc<AtomicU64>);

impl ClientContext for RebalanceCounter {}

impl ConsumerContext for RebalanceCounter {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        tracing::info!(?rebalance, "partitions rebalanced");
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Asks the broker where the consumed topic's partitions end, for [`crate::incarnation`].
pub struct PartitionEnds {
    pub consumer: Arc<StreamConsumer<RebalanceCounter>>,
    pub topic: String,
}

impl PartitionEnds {
    /// The high watermark of each of `partitions` that the broker tells within a few seconds;
    /// one that it does not is left out (a state is then not judged by its partition's end).
    pub async fn high_watermarks(&self, partitions: Vec<i32>) -> HashMap<i32, i64> {
        let (consumer, topic) = (self.consumer.clone(), self.topic.clone());
        let asked = tokio::task::spawn_blocking(move || {
            partitions
                .into_iter()
                .filter_map(|partition| match consumer.fetch_watermarks(&topic, partition, Duration::from_secs(5)) {
                    Ok((_, high)) => Some((partition, high)),
                    Err(e) => {
                        tracing::warn!(partition, error = %e, "could not ask where the partition ends");
                        None
                    }
                })
                .collect()
        });
        asked.await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "asking where partitions end failed");
            HashMap::new()
        })
    }
}

/// A consumed message, detached from the consumer so that it can wait in a batch: a position,
/// or the dead letter of a payload that is not one.
pub struct Pending {
    pub source: Source,
    pub position: Result<Position, ProcessingDeadLetter>,
}

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
        kafka.alerts_topic.as_str(),
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
        // librdkafka prefetches up to 64 MB per consumer and 100,000 messages per partition by
        // default: with small compressed positions the message count is the limit that bites
        // (a whole 500k-message topic was held, ~70 bytes of bookkeeping each besides the
        // payloads). A batch is at most `batch_max_rows` positions, so a couple of thousand per
        // partition ahead keep it busy at a fraction of the memory.
        .set("queued.max.messages.kbytes", "8192")
        .set("queued.min.messages", "2000")
        // Those thresholds are checked before a fetch, which then brings a whole answer: with
        // lz4, 4 MB compressed were ~100,000 positions at once. 1 MB (256 kB per partition)
        // still holds several batches.
        .set("fetch.max.bytes", "1048576")
        .set("max.partition.fetch.bytes", "262144")
        // With thresholds that low, librdkafka's default 1 s pause after reaching one starves
        // the processor (a drain fell from 70k to 24k positions/s); look again soon instead.
        .set("fetch.queue.backoff.ms", "20")
        // A fetch waits at most this long for data (librdkafka: 500 ms) before answering empty:
        // on an idle topic it bounds how late a single fix is seen when a broker answers a
        // fetch only at the deadline. Cheap: an empty fetch every 50 ms per broker.
        .set("fetch.wait.max.ms", "50")
        .create_with_context(rebalances.clone())
        .context("create the Kafka consumer")?;
    consumer.subscribe(&[&kafka.positions_topic]).context("subscribe")?;
    tracing::info!(topic = %kafka.positions_topic, group = %config.group_id, "processor consuming");

    let consumer = Arc::new(consumer);
    let sink = Arc::new(Sink::new(store, &kafka, metrics.clone())?);
    let writer = Writer::spawn(sink.clone(), consumer.clone(), kafka.positions_topic.clone(), shutdown.clone());
    let mut processor = Processor {
        ends: PartitionEnds { consumer: consumer.clone(), topic: kafka.positions_topic.clone() },
        rebalances,
        seen_rebalances: 0,
        sink,
        writer,
        tracker: Tracker::default(),
        reference: Reference::new(Duration::from_millis(config.fences_poll_ms)),
        settings: config.settings(),
        metrics,
        unloadable: HashMap::new(),
        last_eviction: Instant::now(),
    };
    let (max_rows, max_bytes) = (config.batch_max_rows as usize, config.batch_max_bytes as usize);
    // Room for the usual batch up front; a larger limit grows the vector only if it is reached.
    let mut batch: Vec<Pending> = Vec::with_capacity(max_rows.min(65_536));
    let mut batch_bytes = 0usize;
    let (max_wait, idle) = (config.batch_max_wait(), Duration::from_millis(config.batch_idle_ms));
    let (mut deadline, mut quiet_at) = (Instant::now() + max_wait, Instant::now() + idle);
    let mut stopped = false;
    let mut idle_refresh = tokio::time::interval(Duration::from_millis(config.fences_poll_ms));
    idle_refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            // A batch goes when it is full, when it has waited `max_wait`, or as soon as no
            // message came for `idle`: a lone fix is not held back, a stream fills batches.
            _ = sleep_until(deadline.min(quiet_at)), if !batch.is_empty() => {
                if !processor.process(&batch, &shutdown).await {
                    stopped = true;
                    break;
                }
                batch.clear();
                batch_bytes = 0;
            }
            received = consumer.recv() => {
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
                let now = Instant::now();
                if batch.is_empty() {
                    deadline = now + max_wait;
                }
                quiet_at = now + idle;
                batch_bytes += payload.len();
                batch.push(Pending { source, position });
                if batch.len() >= max_rows || batch_bytes >= max_bytes {
                    if !processor.process(&batch, &shutdown).await {
                        stopped = true;
                        break;
                    }
                    batch.clear();
                    batch_bytes = 0;
                }
            }
            _ = idle_refresh.tick(), if batch.is_empty() => processor.refresh_when_idle().await,
        }
    }
    if !stopped {
        processor.process(&batch, &shutdown).await;
    }
    processor.writer.finish().await;
    match consumer.commit_consumer_state(CommitMode::Sync) {
        // Nothing stored since the last automatic commit: nothing to do.
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => tracing::warn!(error = %e, "final offset commit failed; the last batch will be re-delivered"),
    }
    tracing::info!("processor stopped");
    Ok(())
}
