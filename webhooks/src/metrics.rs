//! The webhook deliverer's Prometheus metrics (`fleetstream_webhooks_*`), served on
//! `--webhook-metrics-listen`.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone)]
pub struct WebhookMetrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    deliveries: Family<OutcomeLabel, Counter>,
    failed_attempts: Counter,
    webhooks: Gauge,
    log_rows_dropped: Counter,
}

impl Default for WebhookMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("fleetstream_webhooks");
        let (deliveries, failed_attempts) = (Family::<OutcomeLabel, Counter>::default(), Counter::default());
        let (webhooks, log_rows_dropped) = (Gauge::default(), Counter::default());
        registry.register(
            "deliveries",
            "Deliveries finished, by outcome: delivered (a 2xx came back) or dead (given up)",
            deliveries.clone(),
        );
        registry.register(
            "failed_attempts",
            "Delivery attempts that failed (each is retried or ends dead)",
            failed_attempts.clone(),
        );
        registry.register("webhooks", "Webhooks being delivered to", webhooks.clone());
        registry.register(
            "log_rows_dropped",
            "Delivery log rows dropped because the log could not keep up (deliveries go on)",
            log_rows_dropped.clone(),
        );
        // Every outcome shows from the start, at 0.
        for outcome in ["delivered", "dead"] {
            drop(deliveries.get_or_create(&OutcomeLabel { outcome }));
        }
        WebhookMetrics { inner: Arc::new(Inner { registry, deliveries, failed_attempts, webhooks, log_rows_dropped }) }
    }
}

impl WebhookMetrics {
    pub fn delivered(&self) {
        self.inner.deliveries.get_or_create(&OutcomeLabel { outcome: "delivered" }).inc();
    }
    pub fn dead(&self) {
        self.inner.deliveries.get_or_create(&OutcomeLabel { outcome: "dead" }).inc();
    }
    pub fn attempt_failed(&self) {
        self.inner.failed_attempts.inc();
    }
    pub fn set_webhooks(&self, running: usize) {
        self.inner.webhooks.set(i64::try_from(running).unwrap_or(i64::MAX));
    }
    pub fn log_row_dropped(&self) {
        self.inner.log_rows_dropped.inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.inner.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_shows_every_outcome_and_counted_values() {
        let m = WebhookMetrics::default();
        m.delivered();
        m.delivered();
        m.attempt_failed();
        m.set_webhooks(3);
        let text = m.render();
        assert!(text.contains(r#"fleetstream_webhooks_deliveries_total{outcome="delivered"} 2"#), "{text}");
        assert!(text.contains(r#"fleetstream_webhooks_deliveries_total{outcome="dead"} 0"#), "{text}");
        assert!(text.contains("fleetstream_webhooks_failed_attempts_total 1"), "{text}");
        assert!(text.contains("fleetstream_webhooks_webhooks 3"), "{text}");
    }
}
