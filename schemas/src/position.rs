//! The normalised position: what ingest produces to `positions.raw` and processors consume.
//!
//! Units are fixed here once (metres, metres per second, degrees, percent) so that no consumer
//! has to know which protocol a device spoke.

use serde::{Deserialize, Serialize};

use crate::attributes::Attributes;
use crate::time::EpochMillis;

/// Version of [`Position`] on the wire. Consumers refuse messages of a newer major version
/// rather than misread them.
pub const POSITION_SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Position {
    /// Schema version of this message ([`POSITION_SCHEMA_VERSION`]).
    pub v: u32,
    /// Identity for de-duplication: sent by the device, or derived from device id and fix time.
    pub event_id: String,
    pub device_id: String,
    /// When the device took the fix.
    pub fix_time_ms: EpochMillis,
    /// When ingest received it (server clock).
    pub received_at_ms: EpochMillis,
    pub lat: f64,
    pub lon: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed_mps: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heading_deg: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub altitude_m: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy_m: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub satellites: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignition: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub odometer_m: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub battery_pct: Option<f64>,
    /// The device's free-form attributes, as checked by ingest (omitted when empty).
    #[serde(default, skip_serializing_if = "Attributes::is_empty")]
    pub attributes: Attributes,
}

impl Position {
    /// Decodes a `positions.raw` message payload.
    pub fn from_message(payload: &[u8]) -> Result<Self, String> {
        let position: Position = serde_json::from_slice(payload).map_err(|e| format!("undecodable position: {e}"))?;
        if position.v > POSITION_SCHEMA_VERSION {
            return Err(format!(
                "position schema v{} is newer than this build understands (v{POSITION_SCHEMA_VERSION})",
                position.v
            ));
        }
        Ok(position)
    }

    /// Encodes the message payload for `positions.raw`.
    pub fn to_message(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a Position always serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Position {
        Position {
            v: POSITION_SCHEMA_VERSION,
            event_id: crate::ids::derived_event_id("dev-1", 1_000),
            device_id: "dev-1".into(),
            fix_time_ms: 1_000,
            received_at_ms: 2_000,
            lat: 40.5,
            lon: -74.0,
            speed_mps: Some(3.5),
            heading_deg: None,
            altitude_m: None,
            accuracy_m: Some(4.0),
            satellites: Some(9),
            ignition: Some(true),
            odometer_m: None,
            battery_pct: None,
            attributes: Attributes::empty(),
        }
    }

    #[test]
    fn message_round_trip_is_lossless() {
        let p = sample();
        assert_eq!(Position::from_message(&p.to_message()).unwrap(), p);
    }

    #[test]
    fn absent_options_are_not_serialised() {
        let text = String::from_utf8(sample().to_message()).unwrap();
        assert!(!text.contains("heading_deg"), "{text}");
        assert!(!text.contains("attributes"), "{text}");
    }

    #[test]
    fn newer_schema_versions_are_refused() {
        let mut p = sample();
        p.v = POSITION_SCHEMA_VERSION + 1;
        let err = Position::from_message(&p.to_message()).unwrap_err();
        assert!(err.contains("newer"), "{err}");
    }
}
