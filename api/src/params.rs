//! Query parameters that many endpoints share, as extractors: a handler takes a [`TimeRange`], a
//! [`Limit`] or a [`QueryId`] already parsed, bounded and checked, and a bad one is refused with
//! our [`ApiError`] naming it. Each reads only its own parameters, so they share a query with
//! each other and with the handler's own [`ApiQuery`](crate::extract::ApiQuery) struct (which
//! ignores parameters it does not know).

use std::marker::PhantomData;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use fleetstream_schemas::time::{now_millis, parse_time_param};

use crate::checks::check_id;
use crate::config::ApiConfig;
use crate::error::ApiError;
use crate::state::ApiState;

/// The value of query parameter `name`, if given; given twice is refused, as
/// [`ApiQuery`](crate::extract::ApiQuery) refuses it.
fn query_param(parts: &Parts, name: &str) -> Result<Option<String>, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(parts.uri.query().unwrap_or(""))
        .map_err(|e| ApiError::bad("query", e.to_string()))?;
    let mut values = pairs.into_iter().filter(|(key, _)| key == name).map(|(_, value)| value);
    let first = values.next();
    if values.next().is_some() {
        return Err(ApiError::bad(name, "is given more than once"));
    }
    Ok(first)
}

/// A day, the default span of a range without `from`.
const DEFAULT_WINDOW_MS: i64 = 24 * 3600 * 1000;

/// `from` and `to` (epoch milliseconds or RFC 3339): `to` defaults to now, `from` to a day
/// before `to`, and `from < to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub from: i64,
    pub to: i64,
}

impl<S: Send + Sync> FromRequestParts<S> for TimeRange {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let (from, to) = (query_param(parts, "from")?, query_param(parts, "to")?);
        TimeRange::parse(from.as_deref(), to.as_deref())
    }
}

impl TimeRange {
    fn parse(from: Option<&str>, to: Option<&str>) -> Result<TimeRange, ApiError> {
        let to = parse_time("to", to, now_millis())?;
        let from = parse_time("from", from, to.saturating_sub(DEFAULT_WINDOW_MS))?;
        if from >= to {
            return Err(ApiError::bad("from", "must be before `to`"));
        }
        Ok(TimeRange { from, to })
    }
}

fn parse_time(name: &str, raw: Option<&str>, default: i64) -> Result<i64, ApiError> {
    raw.map_or(Ok(default), |r| parse_time_param(r).map_err(|e| ApiError::bad(name, e)))
}

/// `order`: `asc` (the default) or `desc`; true for newest first.
pub fn newest_first(order: Option<&str>) -> Result<bool, ApiError> {
    match order {
        None | Some("asc") => Ok(false),
        Some("desc") => Ok(true),
        Some(other) => Err(ApiError::bad("order", format!("must be asc or desc, got {other:?}"))),
    }
}

/// An integer parameter from 1 to `max`, `default` (at most `max`) when absent.
pub(crate) fn bounded(name: &str, raw: Option<&str>, default: u64, max: u64) -> Result<u64, ApiError> {
    let Some(raw) = raw else { return Ok(default.min(max)) };
    match raw.parse::<u64>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(ApiError::bad(name, format!("must be an integer from 1 to {max}, got {raw:?}"))),
    }
}

/// The bounds of a `limit`, by what the endpoint returns.
pub trait LimitRule {
    /// (default, max).
    fn bounds(config: &ApiConfig) -> (u64, u64);
}

/// Which [`LimitRule`] an endpoint's `limit` follows.
pub mod limit {
    use super::{ApiConfig, LimitRule};

    /// Devices (latest positions, fence occupants, the registry): up to `--max-devices`.
    #[derive(Debug)]
    pub struct Devices;
    /// Positions of a track: up to `--max-track-points`.
    #[derive(Debug)]
    pub struct TrackPoints;
    /// Rows of an event or report query: 10,000 unless asked, at most 100,000.
    #[derive(Debug)]
    pub struct Rows;

    impl LimitRule for Devices {
        fn bounds(config: &ApiConfig) -> (u64, u64) {
            (config.max_devices, config.max_devices)
        }
    }
    impl LimitRule for TrackPoints {
        fn bounds(config: &ApiConfig) -> (u64, u64) {
            (config.max_track_points, config.max_track_points)
        }
    }
    impl LimitRule for Rows {
        fn bounds(_: &ApiConfig) -> (u64, u64) {
            (10_000, 100_000)
        }
    }
}

/// `limit`: at most this many results, bounded by `R`.
#[derive(Debug)]
pub struct Limit<R> {
    value: u64,
    given: bool,
    rule: PhantomData<R>,
}

impl<R> Limit<R> {
    pub fn get(&self) -> u64 {
        self.value
    }
    /// Whether the request set it (a track without one streams the whole range).
    pub fn given(&self) -> bool {
        self.given
    }
}

impl<R: LimitRule> FromRequestParts<ApiState> for Limit<R> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let raw = query_param(parts, "limit")?;
        let (default, max) = R::bounds(state.config());
        let value = bounded("limit", raw.as_deref(), default, max)?;
        Ok(Limit { value, given: raw.is_some(), rule: PhantomData })
    }
}

/// The name of a [`QueryId`] parameter.
pub trait IdParam {
    const NAME: &'static str;
}

/// Which id a [`QueryId`] is.
pub mod id {
    use super::IdParam;

    /// `device=`.
    #[derive(Debug)]
    pub struct Device;
    /// `fence=`.
    #[derive(Debug)]
    pub struct Fence;

    impl IdParam for Device {
        const NAME: &'static str = "device";
    }
    impl IdParam for Fence {
        const NAME: &'static str = "fence";
    }
}

/// An optional id in the query (`device=`, `fence=`), checked by [`check_id`] when given.
#[derive(Debug)]
pub struct QueryId<P> {
    id: Option<String>,
    param: PhantomData<P>,
}

impl<P> QueryId<P> {
    pub fn get(&self) -> Option<&str> {
        self.id.as_deref()
    }
    /// The id as a storage filter: `""` (any) when absent.
    pub fn filter(&self) -> &str {
        self.get().unwrap_or("")
    }
}

impl<P: IdParam, S: Send + Sync> FromRequestParts<S> for QueryId<P> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let id = query_param(parts, P::NAME)?;
        if let Some(id) = &id {
            check_id(P::NAME, id)?;
        }
        Ok(QueryId { id, param: PhantomData })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(query: &str) -> Parts {
        axum::http::Request::get(format!("/x?{query}")).body(()).unwrap().into_parts().0
    }

    #[test]
    fn limits_are_bounded() {
        assert_eq!(bounded("limit", None, 50, 100).unwrap(), 50);
        assert_eq!(bounded("limit", None, 500, 100).unwrap(), 100);
        assert_eq!(bounded("limit", Some("7"), 50, 100).unwrap(), 7);
        for bad in ["0", "101", "-1", "ten", ""] {
            assert_eq!(bounded("limit", Some(bad), 50, 100).unwrap_err().field(), Some("limit"), "{bad}");
        }
        assert_eq!(bounded("points", Some("0"), 50, 100).unwrap_err().field(), Some("points"));
    }

    /// `to` is any integer of milliseconds; the default `from` a day before it must not
    /// overflow (a panic closes the connection in debug builds and wraps in release builds,
    /// where the answer then blames a `from` the reader never sent).
    #[test]
    fn the_earliest_to_is_refused_by_name_not_a_panic() {
        let refused = TimeRange::parse(None, Some("-9223372036854775808")).unwrap_err();
        assert_eq!(refused.field(), Some("from"), "{refused:?}");
        assert!(TimeRange::parse(None, Some("-9223372036854775000")).is_ok());
        assert!(TimeRange::parse(Some("-9223372036854775808"), Some("-9223372036854775807")).is_ok());
    }

    #[test]
    fn times_name_their_parameter() {
        assert_eq!(parse_time("from", Some("1000"), 5).unwrap(), 1000);
        assert_eq!(parse_time("from", None, 5).unwrap(), 5);
        assert_eq!(parse_time("to", Some("soon"), 0).unwrap_err().field(), Some("to"));
        assert_eq!(TimeRange::parse(Some("2000"), Some("1000")).unwrap_err().field(), Some("from"));
    }

    #[tokio::test]
    async fn parameters_are_read_by_name_once() {
        let range = TimeRange::from_request_parts(&mut parts("from=1000&to=2000&limit=3"), &()).await.unwrap();
        assert_eq!(range, TimeRange { from: 1000, to: 2000 });
        let twice = TimeRange::from_request_parts(&mut parts("to=5&from=1&to=6"), &()).await.unwrap_err();
        assert_eq!(twice.field(), Some("to"));
        let fence = QueryId::<id::Fence>::from_request_parts(&mut parts("device=a&fence=pier"), &()).await.unwrap();
        assert_eq!((fence.get(), fence.filter()), (Some("pier"), "pier"));
        let any = QueryId::<id::Device>::from_request_parts(&mut parts("fence=pier"), &()).await.unwrap();
        assert_eq!((any.get(), any.filter()), (None, ""));
        for bad in ["device=", "device=a%00b", "device=a&device=b"] {
            let refused = QueryId::<id::Device>::from_request_parts(&mut parts(bad), &()).await.unwrap_err();
            assert_eq!(refused.field(), Some("device"), "{bad}");
        }
    }
}
