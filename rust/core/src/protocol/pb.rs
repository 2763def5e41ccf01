//! A minimal protobuf (proto3) reader and writer.
//!
//! The service protocol uses a small, stable subset of protobuf: varints, length-delimited
//! fields and packed repeated `uint32`. Hand-written codecs keep the core free of code
//! generation and let decoded byte fields share the input buffer (`Bytes::slice`) instead of
//! copying it, which is most of the cost of replaying a long journal. Fields are read as
//! ranges of that buffer and sliced only when kept: each slice is an atomic reference count
//! taken and later dropped, which was a quarter of the cost of taking in a journal when every
//! field and nested message was sliced.

use bytes::{BufMut, Bytes};

/// Why a payload could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// One field read from a message.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Field<'a> {
    Varint(u64),
    Len(Span<'a>),
    Fixed64,
    Fixed32,
}

/// A length-delimited field: a range of the buffer being read. It becomes a `Bytes` (one
/// more reference to the buffer) only when a decoder keeps it; strings are copied from it and
/// nested messages are read in place, without touching the buffer's reference count.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Span<'a> {
    buf: &'a Bytes,
    start: usize,
    end: usize,
}

impl<'a> Span<'a> {
    fn as_slice(&self) -> &'a [u8] {
        &self.buf[self.start..self.end]
    }
}

impl<'a> Field<'a> {
    pub(crate) fn varint(&self) -> Result<u64, DecodeError> {
        match self {
            Field::Varint(v) => Ok(*v),
            _ => Err(DecodeError("expected a varint field")),
        }
    }

    pub(crate) fn u32(&self) -> Result<u32, DecodeError> {
        u32::try_from(self.varint()?).map_err(|_| DecodeError("uint32 field out of range"))
    }

    pub(crate) fn bool(&self) -> Result<bool, DecodeError> {
        Ok(self.varint()? != 0)
    }

    /// The field's bytes, sharing the buffer.
    pub(crate) fn bytes(&self) -> Result<Bytes, DecodeError> {
        match self {
            Field::Len(s) => Ok(s.buf.slice(s.start..s.end)),
            _ => Err(DecodeError("expected a length-delimited field")),
        }
    }

    /// `range` of the buffer being read (within this field, as [`Field::range`] and the
    /// ranges of its nested fields give), sharing it.
    pub(crate) fn slice(&self, range: std::ops::Range<usize>) -> Result<Bytes, DecodeError> {
        match self {
            Field::Len(s) => Ok(s.buf.slice(range)),
            _ => Err(DecodeError("expected a length-delimited field")),
        }
    }

    /// Where the field's bytes are in the buffer being read.
    pub(crate) fn range(&self) -> Result<std::ops::Range<usize>, DecodeError> {
        match self {
            Field::Len(s) => Ok(s.start..s.end),
            _ => Err(DecodeError("expected a length-delimited field")),
        }
    }

    /// A reader over the nested message this field holds.
    pub(crate) fn message(&self) -> Result<Reader<'a>, DecodeError> {
        match self {
            Field::Len(s) => Ok(Reader {
                buf: s.buf,
                pos: s.start,
                end: s.end,
            }),
            _ => Err(DecodeError("expected a nested message")),
        }
    }

    pub(crate) fn string(&self) -> Result<String, DecodeError> {
        match self {
            Field::Len(s) => std::str::from_utf8(s.as_slice())
                .map(str::to_owned)
                .map_err(|_| DecodeError("string field is not valid UTF-8")),
            _ => Err(DecodeError("expected a string field")),
        }
    }

    /// Appends a repeated `uint32`, accepting both the packed and the unpacked encoding.
    pub(crate) fn push_u32s(&self, out: &mut Vec<u32>) -> Result<(), DecodeError> {
        match self {
            Field::Varint(_) => out.push(self.u32()?),
            Field::Len(s) => {
                let b = s.as_slice();
                let mut pos = 0;
                while pos < b.len() {
                    let v = read_varint(b, &mut pos)?;
                    out.push(u32::try_from(v).map_err(|_| DecodeError("uint32 out of range"))?);
                }
            }
            _ => return Err(DecodeError("expected a repeated uint32 field")),
        }
        Ok(())
    }
}

#[inline]
pub(crate) fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64, DecodeError> {
    let mut result: u64 = 0;
    let mut shift = 0u32;
    loop {
        let Some(&byte) = buf.get(*pos) else {
            return Err(DecodeError("truncated varint"));
        };
        *pos += 1;
        if shift == 63 && byte > 1 {
            return Err(DecodeError("varint overflows 64 bits"));
        }
        result |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(result);
        }
        shift += 7;
        if shift > 63 {
            return Err(DecodeError("varint overflows 64 bits"));
        }
    }
}

/// Iterates over the fields of one encoded message (`buf[pos..end]`); unknown fields are the
/// caller's to skip.
pub(crate) struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a Bytes) -> Self {
        Reader {
            buf,
            pos: 0,
            end: buf.len(),
        }
    }

    /// The next `(field number, value)`, `None` at the end of the message.
    #[inline]
    pub(crate) fn next_field(&mut self) -> Result<Option<(u32, Field<'a>)>, DecodeError> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let bytes = &self.buf[..self.end];
        let key = read_varint(bytes, &mut self.pos)?;
        let number = u32::try_from(key >> 3).map_err(|_| DecodeError("field number too large"))?;
        if number == 0 {
            return Err(DecodeError("field number 0"));
        }
        let field = match key & 7 {
            0 => Field::Varint(read_varint(bytes, &mut self.pos)?),
            1 => {
                self.skip(8)?;
                Field::Fixed64
            }
            2 => {
                let len = read_varint(bytes, &mut self.pos)?;
                let len = usize::try_from(len).map_err(|_| DecodeError("length too large"))?;
                let start = self.pos;
                self.skip(len)?;
                Field::Len(Span {
                    buf: self.buf,
                    start,
                    end: start + len,
                })
            }
            5 => {
                self.skip(4)?;
                Field::Fixed32
            }
            _ => return Err(DecodeError("unsupported wire type")),
        };
        Ok(Some((number, field)))
    }

    fn skip(&mut self, n: usize) -> Result<(), DecodeError> {
        if self.end - self.pos < n {
            return Err(DecodeError("truncated field"));
        }
        self.pos += n;
        Ok(())
    }
}

/// Appends protobuf fields to a buffer. Default values (0, empty) are omitted, as proto3 does,
/// except where a field is `optional` (use the `*_always` variants).
pub(crate) struct Writer<'a> {
    pub(crate) buf: &'a mut Vec<u8>,
}

#[inline]
pub(crate) fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

pub(crate) fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

impl Writer<'_> {
    #[inline]
    fn key(&mut self, number: u32, wire: u8) {
        put_varint(self.buf, (u64::from(number) << 3) | u64::from(wire));
    }

    pub(crate) fn u64(&mut self, number: u32, v: u64) {
        if v != 0 {
            self.u64_always(number, v);
        }
    }

    pub(crate) fn u64_always(&mut self, number: u32, v: u64) {
        self.key(number, 0);
        put_varint(self.buf, v);
    }

    pub(crate) fn u32(&mut self, number: u32, v: u32) {
        self.u64(number, u64::from(v));
    }

    pub(crate) fn bool(&mut self, number: u32, v: bool) {
        self.u64(number, u64::from(v));
    }

    pub(crate) fn bytes(&mut self, number: u32, v: &[u8]) {
        if !v.is_empty() {
            self.bytes_always(number, v);
        }
    }

    pub(crate) fn bytes_always(&mut self, number: u32, v: &[u8]) {
        self.key(number, 2);
        put_varint(self.buf, v.len() as u64);
        self.buf.extend_from_slice(v);
    }

    pub(crate) fn str(&mut self, number: u32, v: &str) {
        self.bytes(number, v.as_bytes());
    }

    pub(crate) fn opt_str(&mut self, number: u32, v: &Option<String>) {
        if let Some(v) = v {
            self.bytes_always(number, v.as_bytes());
        }
    }

    pub(crate) fn packed_u32(&mut self, number: u32, vs: &[u32]) {
        if vs.is_empty() {
            return;
        }
        let len: usize = vs.iter().map(|v| varint_len(u64::from(*v))).sum();
        self.key(number, 2);
        put_varint(self.buf, len as u64);
        for v in vs {
            put_varint(self.buf, u64::from(*v));
        }
    }

    /// Writes a nested message; `f` encodes its body. Always written, even when empty, because
    /// presence is meaningful for nested messages (e.g. `Void`).
    pub(crate) fn message(&mut self, number: u32, f: impl FnOnce(&mut Writer<'_>)) {
        let mut body = Vec::new();
        f(&mut Writer { buf: &mut body });
        self.bytes_always(number, &body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trip() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            assert_eq!(buf.len(), varint_len(v));
            let mut pos = 0;
            assert_eq!(read_varint(&buf, &mut pos).unwrap(), v);
            assert_eq!(pos, buf.len());
        }
    }

    #[test]
    fn overlong_varint_is_an_error() {
        let buf = [0xffu8; 11];
        assert!(read_varint(&buf, &mut 0).is_err());
        assert!(read_varint(&[0x80], &mut 0).is_err());
    }

    #[test]
    fn a_nested_message_is_read_within_its_own_bounds() {
        // Field 1 holds a 2-byte message whose only field (1, length 4) claims bytes that
        // exist in the buffer, but past the end of the nested message: truncated.
        let buf = Bytes::from_static(&[0x0a, 0x02, 0x0a, 0x04, 1, 2, 3, 4]);
        let mut r = Reader::new(&buf);
        let (n, outer) = field(&mut r);
        assert_eq!(n, 1);
        assert!(outer.message().unwrap().next_field().is_err());
        // A well-formed nested message: its field is found, then its end, not the outer
        // message's next field.
        let buf = Bytes::from_static(&[0x0a, 0x03, 0x0a, 0x01, 9, 0x10, 0x05]);
        let mut r = Reader::new(&buf);
        let (_, outer) = field(&mut r);
        let mut inner = outer.message().unwrap();
        let (n, f) = field(&mut inner);
        assert_eq!((n, &f.bytes().unwrap()[..]), (1, &[9u8][..]));
        assert!(inner.next_field().unwrap().is_none());
        let (n, f) = field(&mut r);
        assert_eq!((n, f.varint().unwrap()), (2, 5));
        assert!(r.next_field().unwrap().is_none());
    }

    fn field<'a>(r: &mut Reader<'a>) -> (u32, Field<'a>) {
        r.next_field().expect("decodes").expect("a field")
    }

    #[test]
    fn truncated_length_is_an_error() {
        let buf = Bytes::from_static(&[0x0a, 0x05, 1, 2]);
        assert!(Reader::new(&buf).next_field().is_err());
    }
}
