//! Splitting an ingest request body into items: one JSON object, a JSON array, or NDJSON.
//!
//! Items are returned as raw text so that each one is parsed (and rejected) on its own: one bad
//! line of an NDJSON upload must not cost the device the other 99.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::input::FieldError;

/// Why a whole body was refused (as opposed to one item in it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// A field the whole body shares is wrong (the device of an OsmAnd JSON body).
    #[error("{0}")]
    Field(FieldError),
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

impl BodyError {
    /// The error as ingest answers it: the field at fault (`body` unless one is named) and why.
    pub fn field_error(&self) -> FieldError {
        match self {
            BodyError::Field(e) => e.clone(),
            other => FieldError::new("body", other.to_string().trim_start_matches("body: ")),
        }
    }
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
        array_items(trimmed, max_items)?
    } else if serde_json::from_str::<&RawValue>(trimmed).is_ok() || !trimmed.contains('\n') {
        vec![trimmed]
    } else {
        let mut lines = trimmed.lines().map(str::trim).filter(|l| !l.is_empty());
        let items: Vec<&str> = lines.by_ref().take(max_items).collect();
        match lines.count() {
            0 => items,
            more => return Err(BodyError::TooManyItems { count: items.len() + more, limit: max_items }),
        }
    };
    if items.is_empty() {
        return Err(BodyError::EmptyBatch);
    }
    Ok(items)
}

/// The items of a JSON array as text, at most `max_items` of them: items beyond the limit are
/// counted for the error but never kept, so that a huge array costs no memory.
pub(crate) fn array_items(text: &str, max_items: usize) -> Result<Vec<&str>, BodyError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let items = BoundedItems { max_items }
        .deserialize(&mut de)
        .and_then(|items| de.end().map(|()| items))
        .map_err(|e| BodyError::BadArray(e.to_string()))?;
    items.map_err(|count| BodyError::TooManyItems { count, limit: max_items })
}

/// Collects the items of an array up to a limit; beyond it, only their number (`Err(count)`).
struct BoundedItems {
    max_items: usize,
}

impl<'de> DeserializeSeed<'de> for BoundedItems {
    type Value = Result<Vec<&'de str>, usize>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for BoundedItems {
    type Value = Result<Vec<&'de str>, usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<&'de RawValue>()? {
            if items.len() == self.max_items {
                let mut count = items.len() + 1;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    count += 1;
                }
                return Ok(Err(count));
            }
            items.push(item.get());
        }
        Ok(Ok(items))
    }
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

    #[test]
    fn whole_body_errors_name_their_field() {
        let e = BodyError::TooManyItems { count: 3, limit: 2 }.field_error();
        assert_eq!((e.field.as_str(), e.message.as_str()), ("body", "batch has 3 items, the limit is 2"));
        let e = BodyError::Field(FieldError::new("device_id", "is missing")).field_error();
        assert_eq!(e, FieldError::new("device_id", "is missing"));
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
