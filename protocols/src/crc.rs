//! The checksums of the tracker protocols, bit by bit (frames are small; no table needed).
//!
//! - Teltonika AVL packets: CRC-16/IBM (also known as CRC-16/ARC): reflected polynomial 0x8005,
//!   initial value 0, no final XOR.
//! - GT06 packets: CRC-ITU (CRC-16/X-25): reflected polynomial 0x1021, initial value 0xFFFF,
//!   final XOR 0xFFFF.

/// One reflected CRC-16 over `data`.
fn reflected(data: &[u8], reversed_poly: u16, init: u16, xor_out: u16) -> u16 {
    let mut crc = init;
    for &byte in data {
        crc ^= u16::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ reversed_poly } else { crc >> 1 };
        }
    }
    crc ^ xor_out
}

/// CRC-16/IBM of Teltonika's AVL data (codec id to the second record count).
pub fn crc16_ibm(data: &[u8]) -> u16 {
    reflected(data, 0xA001, 0x0000, 0x0000)
}

/// CRC-ITU (CRC-16/X-25) of a GT06 packet (length to serial number).
pub fn crc16_x25(data: &[u8]) -> u16 {
    reflected(data, 0x8408, 0xFFFF, 0xFFFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The catalogue's check values: the CRC of the ASCII digits "123456789".
    #[test]
    fn check_values_match_the_catalogue() {
        assert_eq!(crc16_ibm(b"123456789"), 0xBB3D);
        assert_eq!(crc16_x25(b"123456789"), 0x906E);
    }

    #[test]
    fn empty_input_gives_the_initial_value_after_the_final_xor() {
        assert_eq!(crc16_ibm(b""), 0);
        assert_eq!(crc16_x25(b""), 0);
    }
}
