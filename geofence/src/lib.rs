//! fleetstream geofencing, pure and synchronous (no I/O), shared by the processors (which
//! evaluate positions) and the API (which validates fences users upload):
//! - [`fences`]: the fence model (areas with holes, multipolygons, circles), GeoJSON loading and
//!   its checks (positions in range, closed rings, a bound on positions), and the R-tree index
//!   that finds the fences containing a point;
//! - [`testing`] (feature `testing`): proptest strategies for hostile fences;
//! - [`transition`]: one device against one fence: enter/exit with hysteresis, and dwell.

pub mod fences;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod transition;

pub use fences::{ANY_VERTICES, Fence, FenceError, FenceIndex, Shape, fence_from_json, fences_from_geojson};
pub use transition::{FenceState, Hysteresis, Transition};
