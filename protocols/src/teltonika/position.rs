//! A Teltonika AVL record as fleetstream's [`Position`], through the same validation as every
//! other protocol. The device id is the IMEI of the handshake.
//!
//! The GPS element gives position, altitude, heading, satellites and speed (km/h, stored in
//! m/s). Well-known IO elements become fields or named attributes: ignition (239), movement
//! (240), external and battery voltage (66, 67, mV, stored in volts), total odometer (16, m) and
//! trip odometer (199, m), GSM signal (21, 0–5) and the IO speed (24, km/h). The rest are kept as
//! `io<ID>` attributes, at most [`MAX_IO_ATTRIBUTES`] of them, variable-length values as hex cut
//! at [`MAX_VAR_VALUE_BYTES`] bytes, so that a record with many IO elements still fits the
//! attribute limits; how many were left out is said in `io_dropped`.

use fleetstream_schemas::input::{Fields, validate};
use fleetstream_schemas::{FieldError, Limits, Position};
use serde_json::{Map, Value};

use super::avl::AvlRecord;

/// IO element ids with a meaning of their own.
pub mod io {
    pub const IGNITION: u16 = 239;
    pub const MOVEMENT: u16 = 240;
    pub const EXTERNAL_VOLTAGE: u16 = 66;
    pub const BATTERY_VOLTAGE: u16 = 67;
    pub const TOTAL_ODOMETER: u16 = 16;
    pub const TRIP_ODOMETER: u16 = 199;
    pub const GSM_SIGNAL: u16 = 21;
    pub const SPEED: u16 = 24;
}

/// Most `io<ID>` attributes kept from one record.
pub const MAX_IO_ATTRIBUTES: usize = 40;
/// Longest variable-length IO value kept (as hex, twice as many characters).
pub const MAX_VAR_VALUE_BYTES: usize = 32;

/// The position of one record of device `imei`, received at `received_at_ms`.
pub fn record_position(
    imei: &str,
    record: &AvlRecord,
    received_at_ms: i64,
    limits: &Limits,
) -> Result<Position, FieldError> {
    let gps = &record.gps;
    if gps.lat == 0 && gps.lon == 0 {
        return Err(FieldError::new("gps", format!("has no fix: coordinates 0, 0 with {} satellites", gps.satellites)));
    }
    let fix_time_ms = i64::try_from(record.timestamp_ms)
        .map_err(|_| FieldError::new("timestamp", format!("{} ms is out of range", record.timestamp_ms)))?;
    let fields = Fields {
        device_id: imei.to_string(),
        fix_time_ms,
        lat: f64::from(gps.lat) / 1e7,
        lon: f64::from(gps.lon) / 1e7,
        speed_mps: Some(f64::from(gps.speed) / 3.6),
        heading_deg: Some(f64::from(gps.angle)),
        altitude_m: Some(f64::from(gps.altitude)),
        satellites: Some(gps.satellites),
        ignition: record.io.get(io::IGNITION).map(|v| v != 0),
        odometer_m: record.io.get(io::TOTAL_ODOMETER).map(|v| v as f64),
        attributes: attributes(record).into(),
        ..Fields::default()
    };
    validate(fields, received_at_ms, limits)
}

fn attributes(record: &AvlRecord) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("priority".into(), record.priority.into());
    if record.event_io != 0 {
        out.insert("event_io".into(), record.event_io.into());
    }
    if let Some(g) = record.generation_type {
        out.insert("generation_type".into(), g.into());
    }
    let mut kept = 0;
    let mut dropped = 0u32;
    let mut keep = |out: &mut Map<String, Value>, id: u16, value: Value| {
        if kept < MAX_IO_ATTRIBUTES {
            out.insert(format!("io{id}"), value);
            kept += 1;
        } else {
            dropped += 1;
        }
    };
    for (id, value) in record.io.fixed() {
        let volts = || Value::from(value as f64 / 1000.0);
        match id {
            io::IGNITION | io::TOTAL_ODOMETER => {}
            io::MOVEMENT => _ = out.insert("movement".into(), (value != 0).into()),
            io::EXTERNAL_VOLTAGE => _ = out.insert("external_voltage_v".into(), volts()),
            io::BATTERY_VOLTAGE => _ = out.insert("battery_voltage_v".into(), volts()),
            io::TRIP_ODOMETER => _ = out.insert("trip_odometer_m".into(), value.into()),
            io::GSM_SIGNAL => _ = out.insert("gsm_signal".into(), value.into()),
            io::SPEED => _ = out.insert("io_speed_kmh".into(), value.into()),
            _ => keep(&mut out, id, value.into()),
        }
    }
    for (id, bytes) in &record.io.var {
        let hex: String = bytes.iter().take(MAX_VAR_VALUE_BYTES).map(|b| format!("{b:02x}")).collect();
        keep(&mut out, *id, hex.into());
    }
    if dropped > 0 {
        out.insert("io_dropped".into(), dropped.into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::teltonika::avl::{GpsElement, IoElements};

    const NOW: i64 = 1_700_000_000_000;

    fn record(io: IoElements) -> AvlRecord {
        AvlRecord {
            timestamp_ms: 1_699_999_990_000,
            priority: 1,
            gps: GpsElement { lon: 252_562_916, lat: 546_676_016, altitude: 138, angle: 90, satellites: 6, speed: 36 },
            event_io: 0,
            generation_type: None,
            io,
        }
    }

    #[test]
    fn known_io_elements_become_fields_and_the_rest_attributes() {
        let io = IoElements {
            one: vec![(239, 1), (240, 0), (21, 4), (1, 1)],
            two: vec![(66, 12_450), (67, 4_012), (24, 37)],
            four: vec![(16, 120_500), (199, 3_100)],
            eight: vec![(11, 893_700_000)],
            var: vec![(300, vec![0xAB; 40])],
        };
        let p = record_position("356307042441013", &record(io), NOW, &Limits::default()).unwrap();
        assert_eq!(p.device_id, "356307042441013");
        assert_eq!(p.event_id, "356307042441013@1699999990000");
        assert_eq!((p.lat, p.lon), (54.6676016, 25.2562916));
        assert_eq!(p.speed_mps, Some(10.0));
        assert_eq!((p.heading_deg, p.altitude_m, p.satellites), (Some(90.0), Some(138.0), Some(6)));
        assert_eq!((p.ignition, p.odometer_m), (Some(true), Some(120_500.0)));
        let a = p.attributes.to_value();
        let a = a.as_object().unwrap();
        assert_eq!(a["movement"], false);
        assert_eq!(a["gsm_signal"], 4);
        assert_eq!(a["external_voltage_v"], 12.45);
        assert_eq!(a["battery_voltage_v"], 4.012);
        assert_eq!(a["trip_odometer_m"], 3_100);
        assert_eq!(a["io_speed_kmh"], 37);
        assert_eq!(a["io1"], 1);
        assert_eq!(a["io11"], 893_700_000);
        assert_eq!(a["io300"].as_str().unwrap().len(), 2 * MAX_VAR_VALUE_BYTES);
        assert_eq!(a["priority"], 1);
        assert!(!a.contains_key("io239") && !a.contains_key("io16"));
    }

    #[test]
    fn many_io_elements_still_fit_the_attribute_limits() {
        let io = IoElements { eight: (1000..1200).map(|i| (i, u64::MAX)).collect(), ..IoElements::default() };
        let p = record_position("356307042441013", &record(io), NOW, &Limits::default()).unwrap();
        assert_eq!(p.attributes.to_value()["io_dropped"], 200 - MAX_IO_ATTRIBUTES as u64);
    }

    #[test]
    fn a_record_without_a_fix_or_out_of_range_is_refused_by_field() {
        let mut r = record(IoElements::default());
        r.gps.lat = 0;
        r.gps.lon = 0;
        assert_eq!(record_position("1", &r, NOW, &Limits::default()).unwrap_err().field, "gps");
        let mut r = record(IoElements::default());
        r.gps.lat = 910_000_000;
        assert_eq!(record_position("1", &r, NOW, &Limits::default()).unwrap_err().field, "lat");
        let mut r = record(IoElements::default());
        r.timestamp_ms = u64::MAX;
        assert_eq!(record_position("1", &r, NOW, &Limits::default()).unwrap_err().field, "timestamp");
    }
}
