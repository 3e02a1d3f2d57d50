//! Reading big-endian fields from a frame by name: running out of bytes is an error that names
//! the field that did not fit.

use crate::error::DecodeError;

pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    /// The next `n` bytes, as field `field`.
    pub fn bytes(&mut self, n: usize, field: &str) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::new(
                field,
                format!("needs {n} bytes at offset {}, only {} left", self.pos, self.remaining()),
            ));
        }
        let out = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, field: &str) -> Result<[u8; N], DecodeError> {
        Ok(self.bytes(N, field)?.try_into().expect("bytes returned exactly N"))
    }

    pub fn u8(&mut self, field: &str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }

    pub fn u16(&mut self, field: &str) -> Result<u16, DecodeError> {
        self.array(field).map(u16::from_be_bytes)
    }

    pub fn i16(&mut self, field: &str) -> Result<i16, DecodeError> {
        self.array(field).map(i16::from_be_bytes)
    }

    pub fn u24(&mut self, field: &str) -> Result<u32, DecodeError> {
        let [a, b, c] = self.array(field)?;
        Ok(u32::from_be_bytes([0, a, b, c]))
    }

    pub fn u32(&mut self, field: &str) -> Result<u32, DecodeError> {
        self.array(field).map(u32::from_be_bytes)
    }

    pub fn i32(&mut self, field: &str) -> Result<i32, DecodeError> {
        self.array(field).map(i32::from_be_bytes)
    }

    pub fn u64(&mut self, field: &str) -> Result<u64, DecodeError> {
        self.array(field).map(u64::from_be_bytes)
    }

    /// Fails when bytes are left over after the last field of `what`.
    pub fn finish(&self, what: &str) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(DecodeError::new(what, format!("{n} bytes left over after the last field"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_big_endian_and_names_the_field_that_does_not_fit() {
        let mut r = Reader::new(&[0x01, 0x02, 0xFF, 0xFE, 0x00, 0x00, 0x01]);
        assert_eq!(r.u16("a").unwrap(), 0x0102);
        assert_eq!(r.i16("b").unwrap(), -2);
        assert_eq!(r.u24("c").unwrap(), 1);
        let e = r.u8("records[3].priority").unwrap_err();
        assert_eq!(e.field, "records[3].priority");
        assert!(e.message.contains("needs 1 bytes at offset 7, only 0 left"), "{e}");
        assert!(r.finish("frame").is_ok());
    }
}
