//! Kafka topic names and keying: part of the contract between ingest and processors.

/// Validated positions as devices sent them (normalised units), keyed by `device_id` so that
/// every position of one device lands in one partition, in the order ingest produced them.
pub const POSITIONS_RAW: &str = "positions.raw";
