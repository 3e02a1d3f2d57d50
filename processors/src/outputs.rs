//! The messages the processors produce, made from the rows they store: one conversion from each
//! storage row into its contract type of [`fleetstream_schemas::outputs`], and its JSON bytes.

use std::borrow::Cow;

use fleetstream_schemas::outputs::{Alert, EnrichedPosition, GeofenceEvent};
use fleetstream_storage::{AlertRow, GeofenceEventRow, PositionRow};
use serde_json::value::RawValue;

/// The `positions.enriched` message of a stored position.
pub fn enriched_position(row: &PositionRow) -> EnrichedPosition<'_> {
    // The row keeps the device's attributes as the JSON object text ingest checked; should it
    // ever not parse, the message still goes out, without them.
    let attributes: &RawValue = serde_json::from_str(&row.attributes).unwrap_or_else(|e| {
        tracing::warn!(device = %row.device_id, error = %e, "stored attributes are not JSON; sent as {{}}");
        empty_object()
    });
    EnrichedPosition {
        event_id: Cow::Borrowed(&row.event_id),
        device_id: Cow::Borrowed(&row.device_id),
        fix_time_ms: row.fix_time_ms,
        received_at_ms: row.received_at_ms,
        lat: row.lat,
        lon: row.lon,
        speed_mps: row.speed_mps,
        speed_derived: row.speed_derived != 0,
        heading_deg: row.heading_deg,
        heading_derived: row.heading_derived != 0,
        altitude_m: row.altitude_m,
        accuracy_m: row.accuracy_m,
        satellites: row.satellites,
        ignition: row.ignition.map(|i| i != 0),
        odometer_m: row.odometer_m,
        battery_pct: row.battery_pct,
        attributes,
        prev_fix_ms: row.prev_fix_ms,
        distance_m: row.distance_m,
        distance_total_m: row.distance_total_m,
        moving: row.moving != 0,
        h3_cell: format!("{:x}", row.h3_cell),
        fence_ids: Cow::Borrowed(&row.fence_ids),
        device_name: Cow::Borrowed(&row.device_name),
        fleet: Cow::Borrowed(&row.fleet),
        device_type: Cow::Borrowed(&row.device_type),
        late: row.late != 0,
        version: row.version,
    }
}

fn empty_object() -> &'static RawValue {
    serde_json::from_str("{}").expect("{} is JSON")
}

/// The `geofence.events` message of a stored event.
pub fn geofence_event(row: &GeofenceEventRow) -> GeofenceEvent<'_> {
    GeofenceEvent {
        event_id: Cow::Borrowed(&row.event_id),
        device_id: Cow::Borrowed(&row.device_id),
        fence_id: Cow::Borrowed(&row.fence_id),
        kind: row.event_type,
        event_time_ms: row.event_time_ms,
        dwell_ms: row.dwell_ms,
        fix_time_ms: row.fix_time_ms,
        lat: row.lat,
        lon: row.lon,
        retracted: row.retracted != 0,
        version: row.version,
    }
}

/// The `alerts` message of a stored alert.
pub fn alert(row: &AlertRow) -> Alert<'_> {
    Alert {
        alert_id: Cow::Borrowed(&row.alert_id),
        rule_id: Cow::Borrowed(&row.rule_id),
        kind: row.kind,
        device_id: Cow::Borrowed(&row.device_id),
        fence_id: (!row.fence_id.is_empty()).then_some(Cow::Borrowed(&row.fence_id)),
        started_ms: row.started_ms,
        alert_time_ms: row.alert_time_ms,
        duration_ms: row.duration_ms,
        speed_mps: row.speed_mps,
        lat: row.lat,
        lon: row.lon,
        retracted: row.retracted != 0,
        version: row.version,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetstream_schemas::EventKind;
    use serde_json::{Value, json};

    #[test]
    fn an_enriched_position_carries_booleans_an_object_and_a_hex_cell() {
        let row = PositionRow {
            attributes: r#"{"io66":12.5,"tag":"a\"b"}"#.into(),
            moving: 1,
            speed_derived: 1,
            ignition: Some(0),
            h3_cell: 0x892a100d2c3ffff,
            late: 0,
            ..PositionRow::at("d-1", 1_000, 40.7, -74.0)
        };
        let m: Value = serde_json::to_value(enriched_position(&row)).unwrap();
        assert_eq!(m["attributes"], json!({"io66": 12.5, "tag": "a\"b"}));
        assert_eq!(
            (&m["moving"], &m["speed_derived"], &m["heading_derived"]),
            (&json!(true), &json!(true), &json!(false))
        );
        assert_eq!((&m["ignition"], &m["late"]), (&json!(false), &json!(false)));
        assert_eq!(m["h3_cell"], "892a100d2c3ffff");
        assert_eq!(m["event_id"], "d-1@1000");
    }

    #[test]
    fn broken_stored_attributes_become_an_empty_object() {
        let row = PositionRow { attributes: "{not json".into(), ..PositionRow::at("d", 1, 0.0, 0.0) };
        let m: Value = serde_json::to_value(enriched_position(&row)).unwrap();
        assert_eq!(m["attributes"], json!({}));
    }

    #[test]
    fn an_event_names_its_kind() {
        let row = GeofenceEventRow {
            event_id: "d|f|exit|5".into(),
            device_id: "d".into(),
            fence_id: "f".into(),
            event_type: EventKind::Exit,
            event_time_ms: 5,
            dwell_ms: Some(4),
            fix_time_ms: 6,
            lat: 1.0,
            lon: 2.0,
            kafka_partition: 0,
            kafka_offset: 9,
            version: 7,
            retracted: 1,
        };
        let m: Value = serde_json::to_value(geofence_event(&row)).unwrap();
        assert_eq!((&m["kind"], &m["retracted"], &m["dwell_ms"]), (&json!("exit"), &json!(true), &json!(4)));
        assert!(m.get("event_type").is_none() && m.get("kafka_offset").is_none(), "{m}");
    }
}
