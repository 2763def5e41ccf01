//! The one error type of the core, with stable numeric codes.

use std::fmt;

use crate::protocol::MessageType;

/// Stable error codes. They travel in `ErrorMessage.code` and are shared with the Python
/// facade and the C ABI, which map them to exception classes.
pub mod codes {
    /// The input could not be understood (bad awakeable id, empty idempotency key, ...).
    pub const BAD_REQUEST: u16 = 400;
    /// The invocation was cancelled (signal 1); surfaced to handlers as a terminal error.
    pub const CANCELLED: u16 = 409;
    /// The request content type is not a supported protocol version.
    pub const UNSUPPORTED_MEDIA_TYPE: u16 = 415;
    /// Generic failure, e.g. a retryable handler error.
    pub const INTERNAL: u16 = 500;
    /// The handler did not do what the journal recorded (non-determinism).
    pub const JOURNAL_MISMATCH: u16 = 570;
    /// The peer broke the protocol (bad frame, unexpected message, truncated stream).
    pub const PROTOCOL_VIOLATION: u16 = 571;
    /// A feature needs a newer protocol version than the negotiated one.
    pub const UNSUPPORTED_FEATURE: u16 = 573;
    /// A call was made after the VM closed (after a suspension, an error or the end).
    pub const CLOSED: u16 = 598;
    /// Marker for "the attempt suspended"; never sent on the wire.
    pub const SUSPENDED: u16 = 599;
}

/// The journal command an error is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelatedCommand {
    /// Index of the command in the journal (commands only; the input command is 0).
    pub index: u32,
    /// Message type of the command.
    pub ty: MessageType,
    /// The command's name, if it has one.
    pub name: Option<String>,
}

/// An error of the core: a stable code and a message naming the journal entry involved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// One of [`codes`] (or a user-chosen code for retryable handler failures).
    pub code: u16,
    /// Human-readable description.
    pub message: String,
    /// Optional stack trace or longer description.
    pub stacktrace: String,
    /// The command this error relates to, if any.
    pub related_command: Option<RelatedCommand>,
    /// Overrides the runtime's next retry delay (ms), if set.
    pub next_retry_delay_ms: Option<u64>,
}

impl Error {
    /// An error with a code and a message.
    pub fn new(code: u16, message: impl Into<String>) -> Error {
        Error {
            code,
            message: message.into(),
            stacktrace: String::new(),
            related_command: None,
            next_retry_delay_ms: None,
        }
    }

    /// Attaches a stack trace.
    pub fn with_stacktrace(mut self, stacktrace: impl Into<String>) -> Error {
        self.stacktrace = stacktrace.into();
        self
    }

    /// Attaches the related command.
    pub fn with_related(mut self, related: RelatedCommand) -> Error {
        self.related_command = Some(related);
        self
    }

    /// Overrides the next retry delay.
    pub fn with_next_retry_delay_ms(mut self, ms: u64) -> Error {
        self.next_retry_delay_ms = Some(ms);
        self
    }

    pub(crate) fn protocol(message: impl Into<String>) -> Error {
        Error::new(codes::PROTOCOL_VIOLATION, message)
    }

    pub(crate) fn closed() -> Error {
        Error::new(
            codes::CLOSED,
            "the invocation attempt is already closed (suspended, failed or ended); \
             no further operations are possible in this attempt",
        )
    }

    /// Whether this is a journal mismatch (non-determinism).
    pub fn is_journal_mismatch(&self) -> bool {
        self.code == codes::JOURNAL_MISMATCH
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.code, self.message)
    }
}

impl std::error::Error for Error {}
