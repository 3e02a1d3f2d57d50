//! Property tests: whatever the encoders make, the decoders read back unchanged; and a byte
//! stream cut into reads anywhere gives the same frames as read whole.

use fleetstream_protocols::FrameBuffer;
use fleetstream_protocols::frames::Split;
use fleetstream_protocols::gt06::{self, Cell, Gps, Message, Status};
use fleetstream_protocols::teltonika::{self, AvlPacket, AvlRecord, Codec, GpsElement, IoElements};
use proptest::collection::vec;
use proptest::prelude::*;

fn codec() -> impl Strategy<Value = Codec> {
    prop_oneof![Just(Codec::C8), Just(Codec::C8E), Just(Codec::C16)]
}

fn io(codec: Codec) -> impl Strategy<Value = IoElements> {
    let id = if codec == Codec::C8 { 0..=255u16 } else { 0..=u16::MAX };
    let var = if codec == Codec::C8E {
        vec((id.clone(), vec(any::<u8>(), 0..40)), 0..4).boxed()
    } else {
        Just(vec![]).boxed()
    };
    (
        vec((id.clone(), any::<u8>()), 0..6),
        vec((id.clone(), any::<u16>()), 0..6),
        vec((id.clone(), any::<u32>()), 0..6),
        vec((id, any::<u64>()), 0..6),
        var,
    )
        .prop_map(|(one, two, four, eight, var)| IoElements { one, two, four, eight, var })
}

fn record(codec: Codec) -> impl Strategy<Value = AvlRecord> {
    let event = if codec == Codec::C8 { 0..=255u16 } else { 0..=u16::MAX };
    let generation = if codec == Codec::C16 { any::<u8>().prop_map(Some).boxed() } else { Just(None).boxed() };
    (any::<u64>(), 0..=2u8, any::<(i32, i32, i16, u16, u8, u16)>(), event, generation, io(codec)).prop_map(
        |(timestamp_ms, priority, (lon, lat, altitude, angle, satellites, speed), event_io, generation_type, io)| {
            AvlRecord {
                timestamp_ms,
                priority,
                gps: GpsElement { lon, lat, altitude, angle, satellites, speed },
                event_io,
                generation_type,
                io,
            }
        },
    )
}

fn packet() -> impl Strategy<Value = AvlPacket> {
    codec().prop_flat_map(|codec| vec(record(codec), 1..5).prop_map(move |records| AvlPacket { codec, records }))
}

fn gps() -> impl Strategy<Value = Gps> {
    any::<([u8; 6], u8, u32, u32, u8, u16)>().prop_map(|(time, info, lat, lon, speed, course_status)| Gps {
        time,
        info,
        lat,
        lon,
        speed,
        course_status,
    })
}

fn cell() -> impl Strategy<Value = Cell> {
    (any::<u16>(), any::<u8>(), any::<u16>(), 0..1u32 << 24).prop_map(|(mcc, mnc, lac, cell_id)| Cell {
        mcc,
        mnc,
        lac,
        cell_id,
    })
}

fn status() -> impl Strategy<Value = Status> {
    any::<(u8, u8, u8, u16)>().prop_map(|(terminal_info, voltage_level, gsm_signal, alarm_language)| Status {
        terminal_info,
        voltage_level,
        gsm_signal,
        alarm_language,
    })
}

fn message() -> impl Strategy<Value = Message> {
    let rest = || vec(any::<u8>(), 0..8);
    prop_oneof![
        ("[1-9][0-9]{14}", rest()).prop_map(|(imei, rest)| Message::Login { imei, rest }),
        (prop_oneof![Just(0x12u8), Just(0x22)], gps(), cell(), rest())
            .prop_map(|(protocol, gps, cell, rest)| Message::Location { protocol, gps, cell, rest }),
        (status(), rest()).prop_map(|(status, rest)| Message::Status { status, rest }),
        (prop_oneof![Just(0x16u8), Just(0x26)], gps(), any::<u8>(), cell(), status(), rest()).prop_map(
            |(protocol, gps, cell_length, cell, status, rest)| Message::Alarm {
                protocol,
                gps,
                cell_length,
                cell,
                status,
                rest
            }
        ),
        (0x30..0x80u8, vec(any::<u8>(), 0..300)).prop_map(|(protocol, content)| Message::Other { protocol, content }),
    ]
}

/// Feeds `stream` to a frame buffer in reads cut at `cuts`, collecting the frames.
fn frames_of(stream: &[u8], cuts: &[usize], split: impl Fn(&[u8]) -> Split) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    points.extend([0, stream.len()]);
    points.sort_unstable();
    let mut buf = FrameBuffer::new();
    let mut frames = Vec::new();
    for w in points.windows(2) {
        buf.extend(&stream[w[0]..w[1]]);
        while let Some(frame) = buf.next_frame(&split).unwrap() {
            frames.push(frame);
        }
    }
    assert_eq!(buf.buffered(), 0, "every byte belongs to a frame");
    frames
}

proptest! {
    #[test]
    fn teltonika_packets_round_trip(packet in packet()) {
        let frame = teltonika::encode_packet(&packet).unwrap();
        prop_assert_eq!(teltonika::avl_frame_len(&frame, usize::MAX).unwrap(), Some(frame.len()));
        prop_assert_eq!(teltonika::decode_packet(&frame).unwrap(), packet);
    }

    #[test]
    fn gt06_messages_round_trip(message in message(), serial in any::<u16>(), long in any::<bool>()) {
        let mut packet = gt06::encode_message(&message, serial);
        packet.long = long;
        let frame = gt06::encode_frame(&packet);
        let back = gt06::decode_frame(&frame).unwrap();
        prop_assert_eq!(back.serial, serial);
        prop_assert_eq!(gt06::decode_message(&back).unwrap(), message);
    }

    #[test]
    fn teltonika_streams_split_anywhere_give_the_same_frames(
        packets in vec(packet(), 1..4),
        pings in vec(any::<bool>(), 4),
        cuts in vec(any::<usize>(), 0..20),
    ) {
        let mut expected = Vec::new();
        for (packet, ping) in packets.iter().zip(&pings) {
            if *ping {
                expected.push(vec![teltonika::PING]);
            }
            expected.push(teltonika::encode_packet(packet).unwrap());
        }
        let stream = expected.concat();
        prop_assert_eq!(frames_of(&stream, &cuts, |b| teltonika::avl_frame_len(b, usize::MAX)), expected);
    }

    #[test]
    fn gt06_streams_split_anywhere_give_the_same_frames(
        messages in vec((message(), any::<u16>()), 1..6),
        cuts in vec(any::<usize>(), 0..20),
    ) {
        let expected: Vec<Vec<u8>> =
            messages.iter().map(|(m, serial)| gt06::encode_frame(&gt06::encode_message(m, *serial))).collect();
        let stream = expected.concat();
        prop_assert_eq!(frames_of(&stream, &cuts, |b| gt06::frame_len(b, 1 << 16)), expected);
    }
}
