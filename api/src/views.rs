//! Reader-facing JSON: times as RFC 3339 with milliseconds (and epoch milliseconds beside them),
//! field names as devices send them.

use fleetstream_schemas::Attributes;
use fleetstream_schemas::time::format_millis;
use fleetstream_storage::{GeofenceEventRow, LatestRow, PositionRow};
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct LatestView {
    pub device_id: String,
    pub fix_time: String,
    pub fix_time_ms: i64,
    pub received_at: String,
    pub lat: f64,
    pub lon: f64,
    pub speed: Option<f64>,
    pub heading: Option<f64>,
}

impl From<LatestRow> for LatestView {
    fn from(r: LatestRow) -> Self {
        LatestView {
            fix_time: format_millis(r.fix_time_ms),
            received_at: format_millis(r.received_at_ms),
            device_id: r.device_id,
            fix_time_ms: r.fix_time_ms,
            lat: r.lat,
            lon: r.lon,
            speed: r.speed_mps,
            heading: r.heading_deg,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct TrackPointView {
    pub event_id: String,
    pub fix_time: String,
    pub fix_time_ms: i64,
    pub received_at: String,
    pub lat: f64,
    pub lon: f64,
    /// Metres per second; `speed_derived` tells whether fleetstream computed it.
    pub speed: Option<f64>,
    pub speed_derived: bool,
    pub heading: Option<f64>,
    pub altitude: Option<f64>,
    pub accuracy: Option<f64>,
    pub satellites: Option<u8>,
    pub ignition: Option<bool>,
    pub odometer: Option<f64>,
    pub battery: Option<f64>,
    pub attributes: Attributes,
    /// Metres from the device's previous fix, when known.
    pub distance_from_prev_m: Option<f64>,
    /// Distance travelled since the device was first seen, metres.
    pub distance_total_m: f64,
    pub moving: bool,
    /// H3 cell (resolution 9) as the usual hex string.
    pub h3_cell: String,
    pub fence_ids: Vec<String>,
    /// The fix arrived beyond the lateness bound: stored without distance or speed.
    pub late: bool,
}

impl From<PositionRow> for TrackPointView {
    fn from(r: PositionRow) -> Self {
        TrackPointView {
            fix_time: format_millis(r.fix_time_ms),
            received_at: format_millis(r.received_at_ms),
            attributes: Attributes::from_stored(r.attributes).unwrap_or_default(),
            event_id: r.event_id,
            fix_time_ms: r.fix_time_ms,
            lat: r.lat,
            lon: r.lon,
            speed: r.speed_mps,
            speed_derived: r.speed_derived != 0,
            heading: r.heading_deg,
            altitude: r.altitude_m,
            accuracy: r.accuracy_m,
            satellites: r.satellites,
            ignition: r.ignition.map(|v| v != 0),
            odometer: r.odometer_m,
            battery: r.battery_pct,
            distance_from_prev_m: r.distance_m,
            distance_total_m: r.distance_total_m,
            moving: r.moving != 0,
            h3_cell: format!("{:x}", r.h3_cell),
            fence_ids: r.fence_ids,
            late: r.late != 0,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct LatestResponse {
    pub count: usize,
    pub devices: Vec<LatestView>,
}

#[derive(Debug, Serialize)]
pub struct TrackResponse {
    pub device_id: String,
    pub from: String,
    pub to: String,
    pub count: usize,
    /// Set when the range holds more points than were returned: ask again with `from` = this.
    pub next_from: Option<String>,
    pub positions: Vec<TrackPointView>,
}

#[derive(Debug, Serialize)]
pub struct EventView {
    pub event_id: String,
    pub device_id: String,
    pub fence_id: String,
    /// `enter` or `exit`.
    pub event: &'static str,
    pub time: String,
    pub time_ms: i64,
    /// On exits: milliseconds inside since the matching enter.
    pub dwell_ms: Option<i64>,
    pub lat: f64,
    pub lon: f64,
}

impl From<GeofenceEventRow> for EventView {
    fn from(r: GeofenceEventRow) -> Self {
        EventView {
            event: r.event_type.as_str(),
            time: format_millis(r.event_time_ms),
            time_ms: r.event_time_ms,
            event_id: r.event_id,
            device_id: r.device_id,
            fence_id: r.fence_id,
            dwell_ms: r.dwell_ms,
            lat: r.lat,
            lon: r.lon,
        }
    }
}
