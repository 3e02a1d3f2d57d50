//! Proptest strategies for hostile fences, shared by this crate's tests and the API's (feature
//! `testing`): arbitrary JSON, and GeoJSON-shaped features whose coordinates are arbitrarily
//! nested arrays of numbers (too short, too long, out of range, unclosed), which is where
//! parsers index positions and panic.

use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Names that GeoJSON readers look for, so that arbitrary objects often look like GeoJSON.
const KEYS: &[&str] =
    &["type", "id", "geometry", "coordinates", "properties", "radius_m", "name", "features", "geometries", "bbox"];
const TYPES: &[&str] = &[
    "Feature",
    "FeatureCollection",
    "Point",
    "Polygon",
    "MultiPolygon",
    "LineString",
    "MultiPoint",
    "MultiLineString",
    "GeometryCollection",
];

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec![0.0, 1.0, -1.0, 180.0, -180.0, 90.0, 180.5, 90.5, 1e300, -1e300, 5e-324]),
        -200.0f64..200.0,
        any::<f64>().prop_filter("JSON numbers are finite", |x| x.is_finite()),
    ]
    .prop_map(Value::from)
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        number(),
        any::<i64>().prop_map(Value::from),
        "[a-z\\x00-\\x1f]{0,8}".prop_map(Value::from),
        prop::sample::select(TYPES).prop_map(Value::from),
    ]
}

/// Any JSON value, nested up to a few levels, with GeoJSON's member names and types frequent.
pub fn any_json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(5, 96, 6, |inner| {
        let key = prop_oneof![prop::sample::select(KEYS).prop_map(String::from), "[a-z]{1,4}"];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key, inner), 0..6).prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

/// Arrays of numbers nested 0 to 4 deep, of any length: positions, rings, polygons, as a hostile
/// client would send them.
pub fn coordinates() -> impl Strategy<Value = Value> {
    number().prop_recursive(4, 64, 6, |inner| prop::collection::vec(inner, 0..6).prop_map(Value::Array))
}

/// A Feature of any geometry type, coordinates, id and radius.
pub fn feature() -> impl Strategy<Value = Value> {
    let id = prop_oneof![Just(Value::Null), "[a-z\\x00]{0,4}".prop_map(Value::from), number()];
    (prop::sample::select(TYPES), coordinates(), id, prop_oneof![Just(Value::Null), number()]).prop_map(
        |(kind, coordinates, id, radius)| {
            let mut properties = Map::new();
            properties.insert("radius_m".into(), radius);
            json!({"type": "Feature", "id": id, "properties": properties,
                   "geometry": {"type": kind, "coordinates": coordinates}})
        },
    )
}

/// Either kind of hostile fence.
pub fn hostile_fence() -> impl Strategy<Value = Value> {
    prop_oneof![any_json(), feature()]
}
