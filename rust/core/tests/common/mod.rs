//! A small builder for transcript tests: frames in, a handler closure, exact frames out.
//!
//! ```ignore
//! Transcript::v6()
//!     .input(b"\"x\"")
//!     .closed()
//!     .run(|vm| {
//!         let input = vm.sys_input().unwrap();
//!         vm.sys_write_output(CommandResult::Value(input.input)).unwrap();
//!         vm.sys_end().unwrap();
//!     })
//!     .expect(vec![output(b"\"x\""), end()]);
//! ```
//!
//! Output frames are compared as decoded [`Message`] values *and* header flags. Error frames
//! are compared field by field, except that the expected `message` is a substring of the
//! actual one (the core's wording is free text; codes and related-command fields are not).

#![allow(dead_code, unused_imports)]

pub use bytes::Bytes;
pub use durable_futures_core::protocol::{
    decode_all, encode_frame, CombinatorType, Command, CommandResult, ErrorMessage, Failure,
    Header, Message, MessageType, Notification, NotificationId, NotificationResult, SignalRef,
    StartMessage, Version, WireFuture, REQUESTED_ACK,
};
pub use durable_futures_core::{
    codes, AwaitOutcome, Combinator, Error, Handle, Outcome, RetryPolicy, RunExit, RunHandle,
    SelectOutcome, State, Target, Value, Vm, VmOptions, CANCEL_HANDLE,
};

/// Raw invocation id used by every transcript.
pub const INVOCATION_ID: &[u8] = b"test-invocation-id";
/// Printable invocation id used by every transcript.
pub const DEBUG_ID: &str = "inv_1test";

// ---- frames ----------------------------------------------------------------------------------

/// One frame: a message and its header flags.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub msg: Message,
    pub flags: u16,
}

impl From<Message> for Frame {
    fn from(msg: Message) -> Frame {
        Frame { msg, flags: 0 }
    }
}

impl From<Command> for Frame {
    fn from(c: Command) -> Frame {
        Message::Command(c).into()
    }
}

impl Frame {
    /// Sets the `REQUESTED_ACK` flag.
    pub fn ack(mut self) -> Frame {
        self.flags |= REQUESTED_ACK;
        self
    }

    /// Sets the flags.
    pub fn with_flags(mut self, flags: u16) -> Frame {
        self.flags = flags;
        self
    }

    fn error_mut(&mut self) -> &mut ErrorMessage {
        match &mut self.msg {
            Message::Error(e) => e,
            m => panic!("not an error frame: {m:?}"),
        }
    }

    /// Error frames: the related command (index, type, name).
    pub fn related(mut self, index: u32, ty: MessageType, name: Option<&str>) -> Frame {
        let e = self.error_mut();
        e.related_command_index = Some(index);
        e.related_command_type = Some(u32::from(ty.code()));
        e.related_command_name = name.map(str::to_owned);
        self
    }

    /// Error frames: the next retry delay override.
    pub fn retry_delay(mut self, ms: u64) -> Frame {
        self.error_mut().next_retry_delay = Some(ms);
        self
    }

    /// Error frames: the V7 behaviour (0 retry, 1 pause, 2 fail).
    pub fn behavior(mut self, b: u32) -> Frame {
        self.error_mut().behavior = b;
        self
    }

    /// Error frames: a substring the actual message must contain.
    pub fn message_contains(mut self, s: &str) -> Frame {
        self.error_mut().message = s.to_owned();
        self
    }

    /// Error frames: the exact stack trace.
    pub fn stacktrace(mut self, s: &str) -> Frame {
        self.error_mut().stacktrace = s.to_owned();
        self
    }

    /// Encodes the frame.
    pub fn bytes(&self) -> Vec<u8> {
        let mut b = Vec::new();
        encode_frame(&mut b, &self.msg, self.flags);
        b
    }
}

/// Encodes frames back to back.
pub fn encode(frames: &[Frame]) -> Vec<u8> {
    frames.iter().flat_map(Frame::bytes).collect()
}

/// Decodes an output stream into frames; panics on a malformed stream.
pub fn decode(bytes: &[u8]) -> Vec<Frame> {
    decode_all(bytes)
        .expect("the VM wrote a malformed stream")
        .into_iter()
        .map(|(raw, msg)| Frame {
            msg,
            flags: raw.flags,
        })
        .collect()
}

fn frame_matches(expected: &Frame, actual: &Frame) -> bool {
    if expected.flags != actual.flags {
        return false;
    }
    match (&expected.msg, &actual.msg) {
        (Message::Error(e), Message::Error(a)) => {
            a.message.contains(&e.message)
                && ErrorMessage {
                    message: String::new(),
                    ..e.clone()
                } == ErrorMessage {
                    message: String::new(),
                    ..a.clone()
                }
        }
        (e, a) => e == a,
    }
}

/// Asserts that `actual` is exactly `expected` (see the module docs for error frames).
pub fn assert_frames(actual: &[Frame], expected: &[Frame]) {
    let ok = actual.len() == expected.len()
        && expected
            .iter()
            .zip(actual)
            .all(|(e, a)| frame_matches(e, a));
    if !ok {
        let show = |fs: &[Frame]| {
            fs.iter()
                .enumerate()
                .map(|(i, f)| format!("  [{i}] flags={:#06x} {:?}", f.flags, f.msg))
                .collect::<Vec<_>>()
                .join("\n")
        };
        panic!(
            "output frames differ\n--- expected:\n{}\n--- actual:\n{}",
            show(expected),
            show(actual)
        );
    }
}

// ---- the builder -----------------------------------------------------------------------------

/// Feeds a journal to a fresh VM, runs a handler against it, collects the output.
pub struct Transcript {
    version: Version,
    options: VmOptions,
    start: StartMessage,
    journal: Vec<Vec<u8>>,
    known_entries: Option<u32>,
    after_journal: Vec<u8>,
    close: bool,
}

impl Transcript {
    /// A transcript for `version`; input stays open unless [`Transcript::closed`] is called.
    pub fn new(version: Version) -> Transcript {
        Transcript {
            version,
            options: VmOptions::default(),
            start: StartMessage {
                id: Bytes::from_static(INVOCATION_ID),
                debug_id: DEBUG_ID.to_owned(),
                known_entries: 0,
                random_seed: 0x5eed,
                ..StartMessage::default()
            },
            journal: Vec::new(),
            known_entries: None,
            after_journal: Vec::new(),
            close: false,
        }
    }

    pub fn v5() -> Transcript {
        Transcript::new(Version::V5)
    }

    pub fn v6() -> Transcript {
        Transcript::new(Version::V6)
    }

    pub fn v7() -> Transcript {
        Transcript::new(Version::V7)
    }

    /// Changes the VM options.
    pub fn options(mut self, f: impl FnOnce(&mut VmOptions)) -> Transcript {
        f(&mut self.options);
        self
    }

    /// Changes the `StartMessage` (`known_entries` is computed unless overridden).
    pub fn start(mut self, f: impl FnOnce(&mut StartMessage)) -> Transcript {
        f(&mut self.start);
        self
    }

    /// Overrides `StartMessage.known_entries` (default: the number of journal entries).
    pub fn known_entries(mut self, n: u32) -> Transcript {
        self.known_entries = Some(n);
        self
    }

    /// Adds an eager state entry.
    pub fn state(mut self, key: &str, value: &[u8]) -> Transcript {
        self.start.state_map.push((
            Bytes::copy_from_slice(key.as_bytes()),
            Bytes::copy_from_slice(value),
        ));
        self
    }

    /// Marks the eager state as partial.
    pub fn partial_state(mut self) -> Transcript {
        self.start.partial_state = true;
        self
    }

    /// Sets the retry counters of the `StartMessage`.
    pub fn retry_info(mut self, count: u32, duration_ms: u64) -> Transcript {
        self.start.retry_count_since_last_stored_entry = count;
        self.start.duration_since_last_stored_entry = duration_ms;
        self
    }

    /// Journal entry 0: the input command with this payload.
    pub fn input(self, value: &[u8]) -> Transcript {
        self.entry(input_cmd(value))
    }

    /// Appends a journal entry (command or notification) counted in `known_entries`.
    pub fn entry(mut self, f: impl Into<Frame>) -> Transcript {
        self.journal.push(f.into().bytes());
        self
    }

    /// Appends a journal entry given as a raw type code and payload (for malformed entries).
    pub fn entry_raw(mut self, code: u16, payload: &[u8]) -> Transcript {
        let mut bytes = ((u64::from(code) << 48) | payload.len() as u64)
            .to_be_bytes()
            .to_vec();
        bytes.extend_from_slice(payload);
        self.journal.push(bytes);
        self
    }

    /// Frames sent after the journal (not counted in `known_entries`), before the handler.
    pub fn then(mut self, f: impl Into<Frame>) -> Transcript {
        self.after_journal.extend(f.into().bytes());
        self
    }

    /// Raw bytes sent after the journal, before the handler.
    pub fn then_bytes(mut self, b: &[u8]) -> Transcript {
        self.after_journal.extend_from_slice(b);
        self
    }

    /// The runtime closes its side after sending everything (request/response mode).
    pub fn closed(mut self) -> Transcript {
        self.close = true;
        self
    }

    /// The whole input stream.
    pub fn input_bytes(&self) -> Vec<u8> {
        let mut start = self.start.clone();
        start.known_entries = self.known_entries.unwrap_or(self.journal.len() as u32);
        let mut bytes = Frame::from(Message::Start(start)).bytes();
        bytes.extend(self.journal.concat());
        bytes.extend_from_slice(&self.after_journal);
        bytes
    }

    /// Feeds the input (in one chunk), then runs `handler` and collects the output.
    pub fn run<R>(self, handler: impl FnOnce(&mut Vm) -> R) -> Ran<R> {
        let bytes = self.input_bytes();
        self.run_chunked(&[bytes.len()], handler)
    }

    /// Like [`Transcript::run`], feeding the input in chunks of the given sizes (cycled).
    pub fn run_chunked<R>(self, sizes: &[usize], handler: impl FnOnce(&mut Vm) -> R) -> Ran<R> {
        let bytes = self.input_bytes();
        let mut vm = Vm::new(self.version.content_type(), self.options.clone()).unwrap();
        let mut rest: &[u8] = &bytes;
        let mut i = 0;
        while !rest.is_empty() {
            let n = sizes[i % sizes.len()].clamp(1, rest.len());
            vm.notify_input(&rest[..n]);
            rest = &rest[n..];
            i += 1;
        }
        if self.close {
            vm.notify_input_closed();
        }
        let result = handler(&mut vm);
        let out = decode(&vm.take_output());
        Ran { vm, out, result }
    }
}

/// The outcome of [`Transcript::run`].
pub struct Ran<R> {
    pub vm: Vm,
    pub out: Vec<Frame>,
    pub result: R,
}

impl<R> Ran<R> {
    /// Asserts the exact output frames.
    pub fn expect(self, expected: Vec<Frame>) -> Ran<R> {
        assert_frames(&self.out, &expected);
        self
    }

    /// Asserts the VM state after the handler.
    pub fn state(self, state: State) -> Ran<R> {
        assert_eq!(self.vm.state(), state);
        self
    }
}

// ---- driving the VM --------------------------------------------------------------------------

/// Feeds frames to a running VM (bidirectional mode).
pub fn send(vm: &mut Vm, frames: impl IntoIterator<Item = Frame>) {
    let frames: Vec<Frame> = frames.into_iter().collect();
    vm.notify_input(&encode(&frames));
}

/// `AwaitOutcome::Pending` while waiting for input only.
pub const WAITING_INPUT: AwaitOutcome = AwaitOutcome::Pending {
    waiting_input: true,
    waiting_runs: false,
};

/// Awaits `h` and asserts it is ready.
pub fn ready(vm: &mut Vm, h: Handle) {
    assert_eq!(vm.do_await(h).unwrap(), AwaitOutcome::Ready);
}

/// Takes the value of a completed leaf handle.
pub fn take(vm: &mut Vm, h: Handle) -> Value {
    vm.take_notification(h)
        .unwrap()
        .expect("the handle has a value")
}

/// Awaits `h`, asserts it is ready and takes its value.
pub fn await_value(vm: &mut Vm, h: Handle) -> Value {
    ready(vm, h);
    take(vm, h)
}

/// A value as the VM hands it out.
pub fn val(b: &[u8]) -> Value {
    Value::Value(Bytes::copy_from_slice(b))
}

/// A failure as the VM hands it out.
pub fn failure(code: u32, message: &str) -> Failure {
    failure_meta(code, message, &[])
}

/// A failure with metadata.
pub fn failure_meta(code: u32, message: &str, metadata: &[(&str, &str)]) -> Failure {
    Failure {
        code,
        message: message.to_owned(),
        metadata: metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// Writes `value` as output and ends.
pub fn finish(vm: &mut Vm, value: &[u8]) {
    vm.sys_write_output(CommandResult::Value(Bytes::copy_from_slice(value)))
        .unwrap();
    vm.sys_end().unwrap();
}

/// Sleeps, then receives a command while processing (after the journal): awaiting the sleep
/// is a protocol violation.
pub fn command_after_the_journal(vm: &mut Vm) {
    vm.sys_input().unwrap();
    let h = vm.sys_sleep("", 0).unwrap();
    send(vm, [sleep_cmd(1, 0, "")]);
    assert_eq!(vm.do_await(h).unwrap_err().code, codes::PROTOCOL_VIOLATION);
}

/// A header `k: v`.
pub fn hdr(k: &str, v: &str) -> Header {
    Header {
        key: k.into(),
        value: v.into(),
    }
}

/// A call target without key or options.
pub fn target(service: &str, handler: &str) -> Target {
    Target {
        service: service.to_owned(),
        handler: handler.to_owned(),
        ..Target::default()
    }
}

/// A run exit with a retryable error.
pub fn retryable(code: u16, message: &str, attempt_duration_ms: u64) -> RunExit {
    RunExit::RetryableFailure {
        error: Error::new(code, message),
        attempt_duration_ms,
    }
}

// ---- messages --------------------------------------------------------------------------------

fn b(v: &[u8]) -> Bytes {
    Bytes::copy_from_slice(v)
}

pub fn input_cmd(value: &[u8]) -> Frame {
    Command::Input {
        headers: vec![],
        value: b(value),
        name: String::new(),
    }
    .into()
}

pub fn output(value: &[u8]) -> Frame {
    Command::Output {
        result: Some(CommandResult::Value(b(value))),
        name: String::new(),
    }
    .into()
}

pub fn output_failure(code: u32, message: &str) -> Frame {
    Command::Output {
        result: Some(CommandResult::Failure(failure(code, message))),
        name: String::new(),
    }
    .into()
}

pub fn end() -> Frame {
    Message::End.into()
}

pub fn sleep_cmd(id: u32, wake_up_time: u64, name: &str) -> Frame {
    Command::Sleep {
        wake_up_time,
        result_completion_id: id,
        name: name.to_owned(),
    }
    .into()
}

pub fn run_cmd(id: u32, name: &str) -> Frame {
    Command::Run {
        result_completion_id: id,
        name: name.to_owned(),
    }
    .into()
}

pub fn propose(id: u32, value: &[u8]) -> Frame {
    Message::ProposeRunCompletion {
        result_completion_id: id,
        result: CommandResult::Value(b(value)),
    }
    .into()
}

pub fn propose_failure(id: u32, code: u32, message: &str) -> Frame {
    Message::ProposeRunCompletion {
        result_completion_id: id,
        result: CommandResult::Failure(failure(code, message)),
    }
    .into()
}

pub fn run_ack(id: u32) -> Frame {
    Message::ProposeRunCompletionAck { completion_id: id }.into()
}

pub fn call_cmd(service: &str, handler: &str, param: &[u8], inv: u32, res: u32) -> Command {
    Command::Call {
        service_name: service.to_owned(),
        handler_name: handler.to_owned(),
        parameter: b(param),
        headers: vec![],
        key: String::new(),
        idempotency_key: None,
        scope: None,
        limit_key: None,
        invocation_id_notification_idx: inv,
        result_completion_id: res,
        name: String::new(),
    }
}

pub fn send_cmd(service: &str, handler: &str, param: &[u8], invoke_time: u64, inv: u32) -> Command {
    Command::OneWayCall {
        service_name: service.to_owned(),
        handler_name: handler.to_owned(),
        parameter: b(param),
        invoke_time,
        headers: vec![],
        key: String::new(),
        idempotency_key: None,
        scope: None,
        limit_key: None,
        invocation_id_notification_idx: inv,
        name: String::new(),
    }
}

pub fn cancel_cmd(target: &str) -> Frame {
    Command::SendSignal {
        target_invocation_id: target.to_owned(),
        signal: SignalRef::Idx(1),
        result: None,
        entry_name: String::new(),
    }
    .into()
}

pub fn suspension_v6(completions: &[u32], signals: &[u32], named: &[&str]) -> Frame {
    Message::SuspensionV6 {
        completions: completions.to_vec(),
        signals: signals.to_vec(),
        named_signals: named.iter().map(|s| s.to_string()).collect(),
    }
    .into()
}

pub fn suspension_v7(f: WireFuture) -> Frame {
    Message::SuspensionV7(f).into()
}

pub fn awaiting_on(f: WireFuture) -> Frame {
    Message::AwaitingOn {
        awaiting_on: f,
        executing_side_effects: false,
    }
    .into()
}

/// A wire future without nested futures.
pub fn fut(ty: CombinatorType, completions: &[u32], signals: &[u32]) -> WireFuture {
    WireFuture {
        waiting_completions: completions.to_vec(),
        waiting_signals: signals.to_vec(),
        waiting_named_signals: Vec::new(),
        nested_futures: Vec::new(),
        combinator_type: ty,
    }
}

/// The V7 suspension tree of a single await with implicit cancellation.
pub fn first_completed(completions: &[u32], signals: &[u32]) -> WireFuture {
    fut(CombinatorType::FirstCompleted, completions, signals)
}

/// Adds nested futures.
pub fn nested(mut f: WireFuture, children: Vec<WireFuture>) -> WireFuture {
    f.nested_futures = children;
    f
}

/// An error frame with this code (see [`Frame::related`] and friends).
pub fn err(code: u16) -> Frame {
    Message::Error(ErrorMessage {
        code: u32::from(code),
        ..ErrorMessage::default()
    })
    .into()
}

// ---- notifications -----------------------------------------------------------------------

pub fn notification(ty: MessageType, id: NotificationId, result: NotificationResult) -> Frame {
    Message::Notification(ty, Notification { id, result }).into()
}

fn completion(ty: MessageType, id: u32, result: NotificationResult) -> Frame {
    notification(ty, NotificationId::Completion(id), result)
}

pub fn sleep_done(id: u32) -> Frame {
    completion(
        MessageType::SleepCompletionNotification,
        id,
        NotificationResult::Void,
    )
}

pub fn run_done(id: u32, value: &[u8]) -> Frame {
    completion(MessageType::RunCompletionNotification, id, nvalue(value))
}

pub fn run_failed(id: u32, code: u32, message: &str) -> Frame {
    completion(
        MessageType::RunCompletionNotification,
        id,
        nfailure(code, message),
    )
}

pub fn call_id(id: u32, invocation_id: &str) -> Frame {
    completion(
        MessageType::CallInvocationIdCompletionNotification,
        id,
        NotificationResult::InvocationId(invocation_id.to_owned()),
    )
}

pub fn call_done(id: u32, value: &[u8]) -> Frame {
    completion(MessageType::CallCompletionNotification, id, nvalue(value))
}

pub fn call_failed(id: u32, code: u32, message: &str) -> Frame {
    completion(
        MessageType::CallCompletionNotification,
        id,
        nfailure(code, message),
    )
}

pub fn lazy_state(id: u32, value: Option<&[u8]>) -> Frame {
    completion(
        MessageType::GetLazyStateCompletionNotification,
        id,
        value.map_or(NotificationResult::Void, nvalue),
    )
}

pub fn lazy_keys(id: u32, keys: &[&str]) -> Frame {
    completion(
        MessageType::GetLazyStateKeysCompletionNotification,
        id,
        NotificationResult::StateKeys(keys.iter().map(|k| b(k.as_bytes())).collect()),
    )
}

pub fn signal(idx: u32, result: NotificationResult) -> Frame {
    notification(
        MessageType::SignalNotification,
        NotificationId::Signal(idx),
        result,
    )
}

pub fn named_signal(name: &str, result: NotificationResult) -> Frame {
    notification(
        MessageType::SignalNotification,
        NotificationId::SignalName(name.to_owned()),
        result,
    )
}

/// The runtime's cancellation: signal 1, void.
pub fn cancel() -> Frame {
    signal(1, NotificationResult::Void)
}

pub fn nvalue(v: &[u8]) -> NotificationResult {
    NotificationResult::Value(b(v))
}

pub fn nfailure(code: u32, message: &str) -> NotificationResult {
    NotificationResult::Failure(failure(code, message))
}
