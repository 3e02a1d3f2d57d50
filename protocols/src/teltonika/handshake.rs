//! The IMEI a Teltonika device sends first: two bytes of length, then the IMEI in ASCII digits
//! (15 of them for an IMEI). The server answers one byte: [`ACCEPT`] or [`REJECT`].

use crate::error::DecodeError;
use crate::reader::Reader;

/// The server takes the device's data.
pub const ACCEPT: u8 = 0x01;
/// The server refuses the device (it closes the connection and retries later).
pub const REJECT: u8 = 0x00;

/// Fewest and most digits taken as an IMEI (15 in practice; 16 for an IMEISV).
pub const MIN_IMEI_DIGITS: usize = 8;
pub const MAX_IMEI_DIGITS: usize = 20;

/// The IMEI of a whole handshake frame (as cut by [`super::imei_frame_len`]).
pub fn decode_imei(frame: &[u8]) -> Result<String, DecodeError> {
    let mut r = Reader::new(frame);
    let len = usize::from(r.u16("imei.length")?);
    if !(MIN_IMEI_DIGITS..=MAX_IMEI_DIGITS).contains(&len) {
        return Err(DecodeError::new(
            "imei.length",
            format!("is {len}; an IMEI has {MIN_IMEI_DIGITS} to {MAX_IMEI_DIGITS} digits"),
        ));
    }
    let digits = r.bytes(len, "imei")?;
    r.finish("imei")?;
    if let Some(bad) = digits.iter().find(|b| !b.is_ascii_digit()) {
        return Err(DecodeError::new("imei", format!("must be ASCII digits, has byte 0x{bad:02X}")));
    }
    Ok(String::from_utf8(digits.to_vec()).expect("ASCII digits are UTF-8"))
}

/// The handshake frame a device sends for `imei` (for tests and the simulator).
pub fn encode_imei(imei: &str) -> Vec<u8> {
    let len = u16::try_from(imei.len()).expect("an IMEI is short");
    [&len.to_be_bytes()[..], imei.as_bytes()].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    // Teltonika's documentation: "000F333536333037303432343431303133" is IMEI 356307042441013.
    #[test]
    fn the_documented_handshake_decodes() {
        let frame = hex("000F333536333037303432343431303133");
        assert_eq!(decode_imei(&frame).unwrap(), "356307042441013");
        assert_eq!(encode_imei("356307042441013"), frame);
    }

    #[test]
    fn refusals_name_the_field() {
        assert_eq!(decode_imei(&hex("0003313233")).unwrap_err().field, "imei.length");
        let e = decode_imei(&[&[0, 15][..], b"35630704244101X"].concat()).unwrap_err();
        assert_eq!(e.field, "imei");
        assert!(e.message.contains("0x58"), "{e}");
        assert_eq!(decode_imei(&hex("000F3335")).unwrap_err().field, "imei");
    }
}
