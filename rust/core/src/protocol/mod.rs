//! The wire protocol: frame headers, message codes, messages, framing and versions.

pub mod codec;
pub mod header;
pub mod messages;
mod pb;
pub mod version;

pub use codec::{decode_all, encode_frame, Decoder, RawFrame, DEFAULT_MAX_FRAME_LEN};
pub use header::{FrameHeader, MessageType, HEADER_LEN, REQUESTED_ACK};
pub use messages::*;
pub use pb::DecodeError;
pub use version::Version;
