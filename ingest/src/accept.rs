//! The one path every decoded request takes, whatever its protocol: authorise each item,
//! produce the valid ones and wait for the brokers, dead-letter the rest (a bounded number per
//! request, secrets removed), count, and report.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use fleetstream_schemas::dead_letter::redact::redact_presented;
use fleetstream_schemas::dead_letter::{Origin, Raw};
use fleetstream_schemas::time::now_millis;
use fleetstream_schemas::{BodyError, DeadLetter, ErrorDetail, FieldError, Limits, Position};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::auth::{Scope, Tokens};
use crate::config::IngestConfig;
use crate::error::IngestError;
use crate::metrics::{Metrics, OutcomeLabel, ProtocolLabel, RejectLabels, field_label};
use crate::producer::{PositionProducer, ProduceError};
use crate::registry::{Registry, RegistryStore};

/// Everything the handlers share.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

pub struct Inner {
    pub config: IngestConfig,
    pub limits: Limits,
    pub producer: PositionProducer,
    pub tokens: Tokens,
    pub metrics: Metrics,
    /// The registry the tracker ports admit devices by; `None` admits every device.
    pub registry: Option<Registry>,
}

/// One request as its answers and dead letters need it.
pub struct Request {
    /// `json` or `osmand`.
    pub protocol: &'static str,
    pub received_at_ms: i64,
    /// The token presented (header, query or form), held only to remove its text from
    /// whatever is stored or answered.
    token: Option<String>,
}

impl Request {
    pub fn new(protocol: &'static str) -> Self {
        Request { protocol, received_at_ms: now_millis(), token: None }
    }

    /// Records the token the request presents, if any.
    pub fn present(&mut self, token: Option<&str>) {
        self.token = token.map(str::to_owned);
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub fn origin(&self) -> Origin<'_> {
        Origin { protocol: self.protocol, received_at_ms: self.received_at_ms, token: self.token() }
    }

    /// `error` without the presented token's text (messages may echo a value as sent).
    pub fn redact(&self, error: FieldError) -> FieldError {
        let redact = |text: &str| redact_presented(text, self.token()).into_owned();
        FieldError { field: redact(&error.field), message: redact(&error.message) }
    }
}

impl AppState {
    /// The state of one ingest; with `registry` (`--require-registered`), polled from it.
    pub fn new(
        config: IngestConfig,
        producer: PositionProducer,
        tokens: Tokens,
        registry: Option<RegistryStore>,
        shutdown: &CancellationToken,
    ) -> Self {
        let limits = config.limits();
        let metrics = Metrics::default();
        let poll = Duration::from_millis(config.registry_poll_ms);
        let registry = registry
            .map(|store| Registry::spawn(store, poll, metrics.tcp.registered_devices.clone(), shutdown.clone()));
        AppState { inner: Arc::new(Inner { config, limits, producer, tokens, metrics, registry }) }
    }

    pub fn get(&self) -> &Inner {
        &self.inner
    }

    /// True when no token is configured: every request is authorised.
    pub fn is_open(&self) -> bool {
        self.inner.tokens.is_open()
    }

    /// Checks the token the request presented; a 401 otherwise.
    pub fn authorize(&self, request: &Request) -> Result<Option<&Scope>, IngestError> {
        self.inner.tokens.authorize(request.token()).map_err(|e| self.unauthorized(request, e.to_string()))
    }

    /// A 401, counted.
    pub fn unauthorized(&self, request: &Request, message: String) -> IngestError {
        self.count_rejected(request.protocol, "token");
        IngestError::new(StatusCode::UNAUTHORIZED, "token", message)
    }

    fn count_rejected(&self, protocol: &'static str, field: &str) {
        self.inner.metrics.rejected.get_or_create(&RejectLabels { protocol, field: field_label(field) }).inc();
    }

    /// Queues one letter on the dead-letter topic and counts the outcome.
    fn send_letter(&self, letter: &DeadLetter) {
        let outcome = if self.inner.producer.dead_letter(letter) { "queued" } else { "dropped" };
        self.inner.metrics.dead_letters.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// Refuses the whole request with `status`: counted, dead-lettered, answered.
    pub fn refuse(&self, request: &Request, status: StatusCode, error: FieldError, raw: Raw<'_>) -> IngestError {
        let error = request.redact(error);
        self.count_rejected(request.protocol, &error.field);
        self.send_letter(&DeadLetter::new(&request.origin(), &error, raw));
        IngestError::field(status, &error)
    }

    /// Refuses a body as a whole: 413 for a batch over the limit, 400 otherwise.
    pub fn refuse_body(&self, request: &Request, error: &BodyError, raw: Raw<'_>) -> IngestError {
        let status = match error {
            BodyError::TooManyItems { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        self.refuse(request, status, error.field_error(), raw)
    }
}

/// One decoded item and what it was sent as.
pub struct Item<'a> {
    pub raw: Raw<'a>,
    pub result: Result<Position, FieldError>,
}

/// One rejected item of a request.
#[derive(Debug, Serialize)]
pub struct ItemError {
    pub index: usize,
    #[serde(flatten)]
    pub error: FieldError,
}

/// The answer to an ingest request.
#[derive(Debug, Serialize)]
pub struct IngestReport {
    /// Positions now durable in Kafka.
    pub accepted: usize,
    pub rejected: usize,
    /// One entry per rejected item, in input order.
    pub errors: Vec<ItemError>,
    /// When nothing was accepted (a 400): the first error, in the one error shape of every 4xx.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

impl IngestReport {
    fn new(accepted: usize, errors: Vec<ItemError>) -> Self {
        let error = match (accepted, errors.first()) {
            (0, Some(first)) if errors.len() == 1 => {
                Some(ErrorDetail { field: Some(first.error.field.clone()), message: first.error.message.clone() })
            }
            (0, Some(first)) => Some(ErrorDetail {
                field: Some(first.error.field.clone()),
                message: format!(
                    "all {} items were rejected; item {}: {}",
                    errors.len(),
                    first.index,
                    first.error.message
                ),
            }),
            _ => None,
        };
        IngestReport { accepted, rejected: errors.len(), errors, error }
    }

    /// 200 when anything was accepted, 400 when nothing was.
    pub fn status(&self) -> StatusCode {
        if self.accepted > 0 { StatusCode::OK } else { StatusCode::BAD_REQUEST }
    }
}

impl IntoResponse for IngestReport {
    fn into_response(self) -> Response {
        (self.status(), Json(self)).into_response()
    }
}

/// Accepts what is valid and allowed, and answers only once it is durable.
pub async fn accept(
    state: &AppState,
    request: &Request,
    scope: Option<&Scope>,
    items: Vec<Item<'_>>,
) -> Result<IngestReport, IngestError> {
    let mut accepted = Vec::with_capacity(items.len());
    let mut rejected = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        let result = item.result.and_then(|p| match scope {
            Some(scope) if !scope.allows(&p.device_id) => Err(FieldError::new(
                "device_id",
                format!("this token may not post positions of device {:?}", p.device_id),
            )),
            _ => Ok(p),
        });
        match result {
            Ok(mut position) => {
                // Stored and passed on: the credential the device used may not ride along in the
                // attributes (members named like a secret were left out when they were checked).
                position.attributes.redact_token(request.token());
                accepted.push(position)
            }
            Err(error) => {
                let error = request.redact(error);
                state.count_rejected(request.protocol, &error.field);
                rejected.push((ItemError { index, error }, item.raw));
            }
        }
    }
    for letter in item_letters(&request.origin(), &rejected, state.get().config.max_dead_letters) {
        state.send_letter(&letter);
    }
    let errors = rejected.into_iter().map(|(error, _)| error).collect();

    if !accepted.is_empty() {
        produce(state, request.protocol, &accepted).await?;
    }
    Ok(IngestReport::new(accepted.len(), errors))
}

/// The dead letters of a request's rejected items: one each for the first `max`, then one
/// summary for the rest, so that a body of 5,000 bad items does not become 5,000 messages.
fn item_letters(origin: &Origin<'_>, rejected: &[(ItemError, Raw<'_>)], max: usize) -> Vec<DeadLetter> {
    let mut letters: Vec<DeadLetter> =
        rejected.iter().take(max).map(|(e, raw)| DeadLetter::new(origin, &e.error, *raw)).collect();
    if rejected.len() > max {
        letters.push(DeadLetter::summary(origin, max, rejected.len() - max));
    }
    letters
}

/// Produces the accepted positions and waits for the brokers; a 503 when they cannot take them.
async fn produce(state: &AppState, protocol: &'static str, accepted: &[Position]) -> Result<(), IngestError> {
    let inner = state.get();
    let started = Instant::now();
    let produced = inner.producer.produce_all(accepted).await;
    inner.metrics.queue_depth.set(i64::from(inner.producer.queue_depth()));
    if let Err(e) = produced {
        tracing::warn!(error = %e, positions = accepted.len(), "positions not durable; answering 503");
        inner.metrics.unavailable.get_or_create(&ProtocolLabel { protocol }).inc_by(accepted.len() as u64);
        return Err(IngestError {
            retry_after_secs: Some(if matches!(e, ProduceError::QueueFull(_)) { 1 } else { 5 }),
            ..IngestError::message(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        });
    }
    inner.metrics.observe_produce(started.elapsed());
    inner.metrics.accepted.get_or_create(&ProtocolLabel { protocol }).inc_by(accepted.len() as u64);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: Origin<'static> = Origin { protocol: "osmand", received_at_ms: 7, token: None };

    fn rejected(n: usize, raws: &[String]) -> Vec<(ItemError, Raw<'_>)> {
        (0..n)
            .map(|index| {
                let error = FieldError::new("location.coords.latitude", "must be within [-90, 90] degrees, got 95");
                (ItemError { index, error }, Raw::Json(raws[index].as_bytes()))
            })
            .collect()
    }

    #[test]
    fn each_rejected_item_gets_its_own_letter_up_to_the_bound() {
        let raws: Vec<String> = (0..5_000).map(|i| format!(r#"{{"i":{i},"lat":95}}"#)).collect();
        let letters = item_letters(&ORIGIN, &rejected(5_000, &raws), 100);
        assert_eq!(letters.len(), 101, "100 letters and one summary");
        for (i, letter) in letters[..100].iter().enumerate() {
            assert_eq!(letter.raw, raws[i], "a letter carries its own item only");
        }
        let summary = &letters[100];
        assert!(summary.message.starts_with("4900 more items"), "{}", summary.message);
        assert!(summary.raw.is_empty());
    }

    #[test]
    fn no_summary_below_the_bound_and_none_at_all_for_nothing() {
        let raws: Vec<String> = (0..100).map(|i| i.to_string()).collect();
        assert_eq!(item_letters(&ORIGIN, &rejected(100, &raws), 100).len(), 100);
        assert_eq!(item_letters(&ORIGIN, &rejected(3, &raws), 0).len(), 1, "a bound of 0 leaves the summary only");
        assert!(item_letters(&ORIGIN, &[], 100).is_empty());
    }

    #[test]
    fn a_report_of_nothing_accepted_carries_the_error_shape() {
        let one = IngestReport::new(0, vec![ItemError { index: 0, error: FieldError::new("location", "bad") }]);
        let json = serde_json::to_value(&one).unwrap();
        assert_eq!(json["error"], serde_json::json!({"field": "location", "message": "bad"}));
        assert_eq!(one.status(), StatusCode::BAD_REQUEST);
        let two = IngestReport::new(
            0,
            vec![
                ItemError { index: 0, error: FieldError::new("lat", "bad") },
                ItemError { index: 1, error: FieldError::new("lon", "bad") },
            ],
        );
        let json = serde_json::to_value(&two).unwrap();
        assert_eq!(json["error"]["field"], "lat");
        assert!(json["error"]["message"].as_str().unwrap().starts_with("all 2 items were rejected"), "{json}");
        let some = IngestReport::new(1, vec![ItemError { index: 0, error: FieldError::new("lat", "bad") }]);
        assert!(serde_json::to_value(&some).unwrap().get("error").is_none());
    }

    #[test]
    fn a_request_redacts_its_token_from_errors() {
        let mut request = Request::new("osmand");
        request.present(Some("device-secret-0123456789"));
        let error = request.redact(FieldError::new("lat", "\"device-secret-0123456789\" is not a number"));
        assert_eq!(error.message, "\"<redacted>\" is not a number");
    }
}
