//! fleetstream processors: stateless consumers of `positions.raw`.
//!
//! - [`config`]: consumer group, batching, hysteresis settings;
//! - [`enrich`]: pure per-device logic: deltas, odometer, H3, fences and geofence transitions;
//! - [`alerts`]: alert rules (overspeed, idle, dwell) evaluated on each device's fixes;
//! - [`history`]: each device's recent fixes in event time, so late fixes are placed in order;
//! - [`incarnation`]: telling a device state from another incarnation of its partition (a
//!   recreated topic), so that new messages are not skipped as redeliveries;
//! - [`reference`]: fences, alert rules and the device registry, reloaded when they change;
//! - [`consumer`]: the loop that consumes and batches messages;
//! - [`process`]: one batch: restore states, apply, resolve corrections;
//! - [`writer`]: makes batches durable in the background, in order, then stores their offsets;
//! - [`sink`]: writes a batch's outputs to ClickHouse and the output topics, then its states;
//! - [`outputs`]: the output topics' messages (the contract types of `fleetstream_schemas::outputs`);
//! - [`retry`]: back-off on transient failures, isolation of permanently refused items;
//! - [`metrics`]: Prometheus counters, served on `--processor-metrics-listen`.

pub mod alerts;
pub mod config;
pub mod consumer;
pub mod enrich;
pub mod history;
pub mod incarnation;
pub mod metrics;
pub mod outputs;
pub mod process;
pub mod reference;
pub mod retry;
pub mod sink;
pub mod writer;

pub use config::ProcessorConfig;
pub use consumer::run;
pub use metrics::Metrics;
