//! Teltonika AVL data packets: decoding and encoding of codec 8 (0x08), 8 Extended (0x8E) and
//! 16 (0x10).
//!
//! A packet is four zero bytes, the length of the data, the data (codec id, record count,
//! records, the record count again) and its CRC-16/IBM in four bytes. A record is a timestamp
//! (ms), a priority, a GPS element (longitude and latitude in 1e-7 degrees, altitude in m,
//! angle in degrees, satellites, speed in km/h) and IO elements grouped by value width. The
//! codecs differ only in the IO elements: codec 8 has one-byte ids and counts; 8 Extended
//! two-byte ids and counts and a group of variable-length values; 16 two-byte ids, one-byte
//! counts and a generation type after the event id.

use crate::crc::crc16_ibm;
use crate::error::DecodeError;
use crate::reader::Reader;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    C8,
    C8E,
    C16,
}

impl Codec {
    pub fn id(self) -> u8 {
        match self {
            Codec::C8 => 0x08,
            Codec::C8E => 0x8E,
            Codec::C16 => 0x10,
        }
    }

    pub fn from_id(id: u8) -> Option<Codec> {
        match id {
            0x08 => Some(Codec::C8),
            0x8E => Some(Codec::C8E),
            0x10 => Some(Codec::C16),
            _ => None,
        }
    }

    /// The label used in metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            Codec::C8 => "8",
            Codec::C8E => "8E",
            Codec::C16 => "16",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvlPacket {
    pub codec: Codec,
    pub records: Vec<AvlRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvlRecord {
    /// Fix time, milliseconds since the Unix epoch (UTC).
    pub timestamp_ms: u64,
    /// 0 low, 1 high, 2 panic.
    pub priority: u8,
    pub gps: GpsElement,
    /// The IO element whose change made this record; 0 for a periodic one.
    pub event_io: u16,
    /// Codec 16 only: how the record was generated (on exit, on entrance, ..., periodical).
    pub generation_type: Option<u8>,
    pub io: IoElements,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GpsElement {
    /// Degrees × 10^7, negative west.
    pub lon: i32,
    /// Degrees × 10^7, negative south.
    pub lat: i32,
    /// Metres above sea level.
    pub altitude: i16,
    /// Heading, degrees from north.
    pub angle: u16,
    pub satellites: u8,
    /// km/h.
    pub speed: u16,
}

/// IO elements, by the width of their values, in the order sent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IoElements {
    pub one: Vec<(u16, u8)>,
    pub two: Vec<(u16, u16)>,
    pub four: Vec<(u16, u32)>,
    pub eight: Vec<(u16, u64)>,
    /// Codec 8 Extended only: values of any length.
    pub var: Vec<(u16, Vec<u8>)>,
}

impl IoElements {
    /// The value of fixed-width element `id`, if sent.
    pub fn get(&self, id: u16) -> Option<u64> {
        let find = |v: &[(u16, u64)]| v.iter().find(|(i, _)| *i == id).map(|(_, v)| *v);
        self.one
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, v)| u64::from(*v))
            .or_else(|| self.two.iter().find(|(i, _)| *i == id).map(|(_, v)| u64::from(*v)))
            .or_else(|| self.four.iter().find(|(i, _)| *i == id).map(|(_, v)| u64::from(*v)))
            .or_else(|| find(&self.eight))
    }

    /// Every fixed-width element as (id, value), in the order sent.
    pub fn fixed(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        let one = self.one.iter().map(|&(i, v)| (i, u64::from(v)));
        let two = self.two.iter().map(|&(i, v)| (i, u64::from(v)));
        let four = self.four.iter().map(|&(i, v)| (i, u64::from(v)));
        one.chain(two).chain(four).chain(self.eight.iter().copied())
    }

    pub fn len(&self) -> usize {
        self.one.len() + self.two.len() + self.four.len() + self.eight.len() + self.var.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Decodes one whole AVL packet (as cut by [`super::avl_frame_len`]), checking its CRC and that
/// both record counts agree with the records found.
pub fn decode_packet(frame: &[u8]) -> Result<AvlPacket, DecodeError> {
    let mut r = Reader::new(frame);
    let preamble = r.u32("preamble")?;
    if preamble != 0 {
        return Err(DecodeError::new("preamble", format!("must be four zero bytes, got 0x{preamble:08X}")));
    }
    let len = r.u32("data_length")? as usize;
    let data = r.bytes(len, "data")?;
    let crc = r.u32("crc")?;
    r.finish("frame")?;
    let computed = crc16_ibm(data);
    if crc != u32::from(computed) {
        return Err(DecodeError::new(
            "crc",
            format!("is 0x{crc:08X}, but the data's CRC-16/IBM is 0x{computed:04X} (damaged in transit?)"),
        ));
    }

    let mut r = Reader::new(data);
    let codec_id = r.u8("codec")?;
    let codec = Codec::from_id(codec_id).ok_or_else(|| {
        DecodeError::new("codec", format!("0x{codec_id:02X} carries no positions; codecs 8, 8E and 16 are accepted"))
    })?;
    let count = r.u8("record_count")?;
    if count == 0 {
        return Err(DecodeError::new("record_count", "is 0; a packet carries at least one record"));
    }
    let records = (0..count)
        .map(|i| decode_record(&mut r, codec).map_err(|e| e.under(&format!("records[{i}]"))))
        .collect::<Result<Vec<_>, _>>()?;
    let count_2 = r.u8("record_count_2")?;
    if count_2 != count {
        return Err(DecodeError::new("record_count_2", format!("is {count_2}, the first record count is {count}")));
    }
    if r.remaining() > 0 {
        return Err(DecodeError::new(
            "data_length",
            format!("says {len} bytes, but the records end {} bytes before that", r.remaining()),
        ));
    }
    Ok(AvlPacket { codec, records })
}

fn decode_record(r: &mut Reader<'_>, codec: Codec) -> Result<AvlRecord, DecodeError> {
    let timestamp_ms = r.u64("timestamp")?;
    let priority = r.u8("priority")?;
    let gps = GpsElement {
        lon: r.i32("gps.lon")?,
        lat: r.i32("gps.lat")?,
        altitude: r.i16("gps.altitude")?,
        angle: r.u16("gps.angle")?,
        satellites: r.u8("gps.satellites")?,
        speed: r.u16("gps.speed")?,
    };
    let wide = codec != Codec::C8;
    let id = |r: &mut Reader<'_>, field: &str| if wide { r.u16(field) } else { r.u8(field).map(u16::from) };
    let count = |r: &mut Reader<'_>, field: &str| {
        if codec == Codec::C8E { r.u16(field).map(usize::from) } else { r.u8(field).map(usize::from) }
    };
    let event_io = id(r, "io.event_id")?;
    let generation_type = if codec == Codec::C16 { Some(r.u8("io.generation_type")?) } else { None };
    let total = count(r, "io.total")?;
    let mut io = IoElements::default();
    let n = count(r, "io.n1")?;
    for _ in 0..n {
        io.one.push((id(r, "io.n1.id")?, r.u8("io.n1.value")?));
    }
    let n = count(r, "io.n2")?;
    for _ in 0..n {
        io.two.push((id(r, "io.n2.id")?, r.u16("io.n2.value")?));
    }
    let n = count(r, "io.n4")?;
    for _ in 0..n {
        io.four.push((id(r, "io.n4.id")?, r.u32("io.n4.value")?));
    }
    let n = count(r, "io.n8")?;
    for _ in 0..n {
        io.eight.push((id(r, "io.n8.id")?, r.u64("io.n8.value")?));
    }
    if codec == Codec::C8E {
        let n = count(r, "io.nx")?;
        for _ in 0..n {
            let id = r.u16("io.nx.id")?;
            let len = r.u16("io.nx.length")?;
            io.var.push((id, r.bytes(usize::from(len), "io.nx.value")?.to_vec()));
        }
    }
    if io.len() != total {
        return Err(DecodeError::new("io.total", format!("says {total} elements, the groups hold {}", io.len())));
    }
    Ok(AvlRecord { timestamp_ms, priority, gps, event_io, generation_type, io })
}

/// The server's answer to a packet: how many records it took.
pub fn encode_ack(records: u32) -> [u8; 4] {
    records.to_be_bytes()
}

/// Encodes a packet as a device sends it (for tests and the simulator). Refuses what the codec
/// cannot carry, naming the field: ids or counts too wide, variable-length values outside 8E,
/// a generation type outside codec 16 (or none in it), no records or more than 255.
pub fn encode_packet(packet: &AvlPacket) -> Result<Vec<u8>, DecodeError> {
    let codec = packet.codec;
    let count = u8::try_from(packet.records.len())
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| DecodeError::new("record_count", format!("{} records; 1 to 255 fit", packet.records.len())))?;
    let mut data = vec![codec.id(), count];
    for (i, record) in packet.records.iter().enumerate() {
        encode_record(&mut data, codec, record).map_err(|e| e.under(&format!("records[{i}]")))?;
    }
    data.push(count);
    let mut frame = Vec::with_capacity(data.len() + 12);
    frame.extend([0; 4]);
    frame.extend((data.len() as u32).to_be_bytes());
    frame.extend(&data);
    frame.extend(u32::from(crc16_ibm(&data)).to_be_bytes());
    Ok(frame)
}

fn encode_record(out: &mut Vec<u8>, codec: Codec, record: &AvlRecord) -> Result<(), DecodeError> {
    out.extend(record.timestamp_ms.to_be_bytes());
    out.push(record.priority);
    let g = &record.gps;
    out.extend(g.lon.to_be_bytes());
    out.extend(g.lat.to_be_bytes());
    out.extend(g.altitude.to_be_bytes());
    out.extend(g.angle.to_be_bytes());
    out.push(g.satellites);
    out.extend(g.speed.to_be_bytes());

    let id = |out: &mut Vec<u8>, id: u16, field: &str| -> Result<(), DecodeError> {
        if codec == Codec::C8 {
            let id = u8::try_from(id).map_err(|_| DecodeError::new(field, format!("{id} does not fit codec 8")))?;
            out.push(id);
        } else {
            out.extend(id.to_be_bytes());
        }
        Ok(())
    };
    let count = |out: &mut Vec<u8>, n: usize, field: &str| -> Result<(), DecodeError> {
        let too_many = || DecodeError::new(field, format!("{n} elements do not fit codec {}", codec.name()));
        if codec == Codec::C8E {
            out.extend(u16::try_from(n).map_err(|_| too_many())?.to_be_bytes());
        } else {
            out.push(u8::try_from(n).map_err(|_| too_many())?);
        }
        Ok(())
    };
    id(out, record.event_io, "io.event_id")?;
    match (codec, record.generation_type) {
        (Codec::C16, Some(g)) => out.push(g),
        (Codec::C16, None) => return Err(DecodeError::new("io.generation_type", "codec 16 needs one")),
        (_, Some(_)) => return Err(DecodeError::new("io.generation_type", "only codec 16 has one")),
        (_, None) => {}
    }
    let io = &record.io;
    if codec != Codec::C8E && !io.var.is_empty() {
        return Err(DecodeError::new("io.nx", "only codec 8E has variable-length elements"));
    }
    count(out, io.len(), "io.total")?;
    count(out, io.one.len(), "io.n1")?;
    for &(i, v) in &io.one {
        id(out, i, "io.n1.id")?;
        out.push(v);
    }
    count(out, io.two.len(), "io.n2")?;
    for &(i, v) in &io.two {
        id(out, i, "io.n2.id")?;
        out.extend(v.to_be_bytes());
    }
    count(out, io.four.len(), "io.n4")?;
    for &(i, v) in &io.four {
        id(out, i, "io.n4.id")?;
        out.extend(v.to_be_bytes());
    }
    count(out, io.eight.len(), "io.n8")?;
    for &(i, v) in &io.eight {
        id(out, i, "io.n8.id")?;
        out.extend(v.to_be_bytes());
    }
    if codec == Codec::C8E {
        count(out, io.var.len(), "io.nx")?;
        for (i, v) in &io.var {
            out.extend(i.to_be_bytes());
            let len = u16::try_from(v.len()).map_err(|_| DecodeError::new("io.nx.length", "over 65535 bytes"))?;
            out.extend(len.to_be_bytes());
            out.extend(v);
        }
    }
    Ok(())
}
