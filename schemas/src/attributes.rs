//! A position's free-form `attributes`: one JSON object, carried as compact JSON text from the
//! moment ingest checks it to the API's answer.
//!
//! Ingest checks the object once and writes it out once ([`Attributes::check`]), in a single
//! streaming pass: members named like a secret are left out at any depth, a key given twice in
//! one object is refused, and the number of top-level keys and the size of the text are bounded
//! while it is written, so a hostile object costs no more work than the limits allow. After that
//! nothing builds it into a tree again: `positions.raw`, the storage row, `positions.enriched`
//! and the API's track carry the same text, each only checking that it is one JSON object.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::dead_letter::redact::{MIN_TOKEN_BYTES, is_secret_name, redact_presented};
use crate::input::{FieldError, Limits, field_of, strip_location};

/// How deeply objects and arrays may nest in attributes: a telematics value needs a few levels,
/// and each level is a frame on the stack of every reader.
pub const MAX_ATTRIBUTE_DEPTH: usize = 64;

/// The text of a position without attributes.
const EMPTY: &str = "{}";

/// Checked attributes: a JSON object as compact text, without secrets (`None` when empty, so
/// that the many positions without attributes allocate nothing for them).
#[derive(Clone, Default)]
pub struct Attributes(Option<Box<RawValue>>);

/// Attributes as a decoder found them, before [`Attributes::check`]: the text of the JSON
/// position's `attributes` member, or an object a protocol decoder built from what its device
/// sent.
#[derive(Debug)]
pub enum RawAttributes<'a> {
    Json(&'a RawValue),
    Map(Map<String, Value>),
}

impl Default for RawAttributes<'_> {
    fn default() -> Self {
        RawAttributes::Map(Map::new())
    }
}

impl From<Map<String, Value>> for RawAttributes<'_> {
    fn from(map: Map<String, Value>) -> Self {
        RawAttributes::Map(map)
    }
}

/// `null` and an absent member both mean no attributes; anything else is kept as text for
/// [`Attributes::check`], which says what is wrong with it.
impl<'de: 'a, 'a> Deserialize<'de> for RawAttributes<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Option::<&'a RawValue>::deserialize(d)?.map_or_else(RawAttributes::default, RawAttributes::Json))
    }
}

impl Attributes {
    /// No attributes (`{}`).
    pub fn empty() -> Self {
        Attributes(None)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// The object as JSON text.
    pub fn get(&self) -> &str {
        self.0.as_deref().map_or(EMPTY, RawValue::get)
    }

    /// Keeps `text` (JSON text of one object) as it is; `{}` is no attributes.
    fn of(raw: Box<RawValue>) -> Self {
        Attributes(Some(raw).filter(|raw| raw.get() != EMPTY))
    }

    /// The object as a tree, for the few callers that look inside (tests, mostly): it parses.
    pub fn to_value(&self) -> Value {
        serde_json::from_str(self.get()).expect("attributes are JSON")
    }

    /// Checks what a device sent and writes it out as compact JSON, leaving out members named
    /// like a secret at any depth. Errors name the field `attributes` and say why.
    pub fn check(raw: RawAttributes<'_>, limits: &Limits) -> Result<Self, FieldError> {
        let writer = Writer::new(limits.max_attribute_keys, limits.max_attributes_bytes, None);
        match raw {
            RawAttributes::Json(raw) if !raw.get().starts_with('{') => {
                Err(FieldError::new("attributes", "must be a JSON object"))
            }
            RawAttributes::Json(raw) => writer.write(&mut serde_json::Deserializer::from_str(raw.get())),
            RawAttributes::Map(map) if map.is_empty() => Ok(Attributes::empty()),
            RawAttributes::Map(map) => writer.write(Value::Object(map)),
        }
    }

    /// Replaces the text of `token` (the one the request presented) in every string, names
    /// included, so that a device cannot store the credential it used.
    pub fn redact_token(&mut self, token: Option<&str>) {
        let Some(token) = token.filter(|t| t.len() >= MIN_TOKEN_BYTES) else {
            return;
        };
        // The text is serde_json's compact encoding, which escapes character by character: a
        // string holding the token holds its encoding. Most attributes do not, and are kept.
        let encoded = serde_json::to_string(token).expect("a string encodes");
        if !self.get().contains(&encoded[1..encoded.len() - 1]) {
            return;
        }
        // The checks passed already (keys are compared as sent, so none is refused now); the
        // marker may be longer than the token it replaces.
        *self = Writer::new(usize::MAX, usize::MAX, Some(token))
            .write(&mut serde_json::Deserializer::from_str(self.get()))
            .expect("checked attributes are one JSON object");
    }

    /// Attributes read back from storage, where they were written checked.
    pub fn from_stored(text: String) -> Result<Self, String> {
        if !text.starts_with('{') {
            return Err("stored attributes are not a JSON object".into());
        }
        RawValue::from_string(text).map(Attributes::of).map_err(|e| format!("stored attributes are not JSON: {e}"))
    }
}

impl PartialEq for Attributes {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl fmt::Debug for Attributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.get())
    }
}

impl Serialize for Attributes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Some(raw) => raw.serialize(s),
            None => s.collect_map(std::iter::empty::<((), ())>()),
        }
    }
}

/// As `positions.raw` carries them: the text is kept as it is, once it is known to be JSON and
/// an object.
impl<'de> Deserialize<'de> for Attributes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        if !raw.get().starts_with('{') {
            return Err(de::Error::custom("attributes must be a JSON object"));
        }
        Ok(Attributes::of(raw))
    }
}

/// Writes one JSON object out as compact JSON while it is read, within bounds.
struct Writer<'t> {
    out: Vec<u8>,
    max_top_keys: usize,
    max_bytes: usize,
    token: Option<&'t str>,
    /// Why the writing stopped, when the input was JSON but not acceptable.
    refusal: Option<String>,
    /// The top-level member where it stopped, if it stopped inside one.
    stopped_in: Option<String>,
    /// It stopped because the whole object is too large, which no one member is to blame for.
    over_size: bool,
    /// How many objects and arrays enclose the value being written.
    depth: usize,
}

impl<'t> Writer<'t> {
    fn new(max_top_keys: usize, max_bytes: usize, token: Option<&'t str>) -> Self {
        Writer {
            out: Vec::with_capacity(64),
            max_top_keys,
            max_bytes,
            token,
            refusal: None,
            stopped_in: None,
            over_size: false,
            depth: 0,
        }
    }

    fn write<'de, D: Deserializer<'de, Error = serde_json::Error>>(mut self, d: D) -> Result<Attributes, FieldError> {
        let written = Member { writer: &mut self, top: true, comma: false }.deserialize(d);
        let field = match &self.stopped_in {
            Some(key) if !self.over_size => field_of(&format!("attributes.{key}"), ""),
            _ => "attributes".to_owned(),
        };
        if let Some(refusal) = self.refusal {
            return Err(FieldError::new(field, refusal));
        }
        written.map_err(|e| FieldError::new(field, strip_location(&e)))?;
        let text = String::from_utf8(self.out).expect("written from strings");
        Ok(Attributes::of(RawValue::from_string(text).expect("written as JSON")))
    }

    fn refuse<E: de::Error>(&mut self, why: String) -> E {
        self.refusal = Some(why);
        E::custom("refused")
    }

    /// Appends a JSON string; `false` once the text is over its limit.
    fn string(&mut self, text: &str) -> bool {
        self.value(&redact_presented(text, self.token))
    }

    /// Appends a scalar as serde_json writes it.
    fn value(&mut self, value: &impl Serialize) -> bool {
        serde_json::to_writer(&mut self.out, value).expect("writing to memory");
        self.out.len() <= self.max_bytes
    }

    /// Opens an object or an array, one level deeper.
    fn open<E: de::Error>(&mut self, bracket: u8) -> Result<(), E> {
        self.depth += 1;
        if self.depth > MAX_ATTRIBUTE_DEPTH {
            return Err(self.refuse(format!("nests deeper than {MAX_ATTRIBUTE_DEPTH} levels")));
        }
        self.out.push(bracket);
        Ok(())
    }

    fn close(&mut self, bracket: u8) {
        self.depth -= 1;
        self.out.push(bracket);
    }

    fn too_long<E: de::Error>(&mut self) -> E {
        self.over_size = true;
        let why = format!("is more than {} bytes as JSON", self.max_bytes);
        self.refuse(why)
    }
}

/// One value of the object being written (`top` for the object itself), after a comma when it
/// is not the first element of an array.
struct Member<'w, 't> {
    writer: &'w mut Writer<'t>,
    top: bool,
    comma: bool,
}

impl<'de> DeserializeSeed<'de> for Member<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if self.comma {
            self.writer.out.push(b',');
        }
        d.deserialize_any(self)
    }
}

impl Member<'_, '_> {
    fn written<E: de::Error>(self, within_limit: bool) -> Result<(), E> {
        if within_limit { Ok(()) } else { Err(self.writer.too_long()) }
    }
}

impl<'de> Visitor<'de> for Member<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        let ok = self.writer.value(&v);
        self.written(ok)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        let ok = self.writer.value(&v);
        self.written(ok)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        let ok = self.writer.value(&v);
        self.written(ok)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        // serde_json's own encoding of a float (shortest round-trip form; JSON has no NaN).
        let ok = self.writer.value(&v);
        self.written(ok)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        let ok = self.writer.string(v);
        self.written(ok)
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        let ok = self.writer.value(&());
        self.written(ok)
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.writer.open(b'[')?;
        let mut comma = false;
        while seq.next_element_seed(Member { writer: self.writer, top: false, comma })?.is_some() {
            comma = true;
        }
        self.writer.close(b']');
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.writer.open(b'{')?;
        let mut keys = 0usize;
        // Keys are compared as sent, so that redacting the token cannot make two of them equal.
        let mut written = Keys::default();
        while let Some(Key(key)) = map.next_key()? {
            keys += 1;
            if self.top && keys > self.writer.max_top_keys {
                let why = format!("has more than {} keys", self.writer.max_top_keys);
                return Err(self.writer.refuse(why));
            }
            if is_secret_name(&key) {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            if written.contains(&key) {
                if self.top {
                    self.writer.stopped_in = Some(key.clone().into_owned());
                }
                // The key is not quoted back: the field names it, redacted like every field.
                return Err(self.writer.refuse("has a key given twice in one object".to_owned()));
            }
            if !written.is_empty() {
                self.writer.out.push(b',');
            }
            if !self.writer.string(&key) {
                return Err(self.writer.too_long());
            }
            self.writer.out.push(b':');
            let value = map.next_value_seed(Member { writer: self.writer, top: false, comma: false });
            if value.is_err() && self.top && self.writer.stopped_in.is_none() {
                self.writer.stopped_in = Some(key.clone().into_owned());
            }
            value?;
            written.insert(key);
        }
        self.writer.close(b'}');
        if self.writer.out.len() > self.writer.max_bytes {
            return Err(self.writer.too_long());
        }
        Ok(())
    }
}

/// The keys of one object written so far. Only the members written are remembered, and the
/// size limit bounds how many there are; the few of a usual object are compared one by one,
/// the many of a large one hashed.
#[derive(Default)]
struct Keys<'de> {
    few: Vec<Cow<'de, str>>,
    many: HashSet<Cow<'de, str>>,
}

impl<'de> Keys<'de> {
    const FEW: usize = 16;

    fn contains(&self, key: &str) -> bool {
        self.few.iter().any(|k| k == key) || self.many.contains(key)
    }

    fn is_empty(&self) -> bool {
        self.few.is_empty()
    }

    fn insert(&mut self, key: Cow<'de, str>) {
        if self.few.len() < Self::FEW {
            self.few.push(key);
        } else {
            self.many.insert(key);
        }
    }
}

/// An object's key, borrowed from the input when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn check_json(text: &str) -> Result<Attributes, FieldError> {
        let raw: &RawValue = serde_json::from_str(text).unwrap();
        Attributes::check(RawAttributes::Json(raw), &Limits::default())
    }

    fn checked(text: &str) -> String {
        check_json(text).unwrap().get().to_owned()
    }

    fn refusal(text: &str) -> String {
        refusal_of(text, "attributes")
    }

    /// Why `text` is refused, checking the field named.
    fn refusal_of(text: &str, field: &str) -> String {
        let e = check_json(text).unwrap_err();
        assert_eq!(e.field, field, "{e}");
        e.message
    }

    /// A token whose text is not itself named like a secret, so that it can be a key.
    const TOKEN: &str = "fleet-reader-0123456789";

    #[test]
    fn objects_are_written_compact_and_in_order() {
        assert_eq!(
            checked(r#"{ "b" : [1, 2.50, -3, true, null, "x\"y\u00e9"], "a": {"c": {}}, "e": [] }"#),
            r#"{"b":[1,2.5,-3,true,null,"x\"yé"],"a":{"c":{}},"e":[]}"#
        );
        assert_eq!(checked("{}"), "{}");
        assert!(check_json("{}").unwrap().is_empty());
    }

    #[test]
    fn secret_members_are_left_out_at_any_depth() {
        assert_eq!(
            checked(
                r#"{"token":"a","driver":"ann","config":{"api_token":"b","mode":[1,{"Password":"c"}]},"secret":1}"#
            ),
            r#"{"driver":"ann","config":{"mode":[1,{}]}}"#
        );
    }

    #[test]
    fn what_is_not_one_acceptable_object_is_refused_with_the_reason() {
        assert!(refusal("[1]").contains("object"));
        assert!(refusal(r#""text""#).contains("object"));
        assert!(refusal_of(r#"{"k":1,"k":2}"#, "attributes.k").contains("twice"));
        // A key is not quoted back in the message: a token sent as a key would leak past the
        // redaction of the field.
        let secret = refusal_of(r#"{"a\"tok":1,"a\"tok":2}"#, "attributes.a\"tok");
        assert_eq!(secret, "has a key given twice in one object");
        assert!(refusal_of(r#"{"a":{"k":1,"k":2}}"#, "attributes.a").contains("twice"));
        assert!(refusal_of(r#"{"a":1,"n":[1e400]}"#, "attributes.n").contains("out of range"));
        let many: Vec<String> = (0..65).map(|i| format!(r#""k{i}":1"#)).collect();
        assert_eq!(refusal(&format!("{{{}}}", many.join(","))), "has more than 64 keys");
        let big = format!(r#"{{"k":"{}"}}"#, "v".repeat(5000));
        assert_eq!(refusal(&big), "is more than 4096 bytes as JSON");
    }

    #[test]
    fn the_limits_count_what_is_written() {
        // 64 keys and exactly the byte limit pass; nested keys do not count against the 64.
        let many: Vec<String> = (0..64).map(|i| format!(r#""k{i}":{{"a":1,"b":2}}"#)).collect();
        checked(&format!("{{{}}}", many.join(",")));
        let fill = 4096 - r#"{"k":""}"#.len();
        checked(&format!(r#"{{"k":"{}"}}"#, "v".repeat(fill)));
        assert!(check_json(&format!(r#"{{"k":"{}"}}"#, "v".repeat(fill + 1))).unwrap_err().message.contains("4096"));
        // Whitespace and left-out secrets do not count.
        checked(&format!(r#"{{"k"  :  "{}", "token": "{}"}}"#, "v".repeat(fill), "t".repeat(8000)));
    }

    #[test]
    fn objects_built_by_decoders_go_through_the_same_checks() {
        let map = json!({"io66": 12.5, "password": "x", "cells": ["a", "b"]}).as_object().unwrap().clone();
        let attributes = Attributes::check(map.into(), &Limits::default()).unwrap();
        // A decoder's object is a sorted map; text keeps the order it was sent in.
        assert_eq!(attributes.get(), r#"{"cells":["a","b"],"io66":12.5}"#);
        assert!(Attributes::check(RawAttributes::default(), &Limits::default()).unwrap().is_empty());
    }

    #[test]
    fn the_presented_token_is_redacted_from_names_and_strings() {
        let mut attributes =
            check_json(&format!(r#"{{"note":"auth={TOKEN}","list":["{TOKEN}",{{"{TOKEN}":1}}],"n":1}}"#)).unwrap();
        attributes.redact_token(Some(TOKEN));
        assert_eq!(attributes.get(), r#"{"note":"auth=<redacted>","list":["<redacted>",{"<redacted>":1}],"n":1}"#);
        let kept = check_json(r#"{"note":"no credential here"}"#).unwrap();
        for token in [Some(TOKEN), None, Some("short")] {
            let mut again = kept.clone();
            again.redact_token(token);
            assert_eq!(again, kept);
        }
        // Two keys that redaction makes equal are kept, as two members.
        let mut twins = check_json(&format!(r#"{{"a{TOKEN}":1,"a<redacted>":2}}"#)).unwrap();
        twins.redact_token(Some(TOKEN));
        assert_eq!(twins.get(), r#"{"a<redacted>":1,"a<redacted>":2}"#);
    }

    #[test]
    fn an_escaped_token_is_found_too() {
        let token = "fleet\"secret\\0123456789";
        let sent = json!({"note": format!("x{token}y")}).to_string();
        let mut attributes = check_json(&sent).unwrap();
        attributes.redact_token(Some(token));
        assert_eq!(attributes.get(), r#"{"note":"x<redacted>y"}"#);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!(r#"{{"k":{}1{}}}"#, "[".repeat(100_000), "]".repeat(100_000));
        let mut de = serde_json::Deserializer::from_str(&deep);
        let parsed: Result<&RawValue, _> = serde::Deserialize::deserialize(&mut de);
        if let Ok(raw) = parsed {
            let e = Attributes::check(RawAttributes::Json(raw), &Limits::default()).unwrap_err();
            // The writer's own limit comes long before serde_json's (128).
            assert_eq!((e.field.as_str(), e.message.as_str()), ("attributes.k", "nests deeper than 64 levels"));
        }
        // The object itself is the first level.
        let levels = |n: usize| format!(r#"{{"k":{}1{}}}"#, "[".repeat(n - 1), "]".repeat(n - 1));
        assert!(check_json(&levels(MAX_ATTRIBUTE_DEPTH)).is_ok());
        assert_eq!(refusal_of(&levels(MAX_ATTRIBUTE_DEPTH + 1), "attributes.k"), "nests deeper than 64 levels");
        let objects = |n: usize| format!("{}1{}", r#"{"k":"#.repeat(n), "}".repeat(n));
        assert!(check_json(&objects(MAX_ATTRIBUTE_DEPTH)).is_ok());
        assert_eq!(refusal_of(&objects(MAX_ATTRIBUTE_DEPTH + 1), "attributes.k"), "nests deeper than 64 levels");
        let long_key = format!(r#"{{"{}":[1e400]}}"#, "k".repeat(1000));
        // A name too long to show whole is not cut (a cut could keep part of a token).
        assert_eq!(check_json(&long_key).unwrap_err().field, "attributes");
    }

    #[test]
    fn the_message_form_is_the_text_and_only_objects_decode() {
        let attributes = checked(r#"{"a":[1,"x"]}"#);
        let decoded: Attributes = serde_json::from_str(&attributes).unwrap();
        assert_eq!(serde_json::to_string(&decoded).unwrap(), attributes);
        assert!(serde_json::from_str::<Attributes>("[1]").is_err());
        assert!(Attributes::from_stored("[1]".into()).is_err());
        assert!(Attributes::from_stored("{not json".into()).is_err());
        assert_eq!(Attributes::from_stored(attributes.clone()).unwrap().get(), attributes);
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            (-1e12f64..1e12).prop_map(Value::from),
            "[a-z\"\\\\é\u{1}]{0,8}".prop_map(Value::from),
        ];
        // Keys of at most four letters cannot be named like a secret, so nothing is left out.
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                proptest::collection::btree_map("[a-z]{1,4}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Without secrets or limits in the way, writing is lossless: the text decodes to the
        /// object sent, whether it came as text (spaced or not) or as a decoder's object.
        #[test]
        fn writing_keeps_the_object(members in proptest::collection::btree_map("[a-z]{1,4}", json_value(), 0..8)) {
            let object: Map<String, Value> = members.into_iter().collect();
            let limits = Limits { max_attributes_bytes: usize::MAX, ..Limits::default() };
            let pretty = serde_json::to_string_pretty(&object).unwrap();
            let raw: &RawValue = serde_json::from_str(&pretty).unwrap();
            let from_text = Attributes::check(RawAttributes::Json(raw), &limits).unwrap();
            let from_map = Attributes::check(object.clone().into(), &limits).unwrap();
            prop_assert_eq!(from_text.get(), serde_json::to_string(&object).unwrap());
            prop_assert_eq!(&from_map, &from_text);
            let back: Map<String, Value> = serde_json::from_str(from_text.get()).unwrap();
            prop_assert_eq!(back, object);
        }

        #[test]
        fn arbitrary_objects_never_panic(text in "\\{[ -~]{0,60}\\}") {
            if let Ok(raw) = serde_json::from_str::<&RawValue>(&text) {
                let _ = Attributes::check(RawAttributes::Json(raw), &Limits::default());
            }
        }
    }
}
