//! The processors' Prometheus metrics, served at `GET /metrics` on `--metrics-listen`.

use std::sync::Arc;

use fleetstream_schemas::processing_dlq::Stage;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabel {
    pub stage: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EvidenceLabel {
    pub evidence: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabel {
    pub operation: &'static str,
}

/// Counters of one processor. Cheap to clone (shared).
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

pub struct Inner {
    registry: Registry,
    /// Positions written (stored, or set aside by a dead letter), by how they were placed.
    pub positions: Counter,
    /// Positions too late for their device's history: stored flagged late.
    pub late_positions: Counter,
    /// Copies of a position already applied (same device and fix time): ignored.
    pub duplicates: Counter,
    /// Messages at or before a device's applied offset after a restart or rebalance: skipped.
    pub redelivered: Counter,
    pub events: Counter,
    pub alerts: Counter,
    /// Stored positions re-enriched because a late fix was placed before them.
    pub corrections: Counter,
    /// Devices whose recent history could not be rebuilt from storage after a restart.
    pub histories_restarted: Counter,
    /// Device states found to belong to another incarnation of their partition (a recreated
    /// topic, a broker that lost its data), whose offsets started afresh, by evidence.
    pub incarnation_restarts: Family<EvidenceLabel, Counter>,
    pub batches: Counter,
    pub batch_seconds: Histogram,
    /// Items set aside on the processing dead-letter topic, by stage.
    pub dead_letters: Family<StageLabel, Counter>,
    /// Transient failures retried, by operation.
    pub retries: Family<OperationLabel, Counter>,
    /// The version of the fences in use: the newest change loaded (0 before any).
    pub fences_version: Gauge,
    pub alert_rules_version: Gauge,
    /// Refreshes of the fences or the registry that failed, what was loaded staying in use: a
    /// rising count means the processors judge fixes against fences that may be out of date.
    pub reference_refresh_failures: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("fleetstream_processor");
        let inner = Inner {
            positions: Counter::default(),
            late_positions: Counter::default(),
            duplicates: Counter::default(),
            redelivered: Counter::default(),
            events: Counter::default(),
            alerts: Counter::default(),
            corrections: Counter::default(),
            histories_restarted: Counter::default(),
            incarnation_restarts: Family::default(),
            batches: Counter::default(),
            batch_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            dead_letters: Family::default(),
            retries: Family::default(),
            fences_version: Gauge::default(),
            alert_rules_version: Gauge::default(),
            reference_refresh_failures: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "positions",
            "Positions written to ClickHouse and positions.enriched",
            inner.positions.clone(),
        );
        registry.register(
            "late_positions",
            "Positions older than their device's history (the lateness bound), stored flagged late",
            inner.late_positions.clone(),
        );
        registry.register(
            "duplicate_positions",
            "Copies of an already applied position, ignored",
            inner.duplicates.clone(),
        );
        registry.register(
            "redelivered_messages",
            "Messages already applied before a restart or rebalance, skipped",
            inner.redelivered.clone(),
        );
        registry.register("geofence_events", "Geofence events written", inner.events.clone());
        registry.register("alerts", "Alerts written (fired, changed or withdrawn)", inner.alerts.clone());
        registry.register(
            "corrections",
            "Stored positions re-enriched because a late fix was placed before them",
            inner.corrections.clone(),
        );
        registry.register(
            "histories_restarted",
            "Devices whose recent history could not be rebuilt from storage after a restart",
            inner.histories_restarted.clone(),
        );
        registry.register(
            "incarnation_restarts",
            "Device states of another incarnation of their partition (topic recreated, broker data lost): \
             offsets started afresh instead of skipping new messages as redelivered, by evidence",
            inner.incarnation_restarts.clone(),
        );
        registry.register("batches", "Batches written", inner.batches.clone());
        registry.register(
            "batch_write_seconds",
            "Time to make a batch's outputs and device states durable",
            inner.batch_seconds.clone(),
        );
        registry.register(
            "dead_letters",
            "Items set aside on the processing dead-letter topic, by stage",
            inner.dead_letters.clone(),
        );
        registry.register(
            "retries",
            "Transient storage or broker failures retried, by operation",
            inner.retries.clone(),
        );
        registry.register(
            "fences_version",
            "Version of the fences in use: the newest change loaded (0 before any)",
            inner.fences_version.clone(),
        );
        registry.register(
            "alert_rules_version",
            "Version of the alert rules in use: the newest change loaded (0 before any)",
            inner.alert_rules_version.clone(),
        );
        registry.register(
            "reference_refresh_failures",
            "Refreshes of the fences, alert rules or registry that failed, keeping what was loaded in use",
            inner.reference_refresh_failures.clone(),
        );
        for evidence in crate::incarnation::Evidence::LABELS {
            let _ = inner.incarnation_restarts.get_or_create(&EvidenceLabel { evidence });
        }
        for stage in Stage::ALL {
            let _ = inner.dead_letters.get_or_create(&StageLabel { stage: stage.as_str() });
        }
        Metrics { inner: Arc::new(Inner { registry, ..inner }) }
    }
}

impl std::ops::Deref for Metrics {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl Metrics {
    pub fn dead_letter(&self, stage: Stage) {
        self.dead_letters.get_or_create(&StageLabel { stage: stage.as_str() }).inc();
    }

    pub fn dead_letter_count(&self, stage: Stage) -> u64 {
        self.dead_letters.get_or_create(&StageLabel { stage: stage.as_str() }).get()
    }

    pub fn incarnation_restarted(&self, evidence: crate::incarnation::Evidence) {
        self.incarnation_restarts.get_or_create(&EvidenceLabel { evidence: evidence.as_str() }).inc();
    }

    /// Device states restarted for another incarnation of their partition, whatever the evidence.
    pub fn incarnation_restart_count(&self) -> u64 {
        crate::incarnation::Evidence::LABELS
            .into_iter()
            .map(|evidence| self.incarnation_restarts.get_or_create(&EvidenceLabel { evidence }).get())
            .sum()
    }

    pub fn retried(&self, operation: &'static str) {
        self.retries.get_or_create(&OperationLabel { operation }).inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// Serves the processor's `GET /metrics` (and `/healthz`) on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, metrics: Metrics, shutdown: CancellationToken) -> anyhow::Result<()> {
    serve_page("processor", listener, move || metrics.render(), shutdown).await
}

/// Serves `GET /metrics` (the text `render` gives, Prometheus' text format) and `/healthz` on
/// `listener` until `shutdown`: the page of a service without an HTTP port of its own (the
/// processor, the webhook deliverer).
pub async fn serve_page(
    service: &'static str,
    listener: TcpListener,
    render: impl Fn() -> String + Clone + Send + Sync + 'static,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    use axum::http::header;
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let text = render();
                async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text) }
            }),
        )
        .route("/healthz", get(|| async { "ok" }));
    tracing::info!(addr = %listener.local_addr()?, service, "metrics listening");
    axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_shows_every_stage_and_counted_values() {
        let m = Metrics::default();
        m.dead_letter(Stage::StorePosition);
        m.retried("store positions");
        m.positions.inc_by(5);
        let text = m.render();
        assert!(text.contains(r#"fleetstream_processor_dead_letters_total{stage="store_position"} 1"#), "{text}");
        assert!(text.contains(r#"fleetstream_processor_dead_letters_total{stage="decode"} 0"#), "{text}");
        assert!(text.contains(r#"fleetstream_processor_retries_total{operation="store positions"} 1"#), "{text}");
        assert!(text.contains("fleetstream_processor_positions_total 5"), "{text}");
        assert_eq!(m.dead_letter_count(Stage::StorePosition), 1);
    }
}
