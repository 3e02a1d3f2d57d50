//! fleetstream's storage interface.
//!
//! One narrow type, [`Store`], is all the rest of the project sees of ClickHouse:
//! - [`config`]: where ClickHouse is and how to log in;
//! - [`migrate`]: applies the DDL from `schemas/migrations/` once, idempotently, and checks that
//!   the tables have the columns our row types expect;
//! - [`sql`]: every query the project runs, in one module, within what both ClickHouse 18.16 and
//!   current ClickHouse accept;
//! - [`rows`]: the row types those queries read and write;
//! - [`version`]: which stored copy of a position or event wins;
//! - [`store`]: the operations (batches of positions, events and state; fences; latest
//!   positions; a device's track; health).

pub mod config;
mod engine;
pub mod error;
pub mod migrate;
pub mod rows;
pub mod sql;
pub mod store;
pub mod testing;
pub mod version;

pub use config::ClickHouseConfig;
pub use engine::ReadRow;
pub use error::{EngineError, StoreError};
pub use rows::{
    AlertRow, AlertRuleRow, DeviceRow, DeviceStateRow, FenceRow, GeofenceEventRow, LatestRow, PipelineStatRow,
    PositionRow, Throughput, WebhookDeliveryRow, WebhookRow, WindowRow, next_version,
};
pub use store::{AlertQuery, EventQuery, Store};
