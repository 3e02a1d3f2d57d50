//! The device-facing JSON position (`position.v1.schema.json`) and its validation.
//!
//! Every rejection is a [`FieldError`] that names the field and says why, because the person
//! reading it is debugging a tracker's firmware, not our code.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use crate::attributes::{Attributes, RawAttributes};
use crate::ids::{MAX_ID_BYTES, check_id, derived_event_id};
use crate::position::{POSITION_SCHEMA_VERSION, Position};
use crate::time::{EpochMillis, parse_rfc3339_millis};

/// The top-level fields a device may send; anything else is rejected by name.
pub const DEVICE_FIELDS: &[&str] = &[
    "device_id",
    "fix_time",
    "lat",
    "lon",
    "speed",
    "heading",
    "altitude",
    "accuracy",
    "satellites",
    "ignition",
    "odometer",
    "battery",
    "attributes",
    "event_id",
];

/// Bounds on what one position may contain. Ingest exposes the time bounds as flags
/// (`--max-future-skew-secs`, `--max-fix-age-secs`); the others are these defaults.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_device_id_bytes: usize,
    pub max_event_id_bytes: usize,
    /// Most keys at the top level of the attributes object.
    pub max_attribute_keys: usize,
    /// Size of the attributes object as compact JSON, members named like a secret left out.
    pub max_attributes_bytes: usize,
    /// How far ahead of the server clock a fix time may be (device clocks drift).
    pub max_future_skew: Duration,
    /// How far behind the server clock a fix time may be; `None` accepts any age (bulk imports
    /// and replays of history), still bounded below by [`EARLIEST_FIX_MS`].
    pub max_age: Option<Duration>,
}

/// How far ahead of the server clock a fix time may be by default (ingest's
/// `--max-future-skew-secs`): device clocks drift.
pub const DEFAULT_MAX_FUTURE_SKEW_SECS: u64 = 600;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_device_id_bytes: MAX_ID_BYTES,
            max_event_id_bytes: MAX_ID_BYTES,
            max_attribute_keys: 64,
            max_attributes_bytes: 4096,
            max_future_skew: Duration::from_secs(DEFAULT_MAX_FUTURE_SKEW_SECS),
            max_age: None,
        }
    }
}

/// 2000-01-01T00:00:00Z. Earlier fix times come from unset clocks or GPS week roll-over bugs.
pub const EARLIEST_FIX_MS: EpochMillis = 946_684_800_000;

/// Why one item was rejected: the field (dotted path, or `body`) and the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError { field: field.into(), message: message.into() }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// A fix time as devices send it: an RFC 3339 string or integer epoch milliseconds.
fn fix_time<'de, D: Deserializer<'de>>(d: D) -> Result<EpochMillis, D::Error> {
    struct FixTimeVisitor;
    impl Visitor<'_> for FixTimeVisitor {
        type Value = EpochMillis;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an RFC 3339 timestamp string or integer epoch milliseconds")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<EpochMillis, E> {
            parse_rfc3339_millis(v).map_err(E::custom)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<EpochMillis, E> {
            Ok(v)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<EpochMillis, E> {
            i64::try_from(v).map_err(|_| E::custom("epoch milliseconds out of range"))
        }
    }
    d.deserialize_any(FixTimeVisitor)
}

/// Parses and validates one JSON position received at `received_at_ms`.
pub fn parse_position(json: &str, received_at_ms: EpochMillis, limits: &Limits) -> Result<Position, FieldError> {
    if !json.trim_start().starts_with('{') {
        return Err(FieldError::new("body", "each position must be a JSON object"));
    }
    let raw: Fields<'_> = deserialize_named(json)?;
    validate(raw, received_at_ms, limits)
}

/// Deserialises one JSON document; a failure names the field where it happened.
pub(crate) fn deserialize_named<'a, T: Deserialize<'a>>(json: &'a str) -> Result<T, FieldError> {
    let mut de = serde_json::Deserializer::from_str(json);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        FieldError::new(field_of(&path, &inner.to_string()), strip_location(&inner))
    })?;
    de.end().map_err(|e| FieldError::new("body", strip_location(&e)))?;
    Ok(value)
}

/// serde reports missing/unknown/duplicate fields at the parent path with the name in backticks.
/// serde_path_to_error writes `?` for a key it never finished reading (truncated input).
/// Array indices are cut (`attributes.k[0][0]…` names `attributes.k`), so hostile nesting cannot
/// make the answer long; the result is at most [`MAX_FIELD_PATH`] bytes. A longer path is not
/// cut: it holds a name the sender chose, and a cut could keep part of a token, which the
/// redaction of the whole token would then miss. It names what holds it instead.
pub(crate) fn field_of(path: &str, message: &str) -> String {
    let path = path.split('[').next().unwrap_or_default();
    let path = path.trim_end_matches('?').trim_end_matches('.');
    let field = field_of_path(path, message);
    if field.len() <= MAX_FIELD_PATH {
        return field;
    }
    if field.starts_with("attributes.") { "attributes" } else { "body" }.to_owned()
}

/// Longest field path an error names.
pub const MAX_FIELD_PATH: usize = 128;

fn field_of_path(path: &str, message: &str) -> String {
    let named = ["missing field `", "unknown field `", "duplicate field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|rest| rest.split('`').next());
    match (named, path) {
        (Some(name), "") => name.to_string(),
        // Unknown fields are reported at their own path, the others at the parent's.
        (Some(name), p) if p == name || p.ends_with(&format!(".{name}")) => p.to_string(),
        (Some(name), parent) => format!("{parent}.{name}"),
        (None, "") => "body".to_string(),
        (None, p) => p.to_string(),
    }
}

/// serde_json appends " at line L column C"; the field name says more, and the rest is kept.
pub(crate) fn strip_location(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

fn check_range(field: &str, value: f64, min: f64, max: f64, unit: &str) -> Result<(), FieldError> {
    if !value.is_finite() || value < min || value > max {
        return Err(FieldError::new(field, format!("must be within [{min}, {max}] {unit}, got {value}")));
    }
    Ok(())
}

fn check_optional(field: &str, value: Option<f64>, min: f64, max: f64, unit: &str) -> Result<(), FieldError> {
    value.map_or(Ok(()), |v| check_range(field, v, min, max, unit))
}

/// A position in fleetstream's units, whatever protocol it came in, before [`validate`] checks
/// it. The device-facing JSON deserialises straight into it (serde checks types, missing,
/// unknown and duplicate fields; the names are the JSON ones); protocol decoders, here and in
/// `fleetstream-protocols`, build one.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fields<'a> {
    pub device_id: String,
    #[serde(rename = "fix_time", deserialize_with = "fix_time")]
    pub fix_time_ms: EpochMillis,
    pub lat: f64,
    pub lon: f64,
    #[serde(rename = "speed")]
    pub speed_mps: Option<f64>,
    #[serde(rename = "heading")]
    pub heading_deg: Option<f64>,
    #[serde(rename = "altitude")]
    pub altitude_m: Option<f64>,
    #[serde(rename = "accuracy")]
    pub accuracy_m: Option<f64>,
    pub satellites: Option<u8>,
    pub ignition: Option<bool>,
    #[serde(rename = "odometer")]
    pub odometer_m: Option<f64>,
    #[serde(rename = "battery")]
    pub battery_pct: Option<f64>,
    #[serde(borrow, default)]
    pub attributes: RawAttributes<'a>,
    pub event_id: Option<String>,
}

/// The rules every position meets, whichever protocol brought it. Field names in errors are the
/// device-facing JSON names; protocol decoders rename where theirs differ.
pub fn validate(raw: Fields<'_>, received_at_ms: EpochMillis, limits: &Limits) -> Result<Position, FieldError> {
    check_id("device_id", &raw.device_id, limits.max_device_id_bytes)?;
    if let Some(id) = &raw.event_id {
        check_id("event_id", id, limits.max_event_id_bytes)?;
    }
    check_range("lat", raw.lat, -90.0, 90.0, "degrees")?;
    check_range("lon", raw.lon, -180.0, 180.0, "degrees")?;
    check_optional("speed", raw.speed_mps, 0.0, 500.0, "m/s")?;
    check_optional("heading", raw.heading_deg, 0.0, 360.0, "degrees")?;
    check_optional("altitude", raw.altitude_m, -1_000.0, 100_000.0, "m")?;
    check_optional("accuracy", raw.accuracy_m, 0.0, 1_000_000.0, "m")?;
    check_optional("odometer", raw.odometer_m, 0.0, 1e10, "m")?;
    check_optional("battery", raw.battery_pct, 0.0, 100.0, "percent")?;

    let fix_time_ms = raw.fix_time_ms;
    let max_future = received_at_ms + limits.max_future_skew.as_millis() as i64;
    if fix_time_ms > max_future {
        return Err(FieldError::new(
            "fix_time",
            format!(
                "is {} s ahead of the server clock; at most {} s is accepted",
                (fix_time_ms - received_at_ms) / 1000,
                limits.max_future_skew.as_secs()
            ),
        ));
    }
    if fix_time_ms < EARLIEST_FIX_MS {
        return Err(FieldError::new("fix_time", "is before 2000-01-01T00:00:00Z (unset device clock?)"));
    }
    if let Some(max_age) = limits.max_age
        && received_at_ms - fix_time_ms > max_age.as_millis() as i64
    {
        return Err(FieldError::new("fix_time", format!("is older than the accepted {} s", max_age.as_secs())));
    }

    let attributes = Attributes::check(raw.attributes, limits)?;

    let event_id = raw.event_id.unwrap_or_else(|| derived_event_id(&raw.device_id, fix_time_ms));
    Ok(Position {
        v: POSITION_SCHEMA_VERSION,
        event_id,
        device_id: raw.device_id,
        fix_time_ms,
        received_at_ms,
        lat: raw.lat,
        lon: raw.lon,
        speed_mps: raw.speed_mps,
        // 360 and 0 are the same bearing; store one of them.
        heading_deg: raw.heading_deg.map(|h| if h == 360.0 { 0.0 } else { h }),
        altitude_m: raw.altitude_m,
        accuracy_m: raw.accuracy_m,
        satellites: raw.satellites,
        ignition: raw.ignition,
        odometer_m: raw.odometer_m,
        battery_pct: raw.battery_pct,
        attributes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    const NOW: EpochMillis = 1_607_400_000_000; // 2020-12-08T04:00:00Z

    fn parse(json: &str) -> Result<Position, FieldError> {
        parse_position(json, NOW, &Limits::default())
    }

    fn rejected_field(json: &str) -> String {
        match parse(json) {
            Ok(p) => panic!("accepted {json}: {p:?}"),
            Err(e) => {
                assert!(!e.message.is_empty());
                e.field
            }
        }
    }

    const OK: &str =
        r#"{"device_id":"367466930","fix_time":"2020-12-08T01:11:40.250Z","lat":40.48215,"lon":-74.00649}"#;

    #[test]
    fn minimal_position_is_accepted_with_derived_event_id() {
        let p = parse(OK).unwrap();
        assert_eq!(p.device_id, "367466930");
        assert_eq!(p.fix_time_ms, 1_607_389_900_250);
        assert_eq!(p.received_at_ms, NOW);
        assert_eq!((p.lat, p.lon), (40.48215, -74.00649));
        assert_eq!(p.event_id, "367466930@1607389900250");
        assert_eq!(p.v, POSITION_SCHEMA_VERSION);
    }

    #[test]
    fn every_optional_field_is_carried() {
        let p = parse(
            r#"{"device_id":"d","fix_time":1607389900250,"lat":1,"lon":2,"speed":3.5,
            "heading":360,"altitude":12,"accuracy":4,"satellites":9,"ignition":true,"odometer":1000,
            "battery":77.5,"attributes":{"driver":"x"},"event_id":"e-1"}"#,
        )
        .unwrap();
        assert_eq!(p.speed_mps, Some(3.5));
        assert_eq!(p.heading_deg, Some(0.0), "360 degrees is stored as 0");
        assert_eq!(p.altitude_m, Some(12.0));
        assert_eq!(p.accuracy_m, Some(4.0));
        assert_eq!(p.satellites, Some(9));
        assert_eq!(p.ignition, Some(true));
        assert_eq!(p.odometer_m, Some(1000.0));
        assert_eq!(p.battery_pct, Some(77.5));
        assert_eq!(p.attributes.get(), r#"{"driver":"x"}"#);
        assert_eq!(p.event_id, "e-1");
        assert_eq!(p.fix_time_ms, 1_607_389_900_250);
    }

    #[test]
    fn nulls_mean_absent() {
        let p = parse(r#"{"device_id":"d","fix_time":1607389900250,"lat":1,"lon":2,"speed":null,"attributes":null}"#)
            .unwrap();
        assert_eq!(p.speed_mps, None);
        assert!(p.attributes.is_empty());
    }

    #[test]
    fn each_rule_names_its_field() {
        let cases: &[(&str, &str)] = &[
            (r#"{"fix_time":1607389900250,"lat":1,"lon":2}"#, "device_id"),
            (r#"{"device_id":"d","lat":1,"lon":2}"#, "fix_time"),
            (r#"{"device_id":"d","fix_time":1607389900250,"lon":2}"#, "lat"),
            (r#"{"device_id":"d","fix_time":1607389900250,"lat":91,"lon":2}"#, "lat"),
            (r#"{"device_id":"d","fix_time":1607389900250,"lat":-90.0001,"lon":2}"#, "lat"),
            (r#"{"device_id":"d","fix_time":1607389900250,"lat":1,"lon":-181}"#, "lon"),
            (r#"{"device_id":"d","fix_time":1607389900250,"lat":"1","lon":2}"#, "lat"),
            (r#"{"device_id":"d","fix_time":1607389900250,"lat":1e400,"lon":2}"#, "lat"),
            (r#"{"device_id":5,"fix_time":1607389900250,"lat":1,"lon":2}"#, "device_id"),
            (r#"{"device_id":"","fix_time":1607389900250,"lat":1,"lon":2}"#, "device_id"),
            (r#"{"device_id":"a\u0000b","fix_time":1607389900250,"lat":1,"lon":2}"#, "device_id"),
            (r#"{"device_id":"d","fix_time":"2099-01-01T00:00:00Z","lat":1,"lon":2}"#, "fix_time"),
            (r#"{"device_id":"d","fix_time":"1999-12-31T23:59:59Z","lat":1,"lon":2}"#, "fix_time"),
            (r#"{"device_id":"d","fix_time":"2020-12-08 01:11:40","lat":1,"lon":2}"#, "fix_time"),
            (r#"{"device_id":"d","fix_time":1.5,"lat":1,"lon":2}"#, "fix_time"),
            (r#"{"device_id":"d","fix_time":1607389900250,"lat":1,"lon":2,"speed":-1}"#, "speed"),
            (r#"{"device_id":"d","fix_time":1607389900250,"lat":1,"lon":2,"heading":361}"#, "heading"),
            (r#"{"device_id":"d","fix_time":1607389900250,"lat":1,"lon":2,"satellites":300}"#, "satellites"),
            (r#"{"device_id":"d","fix_time":1607389900250,"lat":1,"lon":2,"battery":101}"#, "battery"),
            (r#"{"device_id":"d","fix_time":1607389900250,"lat":1,"lon":2,"ignition":"yes"}"#, "ignition"),
            (r#"{"device_id":"d","fix_time":1607389900250,"lat":1,"lon":2,"attributes":[1]}"#, "attributes"),
            (r#"{"device_id":"d","fix_time":1607389900250,"lat":1,"lon":2,"colour":"red"}"#, "colour"),
            (r#"{"device_id":"d","fix_time":1607389900250,"lat":1,"lat":2,"lon":2}"#, "lat"),
            (r#"{"device_id":"d","fix_time":1607389900250,"lat":1,"lon":2,"event_id":""}"#, "event_id"),
            (r#"[1,2]"#, "body"),
            (r#""just a string""#, "body"),
        ];
        for (json, field) in cases {
            assert_eq!(&rejected_field(json), field, "for {json}");
        }
    }

    #[test]
    fn trailing_garbage_and_truncation_are_body_errors() {
        assert_eq!(rejected_field(&format!("{OK} x")), "body");
        assert_eq!(rejected_field(r#"{"device_id":"bad","fix_t"#), "body");
        assert_eq!(rejected_field(r#"{"device_id":"d","attributes":{"k"#), "attributes");
    }

    #[test]
    fn sizes_are_bounded() {
        let long_id = "x".repeat(5 * 1024);
        let e = parse(&format!(r#"{{"device_id":"{long_id}","fix_time":1607389900250,"lat":1,"lon":2}}"#)).unwrap_err();
        assert_eq!(e.field, "device_id");
        assert!(e.message.contains("128"), "{e}");

        let many: Vec<String> = (0..65).map(|i| format!(r#""k{i}":1"#)).collect();
        let e = parse(&format!(
            r#"{{"device_id":"d","fix_time":1607389900250,"lat":1,"lon":2,"attributes":{{{}}}}}"#,
            many.join(",")
        ))
        .unwrap_err();
        assert_eq!(e.field, "attributes");

        let big = "v".repeat(5000);
        let e = parse(&format!(
            r#"{{"device_id":"d","fix_time":1607389900250,"lat":1,"lon":2,"attributes":{{"k":"{big}"}}}}"#
        ))
        .unwrap_err();
        assert_eq!(e.field, "attributes");
        assert!(e.message.contains("4096"), "{e}");
    }

    #[test]
    fn max_age_applies_only_when_configured() {
        let old = r#"{"device_id":"d","fix_time":"2010-01-01T00:00:00Z","lat":1,"lon":2}"#;
        assert!(parse(old).is_ok());
        let limits = Limits { max_age: Some(Duration::from_secs(86_400)), ..Limits::default() };
        assert_eq!(parse_position(old, NOW, &limits).unwrap_err().field, "fix_time");
    }

    #[test]
    fn nested_attribute_errors_carry_the_path() {
        assert_eq!(field_of("attributes", "invalid type"), "attributes");
        assert_eq!(field_of(".", "missing field `lat`"), "lat");
        assert_eq!(field_of("?", "EOF while parsing an object"), "body");
        assert_eq!(field_of("attributes.?", "EOF while parsing an object"), "attributes");
        assert_eq!(field_of("attributes.k[0][0][0]", "recursion limit exceeded"), "attributes.k");
        assert_eq!(field_of("[0]", "invalid type"), "body");
        let long = "a".repeat(500);
        assert_eq!(field_of(&format!("attributes.{long}"), "x"), "attributes");
        assert_eq!(field_of("", &format!("unknown field `{long}`, expected one of")), "body");
        let longest = "a".repeat(MAX_FIELD_PATH - "attributes.".len());
        assert_eq!(field_of(&format!("attributes.{longest}"), "x"), format!("attributes.{longest}"));
        assert_eq!(field_of("location", "missing field `coords`"), "location.coords");
    }

    #[test]
    fn schema_file_lists_exactly_the_accepted_fields() {
        let schema: Value = serde_json::from_str(crate::POSITION_JSON_SCHEMA).unwrap();
        let mut in_schema: Vec<&str> = schema["properties"].as_object().unwrap().keys().map(String::as_str).collect();
        let mut in_code = DEVICE_FIELDS.to_vec();
        in_schema.sort_unstable();
        in_code.sort_unstable();
        assert_eq!(in_schema, in_code);
        let required: Vec<&str> = schema["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert_eq!(required, ["device_id", "fix_time", "lat", "lon"]);
        // Every documented field is accepted by the decoder.
        let all = r#"{"device_id":"d","fix_time":1607389900250,"lat":1,"lon":2,"speed":1,"heading":1,
            "altitude":1,"accuracy":1,"satellites":1,"ignition":false,"odometer":1,"battery":1,
            "attributes":{},"event_id":"e"}"#;
        parse(all).unwrap();
        let keys: Value = serde_json::from_str(all).unwrap();
        assert_eq!(keys.as_object().unwrap().len(), DEVICE_FIELDS.len());
    }

    proptest! {
        #[test]
        fn in_range_coordinates_are_accepted_exactly(lat in -90.0f64..=90.0, lon in -180.0f64..=180.0) {
            let json = format!(r#"{{"device_id":"d","fix_time":1607389900250,"lat":{lat},"lon":{lon}}}"#);
            let p = parse(&json).unwrap();
            prop_assert_eq!((p.lat, p.lon), (lat, lon));
        }

        #[test]
        fn out_of_range_latitudes_are_rejected(lat in prop_oneof![-1e6f64..-90.000001, 90.000001f64..1e6]) {
            let json = format!(r#"{{"device_id":"d","fix_time":1607389900250,"lat":{lat},"lon":0}}"#);
            prop_assert_eq!(parse(&json).unwrap_err().field, "lat");
        }

        #[test]
        fn arbitrary_text_never_panics(text in ".{0,200}") {
            let _ = parse(&text);
        }
    }
}
