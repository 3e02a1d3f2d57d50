//! The OsmAnd protocol, as the Traccar Client apps (Android, iOS) and OsmAnd send it.
//!
//! Two shapes reach the OsmAnd port:
//! - parameters, in the query string of a GET or POST, or a form body:
//!   `id|deviceid, timestamp, lat, lon | location=lat,lon, speed (knots), bearing|heading,
//!   altitude, accuracy, hdop, batt, charge, valid, driverUniqueId`; `cell` and `wifi` (network
//!   fixes) may repeat and are kept as arrays; other parameters are kept as attributes, except
//!   secrets (`token`), which are never stored;
//! - the JSON body of the newer apps: `{"device_id", "location": {"timestamp", "coords":
//!   {latitude, longitude, speed (m/s), heading, accuracy, altitude}, "battery": {level (0..1),
//!   is_charging}, "is_moving", "odometer", "event", "extras", "uuid"}}`, where `location` may
//!   also be an array (batch sync): [`split_osmand_json`] splits it, bounded like any batch, and
//!   [`parse_osmand_location`] decodes each location on its own.
//!
//! Both end in the same [`crate::input::validate`] as fleetstream's own JSON; errors name the
//! parameter as the device sent it.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::body::{BodyError, array_items};
use crate::dead_letter::redact::is_secret_name;
use crate::input::{FieldError, Fields, Limits, deserialize_named, validate};
use crate::position::Position;
use crate::time::{EpochMillis, parse_rfc3339_millis};

/// One knot in metres per second (exact: 1852 m per hour).
pub const KNOT_MPS: f64 = 1852.0 / 3600.0;

/// The parameters this decoder reads itself; any other becomes an attribute.
pub const OSMAND_PARAMS: &[&str] = &[
    "id",
    "deviceid",
    "timestamp",
    "lat",
    "lon",
    "location",
    "speed",
    "bearing",
    "heading",
    "altitude",
    "accuracy",
    "batt",
    "hdop",
    "charge",
    "valid",
    "cell",
    "wifi",
    "token",
];

/// Most parameters one OsmAnd request may carry.
pub const MAX_PARAMS: usize = 64;

/// Parameters that may repeat: the apps send one `cell` per cell tower
/// (`mcc,mnc,lac,cid[,signal]`) and one `wifi` per access point (`mac,signal`) with network
/// fixes. Each becomes an attribute holding an array of the values as sent.
pub const NETWORK_PARAMS: &[&str] = &["cell", "wifi"];

/// Most values of one network parameter in one request.
pub const MAX_NETWORK_ENTRIES: usize = 32;

/// Longest value of a network parameter (a cell with signal is under 40 bytes).
pub const MAX_NETWORK_VALUE_BYTES: usize = 64;

/// OsmAnd timestamps: Unix seconds (with or without a fraction), Unix milliseconds, or ISO 8601
/// with or without an offset (no offset means UTC, as Traccar reads it).
pub fn parse_osmand_time(text: &str) -> Result<EpochMillis, String> {
    let text = text.trim();
    if let Ok(n) = text.parse::<i64>() {
        // Seconds until the year 2286; anything larger is already milliseconds.
        return Ok(if n.abs() < 10_000_000_000 { n * 1000 } else { n });
    }
    if let Ok(secs) = text.parse::<f64>() {
        if secs.is_finite() && secs.abs() < 1e10 {
            return Ok((secs * 1000.0).round() as i64);
        }
        return Err(format!("{text:?} is not a Unix time"));
    }
    parse_rfc3339_millis(text)
        .or_else(|_| parse_rfc3339_millis(&format!("{}Z", text.replacen(' ', "T", 1))))
        .map_err(|_| format!("{text:?} is neither Unix seconds nor an ISO 8601 time"))
}

fn parse_number(name: &str, value: &str) -> Result<f64, FieldError> {
    value.trim().parse::<f64>().map_err(|_| FieldError::new(name, format!("{value:?} is not a number")))
}

fn parse_bool(name: &str, value: &str) -> Result<bool, FieldError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(FieldError::new(name, format!("{value:?} is not true or false"))),
    }
}

/// An unknown parameter's value as the most specific JSON value it reads as.
fn attribute_value(value: &str) -> Value {
    if let Ok(b) = value.parse::<bool>() {
        return Value::Bool(b);
    }
    match value.parse::<f64>() {
        Ok(n) if n.is_finite() && !value.starts_with('+') => {
            serde_json::Number::from_f64(n).map_or(Value::String(value.into()), Value::Number)
        }
        _ => Value::String(value.into()),
    }
}

/// Appends one value of a repeatable network parameter to its array attribute.
fn push_network(attributes: &mut Map<String, Value>, name: &str, value: &str) -> Result<(), FieldError> {
    if value.len() > MAX_NETWORK_VALUE_BYTES {
        return Err(FieldError::new(
            name,
            format!("a value is {} bytes, the limit is {MAX_NETWORK_VALUE_BYTES}", value.len()),
        ));
    }
    let entries = attributes.entry(name).or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(entries) = entries {
        if entries.len() == MAX_NETWORK_ENTRIES {
            return Err(FieldError::new(name, format!("appears more than {MAX_NETWORK_ENTRIES} times")));
        }
        entries.push(Value::String(value.into()));
    }
    Ok(())
}

/// Parses the parameters of one OsmAnd request (query string and form body together).
pub fn parse_osmand_params(
    params: &[(String, String)],
    received_at_ms: EpochMillis,
    limits: &Limits,
) -> Result<Position, FieldError> {
    if params.len() > MAX_PARAMS {
        return Err(FieldError::new("body", format!("{} parameters, the limit is {MAX_PARAMS}", params.len())));
    }
    let mut fields = Fields { fix_time_ms: received_at_ms, ..Fields::default() };
    let mut attributes = Map::new();
    let (mut id_param, mut heading_param) = ("id", "bearing");
    // Coordinates from `location=lat,lon` are named `location` in errors, as sent.
    let (mut lat_param, mut lon_param) = ("lat", "lon");
    let (mut have_id, mut have_lat, mut have_lon) = (false, false, false);
    let mut seen: Vec<&str> = Vec::new();
    for (key, value) in params {
        let key = key.as_str();
        // Credentials are checked by ingest and never stored.
        if is_secret_name(key) {
            continue;
        }
        if NETWORK_PARAMS.contains(&key) {
            push_network(&mut attributes, key, value)?;
            continue;
        }
        if seen.contains(&key) {
            return Err(FieldError::new(key, "appears more than once"));
        }
        seen.push(key);
        match key {
            "id" | "deviceid" => {
                fields.device_id = value.clone();
                id_param = key;
                have_id = true;
            }
            "timestamp" => fields.fix_time_ms = parse_osmand_time(value).map_err(|e| FieldError::new(key, e))?,
            "lat" => {
                fields.lat = parse_number(key, value)?;
                have_lat = true;
            }
            "lon" => {
                fields.lon = parse_number(key, value)?;
                have_lon = true;
            }
            "location" => {
                let (lat, lon) = value
                    .split_once(',')
                    .ok_or_else(|| FieldError::new(key, format!("{value:?} is not \"lat,lon\"")))?;
                fields.lat = parse_number(key, lat)?;
                fields.lon = parse_number(key, lon)?;
                (have_lat, have_lon) = (true, true);
                (lat_param, lon_param) = (key, key);
            }
            "speed" => fields.speed_mps = Some(parse_number(key, value)? * KNOT_MPS),
            "bearing" | "heading" => {
                fields.heading_deg = Some(parse_number(key, value)?);
                heading_param = key;
            }
            "altitude" => fields.altitude_m = Some(parse_number(key, value)?),
            "accuracy" => fields.accuracy_m = Some(parse_number(key, value)?),
            "batt" => fields.battery_pct = Some(parse_number(key, value)?),
            "hdop" => {
                let hdop = parse_number(key, value)?;
                attributes.insert("hdop".into(), attribute_value(&hdop.to_string()));
            }
            "charge" | "valid" => {
                attributes.insert(key.into(), Value::Bool(parse_bool(key, value)?));
            }
            other => {
                attributes.insert(other.into(), attribute_value(value));
            }
        }
    }
    if !have_id {
        return Err(FieldError::new("id", "is missing (send id or deviceid)"));
    }
    if !have_lat {
        return Err(FieldError::new("lat", "is missing (send lat and lon, or location=lat,lon)"));
    }
    if !have_lon {
        return Err(FieldError::new("lon", "is missing (send lat and lon, or location=lat,lon)"));
    }
    fields.attributes = attributes.into();
    validate(fields, received_at_ms, limits).map_err(|mut e| {
        e.field = match e.field.as_str() {
            "device_id" => id_param,
            "lat" => lat_param,
            "lon" => lon_param,
            "fix_time" => "timestamp",
            "heading" => heading_param,
            "battery" => "batt",
            "speed" => "speed",
            other => return FieldError::new(other, e.message),
        }
        .to_string();
        e
    })
}

#[derive(Debug, Deserialize)]
struct JsonBody<'a> {
    device_id: String,
    #[serde(borrow)]
    location: &'a RawValue,
}

#[derive(Debug, Deserialize)]
struct JsonLocation {
    timestamp: String,
    coords: JsonCoords,
    battery: Option<JsonBattery>,
    is_moving: Option<bool>,
    odometer: Option<f64>,
    event: Option<String>,
    uuid: Option<String>,
    extras: Option<Map<String, Value>>,
}

#[derive(Debug, Deserialize)]
struct JsonCoords {
    latitude: f64,
    longitude: f64,
    speed: Option<f64>,
    heading: Option<f64>,
    accuracy: Option<f64>,
    altitude: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct JsonBattery {
    level: Option<f64>,
    is_charging: Option<bool>,
}

/// An OsmAnd JSON body split into its locations, each still its own JSON text.
#[derive(Debug)]
pub struct OsmandJson<'a> {
    pub device_id: String,
    pub locations: Vec<&'a str>,
}

/// Splits the JSON body variant into its locations (batch sync sends several), at most
/// `max_items` of them. `Err` when the body as a whole is refused.
pub fn split_osmand_json(json: &str, max_items: usize) -> Result<OsmandJson<'_>, BodyError> {
    let body: JsonBody<'_> = deserialize_named(json).map_err(|e| {
        // The location is taken as raw text, unread: a syntax error inside it is named where it
        // is (`location.timestamp`) by a second reading.
        BodyError::Field(deserialize_named::<Value>(json).err().unwrap_or(e))
    })?;
    let location = body.location.get();
    let locations = if location.starts_with('[') {
        array_items(location, max_items).map_err(|e| match e {
            BodyError::BadArray(message) => BodyError::Field(FieldError::new("location", message)),
            other => other,
        })?
    } else {
        vec![location]
    };
    if locations.is_empty() {
        return Err(BodyError::Field(FieldError::new("location", "holds no location")));
    }
    Ok(OsmandJson { device_id: body.device_id, locations })
}

/// Decodes one location of a split body; errors name the path from the body (`location.…`).
pub fn parse_osmand_location(
    device_id: &str,
    location: &str,
    received_at_ms: EpochMillis,
    limits: &Limits,
) -> Result<Position, FieldError> {
    let l: JsonLocation = deserialize_named(location).map_err(|e| match e.field.as_str() {
        "body" => FieldError::new("location", e.message),
        field => FieldError::new(format!("location.{field}"), e.message),
    })?;
    json_location(device_id, l, received_at_ms, limits)
}

/// Splits and decodes at once, with no batch limit: one result per location.
pub fn parse_osmand_json(
    json: &str,
    received_at_ms: EpochMillis,
    limits: &Limits,
) -> Result<Vec<Result<Position, FieldError>>, BodyError> {
    let body = split_osmand_json(json, usize::MAX)?;
    Ok(body.locations.iter().map(|l| parse_osmand_location(&body.device_id, l, received_at_ms, limits)).collect())
}

/// Longest device id [`single_location_body`] keeps.
const MAX_SINGLE_BODY_DEVICE_ID_BYTES: usize = 256;

/// One location of a body as a body of its own, `{"device_id":…,"location":…}`: what a dead
/// letter keeps of it. The device id is cut, so that a huge one cannot crowd out the location.
pub fn single_location_body(device_id: &str, location: &str) -> String {
    let mut cut = device_id.len().min(MAX_SINGLE_BODY_DEVICE_ID_BYTES);
    while !device_id.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(r#"{{"device_id":{},"location":{location}}}"#, Value::from(&device_id[..cut]))
}

fn json_location(
    device_id: &str,
    l: JsonLocation,
    received_at_ms: EpochMillis,
    limits: &Limits,
) -> Result<Position, FieldError> {
    // The apps send -1 for "unknown" speed, heading and battery level.
    let known = |v: Option<f64>| v.filter(|x| *x >= 0.0);
    // Members of `extras` named like a secret are left out by the attribute checks.
    let mut attributes = l.extras.unwrap_or_default();
    if let Some(moving) = l.is_moving {
        attributes.insert("motion".into(), Value::Bool(moving));
    }
    if let Some(event) = l.event {
        attributes.insert("event".into(), Value::String(event));
    }
    if let Some(charging) = l.battery.as_ref().and_then(|b| b.is_charging) {
        attributes.insert("charge".into(), Value::Bool(charging));
    }
    let fields = Fields {
        device_id: device_id.to_string(),
        fix_time_ms: parse_osmand_time(&l.timestamp).map_err(|e| FieldError::new("location.timestamp", e))?,
        lat: l.coords.latitude,
        lon: l.coords.longitude,
        speed_mps: known(l.coords.speed),
        heading_deg: known(l.coords.heading),
        altitude_m: l.coords.altitude,
        accuracy_m: known(l.coords.accuracy),
        satellites: None,
        ignition: None,
        odometer_m: l.odometer,
        battery_pct: known(l.battery.and_then(|b| b.level)).map(|level| level * 100.0),
        attributes: attributes.into(),
        event_id: l.uuid,
    };
    validate(fields, received_at_ms, limits).map_err(|mut e| {
        e.field = match e.field.as_str() {
            "device_id" => "device_id",
            "fix_time" => "location.timestamp",
            "lat" => "location.coords.latitude",
            "lon" => "location.coords.longitude",
            "speed" => "location.coords.speed",
            "heading" => "location.coords.heading",
            "altitude" => "location.coords.altitude",
            "accuracy" => "location.coords.accuracy",
            "battery" => "location.battery.level",
            "odometer" => "location.odometer",
            "event_id" => "location.uuid",
            "attributes" => "location.extras",
            other => return FieldError::new(other, e.message),
        }
        .to_string();
        e
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: EpochMillis = 1_700_000_100_000;

    fn params(query: &str) -> Vec<(String, String)> {
        query
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k.to_string(), v.to_string())
            })
            .collect()
    }

    fn parse(query: &str) -> Result<Position, FieldError> {
        parse_osmand_params(&params(query), NOW, &Limits::default())
    }

    #[test]
    fn traccar_client_request_is_normalised() {
        let p = parse("id=123456&timestamp=1700000000&lat=40.6892&lon=-74.0445&speed=10.0&bearing=271.5&altitude=12.3&accuracy=5.0&batt=87.0&charge=true&hdop=0.9&valid=true").unwrap();
        assert_eq!(p.device_id, "123456");
        assert_eq!(p.fix_time_ms, 1_700_000_000_000);
        assert_eq!((p.lat, p.lon), (40.6892, -74.0445));
        assert!((p.speed_mps.unwrap() - 5.144_444).abs() < 1e-6, "10 knots in m/s");
        assert_eq!(p.heading_deg, Some(271.5));
        assert_eq!(p.altitude_m, Some(12.3));
        assert_eq!(p.accuracy_m, Some(5.0));
        assert_eq!(p.battery_pct, Some(87.0));
        assert_eq!(p.attributes.to_value()["charge"], true);
        assert_eq!(p.attributes.to_value()["valid"], true);
        assert_eq!(p.attributes.to_value()["hdop"], 0.9);
        assert_eq!(p.event_id, "123456@1700000000000");
    }

    #[test]
    fn alternative_names_and_location_pair() {
        let p =
            parse("deviceid=abc&location=1.5,2.5&heading=90&timestamp=2023-11-14T22:13:20Z&driverUniqueId=d7&custom=x")
                .unwrap();
        assert_eq!(p.device_id, "abc");
        assert_eq!((p.lat, p.lon), (1.5, 2.5));
        assert_eq!(p.heading_deg, Some(90.0));
        assert_eq!(p.fix_time_ms, 1_700_000_000_000);
        assert_eq!(p.attributes.to_value()["driverUniqueId"], "d7");
        assert_eq!(p.attributes.to_value()["custom"], "x");
    }

    #[test]
    fn timestamps_in_every_form_traccar_accepts() {
        assert_eq!(parse_osmand_time("1700000000"), Ok(1_700_000_000_000));
        assert_eq!(parse_osmand_time("1700000000.25"), Ok(1_700_000_000_250));
        assert_eq!(parse_osmand_time("1700000000123"), Ok(1_700_000_000_123));
        assert_eq!(parse_osmand_time("2023-11-14T22:13:20.5Z"), Ok(1_700_000_000_500));
        assert_eq!(parse_osmand_time("2023-11-14 22:13:20"), Ok(1_700_000_000_000));
        assert_eq!(parse_osmand_time("2023-11-14T22:13:20"), Ok(1_700_000_000_000));
        assert!(parse_osmand_time("yesterday").is_err());
        assert!(parse_osmand_time("1e300").is_err());
    }

    #[test]
    fn missing_timestamp_means_now() {
        assert_eq!(parse("id=a&lat=1&lon=2").unwrap().fix_time_ms, NOW);
    }

    #[test]
    fn errors_name_the_parameter_as_sent() {
        let cases = [
            ("timestamp=1700000000&lat=1&lon=2", "id"),
            ("id=a&timestamp=1700000000&lon=2", "lat"),
            ("id=a&timestamp=1700000000&lat=1", "lon"),
            ("id=a&lat=91&lon=2", "lat"),
            ("id=a&lat=1&lon=200", "lon"),
            ("id=a&lat=NaN&lon=2", "lat"),
            ("id=a&lat=inf&lon=2", "lat"),
            ("id=a&lat=north&lon=2", "lat"),
            ("id=a&location=1;2", "location"),
            ("id=a&location=91,0", "location"),
            ("id=a&location=1,200", "location"),
            ("id=a&location=1,east", "location"),
            ("id=a&lat=1&lon=2&speed=-3", "speed"),
            ("id=a&lat=1&lon=2&speed=fast", "speed"),
            ("id=a&lat=1&lon=2&bearing=400", "bearing"),
            ("id=a&lat=1&lon=2&heading=400", "heading"),
            ("id=a&lat=1&lon=2&batt=150", "batt"),
            ("id=a&lat=1&lon=2&charge=maybe", "charge"),
            ("id=a&lat=1&lon=2&timestamp=4102444800", "timestamp"),
            ("id=a&lat=1&lon=2&timestamp=soon", "timestamp"),
            ("id=&lat=1&lon=2", "id"),
            ("deviceid=&lat=1&lon=2", "deviceid"),
            ("id=a&id=b&lat=1&lon=2", "id"),
        ];
        for (query, field) in cases {
            match parse(query) {
                Ok(p) => panic!("accepted {query}: {p:?}"),
                Err(e) => assert_eq!(e.field, field, "{query}: {e}"),
            }
        }
    }

    #[test]
    fn too_many_parameters_are_refused() {
        let query: String = (0..=MAX_PARAMS).map(|i| format!("k{i}=1&")).collect();
        assert_eq!(parse(&format!("{query}id=a&lat=1&lon=2")).unwrap_err().field, "body");
    }

    #[test]
    fn token_parameters_are_never_stored() {
        let p = parse("id=a&lat=1&lon=2&token=secret&TOKEN=s2&access_token=s3&token=again").unwrap();
        assert!(p.attributes.is_empty(), "{:?}", p.attributes);
    }

    #[test]
    fn repeated_cell_and_wifi_are_kept_as_arrays() {
        let p = parse(
            "id=a&lat=1&lon=2&cell=310,410,7033,17811,-70&cell=310,410,7033,17812&wifi=aa-bb-cc-dd-ee-ff,-60\
             &wifi=11-22-33-44-55-66,-72&driverUniqueId=d7",
        )
        .unwrap();
        assert_eq!(
            p.attributes.to_value()["cell"],
            serde_json::json!(["310,410,7033,17811,-70", "310,410,7033,17812"])
        );
        assert_eq!(
            p.attributes.to_value()["wifi"],
            serde_json::json!(["aa-bb-cc-dd-ee-ff,-60", "11-22-33-44-55-66,-72"])
        );
        assert_eq!(p.attributes.to_value()["driverUniqueId"], "d7");
        // One value is an array of one, so that readers see one type.
        assert_eq!(
            parse("id=a&lat=1&lon=2&wifi=aa-bb,-60").unwrap().attributes.to_value()["wifi"],
            serde_json::json!(["aa-bb,-60"])
        );
    }

    #[test]
    fn network_parameters_are_bounded_in_count_and_size() {
        let many: String = (0..=MAX_NETWORK_ENTRIES).map(|i| format!("&cell=1,2,3,{i}")).collect();
        let e = parse(&format!("id=a&lat=1&lon=2{many}")).unwrap_err();
        assert_eq!(e.field, "cell", "{e}");
        let long = "f".repeat(MAX_NETWORK_VALUE_BYTES + 1);
        let e = parse(&format!("id=a&lat=1&lon=2&wifi={long}")).unwrap_err();
        assert_eq!(e.field, "wifi", "{e}");
        assert!(e.message.contains(&MAX_NETWORK_VALUE_BYTES.to_string()), "{e}");
    }

    const JSON: &str = r#"{"device_id":"phone-7","location":{"timestamp":"2023-11-14T22:13:20.125Z",
        "coords":{"latitude":40.7,"longitude":-74.0,"speed":3.5,"heading":-1,"accuracy":8,"altitude":20},
        "battery":{"level":0.42,"is_charging":false},"is_moving":true,"odometer":1234.5,
        "event":"motionchange","uuid":"u-1","activity":{"type":"walking"},"extras":{"trip":"t9"}}}"#;

    #[test]
    fn json_variant_is_normalised() {
        let ps = parse_osmand_json(JSON, NOW, &Limits::default()).unwrap();
        assert_eq!(ps.len(), 1);
        let p = ps[0].as_ref().unwrap();
        assert_eq!(p.device_id, "phone-7");
        assert_eq!(p.fix_time_ms, 1_700_000_000_125);
        assert_eq!((p.lat, p.lon), (40.7, -74.0));
        assert_eq!(p.speed_mps, Some(3.5), "JSON speed is already m/s");
        assert_eq!(p.heading_deg, None, "-1 means unknown");
        assert_eq!(p.accuracy_m, Some(8.0));
        assert_eq!(p.altitude_m, Some(20.0));
        assert!((p.battery_pct.unwrap() - 42.0).abs() < 1e-9);
        assert_eq!(p.odometer_m, Some(1234.5));
        assert_eq!(p.event_id, "u-1");
        assert_eq!(p.attributes.to_value()["motion"], true);
        assert_eq!(p.attributes.to_value()["charge"], false);
        assert_eq!(p.attributes.to_value()["event"], "motionchange");
        assert_eq!(p.attributes.to_value()["trip"], "t9");
    }

    #[test]
    fn json_batch_sync_gives_one_result_per_location() {
        let body = r#"{"device_id":"p","location":[
            {"timestamp":"2023-11-14T22:13:20Z","coords":{"latitude":1,"longitude":2}},
            {"timestamp":"2023-11-14T22:13:21Z","coords":{"latitude":95,"longitude":2}}]}"#;
        let ps = parse_osmand_json(body, NOW, &Limits::default()).unwrap();
        assert!(ps[0].is_ok());
        assert_eq!(ps[1].as_ref().unwrap_err().field, "location.coords.latitude");
    }

    fn body_error(json: &str) -> String {
        parse_osmand_json(json, NOW, &Limits::default()).unwrap_err().field_error().field
    }

    fn location_error(json: &str) -> String {
        parse_osmand_json(json, NOW, &Limits::default()).unwrap()[0].as_ref().unwrap_err().field.clone()
    }

    #[test]
    fn json_errors_name_the_path() {
        let missing = r#"{"device_id":"p","location":{"timestamp":"2023-11-14T22:13:20Z","coords":{"longitude":2}}}"#;
        assert_eq!(location_error(missing), "location.coords.latitude");
        assert_eq!(body_error(r#"{"location":[]}"#), "device_id");
        assert_eq!(body_error(r#"{"device_id":"p","location":[]}"#), "location");
        assert_eq!(body_error(r#"{"device_id":"p""#), "body");
        assert_eq!(body_error(r#"{"device_id":"p","location":{"timestamp":"#), "location.timestamp");
        let bad_time = r#"{"device_id":"p","location":{"timestamp":"later","coords":{"latitude":1,"longitude":2}}}"#;
        assert_eq!(location_error(bad_time), "location.timestamp");
        assert_eq!(location_error(r#"{"device_id":"p","location":[7]}"#), "location");
        assert_eq!(location_error(r#"{"device_id":"p","location":{"timestamp":"1","coords":[]}}"#), "location.coords");
    }

    #[test]
    fn json_batches_obey_the_item_limit() {
        let location = r#"{"timestamp":"2023-11-14T22:13:20Z","coords":{"latitude":1,"longitude":2}}"#;
        let body = |n: usize| format!(r#"{{"device_id":"p","location":[{}]}}"#, vec![location; n].join(","));
        assert_eq!(split_osmand_json(&body(3), 3).unwrap().locations, vec![location; 3]);
        assert_eq!(split_osmand_json(&body(4), 3).unwrap_err(), BodyError::TooManyItems { count: 4, limit: 3 });
        // A single location counts as one.
        let one = format!(r#"{{"device_id":"p","location":{location}}}"#);
        assert_eq!(split_osmand_json(&one, 1).unwrap().locations, vec![location]);
    }

    #[test]
    fn each_location_is_its_own_item() {
        let body = r#"{"device_id":"p","location":[
            {"timestamp":"2023-11-14T22:13:20Z","coords":{"latitude":1,"longitude":2}},
            {"timestamp":"2023-11-14T22:13:21Z","coords":{"latitude":95,"longitude":2}}]}"#;
        let split = split_osmand_json(body, 10).unwrap();
        assert_eq!(
            split.locations[1],
            r#"{"timestamp":"2023-11-14T22:13:21Z","coords":{"latitude":95,"longitude":2}}"#
        );
        assert_eq!(
            single_location_body(&split.device_id, split.locations[1]),
            format!(r#"{{"device_id":"p","location":{}}}"#, split.locations[1])
        );
        let long = "é".repeat(1000);
        let kept = single_location_body(&long, "{}");
        assert!(kept.len() < 300 && kept.ends_with(r#","location":{}}"#), "{kept}");
    }

    #[test]
    fn secrets_in_extras_are_never_stored() {
        let body = r#"{"device_id":"p","location":{"timestamp":"2023-11-14T22:13:20Z",
            "coords":{"latitude":1,"longitude":2},"extras":{"trip":"t9","token":"s","Auth_Token":"s"}}}"#;
        let p = parse_osmand_json(body, NOW, &Limits::default()).unwrap().remove(0).unwrap();
        assert_eq!(p.attributes.to_value(), serde_json::json!({"trip": "t9"}));
    }

    proptest! {
        #[test]
        fn knots_convert_exactly(knots in 0.0f64..900.0) {
            let p = parse(&format!("id=a&lat=1&lon=2&speed={knots}")).unwrap();
            prop_assert!((p.speed_mps.unwrap() - knots * 0.514_444_444_444).abs() < 1e-9);
        }

        #[test]
        fn arbitrary_params_never_panic(pairs in proptest::collection::vec((".{0,12}", ".{0,24}"), 0..12)) {
            let params: Vec<(String, String)> = pairs;
            let _ = parse_osmand_params(&params, NOW, &Limits::default());
        }

        #[test]
        fn arbitrary_json_never_panics(text in ".{0,200}") {
            let _ = parse_osmand_json(&text, NOW, &Limits::default());
        }
    }
}
