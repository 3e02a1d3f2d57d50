//! The fleetstream event contract.
//!
//! Everything that two services must agree on lives here and nowhere else:
//! - [`input`]: the device-facing JSON (`position.v1.schema.json` describes the same shape),
//!   decoded and validated into a [`Position`], with errors that name the field;
//! - [`position`]: the normalised position that travels on `positions.raw`;
//! - [`attributes`]: a position's free-form attributes, checked once and carried as JSON text;
//! - [`dead_letter`]: what a rejected item becomes on `positions.dlq` (`dead-letter.v1.schema.json`);
//! - [`error`]: the one JSON error shape of ingest and the query API;
//! - [`ids`]: the one rule for ids, the `{device_id}@{fix_time_ms}` event id and a geofence event's id;
//! - [`outputs`]: the messages of `positions.enriched`, `geofence.events` and `alerts`, the
//!   contract for services that consume them (`position.enriched.v1.schema.json`,
//!   `geofence.event.v1.schema.json`, `alert.v1.schema.json`);
//! - [`processing_dlq`]: what the processors set aside on `processing.dlq`, and why
//!   (`processing-dead-letter.v1.schema.json`);
//! - [`osmand`]: the OsmAnd protocol of the Traccar Client apps, decoded into the same [`Position`];
//! - [`topics`]: topic names and how messages are keyed;
//! - [`settings`]: settings structs from their clap definitions, defaults in one place;
//! - [`migrations`]: the ordered ClickHouse DDL (files under `schemas/migrations/`).

pub mod attributes;
pub mod body;
pub mod dead_letter;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod ids;
pub mod input;
pub mod migrations;
pub mod osmand;
pub mod outputs;
pub mod position;
pub mod processing_dlq;
pub mod settings;
pub mod time;
pub mod topics;

pub use attributes::Attributes;
pub use body::{BodyError, split_body};
pub use dead_letter::DeadLetter;
pub use error::{ErrorBody, ErrorDetail};
pub use input::{FieldError, Limits, parse_position};
pub use outputs::{Alert, AlertKind, EnrichedPosition, EventKind, GeofenceEvent};
pub use position::{POSITION_SCHEMA_VERSION, Position};

/// The JSON Schema of one device-facing position (draft 2020-12).
pub const POSITION_JSON_SCHEMA: &str = include_str!("../position.v1.schema.json");
