//! The one path every decoded request takes, whatever its protocol: authorise each item,
//! produce the valid ones and wait for the brokers, dead-letter the rest, count, and report.

use std::sync::Arc;
use std::time::Instant;

use axum::http::StatusCode;
use fleetstream_schemas::{DeadLetter, FieldError, Limits, Position};
use serde::Serialize;

use crate::auth::{AuthError, Scope, Tokens};
use crate::config::IngestConfig;
use crate::error::IngestError;
use crate::metrics::{Metrics, OutcomeLabel, ProtocolLabel, RejectLabels, field_label};
use crate::producer::{PositionProducer, ProduceError};

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
}

impl AppState {
    pub fn new(config: IngestConfig, producer: PositionProducer, tokens: Tokens) -> Self {
        let limits = config.limits();
        AppState { inner: Arc::new(Inner { config, limits, producer, tokens, metrics: Metrics::default() }) }
    }

    pub fn get(&self) -> &Inner {
        &self.inner
    }

    /// Checks the presented token; a 401 otherwise.
    pub fn authorize(&self, protocol: &'static str, token: Option<&str>) -> Result<Option<&Scope>, IngestError> {
        self.inner.tokens.authorize(token).map_err(|e: AuthError| {
            self.inner.metrics.rejected.get_or_create(&RejectLabels { protocol, field: "token" }).inc();
            IngestError::new(StatusCode::UNAUTHORIZED, "token", e.to_string())
        })
    }

    /// Records a rejected request or item and sends it to the dead-letter topic.
    pub fn reject(&self, protocol: &'static str, error: &FieldError, raw: &[u8], received_at_ms: i64) {
        let inner = &self.inner;
        inner.metrics.rejected.get_or_create(&RejectLabels { protocol, field: field_label(&error.field) }).inc();
        let letter = DeadLetter::new(protocol, error, raw, received_at_ms);
        let outcome = if inner.producer.dead_letter(&letter) { "queued" } else { "dropped" };
        inner.metrics.dead_letters.get_or_create(&OutcomeLabel { outcome }).inc();
    }
}

/// One decoded item and the bytes it came from.
pub struct Item<'a> {
    pub raw: &'a [u8],
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
}

impl IngestReport {
    /// 200 when anything was accepted, 400 when nothing was.
    pub fn status(&self) -> StatusCode {
        if self.accepted > 0 { StatusCode::OK } else { StatusCode::BAD_REQUEST }
    }
}

/// Accepts what is valid and allowed, and answers only once it is durable.
pub async fn accept(
    state: &AppState,
    protocol: &'static str,
    scope: Option<&Scope>,
    items: Vec<Item<'_>>,
    received_at_ms: i64,
) -> Result<IngestReport, IngestError> {
    let mut accepted = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        let result = item.result.and_then(|p| match scope {
            Some(scope) if !scope.allows(&p.device_id) => Err(FieldError::new(
                "device_id",
                format!("this token may not post positions of device {:?}", p.device_id),
            )),
            _ => Ok(p),
        });
        match result {
            Ok(position) => accepted.push(position),
            Err(error) => {
                state.reject(protocol, &error, item.raw, received_at_ms);
                errors.push(ItemError { index, error });
            }
        }
    }

    let inner = state.get();
    if !accepted.is_empty() {
        let started = Instant::now();
        let produced = inner.producer.produce_all(&accepted).await;
        inner.metrics.queue_depth.set(i64::from(inner.producer.queue_depth()));
        if let Err(e) = produced {
            tracing::warn!(error = %e, positions = accepted.len(), "positions not durable; answering 503");
            inner.metrics.unavailable.get_or_create(&ProtocolLabel { protocol }).inc_by(accepted.len() as u64);
            return Err(IngestError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                error: FieldError::new("kafka", e.to_string()),
                retry_after_secs: Some(if matches!(e, ProduceError::QueueFull(_)) { 1 } else { 5 }),
            });
        }
        inner.metrics.observe_produce(started.elapsed());
        inner.metrics.accepted.get_or_create(&ProtocolLabel { protocol }).inc_by(accepted.len() as u64);
    }
    Ok(IngestReport { accepted: accepted.len(), rejected: errors.len(), errors })
}
