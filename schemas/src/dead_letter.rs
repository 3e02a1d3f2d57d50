//! What ingest writes to `positions.dlq` for a rejected item: why, and what was sent (that item
//! only, cut at [`MAX_DEAD_LETTER_RAW_BYTES`], with every secret removed by [`redact`]).

pub mod redact;

use serde::{Deserialize, Serialize};

use crate::input::FieldError;
use crate::time::EpochMillis;

/// Raw items are kept up to this size; a larger one is cut and marked `raw_truncated`.
pub const MAX_DEAD_LETTER_RAW_BYTES: usize = 16 * 1024;

/// Version of [`DeadLetter`] on the wire.
pub const DEAD_LETTER_VERSION: u32 = 1;

/// The JSON Schema of one `positions.dlq` message (draft 2020-12).
pub const DEAD_LETTER_JSON_SCHEMA: &str = include_str!("../dead-letter.v1.schema.json");

/// One message of `positions.dlq` (`dead-letter.v1.schema.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// [`DEAD_LETTER_VERSION`].
    pub v: u32,
    /// `json` or `osmand`.
    pub protocol: String,
    pub field: String,
    pub message: String,
    pub received_at_ms: EpochMillis,
    /// The item as received (lossy UTF-8), secrets redacted, at most
    /// [`MAX_DEAD_LETTER_RAW_BYTES`].
    pub raw: String,
    pub raw_truncated: bool,
}

/// What every dead letter of one request shares.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// `json` or `osmand`.
    pub protocol: &'a str,
    pub received_at_ms: EpochMillis,
    /// The token the request presented: its text is removed from everything a letter holds.
    pub token: Option<&'a str>,
}

/// One rejected item as it was sent, and in which syntax (which decides how secrets are found).
#[derive(Debug, Clone, Copy)]
pub enum Raw<'a> {
    /// JSON text: an item of a JSON body, or a whole body.
    Json(&'a [u8]),
    /// URL-encoded parameters: an OsmAnd query string and/or form body.
    Params(&'a [u8]),
    /// One location of an OsmAnd JSON body, kept as a body of its own so that the letter says
    /// which device sent it (see [`crate::osmand::single_location_body`]).
    OsmandLocation { device_id: &'a str, location: &'a str },
    /// A binary frame of a TCP tracker (Teltonika, GT06), stored as hex with the device that sent
    /// it (empty before the device said who it is): `{"device_id": "...", "frame": "<hex>"}`.
    Frame { device_id: &'a str, bytes: &'a [u8] },
}

impl Raw<'_> {
    /// The item's text with secrets redacted, whole.
    fn redacted(&self, token: Option<&str>) -> String {
        let text = match self {
            Raw::Json(bytes) => redact::redact_json(&String::from_utf8_lossy(bytes)).into_owned(),
            Raw::Params(bytes) => redact::redact_params(&String::from_utf8_lossy(bytes)).into_owned(),
            Raw::OsmandLocation { device_id, location } => {
                redact::redact_json(&crate::osmand::single_location_body(device_id, location)).into_owned()
            }
            Raw::Frame { device_id, bytes } => {
                // Past half the bound the hex is cut anyway: do not build more of it.
                let hex: String =
                    bytes.iter().take(MAX_DEAD_LETTER_RAW_BYTES / 2).map(|b| format!("{b:02x}")).collect();
                serde_json::json!({ "device_id": device_id, "frame": hex }).to_string()
            }
        };
        redact::redact_presented(&text, token).into_owned()
    }
}

impl DeadLetter {
    /// The letter of one rejected item. Secrets are redacted before the cut, so that a cut
    /// cannot leave the first half of one behind.
    pub fn new(origin: &Origin<'_>, error: &FieldError, raw: Raw<'_>) -> Self {
        let mut text = raw.redacted(origin.token);
        let raw_truncated = text.len() > MAX_DEAD_LETTER_RAW_BYTES;
        if raw_truncated {
            let mut cut = MAX_DEAD_LETTER_RAW_BYTES;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        DeadLetter {
            v: DEAD_LETTER_VERSION,
            protocol: origin.protocol.into(),
            field: redact::redact_presented(&error.field, origin.token).into_owned(),
            message: redact::redact_presented(&error.message, origin.token).into_owned(),
            received_at_ms: origin.received_at_ms,
            raw: text,
            raw_truncated,
        }
    }

    /// The one letter standing for the `unlettered` rejected items of a request beyond the
    /// first `lettered`, which had a letter each: a request cannot write more than that.
    pub fn summary(origin: &Origin<'_>, lettered: usize, unlettered: usize) -> Self {
        DeadLetter {
            v: DEAD_LETTER_VERSION,
            protocol: origin.protocol.into(),
            field: "body".into(),
            message: format!(
                "{unlettered} more items of this request were rejected; only the first {lettered} have a dead letter"
            ),
            received_at_ms: origin.received_at_ms,
            raw: String::new(),
            raw_truncated: false,
        }
    }

    pub fn to_message(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a DeadLetter always serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: Origin<'static> = Origin { protocol: "json", received_at_ms: 5, token: None };

    #[test]
    fn letters_satisfy_their_schema() {
        let schema: serde_json::Value = serde_json::from_str(DEAD_LETTER_JSON_SCHEMA).unwrap();
        let contract = jsonschema::validator_for(&schema).unwrap();
        let e = FieldError::new("lat", "bad");
        let frame = Raw::Frame { device_id: "356307042441013", bytes: &[0xff; 40_000] };
        for (protocol, raw) in
            [("json", Raw::Json(b"{\"lat\":91}")), ("teltonika", frame), ("osmand", Raw::Params(b"id=x"))]
        {
            let origin = Origin { protocol, ..ORIGIN };
            for letter in [DeadLetter::new(&origin, &e, raw), DeadLetter::summary(&origin, 100, 7)] {
                let message: serde_json::Value = serde_json::from_slice(&letter.to_message()).unwrap();
                assert!(contract.is_valid(&message), "{message}");
            }
        }
        let mut unknown = serde_json::to_value(DeadLetter::summary(&ORIGIN, 1, 1)).unwrap();
        unknown["protocol"] = "carrier-pigeon".into();
        assert!(!contract.is_valid(&unknown), "the schema lists the protocols");
    }

    #[test]
    fn large_raw_items_are_cut_and_marked() {
        let e = FieldError::new("lat", "bad");
        let small = DeadLetter::new(&ORIGIN, &e, Raw::Json(b"{\"lat\":91}"));
        assert_eq!((small.raw.as_str(), small.raw_truncated), ("{\"lat\":91}", false));
        let big = DeadLetter::new(&ORIGIN, &e, Raw::Json(&vec![b'x'; MAX_DEAD_LETTER_RAW_BYTES + 10]));
        assert_eq!((big.raw.len(), big.raw_truncated), (MAX_DEAD_LETTER_RAW_BYTES, true));
        let back: DeadLetter = serde_json::from_slice(&small.to_message()).unwrap();
        assert_eq!(back, small);
    }

    #[test]
    fn invalid_utf8_is_kept_lossily() {
        let d = DeadLetter::new(&ORIGIN, &FieldError::new("body", "x"), Raw::Json(b"\xff\xfeok"));
        assert!(d.raw.ends_with("ok"));
    }

    #[test]
    fn cuts_fall_on_character_boundaries() {
        let text = format!("x{}", "é".repeat(MAX_DEAD_LETTER_RAW_BYTES));
        let d = DeadLetter::new(&ORIGIN, &FieldError::new("body", "x"), Raw::Json(text.as_bytes()));
        assert!(d.raw_truncated && d.raw.len() < MAX_DEAD_LETTER_RAW_BYTES && d.raw.len() > 16_000);
    }

    #[test]
    fn letters_keep_no_secret() {
        let token = "device-secret-0123456789";
        let origin = Origin { protocol: "osmand", received_at_ms: 5, token: Some(token) };
        let error = FieldError::new("lat", format!("{token:?} is not a number"));
        let query = format!("id=7&lat={token}&TOKEN={token}&%74oken=other-secret");
        let d = DeadLetter::new(&origin, &error, Raw::Params(query.as_bytes()));
        assert_eq!(d.raw, "id=7&lat=<redacted>&TOKEN=<redacted>&%74oken=<redacted>");
        assert!(!d.message.contains(token), "{}", d.message);
        let json = r#"{"device_id":"d","token":"other-secret","lat":91}"#;
        let d = DeadLetter::new(&origin, &error, Raw::Json(json.as_bytes()));
        assert_eq!(d.raw, r#"{"device_id":"d","token":"<redacted>","lat":91}"#);
    }

    #[test]
    fn a_secret_across_the_cut_leaves_nothing_behind() {
        let token = "t".repeat(40);
        let origin = Origin { token: Some(&token), ..ORIGIN };
        // In the text as sent, the cut falls in the middle of the note's copy of the token.
        let padding = "x".repeat(MAX_DEAD_LETTER_RAW_BYTES - 38);
        let tail = "y".repeat(100);
        let json = format!(r#"{{"pad":"{padding}","note":"{token}","token":"{token}","tail":"{tail}"}}"#);
        let d = DeadLetter::new(&origin, &FieldError::new("lat", "x"), Raw::Json(json.as_bytes()));
        assert!(d.raw_truncated);
        assert!(!d.raw.contains("tttttttttttttttt"), "{}", &d.raw[d.raw.len() - 60..]);
    }

    #[test]
    fn an_osmand_location_is_stored_with_its_device() {
        let raw = Raw::OsmandLocation { device_id: "phone-1", location: r#"{"coords":{"latitude":95}}"# };
        let d = DeadLetter::new(&ORIGIN, &FieldError::new("location.coords.latitude", "x"), raw);
        assert_eq!(d.raw, r#"{"device_id":"phone-1","location":{"coords":{"latitude":95}}}"#);
    }

    #[test]
    fn a_frame_is_kept_as_hex_with_its_device_and_cut_at_the_bound() {
        let d = DeadLetter::new(
            &ORIGIN,
            &FieldError::new("crc", "x"),
            Raw::Frame { device_id: "3563", bytes: &[0, 0x8e, 0xff] },
        );
        assert_eq!(d.raw, r#"{"device_id":"3563","frame":"008eff"}"#);
        let big = vec![0xAB; MAX_DEAD_LETTER_RAW_BYTES];
        let d = DeadLetter::new(&ORIGIN, &FieldError::new("crc", "x"), Raw::Frame { device_id: "3563", bytes: &big });
        assert!(d.raw_truncated && d.raw.len() == MAX_DEAD_LETTER_RAW_BYTES);
    }

    #[test]
    fn a_summary_counts_what_has_no_letter() {
        let d = DeadLetter::summary(&ORIGIN, 100, 4900);
        assert_eq!(d.field, "body");
        assert!(d.message.starts_with("4900 more items") && d.message.contains("first 100"), "{}", d.message);
    }
}
