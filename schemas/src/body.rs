//! Splitting an ingest request body into items: one JSON object, a JSON array, or NDJSON.
//!
//! Items are returned as raw text so that each one is parsed (and rejected) on its own: one bad
//! line of an NDJSON upload must not cost the device the other 99.

use serde_json::value::RawValue;

/// Why a whole body was refused (as opposed to one item in it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("body: is empty")]
    Empty,
    #[error("body: is not UTF-8 ({0})")]
    NotUtf8(String),
    #[error("body: is not a JSON array of positions ({0})")]
    BadArray(String),
    #[error("body: batch is empty")]
    EmptyBatch,
    #[error("body: batch has {count} items, the limit is {limit}")]
    TooManyItems { count: usize, limit: usize },
}

/// Splits `body` into item texts, at most `max_items` of them.
///
/// - A body starting with `[` is a JSON array; a malformed array refuses the whole body.
/// - Otherwise, a body that is one JSON value (even pretty-printed over many lines) is one item.
/// - Otherwise each non-empty line is an item (NDJSON), valid or not.
pub fn split_body(body: &[u8], max_items: usize) -> Result<Vec<&str>, BodyError> {
    let text = std::str::from_utf8(body).map_err(|e| BodyError::NotUtf8(e.to_string()))?;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(BodyError::Empty);
    }
    let items: Vec<&str> = if trimmed.starts_with('[') {
        let raw: Vec<&RawValue> = serde_json::from_str(trimmed).map_err(|e| BodyError::BadArray(e.to_string()))?;
        raw.into_iter().map(RawValue::get).collect()
    } else if serde_json::from_str::<&RawValue>(trimmed).is_ok() || !trimmed.contains('\n') {
        vec![trimmed]
    } else {
        trimmed.lines().map(str::trim).filter(|l| !l.is_empty()).collect()
    };
    if items.is_empty() {
        return Err(BodyError::EmptyBatch);
    }
    if items.len() > max_items {
        return Err(BodyError::TooManyItems { count: items.len(), limit: max_items });
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn one_object_is_one_item() {
        assert_eq!(split_body(br#" {"a":1} "#, 10).unwrap(), vec![r#"{"a":1}"#]);
    }

    #[test]
    fn pretty_printed_object_is_one_item() {
        assert_eq!(split_body(b"{\n  \"a\": 1\n}\n", 10).unwrap().len(), 1);
    }

    #[test]
    fn array_items_are_split() {
        assert_eq!(split_body(br#"[{"a":1}, {"a":2}]"#, 10).unwrap(), vec![r#"{"a":1}"#, r#"{"a":2}"#]);
    }

    #[test]
    fn ndjson_lines_are_split_and_bad_lines_kept_for_their_own_error() {
        let items = split_body(b"{\"a\":1}\n\n{\"a\":\n{\"a\":3}\r\n", 10).unwrap();
        assert_eq!(items, vec![r#"{"a":1}"#, r#"{"a":"#, r#"{"a":3}"#]);
    }

    #[test]
    fn truncated_single_object_is_one_bad_item() {
        assert_eq!(split_body(br#"{"a":1"#, 10).unwrap(), vec![r#"{"a":1"#]);
    }

    #[test]
    fn whole_body_errors() {
        assert_eq!(split_body(b"  \n", 10), Err(BodyError::Empty));
        assert_eq!(split_body(b"[]", 10), Err(BodyError::EmptyBatch));
        assert!(matches!(split_body(b"[{\"a\":1},", 10), Err(BodyError::BadArray(_))));
        assert!(matches!(split_body(b"\xff\xfe", 10), Err(BodyError::NotUtf8(_))));
        assert_eq!(split_body(b"[1,2,3]", 2), Err(BodyError::TooManyItems { count: 3, limit: 2 }));
        assert_eq!(split_body(b"1\n2\n3", 2), Err(BodyError::TooManyItems { count: 3, limit: 2 }));
    }

    proptest! {
        #[test]
        fn ndjson_of_n_objects_gives_n_items(n in 1usize..50) {
            let body: String = (0..n).map(|i| format!("{{\"i\":{i}}}\n")).collect();
            let items = split_body(body.as_bytes(), 1000).unwrap();
            prop_assert_eq!(items.len(), n);
        }

        #[test]
        fn array_of_n_objects_gives_n_items(n in 1usize..50) {
            let inner: Vec<String> = (0..n).map(|i| format!("{{\"i\":{i}}}")).collect();
            let body = format!("[{}]", inner.join(","));
            prop_assert_eq!(split_body(body.as_bytes(), 1000).unwrap().len(), n);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = split_body(&bytes, 100);
        }
    }
}
