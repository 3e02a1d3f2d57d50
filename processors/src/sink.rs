//! Writing one processed batch: its outputs (rows in ClickHouse, messages on the output topics),
//! then its device states.
//!
//! The device states are the commit point: a stored state says "every message up to this offset
//! has its outputs", so they are written only after every output of the batch is durable (and
//! the offsets only after the states, by the caller). A crash anywhere before re-applies the
//! batch from the previous states and writes the same outputs again, which is harmless: rows
//! collapse on their keys and versions, messages carry ids and versions for consumers.
//!
//! Outputs go concurrently (three tables, three topics). A transient failure is retried until it
//! passes; a permanent refusal is narrowed down to the refused rows or messages, which go to
//! the processing dead-letter topic with the stage and the error, so the partition moves on.

use std::time::Instant;

use fleetstream_kafka::KafkaConfig;
use fleetstream_schemas::processing_dlq::{ProcessingDeadLetter, Stage};
use fleetstream_schemas::time::now_millis;
use fleetstream_storage::{AlertRow, DeviceStateRow, GeofenceEventRow, PipelineStatRow, PositionRow, Store};
use futures::{StreamExt, stream};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::outputs::{alert, enriched_position, geofence_event};
use crate::retry::{Backoff, Failure, write_isolating};

/// Messages handed to the producer and not yet acknowledged, at most, per topic being written
/// (handed over in the batch's order; acknowledgements are taken as they come):
/// enough for full produce requests (librdkafka's `batch.num.messages` is 10,000), few enough
/// that the producer's copies of a large batch stay a few megabytes.
const MAX_IN_FLIGHT: usize = 10_000;

/// The output of one batch.
#[derive(Default)]
pub struct Batch {
    pub positions: Vec<PositionRow>,
    pub events: Vec<GeofenceEventRow>,
    pub alerts: Vec<AlertRow>,
    pub states: Vec<DeviceStateRow>,
    /// Messages set aside before any output (undecodable payloads).
    pub dead_letters: Vec<ProcessingDeadLetter>,
}

pub struct Sink {
    store: Store,
    producer: FutureProducer,
    enriched_topic: String,
    events_topic: String,
    alerts_topic: String,
    dlq_topic: String,
    metrics: Metrics,
}

/// A Kafka delivery failure, classified.
struct ProduceFailure(KafkaError);

impl std::fmt::Display for ProduceFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl Failure for ProduceFailure {
    /// The broker refuses this message for what it is (size, format); anything else (no leader,
    /// timeouts, a broker down) passes.
    fn is_permanent(&self) -> bool {
        use RDKafkaErrorCode::*;
        matches!(
            self.0.rdkafka_error_code(),
            Some(MessageSizeTooLarge | InvalidMessageSize | InvalidMessage | InvalidRecord | BadMessage)
        )
    }
}

impl Sink {
    pub fn new(store: Store, kafka: &KafkaConfig, metrics: Metrics) -> anyhow::Result<Sink> {
        use anyhow::Context as _;
        let producer = kafka
            .durable_producer_config("fleetstream-processor-output")
            .set("linger.ms", "20")
            .create()
            .context("create the output producer")?;
        Ok(Sink {
            store,
            producer,
            enriched_topic: kafka.enriched_topic.clone(),
            events_topic: kafka.events_topic.clone(),
            alerts_topic: kafka.alerts_topic.clone(),
            dlq_topic: kafka.processing_dlq_topic.clone(),
            metrics,
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Makes the batch durable, in this order: its outputs (rows and messages, concurrently), the
    /// dead letters of what they refused, the pipeline stats (best effort), then the device
    /// states (the commit point) and the dead letters of any state refused. Returns false when
    /// shutdown was asked for before that: the caller must then not store the offsets.
    pub async fn write(&self, batch: &Batch, shutdown: &CancellationToken) -> bool {
        let started = Instant::now();
        let retried = |operation: &'static str| move || self.metrics.retried(operation);
        let (positions_retried, events_retried) = (retried("store positions"), retried("store events"));
        let alerts_retried = retried("store alerts");
        let (positions, events, alerts, enriched, event_messages, alert_messages) = tokio::join!(
            write_isolating("store positions", &batch.positions, shutdown, &positions_retried, |rows| {
                self.store.insert_positions(rows)
            }),
            write_isolating("store events", &batch.events, shutdown, &events_retried, |rows| {
                self.store.insert_geofence_events(rows)
            }),
            write_isolating("store alerts", &batch.alerts, shutdown, &alerts_retried, |rows| {
                self.store.insert_alerts(rows)
            }),
            self.produce_all(
                &self.enriched_topic,
                &batch.positions,
                |r| &r.device_id,
                |r, out| json(&enriched_position(r), out),
                shutdown
            ),
            self.produce_all(
                &self.events_topic,
                &batch.events,
                |e| &e.device_id,
                |e, out| json(&geofence_event(e), out),
                shutdown
            ),
            self.produce_all(
                &self.alerts_topic,
                &batch.alerts,
                |a| &a.device_id,
                |a, out| json(&alert(a), out),
                shutdown
            ),
        );
        let (Some(positions), Some(events), Some(alerts), Some(enriched), Some(event_messages), Some(alert_messages)) =
            (positions, events, alerts, enriched, event_messages, alert_messages)
        else {
            return false;
        };

        let mut letters = batch.dead_letters.clone();
        letters.extend(refused(Stage::StorePosition, &batch.positions, &positions, position_source));
        letters.extend(refused(Stage::StoreEvent, &batch.events, &events, event_source));
        letters.extend(refused(Stage::ProduceEnriched, &batch.positions, &enriched, position_source));
        letters.extend(refused(Stage::ProduceEvent, &batch.events, &event_messages, event_source));
        letters.extend(refused(Stage::StoreAlert, &batch.alerts, &alerts, alert_source));
        letters.extend(refused(Stage::ProduceAlert, &batch.alerts, &alert_messages, alert_source));
        if !self.dead_letter(&letters, shutdown).await {
            return false;
        }
        self.record_stats(batch).await;

        // The commit point: only now may a state claim this batch's messages.
        let states_retried = retried("store states");
        let Some(states) = write_isolating("store device states", &batch.states, shutdown, &states_retried, |rows| {
            self.store.insert_device_states(rows)
        })
        .await
        else {
            return false;
        };
        let state_letters = refused(Stage::StoreState, &batch.states, &states, |s| {
            (s.kafka_partition, s.kafka_offset, s.device_id.as_str())
        });
        if !self.dead_letter(&state_letters.collect::<Vec<_>>(), shutdown).await {
            return false;
        }
        self.metrics.positions.inc_by(batch.positions.len() as u64);
        self.metrics.events.inc_by(batch.events.len() as u64);
        self.metrics.alerts.inc_by(batch.alerts.len() as u64);
        self.metrics.batches.inc();
        self.metrics.batch_seconds.observe(started.elapsed().as_secs_f64());
        true
    }

    /// Produces one message per item (JSON, keyed by device) and waits for every
    /// acknowledgement, re-sending what failed transiently. Returns the items refused
    /// permanently, with the error; `None` when shutdown came first.
    async fn produce_all<T>(
        &self,
        topic: &str,
        items: &[T],
        key: fn(&T) -> &str,
        payload: impl Fn(&T, &mut Vec<u8>),
        shutdown: &CancellationToken,
    ) -> Option<Vec<(usize, String)>> {
        let mut pending: Vec<usize> = (0..items.len()).collect();
        let mut refused = Vec::new();
        let mut backoff = Backoff::default();
        loop {
            // Each payload is encoded when its turn comes, into one buffer that the producer
            // copies from (a re-send encodes it again): a batch's messages are never all in
            // memory twice, and encoding allocates nothing once the buffer has grown.
            let mut buffer = Vec::with_capacity(1024);
            let results: Vec<(usize, Result<(), ProduceFailure>)> = stream::iter(pending.iter().copied())
                .map(|i| {
                    buffer.clear();
                    payload(&items[i], &mut buffer);
                    let queued = self.enqueue(topic, key(&items[i]), &buffer);
                    async move { (i, delivered(queued).await) }
                })
                // Unordered: a message stuck on one partition holds one place, not the window.
                .buffer_unordered(MAX_IN_FLIGHT)
                .collect()
                .await;
            let mut retry = Vec::new();
            let mut transient = None;
            for (i, result) in results {
                match result {
                    Ok(()) => {}
                    Err(e) if e.is_permanent() => refused.push((i, e.to_string())),
                    Err(e) => {
                        retry.push(i);
                        transient.get_or_insert(e);
                    }
                }
            }
            let Some(error) = transient else { break };
            // Re-sent in the batch's order, as they were first sent.
            retry.sort_unstable();
            pending = retry;
            self.metrics.retried("produce");
            backoff.wait(&format!("produce to {topic}"), &error.to_string(), shutdown).await?;
        }
        refused.sort_unstable();
        Some(refused)
    }

    /// Hands one message to the producer, which copies it.
    fn enqueue(&self, topic: &str, key: &str, payload: &[u8]) -> Result<DeliveryFuture, ProduceFailure> {
        let record = FutureRecord::to(topic).key(key.as_bytes()).payload(payload);
        self.producer.send_result(record).map_err(|(e, _)| ProduceFailure(e))
    }

    /// Produces the dead letters and waits until the broker has them (they are what remains of
    /// the refused items). A letter the broker refuses too is logged and dropped: nothing is
    /// left to try, and the partition must move on.
    async fn dead_letter(&self, letters: &[ProcessingDeadLetter], shutdown: &CancellationToken) -> bool {
        if letters.is_empty() {
            return true;
        }
        let Some(lost) = self.produce_all(&self.dlq_topic, letters, letter_key, json, shutdown).await else {
            return false;
        };
        for (i, error) in lost {
            tracing::error!(letter = ?letters[i], %error, "the dead-letter topic refused a letter; it is lost");
        }
        for letter in letters {
            self.metrics.dead_letter(letter.stage);
        }
        true
    }

    /// Best effort: the dashboard's throughput and lag figures never hold up the pipeline.
    async fn record_stats(&self, batch: &Batch) {
        if batch.positions.is_empty() {
            return;
        }
        let now = now_millis();
        let lags = batch.positions.iter().map(|p| (now - p.received_at_ms).max(0));
        let row = PipelineStatRow {
            written_at_ms: now,
            positions: batch.positions.len() as u64,
            lag_ms_sum: lags.clone().sum(),
            lag_ms_max: lags.max().unwrap_or(0),
        };
        if let Err(e) = self.store.insert_pipeline_stat(&row).await {
            tracing::warn!(error = %e, "could not record pipeline stats");
        }
    }
}

/// Waits for the broker's acknowledgement of a message handed to the producer.
async fn delivered(queued: Result<DeliveryFuture, ProduceFailure>) -> Result<(), ProduceFailure> {
    match queued?.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(ProduceFailure(e)),
        Err(_) => Err(ProduceFailure(KafkaError::Canceled)),
    }
}

/// Appends the JSON bytes of a message to `out`.
fn json<M: Serialize>(message: &M, out: &mut Vec<u8>) {
    serde_json::to_writer(out, message).expect("messages always serialise")
}

/// Dead letters are keyed by device (empty when the message had none).
fn letter_key(l: &ProcessingDeadLetter) -> &str {
    l.device_id.as_deref().unwrap_or_default()
}

fn position_source(r: &PositionRow) -> (i32, i64, &str) {
    (r.kafka_partition, r.kafka_offset, r.device_id.as_str())
}

fn event_source(e: &GeofenceEventRow) -> (i32, i64, &str) {
    (e.kafka_partition, e.kafka_offset, e.device_id.as_str())
}

/// One dead letter per refused item: where it came from, the item itself and the error.
fn alert_source(a: &AlertRow) -> (i32, i64, &str) {
    (a.kafka_partition, a.kafka_offset, &a.device_id)
}

fn refused<'a, T: Serialize>(
    stage: Stage,
    items: &'a [T],
    refusals: &'a [(usize, String)],
    source: impl Fn(&T) -> (i32, i64, &str) + 'a,
) -> impl Iterator<Item = ProcessingDeadLetter> + 'a {
    let now = now_millis();
    refusals.iter().map(move |(i, error)| {
        let item = &items[*i];
        let (partition, offset, device_id) = source(item);
        let json = serde_json::to_value(item).expect("rows always serialise");
        ProcessingDeadLetter::new(stage, error, partition, offset, now).with_item(device_id, json)
    })
}
