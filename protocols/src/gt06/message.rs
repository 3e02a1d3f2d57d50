//! The contents of the GT06 packets fleetstream reads: login, location, status (heartbeat) and
//! alarm. Fields after the last one a protocol number defines are kept as `rest`, so that the
//! clones that append their own fields are still read (and encode back to the same bytes).

use crate::error::DecodeError;
use crate::reader::Reader;

use super::frame::Packet;

/// Protocol numbers.
pub mod protocol {
    pub const LOGIN: u8 = 0x01;
    pub const LOCATION: u8 = 0x12;
    pub const STATUS: u8 = 0x13;
    pub const ALARM: u8 = 0x16;
    /// Location of the newer GT06 firmware: the same fields, then ACC, upload mode and re-upload.
    pub const LOCATION_2: u8 = 0x22;
    /// Alarm of the newer GT06 firmware, laid out as 0x16.
    pub const ALARM_2: u8 = 0x26;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// The IMEI, 15 digits (16 when the device sends a non-zero first digit).
    Login { imei: String, rest: Vec<u8> },
    /// Protocol 0x12 or 0x22.
    Location { protocol: u8, gps: Gps, cell: Cell, rest: Vec<u8> },
    /// Protocol 0x13: the heartbeat.
    Status { status: Status, rest: Vec<u8> },
    /// Protocol 0x16 or 0x26.
    Alarm { protocol: u8, gps: Gps, cell_length: u8, cell: Cell, status: Status, rest: Vec<u8> },
    /// Any other protocol number: not read.
    Other { protocol: u8, content: Vec<u8> },
}

/// The GPS fields shared by locations and alarms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Gps {
    /// Year (since 2000), month, day, hour, minute, second, UTC.
    pub time: [u8; 6],
    /// High nibble: length of the GPS information; low nibble: satellites in use.
    pub info: u8,
    /// Degrees × 1,800,000 (minutes × 30,000), without sign: see `course_status`.
    pub lat: u32,
    pub lon: u32,
    /// km/h.
    pub speed: u8,
    /// Bits 0–9 course, 10 north latitude, 11 west longitude, 12 positioned, 13 differential.
    pub course_status: u16,
}

impl Gps {
    /// The `time` field of a fix at `fix_ms` (epoch milliseconds, UTC; years 2000 to 2255),
    /// for encoders: the reverse of what decoding reads.
    pub fn time_of(fix_ms: i64) -> Option<[u8; 6]> {
        use chrono::{Datelike, Timelike};
        let t = chrono::DateTime::from_timestamp_millis(fix_ms)?;
        let year = u8::try_from(t.year().checked_sub(2000)?).ok()?;
        Some([year, t.month() as u8, t.day() as u8, t.hour() as u8, t.minute() as u8, t.second() as u8])
    }

    pub fn satellites(&self) -> u8 {
        self.info & 0x0F
    }

    pub fn course(&self) -> u16 {
        self.course_status & 0x03FF
    }

    pub fn positioned(&self) -> bool {
        self.course_status & (1 << 12) != 0
    }

    pub fn latitude(&self) -> f64 {
        let north = self.course_status & (1 << 10) != 0;
        let deg = f64::from(self.lat) / 1_800_000.0;
        if north { deg } else { -deg }
    }

    pub fn longitude(&self) -> f64 {
        let west = self.course_status & (1 << 11) != 0;
        let deg = f64::from(self.lon) / 1_800_000.0;
        if west { -deg } else { deg }
    }
}

/// The serving cell: mobile country and network codes, location area code, cell id (3 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cell {
    pub mcc: u16,
    pub mnc: u8,
    pub lac: u16,
    pub cell_id: u32,
}

/// The status fields of heartbeats and alarms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Status {
    /// Bit 0 armed, 1 ACC (ignition) on, 2 charging, 3–5 alarm (4 SOS, 3 low battery, 2 power
    /// cut, 1 shock), 6 GPS tracking on, 7 oil and electricity cut.
    pub terminal_info: u8,
    /// 0 (no power) to 6 (full).
    pub voltage_level: u8,
    /// 0 (no signal) to 4 (strong).
    pub gsm_signal: u8,
    /// High byte: alarm (1 SOS, 2 power cut, 3 shock, 4 fence in, 5 fence out); low: language.
    pub alarm_language: u16,
}

impl Status {
    pub fn acc_on(&self) -> bool {
        self.terminal_info & 0b10 != 0
    }

    pub fn charging(&self) -> bool {
        self.terminal_info & 0b100 != 0
    }

    /// The name of the alarm this status reports, if any.
    pub fn alarm(&self) -> Option<&'static str> {
        match self.alarm_language >> 8 {
            0x00 => None,
            0x01 => Some("sos"),
            0x02 => Some("power_cut"),
            0x03 => Some("vibration"),
            0x04 => Some("fence_in"),
            0x05 => Some("fence_out"),
            _ => Some("other"),
        }
    }
}

/// The message a packet carries.
pub fn decode_message(packet: &Packet) -> Result<Message, DecodeError> {
    let mut r = Reader::new(&packet.content);
    let rest = |r: &mut Reader<'_>| r.bytes(r.remaining(), "rest").map(<[u8]>::to_vec);
    let message = match packet.protocol {
        protocol::LOGIN => {
            let bcd = r.bytes(8, "login.imei")?;
            Message::Login { imei: decode_imei(bcd)?, rest: rest(&mut r)? }
        }
        p @ (protocol::LOCATION | protocol::LOCATION_2) => {
            let gps = decode_gps(&mut r).map_err(|e| e.under("location"))?;
            let cell = decode_cell(&mut r).map_err(|e| e.under("location"))?;
            Message::Location { protocol: p, gps, cell, rest: rest(&mut r)? }
        }
        protocol::STATUS => {
            let status = decode_status(&mut r).map_err(|e| e.under("status"))?;
            Message::Status { status, rest: rest(&mut r)? }
        }
        p @ (protocol::ALARM | protocol::ALARM_2) => {
            let gps = decode_gps(&mut r).map_err(|e| e.under("alarm"))?;
            let cell_length = r.u8("alarm.cell_length")?;
            let cell = decode_cell(&mut r).map_err(|e| e.under("alarm"))?;
            let status = decode_status(&mut r).map_err(|e| e.under("alarm"))?;
            Message::Alarm { protocol: p, gps, cell_length, cell, status, rest: rest(&mut r)? }
        }
        p => Message::Other { protocol: p, content: packet.content.clone() },
    };
    Ok(message)
}

/// The packet of a message with serial number `serial` (for tests and the simulator).
pub fn encode_message(message: &Message, serial: u16) -> Packet {
    let mut content = Vec::new();
    let protocol = match message {
        Message::Login { imei, rest } => {
            content.extend(encode_imei(imei));
            content.extend(rest);
            protocol::LOGIN
        }
        Message::Location { protocol, gps, cell, rest } => {
            encode_gps(&mut content, gps);
            encode_cell(&mut content, cell);
            content.extend(rest);
            *protocol
        }
        Message::Status { status, rest } => {
            encode_status(&mut content, status);
            content.extend(rest);
            protocol::STATUS
        }
        Message::Alarm { protocol, gps, cell_length, cell, status, rest } => {
            encode_gps(&mut content, gps);
            content.push(*cell_length);
            encode_cell(&mut content, cell);
            encode_status(&mut content, status);
            content.extend(rest);
            *protocol
        }
        Message::Other { protocol, content: c } => {
            content.extend(c);
            *protocol
        }
    };
    Packet { long: false, protocol, content, serial }
}

/// Eight BCD bytes: 16 digits, the first a padding zero for a 15-digit IMEI.
fn decode_imei(bcd: &[u8]) -> Result<String, DecodeError> {
    let mut digits = String::with_capacity(16);
    for nibble in bcd.iter().flat_map(|b| [b >> 4, b & 0x0F]) {
        if nibble > 9 {
            return Err(DecodeError::new("login.imei", format!("must be BCD digits, has nibble 0x{nibble:X}")));
        }
        digits.push(char::from(b'0' + nibble));
    }
    Ok(digits.strip_prefix('0').map(str::to_owned).unwrap_or(digits))
}

/// `imei` (at most 16 digits) as eight BCD bytes.
fn encode_imei(imei: &str) -> [u8; 8] {
    let padded = format!("{imei:0>16}");
    let d: Vec<u8> = padded.bytes().map(|c| c.wrapping_sub(b'0') & 0x0F).collect();
    std::array::from_fn(|i| d[2 * i] << 4 | d[2 * i + 1])
}

fn decode_gps(r: &mut Reader<'_>) -> Result<Gps, DecodeError> {
    Ok(Gps {
        time: r.bytes(6, "time")?.try_into().expect("six bytes"),
        info: r.u8("gps_info")?,
        lat: r.u32("lat")?,
        lon: r.u32("lon")?,
        speed: r.u8("speed")?,
        course_status: r.u16("course_status")?,
    })
}

fn encode_gps(out: &mut Vec<u8>, gps: &Gps) {
    out.extend(gps.time);
    out.push(gps.info);
    out.extend(gps.lat.to_be_bytes());
    out.extend(gps.lon.to_be_bytes());
    out.push(gps.speed);
    out.extend(gps.course_status.to_be_bytes());
}

fn decode_cell(r: &mut Reader<'_>) -> Result<Cell, DecodeError> {
    Ok(Cell { mcc: r.u16("mcc")?, mnc: r.u8("mnc")?, lac: r.u16("lac")?, cell_id: r.u24("cell_id")? })
}

fn encode_cell(out: &mut Vec<u8>, cell: &Cell) {
    out.extend(cell.mcc.to_be_bytes());
    out.push(cell.mnc);
    out.extend(cell.lac.to_be_bytes());
    out.extend(&cell.cell_id.to_be_bytes()[1..]);
}

fn decode_status(r: &mut Reader<'_>) -> Result<Status, DecodeError> {
    Ok(Status {
        terminal_info: r.u8("terminal_info")?,
        voltage_level: r.u8("voltage_level")?,
        gsm_signal: r.u8("gsm_signal")?,
        alarm_language: r.u16("alarm_language")?,
    })
}

fn encode_status(out: &mut Vec<u8>, status: &Status) {
    out.push(status.terminal_info);
    out.push(status.voltage_level);
    out.push(status.gsm_signal);
    out.extend(status.alarm_language.to_be_bytes());
}
