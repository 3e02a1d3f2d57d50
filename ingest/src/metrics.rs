//! Ingest's Prometheus metrics, served at `GET /metrics`.

use std::time::Duration;

use fleetstream_schemas::input::DEVICE_FIELDS;
use fleetstream_schemas::osmand::OSMAND_PARAMS;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProtocolLabel {
    pub protocol: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    pub protocol: &'static str,
    /// The rejected field, from a fixed list (anything else is `other`), so that hostile input
    /// cannot create unbounded label values.
    pub field: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TcpRejectLabels {
    pub protocol: &'static str,
    /// Why the frame or connection was refused, from a fixed list: `crc`, `malformed`,
    /// `connections`, `unregistered`, `registry_unavailable`.
    pub reason: &'static str,
}

/// The TCP tracker ports' counts, per protocol (`teltonika`, `gt06`).
#[derive(Default)]
pub struct TcpMetrics {
    /// Connections open now.
    pub open: Family<ProtocolLabel, Gauge>,
    /// Connections accepted since start.
    pub connections: Family<ProtocolLabel, Counter>,
    pub frames: Family<ProtocolLabel, Counter>,
    pub records: Family<ProtocolLabel, Counter>,
    /// Answers sent after the frame's records were durable (Teltonika record counts, GT06
    /// location and alarm answers).
    pub acks: Family<ProtocolLabel, Counter>,
    /// Frames and connections refused, by reason.
    pub rejects: Family<TcpRejectLabels, Counter>,
    /// Devices in the registry as the ports last loaded it (`--require-registered`).
    pub registered_devices: Gauge,
}

impl TcpMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register("tcp_connections_open", "Tracker connections open now", self.open.clone());
        registry.register("tcp_connections", "Tracker connections accepted", self.connections.clone());
        registry.register("tcp_frames", "Tracker frames received whole", self.frames.clone());
        registry.register("tcp_records", "Position records in tracker frames", self.records.clone());
        registry.register("tcp_acks", "Tracker frames answered once their records were durable", self.acks.clone());
        registry.register("tcp_rejects", "Tracker frames and connections refused, by reason", self.rejects.clone());
        registry.register(
            "tcp_registered_devices",
            "Devices in the registry as the tracker ports last loaded it (--require-registered)",
            self.registered_devices.clone(),
        );
    }
}

pub struct Metrics {
    registry: Registry,
    pub tcp: TcpMetrics,
    pub accepted: Family<ProtocolLabel, Counter>,
    pub rejected: Family<RejectLabels, Counter>,
    pub unavailable: Family<ProtocolLabel, Counter>,
    pub produce_seconds: Histogram,
    pub dead_letters: Family<OutcomeLabel, Counter>,
    pub queue_depth: Gauge,
}

/// Whole-request fields that are not part of a position.
const REQUEST_FIELDS: &[&str] = &["body", "query", "token", "kafka"];

/// Fields of the tracker protocols' frames.
const FRAME_FIELDS: &[&str] = &[
    "frame",
    "preamble",
    "data_length",
    "data",
    "codec",
    "crc",
    "record_count",
    "record_count_2",
    "records",
    "imei",
    "gps",
    "timestamp",
    "start",
    "length",
    "protocol",
    "content",
    "serial",
    "stop",
    "login",
    "location",
    "alarm",
    "status",
    "time",
];

/// The label for a rejected field: its top-level name when the contract or a protocol defines
/// it, `other` otherwise.
pub fn field_label(field: &str) -> &'static str {
    let top = field.split(['.', '[']).next().unwrap_or(field);
    [DEVICE_FIELDS, OSMAND_PARAMS, REQUEST_FIELDS, FRAME_FIELDS]
        .into_iter()
        .flatten()
        .copied()
        .find(|f| *f == top)
        .unwrap_or("other")
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("fleetstream_ingest");
        let accepted = Family::<ProtocolLabel, Counter>::default();
        let rejected = Family::<RejectLabels, Counter>::default();
        let unavailable = Family::<ProtocolLabel, Counter>::default();
        let produce_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        let dead_letters = Family::<OutcomeLabel, Counter>::default();
        let queue_depth = Gauge::default();
        registry.register(
            "positions_accepted",
            "Positions acknowledged by the brokers and answered 2xx",
            accepted.clone(),
        );
        registry.register(
            "positions_rejected",
            "Items rejected by validation or authorisation, by field",
            rejected.clone(),
        );
        registry.register(
            "positions_unavailable",
            "Positions answered 503 because the brokers could not take them",
            unavailable.clone(),
        );
        registry.register(
            "produce_seconds",
            "Time from produce to the brokers' acknowledgement of a request's positions",
            produce_seconds.clone(),
        );
        registry.register("dead_letters", "Dead letters produced to the DLQ topic, by outcome", dead_letters.clone());
        registry.register("producer_queue_depth", "Messages in the producer's local queue", queue_depth.clone());
        let tcp = TcpMetrics::default();
        tcp.register(&mut registry);
        Metrics { registry, tcp, accepted, rejected, unavailable, produce_seconds, dead_letters, queue_depth }
    }
}

impl Metrics {
    pub fn observe_produce(&self, took: Duration) {
        self.produce_seconds.observe(took.as_secs_f64());
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded() {
        assert_eq!(field_label("lat"), "lat");
        assert_eq!(field_label("location.coords.latitude"), "location");
        assert_eq!(field_label("x-hostile-field-name"), "other");
        assert_eq!(field_label("records[3].io.total"), "records");
    }

    #[test]
    fn render_shows_counted_values() {
        let m = Metrics::default();
        m.accepted.get_or_create(&ProtocolLabel { protocol: "json" }).inc_by(3);
        m.rejected.get_or_create(&RejectLabels { protocol: "osmand", field: "lat" }).inc();
        let text = m.render();
        assert!(text.contains(r#"fleetstream_ingest_positions_accepted_total{protocol="json"} 3"#), "{text}");
        assert!(
            text.contains(r#"fleetstream_ingest_positions_rejected_total{protocol="osmand",field="lat"} 1"#),
            "{text}"
        );
    }
}
