//! fleetstream geofencing, pure and synchronous (no I/O), shared by the processors (which
//! evaluate positions) and the API (which validates fences users upload):
//! - [`fences`]: the fence model (areas with holes, multipolygons, circles), GeoJSON loading,
//!   and the R-tree index that finds the fences containing a point;
//! - [`transition`]: one device against one fence: enter/exit with hysteresis, and dwell.

pub mod fences;
pub mod transition;

pub use fences::{Fence, FenceIndex, Shape, fences_from_geojson};
pub use transition::{FenceState, Hysteresis, Transition};
