//! Row types of the ClickHouse tables, field for column (names must match the DDL in
//! `schemas/migrations/`; [`crate::migrate`] checks that at startup).

use clickhouse::Row;
use fleetstream_schemas::{AlertKind, EventKind};
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
    /// 1 when the processor derived the heading from the previous fix (the device sent none).
    pub heading_derived: u8,
    /// Distance travelled since the device was first seen, metres (computed, unlike `odometer_m`).
    pub distance_total_m: f64,
    pub moving: u8,
    /// H3 cell at resolution 9 (about 0.1 km²), for aggregation.
    pub h3_cell: u64,
    /// The fences containing this position, by id.
    pub fence_ids: Vec<String>,
    /// From the device registry at processing time (empty when unregistered).
    pub device_name: String,
    pub fleet: String,
    pub device_type: String,
    /// 1 when the fix arrived too late to be placed in its device's history: stored with its
    /// fences, but without deltas, and it never changed the device's state or events.
    pub late: u8,
    /// Which copy of this position (`device_id`, `fix_time_ms`) wins: see [`crate::version`].
    pub version: u64,
}

impl PositionRow {
    /// A bare fix (received as taken, nothing else known): a base for tests and load generators
    /// to fill in with `..PositionRow::at(..)`.
    pub fn at(device_id: &str, fix_time_ms: i64, lat: f64, lon: f64) -> PositionRow {
        PositionRow {
            event_id: fleetstream_schemas::ids::derived_event_id(device_id, fix_time_ms),
            device_id: device_id.into(),
            fix_time_ms,
            received_at_ms: fix_time_ms,
            lat,
            lon,
            speed_mps: None,
            speed_derived: 0,
            heading_deg: None,
            altitude_m: None,
            accuracy_m: None,
            satellites: None,
            ignition: None,
            odometer_m: None,
            battery_pct: None,
            attributes: "{}".into(),
            prev_fix_ms: None,
            distance_m: None,
            kafka_partition: 0,
            kafka_offset: 0,
            heading_derived: 0,
            distance_total_m: 0.0,
            moving: 0,
            h3_cell: 0,
            fence_ids: vec![],
            device_name: String::new(),
            fleet: String::new(),
            device_type: String::new(),
            late: 0,
            version: crate::version::current(0),
        }
    }
}

/// What rebuilding a device's recent history needs of a stored position (any version of it).
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct WindowRow {
    pub device_id: String,
    pub fix_time_ms: i64,
    pub lat: f64,
    pub lon: f64,
    pub speed_mps: Option<f64>,
    pub speed_derived: u8,
    pub heading_deg: Option<f64>,
    pub heading_derived: u8,
    pub ignition: Option<u8>,
    pub fence_ids: Vec<String>,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
    pub version: u64,
}

/// One version of a device's registry entry in `devices`.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct DeviceRow {
    pub device_id: String,
    pub version: u64,
    pub deleted: u8,
    pub name: String,
    pub fleet: String,
    pub device_type: String,
    pub updated_at_ms: i64,
}

/// One version of a webhook in `webhooks`.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct WebhookRow {
    pub webhook_id: String,
    pub version: u64,
    pub deleted: u8,
    pub url: String,
    /// Signs deliveries; never shown by the API.
    pub secret: String,
    /// Event kinds delivered (`enter`, `exit`).
    pub kinds: Vec<String>,
    /// Filters; empty matches every event.
    pub device_id: String,
    pub fence_id: String,
    pub fleet: String,
    pub created_at_ms: i64,
}

/// One state of one webhook delivery in `webhook_deliveries`; the newest by `last_attempt_ms`
/// holds.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct WebhookDeliveryRow {
    pub webhook_id: String,
    pub delivery_id: String,
    pub event_id: String,
    pub device_id: String,
    /// `retrying`, `delivered` or `dead`.
    pub status: String,
    pub attempts: u32,
    /// The HTTP status of the last attempt, 0 when none came back.
    pub last_status: u16,
    pub last_error: String,
    pub first_attempt_ms: i64,
    pub last_attempt_ms: i64,
}

/// One version of an alert rule in `alert_rules`.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct AlertRuleRow {
    pub rule_id: String,
    pub version: u64,
    pub deleted: u8,
    /// `overspeed`, `idle` or `dwell` (a word, so that a kind of a newer release is skipped by
    /// older processors, not a row that cannot be read).
    pub kind: String,
    /// Overspeed: faster than this, m/s (0 for other kinds).
    pub speed_mps: f64,
    /// How long the condition must hold.
    pub duration_ms: i64,
    /// Scope; empty scopes nothing (a dwell rule always has a fence).
    pub device_id: String,
    pub fleet: String,
    pub fence_id: String,
    pub updated_at_ms: i64,
}

/// One row of `alerts`: one copy of one alert.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct AlertRow {
    /// `{device_id}|{rule_id}|{started_ms}`.
    pub alert_id: String,
    pub rule_id: String,
    #[serde(with = "alert_kind_word")]
    pub kind: AlertKind,
    pub device_id: String,
    /// The rule's fence, empty when it has none.
    pub fence_id: String,
    /// When the condition began to hold.
    pub started_ms: i64,
    /// The fix that completed the rule's duration.
    pub alert_time_ms: i64,
    pub duration_ms: i64,
    pub speed_mps: Option<f64>,
    pub lat: f64,
    pub lon: f64,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
    /// The copy with the highest version holds (see [`crate::version`]).
    pub version: u64,
    /// 1 when a late fix withdrew the alert.
    pub retracted: u8,
}

/// An [`AlertKind`] stored as its word (a `String` column): a word that is none of them is
/// refused when read.
mod alert_kind_word {
    use fleetstream_schemas::AlertKind;
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(kind: &AlertKind, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(kind.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<AlertKind, D::Error> {
        let word = String::deserialize(deserializer)?;
        AlertKind::parse(&word)
            .ok_or_else(|| D::Error::custom(format!("alert kind {word:?} is not one fleetstream knows")))
    }
}

/// `geofence_events.event_type`, an `Enum8('enter' = 1, 'exit' = 2)`: an [`EventKind`] in the
/// row, its code on the wire. A code that is neither is refused when read, never taken for one.
mod event_type_code {
    use fleetstream_schemas::outputs::EventKind;
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(kind: &EventKind, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_i8(match kind {
            EventKind::Enter => 1,
            EventKind::Exit => 2,
        })
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<EventKind, D::Error> {
        match i8::deserialize(deserializer)? {
            1 => Ok(EventKind::Enter),
            2 => Ok(EventKind::Exit),
            other => {
                Err(D::Error::custom(format!("geofence_events.event_type {other} is neither enter (1) nor exit (2)")))
            }
        }
    }
}

/// One row of `geofence_events`.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct GeofenceEventRow {
    pub event_id: String,
    pub device_id: String,
    pub fence_id: String,
    #[serde(with = "event_type_code")]
    pub event_type: EventKind,
    /// When the device crossed: its first fix on the new side of the boundary.
    pub event_time_ms: i64,
    /// On exit: time inside since the matching enter.
    pub dwell_ms: Option<i64>,
    /// The fix that confirmed the transition (later than the crossing under hysteresis).
    pub fix_time_ms: i64,
    pub lat: f64,
    pub lon: f64,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
    /// Which copy of this event wins: see [`crate::version`].
    pub version: u64,
    /// 1 when a later version withdrew the event (it no longer holds); readers skip it.
    pub retracted: u8,
}

/// One row of `processor_state`: a device's state after the message at `kafka_offset`.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct DeviceStateRow {
    pub device_id: String,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
    /// The processors' own JSON encoding of the state.
    pub state: String,
    pub updated_at_ms: i64,
}

/// The version for a new row of a versioned table (`geofences`, `devices`): microseconds since
/// the epoch, so the latest write wins under `ReplacingMergeTree(version)`.
pub fn next_version() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// One version of a fence in `geofences`.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct FenceRow {
    pub fence_id: String,
    pub version: u64,
    pub deleted: u8,
    pub name: String,
    /// The fence as a GeoJSON Feature.
    pub feature: String,
    pub updated_at_ms: i64,
}

/// One row of `pipeline_stats`: a batch the processors wrote.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct PipelineStatRow {
    pub written_at_ms: i64,
    pub positions: u64,
    /// Sum and maximum over the batch of (written_at_ms - received_at_ms).
    pub lag_ms_sum: i64,
    pub lag_ms_max: i64,
}

/// Positions written and ingest-to-store lag over a stretch of time.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct Throughput {
    /// Start of the minute (per-minute rows) or of the stretch.
    pub since_ms: i64,
    pub positions: u64,
    pub lag_ms_sum: i64,
    pub lag_ms_max: i64,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn event_json(code: i64) -> serde_json::Value {
        serde_json::json!({
            "event_id": "v|f|enter|1", "device_id": "v", "fence_id": "f", "event_type": code,
            "event_time_ms": 1, "dwell_ms": null, "fix_time_ms": 1, "lat": 0.0, "lon": 0.0,
            "kafka_partition": 0, "kafka_offset": 0, "version": 1, "retracted": 0
        })
    }

    #[test]
    fn event_kinds_are_stored_as_their_enum8_codes_and_unknown_codes_are_refused() {
        for (code, kind) in [(1, EventKind::Enter), (2, EventKind::Exit)] {
            let row: GeofenceEventRow = serde_json::from_value(event_json(code)).unwrap();
            assert_eq!(row.event_type, kind);
            assert_eq!(serde_json::to_value(&row).unwrap()["event_type"], code);
        }
        for code in [0, 3, -1] {
            let error = serde_json::from_value::<GeofenceEventRow>(event_json(code)).unwrap_err().to_string();
            assert!(error.contains("neither enter (1) nor exit (2)"), "{code}: {error}");
        }
    }
}
