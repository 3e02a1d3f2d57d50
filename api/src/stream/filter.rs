//! A stream's query parameters, checked, and the filter they make.
//!
//! `device` and `fence` may be given several times (any of them matches); `kind` (events and
//! alerts) several times or comma-separated; `fleet` and `bbox` once. Filters combine with AND. An
//! unknown parameter is refused by name rather than ignored: a misspelt filter would otherwise
//! stream everything.
//!
//! On `/v1/stream/positions`, `fleet` is the fleet the processors stamped on the position from
//! the registry; on `/v1/stream/events` and `/v1/stream/alerts` (whose messages carry no fleet)
//! it is the registry's devices of that fleet when the stream opened.

use std::collections::HashSet;

use fleetstream_schemas::{AlertKind, EventKind};
use serde::Deserialize;

use crate::checks::{MAX_TEXT_BYTES, check_id, check_text};
use crate::error::ApiError;
use crate::latest::parse_bbox;
use crate::stream::id::{Cursor, StreamKind};

/// Most `device` or `fence` values one stream may name.
pub const MAX_LISTED: usize = 1_000;

/// What a stream request asked for.
#[derive(Debug, Default)]
pub struct StreamParams {
    pub filter: Filter,
    /// Where to resume (`last_event_id`; the `Last-Event-ID` header is read by the handler).
    pub last_event_id: Option<String>,
}

/// The filters of one stream; `None`: any.
#[derive(Debug, Default)]
pub struct Filter {
    pub devices: Option<HashSet<String>>,
    pub fleet: Option<String>,
    /// Devices of `fleet` in the registry (events, whose messages do not carry the fleet).
    pub fleet_devices: Option<HashSet<String>>,
    pub bbox: Option<[f64; 4]>,
    pub fences: Option<HashSet<String>>,
    /// Events: `enter` / `exit`; alerts: `overspeed` / `idle` / `dwell`.
    pub kinds: Option<HashSet<String>>,
}

/// The parts of a message that filters look at, read once per message by the shared consumer.
#[derive(Debug, Deserialize)]
pub struct Keys {
    pub device_id: String,
    pub lat: f64,
    pub lon: f64,
    #[serde(default)]
    pub fleet: String,
    /// Positions: the fences containing it.
    #[serde(default)]
    pub fence_ids: Vec<String>,
    /// Events: the fence crossed; alerts: the rule's fence, if any.
    #[serde(default)]
    pub fence_id: Option<String>,
    /// Events and alerts: what happened.
    #[serde(default)]
    pub kind: Option<String>,
}

impl Keys {
    pub fn read(payload: &[u8]) -> Result<Keys, serde_json::Error> {
        serde_json::from_slice(payload)
    }
}

/// Parses the query string of a stream request.
pub fn parse(kind: StreamKind, query: &str) -> Result<StreamParams, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|e| ApiError::bad("query", format!("is not a valid query string: {e}")))?;
    let mut params = StreamParams::default();
    let mut seen = HashSet::new();
    for (name, value) in pairs {
        let repeatable = matches!(name.as_str(), "device" | "fence" | "kind");
        if !seen.insert(name.clone()) && !repeatable {
            return Err(ApiError::bad(name, "is given more than once"));
        }
        let filter = &mut params.filter;
        match name.as_str() {
            "device" => add_id(&mut filter.devices, "device", value)?,
            "fence" => add_id(&mut filter.fences, "fence", value)?,
            "fleet" => {
                check_text("fleet", &value, MAX_TEXT_BYTES)?;
                if value.is_empty() {
                    return Err(ApiError::bad("fleet", "must not be empty"));
                }
                filter.fleet = Some(value);
            }
            "bbox" => filter.bbox = Some(parse_bbox(&value)?),
            "kind" if kind != StreamKind::Positions => {
                let kinds = filter.kinds.get_or_insert_with(HashSet::new);
                for word in value.split(',') {
                    let known = match kind {
                        StreamKind::Alerts => AlertKind::parse(word).map(AlertKind::as_str),
                        _ => {
                            [EventKind::Enter, EventKind::Exit].map(EventKind::as_str).into_iter().find(|k| *k == word)
                        }
                    };
                    let Some(known) = known else {
                        let words =
                            if kind == StreamKind::Alerts { "overspeed, idle or dwell" } else { "enter or exit" };
                        return Err(ApiError::bad("kind", format!("must be {words}, got {word:?}")));
                    };
                    kinds.insert(known.to_string());
                }
            }
            "kind" => return Err(ApiError::bad("kind", "filters /v1/stream/events and /v1/stream/alerts only")),
            "last_event_id" => {
                Cursor::decode(kind, &value).map_err(|e| ApiError::bad("last_event_id", e))?;
                params.last_event_id = Some(value);
            }
            "access_token" => {} // read by the authentication layer
            _ => {
                let known = match kind {
                    StreamKind::Positions => "device, fleet, bbox, fence, last_event_id",
                    StreamKind::Events | StreamKind::Alerts => "device, fleet, bbox, fence, kind, last_event_id",
                };
                return Err(ApiError::bad(name, format!("is not a parameter of {} (known: {known})", kind.path())));
            }
        }
    }
    Ok(params)
}

fn add_id(set: &mut Option<HashSet<String>>, field: &str, id: String) -> Result<(), ApiError> {
    check_id(field, &id)?;
    let set = set.get_or_insert_with(HashSet::new);
    set.insert(id);
    if set.len() > MAX_LISTED {
        return Err(ApiError::bad(field, format!("is given more than {MAX_LISTED} times")));
    }
    Ok(())
}

impl Filter {
    /// Whether a message with these keys goes to the client.
    pub fn matches(&self, keys: &Keys) -> bool {
        if self.devices.as_ref().is_some_and(|d| !d.contains(&keys.device_id)) {
            return false;
        }
        if let Some(devices) = &self.fleet_devices {
            if !devices.contains(&keys.device_id) {
                return false;
            }
        } else if self.fleet.as_ref().is_some_and(|f| *f != keys.fleet) {
            return false;
        }
        if let Some([min_lon, min_lat, max_lon, max_lat]) = self.bbox
            && !(keys.lon >= min_lon && keys.lon <= max_lon && keys.lat >= min_lat && keys.lat <= max_lat)
        {
            return false;
        }
        if let Some(fences) = &self.fences {
            let crossed = keys.fence_id.iter().chain(&keys.fence_ids).any(|f| fences.contains(f));
            if !crossed {
                return false;
            }
        }
        self.kinds.as_ref().is_none_or(|kinds| keys.kind.as_ref().is_some_and(|k| kinds.contains(k)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn refused(kind: StreamKind, query: &str) -> (String, String) {
        match parse(kind, query).unwrap_err() {
            ApiError::Invalid { field, message } => (field, message),
            other => panic!("{other:?}"),
        }
    }

    fn position(device: &str, lat: f64, lon: f64, fences: &[&str], fleet: &str) -> Keys {
        let fences: Vec<String> = fences.iter().map(|f| f.to_string()).collect();
        Keys { device_id: device.into(), lat, lon, fleet: fleet.into(), fence_ids: fences, fence_id: None, kind: None }
    }

    fn event(device: &str, fence: &str, kind: EventKind) -> Keys {
        let fence_id = Some(fence.to_string());
        Keys {
            device_id: device.into(),
            lat: 40.7,
            lon: -74.0,
            fleet: String::new(),
            fence_ids: vec![],
            fence_id,
            kind: Some(kind.as_str().to_string()),
        }
    }

    fn alert(device: &str, fence: Option<&str>, kind: AlertKind) -> Keys {
        Keys {
            fence_id: fence.map(str::to_string),
            kind: Some(kind.as_str().to_string()),
            ..event(device, "", EventKind::Enter)
        }
    }

    #[test]
    fn filters_combine() {
        let p = parse(StreamKind::Positions, "device=a&device=b&bbox=-75,40,-73,41&fence=pier").unwrap();
        let f = p.filter;
        assert!(f.matches(&position("a", 40.5, -74.0, &["pier"], "")));
        assert!(f.matches(&position("b", 40.5, -74.0, &["dock", "pier"], "")));
        assert!(!f.matches(&position("c", 40.5, -74.0, &["pier"], "")), "another device");
        assert!(!f.matches(&position("a", 42.0, -74.0, &["pier"], "")), "outside the box");
        assert!(!f.matches(&position("a", 40.5, -74.0, &[], "")), "in no fence");
        let fleet = parse(StreamKind::Positions, "fleet=north").unwrap().filter;
        assert!(fleet.matches(&position("x", 0.0, 0.0, &[], "north")));
        assert!(!fleet.matches(&position("x", 0.0, 0.0, &[], "")));
        assert!(Filter::default().matches(&position("x", 0.0, 0.0, &[], "")));
    }

    #[test]
    fn events_filter_by_kind_fence_and_registry_fleet() {
        let f = parse(StreamKind::Events, "kind=exit&fence=pier").unwrap().filter;
        assert!(f.matches(&event("a", "pier", EventKind::Exit)));
        assert!(!f.matches(&event("a", "pier", EventKind::Enter)));
        assert!(!f.matches(&event("a", "dock", EventKind::Exit)));
        let both = parse(StreamKind::Events, "kind=enter,exit").unwrap().filter;
        assert_eq!(both.kinds.unwrap().len(), 2);
        let mut fleet = parse(StreamKind::Events, "fleet=north").unwrap().filter;
        fleet.fleet_devices = Some(HashSet::from(["a".to_string()]));
        assert!(fleet.matches(&event("a", "pier", EventKind::Enter)));
        assert!(!fleet.matches(&event("b", "pier", EventKind::Enter)));
    }

    #[test]
    fn alerts_filter_by_their_kinds_and_their_rules_fence() {
        let f = parse(StreamKind::Alerts, "kind=idle,dwell&fence=pier").unwrap().filter;
        assert!(f.matches(&alert("a", Some("pier"), AlertKind::Dwell)));
        assert!(!f.matches(&alert("a", Some("pier"), AlertKind::Overspeed)));
        assert!(!f.matches(&alert("a", None, AlertKind::Idle)), "a rule without a fence");
        assert!(parse(StreamKind::Alerts, "device=a").unwrap().filter.matches(&alert("a", None, AlertKind::Idle)));
        assert_eq!(refused(StreamKind::Alerts, "kind=enter").1, "must be overspeed, idle or dwell, got \"enter\"");
        assert_eq!(
            refused(StreamKind::Alerts, "last_event_id=e/0:1").1,
            "is an id of /v1/stream/events, not of /v1/stream/alerts"
        );
    }

    #[test]
    fn bad_parameters_are_named() {
        let p = StreamKind::Positions;
        assert_eq!(refused(p, "bbox=1,2,3").0, "bbox");
        assert_eq!(refused(p, "bbox=10,0,5,1").0, "bbox");
        assert_eq!(refused(p, "device=").0, "device");
        assert_eq!(refused(p, "fleet=").0, "fleet");
        assert_eq!(refused(p, "fleet=a&fleet=b"), ("fleet".into(), "is given more than once".into()));
        assert_eq!(
            refused(p, "kind=enter"),
            ("kind".into(), "filters /v1/stream/events and /v1/stream/alerts only".into())
        );
        assert_eq!(refused(StreamKind::Events, "kind=enter,dwell").1, "must be enter or exit, got \"dwell\"");
        assert!(refused(p, "devices=a").1.starts_with("is not a parameter of /v1/stream/positions"));
        assert_eq!(refused(p, "last_event_id=e/0:1").0, "last_event_id");
        let many: Vec<String> = (0..=MAX_LISTED).map(|i| format!("device=d{i}")).collect();
        assert_eq!(refused(p, &many.join("&")).0, "device");
        assert!(parse(p, "last_event_id=p/0:1,3:9&access_token=x").unwrap().last_event_id.is_some());
    }

    proptest! {
        #[test]
        fn any_query_is_a_filter_or_a_named_400(query in "[a-z_=&,.%0-9-]{0,60}") {
            for kind in StreamKind::ALL {
                if let Err(e) = parse(kind, &query) {
                    prop_assert_eq!(e.status(), 400);
                    prop_assert!(e.field().is_some());
                }
            }
        }
    }
}
