//! GT06 packets from the protocol document (login, its answer, a location) and from a TK06A
//! device's capture published in a question on codewithsundeep.com (login and location), decoded
//! field by field, encoded back byte for byte, and damaged packets refused with the field named.

use fleetstream_protocols::gt06::{
    Message, decode_frame, decode_message, encode_frame, encode_message, frame_len, message_position, protocol,
    response,
};
use fleetstream_schemas::Limits;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// The document's login packet: IMEI 123456789012345, serial number 1.
const DOC_LOGIN: &str = "78 78 0D 01 01 23 45 67 89 01 23 45 00 01 8C DD 0D 0A";
/// The document's answer to it.
const DOC_LOGIN_ANSWER: &str = "78 78 05 01 00 01 D9 DC 0D 0A";
/// The document's location: 2011-08-29 17:46:16 UTC, 12 satellites, Shenzhen, serial number 3.
const DOC_LOCATION: &str =
    "78 78 1F 12 0B 08 1D 11 2E 10 CF 02 7A C7 EB 0C 46 58 49 00 14 8F 01 CC 00 28 7D 00 1F B8 00 03 80 81 0D 0A";
/// A TK06A's login: IMEI 355488000035363, serial number 0x15.
const DEVICE_LOGIN: &str = "78780D01035548800003536300152E440D0A";
/// The same TK06A's location: 2015-11-05 14:37:54 UTC, 6 satellites, north and east.
const DEVICE_LOCATION: &str = "78781f120f0b050e2536c601fb782d07ed996b00345d01941b00b8002f51001634210d0a";

const NOW: i64 = 1_700_000_000_000;

#[test]
fn the_documented_login_decodes_and_is_answered_as_documented() {
    let frame = hex(DOC_LOGIN);
    assert_eq!(frame_len(&frame, 1024).unwrap(), Some(frame.len()));
    let packet = decode_frame(&frame).unwrap();
    assert_eq!((packet.protocol, packet.serial, packet.long), (protocol::LOGIN, 1, false));
    let message = decode_message(&packet).unwrap();
    assert_eq!(message, Message::Login { imei: "123456789012345".into(), rest: vec![] });
    assert_eq!(response(protocol::LOGIN, packet.serial), hex(DOC_LOGIN_ANSWER));
    assert_eq!(encode_frame(&encode_message(&message, 1)), frame);
}

#[test]
fn a_devices_login_and_location_decode() {
    let login = decode_message(&decode_frame(&hex(DEVICE_LOGIN)).unwrap()).unwrap();
    assert_eq!(login, Message::Login { imei: "355488000035363".into(), rest: vec![] });

    let packet = decode_frame(&hex(DEVICE_LOCATION)).unwrap();
    assert_eq!((packet.protocol, packet.serial), (protocol::LOCATION, 0x16));
    let message = decode_message(&packet).unwrap();
    let Message::Location { gps, cell, rest, .. } = &message else { panic!("{message:?}") };
    assert_eq!(gps.time, [15, 11, 5, 14, 37, 54]);
    assert_eq!(gps.satellites(), 6);
    assert!(gps.positioned());
    assert_eq!(gps.course(), 93);
    assert!((gps.latitude() - 18.476_398).abs() < 1e-6, "{}", gps.latitude());
    assert!((gps.longitude() - 73.895_455).abs() < 1e-6, "{}", gps.longitude());
    assert_eq!((cell.mcc, cell.mnc, cell.lac, cell.cell_id), (404, 27, 0xB8, 0x2F51));
    assert!(rest.is_empty());
    assert_eq!(encode_frame(&encode_message(&message, 0x16)), hex(DEVICE_LOCATION));

    let p = message_position("355488024906769", &message, NOW, &Limits::default()).unwrap().unwrap();
    assert_eq!(p.fix_time_ms, 1_446_734_274_000);
    assert_eq!(p.speed_mps, Some(0.0));
    assert_eq!(p.heading_deg, Some(93.0));
    assert_eq!(p.attributes.to_value()["mcc"], 404);
    assert_eq!(p.attributes.to_value()["gps_valid"], true);
    assert!(message_position("1", &login, NOW, &Limits::default()).is_none(), "a login has no position");
}

#[test]
fn the_documented_location_decodes() {
    let packet = decode_frame(&hex(DOC_LOCATION)).unwrap();
    assert_eq!((packet.protocol, packet.serial), (protocol::LOCATION, 3));
    let message = decode_message(&packet).unwrap();
    let Message::Location { gps, cell, .. } = &message else { panic!("{message:?}") };
    assert_eq!(gps.time, [11, 8, 29, 17, 46, 16]);
    assert_eq!((gps.satellites(), gps.speed, gps.course(), gps.positioned()), (15, 0, 143, true));
    assert!((gps.latitude() - 23.111_668).abs() < 1e-6, "{}", gps.latitude());
    assert!((gps.longitude() - 114.409_285).abs() < 1e-6, "{}", gps.longitude());
    assert_eq!((cell.mcc, cell.mnc, cell.lac, cell.cell_id), (460, 0, 0x287D, 0x1FB8));
    let p = message_position("123456789012345", &message, NOW, &Limits::default()).unwrap().unwrap();
    assert_eq!(p.fix_time_ms, 1_314_639_976_000);
    assert_eq!(
        response(protocol::LOCATION, 3),
        encode_frame(&fleetstream_protocols::gt06::Packet { long: false, protocol: 0x12, content: vec![], serial: 3 })
    );
}

#[test]
fn the_time_an_encoder_writes_is_the_time_decoding_reads() {
    let mut message = decode_message(&decode_frame(&hex(DEVICE_LOCATION)).unwrap()).unwrap();
    let Message::Location { gps, .. } = &mut message else { unreachable!() };
    let fix_ms = 1_607_415_123_000; // 2020-12-08T08:12:03Z
    gps.time = fleetstream_protocols::gt06::Gps::time_of(fix_ms).unwrap();
    assert_eq!(gps.time, [20, 12, 8, 8, 12, 3]);
    let p = message_position("1", &message, NOW, &Limits::default()).unwrap().unwrap();
    assert_eq!(p.fix_time_ms, fix_ms);
    assert_eq!(fleetstream_protocols::gt06::Gps::time_of(946_684_799_000), None, "1999 has no GT06 year");
}

#[test]
fn south_and_west_are_negative() {
    let mut message = decode_message(&decode_frame(&hex(DEVICE_LOCATION)).unwrap()).unwrap();
    let Message::Location { gps, .. } = &mut message else { unreachable!() };
    gps.course_status = (gps.course_status & !(1 << 10)) | (1 << 11);
    let p = message_position("1", &message, NOW, &Limits::default()).unwrap().unwrap();
    assert!(p.lat < -18.0 && p.lon < -73.0, "{} {}", p.lat, p.lon);
}

#[test]
fn an_alarm_carries_its_kind_and_the_ignition() {
    let location = decode_message(&decode_frame(&hex(DEVICE_LOCATION)).unwrap()).unwrap();
    let Message::Location { gps, cell, .. } = location else { unreachable!() };
    let status = fleetstream_protocols::gt06::Status {
        terminal_info: 0b0100_0110,
        voltage_level: 4,
        gsm_signal: 3,
        alarm_language: 0x0102,
    };
    let alarm = Message::Alarm { protocol: protocol::ALARM, gps, cell_length: 8, cell, status, rest: vec![] };
    let frame = encode_frame(&encode_message(&alarm, 9));
    let back = decode_message(&decode_frame(&frame).unwrap()).unwrap();
    assert_eq!(back, alarm);
    let p = message_position("355488024906769", &back, NOW, &Limits::default()).unwrap().unwrap();
    assert_eq!(p.ignition, Some(true));
    assert_eq!(p.attributes.to_value()["alarm"], "sos");
    assert_eq!(p.attributes.to_value()["charging"], true);
    assert_eq!(p.attributes.to_value()["voltage_level"], 4);
}

#[test]
fn damaged_packets_are_refused_naming_the_field() {
    let refusal = |frame: &[u8]| decode_frame(frame).unwrap_err().field;
    let mut frame = hex(DEVICE_LOCATION);
    frame[10] ^= 1;
    assert_eq!(refusal(&frame), "crc");
    let mut frame = hex(DEVICE_LOCATION);
    let n = frame.len();
    frame[n - 1] = 0;
    assert_eq!(refusal(&frame), "stop");
    assert_eq!(frame_len(&frame, 1024).unwrap_err().field, "stop");
    assert_eq!(refusal(&hex(DEVICE_LOCATION)[1..]), "start");
    assert_eq!(frame_len(&[0x78, 0x00], 1024).unwrap_err().field, "start");
    assert_eq!(frame_len(&[0x78, 0x78, 0x02], 1024).unwrap_err().field, "length");
    assert!(frame_len(&[0x79, 0x79, 0xFF, 0xFF], 1024).unwrap_err().message.contains("65541 bytes"));
    let mut bad_bcd = decode_frame(&hex(DOC_LOGIN)).unwrap();
    bad_bcd.content[0] = 0xA1;
    assert_eq!(decode_message(&bad_bcd).unwrap_err().field, "login.imei");
    let mut short = decode_frame(&hex(DEVICE_LOCATION)).unwrap();
    short.content.truncate(10);
    assert_eq!(decode_message(&short).unwrap_err().field, "location.lat");
}

#[test]
fn an_impossible_date_is_refused() {
    let mut message = decode_message(&decode_frame(&hex(DEVICE_LOCATION)).unwrap()).unwrap();
    let Message::Location { gps, .. } = &mut message else { unreachable!() };
    gps.time[1] = 13;
    let e = message_position("1", &message, NOW, &Limits::default()).unwrap().unwrap_err();
    assert_eq!(e.field, "time");
}
