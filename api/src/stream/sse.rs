//! The Server-Sent Events text of stream messages, rendered once per message and shared.

use axum::body::Bytes;

use crate::stream::id::StreamKind;

/// A comment every idle stream sends so that proxies and clients see the connection alive.
pub const KEEP_ALIVE: &[u8] = b":keep-alive\n\n";

/// What every stream starts with: reconnect after a second when the connection drops.
pub const PREAMBLE: &[u8] = b"retry: 1000\n\n";

/// One message: `event:`, `id:` and one `data:` line of JSON.
pub fn message(kind: StreamKind, id: &str, payload: &[u8]) -> Bytes {
    let name = kind.event_name();
    let mut out = Vec::with_capacity(payload.len() + id.len() + name.len() + 24);
    for part in [b"event: ", name.as_bytes(), b"\nid: ", id.as_bytes(), b"\ndata: ", payload, b"\n\n"] {
        out.extend_from_slice(part);
    }
    Bytes::from(out)
}

/// A notice (`gap`): a named message without an id, so that it does not move the client's
/// position.
pub fn notice(event: &str, data: &serde_json::Value) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

/// The message's JSON on one line: a line break would end the `data:` line (the processors
/// write compact JSON; anything else on the topic is compacted here).
pub fn one_line(payload: &[u8]) -> Bytes {
    if !payload.iter().any(|&b| b == b'\n' || b == b'\r') {
        return Bytes::copy_from_slice(payload);
    }
    match serde_json::from_slice::<serde_json::Value>(payload) {
        Ok(value) => Bytes::from(value.to_string()),
        Err(_) => Bytes::from(String::from_utf8_lossy(payload).replace(['\n', '\r'], " ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_three_lines_and_a_blank_one() {
        let text = message(StreamKind::Events, "e/0:4", br#"{"a":1}"#);
        assert_eq!(&text[..], b"event: geofence\nid: e/0:4\ndata: {\"a\":1}\n\n");
        assert_eq!(&one_line(b"{\n \"a\": 1\r\n}")[..], br#"{"a":1}"#);
        assert_eq!(&one_line(br#"{"a":1}"#)[..], br#"{"a":1}"#);
    }
}
