//! GT06 framing: start bits, length, protocol number, content, serial number, CRC-ITU (over
//! length to serial number), stop bits 0x0D 0x0A.

use crate::crc::crc16_x25;
use crate::error::DecodeError;
use crate::frames::Split;
use crate::reader::Reader;

const SHORT: [u8; 2] = [0x78, 0x78];
const LONG: [u8; 2] = [0x79, 0x79];
const STOP: [u8; 2] = [0x0D, 0x0A];
/// Protocol number, serial number and CRC: what the length counts besides the content.
const OVERHEAD: usize = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// Framed with 0x79 0x79 and a two-byte length.
    pub long: bool,
    pub protocol: u8,
    pub content: Vec<u8>,
    pub serial: u16,
}

/// Where the first packet of `buf` ends; packets longer than `max_frame` bytes are refused.
pub fn frame_len(buf: &[u8], max_frame: usize) -> Split {
    let start = &buf[..buf.len().min(2)];
    let header = if SHORT.starts_with(start) {
        3
    } else if LONG.starts_with(start) {
        4
    } else {
        return Err(DecodeError::new("start", format!("must be 78 78 or 79 79, got {}", hex(start))));
    };
    let Some(len_bytes) = buf.get(2..header) else { return Ok(None) };
    let len = len_bytes.iter().fold(0usize, |n, &b| n << 8 | usize::from(b));
    if len < OVERHEAD {
        return Err(DecodeError::new("length", format!("is {len}; protocol, serial and CRC alone take {OVERHEAD}")));
    }
    let total = header + len + STOP.len();
    if total > max_frame {
        return Err(DecodeError::new(
            "length",
            format!("makes a packet of {total} bytes; at most {max_frame} are accepted"),
        ));
    }
    if buf.len() < total {
        return Ok(None);
    }
    if buf[total - 2..total] != STOP {
        return Err(DecodeError::new("stop", format!("must be 0D 0A, got {}", hex(&buf[total - 2..total]))));
    }
    Ok(Some(total))
}

/// Decodes one whole packet, checking its length, CRC and stop bits.
pub fn decode_frame(frame: &[u8]) -> Result<Packet, DecodeError> {
    let mut r = Reader::new(frame);
    let start = r.bytes(2, "start")?;
    let long = match start {
        s if s == SHORT => false,
        s if s == LONG => true,
        s => return Err(DecodeError::new("start", format!("must be 78 78 or 79 79, got {}", hex(s)))),
    };
    let len = if long { usize::from(r.u16("length")?) } else { usize::from(r.u8("length")?) };
    let checked_from = 2;
    if len < OVERHEAD {
        return Err(DecodeError::new("length", format!("is {len}; protocol, serial and CRC alone take {OVERHEAD}")));
    }
    if r.remaining() != len + STOP.len() {
        return Err(DecodeError::new(
            "length",
            format!("is {len}, but {} bytes follow it before the stop bits", r.remaining().saturating_sub(STOP.len())),
        ));
    }
    let protocol = r.u8("protocol")?;
    let content = r.bytes(len - OVERHEAD, "content")?.to_vec();
    let serial = r.u16("serial")?;
    let checked_to = r.position();
    let crc = r.u16("crc")?;
    let stop = r.bytes(2, "stop")?;
    if stop != STOP {
        return Err(DecodeError::new("stop", format!("must be 0D 0A, got {}", hex(stop))));
    }
    let computed = crc16_x25(&frame[checked_from..checked_to]);
    if crc != computed {
        return Err(DecodeError::new(
            "crc",
            format!("is 0x{crc:04X}, but the packet's CRC-ITU is 0x{computed:04X} (damaged in transit?)"),
        ));
    }
    Ok(Packet { long, protocol, content, serial })
}

/// Encodes a packet; long framing is used when asked or when the content needs it.
pub fn encode_frame(packet: &Packet) -> Vec<u8> {
    let len = packet.content.len() + OVERHEAD;
    let long = packet.long || len > usize::from(u8::MAX);
    let mut out = Vec::with_capacity(len + 6);
    if long {
        out.extend(LONG);
        out.extend(u16::try_from(len).expect("a GT06 packet is under 64 KiB").to_be_bytes());
    } else {
        out.extend(SHORT);
        out.push(len as u8);
    }
    out.push(packet.protocol);
    out.extend(&packet.content);
    out.extend(packet.serial.to_be_bytes());
    let crc = crc16_x25(&out[2..]);
    out.extend(crc.to_be_bytes());
    out.extend(STOP);
    out
}

/// The server's answer to packet `protocol` number `serial`: the same protocol and serial number,
/// no content.
pub fn response(protocol: u8, serial: u16) -> Vec<u8> {
    encode_frame(&Packet { long: false, protocol, content: Vec::new(), serial })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(" ")
}
