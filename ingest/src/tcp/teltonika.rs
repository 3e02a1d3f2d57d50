//! A Teltonika connection: the IMEI handshake, answered 0x01 (0x00 and closed for a device not
//! in the registry with `--require-registered`, closed unanswered while the registry is not
//! loaded); then AVL packets, each answered
//! with its record count once every valid record is durable. A packet that cannot be read (bad
//! CRC, wrong counts, unknown codec, over the size limit) is never answered: it is dead-lettered
//! with the IMEI and the connection closed.

use fleetstream_protocols::teltonika;

use super::{Conn, End, admit, deliver, refuse_frame};
use crate::accept::AppState;
use crate::metrics::ProtocolLabel;
use crate::registry::Admission;

pub const PROTOCOL: &str = "teltonika";

pub async fn serve_conn(mut conn: Conn, state: AppState) {
    let end = run(&mut conn, &state).await;
    tracing::debug!(protocol = PROTOCOL, ?end, "connection closed");
}

async fn run(conn: &mut Conn, state: &AppState) -> End {
    let imei = match conn.frame(teltonika::imei_frame_len).await {
        Ok(frame) => match teltonika::decode_imei(&frame) {
            Ok(imei) => imei,
            Err(e) => return refuse_frame(conn, state, "", e.into(), &frame),
        },
        Err(End::Malformed(e)) => {
            let bytes = conn.buffered();
            return refuse_frame(conn, state, "", e.into(), &bytes);
        }
        Err(end) => return end,
    };
    if let Err(end) = admit(state, PROTOCOL, &imei) {
        if matches!(end, End::NotAdmitted(Admission::Unknown)) {
            let _ = conn.answer(&[teltonika::REJECT]).await;
        }
        return end;
    }
    if let Err(end) = conn.answer(&[teltonika::ACCEPT]).await {
        return end;
    }
    let max_frame = conn.max_frame;
    loop {
        let frame = match conn.frame(|b| teltonika::avl_frame_len(b, max_frame)).await {
            Ok(frame) => frame,
            Err(End::Malformed(e)) => {
                let bytes = conn.buffered();
                return refuse_frame(conn, state, &imei, e.into(), &bytes);
            }
            Err(end) => return end,
        };
        if frame == [teltonika::PING] {
            continue;
        }
        state.get().metrics.tcp.frames.get_or_create(&ProtocolLabel { protocol: PROTOCOL }).inc();
        let packet = match teltonika::decode_packet(&frame) {
            Ok(packet) => packet,
            Err(e) => return refuse_frame(conn, state, &imei, e.into(), &frame),
        };
        let received_at_ms = fleetstream_schemas::time::now_millis();
        let limits = &state.get().limits;
        let positions = packet
            .records
            .iter()
            .enumerate()
            .map(|(i, record)| {
                teltonika::record_position(&imei, record, received_at_ms, limits).map_err(|mut e| {
                    e.field = format!("records[{i}].{}", e.field);
                    e
                })
            })
            .collect();
        if !deliver(state, PROTOCOL, &imei, &frame, positions).await {
            return End::NotDurable;
        }
        let count = u32::try_from(packet.records.len()).expect("at most 255 records");
        if let Err(end) = conn.answer(&teltonika::encode_ack(count)).await {
            return end;
        }
    }
}
