//! Writing one processed batch: rows to ClickHouse, then the same to the output topics.
//!
//! Order matters for crash safety: positions and events first, device states after them, so a
//! stored state never claims messages whose output is missing; everything is idempotent
//! (ReplacingMergeTree keys, event ids), so a batch written twice counts once.

use anyhow::Context as _;
use fleetstream_kafka::KafkaConfig;
use fleetstream_storage::{DeviceStateRow, GeofenceEventRow, PipelineStatRow, PositionRow, Store};
use futures::future::try_join_all;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::retry::with_backoff;

/// The output of one batch.
#[derive(Default)]
pub struct Batch {
    pub positions: Vec<PositionRow>,
    pub events: Vec<GeofenceEventRow>,
    pub states: Vec<DeviceStateRow>,
}

pub struct Sink {
    store: Store,
    producer: FutureProducer,
    enriched_topic: String,
    events_topic: String,
}

impl Sink {
    pub fn new(store: Store, kafka: &KafkaConfig) -> anyhow::Result<Sink> {
        let producer = kafka
            .client_config("fleetstream-processor-output")
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("compression.type", "lz4")
            .set("linger.ms", "20")
            .create()
            .context("create the output producer")?;
        Ok(Sink {
            store,
            producer,
            enriched_topic: kafka.enriched_topic.clone(),
            events_topic: kafka.events_topic.clone(),
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Writes the batch, retrying with back-off until it is all durable. Returns false when
    /// shutdown was asked for before that: the caller must then not store the offsets.
    pub async fn write(&self, batch: &Batch, shutdown: &CancellationToken) -> bool {
        with_backoff("batch write", shutdown, || self.write_once(batch)).await.is_some()
    }

    async fn write_once(&self, batch: &Batch) -> anyhow::Result<()> {
        self.store.insert_positions(&batch.positions).await?;
        self.store.insert_geofence_events(&batch.events).await?;
        self.store.insert_device_states(&batch.states).await?;
        self.record_stats(batch).await;
        let positions = batch.positions.iter().map(|r| (&r.device_id, r));
        self.produce(&self.enriched_topic, positions).await.context("produce enriched positions")?;
        let events = batch.events.iter().map(|e| (&e.device_id, e));
        self.produce(&self.events_topic, events).await.context("produce geofence events")
    }

    /// Best effort: the dashboard's throughput and lag figures never hold up the pipeline.
    async fn record_stats(&self, batch: &Batch) {
        if batch.positions.is_empty() {
            return;
        }
        let now = fleetstream_schemas::time::now_millis();
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

    async fn produce<'a, T: Serialize + 'a>(
        &self,
        topic: &str,
        items: impl Iterator<Item = (&'a String, &'a T)>,
    ) -> anyhow::Result<()> {
        let mut deliveries = Vec::new();
        for (key, item) in items {
            let payload = serde_json::to_vec(item)?;
            let record = FutureRecord::to(topic).key(key.as_bytes()).payload(&payload);
            let delivery = self.producer.send_result(record).map_err(|(e, _)| e)?;
            deliveries.push(async move {
                match delivery.await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err((e, _))) => Err(anyhow::Error::from(e)),
                    Err(_) => Err(anyhow::anyhow!("producer shut down")),
                }
            });
        }
        try_join_all(deliveries).await.map(|_| ())
    }
}
