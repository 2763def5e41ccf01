//! Every message of the service protocol V5–V7, with hand-written protobuf codecs.
//!
//! Field numbers follow Restate's `protocol.proto` (see `PROTOCOL.md` §1.4). Unknown fields
//! are skipped on decode, as protobuf requires.

use bytes::{Buf, Bytes};

use super::header::MessageType;
use super::pb::{DecodeError, Field, Reader, Writer};

/// An HTTP-style header carried in commands.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Header {
    /// Header name.
    pub key: String,
    /// Header value.
    pub value: String,
}

/// A terminal failure: code, message and (V6+) metadata.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Failure {
    /// Failure code (HTTP-like, e.g. 500, 409).
    pub code: u32,
    /// Failure message.
    pub message: String,
    /// Key/value metadata (V6+).
    pub metadata: Vec<(String, String)>,
}

/// Success value or failure, as stored by output, promise and awakeable commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandResult {
    /// A successful value (raw bytes).
    Value(Bytes),
    /// A terminal failure.
    Failure(Failure),
}

/// Which notification a message or a handle refers to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NotificationId {
    /// Result of a completable command.
    Completion(u32),
    /// Unnamed signal (1 = cancel, 17+ = awakeables).
    Signal(u32),
    /// Named signal.
    SignalName(String),
}

/// The payload of a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotificationResult {
    /// Completed without a value (sleep, void state get, ...).
    Void,
    /// Completed with a value.
    Value(Bytes),
    /// Completed with a terminal failure.
    Failure(Failure),
    /// An invocation id (call and one-way call).
    InvocationId(String),
    /// State keys.
    StateKeys(Vec<Bytes>),
}

/// A notification (`0x8000..=0xFBFF`), decoded through the common template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// Which notification.
    pub id: NotificationId,
    /// Its result.
    pub result: NotificationResult,
}

/// `StartMessage`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StartMessage {
    /// Raw invocation id bytes.
    pub id: Bytes,
    /// Printable invocation id (`inv_…`).
    pub debug_id: String,
    /// Number of journal entries (commands and notifications) that follow.
    pub known_entries: u32,
    /// Eager state.
    pub state_map: Vec<(Bytes, Bytes)>,
    /// Whether `state_map` is partial.
    pub partial_state: bool,
    /// Virtual object / workflow key.
    pub key: String,
    /// Failed attempts since the last stored entry.
    pub retry_count_since_last_stored_entry: u32,
    /// Time since the last stored entry (ms).
    pub duration_since_last_stored_entry: u64,
    /// Random seed (V6+).
    pub random_seed: u64,
    /// Scope (V7).
    pub scope: Option<String>,
    /// Limit key (V7).
    pub limit_key: Option<String>,
    /// Idempotency key of the invocation (V7).
    pub idempotency_key: Option<String>,
}

/// How a future tree combines its children.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CombinatorType {
    /// Unknown (treated as first-completed).
    Unknown = 0,
    /// The first child to complete.
    FirstCompleted = 1,
    /// All children.
    AllCompleted = 2,
    /// The first child to succeed, or all failed.
    FirstSucceededOrAllFailed = 3,
    /// All succeeded, or the first to fail.
    AllSucceededOrFirstFailed = 4,
}

impl CombinatorType {
    fn from_wire(v: u64) -> CombinatorType {
        match v {
            1 => CombinatorType::FirstCompleted,
            2 => CombinatorType::AllCompleted,
            3 => CombinatorType::FirstSucceededOrAllFailed,
            4 => CombinatorType::AllSucceededOrFirstFailed,
            _ => CombinatorType::Unknown,
        }
    }
}

/// The wire `Future`: what an invocation waits on (V7 suspension, `AwaitingOn`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireFuture {
    /// Completion ids waited on directly.
    pub waiting_completions: Vec<u32>,
    /// Signal ids waited on directly.
    pub waiting_signals: Vec<u32>,
    /// Named signals waited on directly.
    pub waiting_named_signals: Vec<String>,
    /// Nested combinators.
    pub nested_futures: Vec<WireFuture>,
    /// How the children combine.
    pub combinator_type: CombinatorType,
}

impl WireFuture {
    fn encode(&self, w: &mut Writer<'_>) {
        w.packed_u32(1, &self.waiting_completions);
        w.packed_u32(2, &self.waiting_signals);
        for s in &self.waiting_named_signals {
            w.bytes_always(3, s.as_bytes());
        }
        for n in &self.nested_futures {
            w.message(4, |w| n.encode(w));
        }
        w.u64(5, self.combinator_type as u64);
    }

    fn decode(mut r: Reader<'_>, depth: u32) -> Result<WireFuture, DecodeError> {
        if depth > 64 {
            return Err(DecodeError("future tree too deep"));
        }
        let mut f = WireFuture {
            waiting_completions: Vec::new(),
            waiting_signals: Vec::new(),
            waiting_named_signals: Vec::new(),
            nested_futures: Vec::new(),
            combinator_type: CombinatorType::Unknown,
        };
        while let Some((n, v)) = r.next_field()? {
            match n {
                1 => v.push_u32s(&mut f.waiting_completions)?,
                2 => v.push_u32s(&mut f.waiting_signals)?,
                3 => f.waiting_named_signals.push(v.string()?),
                4 => f
                    .nested_futures
                    .push(WireFuture::decode(v.message()?, depth + 1)?),
                5 => f.combinator_type = CombinatorType::from_wire(v.varint()?),
                _ => {}
            }
        }
        Ok(f)
    }

    /// All completion ids, signal ids and signal names in the tree, sorted and de-duplicated.
    pub fn flatten(&self) -> (Vec<u32>, Vec<u32>, Vec<String>) {
        let mut c = Vec::new();
        let mut s = Vec::new();
        let mut n = Vec::new();
        fn walk(f: &WireFuture, c: &mut Vec<u32>, s: &mut Vec<u32>, n: &mut Vec<String>) {
            c.extend_from_slice(&f.waiting_completions);
            s.extend_from_slice(&f.waiting_signals);
            n.extend(f.waiting_named_signals.iter().cloned());
            for nested in &f.nested_futures {
                walk(nested, c, s, n);
            }
        }
        walk(self, &mut c, &mut s, &mut n);
        c.sort_unstable();
        c.dedup();
        s.sort_unstable();
        s.dedup();
        n.sort();
        n.dedup();
        (c, s, n)
    }
}

/// `ErrorMessage`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ErrorMessage {
    /// Error code.
    pub code: u32,
    /// Message.
    pub message: String,
    /// Stack trace / description.
    pub stacktrace: String,
    /// Index of the related command.
    pub related_command_index: Option<u32>,
    /// Name of the related command.
    pub related_command_name: Option<String>,
    /// Message type code of the related command.
    pub related_command_type: Option<u32>,
    /// Next retry delay override (ms).
    pub next_retry_delay: Option<u64>,
    /// V7 error behaviour (0 retry, 1 pause, 2 fail).
    pub behavior: u32,
}

/// Target of attach / get-invocation-output commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachTarget {
    /// An invocation id.
    InvocationId(String),
    /// An idempotent request.
    IdempotentRequest {
        /// Service.
        service_name: String,
        /// Virtual-object key, if any.
        service_key: Option<String>,
        /// Handler.
        handler_name: String,
        /// Idempotency key.
        idempotency_key: String,
        /// Scope (V7).
        scope: Option<String>,
    },
    /// A workflow run.
    Workflow {
        /// Workflow name.
        workflow_name: String,
        /// Workflow key.
        workflow_key: String,
        /// Scope (V7).
        scope: Option<String>,
    },
}

/// Signal addressed by a `SendSignalCommand`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignalRef {
    /// Unnamed signal index (1 = cancel).
    Idx(u32),
    /// Named signal.
    Name(String),
}

/// A journal command (`0x0400..=0x7FFF`).
///
/// Variant fields carry the names of the proto fields they encode (PROTOCOL.md §1.4).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[allow(missing_docs)]
pub enum Command {
    /// `InputCommandMessage`.
    Input {
        headers: Vec<Header>,
        value: Bytes,
        name: String,
    },
    /// `OutputCommandMessage`.
    Output {
        result: Option<CommandResult>,
        name: String,
    },
    /// `GetLazyStateCommandMessage`.
    GetLazyState {
        key: Bytes,
        result_completion_id: u32,
        name: String,
    },
    /// `SetStateCommandMessage`.
    SetState {
        key: Bytes,
        value: Bytes,
        name: String,
    },
    /// `ClearStateCommandMessage`.
    ClearState { key: Bytes, name: String },
    /// `ClearAllStateCommandMessage`.
    ClearAllState { name: String },
    /// `GetLazyStateKeysCommandMessage`.
    GetLazyStateKeys {
        result_completion_id: u32,
        name: String,
    },
    /// `GetEagerStateCommandMessage`; `value: None` is the `Void` result.
    GetEagerState {
        key: Bytes,
        value: Option<Bytes>,
        name: String,
    },
    /// `GetEagerStateKeysCommandMessage`.
    GetEagerStateKeys { keys: Vec<Bytes>, name: String },
    /// `GetPromiseCommandMessage`.
    GetPromise {
        key: String,
        result_completion_id: u32,
        name: String,
    },
    /// `PeekPromiseCommandMessage`.
    PeekPromise {
        key: String,
        result_completion_id: u32,
        name: String,
    },
    /// `CompletePromiseCommandMessage`.
    CompletePromise {
        key: String,
        completion: Option<CommandResult>,
        result_completion_id: u32,
        name: String,
    },
    /// `SleepCommandMessage`; `wake_up_time` in ms since the UNIX epoch.
    Sleep {
        wake_up_time: u64,
        result_completion_id: u32,
        name: String,
    },
    /// `CallCommandMessage`.
    Call {
        service_name: String,
        handler_name: String,
        parameter: Bytes,
        headers: Vec<Header>,
        key: String,
        idempotency_key: Option<String>,
        scope: Option<String>,
        limit_key: Option<String>,
        invocation_id_notification_idx: u32,
        result_completion_id: u32,
        name: String,
    },
    /// `OneWayCallCommandMessage`; `invoke_time` in ms since the epoch, 0 = now.
    OneWayCall {
        service_name: String,
        handler_name: String,
        parameter: Bytes,
        invoke_time: u64,
        headers: Vec<Header>,
        key: String,
        idempotency_key: Option<String>,
        scope: Option<String>,
        limit_key: Option<String>,
        invocation_id_notification_idx: u32,
        name: String,
    },
    /// `SendSignalCommandMessage`; `result: None` is `Void`.
    SendSignal {
        target_invocation_id: String,
        signal: SignalRef,
        result: Option<CommandResult>,
        entry_name: String,
    },
    /// `RunCommandMessage`.
    Run {
        result_completion_id: u32,
        name: String,
    },
    /// `AttachInvocationCommandMessage`.
    AttachInvocation {
        target: AttachTarget,
        result_completion_id: u32,
        name: String,
    },
    /// `GetInvocationOutputCommandMessage`.
    GetInvocationOutput {
        target: AttachTarget,
        result_completion_id: u32,
        name: String,
    },
    /// `CompleteAwakeableCommandMessage`.
    CompleteAwakeable {
        awakeable_id: String,
        result: CommandResult,
        name: String,
    },
}

/// Any message of the protocol. Variant fields carry the proto field names.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[allow(missing_docs)]
pub enum Message {
    /// `StartMessage`.
    Start(StartMessage),
    /// `SuspensionMessage` in the V5/V6 flat form.
    SuspensionV6 {
        completions: Vec<u32>,
        signals: Vec<u32>,
        named_signals: Vec<String>,
    },
    /// `SuspensionMessage` in the V7 tree form.
    SuspensionV7(WireFuture),
    /// `ErrorMessage`.
    Error(ErrorMessage),
    /// `EndMessage`.
    End,
    /// `CommandAckMessage`.
    CommandAck { command_index: u32 },
    /// `ProposeRunCompletionMessage`.
    ProposeRunCompletion {
        result_completion_id: u32,
        result: CommandResult,
    },
    /// `AwaitingOnMessage`.
    AwaitingOn {
        awaiting_on: WireFuture,
        executing_side_effects: bool,
    },
    /// `ProposeRunCompletionAckMessage`.
    ProposeRunCompletionAck { completion_id: u32 },
    /// A command.
    Command(Command),
    /// A notification, with its precise type.
    Notification(MessageType, Notification),
    /// A custom entry, kept opaque.
    Custom(u16, Bytes),
}

// ---- helpers -------------------------------------------------------------------------------

fn encode_value(w: &mut Writer<'_>, number: u32, content: &[u8]) {
    w.message(number, |w| w.bytes(1, content));
}

/// Where a `Value` message's content is in the buffer being read (empty at the message's
/// end when it has none).
fn value_range(f: &Field) -> Result<std::ops::Range<usize>, DecodeError> {
    let mut r = f.message()?;
    let end = f.range()?.end;
    let mut content = end..end;
    while let Some((n, v)) = r.next_field()? {
        if n == 1 {
            content = v.range()?;
        }
    }
    Ok(content)
}

fn decode_value(f: &Field) -> Result<Bytes, DecodeError> {
    f.slice(value_range(f)?)
}

fn encode_failure(w: &mut Writer<'_>, number: u32, f: &Failure) {
    w.message(number, |w| {
        w.u32(1, f.code);
        w.str(2, &f.message);
        for (k, v) in &f.metadata {
            w.message(3, |w| {
                w.str(1, k);
                w.str(2, v);
            });
        }
    });
}

fn decode_failure(f: &Field) -> Result<Failure, DecodeError> {
    let mut r = f.message()?;
    let mut out = Failure::default();
    while let Some((n, v)) = r.next_field()? {
        match n {
            1 => out.code = v.u32()?,
            2 => out.message = v.string()?,
            3 => {
                let (k, val) = decode_pair(&v)?;
                out.metadata.push((k, val));
            }
            _ => {}
        }
    }
    Ok(out)
}

fn decode_pair(f: &Field) -> Result<(String, String), DecodeError> {
    let mut r = f.message()?;
    let (mut k, mut v) = (String::new(), String::new());
    while let Some((n, x)) = r.next_field()? {
        match n {
            1 => k = x.string()?,
            2 => v = x.string()?,
            _ => {}
        }
    }
    Ok((k, v))
}

fn encode_headers(w: &mut Writer<'_>, number: u32, headers: &[Header]) {
    for h in headers {
        w.message(number, |w| {
            w.str(1, &h.key);
            w.str(2, &h.value);
        });
    }
}

fn decode_header(f: &Field) -> Result<Header, DecodeError> {
    let (key, value) = decode_pair(f)?;
    Ok(Header { key, value })
}

fn encode_state_keys(w: &mut Writer<'_>, number: u32, keys: &[Bytes]) {
    w.message(number, |w| {
        for k in keys {
            w.bytes_always(1, k);
        }
    });
}

fn decode_state_keys(f: &Field) -> Result<Vec<Bytes>, DecodeError> {
    let mut r = f.message()?;
    let mut keys = Vec::new();
    while let Some((n, v)) = r.next_field()? {
        if n == 1 {
            keys.push(v.bytes()?);
        }
    }
    Ok(keys)
}

fn encode_command_result(w: &mut Writer<'_>, value_no: u32, failure_no: u32, r: &CommandResult) {
    match r {
        CommandResult::Value(v) => encode_value(w, value_no, v),
        CommandResult::Failure(f) => encode_failure(w, failure_no, f),
    }
}

fn encode_attach_target(w: &mut Writer<'_>, t: &AttachTarget) {
    match t {
        AttachTarget::InvocationId(id) => w.bytes_always(1, id.as_bytes()),
        AttachTarget::IdempotentRequest {
            service_name,
            service_key,
            handler_name,
            idempotency_key,
            scope,
        } => w.message(3, |w| {
            w.str(1, service_name);
            w.opt_str(2, service_key);
            w.str(3, handler_name);
            w.str(4, idempotency_key);
            w.opt_str(5, scope);
        }),
        AttachTarget::Workflow {
            workflow_name,
            workflow_key,
            scope,
        } => w.message(4, |w| {
            w.str(1, workflow_name);
            w.str(2, workflow_key);
            w.opt_str(3, scope);
        }),
    }
}

fn decode_attach_target(number: u32, f: &Field) -> Result<AttachTarget, DecodeError> {
    if number == 1 {
        return Ok(AttachTarget::InvocationId(f.string()?));
    }
    let mut r = f.message()?;
    if number == 3 {
        let (mut service_name, mut handler_name, mut idempotency_key) =
            (String::new(), String::new(), String::new());
        let (mut service_key, mut scope) = (None, None);
        while let Some((n, v)) = r.next_field()? {
            match n {
                1 => service_name = v.string()?,
                2 => service_key = Some(v.string()?),
                3 => handler_name = v.string()?,
                4 => idempotency_key = v.string()?,
                5 => scope = Some(v.string()?),
                _ => {}
            }
        }
        Ok(AttachTarget::IdempotentRequest {
            service_name,
            service_key,
            handler_name,
            idempotency_key,
            scope,
        })
    } else {
        let (mut workflow_name, mut workflow_key, mut scope) = (String::new(), String::new(), None);
        while let Some((n, v)) = r.next_field()? {
            match n {
                1 => workflow_name = v.string()?,
                2 => workflow_key = v.string()?,
                3 => scope = Some(v.string()?),
                _ => {}
            }
        }
        Ok(AttachTarget::Workflow {
            workflow_name,
            workflow_key,
            scope,
        })
    }
}

// ---- commands ------------------------------------------------------------------------------

impl Command {
    /// The message type of this command.
    pub fn message_type(&self) -> MessageType {
        match self {
            Command::Input { .. } => MessageType::InputCommand,
            Command::Output { .. } => MessageType::OutputCommand,
            Command::GetLazyState { .. } => MessageType::GetLazyStateCommand,
            Command::SetState { .. } => MessageType::SetStateCommand,
            Command::ClearState { .. } => MessageType::ClearStateCommand,
            Command::ClearAllState { .. } => MessageType::ClearAllStateCommand,
            Command::GetLazyStateKeys { .. } => MessageType::GetLazyStateKeysCommand,
            Command::GetEagerState { .. } => MessageType::GetEagerStateCommand,
            Command::GetEagerStateKeys { .. } => MessageType::GetEagerStateKeysCommand,
            Command::GetPromise { .. } => MessageType::GetPromiseCommand,
            Command::PeekPromise { .. } => MessageType::PeekPromiseCommand,
            Command::CompletePromise { .. } => MessageType::CompletePromiseCommand,
            Command::Sleep { .. } => MessageType::SleepCommand,
            Command::Call { .. } => MessageType::CallCommand,
            Command::OneWayCall { .. } => MessageType::OneWayCallCommand,
            Command::SendSignal { .. } => MessageType::SendSignalCommand,
            Command::Run { .. } => MessageType::RunCommand,
            Command::AttachInvocation { .. } => MessageType::AttachInvocationCommand,
            Command::GetInvocationOutput { .. } => MessageType::GetInvocationOutputCommand,
            Command::CompleteAwakeable { .. } => MessageType::CompleteAwakeableCommand,
        }
    }

    /// The command's observability name (field 12).
    pub fn name(&self) -> &str {
        match self {
            Command::Input { name, .. }
            | Command::Output { name, .. }
            | Command::GetLazyState { name, .. }
            | Command::SetState { name, .. }
            | Command::ClearState { name, .. }
            | Command::ClearAllState { name }
            | Command::GetLazyStateKeys { name, .. }
            | Command::GetEagerState { name, .. }
            | Command::GetEagerStateKeys { name, .. }
            | Command::GetPromise { name, .. }
            | Command::PeekPromise { name, .. }
            | Command::CompletePromise { name, .. }
            | Command::Sleep { name, .. }
            | Command::Call { name, .. }
            | Command::OneWayCall { name, .. }
            | Command::Run { name, .. }
            | Command::AttachInvocation { name, .. }
            | Command::GetInvocationOutput { name, .. }
            | Command::CompleteAwakeable { name, .. } => name,
            Command::SendSignal { entry_name, .. } => entry_name,
        }
    }

    /// Encodes the payload (without frame header).
    pub fn encode(&self, buf: &mut Vec<u8>) {
        let w = &mut Writer { buf };
        match self {
            Command::Input {
                headers,
                value,
                name,
            } => {
                encode_headers(w, 1, headers);
                w.str(12, name);
                encode_value(w, 14, value);
            }
            Command::Output { result, name } => {
                w.str(12, name);
                if let Some(r) = result {
                    encode_command_result(w, 14, 15, r);
                }
            }
            Command::GetLazyState {
                key,
                result_completion_id,
                name,
            } => {
                w.bytes(1, key);
                w.u32(11, *result_completion_id);
                w.str(12, name);
            }
            Command::SetState { key, value, name } => {
                w.bytes(1, key);
                encode_value(w, 3, value);
                w.str(12, name);
            }
            Command::ClearState { key, name } => {
                w.bytes(1, key);
                w.str(12, name);
            }
            Command::ClearAllState { name } => w.str(12, name),
            Command::GetLazyStateKeys {
                result_completion_id,
                name,
            } => {
                w.u32(11, *result_completion_id);
                w.str(12, name);
            }
            Command::GetEagerState { key, value, name } => {
                w.bytes(1, key);
                w.str(12, name);
                match value {
                    None => w.message(13, |_| {}),
                    Some(v) => encode_value(w, 14, v),
                }
            }
            Command::GetEagerStateKeys { keys, name } => {
                w.str(12, name);
                encode_state_keys(w, 14, keys);
            }
            Command::GetPromise {
                key,
                result_completion_id,
                name,
            }
            | Command::PeekPromise {
                key,
                result_completion_id,
                name,
            } => {
                w.str(1, key);
                w.u32(11, *result_completion_id);
                w.str(12, name);
            }
            Command::CompletePromise {
                key,
                completion,
                result_completion_id,
                name,
            } => {
                w.str(1, key);
                if let Some(c) = completion {
                    encode_command_result(w, 2, 3, c);
                }
                w.u32(11, *result_completion_id);
                w.str(12, name);
            }
            Command::Sleep {
                wake_up_time,
                result_completion_id,
                name,
            } => {
                w.u64(1, *wake_up_time);
                w.u32(11, *result_completion_id);
                w.str(12, name);
            }
            Command::Call {
                service_name,
                handler_name,
                parameter,
                headers,
                key,
                idempotency_key,
                scope,
                limit_key,
                invocation_id_notification_idx,
                result_completion_id,
                name,
            } => {
                w.str(1, service_name);
                w.str(2, handler_name);
                w.bytes(3, parameter);
                encode_headers(w, 4, headers);
                w.str(5, key);
                w.opt_str(6, idempotency_key);
                w.opt_str(7, scope);
                w.opt_str(8, limit_key);
                w.u32(10, *invocation_id_notification_idx);
                w.u32(11, *result_completion_id);
                w.str(12, name);
            }
            Command::OneWayCall {
                service_name,
                handler_name,
                parameter,
                invoke_time,
                headers,
                key,
                idempotency_key,
                scope,
                limit_key,
                invocation_id_notification_idx,
                name,
            } => {
                w.str(1, service_name);
                w.str(2, handler_name);
                w.bytes(3, parameter);
                w.u64(4, *invoke_time);
                encode_headers(w, 5, headers);
                w.str(6, key);
                w.opt_str(7, idempotency_key);
                w.opt_str(8, scope);
                w.opt_str(9, limit_key);
                w.u32(10, *invocation_id_notification_idx);
                w.str(12, name);
            }
            Command::SendSignal {
                target_invocation_id,
                signal,
                result,
                entry_name,
            } => {
                w.str(1, target_invocation_id);
                match signal {
                    SignalRef::Idx(i) => w.u64_always(2, u64::from(*i)),
                    SignalRef::Name(n) => w.bytes_always(3, n.as_bytes()),
                }
                match result {
                    None => w.message(4, |_| {}),
                    Some(CommandResult::Value(v)) => encode_value(w, 5, v),
                    Some(CommandResult::Failure(f)) => encode_failure(w, 6, f),
                }
                w.str(12, entry_name);
            }
            Command::Run {
                result_completion_id,
                name,
            } => {
                w.u32(11, *result_completion_id);
                w.str(12, name);
            }
            Command::AttachInvocation {
                target,
                result_completion_id,
                name,
            }
            | Command::GetInvocationOutput {
                target,
                result_completion_id,
                name,
            } => {
                encode_attach_target(w, target);
                w.u32(11, *result_completion_id);
                w.str(12, name);
            }
            Command::CompleteAwakeable {
                awakeable_id,
                result,
                name,
            } => {
                w.str(1, awakeable_id);
                encode_command_result(w, 2, 3, result);
                w.str(12, name);
            }
        }
    }

    /// Decodes a command payload of the given type.
    pub fn decode(ty: MessageType, buf: &Bytes) -> Result<Command, DecodeError> {
        let mut r = Reader::new(buf);
        macro_rules! fields {
            (|$n:ident, $v:ident| $body:expr) => {
                while let Some(($n, $v)) = r.next_field()? {
                    $body
                }
            };
        }
        let mut name = String::new();
        let mut id = 0u32;
        Ok(match ty {
            MessageType::InputCommand => {
                let (mut headers, mut value) = (Vec::new(), Bytes::new());
                fields!(|n, v| match n {
                    1 => headers.push(decode_header(&v)?),
                    12 => name = v.string()?,
                    14 => value = decode_value(&v)?,
                    _ => {}
                });
                Command::Input {
                    headers,
                    value,
                    name,
                }
            }
            MessageType::OutputCommand => {
                let mut result = None;
                fields!(|n, v| match n {
                    12 => name = v.string()?,
                    14 => result = Some(CommandResult::Value(decode_value(&v)?)),
                    15 => result = Some(CommandResult::Failure(decode_failure(&v)?)),
                    _ => {}
                });
                Command::Output { result, name }
            }
            MessageType::GetLazyStateCommand | MessageType::ClearStateCommand => {
                let mut key = Bytes::new();
                fields!(|n, v| match n {
                    1 => key = v.bytes()?,
                    11 => id = v.u32()?,
                    12 => name = v.string()?,
                    _ => {}
                });
                if ty == MessageType::ClearStateCommand {
                    Command::ClearState { key, name }
                } else {
                    Command::GetLazyState {
                        key,
                        result_completion_id: id,
                        name,
                    }
                }
            }
            MessageType::SetStateCommand => {
                let (mut key, mut value) = (Bytes::new(), Bytes::new());
                fields!(|n, v| match n {
                    1 => key = v.bytes()?,
                    3 => value = decode_value(&v)?,
                    12 => name = v.string()?,
                    _ => {}
                });
                Command::SetState { key, value, name }
            }
            MessageType::ClearAllStateCommand
            | MessageType::GetLazyStateKeysCommand
            | MessageType::RunCommand => {
                fields!(|n, v| match n {
                    11 => id = v.u32()?,
                    12 => name = v.string()?,
                    _ => {}
                });
                match ty {
                    MessageType::ClearAllStateCommand => Command::ClearAllState { name },
                    MessageType::RunCommand => Command::Run {
                        result_completion_id: id,
                        name,
                    },
                    _ => Command::GetLazyStateKeys {
                        result_completion_id: id,
                        name,
                    },
                }
            }
            MessageType::GetEagerStateCommand => {
                let (mut key, mut value) = (Bytes::new(), None);
                fields!(|n, v| match n {
                    1 => key = v.bytes()?,
                    12 => name = v.string()?,
                    13 => value = None,
                    14 => value = Some(decode_value(&v)?),
                    _ => {}
                });
                Command::GetEagerState { key, value, name }
            }
            MessageType::GetEagerStateKeysCommand => {
                let mut keys = Vec::new();
                fields!(|n, v| match n {
                    12 => name = v.string()?,
                    14 => keys = decode_state_keys(&v)?,
                    _ => {}
                });
                Command::GetEagerStateKeys { keys, name }
            }
            MessageType::GetPromiseCommand | MessageType::PeekPromiseCommand => {
                let mut key = String::new();
                fields!(|n, v| match n {
                    1 => key = v.string()?,
                    11 => id = v.u32()?,
                    12 => name = v.string()?,
                    _ => {}
                });
                if ty == MessageType::GetPromiseCommand {
                    Command::GetPromise {
                        key,
                        result_completion_id: id,
                        name,
                    }
                } else {
                    Command::PeekPromise {
                        key,
                        result_completion_id: id,
                        name,
                    }
                }
            }
            MessageType::CompletePromiseCommand => {
                let (mut key, mut completion) = (String::new(), None);
                fields!(|n, v| match n {
                    1 => key = v.string()?,
                    2 => completion = Some(CommandResult::Value(decode_value(&v)?)),
                    3 => completion = Some(CommandResult::Failure(decode_failure(&v)?)),
                    11 => id = v.u32()?,
                    12 => name = v.string()?,
                    _ => {}
                });
                Command::CompletePromise {
                    key,
                    completion,
                    result_completion_id: id,
                    name,
                }
            }
            MessageType::SleepCommand => {
                let mut wake_up_time = 0;
                fields!(|n, v| match n {
                    1 => wake_up_time = v.varint()?,
                    11 => id = v.u32()?,
                    12 => name = v.string()?,
                    _ => {}
                });
                Command::Sleep {
                    wake_up_time,
                    result_completion_id: id,
                    name,
                }
            }
            MessageType::CallCommand | MessageType::OneWayCallCommand => {
                let one_way = ty == MessageType::OneWayCallCommand;
                let (mut service_name, mut handler_name, mut key) =
                    (String::new(), String::new(), String::new());
                let (mut parameter, mut headers, mut invoke_time) = (Bytes::new(), Vec::new(), 0);
                let (mut idempotency_key, mut scope, mut limit_key) = (None, None, None);
                let mut inv_idx = 0;
                fields!(|n, v| match (one_way, n) {
                    (_, 1) => service_name = v.string()?,
                    (_, 2) => handler_name = v.string()?,
                    (_, 3) => parameter = v.bytes()?,
                    (false, 4) | (true, 5) => headers.push(decode_header(&v)?),
                    (true, 4) => invoke_time = v.varint()?,
                    (false, 5) | (true, 6) => key = v.string()?,
                    (false, 6) | (true, 7) => idempotency_key = Some(v.string()?),
                    (false, 7) | (true, 8) => scope = Some(v.string()?),
                    (false, 8) | (true, 9) => limit_key = Some(v.string()?),
                    (_, 10) => inv_idx = v.u32()?,
                    (false, 11) => id = v.u32()?,
                    (_, 12) => name = v.string()?,
                    _ => {}
                });
                if one_way {
                    Command::OneWayCall {
                        service_name,
                        handler_name,
                        parameter,
                        invoke_time,
                        headers,
                        key,
                        idempotency_key,
                        scope,
                        limit_key,
                        invocation_id_notification_idx: inv_idx,
                        name,
                    }
                } else {
                    Command::Call {
                        service_name,
                        handler_name,
                        parameter,
                        headers,
                        key,
                        idempotency_key,
                        scope,
                        limit_key,
                        invocation_id_notification_idx: inv_idx,
                        result_completion_id: id,
                        name,
                    }
                }
            }
            MessageType::SendSignalCommand => {
                let (mut target, mut signal, mut result) = (String::new(), SignalRef::Idx(0), None);
                fields!(|n, v| match n {
                    1 => target = v.string()?,
                    2 => signal = SignalRef::Idx(v.u32()?),
                    3 => signal = SignalRef::Name(v.string()?),
                    4 => result = None,
                    5 => result = Some(CommandResult::Value(decode_value(&v)?)),
                    6 => result = Some(CommandResult::Failure(decode_failure(&v)?)),
                    12 => name = v.string()?,
                    _ => {}
                });
                Command::SendSignal {
                    target_invocation_id: target,
                    signal,
                    result,
                    entry_name: name,
                }
            }
            MessageType::AttachInvocationCommand | MessageType::GetInvocationOutputCommand => {
                let mut target = None;
                fields!(|n, v| match n {
                    1 | 3 | 4 => target = Some(decode_attach_target(n, &v)?),
                    11 => id = v.u32()?,
                    12 => name = v.string()?,
                    _ => {}
                });
                let target = target.ok_or(DecodeError("attach command without a target"))?;
                if ty == MessageType::AttachInvocationCommand {
                    Command::AttachInvocation {
                        target,
                        result_completion_id: id,
                        name,
                    }
                } else {
                    Command::GetInvocationOutput {
                        target,
                        result_completion_id: id,
                        name,
                    }
                }
            }
            MessageType::CompleteAwakeableCommand => {
                let (mut awakeable_id, mut result) = (String::new(), None);
                fields!(|n, v| match n {
                    1 => awakeable_id = v.string()?,
                    2 => result = Some(CommandResult::Value(decode_value(&v)?)),
                    3 => result = Some(CommandResult::Failure(decode_failure(&v)?)),
                    12 => name = v.string()?,
                    _ => {}
                });
                Command::CompleteAwakeable {
                    awakeable_id,
                    result: result.ok_or(DecodeError("complete awakeable without a result"))?,
                    name,
                }
            }
            _ => return Err(DecodeError("not a command message type")),
        })
    }
}

/// Whether a recorded `RunCommand` payload is `Run { result_completion_id: id, name }`,
/// without allocating. Replaying a run is the hottest path of a long journal.
///
/// It answers `true` only for payloads [`Command::decode`] accepts: anything it is unsure of
/// (field number 0 or beyond `u32`, field 11 or 12 with the wrong wire type) answers `false`,
/// and the caller then takes the full decode path, which reports the malformed frame.
pub(crate) fn run_command_is(payload: &[u8], id: u32, name: &str) -> bool {
    let (mut rec_id, mut rec_name): (u64, &[u8]) = (0, b"");
    let mut pos = 0;
    while pos < payload.len() {
        let Ok(key) = super::pb::read_varint(payload, &mut pos) else {
            return false;
        };
        let number = key >> 3;
        if number == 0 || number > u64::from(u32::MAX) {
            return false;
        }
        match (number, key & 7) {
            (12, 0) | (11, 2) => return false,
            (n, 0) => {
                let Ok(v) = super::pb::read_varint(payload, &mut pos) else {
                    return false;
                };
                if n == 11 {
                    rec_id = v;
                }
            }
            (n, 2) => {
                let Ok(len) = super::pb::read_varint(payload, &mut pos) else {
                    return false;
                };
                let Some(end) = pos
                    .checked_add(len as usize)
                    .filter(|e| *e <= payload.len())
                else {
                    return false;
                };
                if n == 12 {
                    rec_name = &payload[pos..end];
                }
                pos = end;
            }
            _ => return false,
        }
    }
    rec_id == u64::from(id) && rec_name == name.as_bytes()
}

// ---- notifications and control messages ---------------------------------------------------

impl Notification {
    /// Encodes the payload in the common notification template.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        let w = &mut Writer { buf };
        match &self.id {
            NotificationId::Completion(c) => w.u64_always(1, u64::from(*c)),
            NotificationId::Signal(s) => w.u64_always(2, u64::from(*s)),
            NotificationId::SignalName(n) => w.bytes_always(3, n.as_bytes()),
        }
        match &self.result {
            NotificationResult::Void => w.message(4, |_| {}),
            NotificationResult::Value(v) => encode_value(w, 5, v),
            NotificationResult::Failure(f) => encode_failure(w, 6, f),
            NotificationResult::InvocationId(id) => w.bytes_always(16, id.as_bytes()),
            NotificationResult::StateKeys(keys) => encode_state_keys(w, 17, keys),
        }
    }

    /// Decodes any notification payload through the common template.
    pub fn decode(buf: &Bytes) -> Result<Notification, DecodeError> {
        let (id, result) = Notification::decode_parts(buf)?;
        Ok(Notification {
            id,
            result: match result {
                Decoded::Result(r) => r,
                Decoded::Value(range) => NotificationResult::Value(buf.slice(range)),
            },
        })
    }

    /// [`Notification::decode`] of a payload the caller gives up: a value is that payload
    /// narrowed to the value's bytes, so no reference to the input buffer is taken or
    /// dropped (two atomic operations per notification of a replayed journal).
    pub fn decode_owned(mut buf: Bytes) -> Result<Notification, DecodeError> {
        let (id, result) = Notification::decode_parts(&buf)?;
        Ok(Notification {
            id,
            result: match result {
                Decoded::Result(r) => r,
                Decoded::Value(range) => {
                    buf.truncate(range.end);
                    buf.advance(range.start);
                    NotificationResult::Value(buf)
                }
            },
        })
    }

    fn decode_parts(buf: &Bytes) -> Result<(NotificationId, Decoded), DecodeError> {
        let mut r = Reader::new(buf);
        let (mut id, mut result) = (None, None);
        while let Some((n, v)) = r.next_field()? {
            match n {
                1 => id = Some(NotificationId::Completion(v.u32()?)),
                2 => id = Some(NotificationId::Signal(v.u32()?)),
                3 => id = Some(NotificationId::SignalName(v.string()?)),
                4 => result = Some(Decoded::Result(NotificationResult::Void)),
                5 => result = Some(Decoded::Value(value_range(&v)?)),
                6 => {
                    let f = decode_failure(&v)?;
                    result = Some(Decoded::Result(NotificationResult::Failure(f)));
                }
                16 => {
                    let id = v.string()?;
                    result = Some(Decoded::Result(NotificationResult::InvocationId(id)));
                }
                17 => {
                    let keys = decode_state_keys(&v)?;
                    result = Some(Decoded::Result(NotificationResult::StateKeys(keys)));
                }
                _ => {}
            }
        }
        Ok((
            id.ok_or(DecodeError("notification without an id"))?,
            result.ok_or(DecodeError("notification without a result"))?,
        ))
    }
}

/// A notification's result as read, a value still as its place in the payload.
enum Decoded {
    Result(NotificationResult),
    Value(std::ops::Range<usize>),
}

impl StartMessage {
    /// Encodes the payload.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        let w = &mut Writer { buf };
        w.bytes(1, &self.id);
        w.str(2, &self.debug_id);
        w.u32(3, self.known_entries);
        for (k, v) in &self.state_map {
            w.message(4, |w| {
                w.bytes(1, k);
                w.bytes(2, v);
            });
        }
        w.bool(5, self.partial_state);
        w.str(6, &self.key);
        w.u32(7, self.retry_count_since_last_stored_entry);
        w.u64(8, self.duration_since_last_stored_entry);
        w.u64(9, self.random_seed);
        w.opt_str(10, &self.scope);
        w.opt_str(11, &self.limit_key);
        w.opt_str(12, &self.idempotency_key);
    }

    /// Decodes the payload.
    pub fn decode(buf: &Bytes) -> Result<StartMessage, DecodeError> {
        let mut r = Reader::new(buf);
        let mut m = StartMessage::default();
        while let Some((n, v)) = r.next_field()? {
            match n {
                1 => m.id = v.bytes()?,
                2 => m.debug_id = v.string()?,
                3 => m.known_entries = v.u32()?,
                4 => {
                    let mut er = v.message()?;
                    let (mut k, mut val) = (Bytes::new(), Bytes::new());
                    while let Some((n, x)) = er.next_field()? {
                        match n {
                            1 => k = x.bytes()?,
                            2 => val = x.bytes()?,
                            _ => {}
                        }
                    }
                    m.state_map.push((k, val));
                }
                5 => m.partial_state = v.bool()?,
                6 => m.key = v.string()?,
                7 => m.retry_count_since_last_stored_entry = v.u32()?,
                8 => m.duration_since_last_stored_entry = v.varint()?,
                9 => m.random_seed = v.varint()?,
                10 => m.scope = Some(v.string()?),
                11 => m.limit_key = Some(v.string()?),
                12 => m.idempotency_key = Some(v.string()?),
                _ => {}
            }
        }
        Ok(m)
    }
}

impl ErrorMessage {
    fn encode(&self, w: &mut Writer<'_>) {
        w.u32(1, self.code);
        w.str(2, &self.message);
        w.str(3, &self.stacktrace);
        if let Some(i) = self.related_command_index {
            w.u64_always(4, u64::from(i));
        }
        w.opt_str(5, &self.related_command_name);
        if let Some(t) = self.related_command_type {
            w.u64_always(6, u64::from(t));
        }
        if let Some(d) = self.next_retry_delay {
            w.u64_always(8, d);
        }
        w.u32(9, self.behavior);
    }

    fn decode(buf: &Bytes) -> Result<ErrorMessage, DecodeError> {
        let mut r = Reader::new(buf);
        let mut m = ErrorMessage::default();
        while let Some((n, v)) = r.next_field()? {
            match n {
                1 => m.code = v.u32()?,
                2 => m.message = v.string()?,
                3 => m.stacktrace = v.string()?,
                4 => m.related_command_index = Some(v.u32()?),
                5 => m.related_command_name = Some(v.string()?),
                6 => m.related_command_type = Some(v.u32()?),
                8 => m.next_retry_delay = Some(v.varint()?),
                9 => m.behavior = v.u32()?,
                _ => {}
            }
        }
        Ok(m)
    }
}

impl Message {
    /// The message type.
    pub fn message_type(&self) -> MessageType {
        match self {
            Message::Start(_) => MessageType::Start,
            Message::SuspensionV6 { .. } | Message::SuspensionV7(_) => MessageType::Suspension,
            Message::Error(_) => MessageType::Error,
            Message::End => MessageType::End,
            Message::CommandAck { .. } => MessageType::CommandAck,
            Message::ProposeRunCompletion { .. } => MessageType::ProposeRunCompletion,
            Message::AwaitingOn { .. } => MessageType::AwaitingOn,
            Message::ProposeRunCompletionAck { .. } => MessageType::ProposeRunCompletionAck,
            Message::Command(c) => c.message_type(),
            Message::Notification(t, _) => *t,
            Message::Custom(c, _) => MessageType::Custom(*c),
        }
    }

    /// Encodes the payload (without frame header).
    pub fn encode_payload(&self, buf: &mut Vec<u8>) {
        match self {
            Message::Start(m) => m.encode(buf),
            Message::SuspensionV6 {
                completions,
                signals,
                named_signals,
            } => {
                let w = &mut Writer { buf };
                w.packed_u32(1, completions);
                w.packed_u32(2, signals);
                for n in named_signals {
                    w.bytes_always(3, n.as_bytes());
                }
            }
            Message::SuspensionV7(f) => Writer { buf }.message(4, |w| f.encode(w)),
            Message::Error(e) => e.encode(&mut Writer { buf }),
            Message::End => {}
            Message::CommandAck { command_index } => Writer { buf }.u32(1, *command_index),
            Message::ProposeRunCompletion {
                result_completion_id,
                result,
            } => {
                let w = &mut Writer { buf };
                w.u32(1, *result_completion_id);
                match result {
                    CommandResult::Value(v) => w.bytes_always(14, v),
                    CommandResult::Failure(f) => encode_failure(w, 15, f),
                }
            }
            Message::AwaitingOn {
                awaiting_on,
                executing_side_effects,
            } => {
                let w = &mut Writer { buf };
                w.message(1, |w| awaiting_on.encode(w));
                w.bool(2, *executing_side_effects);
            }
            Message::ProposeRunCompletionAck { completion_id } => {
                Writer { buf }.u32(1, *completion_id)
            }
            Message::Command(c) => c.encode(buf),
            Message::Notification(_, n) => n.encode(buf),
            Message::Custom(_, b) => buf.extend_from_slice(b),
        }
    }

    /// Decodes a payload of a known type. Suspensions decode in the V5/V6 form unless they
    /// carry the V7 tree (field 4).
    pub fn decode(ty: MessageType, buf: &Bytes) -> Result<Message, DecodeError> {
        Ok(match ty {
            MessageType::Start => Message::Start(StartMessage::decode(buf)?),
            MessageType::Suspension => {
                let mut r = Reader::new(buf);
                let (mut completions, mut signals, mut named) =
                    (Vec::new(), Vec::new(), Vec::new());
                let mut tree = None;
                while let Some((n, v)) = r.next_field()? {
                    match n {
                        1 => v.push_u32s(&mut completions)?,
                        2 => v.push_u32s(&mut signals)?,
                        3 => named.push(v.string()?),
                        4 => tree = Some(WireFuture::decode(v.message()?, 0)?),
                        _ => {}
                    }
                }
                match tree {
                    Some(t) => Message::SuspensionV7(t),
                    None => Message::SuspensionV6 {
                        completions,
                        signals,
                        named_signals: named,
                    },
                }
            }
            MessageType::Error => Message::Error(ErrorMessage::decode(buf)?),
            MessageType::End => Message::End,
            MessageType::CommandAck | MessageType::ProposeRunCompletionAck => {
                let mut r = Reader::new(buf);
                let mut id = 0;
                while let Some((n, v)) = r.next_field()? {
                    if n == 1 {
                        id = v.u32()?;
                    }
                }
                if ty == MessageType::CommandAck {
                    Message::CommandAck { command_index: id }
                } else {
                    Message::ProposeRunCompletionAck { completion_id: id }
                }
            }
            MessageType::ProposeRunCompletion => {
                let mut r = Reader::new(buf);
                let (mut id, mut result) = (0, None);
                while let Some((n, v)) = r.next_field()? {
                    match n {
                        1 => id = v.u32()?,
                        14 => result = Some(CommandResult::Value(v.bytes()?)),
                        15 => result = Some(CommandResult::Failure(decode_failure(&v)?)),
                        _ => {}
                    }
                }
                Message::ProposeRunCompletion {
                    result_completion_id: id,
                    result: result.ok_or(DecodeError("run proposal without a result"))?,
                }
            }
            MessageType::AwaitingOn => {
                let mut r = Reader::new(buf);
                let (mut f, mut exec) = (None, false);
                while let Some((n, v)) = r.next_field()? {
                    match n {
                        1 => f = Some(WireFuture::decode(v.message()?, 0)?),
                        2 => exec = v.bool()?,
                        _ => {}
                    }
                }
                Message::AwaitingOn {
                    awaiting_on: f.ok_or(DecodeError("awaiting-on without a future"))?,
                    executing_side_effects: exec,
                }
            }
            MessageType::Custom(c) => Message::Custom(c, buf.clone()),
            t if t.is_command() => Message::Command(Command::decode(t, buf)?),
            t => Message::Notification(t, Notification::decode(buf)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(m: &Message) -> Vec<u8> {
        let mut b = Vec::new();
        m.encode_payload(&mut b);
        b
    }

    #[test]
    fn protocol_md_examples() {
        let input = Message::Command(Command::Input {
            headers: vec![],
            value: Bytes::from_static(b"input"),
            name: String::new(),
        });
        assert_eq!(
            enc(&input),
            [0x72, 0x07, 0x0A, 0x05, b'i', b'n', b'p', b'u', b't']
        );
        let propose = Message::ProposeRunCompletion {
            result_completion_id: 1,
            result: CommandResult::Value(Bytes::from_static(b"123")),
        };
        assert_eq!(enc(&propose), [0x08, 0x01, 0x72, 0x03, b'1', b'2', b'3']);
        let v7 = Message::SuspensionV7(WireFuture {
            waiting_completions: vec![1],
            waiting_signals: vec![1],
            waiting_named_signals: vec![],
            nested_futures: vec![],
            combinator_type: CombinatorType::FirstCompleted,
        });
        assert_eq!(
            enc(&v7),
            [0x22, 0x08, 0x0A, 0x01, 0x01, 0x12, 0x01, 0x01, 0x28, 0x01]
        );
        let v6 = Message::SuspensionV6 {
            completions: vec![1],
            signals: vec![1],
            named_signals: vec![],
        };
        assert_eq!(enc(&v6), [0x0A, 0x01, 0x01, 0x12, 0x01, 0x01]);
    }

    #[test]
    fn commands_round_trip() {
        let cmds = vec![
            Command::Call {
                service_name: "S".into(),
                handler_name: "h".into(),
                parameter: Bytes::from_static(b"\"x\""),
                headers: vec![Header {
                    key: "a".into(),
                    value: "b".into(),
                }],
                key: "k".into(),
                idempotency_key: Some("i".into()),
                scope: None,
                limit_key: Some("l".into()),
                invocation_id_notification_idx: 3,
                result_completion_id: 4,
                name: "n".into(),
            },
            Command::OneWayCall {
                service_name: "S".into(),
                handler_name: "h".into(),
                parameter: Bytes::from_static(b"1"),
                invoke_time: 99,
                headers: vec![],
                key: String::new(),
                idempotency_key: None,
                scope: Some("s".into()),
                limit_key: None,
                invocation_id_notification_idx: 7,
                name: String::new(),
            },
            Command::SendSignal {
                target_invocation_id: "inv_1".into(),
                signal: SignalRef::Idx(1),
                result: None,
                entry_name: String::new(),
            },
            Command::GetEagerState {
                key: Bytes::from_static(b"k"),
                value: None,
                name: String::new(),
            },
            Command::GetEagerStateKeys {
                keys: vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")],
                name: String::new(),
            },
            Command::CompletePromise {
                key: "p".into(),
                completion: Some(CommandResult::Failure(Failure {
                    code: 500,
                    message: "m".into(),
                    metadata: vec![("k".into(), "v".into())],
                })),
                result_completion_id: 2,
                name: String::new(),
            },
            Command::AttachInvocation {
                target: AttachTarget::Workflow {
                    workflow_name: "W".into(),
                    workflow_key: "k".into(),
                    scope: None,
                },
                result_completion_id: 5,
                name: String::new(),
            },
        ];
        for c in cmds {
            let mut b = Vec::new();
            c.encode(&mut b);
            assert_eq!(
                Command::decode(c.message_type(), &Bytes::from(b)).unwrap(),
                c
            );
        }
    }

    #[test]
    fn notifications_round_trip() {
        for n in [
            Notification {
                id: NotificationId::Completion(3),
                result: NotificationResult::Void,
            },
            Notification {
                id: NotificationId::Signal(17),
                result: NotificationResult::Value(Bytes::from_static(b"v")),
            },
            Notification {
                id: NotificationId::SignalName("s".into()),
                result: NotificationResult::Failure(Failure::default()),
            },
            Notification {
                id: NotificationId::Completion(1),
                result: NotificationResult::InvocationId("inv_x".into()),
            },
            Notification {
                id: NotificationId::Completion(1),
                result: NotificationResult::StateKeys(vec![Bytes::from_static(b"a")]),
            },
            Notification {
                id: NotificationId::Completion(2),
                result: NotificationResult::Value(Bytes::new()),
            },
            Notification {
                id: NotificationId::Completion(1000),
                result: NotificationResult::Value(Bytes::from_static(b"998001")),
            },
        ] {
            let mut b = Vec::new();
            n.encode(&mut b);
            let b = Bytes::from(b);
            assert_eq!(Notification::decode(&b).unwrap(), n);
            assert_eq!(Notification::decode_owned(b.clone()).unwrap(), n);
            // The same in the middle of a larger buffer, with fields after the value (the
            // owned value must be narrowed to its own bytes, not run to the buffer's end).
            let mut framed = b"head".to_vec();
            framed.extend_from_slice(&b);
            framed.extend_from_slice(&[0x38, 0x05]); // unknown field 7 = 5
            framed.extend_from_slice(b"tail");
            let framed = Bytes::from(framed);
            let inner = framed.slice(4..framed.len() - 4);
            assert_eq!(Notification::decode_owned(inner.clone()).unwrap(), n);
            assert_eq!(Notification::decode(&inner).unwrap(), n);
        }
        // A value message without content is an empty value, as from the full decoder.
        let b = Bytes::from_static(&[0x08, 0x01, 0x2A, 0x00]);
        let owned = Notification::decode_owned(b.clone()).unwrap();
        assert_eq!(owned, Notification::decode(&b).unwrap());
        assert_eq!(owned.result, NotificationResult::Value(Bytes::new()));
    }

    #[test]
    fn the_run_fast_path_accepts_only_what_the_full_decoder_accepts() {
        // Replay compares recorded runs without decoding them. Whatever it accepts must be a
        // well-formed `Run { 7, "step" }`: a malformed recorded frame has to reach the full
        // decoder, which reports it, instead of being taken for the run the handler asked for.
        let good = {
            let mut b = Vec::new();
            Command::Run {
                result_completion_id: 7,
                name: "step".into(),
            }
            .encode(&mut b);
            b
        };
        let mut cases: Vec<(&str, Vec<u8>)> = vec![
            ("well formed", good.clone()),
            ("unknown varint field", [&good[..], &[0x18, 0x05]].concat()),
            (
                "unknown length field",
                [&good[..], &[0x22, 0x01, b'x']].concat(),
            ),
            ("field 0", [&good[..], &[0x00, 0x01]].concat()),
            ("field number beyond u32", {
                let mut b = good.clone();
                super::super::pb::put_varint(&mut b, (1u64 << 35) << 3);
                b.push(0x01);
                b
            }),
            (
                "id as a length field",
                [&[0x5A, 0x01, 0x07][..], &good[..]].concat(),
            ),
            ("name as a varint", [&good[..], &[0x60, 0x01]].concat()),
            ("truncated", good[..good.len() - 1].to_vec()),
            ("id beyond u32", {
                let mut b = vec![0x58];
                super::super::pb::put_varint(&mut b, (1u64 << 32) | 7);
                b.extend_from_slice(&good[2..]);
                b
            }),
            ("fixed32 field", [&good[..], &[0x1D, 1, 2, 3, 4]].concat()),
        ];
        cases.push(("name not UTF-8", vec![0x58, 0x07, 0x62, 0x02, 0xC3, 0x28]));
        for (what, payload) in cases {
            let fast = run_command_is(&payload, 7, "step");
            let full = Command::decode(MessageType::RunCommand, &Bytes::from(payload.clone()));
            let full_is_run = matches!(
                &full,
                Ok(Command::Run { result_completion_id: 7, name }) if name == "step"
            );
            if fast {
                assert!(
                    full_is_run,
                    "{what}: fast path accepted {payload:02x?}, decoder gave {full:?}"
                );
            }
        }
        assert!(run_command_is(&good, 7, "step"));
        assert!(!run_command_is(&good, 8, "step"));
        assert!(!run_command_is(&good, 7, "steps"));
    }
}
