//! Entry points shared by the fuzz targets (`fuzz/fuzz_targets/teltonika_stream.rs`,
//! `gt06_stream.rs`) and the test that replays their saved corpus on stable
//! (`protocols/tests/fuzz_corpus.rs`), so that both run exactly the same code.
//!
//! Beyond "does not panic", each checks what must hold for any input: the bytes are cut into
//! frames without reading past a bound, whatever decodes encodes back to the same bytes, and
//! whatever becomes a position is within the contract.

use fleetstream_schemas::{Limits, Position};

use crate::frames::FrameBuffer;
use crate::{gt06, teltonika};

const NOW: i64 = 1_700_000_000_000;
const MAX_FRAME: usize = 4096;

fn check_accepted(p: &Position) {
    assert!((-90.0..=90.0).contains(&p.lat) && (-180.0..=180.0).contains(&p.lon));
    assert!(p.fix_time_ms <= NOW + 600_000);
    let limits = Limits::default();
    assert!(p.attributes.get().len() <= limits.max_attributes_bytes);
    assert!(p.attributes.to_value().as_object().expect("an object").len() <= limits.max_attribute_keys);
    assert_eq!(&Position::from_message(&p.to_message()).expect("decodes"), p);
}

/// A Teltonika connection's bytes: the handshake, then AVL packets.
pub fn teltonika_stream(data: &[u8]) {
    let limits = Limits::default();
    let mut buf = FrameBuffer::new();
    buf.extend(data);
    let Ok(Some(handshake)) = buf.next_frame(teltonika::imei_frame_len) else { return };
    let imei = teltonika::decode_imei(&handshake).unwrap_or_else(|_| "356307042441013".into());
    while let Ok(Some(frame)) = buf.next_frame(|b| teltonika::avl_frame_len(b, MAX_FRAME)) {
        assert!(frame.len() <= MAX_FRAME);
        if frame == [teltonika::PING] {
            continue;
        }
        let Ok(packet) = teltonika::decode_packet(&frame) else { continue };
        assert_eq!(teltonika::encode_packet(&packet).expect("a decoded packet encodes"), frame);
        for record in &packet.records {
            if let Ok(p) = teltonika::record_position(&imei, record, NOW, &limits) {
                check_accepted(&p);
            }
        }
    }
}

/// A GT06 connection's bytes: packets of any protocol number.
pub fn gt06_stream(data: &[u8]) {
    let limits = Limits::default();
    let mut buf = FrameBuffer::new();
    buf.extend(data);
    while let Ok(Some(frame)) = buf.next_frame(|b| gt06::frame_len(b, MAX_FRAME)) {
        assert!(frame.len() <= MAX_FRAME);
        let Ok(packet) = gt06::decode_frame(&frame) else { continue };
        assert_eq!(gt06::encode_frame(&packet), frame, "a decoded packet encodes to its bytes");
        let Ok(message) = gt06::decode_message(&packet) else { continue };
        assert_eq!(gt06::encode_message(&message, packet.serial).content, packet.content);
        if let Some(Ok(p)) = gt06::message_position("359710049095095", &message, NOW, &limits) {
            check_accepted(&p);
        }
    }
}
