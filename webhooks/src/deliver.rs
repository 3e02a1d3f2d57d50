//! One webhook's deliveries: its own consumer group on `geofence.events` and `alerts` (those its
//! kinds ask for), each matching event or alert POSTed in topic order (so in order per device
//! within each topic), retried with exponential back-off until it is
//! delivered or its retry window has passed (then it is logged as dead), and only then is its
//! offset stored for the next commit. A restart resumes from the last committed offset: at least
//! once, and a receiver tells repeats by `X-Fleetstream-Delivery`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use fleetstream_kafka::KafkaConfig;
use fleetstream_schemas::outputs::{Alert, GeofenceEvent};
use fleetstream_schemas::time::now_millis;
use fleetstream_storage::{WebhookDeliveryRow, WebhookRow};
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use tokio_util::sync::CancellationToken;

use crate::client::HttpClient;
use crate::config::WebhookConfig;
use crate::log::DeliveryLog;
use crate::metrics::WebhookMetrics;
use crate::sign::signature;
use crate::target::{check_url, refused_literal};

/// What every webhook's task shares.
pub struct Shared {
    pub client: HttpClient,
    pub config: WebhookConfig,
    pub log: DeliveryLog,
    pub metrics: WebhookMetrics,
    /// Device id → fleet, from the registry, for webhooks filtered by fleet.
    pub fleets: RwLock<Arc<HashMap<String, String>>>,
}

/// The consumer group of a webhook: its committed offsets are its delivery position.
pub fn group_id(webhook_id: &str) -> String {
    format!("fleetstream-webhook-{webhook_id}")
}

/// Delivers to `webhook` until `stop`; what was not delivered by then is delivered after the
/// next start.
pub async fn run(webhook: WebhookRow, kafka: KafkaConfig, shared: Arc<Shared>, stop: CancellationToken) {
    let consumer: StreamConsumer = match kafka
        .client_config("fleetstream-webhooks")
        .set("group.id", group_id(&webhook.webhook_id))
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        // From the topic's start, skipping what was produced before the webhook was created:
        // nothing made after its creation is missed, whenever this task first joins.
        .set("auto.offset.reset", "earliest")
        // A webhook behind a receiver that is down stops reading: what librdkafka fetches ahead
        // meanwhile is bounded (its defaults held ~60 MB per stalled webhook).
        .set("queued.max.messages.kbytes", "1024")
        .set("queued.min.messages", "100")
        .set("fetch.max.bytes", "1048576")
        .set("max.partition.fetch.bytes", "262144")
        // While one delivery is retried nothing is consumed: the group must not take that for
        // a dead member (librdkafka's default is 5 minutes), or another would send it again.
        .set("max.poll.interval.ms", shared.config.max_poll_interval_ms().to_string())
        .create()
    {
        Ok(consumer) => consumer,
        Err(e) => {
            tracing::error!(webhook = %webhook.webhook_id, error = %e, "cannot create the webhook's consumer");
            return;
        }
    };
    let wants_alerts = webhook.kinds.iter().any(|k| k == ALERT);
    let wants_events = webhook.kinds.iter().any(|k| k != ALERT);
    let topics: Vec<&str> = [(wants_events, kafka.events_topic.as_str()), (wants_alerts, kafka.alerts_topic.as_str())]
        .into_iter()
        .filter_map(|(wanted, topic)| wanted.then_some(topic))
        .collect();
    if let Err(e) = consumer.subscribe(&topics) {
        tracing::error!(webhook = %webhook.webhook_id, error = %e, "cannot subscribe to the events or alerts topic");
        return;
    }
    tracing::info!(webhook = %webhook.webhook_id, "delivering");
    // Since when every attempt has failed (none while the receiver answers).
    let mut failing_since = None;
    loop {
        let message = tokio::select! {
            _ = stop.cancelled() => break,
            received = consumer.recv() => match received {
                Ok(message) => message,
                Err(e) => {
                    tracing::warn!(webhook = %webhook.webhook_id, error = %e, "consume error");
                    continue;
                }
            },
        };
        let produced_ms = message.timestamp().to_millis().unwrap_or(i64::MAX);
        let payload = message.payload().unwrap_or_default();
        // Produced before the webhook was created: not for it.
        if produced_ms >= webhook.created_at_ms {
            match Subject::parse(message.topic() == kafka.alerts_topic, payload) {
                Ok(subject) if matches(&webhook, &subject, &shared) => {
                    let stopped = deliver(&webhook, &subject, payload, &shared, &mut failing_since, &stop).await;
                    if matches!(stopped, Outcome::Stopped) {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(webhook = %webhook.webhook_id, topic = message.topic(), error = %e,
                    "a message is not what its topic carries; skipped"),
            }
        }
        if let Err(e) = consumer.store_offset_from_message(&message) {
            tracing::debug!(webhook = %webhook.webhook_id, error = %e, "offset not stored");
        }
    }
    // The final commit and leaving the group block until the broker answers: off the runtime,
    // and not waited for beyond a few seconds, so that an unreachable broker cannot hold up the
    // services sharing this process.
    let id = webhook.webhook_id;
    let close = tokio::task::spawn_blocking(move || {
        if let Err(e) = consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync) {
            tracing::debug!(webhook = %id, error = %e, "final commit");
        }
        drop(consumer);
    });
    if tokio::time::timeout(CLOSE_WAIT, close).await.is_err() {
        tracing::warn!("a webhook consumer did not close in time (broker unreachable?); left to finish");
    }
}

/// How long a stopping webhook task waits for its consumer to commit and leave the group.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The webhook kind of every alert, whatever its rule.
pub const ALERT: &str = "alert";

/// What a delivery is about, as the filters and the log see it: a geofence event or an alert.
#[derive(Debug, PartialEq)]
struct Subject<'a> {
    /// The event's or alert's id.
    id: Cow<'a, str>,
    version: u64,
    device_id: Cow<'a, str>,
    fence_id: Option<Cow<'a, str>>,
    /// `enter`, `exit` or [`ALERT`].
    kind: &'static str,
}

impl<'a> Subject<'a> {
    fn parse(alert: bool, payload: &'a [u8]) -> Result<Subject<'a>, serde_json::Error> {
        Ok(if alert {
            let a: Alert<'a> = serde_json::from_slice(payload)?;
            Subject { id: a.alert_id, version: a.version, device_id: a.device_id, fence_id: a.fence_id, kind: ALERT }
        } else {
            let e: GeofenceEvent<'a> = serde_json::from_slice(payload)?;
            let kind = e.kind.as_str();
            Subject { id: e.event_id, version: e.version, device_id: e.device_id, fence_id: Some(e.fence_id), kind }
        })
    }
}

/// Whether the event or alert passes the webhook's kinds and filters.
fn matches(webhook: &WebhookRow, subject: &Subject<'_>, shared: &Shared) -> bool {
    let fleet_matches = || {
        let fleets = shared.fleets.read().unwrap_or_else(|e| e.into_inner()).clone();
        fleets.get(subject.device_id.as_ref()).is_some_and(|f| *f == webhook.fleet)
    };
    webhook.kinds.iter().any(|k| k == subject.kind)
        && (webhook.device_id.is_empty() || webhook.device_id == subject.device_id)
        && (webhook.fence_id.is_empty() || subject.fence_id.as_deref() == Some(webhook.fence_id.as_str()))
        && (webhook.fleet.is_empty() || fleet_matches())
}

enum Outcome {
    Delivered,
    Dead,
    Stopped,
}

/// One attempt's failure: `permanent` ones (a refused address) are not retried.
struct Failure {
    status: u16,
    error: String,
    permanent: bool,
}

/// Delivers one event, retrying until it is delivered, the retry window has passed, or `stop`.
/// The window runs from when the receiver began failing (`failing_since`), not from this
/// event's first attempt: behind a receiver that has been down longer than the window, each
/// event gets one attempt, so a dead receiver's backlog drains to the log instead of taking a
/// whole window per event.
async fn deliver(
    webhook: &WebhookRow,
    subject: &Subject<'_>,
    body: &[u8],
    shared: &Shared,
    failing_since: &mut Option<tokio::time::Instant>,
    stop: &CancellationToken,
) -> Outcome {
    let delivery_id = delivery_id(&webhook.webhook_id, &subject.id, subject.version, subject.kind == ALERT);
    let first_attempt_ms = now_millis();
    let mut row = WebhookDeliveryRow {
        webhook_id: webhook.webhook_id.clone(),
        delivery_id: delivery_id.clone(),
        event_id: subject.id.to_string(),
        device_id: subject.device_id.to_string(),
        status: String::new(),
        attempts: 0,
        last_status: 0,
        last_error: String::new(),
        first_attempt_ms,
        last_attempt_ms: first_attempt_ms,
    };
    loop {
        row.attempts += 1;
        let result = tokio::select! {
            _ = stop.cancelled() => return Outcome::Stopped,
            result = attempt(webhook, &delivery_id, body, shared) => result,
        };
        row.last_attempt_ms = now_millis();
        let failure = match result {
            Ok(status) => {
                *failing_since = None;
                shared.metrics.delivered();
                (row.status, row.last_status, row.last_error) = ("delivered".into(), status, String::new());
                shared.log.record(row);
                return Outcome::Delivered;
            }
            Err(failure) => failure,
        };
        (row.last_status, row.last_error) = (failure.status, failure.error);
        shared.metrics.attempt_failed();
        let wait = backoff(row.attempts, shared.config.max_backoff());
        let since = *failing_since.get_or_insert_with(tokio::time::Instant::now);
        let out_of_time = since.elapsed() + wait > shared.config.retry_for();
        if failure.permanent || out_of_time {
            tracing::warn!(webhook = %webhook.webhook_id, delivery = %delivery_id, attempts = row.attempts,
                error = %row.last_error, "delivery given up (dead)");
            row.status = "dead".into();
            shared.metrics.dead();
            shared.log.record(row);
            return Outcome::Dead;
        }
        tracing::debug!(webhook = %webhook.webhook_id, delivery = %delivery_id, attempts = row.attempts,
            error = %row.last_error, ?wait, "delivery failed; retrying");
        row.status = "retrying".into();
        shared.log.record(row.clone());
        tokio::select! {
            _ = stop.cancelled() => return Outcome::Stopped,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// One POST: the HTTP status when it is 2xx.
async fn attempt(webhook: &WebhookRow, delivery_id: &str, body: &[u8], shared: &Shared) -> Result<u16, Failure> {
    let permanent = |error: String| Failure { status: 0, error, permanent: true };
    let url = check_url(&webhook.url).map_err(|e| permanent(format!("the URL {e}")))?;
    if let Some(refused) = refused_literal(&url, shared.config.allow_private_networks) {
        return Err(permanent(refused));
    }
    let signature = signature(&webhook.secret, body);
    let headers = [
        ("content-type", "application/json"),
        ("x-fleetstream-signature", signature.as_str()),
        ("x-fleetstream-delivery", delivery_id),
        ("x-fleetstream-webhook", webhook.webhook_id.as_str()),
    ];
    let status = shared
        .client
        .post(url.as_str(), &headers, Bytes::copy_from_slice(body))
        .await
        .map_err(|e| Failure { status: 0, error: e.message, permanent: e.refused })?;
    if status.is_success() {
        return Ok(status.as_u16());
    }
    Err(Failure { status: status.as_u16(), error: format!("the receiver answered {status}"), permanent: false })
}

/// Wait before attempt `attempts + 1`: 1 s doubling, at most `max`, with up to a fifth of
/// jitter so that receivers coming back are not hit by every retry at once.
pub fn backoff(attempts: u32, max: Duration) -> Duration {
    let base = Duration::from_secs(1u64 << attempts.saturating_sub(1).min(20)).min(max);
    let jitter = u64::from(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos(),
    );
    base + base.mul_f64((jitter % 1000) as f64 / 5000.0)
}

/// The same for every delivery of one version of one event (or alert) to one webhook: hex of
/// SHA-256 of the three, header-safe whatever the ids hold. An alert's adds a fourth part, so
/// that an alert never shares an event's id, whatever their ids hold.
pub fn delivery_id(webhook_id: &str, id: &str, version: u64, alert: bool) -> String {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    let version = version.to_be_bytes();
    let parts: &[&[u8]] = if alert {
        &[webhook_id.as_bytes(), id.as_bytes(), &version, ALERT.as_bytes()]
    } else {
        &[webhook_id.as_bytes(), id.as_bytes(), &version]
    };
    // Each part after its length: no two different lists hash the same bytes.
    for part in parts {
        context.update(&(part.len() as u64).to_be_bytes());
        context.update(part);
    }
    context.finish().as_ref()[..16].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_with_a_little_jitter() {
        let max = Duration::from_secs(300);
        for (attempts, base) in [(1, 1), (2, 2), (3, 4), (9, 256), (10, 300), (40, 300)] {
            let wait = backoff(attempts, max);
            let base = Duration::from_secs(base);
            assert!(wait >= base && wait <= base.mul_f64(1.2), "attempt {attempts}: {wait:?}");
        }
    }

    #[test]
    fn events_and_alerts_are_told_apart_by_their_topic() {
        let event = br#"{"event_id":"d|f|enter|5","device_id":"d","fence_id":"f","kind":"enter","event_time_ms":5,
            "dwell_ms":null,"fix_time_ms":5,"lat":1.0,"lon":2.0,"retracted":false,"version":7}"#;
        let alert = br#"{"alert_id":"d|r|5","rule_id":"r","kind":"idle","device_id":"d","fence_id":null,
            "started_ms":5,"alert_time_ms":65,"duration_ms":60,"speed_mps":0.0,"lat":1.0,"lon":2.0,
            "retracted":false,"version":8}"#;
        let e = Subject::parse(false, event).unwrap();
        assert_eq!((e.id.as_ref(), e.kind, e.fence_id.as_deref(), e.version), ("d|f|enter|5", "enter", Some("f"), 7));
        let a = Subject::parse(true, alert).unwrap();
        assert_eq!((a.id.as_ref(), a.kind, a.fence_id.as_deref(), a.version), ("d|r|5", ALERT, None, 8));
        assert!(Subject::parse(true, event).is_err(), "an event on the alerts topic is refused, not guessed");
        assert!(Subject::parse(false, alert).is_err());
    }

    #[test]
    fn delivery_ids_name_webhook_event_and_version() {
        let id = delivery_id("w1", "d|f|enter|5", 7, false);
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(id, delivery_id("w1", "d|f|enter|5", 7, false));
        assert_ne!(id, delivery_id("w2", "d|f|enter|5", 7, false));
        assert_ne!(id, delivery_id("w1", "d|f|enter|5", 8, false));
        assert_ne!(id, delivery_id("w1", "d|f|enter|5", 7, true), "an alert whose id reads like an event's");
        assert_ne!(delivery_id("a", "b\nc", 1, false), delivery_id("a\nb", "c", 1, false));
    }
}
