//! The rules for ids and names, applied on every path that takes one: device and fence ids in
//! paths (`/v1/devices/{id}/..`, `/v1/fences/{id}`, `/v1/registry/{id}`), in queries (`device=`,
//! `fence=`) and in fence imports (the feature's id), so that whatever the API stores it can also
//! find, show and delete. The rules themselves are [`fleetstream_schemas::ids`]', the ones ingest
//! applies to device ids: here they answer with our [`ApiError`].

use fleetstream_schemas::ids;

use crate::error::ApiError;

/// Longest device or fence id, in bytes (what ingest accepts for device ids).
pub const MAX_ID_BYTES: usize = ids::MAX_ID_BYTES;
/// Longest name, fleet or type (registry entries, fence names), in bytes.
pub const MAX_TEXT_BYTES: usize = 256;

/// A device or fence id: 1 to [`MAX_ID_BYTES`] bytes, not blank, no control characters.
pub fn check_id(field: &str, id: &str) -> Result<(), ApiError> {
    Ok(ids::check_id(field, id, MAX_ID_BYTES)?)
}

/// A name or other free text: at most `max` bytes, no control characters (they break logs,
/// CSV and terminals).
pub fn check_text(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    Ok(ids::check_text(field, value, max)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rules are tested in `fleetstream_schemas::ids`; here, that they answer ApiErrors
    /// naming the input.
    #[test]
    fn refusals_are_api_errors_naming_the_input() {
        assert!(check_id("id", "truck-17").is_ok());
        let refused = check_id("fence", "").unwrap_err();
        assert_eq!((refused.status().as_u16(), refused.field()), (400, Some("fence")));
        assert!(check_text("name", "", MAX_TEXT_BYTES).is_ok(), "names may be empty");
        assert_eq!(check_text("properties.name", "a\rb", MAX_TEXT_BYTES).unwrap_err().field(), Some("properties.name"));
    }
}
