//! Kafka topic names and keying: part of the contract between ingest and processors.

/// Validated positions as devices sent them (normalised units), keyed by `device_id` so that
/// every position of one device lands in one partition, in the order ingest produced them.
pub const POSITIONS_RAW: &str = "positions.raw";

/// Items ingest rejected, with the reason and the raw item ([`crate::DeadLetter`]), so that a
/// misbehaving firmware can be diagnosed from what it really sent.
pub const POSITIONS_DLQ: &str = "positions.dlq";
