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
                let open = tokio::time::timeout(FLUSH_EVERY, queue.recv_many(&mut batch, 10_000)).await;
                if matches!(open, Ok(0)) && batch.is_empty() {
                    return;
                }
                if batch.is_empty() {
                    continue;
                }
                if let Err(e) = store.record_webhook_deliveries(&batch).await {
                    tracing::warn!(rows = batch.len(), error = %e, "could not log webhook deliveries");
                }
                batch.clear();
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
