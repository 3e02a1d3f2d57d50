//! Fix times: parsing what devices send and formatting what readers get, at millisecond precision.

use chrono::{DateTime, Datelike, SecondsFormat, Utc};

/// Milliseconds since the Unix epoch, UTC. The one time representation inside fleetstream:
/// ClickHouse 18.16 has no DateTime64, so every stored time is an `Int64` of milliseconds.
pub type EpochMillis = i64;

/// Parses an RFC 3339 timestamp with an explicit offset (`2020-12-08T01:11:40.250Z`).
/// Sub-millisecond digits are truncated, never rounded into the next millisecond.
pub fn parse_rfc3339_millis(text: &str) -> Result<EpochMillis, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("not an RFC 3339 timestamp with a UTC offset ({e}): {text:?}"))
}

/// Formats epoch milliseconds as RFC 3339 UTC with exactly three fractional digits.
pub fn format_millis(ms: EpochMillis) -> String {
    match DateTime::<Utc>::from_timestamp_millis(ms) {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Millis, true),
        None => format!("invalid-time({ms})"),
    }
}

/// Parses a query-string time: RFC 3339, or an integer of epoch milliseconds.
pub fn parse_time_param(text: &str) -> Result<EpochMillis, String> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    parse_rfc3339_millis(text)
}

/// The UTC calendar month of a time, as `year * 12 + month0`: consecutive months are consecutive
/// numbers. (ClickHouse partitions our tables by month.)
pub fn month_index(ms: EpochMillis) -> i64 {
    match DateTime::<Utc>::from_timestamp_millis(ms) {
        Some(t) => i64::from(t.year()) * 12 + i64::from(t.month0()),
        None => i64::MIN,
    }
}

/// Now, in epoch milliseconds.
pub fn now_millis() -> EpochMillis {
    Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_offsets_and_fractions() {
        assert_eq!(parse_rfc3339_millis("1970-01-01T00:00:01Z"), Ok(1000));
        assert_eq!(parse_rfc3339_millis("1970-01-01T01:00:01.5+01:00"), Ok(1500));
        assert_eq!(parse_rfc3339_millis("1970-01-01T00:00:00.0019Z"), Ok(1));
        assert!(parse_rfc3339_millis("2020-12-08T01:11:40").is_err(), "offset is required");
        assert!(parse_rfc3339_millis("yesterday").is_err());
    }

    #[test]
    fn formats_with_three_digits() {
        assert_eq!(format_millis(1_607_389_900_250), "2020-12-08T01:11:40.250Z");
        assert_eq!(format_millis(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn month_indices_are_consecutive_across_years() {
        let dec = parse_rfc3339_millis("2019-12-31T23:59:59.999Z").unwrap();
        let jan = parse_rfc3339_millis("2020-01-01T00:00:00Z").unwrap();
        assert_eq!(month_index(jan) - month_index(dec), 1);
        assert_eq!(month_index(jan), 2020 * 12);
        assert_eq!(month_index(parse_rfc3339_millis("1969-12-31T23:00:00Z").unwrap()), 1969 * 12 + 11);
    }

    #[test]
    fn query_times_accept_both_forms() {
        assert_eq!(parse_time_param("1607389900250"), Ok(1_607_389_900_250));
        assert_eq!(parse_time_param("2020-12-08T01:11:40.250Z"), Ok(1_607_389_900_250));
        assert!(parse_time_param("12/08/2020").is_err());
    }

    proptest! {
        #[test]
        fn format_then_parse_is_identity(ms in -62_135_596_800_000i64..253_402_300_799_999i64) {
            prop_assert_eq!(parse_rfc3339_millis(&format_millis(ms)), Ok(ms));
        }
    }
}
