//! Ids: the one rule every id meets wherever it enters (device and event ids at ingest, device
//! and fence ids at the query API), the one format of the event id derived for a fix that came
//! without one, and the one of a geofence event's id.

use crate::input::FieldError;
use crate::time::EpochMillis;

/// Longest device, event or fence id, in bytes.
pub const MAX_ID_BYTES: usize = 128;

/// The event id of a fix its device sent without one, `{device_id}@{fix_time_ms}`: the same fix
/// of the same device always gets the same id, so a blind retry de-duplicates downstream.
pub fn derived_event_id(device_id: &str, fix_time_ms: EpochMillis) -> String {
    format!("{device_id}@{fix_time_ms}")
}

/// The event id of a geofence event, `{device_id}|{fence_id}|{kind}|{at_ms}`: an enter or exit
/// of the same device and fence at the same time is the same event however often it is
/// computed again (a redelivery, a late fix recomputing the device's history).
pub fn geofence_event_id(
    device_id: &str,
    fence_id: &str,
    kind: crate::outputs::EventKind,
    at_ms: EpochMillis,
) -> String {
    format!("{device_id}|{fence_id}|{}|{at_ms}", kind.as_str())
}

/// The id of an alert, `{device_id}|{rule_id}|{started_ms}`: one per episode of the rule's
/// condition, however often it is computed again.
pub fn alert_id(device_id: &str, rule_id: &str, started_ms: EpochMillis) -> String {
    format!("{device_id}|{rule_id}|{started_ms}")
}

/// An id: 1 to `max_bytes` bytes, not blank, no control characters (they break logs, CSV and
/// terminals, and a blank id cannot be found again).
pub fn check_id(field: &str, id: &str, max_bytes: usize) -> Result<(), FieldError> {
    if id.trim().is_empty() {
        return Err(FieldError::new(field, "must not be empty"));
    }
    check_text(field, id, max_bytes)
}

/// Free text (a name, a fleet, a page cursor): at most `max_bytes` bytes, no control characters.
pub fn check_text(field: &str, value: &str, max_bytes: usize) -> Result<(), FieldError> {
    if value.len() > max_bytes {
        return Err(FieldError::new(field, format!("is {} bytes, the limit is {max_bytes}", value.len())));
    }
    match value.chars().find(|c| c.is_control()) {
        Some(c) => Err(FieldError::new(field, format!("contains control character U+{:04X}", c as u32))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The format the README shows consumers of `geofence.events` (`v7|pier|enter|1607390000000`).
    #[test]
    fn geofence_event_ids_name_device_fence_kind_and_time() {
        use crate::outputs::EventKind;
        assert_eq!(geofence_event_id("v7", "pier", EventKind::Enter, 1_607_390_000_000), "v7|pier|enter|1607390000000");
        assert_ne!(
            geofence_event_id("v7", "pier", EventKind::Enter, 1),
            geofence_event_id("v7", "pier", EventKind::Exit, 1)
        );
    }

    fn refused(result: Result<(), FieldError>) -> (String, String) {
        let e = result.unwrap_err();
        (e.field, e.message)
    }

    #[test]
    fn derived_event_ids_identify_device_and_fix() {
        assert_eq!(derived_event_id("truck-1", 5), "truck-1@5");
        assert_eq!(derived_event_id("a", 5), derived_event_id("a", 5));
        assert_ne!(derived_event_id("a", 5), derived_event_id("a", 6));
        assert_ne!(derived_event_id("a", 5), derived_event_id("b", 5));
    }

    #[test]
    fn ids_are_short_printable_and_not_blank() {
        for ok in ["truck-17", "Ω", "a b", &"x".repeat(MAX_ID_BYTES), "=cmd"] {
            assert!(check_id("id", ok, MAX_ID_BYTES).is_ok(), "{ok}");
        }
        assert_eq!(refused(check_id("fence", "", MAX_ID_BYTES)), ("fence".into(), "must not be empty".into()));
        assert_eq!(refused(check_id("id", "  ", MAX_ID_BYTES)).1, "must not be empty");
        let long = "x".repeat(MAX_ID_BYTES + 1);
        assert_eq!(refused(check_id("id", &long, MAX_ID_BYTES)).1, "is 129 bytes, the limit is 128");
        // 43 three-byte characters: 129 bytes, though only 43 characters.
        assert!(check_id("id", &"€".repeat(43), MAX_ID_BYTES).is_err());
        for bad in ["a\u{0}b", "tab\there", "new\nline", "\u{7f}", "\u{85}next", "esc\u{1b}[31m"] {
            let (field, message) = refused(check_id("device", bad, MAX_ID_BYTES));
            assert_eq!(field, "device");
            assert!(message.starts_with("contains control character U+"), "{bad:?}: {message}");
        }
    }

    #[test]
    fn text_is_bounded_and_printable_and_may_be_empty() {
        assert!(check_text("name", "", 256).is_ok());
        assert!(check_text("name", "Pier 7 — north", 256).is_ok());
        assert_eq!(refused(check_text("name", &"n".repeat(300), 256)).1, "is 300 bytes, the limit is 256");
        assert_eq!(refused(check_text("properties.name", "a\rb", 256)).0, "properties.name");
    }
}
