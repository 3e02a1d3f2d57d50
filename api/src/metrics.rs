//! The query API's Prometheus metrics, served at `GET /metrics` (open, like the health checks:
//! counts only, no device or fence ids).

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::state::ApiState;
use crate::stream::id::StreamKind;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabel {
    pub stream: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    pub stream: &'static str,
    /// `lagged` (a live client further behind than its topic's shared ring holds), `stalled` (a
    /// resuming client that took nothing for 30 s).
    pub reason: &'static str,
}

/// Counters of one API process. Cheap to clone (shared).
#[derive(Clone)]
pub struct ApiMetrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    streams_open: Family<StreamLabel, Gauge>,
    streams_refused: Family<StreamLabel, Counter>,
    stream_messages: Family<StreamLabel, Counter>,
    stream_dropped: Family<DropLabels, Counter>,
    stream_resumes: Family<StreamLabel, Counter>,
    stream_gaps: Family<StreamLabel, Counter>,
    stream_unreadable: Family<StreamLabel, Counter>,
}

impl Default for ApiMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("fleetstream_api");
        let inner = Inner {
            streams_open: Family::default(),
            streams_refused: Family::default(),
            stream_messages: Family::default(),
            stream_dropped: Family::default(),
            stream_resumes: Family::default(),
            stream_gaps: Family::default(),
            stream_unreadable: Family::default(),
            registry: Registry::default(),
        };
        registry.register("streams_open", "Server-Sent Event streams open", inner.streams_open.clone());
        registry.register(
            "streams_refused",
            "Streams refused because --max-streams were open (503)",
            inner.streams_refused.clone(),
        );
        registry.register("stream_messages", "Messages sent on streams", inner.stream_messages.clone());
        registry.register(
            "stream_clients_dropped",
            "Stream clients disconnected for reading too slowly, by reason (they may resume from their last id)",
            inner.stream_dropped.clone(),
        );
        registry.register("stream_resumes", "Streams resumed from a Last-Event-ID", inner.stream_resumes.clone());
        registry.register(
            "stream_gaps",
            "Resumed streams whose id was older than the topic's retention (told with a gap message)",
            inner.stream_gaps.clone(),
        );
        registry.register(
            "stream_unreadable_messages",
            "Output-topic messages without the fields streams filter on, not streamed",
            inner.stream_unreadable.clone(),
        );
        ApiMetrics { inner: Arc::new(Inner { registry, ..inner }) }
    }
}

fn label(kind: StreamKind) -> StreamLabel {
    StreamLabel { stream: kind.label() }
}

impl ApiMetrics {
    pub fn stream_opened(&self, kind: StreamKind) {
        self.inner.streams_open.get_or_create(&label(kind)).inc();
    }
    pub fn stream_closed(&self, kind: StreamKind) {
        self.inner.streams_open.get_or_create(&label(kind)).dec();
    }
    pub fn stream_refused(&self, kind: StreamKind) {
        self.inner.streams_refused.get_or_create(&label(kind)).inc();
    }
    pub fn stream_sent(&self, kind: StreamKind) {
        self.inner.stream_messages.get_or_create(&label(kind)).inc();
    }
    pub fn stream_dropped(&self, kind: StreamKind, reason: &'static str) {
        self.inner.stream_dropped.get_or_create(&DropLabels { stream: kind.label(), reason }).inc();
    }
    pub fn stream_resumed(&self, kind: StreamKind) {
        self.inner.stream_resumes.get_or_create(&label(kind)).inc();
    }
    pub fn stream_gap(&self, kind: StreamKind) {
        self.inner.stream_gaps.get_or_create(&label(kind)).inc();
    }
    pub fn stream_unreadable(&self, kind: StreamKind) {
        self.inner.stream_unreadable.get_or_create(&label(kind)).inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.inner.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics().render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_shows_counted_values() {
        let m = ApiMetrics::default();
        m.stream_dropped(StreamKind::Positions, "lagged");
        m.stream_opened(StreamKind::Events);
        let text = m.render();
        assert!(
            text.contains(r#"fleetstream_api_stream_clients_dropped_total{stream="positions",reason="lagged"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"fleetstream_api_streams_open{stream="events"} 1"#), "{text}");
    }
}
