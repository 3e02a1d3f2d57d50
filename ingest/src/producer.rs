//! Producing positions to Kafka and waiting until the brokers have them.

use std::time::Duration;

use fleetstream_kafka::KafkaConfig;
use fleetstream_schemas::{DeadLetter, Position};
use futures::future::join_all;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use crate::config::IngestConfig;

/// Why a batch is not durable: the caller must not acknowledge it.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("the producer queue is full ({0} messages); retry later")]
    QueueFull(usize),
    #[error("the brokers did not acknowledge: {0}")]
    Delivery(KafkaError),
    #[error("the producer shut down before the brokers acknowledged")]
    Canceled,
    #[error("the brokers did not acknowledge within {0:?}")]
    Deadline(Duration),
}

#[derive(Clone)]
pub struct PositionProducer {
    producer: FutureProducer,
    topic: String,
    dlq_topic: String,
    queue_limit: usize,
    /// librdkafka does not time out requests already in flight at `message.timeout.ms` (an
    /// idempotent producer waits for the request timeout), so the wait is bounded here too.
    deadline: Duration,
}

impl PositionProducer {
    pub fn new(kafka: &KafkaConfig, config: &IngestConfig) -> Result<Self, KafkaError> {
        let producer: FutureProducer = kafka
            .durable_producer_config("fleetstream-ingest")
            .set("linger.ms", config.produce_linger_ms.to_string())
            .set("message.timeout.ms", config.produce_timeout_ms.to_string())
            .set("queue.buffering.max.messages", config.producer_queue_messages.to_string())
            .create()?;
        Ok(PositionProducer {
            producer,
            topic: kafka.positions_topic.clone(),
            dlq_topic: kafka.dlq_topic.clone(),
            queue_limit: config.producer_queue_messages,
            deadline: Duration::from_millis(config.produce_timeout_ms + 500),
        })
    }

    /// Produces every position (keyed by device id) and returns once the brokers acknowledged
    /// all of them, or with the first reason one of them is not durable.
    pub async fn produce_all(&self, positions: &[Position]) -> Result<(), ProduceError> {
        let mut deliveries = Vec::with_capacity(positions.len());
        let mut enqueue_error = None;
        for position in positions {
            let payload = position.to_message();
            let record = FutureRecord::to(&self.topic).key(position.device_id.as_bytes()).payload(&payload);
            match self.producer.send_result(record) {
                Ok(delivery) => deliveries.push(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    enqueue_error = Some(ProduceError::QueueFull(self.queue_limit));
                    break;
                }
                Err((e, _)) => {
                    enqueue_error = Some(ProduceError::Delivery(e));
                    break;
                }
            }
        }
        // Wait for what was enqueued even when a later message failed: it may still be
        // delivered, and the retry the client makes will be de-duplicated downstream.
        let results = tokio::time::timeout(self.deadline, join_all(deliveries))
            .await
            .map_err(|_| ProduceError::Deadline(self.deadline))?;
        if let Some(e) = enqueue_error {
            return Err(e);
        }
        for result in results {
            match result {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => return Err(ProduceError::Delivery(e)),
                Err(_) => return Err(ProduceError::Canceled),
            }
        }
        Ok(())
    }

    /// Queues a dead letter without waiting for it: a rejected item's answer must not hang on
    /// the brokers. Returns false when the local queue refused it (counted by the caller).
    pub fn dead_letter(&self, letter: &DeadLetter) -> bool {
        let payload = letter.to_message();
        let record = FutureRecord::<(), _>::to(&self.dlq_topic).payload(&payload);
        self.producer.send_result(record).is_ok()
    }

    /// Messages waiting in the local queue.
    pub fn queue_depth(&self) -> i32 {
        self.producer.in_flight_count()
    }

    /// True when a broker answers a metadata request for our topic within `timeout`.
    pub async fn brokers_reachable(&self, timeout: Duration) -> bool {
        let producer = self.producer.clone();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || producer.client().fetch_metadata(Some(&topic), timeout).is_ok())
            .await
            .unwrap_or(false)
    }

    /// Waits, at most 30 s (whatever the produce timeout), for queued messages to be delivered.
    pub async fn flush(&self) {
        let producer = self.producer.clone();
        let result = tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(30))).await;
        if let Ok(Err(e)) = result {
            tracing::warn!(error = %e, "producer flush at shutdown did not complete");
        }
    }
}
