//! One shared consumer per output topic, fanned out to every live stream of the API process.
//!
//! The consumer is assigned every partition of the topic at its end when the API starts (no
//! consumer group, nothing committed: it only ever pushes what arrives while it runs). Each
//! message is read once: its filter keys parsed, its SSE text rendered with the id of the topic
//! position after it ([`Cursor`]), and the frame put in a bounded broadcast ring. Subscribers
//! never hold the consumer back: the ring overwrites its oldest frames, and a subscriber that
//! falls that far behind learns it on its next receive (see `stream::client`).
//!
//! [`Fanout::subscribe`] returns a receiver together with the cursor of the last frame sent
//! before it, taken under the same lock as sending: the receiver gets exactly the frames after
//! that cursor, which is what a resuming client catches up to before it joins.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use axum::body::Bytes;
use fleetstream_kafka::KafkaConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::metrics::ApiMetrics;
use crate::stream::filter::Keys;
use crate::stream::id::{Cursor, StreamKind};
use crate::stream::sse;

/// How long Kafka metadata and watermark requests may take.
pub const KAFKA_TIMEOUT: Duration = Duration::from_secs(10);

/// One message of the topic, read and rendered once for every subscriber.
#[derive(Debug)]
pub struct Frame {
    pub partition: usize,
    pub offset: i64,
    /// The topic position after this message: its id.
    pub cursor: Cursor,
    pub keys: Keys,
    /// `event:`, `id:` and `data:` lines with this frame's own id.
    pub sse: Bytes,
}

impl Frame {
    /// The message's JSON (within [`Frame::sse`]).
    pub fn payload(&self) -> Bytes {
        let start = self.sse.windows(7).position(|w| w == b"\ndata: ").map_or(0, |at| at + 7);
        self.sse.slice(start..self.sse.len() - 2)
    }
}

pub struct Fanout {
    pub kind: StreamKind,
    pub topic: String,
    sender: broadcast::Sender<Arc<Frame>>,
    /// Frames the ring holds: a subscriber further behind is dropped.
    pub capacity: usize,
    /// The position after the last frame sent; `None` until the topic's partitions are known.
    cursor: Mutex<Option<Cursor>>,
}

impl Fanout {
    /// Starts consuming `topic` in the background until `shutdown`.
    pub fn start(
        kind: StreamKind,
        kafka: &KafkaConfig,
        topic: &str,
        capacity: usize,
        metrics: ApiMetrics,
        shutdown: CancellationToken,
    ) -> Arc<Fanout> {
        let (sender, _) = broadcast::channel(capacity);
        let fanout = Arc::new(Fanout { kind, topic: topic.to_string(), sender, capacity, cursor: Mutex::new(None) });
        tokio::spawn(run(fanout.clone(), kafka.clone(), metrics, shutdown));
        fanout
    }

    /// Frames from now on, and the cursor just before the first of them; waits until the topic
    /// is known (it may not exist yet when the API starts before the processors).
    pub async fn subscribe(&self) -> (broadcast::Receiver<Arc<Frame>>, Cursor) {
        loop {
            {
                let cursor = self.cursor.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(cursor) = cursor.as_ref() {
                    return (self.sender.subscribe(), cursor.clone());
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn publish(&self, partition: usize, offset: i64, payload: &[u8], metrics: &ApiMetrics) {
        let keys = Keys::read(payload);
        let mut guard = self.cursor.lock().unwrap_or_else(|e| e.into_inner());
        let Some(cursor) = guard.as_mut() else { return };
        // A message no filter can read still moves the position: ids after it skip it.
        cursor.set(partition, offset);
        let keys = match keys {
            Ok(keys) => keys,
            Err(e) => {
                metrics.stream_unreadable(self.kind);
                tracing::warn!(topic = %self.topic, partition, offset, error = %e, "output message without the fields streams filter on; not streamed");
                return;
            }
        };
        let cursor = cursor.clone();
        let payload = sse::one_line(payload);
        let sse = sse::message(self.kind, &cursor.encode(self.kind), &payload);
        let frame = Frame { partition, offset, cursor, keys, sse };
        // No receiver is fine: nobody is streaming.
        let _ = self.sender.send(Arc::new(frame));
    }
}

/// A consumer of fleetstream's output topics that belongs to no group and commits nothing.
pub fn reader(kafka: &KafkaConfig, client_id: &str) -> anyhow::Result<StreamConsumer> {
    let mut config = kafka.client_config(client_id);
    config
        .set("group.id", "fleetstream-api-streams")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        // An offset no longer in the topic (retention): start from what is left.
        .set("auto.offset.reset", "earliest")
        // A reader holds little ahead of what it sends.
        .set("queued.max.messages.kbytes", "4096")
        .set("fetch.wait.max.ms", "50");
    config.create().with_context(|| format!("create a Kafka consumer ({})", kafka.describe()))
}

/// The low and high watermarks of each partition of `topic`; an empty list while the topic
/// does not exist.
pub async fn watermarks(consumer: &Arc<StreamConsumer>, topic: &str) -> anyhow::Result<Vec<(i64, i64)>> {
    let (consumer, topic) = (consumer.clone(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        let metadata = consumer.fetch_metadata(Some(&topic), KAFKA_TIMEOUT).context("fetch topic metadata")?;
        let Some(found) = metadata.topics().iter().find(|t| t.name() == topic && t.error().is_none()) else {
            return Ok(Vec::new());
        };
        (0..found.partitions().len() as i32)
            .map(|p| {
                consumer
                    .fetch_watermarks(&topic, p, KAFKA_TIMEOUT)
                    .with_context(|| format!("watermarks of {topic}/{p}"))
            })
            .collect()
    })
    .await?
}

/// Assigns `consumer` every partition of `topic` at the given offsets.
pub async fn assign(consumer: &Arc<StreamConsumer>, topic: &str, offsets: Vec<i64>) -> anyhow::Result<()> {
    let mut list = TopicPartitionList::new();
    for (p, offset) in offsets.into_iter().enumerate() {
        list.add_partition_offset(topic, p as i32, Offset::Offset(offset)).context("partition list")?;
    }
    let consumer = consumer.clone();
    tokio::task::spawn_blocking(move || consumer.assign(&list)).await?.context("assign partitions")
}

async fn run(fanout: Arc<Fanout>, kafka: KafkaConfig, metrics: ApiMetrics, shutdown: CancellationToken) {
    let topic = fanout.topic.clone();
    let consumer = tokio::select! {
        consumer = start(&fanout, &kafka, &shutdown) => consumer,
        () = shutdown.cancelled() => return,
    };
    tracing::info!(%topic, "streaming from the topic's end");
    loop {
        let message = tokio::select! {
            message = consumer.recv() => message,
            () = shutdown.cancelled() => return,
        };
        match message {
            Ok(m) => fanout.publish(m.partition() as usize, m.offset(), m.payload().unwrap_or_default(), &metrics),
            Err(e) => {
                tracing::warn!(%topic, error = %e, "stream consumer error; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Waits for the topic, assigns its partitions at their ends and publishes the starting cursor.
async fn start(fanout: &Fanout, kafka: &KafkaConfig, shutdown: &CancellationToken) -> Arc<StreamConsumer> {
    let topic = &fanout.topic;
    let mut warned = false;
    loop {
        match ready(fanout, kafka).await {
            Ok(Some(consumer)) => return consumer,
            Ok(None) if !warned => tracing::info!(%topic, "waiting for the topic to exist before streaming it"),
            Ok(None) => {}
            Err(e) if !warned => {
                tracing::warn!(%topic, error = format!("{e:#}"), "cannot stream the topic yet; retrying")
            }
            Err(_) => {}
        }
        warned = true;
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = shutdown.cancelled() => {}
        }
    }
}

async fn ready(fanout: &Fanout, kafka: &KafkaConfig) -> anyhow::Result<Option<Arc<StreamConsumer>>> {
    let consumer = Arc::new(reader(kafka, &format!("fleetstream-api-{}", fanout.kind.label()))?);
    let marks = watermarks(&consumer, &fanout.topic).await?;
    if marks.is_empty() {
        return Ok(None);
    }
    let ends: Vec<i64> = marks.iter().map(|&(_, high)| high).collect();
    assign(&consumer, &fanout.topic, ends.clone()).await?;
    *fanout.cursor.lock().unwrap_or_else(|e| e.into_inner()) = Some(Cursor(ends.iter().map(|h| h - 1).collect()));
    Ok(Some(consumer))
}
