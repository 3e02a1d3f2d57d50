//! Kafka topic names and keying: part of the contract between ingest and processors.

/// Validated positions as devices sent them (normalised units), keyed by `device_id` so that
/// every position of one device lands in one partition, in the order ingest produced them.
pub const POSITIONS_RAW: &str = "positions.raw";

/// Items ingest rejected, with the reason and the raw item ([`crate::DeadLetter`]), so that a
/// misbehaving firmware can be diagnosed from what it really sent.
pub const POSITIONS_DLQ: &str = "positions.dlq";

/// Positions as the processors enriched them ([`crate::outputs::EnrichedPosition`], schema
/// `position.enriched.v1`), keyed by `device_id`. At least once: consumers de-duplicate by `event_id`.
pub const POSITIONS_ENRICHED: &str = "positions.enriched";

/// Geofence enter/exit events ([`crate::outputs::GeofenceEvent`], schema `geofence.event.v1`),
/// keyed by `device_id`.
/// At least once: consumers de-duplicate by `event_id`.
pub const GEOFENCE_EVENTS: &str = "geofence.events";

/// Alerts the rules fired ([`crate::outputs::Alert`], schema `alert.v1`), keyed by `device_id`.
/// At least once: consumers de-duplicate by `alert_id`.
pub const ALERTS: &str = "alerts";

/// Messages and rows the processors could not handle (undecodable, or refused permanently by
/// ClickHouse or Kafka), with the stage and the error ([`crate::processing_dlq`]), so that one
/// poison input never stops a partition.
pub const PROCESSING_DLQ: &str = "processing.dlq";
