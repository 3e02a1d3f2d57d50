//! A GT06 connection: the login (answered at once; with `--require-registered`, a device not in
//! the registry is not answered and the connection closed, the protocol having no refusal),
//! then locations and alarms (answered once
//! durable) and heartbeats (answered at once). A packet that cannot be read (bad CRC, wrong
//! length or stop bits, over the size limit), or a location before the login, is never answered:
//! it is dead-lettered with the IMEI and the connection closed.

use fleetstream_protocols::gt06::{self, Message, protocol};
use fleetstream_schemas::FieldError;

use super::{Conn, End, admit, deliver, refuse_frame};
use crate::accept::AppState;
use crate::metrics::ProtocolLabel;

pub const PROTOCOL: &str = "gt06";

pub async fn serve_conn(mut conn: Conn, state: AppState) {
    let end = run(&mut conn, &state).await;
    tracing::debug!(protocol = PROTOCOL, ?end, "connection closed");
}

async fn run(conn: &mut Conn, state: &AppState) -> End {
    let mut imei: Option<String> = None;
    let max_frame = conn.max_frame;
    loop {
        let device = imei.clone().unwrap_or_default();
        let frame = match conn.frame(|b| gt06::frame_len(b, max_frame)).await {
            Ok(frame) => frame,
            Err(End::Malformed(e)) => {
                let bytes = conn.buffered();
                return refuse_frame(conn, state, &device, e.into(), &bytes);
            }
            Err(end) => return end,
        };
        state.get().metrics.tcp.frames.get_or_create(&ProtocolLabel { protocol: PROTOCOL }).inc();
        let decoded = gt06::decode_frame(&frame).and_then(|p| gt06::decode_message(&p).map(|m| (p.serial, m)));
        let (serial, message) = match decoded {
            Ok(decoded) => decoded,
            Err(e) => return refuse_frame(conn, state, &device, e.into(), &frame),
        };
        let answer = match &message {
            Message::Login { imei: sent, .. } => {
                if let Err(end) = admit(state, PROTOCOL, sent) {
                    return end;
                }
                imei = Some(sent.clone());
                Some(protocol::LOGIN)
            }
            Message::Status { .. } => Some(protocol::STATUS),
            Message::Location { protocol, .. } | Message::Alarm { protocol, .. } => {
                let Some(imei) = &imei else {
                    let error = FieldError::new("login", "a location or alarm came before the login packet");
                    return refuse_frame(conn, state, "", error, &frame);
                };
                let received_at_ms = fleetstream_schemas::time::now_millis();
                let position = gt06::message_position(imei, &message, received_at_ms, &state.get().limits)
                    .expect("locations and alarms carry a position");
                if !deliver(state, PROTOCOL, imei, &frame, vec![position]).await {
                    return End::NotDurable;
                }
                Some(*protocol)
            }
            Message::Other { .. } => None,
        };
        if let Some(protocol) = answer
            && let Err(end) = conn.answer(&gt06::response(protocol, serial)).await
        {
            return end;
        }
    }
}
