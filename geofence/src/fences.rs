//! Geofences and the spatial index that finds the ones containing a point.
//!
//! A fence is an area (polygon or multipolygon, holes allowed) or a circle. Fences come from
//! GeoJSON: a Feature with a (Multi)Polygon, or a Point with `properties.radius_m` for a circle.
//! The index is an R-tree over cached bounding boxes, so a position is tested exactly only
//! against the few fences whose box contains it: 10,000 fences cost about what 10 do.

use geo::{
    BoundingRect, ClosestPoint, Contains, Coord, Distance, Haversine, LineString, MultiPolygon, Point, Polygon, Rect,
};
use rstar::primitives::{GeomWithData, Rectangle};
use rstar::{AABB, RTree};
use serde_json::{Map, Value};

/// Metres per degree of latitude (mean).
const M_PER_DEG_LAT: f64 = 111_320.0;

#[derive(Debug, Clone)]
pub enum Shape {
    Area(MultiPolygon<f64>),
    Circle { center: Point<f64>, radius_m: f64 },
}

#[derive(Debug, Clone)]
pub struct Fence {
    pub id: String,
    pub name: String,
    pub shape: Shape,
    bbox: Rect<f64>,
}

impl Fence {
    pub fn area(id: impl Into<String>, name: impl Into<String>, area: MultiPolygon<f64>) -> Result<Fence, String> {
        let id = id.into();
        let bbox = area.bounding_rect().ok_or_else(|| format!("fence {id}: empty geometry"))?;
        Ok(Fence { id, name: name.into(), shape: Shape::Area(area), bbox })
    }

    pub fn circle(
        id: impl Into<String>,
        name: impl Into<String>,
        lat: f64,
        lon: f64,
        radius_m: f64,
    ) -> Result<Fence, String> {
        let id = id.into();
        if !(radius_m.is_finite() && radius_m > 0.0 && radius_m <= 1_000_000.0) {
            return Err(format!("fence {id}: radius_m must be within (0, 1000000], got {radius_m}"));
        }
        let dlat = radius_m / M_PER_DEG_LAT;
        let cos_lat = lat.to_radians().cos();
        let dlon = radius_m / (M_PER_DEG_LAT * cos_lat.max(0.01));
        // A circle over the antimeridian or near a pole has points at every longitude the box
        // could wrap to: its box then spans them all.
        let wraps = lon - dlon < -180.0 || lon + dlon > 180.0 || lat + dlat > 90.0 || lat - dlat < -90.0;
        let bbox = if wraps || cos_lat < 0.01 {
            Rect::new((-180.0, (lat - dlat).max(-90.0)), (180.0, (lat + dlat).min(90.0)))
        } else {
            Rect::new((lon - dlon, lat - dlat), (lon + dlon, lat + dlat))
        };
        Ok(Fence { id, name: name.into(), shape: Shape::Circle { center: Point::new(lon, lat), radius_m }, bbox })
    }

    pub fn contains(&self, lat: f64, lon: f64) -> bool {
        let p = Point::new(lon, lat);
        match &self.shape {
            Shape::Area(area) => area.contains(&p),
            Shape::Circle { center, radius_m } => Haversine.distance(*center, p) <= *radius_m,
        }
    }

    /// Approximate distance in metres from the point to the fence's boundary (inside or out),
    /// used for hysteresis: how far past the boundary a device is.
    pub fn distance_to_boundary_m(&self, lat: f64, lon: f64) -> f64 {
        let p = Point::new(lon, lat);
        match &self.shape {
            Shape::Circle { center, radius_m } => (Haversine.distance(*center, p) - radius_m).abs(),
            Shape::Area(area) => {
                let rings = area.iter().flat_map(|poly| std::iter::once(poly.exterior()).chain(poly.interiors()));
                rings
                    .filter_map(|ring| match ring.closest_point(&p) {
                        geo::Closest::Intersection(q) | geo::Closest::SinglePoint(q) => Some(Haversine.distance(p, q)),
                        geo::Closest::Indeterminate => None,
                    })
                    .fold(f64::INFINITY, f64::min)
            }
        }
    }
}

/// Why a feature is not a fence: the member at fault, as a dotted path inside the feature
/// (`id`, `properties.radius_m`, `geometry.coordinates`; empty for the feature as a whole), and
/// the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FenceError {
    pub field: String,
    pub message: String,
}

impl FenceError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FenceError { field: field.into(), message: message.into() }
    }

    /// The same error, one level down: `field` of the feature at `prefix`.
    fn within(self, prefix: &str) -> Self {
        let field = if self.field.is_empty() { prefix.to_string() } else { format!("{prefix}.{}", self.field) };
        FenceError { field, ..self }
    }
}

impl std::fmt::Display for FenceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.field.as_str() {
            "" => f.write_str(&self.message),
            field => write!(f, "{field}: {}", self.message),
        }
    }
}

impl std::error::Error for FenceError {}

/// No bound on a fence's positions (stored fences and files; uploads are bounded by the API).
pub const ANY_VERTICES: usize = usize::MAX;

const COORDINATES: &str = "geometry.coordinates";

/// Reads fences from GeoJSON text: a FeatureCollection or a single Feature. Every fence keeps
/// the rules of [`fence_from_json`], without a bound on its positions.
pub fn fences_from_geojson(text: &str) -> Result<Vec<Fence>, FenceError> {
    let value: Value = serde_json::from_str(text).map_err(|e| FenceError::new("", format!("not GeoJSON: {e}")))?;
    match value.get("type").and_then(Value::as_str) {
        Some("FeatureCollection") => {
            let features = value
                .get("features")
                .and_then(Value::as_array)
                .ok_or_else(|| FenceError::new("features", "a FeatureCollection needs a features array"))?;
            features
                .iter()
                .enumerate()
                .map(|(i, f)| fence_from_json(f, ANY_VERTICES).map_err(|e| e.within(&format!("features[{i}]"))))
                .collect()
        }
        Some("Feature") => Ok(vec![fence_from_json(&value, ANY_VERTICES)?]),
        _ => Err(FenceError::new("type", "must be \"Feature\" or \"FeatureCollection\"")),
    }
}

/// One fence from a GeoJSON Feature. Whatever the value, this answers a fence or the error
/// naming the member at fault; it never panics. The fence id is the feature's `id` or
/// `properties.id`; the name is `properties.name` (default: the id). The geometry must be a
/// Polygon, a MultiPolygon or a Point with `properties.radius_m` (a circle); every position two
/// or three numbers with longitude in [-180, 180] and latitude in [-90, 90]; every ring closed
/// (it ends where it starts) with at least 4 positions; at most `max_vertices` positions in all.
///
/// The feature is read from JSON here rather than by the geojson crate, whose conversion to
/// geometries indexes positions unchecked (a `[1]` in a polygon panics there) and whose errors
/// do not say which member is wrong.
pub fn fence_from_json(feature: &Value, max_vertices: usize) -> Result<Fence, FenceError> {
    if feature.get("type").and_then(Value::as_str) != Some("Feature") {
        return Err(FenceError::new("type", "must be \"Feature\""));
    }
    let no_properties = Map::new();
    let properties = match feature.get("properties") {
        None | Some(Value::Null) => &no_properties,
        Some(Value::Object(properties)) => properties,
        Some(_) => return Err(FenceError::new("properties", "must be an object or null")),
    };
    let id = match (feature.get("id"), properties.get("id")) {
        (Some(Value::String(id)), _) => id.clone(),
        (Some(Value::Number(id)), _) => id.to_string(),
        (None | Some(Value::Null), Some(Value::String(id))) => id.clone(),
        _ => return Err(FenceError::new("id", "must be a string or a number (the feature's id or properties.id)")),
    };
    let name = properties.get("name").and_then(Value::as_str).unwrap_or(&id).to_string();
    let geometry = feature.get("geometry").filter(|g| g.is_object());
    let geometry = geometry.ok_or_else(|| FenceError::new("geometry", "must be a GeoJSON geometry object"))?;
    let coordinates = geometry.get("coordinates").unwrap_or(&Value::Null);
    match geometry.get("type").and_then(Value::as_str) {
        Some("Point") => {
            let center = coord(coordinates).map_err(|reason| at_coordinates((String::new(), reason)))?;
            let radius = properties
                .get("radius_m")
                .and_then(Value::as_f64)
                .ok_or_else(|| FenceError::new("properties.radius_m", "a Point fence needs a radius in metres"))?;
            Fence::circle(id, name, center.y, center.x, radius).map_err(|e| FenceError::new("properties.radius_m", e))
        }
        Some("Polygon") => {
            check_vertices(count(coordinates, 2), max_vertices)?;
            let polygon = polygon(coordinates).map_err(at_coordinates)?;
            Fence::area(id, name, MultiPolygon::new(vec![polygon])).map_err(|e| FenceError::new("geometry", e))
        }
        Some("MultiPolygon") => {
            check_vertices(count(coordinates, 3), max_vertices)?;
            let polygons = multi_polygon(coordinates).map_err(at_coordinates)?;
            Fence::area(id, name, MultiPolygon::new(polygons)).map_err(|e| FenceError::new("geometry", e))
        }
        other => Err(FenceError::new(
            "geometry.type",
            format!("must be Polygon, MultiPolygon or Point (a circle), got {}", other.unwrap_or("none")),
        )),
    }
}

/// Where in the coordinates a check failed (`polygon 1, ring 0, position 7`; empty at the top),
/// and why.
type Failure = (String, String);

/// `inner`, one level down in the coordinates at `place`.
fn inside(place: String, (inner, reason): Failure) -> Failure {
    (if inner.is_empty() { place } else { format!("{place}, {inner}") }, reason)
}

fn at_coordinates((place, reason): Failure) -> FenceError {
    let message = if place.is_empty() { reason } else { format!("{place}: {reason}") };
    FenceError::new(COORDINATES, message)
}

/// Positions in `coordinates` nested `depth` arrays deep (2 for a Polygon), counted before
/// anything is built, so that a huge fence is refused cheaply; what is not an array counts 0.
fn count(coordinates: &Value, depth: usize) -> usize {
    match coordinates.as_array() {
        Some(items) if depth > 1 => items.iter().map(|item| count(item, depth - 1)).sum(),
        Some(items) => items.len(),
        None => 0,
    }
}

fn check_vertices(count: usize, max_vertices: usize) -> Result<(), FenceError> {
    if count > max_vertices {
        return Err(FenceError::new(COORDINATES, format!("{count} positions, the limit is {max_vertices}")));
    }
    Ok(())
}

/// The items of a JSON array, or why not.
fn items<'a>(value: &'a Value, what: &str) -> Result<&'a [Value], Failure> {
    value.as_array().map(Vec::as_slice).ok_or_else(|| (String::new(), format!("must be an array of {what}")))
}

fn multi_polygon(coordinates: &Value) -> Result<Vec<Polygon<f64>>, Failure> {
    let polygons = items(coordinates, "polygons")?;
    if polygons.is_empty() {
        return Err((String::new(), "a MultiPolygon needs at least one polygon".into()));
    }
    polygons.iter().enumerate().map(|(i, p)| polygon(p).map_err(|e| inside(format!("polygon {i}"), e))).collect()
}

/// A polygon from its rings (the first is the outline, the others holes).
fn polygon(rings: &Value) -> Result<Polygon<f64>, Failure> {
    let mut rings = items(rings, "rings")?
        .iter()
        .enumerate()
        .map(|(r, positions)| ring(positions).map_err(|e| inside(format!("ring {r}"), e)));
    let exterior = rings.next().ok_or_else(|| (String::new(), "a polygon needs at least one ring".to_string()))??;
    let interiors = rings.collect::<Result<Vec<_>, _>>()?;
    Ok(Polygon::new(exterior, interiors))
}

/// A closed ring of at least 4 checked positions.
fn ring(positions: &Value) -> Result<LineString<f64>, Failure> {
    let positions = items(positions, "positions")?;
    if positions.len() < 4 {
        let reason = format!("a ring needs at least 4 positions (it is closed), got {}", positions.len());
        return Err((String::new(), reason));
    }
    let coords = positions
        .iter()
        .enumerate()
        .map(|(i, p)| coord(p).map_err(|reason| (format!("position {i}"), reason)))
        .collect::<Result<Vec<_>, _>>()?;
    if coords.first() != coords.last() {
        return Err((String::new(), "a ring must end where it starts (closed)".into()));
    }
    Ok(LineString::new(coords))
}

/// One position: longitude and latitude in range, optionally an altitude after them.
fn coord(position: &Value) -> Result<Coord<f64>, String> {
    let numbers = position.as_array().ok_or("a position is an array [longitude, latitude(, altitude)]")?;
    let (lon, lat) = match numbers.as_slice() {
        [lon, lat] | [lon, lat, _] => (lon, lat),
        other => return Err(format!("a position is [longitude, latitude(, altitude)], got {} numbers", other.len())),
    };
    let (Some(lon), Some(lat)) = (lon.as_f64(), lat.as_f64()) else {
        return Err("a position holds numbers".into());
    };
    // Range checks also refuse what is not finite.
    if !(-180.0..=180.0).contains(&lon) {
        return Err(format!("longitude must be within [-180, 180], got {}", show(lon)));
    }
    if !(-90.0..=90.0).contains(&lat) {
        return Err(format!("latitude must be within [-90, 90], got {}", show(lat)));
    }
    Ok(Coord { x: lon, y: lat })
}

/// A number as a reader wants it in a message: 1e300, not its 301 digits.
fn show(x: f64) -> String {
    if x.abs() < 1e15 { x.to_string() } else { format!("{x:e}") }
}

/// Fences indexed by bounding box.
#[derive(Debug, Default)]
pub struct FenceIndex {
    fences: Vec<Fence>,
    tree: RTree<GeomWithData<Rectangle<[f64; 2]>, usize>>,
}

impl FenceIndex {
    pub fn new(fences: Vec<Fence>) -> FenceIndex {
        let boxes = fences
            .iter()
            .enumerate()
            .map(|(i, f)| GeomWithData::new(Rectangle::from_corners(f.bbox.min().into(), f.bbox.max().into()), i))
            .collect();
        FenceIndex { fences, tree: RTree::bulk_load(boxes) }
    }

    pub fn len(&self) -> usize {
        self.fences.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fences.is_empty()
    }

    pub fn get(&self, id: &str) -> Option<&Fence> {
        self.fences.iter().find(|f| f.id == id)
    }

    /// The fences containing the point, ordered by id (deterministic output).
    pub fn containing(&self, lat: f64, lon: f64) -> Vec<&Fence> {
        let point = AABB::from_point([lon, lat]);
        let mut hits: Vec<&Fence> = self
            .tree
            .locate_in_envelope_intersecting(&point)
            .map(|entry| &self.fences[entry.data])
            .filter(|f| f.contains(lat, lon))
            .collect();
        hits.sort_by(|a, b| a.id.cmp(&b.id));
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// The index finds fences by bounding box first; a circle's box must hold the whole circle.
    /// One that crosses the antimeridian (a port in Fiji, the Bering Strait) or reaches over a
    /// pole has points on the other side of longitude ±180, which a box from lon - dlon to
    /// lon + dlon misses: a device inside the circle is stored outside it and never enters.
    #[test]
    fn circles_over_the_antimeridian_or_a_pole_contain_what_they_contain() {
        let cases = [
            // (circle centre lat, lon, radius m; a point inside it on the other side)
            (-16.8, 179.99, 5_000.0, (-16.8, -179.99)),
            (-16.8, -179.99, 5_000.0, (-16.8, 179.99)),
            (89.9, 0.0, 50_000.0, (89.9, 180.0)),
            (89.5, 10.0, 100_000.0, (89.6, 100.0)),
        ];
        for (lat, lon, radius, (plat, plon)) in cases {
            let fence = Fence::circle("c", "", lat, lon, radius).unwrap();
            assert!(fence.contains(plat, plon), "({plat}, {plon}) is inside the circle at ({lat}, {lon})");
            let index = FenceIndex::new(vec![fence]);
            assert_eq!(index.containing(plat, plon).len(), 1, "the index misses ({plat}, {plon}) for ({lat}, {lon})");
        }
    }

    const SQUARE_WITH_HOLE: &str = r#"{"type":"FeatureCollection","features":[
        {"type":"Feature","id":"sq","properties":{"name":"Square"},"geometry":{"type":"Polygon","coordinates":[
            [[0,0],[10,0],[10,10],[0,10],[0,0]],
            [[4,4],[6,4],[6,6],[4,6],[4,4]]]}},
        {"type":"Feature","properties":{"id":"two","name":"Two islands"},"geometry":{"type":"MultiPolygon","coordinates":[
            [[[20,0],[21,0],[21,1],[20,1],[20,0]]],
            [[[30,0],[31,0],[31,1],[30,1],[30,0]]]]}},
        {"type":"Feature","id":"ring","properties":{"radius_m":1000},"geometry":{"type":"Point","coordinates":[-74.0,40.7]}}]}"#;

    fn index() -> FenceIndex {
        FenceIndex::new(fences_from_geojson(SQUARE_WITH_HOLE).unwrap())
    }

    fn ids(index: &FenceIndex, lat: f64, lon: f64) -> Vec<&str> {
        index.containing(lat, lon).iter().map(|f| f.id.as_str()).collect()
    }

    #[test]
    fn polygons_holes_multipolygons_and_circles() {
        let i = index();
        assert_eq!(i.len(), 3);
        assert_eq!(ids(&i, 1.0, 1.0), vec!["sq"]);
        assert!(ids(&i, 5.0, 5.0).is_empty(), "inside the hole is outside");
        assert_eq!(ids(&i, 0.5, 30.5), vec!["two"]);
        assert!(ids(&i, 0.5, 25.0).is_empty(), "between the islands");
        assert_eq!(ids(&i, 40.7, -74.0), vec!["ring"]);
        assert_eq!(ids(&i, 40.7 + 800.0 / 111_195.0, -74.0), vec!["ring"], "800 m north");
        assert!(ids(&i, 40.7 + 1200.0 / 111_195.0, -74.0).is_empty(), "1.2 km north");
        assert_eq!(i.get("two").unwrap().name, "Two islands");
        assert_eq!(i.get("ring").unwrap().name, "ring", "name defaults to the id");
    }

    #[test]
    fn distance_to_boundary() {
        let i = index();
        let sq = i.get("sq").unwrap();
        // 1 degree of latitude inside the southern edge, at the equator: ~111 km.
        let d = sq.distance_to_boundary_m(1.0, 2.0);
        assert!((d - 111_195.0).abs() < 500.0, "{d}");
        let ring = i.get("ring").unwrap();
        let d = ring.distance_to_boundary_m(40.7 + 800.0 / 111_195.0, -74.0);
        assert!((d - 200.0).abs() < 1.0, "{d}");
    }

    #[test]
    fn bad_geojson_is_refused_with_the_member_named() {
        let error = |text: &str| fences_from_geojson(text).unwrap_err();
        assert!(error("{").message.starts_with("not GeoJSON"));
        let no_id = r#"{"type":"Feature","properties":{},"geometry":{"type":"Point","coordinates":[0,0]}}"#;
        assert_eq!(error(no_id).field, "id");
        let no_radius =
            r#"{"type":"Feature","id":"p","properties":{},"geometry":{"type":"Point","coordinates":[0,0]}}"#;
        assert_eq!(error(no_radius).field, "properties.radius_m");
        let line = r#"{"type":"Feature","id":"l","properties":{},"geometry":{"type":"LineString","coordinates":[[0,0],[1,1]]}}"#;
        assert_eq!(error(line).field, "geometry.type");
        assert!(error(line).message.contains("LineString"));
        let bare = r#"{"type":"Point","coordinates":[0,0]}"#;
        assert_eq!(error(bare).field, "type");
        let second_bad =
            format!(r#"{{"type":"FeatureCollection","features":[{},{no_radius}]}}"#, circle(json!([0, 0])));
        assert_eq!(error(&second_bad).field, "features[1].properties.radius_m");
    }

    fn feature(geometry: serde_json::Value) -> serde_json::Value {
        json!({"type": "Feature", "id": "f", "properties": {}, "geometry": geometry})
    }

    fn circle(coordinates: serde_json::Value) -> serde_json::Value {
        json!({"type": "Feature", "id": "c", "properties": {"radius_m": 100},
               "geometry": {"type": "Point", "coordinates": coordinates}})
    }

    fn polygon(rings: serde_json::Value) -> serde_json::Value {
        feature(json!({"type": "Polygon", "coordinates": rings}))
    }

    const SQUARE: [[f64; 2]; 5] = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]];

    /// The error's field and message for `value` as a fence (with at most 10,000 positions).
    fn refusal(value: serde_json::Value) -> (String, String) {
        let e = fence_from_json(&value, 10_000).unwrap_err();
        (e.field, e.message)
    }

    #[test]
    fn positions_need_two_or_three_numbers_in_range() {
        for (coordinates, says) in [
            (json!([1]), "got 1 numbers"),
            (json!([]), "got 0 numbers"),
            (json!([1, 2, 3, 4]), "got 4 numbers"),
            (json!([1e300, 0]), "longitude must be within [-180, 180], got 1e300"),
            (json!([-180.5, 0]), "longitude"),
            (json!([0, 1000]), "latitude must be within [-90, 90], got 1000"),
            (json!([0, -90.01]), "latitude"),
        ] {
            let (field, message) = refusal(circle(coordinates.clone()));
            assert_eq!(field, "geometry.coordinates", "{coordinates}");
            assert!(message.contains(says), "{coordinates}: {message}");
        }
        assert!(fence_from_json(&circle(json!([180, -90])), 10).is_ok(), "the edges are in range");
        assert!(fence_from_json(&circle(json!([1, 2, 30])), 10).is_ok(), "an altitude is allowed");
    }

    #[test]
    fn every_geometry_with_empty_or_short_coordinates_is_refused_not_a_panic() {
        for geometry in [
            json!({"type": "Point", "coordinates": []}),
            json!({"type": "Point", "coordinates": [1]}),
            json!({"type": "Polygon", "coordinates": []}),
            json!({"type": "Polygon", "coordinates": [[]]}),
            json!({"type": "Polygon", "coordinates": [[[1], [2], [3], [1]]]}),
            json!({"type": "Polygon", "coordinates": [SQUARE, []]}),
            json!({"type": "MultiPolygon", "coordinates": []}),
            json!({"type": "MultiPolygon", "coordinates": [[]]}),
            json!({"type": "MultiPolygon", "coordinates": [[[]]]}),
            json!({"type": "MultiPolygon", "coordinates": [[SQUARE], [[[0, 0], [1], [1, 1], [0, 0]]]]}),
            json!({"type": "LineString", "coordinates": [[1], []]}),
            json!({"type": "MultiPoint", "coordinates": [[]]}),
            json!({"type": "MultiLineString", "coordinates": [[[1]]]}),
            json!({"type": "GeometryCollection", "geometries": [{"type": "Point", "coordinates": [1]}]}),
        ] {
            let mut value = feature(geometry.clone());
            value["properties"]["radius_m"] = json!(10);
            let (field, _) = refusal(value);
            assert!(field.starts_with("geometry."), "{geometry}: {field}");
        }
    }

    #[test]
    fn rings_are_closed_with_at_least_four_positions() {
        let (field, message) = refusal(polygon(json!([[[0, 0], [1, 0], [1, 1], [0, 1]]])));
        assert_eq!(
            (field.as_str(), message.as_str()),
            ("geometry.coordinates", "ring 0: a ring must end where it starts (closed)")
        );
        let (_, message) = refusal(polygon(json!([[[0, 0], [1, 0], [0, 0]]])));
        assert_eq!(message, "ring 0: a ring needs at least 4 positions (it is closed), got 3");
        let (_, message) = refusal(polygon(json!([SQUARE, [[0.2, 0.2], [0.4, 0.2], [0.4, 0.4], [0.2, 0.4]]])));
        assert!(message.starts_with("ring 1:"), "a hole is a ring too: {message}");
        let bad_lat = json!([[0, 0], [1, 0], [1, 91], [0, 0]]);
        let (_, message) = refusal(feature(json!({"type": "MultiPolygon", "coordinates": [[SQUARE], [bad_lat]]})));
        assert_eq!(message, "polygon 1, ring 0, position 2: latitude must be within [-90, 90], got 91");
        assert!(fence_from_json(&polygon(json!([SQUARE])), 5).is_ok());
    }

    #[test]
    fn positions_are_bounded_over_all_rings() {
        let ring: Vec<[f64; 2]> =
            (0..200_000).map(|i| [(i as f64 / 1000.0).sin(), (i as f64 / 1000.0).cos()]).chain([[0.0, 1.0]]).collect();
        let (field, message) = refusal(polygon(json!([ring])));
        assert_eq!(
            (field.as_str(), message.as_str()),
            ("geometry.coordinates", "200001 positions, the limit is 10000")
        );
        let two = feature(json!({"type": "MultiPolygon", "coordinates": [[SQUARE], [SQUARE]]}));
        assert_eq!(fence_from_json(&two, 9).unwrap_err().message, "10 positions, the limit is 9");
        assert!(fence_from_json(&two, 10).is_ok());
    }

    #[test]
    fn radius_is_finite_and_bounded() {
        for radius in [json!(0), json!(-5), json!(1_000_001), json!(1e300), json!("100"), json!(null)] {
            let mut value = circle(json!([0, 0]));
            value["properties"]["radius_m"] = radius.clone();
            assert_eq!(refusal(value).0, "properties.radius_m", "{radius}");
        }
    }

    #[test]
    fn real_county_shapes_load() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/nyc-area-counties.geojson");
        let fences = fences_from_geojson(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(fences.len(), 15);
        let index = FenceIndex::new(fences);
        // The Statue of Liberty is on Liberty Island: New York County.
        let hits: Vec<&str> = index.containing(40.6892, -74.0445).iter().map(|f| f.name.as_str()).collect();
        assert_eq!(hits, vec!["New York County, New York"]);
    }

    proptest! {
        /// The index finds exactly what testing every fence would find.
        #[test]
        fn index_agrees_with_brute_force(lat in -2.0f64..12.0, lon in -2.0f64..32.0) {
            let i = index();
            let brute: Vec<&str> = {
                let mut v: Vec<&str> = i.fences.iter().filter(|f| f.contains(lat, lon)).map(|f| f.id.as_str()).collect();
                v.sort_unstable();
                v
            };
            prop_assert_eq!(ids(&i, lat, lon), brute);
        }

        /// Whatever JSON is given as a fence, the answer is a fence or an error naming a member
        /// of the feature, never a panic; and an accepted fence answers containment questions.
        #[test]
        fn any_json_is_a_fence_or_an_error(value in crate::testing::hostile_fence(), lat in -90.0f64..90.0, lon in -180.0f64..180.0) {
            let _ = fences_from_geojson(&value.to_string());
            match fence_from_json(&value, 50) {
                Ok(fence) => {
                    let _ = (fence.contains(lat, lon), fence.distance_to_boundary_m(lat, lon));
                }
                Err(e) => prop_assert!(!e.message.is_empty()),
            }
        }
    }
}
