//! The delivery log: rows of `webhook_deliveries` written in the background, a second's worth per
//! insert, so that busy webhooks do not cost ClickHouse one insert per attempt. Best effort: a
//! row that cannot be written is logged and dropped; deliveries never wait for the log.

use std::time::Duration;

use fleetstream_storage::{Store, WebhookDeliveryRow};

use crate::metrics::WebhookMetrics;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Rows waiting beyond this many are dropped (with a warning) rather than held.
const MAX_WAITING: usize = 100_000;
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Most rows in one insert.
const MAX_ROWS: usize = 10_000;

pub struct DeliveryLog {
    rows: mpsc::Sender<WebhookDeliveryRow>,
    metrics: WebhookMetrics,
}

impl DeliveryLog {
    /// The log and its writer task, which ends (after a last write) once every `DeliveryLog`
    /// is dropped.
    pub fn spawn(store: Store, metrics: WebhookMetrics) -> (DeliveryLog, JoinHandle<()>) {
        let (rows, mut queue) = mpsc::channel::<WebhookDeliveryRow>(MAX_WAITING);
        let task = tokio::spawn(async move {
            let mut batch = Vec::new();
            loop {
                // The first row opens a batch; rows coming within the next second join it.
                if queue.recv_many(&mut batch, MAX_ROWS).await == 0 {
                    return;
                }
                let deadline = tokio::time::Instant::now() + FLUSH_EVERY;
                let mut open = true;
                while open && batch.len() < MAX_ROWS {
                    let room = MAX_ROWS - batch.len();
                    match tokio::time::timeout_at(deadline, queue.recv_many(&mut batch, room)).await {
                        Ok(0) => open = false,
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
                if let Err(e) = store.record_webhook_deliveries(&batch).await {
                    tracing::warn!(rows = batch.len(), error = %e, "could not log webhook deliveries");
                }
                batch.clear();
                if !open {
                    return;
                }
            }
        });
        (DeliveryLog { rows, metrics }, task)
    }

    pub fn record(&self, row: WebhookDeliveryRow) {
        if let Err(e) = self.rows.try_send(row) {
            self.metrics.log_row_dropped();
            tracing::warn!(error = %e, "the webhook delivery log is full; a row is dropped");
        }
    }
}
