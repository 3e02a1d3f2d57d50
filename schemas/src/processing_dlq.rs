//! What the processors write to `processing.dlq` for a message or row they could not handle:
//! a payload that is not a position, or a row ClickHouse (or Kafka) refused permanently. The
//! partition then moves on; the letter keeps what is needed to diagnose and replay it.

use serde::{Deserialize, Serialize};

use crate::time::EpochMillis;

/// Version of [`ProcessingDeadLetter`] on the wire.
pub const PROCESSING_DEAD_LETTER_VERSION: u32 = 1;

/// The JSON Schema of one `processing.dlq` message (draft 2020-12).
pub const PROCESSING_DEAD_LETTER_JSON_SCHEMA: &str = include_str!("../processing-dead-letter.v1.schema.json");

/// Raw payloads and error texts are kept up to this size.
pub const MAX_PROCESSING_DEAD_LETTER_TEXT: usize = 16 * 1024;

/// Where processing gave up on an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// The `positions.raw` message is not a position this build understands.
    Decode,
    /// ClickHouse refused to return the device's processing state.
    LoadState,
    /// ClickHouse refused the position's row.
    StorePosition,
    /// ClickHouse refused a geofence event's row.
    StoreEvent,
    /// Kafka refused the enriched position's message.
    ProduceEnriched,
    /// Kafka refused a geofence event's message.
    ProduceEvent,
    /// ClickHouse refused the device's processing state.
    StoreState,
    /// ClickHouse refused an alert's row.
    StoreAlert,
    /// Kafka refused an alert's message.
    ProduceAlert,
}

impl Stage {
    /// Every stage, for metrics that show zero counts too.
    pub const ALL: [Stage; 9] = [
        Stage::Decode,
        Stage::LoadState,
        Stage::StorePosition,
        Stage::StoreEvent,
        Stage::ProduceEnriched,
        Stage::ProduceEvent,
        Stage::StoreState,
        Stage::StoreAlert,
        Stage::ProduceAlert,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::LoadState => "load_state",
            Stage::StorePosition => "store_position",
            Stage::StoreEvent => "store_event",
            Stage::ProduceEnriched => "produce_enriched",
            Stage::ProduceEvent => "produce_event",
            Stage::StoreState => "store_state",
            Stage::StoreAlert => "store_alert",
            Stage::ProduceAlert => "produce_alert",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessingDeadLetter {
    pub v: u32,
    pub stage: Stage,
    /// The refusal, as the database or broker put it (cut at [`MAX_PROCESSING_DEAD_LETTER_TEXT`]).
    pub error: String,
    /// The `positions.raw` message this came from.
    pub partition: i32,
    pub offset: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// The refused item as JSON (a position row, an event, a state), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<serde_json::Value>,
    /// The raw payload (lossy UTF-8, cut) when it could not be decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
    pub failed_at_ms: EpochMillis,
}

impl ProcessingDeadLetter {
    pub fn new(stage: Stage, error: &str, partition: i32, offset: i64, failed_at_ms: EpochMillis) -> Self {
        ProcessingDeadLetter {
            v: PROCESSING_DEAD_LETTER_VERSION,
            stage,
            error: cut(error.as_bytes()),
            partition,
            offset,
            device_id: None,
            item: None,
            raw: None,
            failed_at_ms,
        }
    }

    pub fn with_item(mut self, device_id: &str, item: serde_json::Value) -> Self {
        self.device_id = Some(device_id.to_string());
        self.item = Some(item);
        self
    }

    pub fn with_raw(mut self, raw: &[u8]) -> Self {
        self.raw = Some(cut(raw));
        self
    }

    pub fn to_message(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a ProcessingDeadLetter always serialises")
    }
}

/// At most [`MAX_PROCESSING_DEAD_LETTER_TEXT`] bytes, lossy UTF-8, cut on a character boundary.
fn cut(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_PROCESSING_DEAD_LETTER_TEXT)]);
    let mut end = text.len().min(MAX_PROCESSING_DEAD_LETTER_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_of_every_stage_satisfy_their_schema() {
        let schema: serde_json::Value = serde_json::from_str(PROCESSING_DEAD_LETTER_JSON_SCHEMA).unwrap();
        let contract = jsonschema::validator_for(&schema).unwrap();
        assert_eq!(schema["properties"]["stage"]["enum"].as_array().unwrap().len(), Stage::ALL.len());
        for stage in Stage::ALL {
            let bare = ProcessingDeadLetter::new(stage, "refused", 3, 42, 7);
            let with_item = bare.clone().with_item("d", serde_json::json!({"device_id": "d"}));
            let with_raw = bare.clone().with_raw(&[0xff; 20_000]);
            for letter in [bare, with_item, with_raw] {
                let message: serde_json::Value = serde_json::from_slice(&letter.to_message()).unwrap();
                assert!(contract.is_valid(&message), "{message}");
            }
        }
    }

    #[test]
    fn letters_round_trip_and_cut_what_they_carry() {
        let letter = ProcessingDeadLetter::new(Stage::Decode, &"e".repeat(20_000), 3, 42, 7).with_raw(&[0xff; 20_000]);
        assert_eq!(letter.error.len(), MAX_PROCESSING_DEAD_LETTER_TEXT);
        assert!(letter.raw.as_ref().unwrap().len() <= MAX_PROCESSING_DEAD_LETTER_TEXT);
        let back: ProcessingDeadLetter = serde_json::from_slice(&letter.to_message()).unwrap();
        assert_eq!(back, letter);
        let text = String::from_utf8(letter.to_message()).unwrap();
        assert!(text.contains(r#""stage":"decode""#), "{text}");
    }

    #[test]
    fn stage_names_match_their_wire_form() {
        for stage in Stage::ALL {
            assert_eq!(serde_json::to_value(stage).unwrap(), stage.as_str());
        }
    }
}
