//! The messages of the output topics: the public contract that services around fleetstream
//! (often in Go) consume.
//!
//! - `positions.enriched`: one [`EnrichedPosition`] per stored position
//!   (`position.enriched.v1.schema.json`);
//! - `geofence.events`: one [`GeofenceEvent`] per enter or exit (`geofence.event.v1.schema.json`);
//! - `alerts`: one [`Alert`] per alert a rule fired (`alert.v1.schema.json`).
//!
//! All are keyed by device id, so one device's messages stay in order on one partition. They are
//! independent of the storage rows: flags are booleans, `attributes` is the object the device
//! sent, the H3 cell is its canonical hexadecimal string, enter/exit is a word. A position or
//! event can be sent again (a redelivery, a correction when a late fix changes its deltas): the
//! copy with the highest `version` is the one that holds. `version` is an unsigned 64-bit
//! integer above 2^53: decode it as such (Go `uint64`, not `float64`).
//!
//! The types borrow from what they describe, so producing one costs no copies.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The JSON Schema of one `positions.enriched` message (draft 2020-12).
pub const ENRICHED_POSITION_JSON_SCHEMA: &str = include_str!("../position.enriched.v1.schema.json");
/// The JSON Schema of one `geofence.events` message (draft 2020-12).
pub const GEOFENCE_EVENT_JSON_SCHEMA: &str = include_str!("../geofence.event.v1.schema.json");
/// The JSON Schema of one `alerts` message (draft 2020-12).
pub const ALERT_JSON_SCHEMA: &str = include_str!("../alert.v1.schema.json");

/// A position as stored, with what the processors derived from the device's history.
#[derive(Debug, Serialize, Deserialize)]
pub struct EnrichedPosition<'a> {
    /// `{device_id}@{fix_time_ms}`: the same for every copy of this position.
    #[serde(borrow)]
    pub event_id: Cow<'a, str>,
    #[serde(borrow)]
    pub device_id: Cow<'a, str>,
    pub fix_time_ms: i64,
    pub received_at_ms: i64,
    pub lat: f64,
    pub lon: f64,
    pub speed_mps: Option<f64>,
    /// True when the processors derived the speed from the previous fix (the device sent none).
    pub speed_derived: bool,
    pub heading_deg: Option<f64>,
    pub heading_derived: bool,
    pub altitude_m: Option<f64>,
    pub accuracy_m: Option<f64>,
    pub satellites: Option<u8>,
    pub ignition: Option<bool>,
    /// As the device reported it.
    pub odometer_m: Option<f64>,
    pub battery_pct: Option<f64>,
    /// The free-form attributes the device sent (an object, `{}` when none).
    #[serde(borrow)]
    pub attributes: &'a RawValue,
    /// Fix time of the device's previous position, when known.
    pub prev_fix_ms: Option<i64>,
    /// Great-circle distance from the previous position, metres.
    pub distance_m: Option<f64>,
    /// Distance travelled since the device was first seen, metres.
    pub distance_total_m: f64,
    pub moving: bool,
    /// H3 cell at resolution 9, canonical lower-case hexadecimal.
    pub h3_cell: String,
    /// Ids of the fences containing this position.
    #[serde(borrow)]
    pub fence_ids: Cow<'a, [String]>,
    /// From the device registry at processing time (empty when unregistered).
    #[serde(borrow)]
    pub device_name: Cow<'a, str>,
    #[serde(borrow)]
    pub fleet: Cow<'a, str>,
    #[serde(borrow)]
    pub device_type: Cow<'a, str>,
    /// True when the fix arrived later than its device's history reaches: stored with its
    /// fences but no deltas, and it changed no state or event.
    pub late: bool,
    /// The copy with the highest version holds.
    pub version: u64,
}

/// Which way a device crossed a fence boundary (ordered as stored: enter before exit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Enter,
    Exit,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Enter => "enter",
            EventKind::Exit => "exit",
        }
    }
}

/// A device entering or leaving a fence.
#[derive(Debug, Serialize, Deserialize)]
pub struct GeofenceEvent<'a> {
    /// `{device_id}|{fence_id}|{kind}|{event_time_ms}`: the same for every copy of this event.
    #[serde(borrow)]
    pub event_id: Cow<'a, str>,
    #[serde(borrow)]
    pub device_id: Cow<'a, str>,
    #[serde(borrow)]
    pub fence_id: Cow<'a, str>,
    pub kind: EventKind,
    /// When the device crossed: its first fix on the new side of the boundary.
    pub event_time_ms: i64,
    /// On exit: time inside since the matching enter.
    pub dwell_ms: Option<i64>,
    /// The fix that confirmed the crossing (later than it under hysteresis).
    pub fix_time_ms: i64,
    pub lat: f64,
    pub lon: f64,
    /// True when a later copy withdrew the event (a late fix showed it did not happen).
    pub retracted: bool,
    /// The copy with the highest version holds.
    pub version: u64,
}

/// What an alert rule watches for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertKind {
    /// Faster than the rule's speed for at least its `min_secs`.
    Overspeed,
    /// Stopped, with the ignition on or unknown, for at least the rule's minutes.
    Idle,
    /// Inside the rule's fence for at least its minutes.
    Dwell,
}

impl AlertKind {
    pub const ALL: [AlertKind; 3] = [AlertKind::Overspeed, AlertKind::Idle, AlertKind::Dwell];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Overspeed => "overspeed",
            AlertKind::Idle => "idle",
            AlertKind::Dwell => "dwell",
        }
    }

    pub fn parse(word: &str) -> Option<AlertKind> {
        AlertKind::ALL.into_iter().find(|k| k.as_str() == word)
    }
}

/// An alert: a device met a rule's condition for the rule's duration. One per episode (the
/// condition holding without a break), fired by the first fix that completes the duration.
#[derive(Debug, Serialize, Deserialize)]
pub struct Alert<'a> {
    /// `{device_id}|{rule_id}|{started_ms}`: the same in every copy of this alert.
    #[serde(borrow)]
    pub alert_id: Cow<'a, str>,
    #[serde(borrow)]
    pub rule_id: Cow<'a, str>,
    pub kind: AlertKind,
    #[serde(borrow)]
    pub device_id: Cow<'a, str>,
    /// The rule's fence, when it has one (always for `dwell`).
    pub fence_id: Option<Cow<'a, str>>,
    /// When the condition began to hold (for `dwell`, the enter time).
    pub started_ms: i64,
    /// The fix that completed the duration: the alert's time.
    pub alert_time_ms: i64,
    /// `alert_time_ms - started_ms`.
    pub duration_ms: i64,
    /// The device's speed at that fix (sent or derived), m/s.
    pub speed_mps: Option<f64>,
    pub lat: f64,
    pub lon: f64,
    /// True when a later copy withdrew the alert (a late fix showed the condition broke).
    pub retracted: bool,
    /// The copy with the highest version holds.
    pub version: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_kinds_are_words_on_the_wire() {
        for kind in AlertKind::ALL {
            assert_eq!(serde_json::to_string(&kind).unwrap(), format!("\"{}\"", kind.as_str()));
            assert_eq!(AlertKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(AlertKind::parse("offline"), None);
    }

    #[test]
    fn event_kinds_are_words_on_the_wire() {
        assert_eq!(serde_json::to_string(&EventKind::Enter).unwrap(), r#""enter""#);
        assert_eq!(serde_json::from_str::<EventKind>(r#""exit""#).unwrap(), EventKind::Exit);
        assert!(serde_json::from_str::<EventKind>("2").is_err());
        assert_eq!(EventKind::Exit.as_str(), "exit");
    }

    #[test]
    fn a_message_round_trips_borrowing_its_strings() {
        let json = r#"{"event_id":"d@1","device_id":"d","fix_time_ms":1,"received_at_ms":2,"lat":1.5,"lon":2.5,
            "speed_mps":null,"speed_derived":false,"heading_deg":90.0,"heading_derived":true,"altitude_m":null,
            "accuracy_m":null,"satellites":7,"ignition":true,"odometer_m":null,"battery_pct":null,
            "attributes":{"io1":"x"},"prev_fix_ms":null,"distance_m":null,"distance_total_m":0.0,"moving":false,
            "h3_cell":"892a100d2c3ffff","fence_ids":["a"],"device_name":"","fleet":"","device_type":"","late":false,
            "version":216172782113783808}"#;
        let p: EnrichedPosition<'_> = serde_json::from_str(json).unwrap();
        assert!(matches!(p.device_id, Cow::Borrowed("d")));
        assert_eq!((p.attributes.get(), p.version), (r#"{"io1":"x"}"#, 3 << 56));
        let again: serde_json::Value = serde_json::to_value(&p).unwrap();
        assert_eq!(again, serde_json::from_str::<serde_json::Value>(json).unwrap());
    }
}
