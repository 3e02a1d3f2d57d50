//! The rules for ids and names, one function each, used on every path that takes one: device
//! and fence ids in paths (`/v1/devices/{id}/..`, `/v1/fences/{id}`, `/v1/registry/{id}`), in
//! queries (`device=`, `fence=`) and in fence imports (the feature's id), so that whatever the
//! API stores it can also find, show and delete.

use crate::error::ApiError;

/// Longest device or fence id, in bytes (what ingest accepts for device ids).
pub const MAX_ID_BYTES: usize = 128;
/// Longest name, fleet or type (registry entries, fence names), in bytes.
pub const MAX_TEXT_BYTES: usize = 256;

/// A device or fence id: 1 to [`MAX_ID_BYTES`] bytes, not blank, no control characters (the rule
/// ingest applies to device ids).
pub fn check_id(field: &str, id: &str) -> Result<(), ApiError> {
    if id.trim().is_empty() {
        return Err(ApiError::bad(field, "must not be empty"));
    }
    if id.len() > MAX_ID_BYTES {
        return Err(ApiError::bad(field, format!("is {} bytes, the limit is {MAX_ID_BYTES}", id.len())));
    }
    no_control_characters(field, id)
}

/// A name or other free text: at most `max` bytes, no control characters (they break logs,
/// CSV and terminals).
pub fn check_text(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.len() > max {
        return Err(ApiError::bad(field, format!("is {} bytes, the limit is {max}", value.len())));
    }
    no_control_characters(field, value)
}

fn no_control_characters(field: &str, value: &str) -> Result<(), ApiError> {
    match value.chars().find(|c| c.is_control()) {
        Some(c) => Err(ApiError::bad(field, format!("contains control character U+{:04X}", c as u32))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(result: Result<(), ApiError>) -> (String, String) {
        match result.unwrap_err() {
            ApiError::Invalid { field, message } => (field, message),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ids_are_short_printable_and_not_blank() {
        for ok in ["truck-17", "Ω", "a b", &"x".repeat(MAX_ID_BYTES), "=cmd"] {
            assert!(check_id("id", ok).is_ok(), "{ok}");
        }
        assert_eq!(refused(check_id("fence", "")), ("fence".into(), "must not be empty".into()));
        assert_eq!(refused(check_id("id", "  ")).1, "must not be empty");
        assert_eq!(refused(check_id("id", &"x".repeat(MAX_ID_BYTES + 1))).1, "is 129 bytes, the limit is 128");
        // 43 three-byte characters: 129 bytes, though only 43 characters.
        assert!(check_id("id", &"€".repeat(43)).is_err());
        for bad in ["a\u{0}b", "tab\there", "new\nline", "\u{7f}", "\u{85}next", "esc\u{1b}[31m"] {
            let (field, message) = refused(check_id("device", bad));
            assert_eq!(field, "device");
            assert!(message.starts_with("contains control character U+"), "{bad:?}: {message}");
        }
    }

    #[test]
    fn text_is_bounded_and_printable() {
        assert!(check_text("name", "", MAX_TEXT_BYTES).is_ok(), "names may be empty");
        assert!(check_text("name", "Pier 7 — north", MAX_TEXT_BYTES).is_ok());
        assert_eq!(
            refused(check_text("name", &"n".repeat(100_000), MAX_TEXT_BYTES)).1,
            "is 100000 bytes, the limit is 256"
        );
        assert_eq!(refused(check_text("properties.name", "a\rb", MAX_TEXT_BYTES)).0, "properties.name");
    }
}
