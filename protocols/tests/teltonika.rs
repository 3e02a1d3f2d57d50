//! Teltonika's own examples (the "Teltonika Data Sending Protocols" page of the Teltonika
//! wiki: codec 8, 8 Extended and 16 packets) decoded field by field, encoded back byte for byte,
//! and every way a packet can be damaged refused with the field named.

use fleetstream_protocols::teltonika::{
    AvlPacket, Codec, GpsElement, IoElements, decode_packet, encode_ack, encode_packet,
};

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// Codec 8, first example: one record, IO elements of each width.
const CODEC8_ONE: &str = "000000000000003608010000016B40D8EA30010000000000000000000000000000000105021503010101425E0F01F10000601A014E0000000000000000010000C7CF";
/// Codec 8, second example: one record, fewer IO elements.
const CODEC8_TWO: &str =
    "000000000000002808010000016B40D9AD80010000000000000000000000000000000103021503010101425E100000010000F22A";
/// Codec 8, third example: two records.
const CODEC8_MULTI: &str = "000000000000004308020000016B40D57B480100000000000000000000000000000001010101000000000000016B40D5C198010000000000000000000000000000000101010101000000020000252C";
/// Codec 8 Extended example.
const CODEC8E: &str = "000000000000004A8E010000016B412CEE000100000000000000000000000000000000010005000100010100010011001D00010010015E2C880002000B000000003544C87A000E000000001DD7E06A00000100002994";
/// Codec 16 example: two records with a generation type.
const CODEC16: &str = "000000000000005F10020000016BDBC7833000000000000000000000000000000000000B05040200010000030002000B00270042563A00000000016BDBC7871800000000000000000000000000000000000B05040200010000030002000B00260042563A00000200005FB3";

#[test]
fn codec8_first_example_decodes_field_by_field() {
    let packet = decode_packet(&hex(CODEC8_ONE)).unwrap();
    assert_eq!(packet.codec, Codec::C8);
    let [r] = &packet.records[..] else { panic!("one record: {packet:?}") };
    assert_eq!(r.timestamp_ms, 0x0000016B40D8EA30); // 2019-06-10 10:04:46 UTC
    assert_eq!(r.priority, 1);
    assert_eq!(r.gps, GpsElement::default(), "the example has no fix");
    assert_eq!(r.event_io, 1);
    assert_eq!(r.generation_type, None);
    assert_eq!(r.io.one, vec![(0x15, 3), (0x01, 1)]);
    assert_eq!(r.io.two, vec![(0x42, 0x5E0F)]);
    assert_eq!(r.io.four, vec![(0xF1, 0x0000601A)]);
    assert_eq!(r.io.eight, vec![(0x4E, 0)]);
    assert_eq!(r.io.get(66), Some(24_079), "external voltage 24.079 V");
}

#[test]
fn codec8_second_and_multi_record_examples_decode() {
    let two = decode_packet(&hex(CODEC8_TWO)).unwrap();
    assert_eq!(two.records.len(), 1);
    assert_eq!(two.records[0].timestamp_ms, 0x0000016B40D9AD80);
    assert_eq!(two.records[0].io.one, vec![(0x15, 3), (0x01, 1)]);
    assert_eq!(two.records[0].io.two, vec![(0x42, 0x5E10)]);
    let multi = decode_packet(&hex(CODEC8_MULTI)).unwrap();
    let ts: Vec<u64> = multi.records.iter().map(|r| r.timestamp_ms).collect();
    assert_eq!(ts, vec![0x0000016B40D57B48, 0x0000016B40D5C198]);
    assert_eq!(multi.records[0].io.one, vec![(0x01, 0)]);
    assert_eq!(multi.records[1].io.one, vec![(0x01, 1)]);
}

#[test]
fn codec8_extended_example_decodes_two_byte_ids_and_counts() {
    let packet = decode_packet(&hex(CODEC8E)).unwrap();
    assert_eq!(packet.codec, Codec::C8E);
    let r = &packet.records[0];
    assert_eq!(r.timestamp_ms, 0x0000016B412CEE00);
    assert_eq!(r.event_io, 1);
    assert_eq!(r.io.one, vec![(0x0001, 1)]);
    assert_eq!(r.io.two, vec![(0x0011, 0x001D)]);
    assert_eq!(r.io.four, vec![(0x0010, 0x015E2C88)]);
    assert_eq!(r.io.eight, vec![(0x000B, 0x3544C87A), (0x000E, 0x1DD7E06A)]);
    assert!(r.io.var.is_empty());
    assert_eq!(r.io.get(16), Some(22_949_000), "total odometer");
}

#[test]
fn codec16_example_decodes_generation_types() {
    let packet = decode_packet(&hex(CODEC16)).unwrap();
    assert_eq!(packet.codec, Codec::C16);
    assert_eq!(packet.records.len(), 2);
    for (r, io_b) in packet.records.iter().zip([0x27, 0x26]) {
        assert_eq!(r.event_io, 0x000B);
        assert_eq!(r.generation_type, Some(5), "on change");
        assert_eq!(r.io.one, vec![(0x0001, 0), (0x0003, 0)]);
        assert_eq!(r.io.two, vec![(0x000B, io_b), (0x0042, 0x563A)]);
    }
}

#[test]
fn every_example_encodes_back_byte_for_byte() {
    for example in [CODEC8_ONE, CODEC8_TWO, CODEC8_MULTI, CODEC8E, CODEC16] {
        let frame = hex(example);
        assert_eq!(encode_packet(&decode_packet(&frame).unwrap()).unwrap(), frame, "{example}");
    }
}

#[test]
fn the_answer_is_the_record_count_in_four_bytes() {
    assert_eq!(encode_ack(1), [0, 0, 0, 1]);
    assert_eq!(encode_ack(2), hex("00000002")[..]);
}

fn refusal(frame: &[u8]) -> (String, String) {
    let e = decode_packet(frame).unwrap_err();
    (e.field, e.message)
}

#[test]
fn a_damaged_crc_is_refused() {
    let mut frame = hex(CODEC8_ONE);
    *frame.last_mut().unwrap() ^= 0x01;
    let (field, message) = refusal(&frame);
    assert_eq!(field, "crc");
    assert!(message.contains("0x0000C7CE") && message.contains("0xC7CF"), "{message}");
    // A flipped bit in the data is caught by the same check.
    let mut frame = hex(CODEC8_ONE);
    frame[20] ^= 0x80;
    assert_eq!(refusal(&frame).0, "crc");
}

/// `frame` with its data replaced by `data`, length and CRC recomputed: a well-formed packet
/// around broken data.
fn repacked(data: &[u8]) -> Vec<u8> {
    let crc = fleetstream_protocols::crc::crc16_ibm(data);
    [&[0, 0, 0, 0][..], &(data.len() as u32).to_be_bytes(), data, &u32::from(crc).to_be_bytes()].concat()
}

fn data_of(example: &str) -> Vec<u8> {
    let frame = hex(example);
    frame[8..frame.len() - 4].to_vec()
}

#[test]
fn mismatched_counts_are_refused() {
    let mut data = data_of(CODEC8_MULTI);
    *data.last_mut().unwrap() = 3;
    assert_eq!(refusal(&repacked(&data)), ("record_count_2".into(), "is 3, the first record count is 2".into()));
    let mut data = data_of(CODEC8_ONE);
    data[1] = 2; // says two records, holds one
    let (field, _) = refusal(&repacked(&data));
    assert!(field.starts_with("records[1]."), "{field}");
    let mut data = data_of(CODEC8_ONE);
    data[1] = 0;
    assert_eq!(refusal(&repacked(&data)).0, "record_count");
}

#[test]
fn a_wrong_io_total_is_refused_naming_the_record() {
    let mut data = data_of(CODEC8_ONE);
    // codec, count, timestamp 8, priority 1, GPS 15, event id 1: the total is at offset 27.
    data[27] = 6;
    let (field, message) = refusal(&repacked(&data));
    assert_eq!(field, "records[0].io.total");
    assert_eq!(message, "says 6 elements, the groups hold 5");
}

#[test]
fn other_codecs_and_framing_errors_are_refused() {
    let mut data = data_of(CODEC8_ONE);
    data[0] = 0x0C;
    let (field, message) = refusal(&repacked(&data));
    assert_eq!(field, "codec");
    assert!(message.contains("0x0C"), "{message}");
    let mut frame = hex(CODEC8_ONE);
    frame[3] = 1;
    assert_eq!(refusal(&frame).0, "preamble");
    let frame = hex(CODEC8_ONE);
    assert_eq!(refusal(&frame[..frame.len() - 1]).0, "crc");
    assert_eq!(refusal(&[frame.as_slice(), &[0]].concat()).0, "frame");
    let mut data = data_of(CODEC8_ONE);
    data.insert(data.len() - 1, 0);
    assert_eq!(refusal(&repacked(&data)).0, "record_count_2");
}

#[test]
fn encoding_refuses_what_the_codec_cannot_carry() {
    let packet = decode_packet(&hex(CODEC8E)).unwrap();
    let mut as_codec8 = AvlPacket { codec: Codec::C8, ..packet.clone() };
    as_codec8.records[0].io.one[0].0 = 300;
    assert_eq!(encode_packet(&as_codec8).unwrap_err().field, "records[0].io.n1.id");
    let mut var = packet.clone();
    var.records[0].io = IoElements { var: vec![(7, vec![1, 2])], ..IoElements::default() };
    assert!(encode_packet(&var).is_ok());
    var.codec = Codec::C16;
    var.records[0].generation_type = Some(1);
    assert_eq!(encode_packet(&var).unwrap_err().field, "records[0].io.nx");
    let empty = AvlPacket { codec: Codec::C8, records: vec![] };
    assert_eq!(encode_packet(&empty).unwrap_err().field, "record_count");
}
