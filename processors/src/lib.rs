//! fleetstream processors: stateless consumers of `positions.raw`.
//!
//! - [`config`]: consumer group and batching settings;
//! - [`enrich`]: pure per-device logic (distance, time and speed since the previous fix);
//! - [`consumer`]: the loop that batches messages, writes them to ClickHouse and only then
//!   stores their offsets, so a crash re-delivers instead of losing (and the
//!   ReplacingMergeTree tables collapse the re-delivered copies).

pub mod config;
pub mod consumer;
pub mod enrich;

pub use config::ProcessorConfig;
pub use consumer::run;
pub mod fences;
