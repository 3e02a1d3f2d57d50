//! A GT06 location or alarm as fleetstream's [`Position`], through the same validation as every
//! other protocol. The device id is the IMEI of the connection's login.
//!
//! Speed is sent in km/h (stored in m/s), the course in degrees; the serving cell goes to the
//! attributes (`mcc`, `mnc`, `lac`, `cell_id`), with `gps_valid` (the positioned bit: a fix that
//! is not positioned is the last known one). A 0x22 location's ACC byte is the ignition; an
//! alarm's status gives the ignition (ACC), `charging`, `voltage_level` (0–6), `gsm_signal`
//! (0–4) and the `alarm` (`sos`, `power_cut`, `vibration`, `fence_in`, `fence_out`, `other`, with
//! its `alarm_code`).

use chrono::NaiveDate;
use fleetstream_schemas::input::{Fields, validate};
use fleetstream_schemas::{FieldError, Limits, Position};
use serde_json::{Map, Value};

use super::message::{Cell, Gps, Message, Status, protocol};

/// The position a message carries, if it carries one.
pub fn message_position(
    imei: &str,
    message: &Message,
    received_at_ms: i64,
    limits: &Limits,
) -> Option<Result<Position, FieldError>> {
    let (gps, cell, mut ignition, mut attributes) = match message {
        Message::Location { protocol, gps, cell, rest } => {
            let mut attributes = Map::new();
            // 0x22: ACC, data upload mode, real-time or re-uploaded.
            let acc = (*protocol == protocol::LOCATION_2).then(|| rest.first().map(|&acc| acc != 0)).flatten();
            if let (true, Some(&realtime)) = (*protocol == protocol::LOCATION_2, rest.get(2)) {
                attributes.insert("realtime".into(), (realtime == 0).into());
            }
            (gps, cell, acc, attributes)
        }
        Message::Alarm { gps, cell, status, .. } => (gps, cell, Some(status.acc_on()), status_attributes(status)),
        _ => return None,
    };
    let result = gps_fields(gps).map(|(fix_time_ms, lat, lon)| {
        attributes.insert("gps_valid".into(), gps.positioned().into());
        cell_attributes(&mut attributes, cell);
        Fields {
            device_id: imei.to_string(),
            fix_time_ms,
            lat,
            lon,
            speed_mps: Some(f64::from(gps.speed) / 3.6),
            heading_deg: Some(f64::from(gps.course())),
            satellites: Some(gps.satellites()),
            ignition: ignition.take(),
            attributes: attributes.into(),
            ..Fields::default()
        }
    });
    Some(result.and_then(|fields| validate(fields, received_at_ms, limits)))
}

/// Fix time (epoch ms) and signed coordinates.
fn gps_fields(gps: &Gps) -> Result<(i64, f64, f64), FieldError> {
    let [y, mo, d, h, mi, s] = gps.time;
    let time = NaiveDate::from_ymd_opt(2000 + i32::from(y), u32::from(mo), u32::from(d))
        .and_then(|date| date.and_hms_opt(u32::from(h), u32::from(mi), u32::from(s)))
        .ok_or_else(|| {
            FieldError::new("time", format!("{y:02}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} is not a date and time"))
        })?;
    if gps.lat == 0 && gps.lon == 0 {
        return Err(FieldError::new(
            "gps",
            format!("has no fix: coordinates 0, 0 with {} satellites", gps.satellites()),
        ));
    }
    Ok((time.and_utc().timestamp_millis(), gps.latitude(), gps.longitude()))
}

fn cell_attributes(out: &mut Map<String, Value>, cell: &Cell) {
    out.insert("mcc".into(), cell.mcc.into());
    out.insert("mnc".into(), cell.mnc.into());
    out.insert("lac".into(), cell.lac.into());
    out.insert("cell_id".into(), cell.cell_id.into());
}

fn status_attributes(status: &Status) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("charging".into(), status.charging().into());
    out.insert("voltage_level".into(), status.voltage_level.into());
    out.insert("gsm_signal".into(), status.gsm_signal.into());
    if let Some(alarm) = status.alarm() {
        out.insert("alarm".into(), alarm.into());
        out.insert("alarm_code".into(), (status.alarm_language >> 8).into());
    }
    out
}
