//! The writer: makes applied batches durable in the background, in order, and stores their Kafka
//! offsets once they are, while the next batch is consumed and applied.
//!
//! One task owns the writes. A batch is handed over only once the one before it is written: at
//! most one batch is being written while the next is consumed and applied, so memory holds two
//! batches at most and a slow database slows consumption instead of filling memory. Offsets are
//! stored strictly after their batch's outputs and states are durable, and in batch order, which
//! keeps the commit rule of [`crate::sink`].
//!
//! Whoever needs storage to reflect everything applied so far (loading states after a
//! rebalance, reading rows back for corrections) first [`Writer::drain`]s.

use std::collections::BTreeMap;
use std::sync::Arc;

use rdkafka::consumer::{Consumer, StreamConsumer};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::consumer::RebalanceCounter;
use crate::sink::{Batch, Sink};

/// An applied batch and, per partition, the offset of its last message.
pub struct Job {
    pub batch: Batch,
    pub offsets: BTreeMap<i32, i64>,
}

pub struct Writer {
    jobs: mpsc::Sender<Job>,
    /// How many jobs the task has finished.
    written: watch::Receiver<u64>,
    submitted: u64,
    task: JoinHandle<()>,
}

impl Writer {
    pub fn spawn(
        sink: Arc<Sink>,
        consumer: Arc<StreamConsumer<RebalanceCounter>>,
        topic: String,
        shutdown: CancellationToken,
    ) -> Writer {
        let (jobs, mut queue) = mpsc::channel::<Job>(1);
        let (done, written) = watch::channel(0u64);
        let task = tokio::spawn(async move {
            let mut count = 0u64;
            while let Some(job) = queue.recv().await {
                if !sink.write(&job.batch, &shutdown).await {
                    // Stopping before the batch was durable: neither it nor anything queued
                    // after it may be acknowledged; it is re-delivered.
                    return;
                }
                for (partition, offset) in job.offsets {
                    // Fails only when the partition was revoked meanwhile; its new owner finds
                    // the device states and skips what this batch applied.
                    if let Err(e) = consumer.store_offset(&topic, partition, offset) {
                        tracing::debug!(partition, offset, error = %e, "offset not stored");
                    }
                }
                tracing::debug!(
                    positions = job.batch.positions.len(),
                    events = job.batch.events.len(),
                    "batch written"
                );
                count += 1;
                let _ = done.send(count);
            }
        });
        Writer { jobs, written, submitted: 0, task }
    }

    /// Hands a batch over once the one before it is written. False when the writer has stopped
    /// (shutdown before a batch was durable).
    pub async fn submit(&mut self, job: Job) -> bool {
        // Waiting here rather than in the channel keeps a third batch from piling up behind.
        if !self.drain().await || self.jobs.send(job).await.is_err() {
            return false;
        }
        self.submitted += 1;
        true
    }

    /// Waits until every submitted batch is durable. False when the writer stopped first.
    pub async fn drain(&mut self) -> bool {
        let submitted = self.submitted;
        self.written.wait_for(|written| *written >= submitted).await.is_ok()
    }

    /// Waits for the queued batches (or for the writer to give up at shutdown).
    pub async fn finish(self) {
        drop(self.jobs);
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "the writer task failed");
        }
    }
}
