//! Live push over Server-Sent Events: `GET /v1/stream/positions`, `GET /v1/stream/events` and
//! `GET /v1/stream/alerts`.
//!
//! - [`id`]: message ids (topic positions) and resuming from them;
//! - [`filter`]: the query parameters and the filter they make;
//! - [`fanout`]: one shared consumer per output topic, fanned out through a bounded ring;
//! - [`catchup`]: a resuming client's own consumer, until it has caught up;
//! - [`client`]: one connection's task, and when a slow client is dropped;
//! - [`sse`]: the text of the messages.
//!
//! Each message's `data:` is the output topic's message as the processors wrote it (the public
//! contract of `positions.enriched`, `geofence.events` and `alerts`). A client resumes by sending the
//! last id it received as `Last-Event-ID` (browsers do on reconnect) or `last_event_id`.

pub mod catchup;
pub mod client;
pub mod fanout;
pub mod filter;
pub mod id;
pub mod sse;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use fleetstream_kafka::KafkaConfig;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::config::ApiConfig;
use crate::error::ApiError;
use crate::metrics::ApiMetrics;
use crate::state::ApiState;
use crate::stream::client::Client;
use crate::stream::fanout::Fanout;
use crate::stream::id::{Cursor, StreamKind};

/// Messages handed to a connection and not yet taken by it: a slow client waits on this, and
/// falls behind in its topic's shared ring (`--stream-buffer`) until it is dropped.
const CONNECTION_QUEUE: usize = 8;

/// What every stream of one API process shares.
pub struct Streams {
    positions: Arc<Fanout>,
    events: Arc<Fanout>,
    alerts: Arc<Fanout>,
    pub(crate) kafka: KafkaConfig,
    /// One per open stream (`--max-streams`).
    slots: Arc<Semaphore>,
    max_streams: usize,
    /// One per resuming stream reading with a consumer of its own (`--max-stream-resumes`);
    /// more wait their turn.
    pub(crate) resumes: Arc<Semaphore>,
    pub(crate) keep_alive: Duration,
    pub(crate) metrics: ApiMetrics,
    pub(crate) shutdown: CancellationToken,
}

impl Streams {
    /// Starts the shared consumers of the output topics.
    pub fn start(config: &ApiConfig, kafka: KafkaConfig, metrics: ApiMetrics, shutdown: CancellationToken) -> Streams {
        let ring = config.stream_buffer as usize;
        let fanout = |kind, topic: &str| Fanout::start(kind, &kafka, topic, ring, metrics.clone(), shutdown.clone());
        let (positions, events) =
            (fanout(StreamKind::Positions, &kafka.enriched_topic), fanout(StreamKind::Events, &kafka.events_topic));
        let alerts = fanout(StreamKind::Alerts, &kafka.alerts_topic);
        Streams {
            positions,
            events,
            alerts,
            kafka,
            slots: Arc::new(Semaphore::new(config.max_streams as usize)),
            max_streams: config.max_streams as usize,
            resumes: Arc::new(Semaphore::new(config.max_stream_resumes as usize)),
            keep_alive: Duration::from_millis(config.stream_keep_alive_ms),
            metrics,
            shutdown,
        }
    }
}

/// `GET /v1/stream/positions`.
pub async fn positions(State(state): State<ApiState>, headers: HeaderMap, uri: Uri) -> Result<Response, ApiError> {
    open(state, StreamKind::Positions, &headers, &uri).await
}

/// `GET /v1/stream/events`.
pub async fn events(State(state): State<ApiState>, headers: HeaderMap, uri: Uri) -> Result<Response, ApiError> {
    open(state, StreamKind::Events, &headers, &uri).await
}

/// `GET /v1/stream/alerts`.
pub async fn alerts(State(state): State<ApiState>, headers: HeaderMap, uri: Uri) -> Result<Response, ApiError> {
    open(state, StreamKind::Alerts, &headers, &uri).await
}

async fn open(state: ApiState, kind: StreamKind, headers: &HeaderMap, uri: &Uri) -> Result<Response, ApiError> {
    let Some(streams) = state.streams() else {
        return Err(ApiError::Unavailable("streams need Kafka: this API was started without it".into()));
    };
    let mut params = filter::parse(kind, uri.query().unwrap_or(""))?;
    let resume = resume_from(kind, headers, params.last_event_id.as_deref())?;
    // The slot first: a refused stream costs no registry read.
    let Ok(slot) = streams.slots.clone().try_acquire_owned() else {
        streams.metrics.stream_refused(kind);
        return Err(ApiError::Unavailable(format!(
            "{} streams are open, the most this API serves; retry later",
            streams.max_streams
        )));
    };
    if kind != StreamKind::Positions
        && let Some(fleet) = &params.filter.fleet
    {
        let devices = state.store().all_registered_devices().await?;
        let in_fleet: HashSet<String> =
            devices.into_iter().filter(|d| d.fleet == *fleet).map(|d| d.device_id).collect();
        params.filter.fleet_devices = Some(in_fleet);
    }
    let fanout = match kind {
        StreamKind::Positions => streams.positions.clone(),
        StreamKind::Events => streams.events.clone(),
        StreamKind::Alerts => streams.alerts.clone(),
    };
    let (out, body) = mpsc::channel::<Bytes>(CONNECTION_QUEUE);
    out.try_send(Bytes::from_static(sse::PREAMBLE)).expect("a new buffer has room");
    let client = Client { streams: streams.clone(), fanout, filter: params.filter, resume, out };
    tokio::spawn(client.run());
    // The body holds the slot: it is freed when the connection lets go of the answer (the
    // client went, or a stalled write closed it: see `stall`), not when the task ends while
    // the connection still holds unsent messages.
    let open = OpenStream::new(slot, streams.metrics.clone(), kind);
    let body = futures::stream::unfold((body, open), |(mut body, open)| async move {
        body.recv().await.map(|text| (Ok::<_, std::convert::Infallible>(text), (body, open)))
    });
    let mut response = Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Proxies such as nginx would otherwise hold messages back to fill their buffers.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// A stream's connection while it holds the answer: its slot of `--max-streams`, and its count
/// in the `streams_open` gauge, both let go together.
struct OpenStream {
    _slot: OwnedSemaphorePermit,
    metrics: ApiMetrics,
    kind: StreamKind,
}

impl OpenStream {
    fn new(slot: OwnedSemaphorePermit, metrics: ApiMetrics, kind: StreamKind) -> Self {
        metrics.stream_opened(kind);
        OpenStream { _slot: slot, metrics, kind }
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.metrics.stream_closed(self.kind);
    }
}

/// Where to resume: the `Last-Event-ID` header (what a browser sends on reconnecting) wins over
/// the `last_event_id` parameter (what the page gave when it first connected).
fn resume_from(kind: StreamKind, headers: &HeaderMap, param: Option<&str>) -> Result<Option<Cursor>, ApiError> {
    const FIELD: &str = "last-event-id";
    if let Some(value) = headers.get(FIELD) {
        let text = value.to_str().map_err(|_| ApiError::bad(FIELD, "must be ASCII text"))?;
        if !text.is_empty() {
            return Cursor::decode(kind, text).map(Some).map_err(|e| ApiError::bad(FIELD, e));
        }
    }
    param.map(|id| Cursor::decode(kind, id).map_err(|e| ApiError::bad("last_event_id", e))).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_wins_and_both_are_checked() {
        let mut headers = HeaderMap::new();
        let kind = StreamKind::Positions;
        assert_eq!(resume_from(kind, &headers, None).unwrap(), None);
        assert_eq!(resume_from(kind, &headers, Some("p/0:3")).unwrap(), Some(Cursor(vec![3])));
        headers.insert("last-event-id", HeaderValue::from_static("p/1:4"));
        assert_eq!(resume_from(kind, &headers, Some("p/0:3")).unwrap(), Some(Cursor(vec![-1, 4])));
        headers.insert("last-event-id", HeaderValue::from_static("garbage"));
        assert_eq!(resume_from(kind, &headers, None).unwrap_err().field(), Some("last-event-id"));
        assert_eq!(resume_from(kind, &HeaderMap::new(), Some("p/x")).unwrap_err().field(), Some("last_event_id"));
    }
}
