//! Geofences and the spatial index that finds the ones containing a point.
//!
//! A fence is an area (polygon or multipolygon, holes allowed) or a circle. Fences come from
//! GeoJSON: a Feature with a (Multi)Polygon, or a Point with `properties.radius_m` for a circle.
//! The index is an R-tree over cached bounding boxes, so a position is tested exactly only
//! against the few fences whose box contains it: 10,000 fences cost about what 10 do.

use geo::{BoundingRect, ClosestPoint, Contains, Distance, Haversine, MultiPolygon, Point, Rect};
use rstar::primitives::{GeomWithData, Rectangle};
use rstar::{AABB, RTree};

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
        let dlon = radius_m / (M_PER_DEG_LAT * lat.to_radians().cos().max(0.01));
        let bbox = Rect::new((lon - dlon, lat - dlat), (lon + dlon, lat + dlat));
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

/// Reads fences from GeoJSON text: a FeatureCollection or a single Feature. The fence id is the
/// feature's `id` or `properties.id`; the name is `properties.name` (default: the id).
pub fn fences_from_geojson(text: &str) -> Result<Vec<Fence>, String> {
    let geojson: geojson::GeoJson = text.parse().map_err(|e| format!("not GeoJSON: {e}"))?;
    let features = match geojson {
        geojson::GeoJson::FeatureCollection(fc) => fc.features,
        geojson::GeoJson::Feature(f) => vec![f],
        geojson::GeoJson::Geometry(_) => {
            return Err("expected a Feature or FeatureCollection, got a bare geometry".into());
        }
    };
    features.into_iter().enumerate().map(|(i, f)| fence_from_feature(i, f)).collect()
}

fn fence_from_feature(index: usize, feature: geojson::Feature) -> Result<Fence, String> {
    let id = match (&feature.id, feature.property("id")) {
        (Some(geojson::feature::Id::String(s)), _) => s.clone(),
        (Some(geojson::feature::Id::Number(n)), _) => n.to_string(),
        (None, Some(serde_json::Value::String(s))) => s.clone(),
        _ => return Err(format!("feature {index}: has no id (feature id or properties.id)")),
    };
    if id.is_empty() || id.len() > 128 {
        return Err(format!("feature {index}: id must be 1 to 128 bytes"));
    }
    let name = feature.property("name").and_then(|v| v.as_str()).unwrap_or(&id).to_string();
    let geometry = feature.geometry.ok_or_else(|| format!("fence {id}: has no geometry"))?;
    let geometry: geo::Geometry<f64> = geometry.try_into().map_err(|e| format!("fence {id}: {e}"))?;
    match geometry {
        geo::Geometry::Polygon(p) => Fence::area(id, name, MultiPolygon::new(vec![p])),
        geo::Geometry::MultiPolygon(mp) => Fence::area(id, name, mp),
        geo::Geometry::Point(p) => {
            let radius = feature
                .properties
                .as_ref()
                .and_then(|props| props.get("radius_m"))
                .and_then(|v| v.as_f64())
                .ok_or_else(|| format!("fence {id}: a Point fence needs properties.radius_m"))?;
            Fence::circle(id, name, p.y(), p.x(), radius)
        }
        other => Err(format!("fence {id}: unsupported geometry {:?}", geo_type_name(&other))),
    }
}

fn geo_type_name(g: &geo::Geometry<f64>) -> &'static str {
    match g {
        geo::Geometry::LineString(_) => "LineString",
        geo::Geometry::MultiLineString(_) => "MultiLineString",
        geo::Geometry::MultiPoint(_) => "MultiPoint",
        geo::Geometry::GeometryCollection(_) => "GeometryCollection",
        _ => "geometry",
    }
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
    fn bad_geojson_is_refused_with_the_fence_named() {
        assert!(fences_from_geojson("{").unwrap_err().starts_with("not GeoJSON"));
        let no_id = r#"{"type":"Feature","properties":{},"geometry":{"type":"Point","coordinates":[0,0]}}"#;
        assert!(fences_from_geojson(no_id).unwrap_err().contains("no id"));
        let no_radius =
            r#"{"type":"Feature","id":"p","properties":{},"geometry":{"type":"Point","coordinates":[0,0]}}"#;
        assert!(fences_from_geojson(no_radius).unwrap_err().contains("radius_m"));
        let line = r#"{"type":"Feature","id":"l","properties":{},"geometry":{"type":"LineString","coordinates":[[0,0],[1,1]]}}"#;
        assert!(fences_from_geojson(line).unwrap_err().contains("LineString"));
        let bare = r#"{"type":"Point","coordinates":[0,0]}"#;
        assert!(fences_from_geojson(bare).is_err());
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
    }
}
