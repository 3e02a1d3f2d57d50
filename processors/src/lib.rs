//! fleetstream processors: stateless consumers of `positions.raw`.
//!
//! - [`config`]: consumer group, batching, hysteresis settings;
//! - [`enrich`]: pure per-device logic: deltas, odometer, H3, fences and geofence transitions;
//! - [`history`]: each device's recent fixes in event time, so late fixes are placed in order;
//! - [`reference`]: fences and the device registry, reloaded when they change;
//! - [`consumer`]: the loop that batches messages and stores offsets only after the output is
//!   durable;
//! - [`sink`]: writes a batch's outputs to ClickHouse and the output topics, then its states;
//! - [`retry`]: back-off on transient failures, isolation of permanently refused items;
//! - [`metrics`]: Prometheus counters, served on `--processor-metrics-listen`.

pub mod config;
pub mod consumer;
pub mod enrich;
pub mod history;
pub mod metrics;
pub mod reference;
pub mod retry;
pub mod sink;

pub use config::ProcessorConfig;
pub use consumer::run;
pub use metrics::Metrics;
