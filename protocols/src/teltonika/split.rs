//! Where a Teltonika frame ends in the buffered bytes of a connection: the IMEI handshake first,
//! then AVL packets (four zero bytes, a four-byte length, the data, a four-byte CRC), or the
//! one-byte ping (0xFF) some devices send to keep the link open.

use crate::error::DecodeError;
use crate::frames::Split;

use super::handshake::MAX_IMEI_DIGITS;

/// The keep-alive byte; it needs no answer.
pub const PING: u8 = 0xFF;

/// The handshake: two bytes of length and as many digits.
pub fn imei_frame_len(buf: &[u8]) -> Split {
    let Some(head) = buf.get(..2) else { return Ok(None) };
    let len = usize::from(u16::from_be_bytes([head[0], head[1]]));
    if len > MAX_IMEI_DIGITS {
        return Err(DecodeError::new("imei.length", format!("is {len}; an IMEI has at most {MAX_IMEI_DIGITS} digits")));
    }
    Ok((buf.len() >= 2 + len).then_some(2 + len))
}

/// An AVL packet (or a ping) of at most `max_frame` bytes in all.
pub fn avl_frame_len(buf: &[u8], max_frame: usize) -> Split {
    if buf.first() == Some(&PING) {
        return Ok(Some(1));
    }
    let preamble = &buf[..buf.len().min(4)];
    if let Some(i) = preamble.iter().position(|&b| b != 0) {
        return Err(DecodeError::new(
            "preamble",
            format!(
                "must be four zero bytes, byte {i} is 0x{:02X} (codec 12/13/14 and UDP are not served here)",
                preamble[i]
            ),
        ));
    }
    let Some(len) = buf.get(4..8) else { return Ok(None) };
    let len = u32::from_be_bytes(len.try_into().expect("four bytes")) as usize;
    // Codec id, two record counts and at least one 45-byte record.
    if len < 3 {
        return Err(DecodeError::new(
            "data_length",
            format!("is {len}; the data holds at least a codec id and two counts"),
        ));
    }
    let total = 8usize.saturating_add(len).saturating_add(4);
    if total > max_frame {
        return Err(DecodeError::new(
            "data_length",
            format!("makes a frame of {total} bytes; at most {max_frame} are accepted"),
        ));
    }
    Ok((buf.len() >= total).then_some(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_end_where_their_length_says() {
        assert_eq!(imei_frame_len(&[0]).unwrap(), None);
        assert_eq!(imei_frame_len(&[0, 3, b'1', b'2']).unwrap(), None);
        assert_eq!(imei_frame_len(&[0, 3, b'1', b'2', b'3', 0]).unwrap(), Some(5));
        let mut avl = vec![0, 0, 0, 0, 0, 0, 0, 5, 8, 1, 0, 0, 1];
        assert_eq!(avl_frame_len(&avl, 1000).unwrap(), None);
        avl.extend([0, 0, 0, 0, 0xAA]);
        assert_eq!(avl_frame_len(&avl, 1000).unwrap(), Some(17));
        assert_eq!(avl_frame_len(&[PING, 0], 1000).unwrap(), Some(1));
    }

    #[test]
    fn garbage_and_oversized_frames_are_refused_early() {
        assert_eq!(avl_frame_len(&[0, 7], 1000).unwrap_err().field, "preamble");
        assert_eq!(imei_frame_len(&[0xFF, 0xFF]).unwrap_err().field, "imei.length");
        let e = avl_frame_len(&[0, 0, 0, 0, 0, 1, 0, 0], 1000).unwrap_err();
        assert_eq!(e.field, "data_length");
        assert!(e.message.contains("65548 bytes"), "{e}");
        assert!(avl_frame_len(&[0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF], usize::MAX).is_ok());
    }
}
