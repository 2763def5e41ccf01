//! The 8-byte frame header and the message type codes.

/// The `REQUESTED_ACK` flag: the most significant bit of the 16-bit flags field.
pub const REQUESTED_ACK: u16 = 0x8000;

/// Size of a frame header in bytes.
pub const HEADER_LEN: usize = 8;

/// A message type code, as it appears in the top 16 bits of a frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MessageType {
    /// `StartMessage`, runtime to SDK, first frame of every stream.
    Start,
    /// `SuspensionMessage`, terminal frame.
    Suspension,
    /// `ErrorMessage`, terminal frame: the attempt failed.
    Error,
    /// `EndMessage`, terminal frame: the invocation is done.
    End,
    /// `CommandAckMessage`.
    CommandAck,
    /// `ProposeRunCompletionMessage`.
    ProposeRunCompletion,
    /// `AwaitingOnMessage` (V7).
    AwaitingOn,
    /// `ProposeRunCompletionAckMessage` (V7).
    ProposeRunCompletionAck,
    /// `InputCommandMessage`.
    InputCommand,
    /// `OutputCommandMessage`.
    OutputCommand,
    /// `GetLazyStateCommandMessage`.
    GetLazyStateCommand,
    /// `SetStateCommandMessage`.
    SetStateCommand,
    /// `ClearStateCommandMessage`.
    ClearStateCommand,
    /// `ClearAllStateCommandMessage`.
    ClearAllStateCommand,
    /// `GetLazyStateKeysCommandMessage`.
    GetLazyStateKeysCommand,
    /// `GetEagerStateCommandMessage`.
    GetEagerStateCommand,
    /// `GetEagerStateKeysCommandMessage`.
    GetEagerStateKeysCommand,
    /// `GetPromiseCommandMessage`.
    GetPromiseCommand,
    /// `PeekPromiseCommandMessage`.
    PeekPromiseCommand,
    /// `CompletePromiseCommandMessage`.
    CompletePromiseCommand,
    /// `SleepCommandMessage`.
    SleepCommand,
    /// `CallCommandMessage`.
    CallCommand,
    /// `OneWayCallCommandMessage`.
    OneWayCallCommand,
    /// `SendSignalCommandMessage`.
    SendSignalCommand,
    /// `RunCommandMessage`.
    RunCommand,
    /// `AttachInvocationCommandMessage`.
    AttachInvocationCommand,
    /// `GetInvocationOutputCommandMessage`.
    GetInvocationOutputCommand,
    /// `CompleteAwakeableCommandMessage`.
    CompleteAwakeableCommand,
    /// `GetLazyStateCompletionNotificationMessage`.
    GetLazyStateCompletionNotification,
    /// `GetLazyStateKeysCompletionNotificationMessage`.
    GetLazyStateKeysCompletionNotification,
    /// `GetPromiseCompletionNotificationMessage`.
    GetPromiseCompletionNotification,
    /// `PeekPromiseCompletionNotificationMessage`.
    PeekPromiseCompletionNotification,
    /// `CompletePromiseCompletionNotificationMessage`.
    CompletePromiseCompletionNotification,
    /// `SleepCompletionNotificationMessage`.
    SleepCompletionNotification,
    /// `CallCompletionNotificationMessage`.
    CallCompletionNotification,
    /// `CallInvocationIdCompletionNotificationMessage`.
    CallInvocationIdCompletionNotification,
    /// `RunCompletionNotificationMessage`.
    RunCompletionNotification,
    /// `AttachInvocationCompletionNotificationMessage`.
    AttachInvocationCompletionNotification,
    /// `GetInvocationOutputCompletionNotificationMessage`.
    GetInvocationOutputCompletionNotification,
    /// `SignalNotificationMessage`.
    SignalNotification,
    /// A custom entry (`0xFC00..=0xFFFF`): opaque, persisted and replayed by the runtime.
    Custom(u16),
}

macro_rules! codes {
    ($($variant:ident = $code:literal),* $(,)?) => {
        impl MessageType {
            /// The 16-bit wire code.
            pub fn code(self) -> u16 {
                match self {
                    $(MessageType::$variant => $code,)*
                    MessageType::Custom(c) => c,
                }
            }

            /// The type for a wire code; `None` for codes the protocol does not define.
            pub fn from_code(code: u16) -> Option<MessageType> {
                match code {
                    $($code => Some(MessageType::$variant),)*
                    c if c & 0xFC00 == 0xFC00 => Some(MessageType::Custom(c)),
                    _ => None,
                }
            }
        }
    };
}

codes! {
    Start = 0x0000,
    Suspension = 0x0001,
    Error = 0x0002,
    End = 0x0003,
    CommandAck = 0x0004,
    ProposeRunCompletion = 0x0005,
    AwaitingOn = 0x0006,
    ProposeRunCompletionAck = 0x0007,
    InputCommand = 0x0400,
    OutputCommand = 0x0401,
    GetLazyStateCommand = 0x0402,
    SetStateCommand = 0x0403,
    ClearStateCommand = 0x0404,
    ClearAllStateCommand = 0x0405,
    GetLazyStateKeysCommand = 0x0406,
    GetEagerStateCommand = 0x0407,
    GetEagerStateKeysCommand = 0x0408,
    GetPromiseCommand = 0x0409,
    PeekPromiseCommand = 0x040A,
    CompletePromiseCommand = 0x040B,
    SleepCommand = 0x040C,
    CallCommand = 0x040D,
    OneWayCallCommand = 0x040E,
    SendSignalCommand = 0x0410,
    RunCommand = 0x0411,
    AttachInvocationCommand = 0x0412,
    GetInvocationOutputCommand = 0x0413,
    CompleteAwakeableCommand = 0x0414,
    GetLazyStateCompletionNotification = 0x8002,
    GetLazyStateKeysCompletionNotification = 0x8006,
    GetPromiseCompletionNotification = 0x8009,
    PeekPromiseCompletionNotification = 0x800A,
    CompletePromiseCompletionNotification = 0x800B,
    SleepCompletionNotification = 0x800C,
    CallCompletionNotification = 0x800D,
    CallInvocationIdCompletionNotification = 0x800E,
    RunCompletionNotification = 0x8011,
    AttachInvocationCompletionNotification = 0x8012,
    GetInvocationOutputCompletionNotification = 0x8013,
    SignalNotification = 0xFBFF,
}

impl MessageType {
    /// Journal commands: `0x0400..=0x7FFF`.
    pub fn is_command(self) -> bool {
        (0x0400..=0x7FFF).contains(&self.code())
    }

    /// Journal notifications: `0x8000..=0xFBFF`.
    pub fn is_notification(self) -> bool {
        (0x8000..=0xFBFF).contains(&self.code())
    }

    /// What a command of this type is, in a word or two of the handler's terms: `"run"`,
    /// `"sleep"`, `"call"`, `"state get"`, ... (the words journal-mismatch messages use);
    /// `"command"` for every type that is not a command.
    pub fn kind(self) -> &'static str {
        match self {
            MessageType::InputCommand => "input",
            MessageType::OutputCommand => "output",
            MessageType::GetLazyStateCommand | MessageType::GetEagerStateCommand => "state get",
            MessageType::SetStateCommand => "state set",
            MessageType::ClearStateCommand => "state clear",
            MessageType::ClearAllStateCommand => "clear of all state",
            MessageType::GetLazyStateKeysCommand | MessageType::GetEagerStateKeysCommand => {
                "listing of state keys"
            }
            MessageType::GetPromiseCommand => "promise get",
            MessageType::PeekPromiseCommand => "promise peek",
            MessageType::CompletePromiseCommand => "promise completion",
            MessageType::SleepCommand => "sleep",
            MessageType::CallCommand => "call",
            MessageType::OneWayCallCommand => "send",
            MessageType::SendSignalCommand => "signal",
            MessageType::RunCommand => "run",
            MessageType::AttachInvocationCommand => "attach",
            MessageType::GetInvocationOutputCommand => "invocation output get",
            MessageType::CompleteAwakeableCommand => "awakeable completion",
            _ => "command",
        }
    }
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Raw type code (may be unknown to this core).
    pub code: u16,
    /// The 16 flag bits; only [`REQUESTED_ACK`] has a meaning.
    pub flags: u16,
    /// Payload length, header excluded.
    pub len: u32,
}

impl FrameHeader {
    /// Parses the big-endian `u64` header.
    pub fn parse(raw: [u8; HEADER_LEN]) -> FrameHeader {
        let v = u64::from_be_bytes(raw);
        FrameHeader {
            code: (v >> 48) as u16,
            flags: (v >> 32) as u16,
            len: v as u32,
        }
    }

    /// Serialises the header.
    pub fn to_bytes(self) -> [u8; HEADER_LEN] {
        ((u64::from(self.code) << 48) | (u64::from(self.flags) << 32) | u64::from(self.len))
            .to_be_bytes()
    }

    /// Whether the `REQUESTED_ACK` flag is set.
    pub fn requested_ack(self) -> bool {
        self.flags & REQUESTED_ACK != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_with_ack_bit() {
        let h = FrameHeader {
            code: 0x0005,
            flags: REQUESTED_ACK,
            len: 7,
        };
        assert_eq!(
            h.to_bytes(),
            [0x00, 0x05, 0x80, 0x00, 0x00, 0x00, 0x00, 0x07]
        );
        assert_eq!(FrameHeader::parse(h.to_bytes()), h);
        assert!(h.requested_ack());
    }

    #[test]
    fn every_code_round_trips() {
        for code in 0..=u16::MAX {
            if let Some(t) = MessageType::from_code(code) {
                assert_eq!(t.code(), code);
            }
        }
        assert_eq!(MessageType::from_code(0x040F), None);
        assert_eq!(
            MessageType::from_code(0xFC01),
            Some(MessageType::Custom(0xFC01))
        );
        assert!(MessageType::SignalNotification.is_notification());
        assert!(MessageType::CompleteAwakeableCommand.is_command());
    }

    #[test]
    fn every_command_has_a_word_and_nothing_else_does() {
        use MessageType as T;
        let words = [
            (T::InputCommand, "input"),
            (T::OutputCommand, "output"),
            (T::GetLazyStateCommand, "state get"),
            (T::GetEagerStateCommand, "state get"),
            (T::SetStateCommand, "state set"),
            (T::ClearStateCommand, "state clear"),
            (T::ClearAllStateCommand, "clear of all state"),
            (T::GetLazyStateKeysCommand, "listing of state keys"),
            (T::GetEagerStateKeysCommand, "listing of state keys"),
            (T::GetPromiseCommand, "promise get"),
            (T::PeekPromiseCommand, "promise peek"),
            (T::CompletePromiseCommand, "promise completion"),
            (T::SleepCommand, "sleep"),
            (T::CallCommand, "call"),
            (T::OneWayCallCommand, "send"),
            (T::SendSignalCommand, "signal"),
            (T::RunCommand, "run"),
            (T::AttachInvocationCommand, "attach"),
            (T::GetInvocationOutputCommand, "invocation output get"),
            (T::CompleteAwakeableCommand, "awakeable completion"),
        ];
        for (ty, word) in words {
            assert_eq!(ty.kind(), word, "{ty:?}");
        }
        for code in 0..=u16::MAX {
            match MessageType::from_code(code) {
                Some(t) if t.is_command() => {
                    assert!(words.iter().any(|(w, _)| *w == t), "{t:?} has no word")
                }
                Some(t) => assert_eq!(t.kind(), "command", "{t:?}"),
                None => {}
            }
        }
    }
}
