//! Framing: a decoder that accepts input in chunks of any size, and an encoder.

use bytes::{Buf, Bytes, BytesMut};

use super::header::{FrameHeader, MessageType, HEADER_LEN};
use super::messages::Message;
use crate::error::Error;

/// Frames larger than this are refused by default (32 MiB).
pub const DEFAULT_MAX_FRAME_LEN: u32 = 32 * 1024 * 1024;

/// A frame whose payload is not decoded yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    /// Message type.
    pub ty: MessageType,
    /// Header flags.
    pub flags: u16,
    /// The payload, sharing the decoder's buffer.
    pub payload: Bytes,
}

impl RawFrame {
    /// Decodes the payload.
    pub fn decode(&self) -> Result<Message, Error> {
        Message::decode(self.ty, &self.payload)
            .map_err(|e| Error::protocol(format!("cannot decode {:?} message: {e}", self.ty)))
    }
}

/// Splits a byte stream into frames. Bytes can be pushed in chunks of any size.
#[derive(Debug)]
pub struct Decoder {
    buf: BytesMut,
    pending: Option<FrameHeader>,
    max_frame_len: u32,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(DEFAULT_MAX_FRAME_LEN)
    }
}

impl Decoder {
    /// A decoder refusing frames whose payload exceeds `max_frame_len` bytes.
    pub fn new(max_frame_len: u32) -> Decoder {
        Decoder {
            buf: BytesMut::new(),
            pending: None,
            max_frame_len,
        }
    }

    /// Appends input bytes.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Whether a frame was started but not completed.
    pub fn has_partial_frame(&self) -> bool {
        self.pending.is_some() || !self.buf.is_empty()
    }

    /// The next complete frame, `Ok(None)` if more input is needed.
    pub fn next_frame(&mut self) -> Result<Option<RawFrame>, Error> {
        let header = match self.pending {
            Some(h) => h,
            None => {
                if self.buf.len() < HEADER_LEN {
                    return Ok(None);
                }
                let mut raw = [0u8; HEADER_LEN];
                raw.copy_from_slice(&self.buf[..HEADER_LEN]);
                self.buf.advance(HEADER_LEN);
                let h = FrameHeader::parse(raw);
                if MessageType::from_code(h.code).is_none() {
                    return Err(Error::protocol(format!(
                        "unknown message type {:#06x}",
                        h.code
                    )));
                }
                if h.len > self.max_frame_len {
                    return Err(Error::protocol(format!(
                        "frame of type {:#06x} is {} bytes, over the limit of {} bytes",
                        h.code, h.len, self.max_frame_len
                    )));
                }
                self.pending = Some(h);
                h
            }
        };
        let len = header.len as usize;
        if self.buf.len() < len {
            if self.buf.capacity() < len {
                self.buf.reserve(len - self.buf.len());
            }
            return Ok(None);
        }
        self.pending = None;
        let payload = self.buf.split_to(len).freeze();
        let ty = MessageType::from_code(header.code).expect("checked when the header was read");
        Ok(Some(RawFrame {
            ty,
            flags: header.flags,
            payload,
        }))
    }
}

/// Appends one encoded frame (header + payload) to `out`.
pub fn encode_frame(out: &mut Vec<u8>, msg: &Message, flags: u16) {
    let start = out.len();
    out.extend_from_slice(&[0u8; HEADER_LEN]);
    msg.encode_payload(out);
    let len = (out.len() - start - HEADER_LEN) as u32;
    let header = FrameHeader {
        code: msg.message_type().code(),
        flags,
        len,
    };
    out[start..start + HEADER_LEN].copy_from_slice(&header.to_bytes());
}

/// Decodes a complete byte stream into messages (for tests and tools).
pub fn decode_all(bytes: &[u8]) -> Result<Vec<(RawFrame, Message)>, Error> {
    let mut d = Decoder::default();
    d.push(bytes);
    let mut out = Vec::new();
    while let Some(f) = d.next_frame()? {
        let m = f.decode()?;
        out.push((f, m));
    }
    if d.has_partial_frame() {
        return Err(Error::protocol("stream ends inside a frame"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::messages::Command;

    #[test]
    fn one_byte_at_a_time() {
        let mut stream = Vec::new();
        for i in 0..5u32 {
            let c = Command::Run {
                result_completion_id: i + 1,
                name: format!("step-{i}"),
            };
            encode_frame(&mut stream, &Message::Command(c), 0);
        }
        let mut d = Decoder::default();
        let mut frames = Vec::new();
        for b in &stream {
            d.push(std::slice::from_ref(b));
            while let Some(f) = d.next_frame().unwrap() {
                frames.push(f.decode().unwrap());
            }
        }
        assert_eq!(frames.len(), 5);
        assert!(!d.has_partial_frame());
    }

    #[test]
    fn unknown_type_and_oversized_frames_are_errors() {
        let mut d = Decoder::new(16);
        d.push(&[0x04, 0x0F, 0, 0, 0, 0, 0, 0]);
        assert_eq!(d.next_frame().unwrap_err().code, 571);
        let mut d = Decoder::new(16);
        d.push(&[0x04, 0x00, 0, 0, 0, 0, 0, 17]);
        assert!(d
            .next_frame()
            .unwrap_err()
            .message
            .contains("over the limit"));
    }
}
