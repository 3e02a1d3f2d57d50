//! Row types of the ClickHouse tables, field for column (names must match the DDL in
//! `schemas/migrations/`; [`crate::migrate`] checks that at startup).

use clickhouse::Row;
use serde::{Deserialize, Serialize};

/// One row of `positions`.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct PositionRow {
    pub event_id: String,
    pub device_id: String,
    pub fix_time_ms: i64,
    pub received_at_ms: i64,
    pub lat: f64,
    pub lon: f64,
    pub speed_mps: Option<f64>,
    /// 1 when the processor derived the speed from the previous fix (the device sent none).
    pub speed_derived: u8,
    pub heading_deg: Option<f64>,
    pub altitude_m: Option<f64>,
    pub accuracy_m: Option<f64>,
    pub satellites: Option<u8>,
    pub ignition: Option<u8>,
    pub odometer_m: Option<f64>,
    pub battery_pct: Option<f64>,
    /// Free-form attributes as a JSON object text (`{}` when none).
    pub attributes: String,
    /// Fix time of the device's previous position, when known.
    pub prev_fix_ms: Option<i64>,
    /// Great-circle distance from the previous position, metres.
    pub distance_m: Option<f64>,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
}

/// One row of `device_latest`: the newest fix of a device.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct LatestRow {
    pub device_id: String,
    pub fix_time_ms: i64,
    pub received_at_ms: i64,
    pub lat: f64,
    pub lon: f64,
    pub speed_mps: Option<f64>,
    pub heading_deg: Option<f64>,
}
