//! The invocation state machine.
//!
//! ```text
//!  WaitingStart ──Start──▶ WaitingReplayEntries ──(known_entries received)──▶ Replaying
//!  Replaying ──(a sys_* consumes the last recorded command)──▶ Processing
//!  Replaying | Processing ──(End | Suspension | any error)──▶ Closed
//!  WaitingStart | WaitingReplayEntries ──(input closed, bad frame)──▶ Closed (error 571)
//! ```
//!
//! Every edge is in [`Vm::on_frame`] (input), [`Vm::journal_command`] (replay → processing)
//! and [`Vm::close_with`] / [`Vm::fail`] (closing). The first error poisons the machine: it is
//! written as an `ErrorMessage` and every later call returns it.
//!
//! The VM is synchronous and does no I/O: the host feeds input bytes, drains output bytes,
//! executes run closures, and passes in the clock where a command needs it.

mod futures;
mod notifications;
mod replay;

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;

pub use self::futures::{Combinator, Handle, Outcome, CANCEL_HANDLE};
pub use self::notifications::Value;

use self::futures::{empty_wire, push_leaf, sort_wire, HandleKind, Node, NodeKind};
use self::notifications::{Enqueued, Notifications, SlotState};
use crate::error::{codes, Error, RelatedCommand};
use crate::protocol::{
    encode_frame, AttachTarget, CombinatorType, Command, CommandResult, Decoder, ErrorMessage,
    Failure, Header, Message, MessageType, NotificationId, RawFrame, SignalRef, StartMessage,
    Version, WireFuture, DEFAULT_MAX_FRAME_LEN, REQUESTED_ACK,
};
use crate::retry::{RetryDecision, RetryPolicy};
use crate::util::{base64url_decode, base64url_encode, sha256};

const CANCEL_SIGNAL_ID: u32 = 1;
const FIRST_AWAKEABLE_SIGNAL_ID: u32 = 17;
const AWAKEABLE_PREFIX: &str = "sign_1";
const LEGACY_AWAKEABLE_PREFIX: &str = "prom_1";

/// Splits an awakeable id (`sign_1…`) into the raw invocation id it belongs to and its
/// signal index. Hosts that play the runtime's role (the embedded engine) use it to route
/// a completion to its invocation. `None` if `id` is not an awakeable id.
pub fn parse_awakeable_id(id: &str) -> Option<(Vec<u8>, u32)> {
    let mut raw = base64url_decode(id.strip_prefix(AWAKEABLE_PREFIX)?)?;
    if raw.len() <= 4 {
        return None;
    }
    let tail = raw.split_off(raw.len() - 4);
    let signal = u32::from_be_bytes(tail.try_into().ok()?);
    Some((raw, signal))
}

/// What the V7 `ErrorMessage.behavior` says for journal mismatches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ErrorBehavior {
    /// The runtime retries the invocation with its retry policy.
    #[default]
    Retry = 0,
    /// The runtime pauses the invocation.
    Pause = 1,
    /// The runtime fails the invocation.
    Fail = 2,
}

/// When the VM sends the optional V7 `AwaitingOnMessage` hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AwaitingOnPolicy {
    /// Whenever the handler waits for input.
    Always,
    /// Whenever the handler waits for input and no run is executing.
    #[default]
    UnlessRunExecuting,
    /// Never.
    Never,
}

/// Options of a [`Vm`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct VmOptions {
    /// Every await also waits for the cancel signal and reports it (default on).
    pub implicit_cancellation: bool,
    /// On cancellation, cancel child calls still running (default on).
    pub cancel_child_calls: bool,
    /// On cancellation, cancel one-way calls too (default off).
    pub cancel_child_sends: bool,
    /// Compare payloads on replay (default on).
    pub payload_checks: bool,
    /// `behavior` of the journal-mismatch error on V7.
    pub journal_mismatch_behavior: ErrorBehavior,
    /// When to send `AwaitingOnMessage` (V7).
    pub awaiting_on: AwaitingOnPolicy,
    /// Largest accepted frame payload, in bytes.
    pub max_frame_len: u32,
}

impl Default for VmOptions {
    fn default() -> Self {
        VmOptions {
            implicit_cancellation: true,
            cancel_child_calls: true,
            cancel_child_sends: false,
            payload_checks: true,
            journal_mismatch_behavior: ErrorBehavior::Retry,
            awaiting_on: AwaitingOnPolicy::UnlessRunExecuting,
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
        }
    }
}

/// Where the VM is in its life (see the module diagram).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No `StartMessage` yet.
    WaitingStart,
    /// Receiving the recorded journal.
    WaitingReplayEntries,
    /// The handler runs and its commands are checked against the journal.
    Replaying,
    /// The handler runs and its commands are new.
    Processing,
    /// Ended, suspended or failed.
    Closed,
}

/// The invocation's input, as returned by [`Vm::sys_input`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// Printable invocation id (`inv_…`).
    pub invocation_id: String,
    /// Raw invocation id bytes.
    pub raw_invocation_id: Bytes,
    /// Virtual object / workflow key ("" for services).
    pub key: String,
    /// Headers of the original request.
    pub headers: Vec<Header>,
    /// The input payload.
    pub input: Bytes,
    /// Seed for deterministic randomness.
    pub random_seed: u64,
    /// Scope (V7).
    pub scope: Option<String>,
    /// Limit key (V7).
    pub limit_key: Option<String>,
    /// Idempotency key of the invocation (V7).
    pub idempotency_key: Option<String>,
}

/// Returned by [`Vm::sys_run`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunHandle {
    /// The handle of the run's result.
    pub handle: Handle,
    /// `true` when the journal already holds the result: the closure must not run.
    pub replayed: bool,
}

/// Returned by [`Vm::sys_call`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallHandles {
    /// Completes with the callee's invocation id.
    pub invocation_id: Handle,
    /// Completes with the callee's result.
    pub result: Handle,
}

/// Returned by [`Vm::sys_awakeable`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Awakeable {
    /// The id to hand to whoever completes it (`sign_1…`).
    pub id: String,
    /// Completes when the awakeable is resolved or rejected.
    pub handle: Handle,
}

/// The callee of a call or a one-way call.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Target {
    /// Service name.
    pub service: String,
    /// Handler name.
    pub handler: String,
    /// Virtual object / workflow key.
    pub key: Option<String>,
    /// Idempotency key (must not be empty).
    pub idempotency_key: Option<String>,
    /// Headers passed to the callee.
    pub headers: Vec<Header>,
    /// Scope (V7).
    pub scope: Option<String>,
    /// Limit key (V7).
    pub limit_key: Option<String>,
}

/// How a run closure ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RunExit {
    /// Returned a value.
    Success(Bytes),
    /// Failed terminally: the failure is journaled and never retried.
    TerminalFailure(Failure),
    /// Failed with a retryable error: the retry policy decides.
    RetryableFailure {
        /// The error (its code and message are used if retries are exhausted).
        error: Error,
        /// How long this attempt of the closure took (ms).
        attempt_duration_ms: u64,
    },
}

/// Result of [`Vm::do_await`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwaitOutcome {
    /// The awaited handle completed.
    Ready,
    /// The invocation was cancelled: surface a terminal error 409. Reported once.
    Cancelled,
    /// Nothing can progress now. Feed input (if `waiting_input`) or finish a run and
    /// propose its result (if `waiting_runs`), then call again.
    Pending {
        /// More input may arrive.
        waiting_input: bool,
        /// A run is executing.
        waiting_runs: bool,
    },
    /// The VM wrote a `SuspensionMessage` and closed; unwind the handler.
    Suspended,
}

/// Result of [`Vm::select_next`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectOutcome {
    /// This child completed; children come out in the order they completed.
    Selected(Handle),
    /// Every child was handed out already.
    Exhausted,
    /// The invocation was cancelled (see [`AwaitOutcome::Cancelled`]).
    Cancelled,
    /// See [`AwaitOutcome::Pending`].
    Pending {
        /// More input may arrive.
        waiting_input: bool,
        /// A run is executing.
        waiting_runs: bool,
    },
    /// See [`AwaitOutcome::Suspended`].
    Suspended,
}

#[derive(Debug)]
struct RunInfo {
    command_index: u32,
    name: String,
    executing: bool,
}

#[derive(Debug, Default)]
struct EagerState {
    /// `None` marks a key known to be absent.
    map: HashMap<Bytes, Option<Bytes>>,
    complete: bool,
}

/// The durable-execution VM for one invocation attempt.
#[derive(Debug)]
pub struct Vm {
    version: Version,
    options: VmOptions,
    decoder: Decoder,
    out: Vec<u8>,
    state: State,
    input_closed: bool,
    failure: Option<Error>,
    start: StartMessage,
    received_entries: u32,
    recorded_commands: u32,
    replay: VecDeque<RawFrame>,
    /// Index of the last command consumed or written (Input = 0); -1 before any.
    command_index: i64,
    next_completion_id: u32,
    next_signal_id: u32,
    /// No new entry written yet in this attempt: the retry counters from `StartMessage`
    /// still apply to the next one.
    fresh: bool,
    notes: Notifications,
    handles: Vec<HandleKind>,
    nodes: Vec<Node>,
    runs: HashMap<u32, RunInfo>,
    executing_runs: usize,
    /// Child calls to cancel on cancellation: (invocation-id handle, result handle).
    children: Vec<(Handle, Option<Handle>)>,
    eager: EagerState,
    last_awaiting_on: Option<Handle>,
}

type VmResult<T> = Result<T, Error>;

impl Vm {
    /// Creates a VM for a request with the given `content-type` header value.
    pub fn new(content_type: &str, options: VmOptions) -> VmResult<Vm> {
        let version = Version::from_content_type(content_type)?;
        Ok(Vm::with_version(version, options))
    }

    /// Creates a VM for an already negotiated version.
    pub fn with_version(version: Version, options: VmOptions) -> Vm {
        Vm {
            version,
            decoder: Decoder::new(options.max_frame_len),
            options,
            out: Vec::new(),
            state: State::WaitingStart,
            input_closed: false,
            failure: None,
            start: StartMessage::default(),
            received_entries: 0,
            recorded_commands: 0,
            replay: VecDeque::new(),
            command_index: -1,
            next_completion_id: 1,
            next_signal_id: FIRST_AWAKEABLE_SIGNAL_ID,
            fresh: true,
            notes: Notifications::default(),
            handles: vec![HandleKind::Leaf(NotificationId::Signal(CANCEL_SIGNAL_ID))],
            nodes: Vec::new(),
            runs: HashMap::new(),
            executing_runs: 0,
            children: Vec::new(),
            eager: EagerState::default(),
            last_awaiting_on: None,
        }
    }

    /// The negotiated protocol version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The `content-type` of the response.
    pub fn response_content_type(&self) -> &'static str {
        self.version.content_type()
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether the handler is re-executing recorded commands.
    pub fn is_replaying(&self) -> bool {
        self.state == State::Replaying
    }

    /// The error that closed the VM, if any.
    pub fn last_error(&self) -> Option<&Error> {
        self.failure.as_ref()
    }

    /// Index of the last command consumed or written (the input command is 0), -1 before any.
    pub fn last_command_index(&self) -> i64 {
        self.command_index
    }

    /// Whether the handler can start: the whole recorded journal has been received.
    /// Returns the error if the VM failed before that.
    pub fn is_ready_to_execute(&self) -> VmResult<bool> {
        match self.state {
            State::Replaying | State::Processing => Ok(true),
            State::Closed => Err(self.closed_error()),
            State::WaitingStart | State::WaitingReplayEntries => Ok(false),
        }
    }

    // ---- input and output ------------------------------------------------------------------

    /// Feeds bytes received from the runtime; any chunking is fine.
    pub fn notify_input(&mut self, chunk: &[u8]) {
        if self.state == State::Closed {
            return;
        }
        self.decoder.push(chunk);
        loop {
            match self.decoder.next_frame() {
                Ok(Some(frame)) => {
                    if let Err(e) = self.on_frame(frame) {
                        self.fail(e);
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    self.fail(e);
                    return;
                }
            }
        }
    }

    /// The runtime closed its side of the stream.
    pub fn notify_input_closed(&mut self) {
        if self.state == State::Closed || self.input_closed {
            return;
        }
        self.input_closed = true;
        if self.decoder.has_partial_frame() {
            self.fail(Error::protocol("the input stream ended inside a frame"));
        } else if self.state == State::WaitingStart {
            self.fail(Error::protocol(
                "the input stream ended before a StartMessage arrived",
            ));
        } else if self.state == State::WaitingReplayEntries {
            let msg = format!(
                "the input stream ended before the journal was complete: received {} of {} entries",
                self.received_entries, self.start.known_entries
            );
            self.fail(Error::protocol(msg));
        }
    }

    /// The handler failed with a retryable error: writes an `ErrorMessage` and closes.
    pub fn notify_error(&mut self, error: Error) {
        self.fail(error);
    }

    /// Takes everything written so far. Empty when there is nothing new.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Whether output is waiting to be taken.
    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    fn write(&mut self, msg: &Message, flags: u16) {
        encode_frame(&mut self.out, msg, flags);
    }

    fn on_frame(&mut self, frame: RawFrame) -> VmResult<()> {
        let ty = frame.ty;
        match self.state {
            State::WaitingStart => {
                if ty != MessageType::Start {
                    return Err(Error::protocol(format!(
                        "expected a StartMessage as the first frame, got {ty:?}"
                    )));
                }
                let Message::Start(start) = frame.decode()? else {
                    unreachable!()
                };
                if start.known_entries == 0 {
                    return Err(Error::new(
                        codes::INTERNAL,
                        "StartMessage.known_entries is 0, expected >= 1",
                    ));
                }
                self.eager.complete = !start.partial_state;
                for (k, v) in &start.state_map {
                    self.eager.map.insert(k.clone(), Some(v.clone()));
                }
                self.start = start;
                self.state = State::WaitingReplayEntries;
                Ok(())
            }
            State::WaitingReplayEntries => {
                if ty.is_command() {
                    if self.received_entries == 0 && ty != MessageType::InputCommand {
                        return Err(Error::protocol(format!(
                            "the journal must start with an InputCommand, got {ty:?}"
                        )));
                    }
                    self.replay.push_back(frame);
                    self.recorded_commands += 1;
                } else if ty.is_notification() {
                    self.on_notification(&frame)?;
                } else if !matches!(ty, MessageType::Custom(_)) {
                    return Err(Error::protocol(format!(
                        "expected journal entries while receiving the journal, got {ty:?}"
                    )));
                }
                self.received_entries += 1;
                if self.received_entries == self.start.known_entries {
                    if self.replay.is_empty() {
                        return Err(Error::protocol("the journal holds no InputCommand"));
                    }
                    self.state = State::Replaying;
                }
                Ok(())
            }
            State::Replaying | State::Processing => match ty {
                t if t.is_notification() => self.on_notification(&frame),
                MessageType::ProposeRunCompletionAck => {
                    let Message::ProposeRunCompletionAck { completion_id } = frame.decode()? else {
                        unreachable!()
                    };
                    if !self.notes.ack(completion_id) {
                        return Err(Error::protocol(format!(
                            "ProposeRunCompletionAck for completion {completion_id}, which has no pending proposal"
                        )));
                    }
                    Ok(())
                }
                MessageType::CommandAck | MessageType::Custom(_) => Ok(()),
                t if t.is_command() => Err(Error::protocol(format!(
                    "unexpected command {t:?} after the journal was replayed"
                ))),
                t => Err(Error::protocol(format!(
                    "unexpected message {t:?} from the runtime"
                ))),
            },
            State::Closed => Ok(()),
        }
    }

    fn on_notification(&mut self, frame: &RawFrame) -> VmResult<()> {
        let Message::Notification(_, n) = frame.decode()? else {
            return Err(Error::protocol("malformed notification"));
        };
        let limit = match n.id {
            NotificationId::Completion(_) => self
                .next_completion_id
                .max(self.recorded_commands.saturating_mul(2)),
            _ => self.next_signal_id,
        };
        let id = n.id.clone();
        match self.notes.enqueue(n.id, n.result, limit) {
            Enqueued::Ok => Ok(()),
            Enqueued::Duplicate if !matches!(id, NotificationId::Completion(_)) => Ok(()),
            Enqueued::Duplicate => Err(Error::protocol(format!(
                "notification {id:?} received twice"
            ))),
            Enqueued::IdOutOfRange => Err(Error::protocol(format!(
                "notification {id:?} refers to an id never allocated"
            ))),
        }
    }

    // ---- closing -----------------------------------------------------------------------------

    fn closed_error(&self) -> Error {
        self.failure.clone().unwrap_or_else(Error::closed)
    }

    /// Writes `error` as an `ErrorMessage` and closes; returns the error for `?`.
    fn fail(&mut self, error: Error) -> Error {
        self.fail_with(error, None)
    }

    fn fail_with(&mut self, error: Error, behavior: Option<ErrorBehavior>) -> Error {
        if self.state == State::Closed {
            return self.closed_error();
        }
        let related = error.related_command.as_ref();
        let behavior = match behavior {
            _ if self.version < Version::V7 => ErrorBehavior::Retry,
            Some(b) => b,
            None if error.is_journal_mismatch() => self.options.journal_mismatch_behavior,
            None => ErrorBehavior::Retry,
        } as u32;
        let msg = ErrorMessage {
            code: u32::from(error.code),
            message: error.message.clone(),
            stacktrace: error.stacktrace.clone(),
            related_command_index: related.map(|r| r.index),
            related_command_name: related.and_then(|r| r.name.clone()),
            related_command_type: related.map(|r| u32::from(r.ty.code())),
            next_retry_delay: error.next_retry_delay_ms,
            behavior,
        };
        self.write(&Message::Error(msg), 0);
        self.close_with(Some(error.clone()));
        error
    }

    fn close_with(&mut self, failure: Option<Error>) {
        self.state = State::Closed;
        self.failure = failure;
        self.replay.clear();
    }

    fn check_running(&self) -> VmResult<()> {
        match self.state {
            State::Replaying | State::Processing => Ok(()),
            State::Closed => Err(self.closed_error()),
            _ => Err(Error::new(
                codes::INTERNAL,
                "the handler cannot run before the whole journal is received",
            )),
        }
    }

    // ---- the journal -------------------------------------------------------------------------

    fn related(&self, index: u32, ty: MessageType, name: &str) -> RelatedCommand {
        RelatedCommand {
            index,
            ty,
            name: (!name.is_empty()).then(|| name.to_owned()),
        }
    }

    /// Consumes the next recorded command (replay) or writes a new one (processing).
    /// Returns the recorded command when replaying.
    fn journal_command(&mut self, cmd: Command) -> VmResult<Option<Command>> {
        let payload_checks = self.options.payload_checks;
        self.journal_command_with(cmd, |rec, att| {
            rec.message_type() == att.message_type()
                && replay::commands_match(rec, att, payload_checks)
        })
    }

    fn journal_command_with(
        &mut self,
        cmd: Command,
        matches: impl FnOnce(&Command, &Command) -> bool,
    ) -> VmResult<Option<Command>> {
        self.check_running()?;
        let index = (self.command_index + 1) as u32;
        if self.state == State::Replaying {
            let frame = self
                .replay
                .pop_front()
                .expect("replaying implies recorded commands");
            let recorded = match Command::decode(frame.ty, &frame.payload) {
                Ok(c) => c,
                Err(e) => {
                    let err = Error::protocol(format!(
                        "cannot decode recorded command {index} ({:?}): {e}",
                        frame.ty
                    ));
                    return Err(self.fail(err));
                }
            };
            // `matches` decides alone: a state get accepts an eager or a lazy recording.
            if !matches(&recorded, &cmd) {
                let err = Error::new(
                    codes::JOURNAL_MISMATCH,
                    format!(
                        "journal mismatch at command index {index}: the journal recorded {} but the handler now attempts {}; the handler code is not deterministic or changed since the entry was recorded",
                        replay::describe(&recorded),
                        replay::describe(&cmd)
                    ),
                )
                .with_related(self.related(index, recorded.message_type(), recorded.name()));
                return Err(self.fail(err));
            }
            self.command_index = index as i64;
            if self.replay.is_empty() {
                self.state = State::Processing;
            }
            Ok(Some(recorded))
        } else {
            self.write(&Message::Command(cmd), 0);
            self.command_index = index as i64;
            self.fresh = false;
            Ok(None)
        }
    }

    fn alloc_completion(&mut self) -> u32 {
        let id = self.next_completion_id;
        self.next_completion_id += 1;
        id
    }

    fn leaf(&mut self, id: NotificationId) -> Handle {
        let h = Handle(self.handles.len() as u32);
        self.handles.push(HandleKind::Leaf(id));
        h
    }

    fn completion_leaf(&mut self, id: u32) -> Handle {
        self.leaf(NotificationId::Completion(id))
    }

    // Feature and argument checks fail the attempt like any other VM error (PROTOCOL.md §1.11):
    // the ErrorMessage is written and the machine is poisoned.
    fn require_v7(&mut self, what: &str) -> VmResult<()> {
        if self.version < Version::V7 {
            let e = Error::new(
                codes::UNSUPPORTED_FEATURE,
                format!(
                    "{what} needs service protocol V7, but {:?} was negotiated",
                    self.version
                ),
            );
            return Err(self.fail(e));
        }
        Ok(())
    }

    fn check_failure(&mut self, f: &Failure) -> VmResult<()> {
        if !f.metadata.is_empty() && self.version < Version::V6 {
            let e = Error::new(
                codes::UNSUPPORTED_FEATURE,
                "failure metadata needs service protocol V6 or later",
            );
            return Err(self.fail(e));
        }
        Ok(())
    }

    fn check_result(&mut self, r: &CommandResult) -> VmResult<()> {
        match r {
            CommandResult::Failure(f) => self.check_failure(f),
            CommandResult::Value(_) => Ok(()),
        }
    }

    // ---- input, output, end ------------------------------------------------------------------

    /// Replays the input command and returns the invocation's input.
    pub fn sys_input(&mut self) -> VmResult<Input> {
        let attempted = Command::Input {
            headers: vec![],
            value: Bytes::new(),
            name: String::new(),
        };
        let recorded = self.journal_command(attempted)?;
        let Some(Command::Input { headers, value, .. }) = recorded else {
            return Err(self.fail(Error::protocol("the input command was already consumed")));
        };
        let random_seed = if self.version >= Version::V6 {
            self.start.random_seed
        } else {
            let digest = sha256(&self.start.id);
            u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
        };
        Ok(Input {
            invocation_id: self.start.debug_id.clone(),
            raw_invocation_id: self.start.id.clone(),
            key: self.start.key.clone(),
            headers,
            input: value,
            random_seed,
            scope: self.start.scope.clone(),
            limit_key: self.start.limit_key.clone(),
            idempotency_key: self.start.idempotency_key.clone(),
        })
    }

    /// Journals the handler's result.
    pub fn sys_write_output(&mut self, result: CommandResult) -> VmResult<()> {
        self.check_running()?;
        self.check_result(&result)?;
        self.journal_command(Command::Output {
            result: Some(result),
            name: String::new(),
        })?;
        Ok(())
    }

    /// Ends the invocation: writes `EndMessage` and closes. Harmless when already closed.
    pub fn sys_end(&mut self) -> VmResult<()> {
        match self.state {
            State::Closed => Ok(()),
            State::Processing => {
                self.write(&Message::End, 0);
                self.close_with(None);
                Ok(())
            }
            State::Replaying => {
                let index = (self.command_index + 1) as u32;
                let next = self
                    .replay
                    .front()
                    .map(|f| (f.ty, Command::decode(f.ty, &f.payload)));
                let (ty, name) = match &next {
                    Some((ty, Ok(c))) => (Some(*ty), c.name().to_owned()),
                    Some((ty, Err(_))) => (Some(*ty), String::new()),
                    None => (None, String::new()),
                };
                let mut err = Error::new(
                    codes::JOURNAL_MISMATCH,
                    format!(
                        "journal mismatch at command index {index}: the handler ended, but the journal records more commands (next: {ty:?} '{name}'); the handler code is not deterministic or changed"
                    ),
                );
                if let Some(ty) = ty {
                    err = err.with_related(self.related(index, ty, &name));
                }
                Err(self.fail(err))
            }
            _ => self.check_running(),
        }
    }

    // ---- runs ----------------------------------------------------------------------------------

    /// Journals a run. Unless `replayed`, the host must execute the closure (at once, for
    /// eager runs) and report its end with [`Vm::propose_run_completion`].
    pub fn sys_run(&mut self, name: &str) -> VmResult<RunHandle> {
        self.check_running()?;
        let id = self.alloc_completion();
        let fast = self.state == State::Replaying
            && self.replay.front().is_some_and(|f| {
                f.ty == MessageType::RunCommand
                    && crate::protocol::messages::run_command_is(&f.payload, id, name)
            });
        if fast {
            self.replay.pop_front();
            self.command_index += 1;
            if self.replay.is_empty() {
                self.state = State::Processing;
            }
        } else {
            self.journal_command(Command::Run {
                result_completion_id: id,
                name: name.to_owned(),
            })?;
        }
        let replayed = self
            .notes
            .slot(&NotificationId::Completion(id))
            .is_some_and(|s| s.is_known());
        if !replayed {
            self.runs.insert(
                id,
                RunInfo {
                    command_index: self.command_index as u32,
                    name: name.to_owned(),
                    executing: true,
                },
            );
            self.executing_runs += 1;
        }
        Ok(RunHandle {
            handle: self.completion_leaf(id),
            replayed,
        })
    }

    /// Reports how a run closure ended.
    ///
    /// Success and terminal failure are proposed to the runtime. A retryable failure consults
    /// `policy`: either the attempt fails (an `ErrorMessage` with the retry delay is written
    /// and the VM closes, so later calls return that error), or retries are exhausted and a
    /// terminal failure is proposed instead. Ignored once the VM is closed.
    pub fn propose_run_completion(
        &mut self,
        handle: Handle,
        exit: RunExit,
        policy: &RetryPolicy,
    ) -> VmResult<()> {
        if self.state == State::Closed {
            return Ok(());
        }
        let Some(HandleKind::Leaf(NotificationId::Completion(id))) =
            self.handles.get(handle.0 as usize).cloned()
        else {
            return Err(Error::new(
                codes::BAD_REQUEST,
                format!("{handle:?} is not a run handle"),
            ));
        };
        let Some(run) = self.runs.get(&id).filter(|r| r.executing) else {
            return Err(Error::new(
                codes::BAD_REQUEST,
                format!("{handle:?} is not an executing run (replayed, or its result was already proposed)"),
            ));
        };
        let (run_index, run_name) = (run.command_index, run.name.clone());
        // Version checks come first and fail the attempt, so a run is never left half-done.
        if let RunExit::TerminalFailure(f) = &exit {
            self.check_failure(f)?;
        }
        if matches!(exit, RunExit::RetryableFailure { .. }) && policy.pauses() {
            self.require_v7("pausing on exhausted run retries")?;
        }
        if let Some(run) = self.runs.get_mut(&id) {
            run.executing = false;
        }
        self.executing_runs -= 1;
        let result = match exit {
            RunExit::Success(b) => CommandResult::Value(b),
            RunExit::TerminalFailure(f) => CommandResult::Failure(f),
            RunExit::RetryableFailure {
                error,
                attempt_duration_ms,
            } => {
                let (count, duration) = if self.fresh {
                    let c = self.start.retry_count_since_last_stored_entry;
                    (
                        c,
                        if c == 0 {
                            0
                        } else {
                            self.start.duration_since_last_stored_entry
                        },
                    )
                } else {
                    (0, 0)
                };
                let attempts = count + 1;
                let elapsed = duration.saturating_add(attempt_duration_ms);
                let related = self.related(run_index, MessageType::RunCommand, &run_name);
                match policy.decide(attempts, elapsed) {
                    RetryDecision::Retry(delay) => {
                        let mut e = error.with_related(related);
                        if delay.is_some() {
                            e.next_retry_delay_ms = delay;
                        }
                        self.fail(e);
                        return Ok(());
                    }
                    RetryDecision::Pause => {
                        let e = error.with_related(related);
                        self.fail_with(e, Some(ErrorBehavior::Pause));
                        return Ok(());
                    }
                    RetryDecision::FailAsTerminal => CommandResult::Failure(Failure {
                        code: u32::from(error.code),
                        message: error.message,
                        metadata: Vec::new(),
                    }),
                }
            }
        };
        let value = match &result {
            CommandResult::Value(v) => Value::Value(v.clone()),
            CommandResult::Failure(f) => Value::Failure(f.clone()),
        };
        let flags = if self.version >= Version::V7 {
            REQUESTED_ACK
        } else {
            0
        };
        self.write(
            &Message::ProposeRunCompletion {
                result_completion_id: id,
                result,
            },
            flags,
        );
        self.notes.propose(id, value);
        self.fresh = false;
        Ok(())
    }

    // ---- timers, calls, awakeables, signals ------------------------------------------------------

    /// Journals a durable timer waking at `wake_up_time_ms` (ms since the UNIX epoch).
    pub fn sys_sleep(&mut self, name: &str, wake_up_time_ms: u64) -> VmResult<Handle> {
        self.check_running()?;
        let id = self.alloc_completion();
        self.journal_command(Command::Sleep {
            wake_up_time: wake_up_time_ms,
            result_completion_id: id,
            name: name.to_owned(),
        })?;
        Ok(self.completion_leaf(id))
    }

    fn check_target(&mut self, target: &Target) -> VmResult<()> {
        for (what, v) in [
            ("idempotency key", &target.idempotency_key),
            ("scope", &target.scope),
            ("limit key", &target.limit_key),
        ] {
            if v.as_deref() == Some("") {
                let e = Error::new(codes::BAD_REQUEST, format!("the {what} must not be empty"));
                return Err(self.fail(e));
            }
        }
        if target.scope.is_some() {
            self.require_v7("a call scope")?;
        }
        if target.limit_key.is_some() {
            self.require_v7("a call limit key")?;
        }
        Ok(())
    }

    /// Journals a request-response call.
    pub fn sys_call(
        &mut self,
        target: Target,
        parameter: Bytes,
        name: &str,
    ) -> VmResult<CallHandles> {
        self.check_running()?;
        self.check_target(&target)?;
        let inv = self.alloc_completion();
        let res = self.alloc_completion();
        self.journal_command(Command::Call {
            service_name: target.service,
            handler_name: target.handler,
            parameter,
            headers: target.headers,
            key: target.key.unwrap_or_default(),
            idempotency_key: target.idempotency_key,
            scope: target.scope,
            limit_key: target.limit_key,
            invocation_id_notification_idx: inv,
            result_completion_id: res,
            name: name.to_owned(),
        })?;
        let handles = CallHandles {
            invocation_id: self.completion_leaf(inv),
            result: self.completion_leaf(res),
        };
        if self.options.cancel_child_calls {
            self.children
                .push((handles.invocation_id, Some(handles.result)));
        }
        Ok(handles)
    }

    /// Journals a one-way call, optionally delayed until `invoke_time_ms` (ms since the
    /// epoch). Returns the handle of the callee's invocation id.
    pub fn sys_send(
        &mut self,
        target: Target,
        parameter: Bytes,
        invoke_time_ms: Option<u64>,
        name: &str,
    ) -> VmResult<Handle> {
        self.check_running()?;
        self.check_target(&target)?;
        let inv = self.alloc_completion();
        self.journal_command(Command::OneWayCall {
            service_name: target.service,
            handler_name: target.handler,
            parameter,
            invoke_time: invoke_time_ms.unwrap_or(0),
            headers: target.headers,
            key: target.key.unwrap_or_default(),
            idempotency_key: target.idempotency_key,
            scope: target.scope,
            limit_key: target.limit_key,
            invocation_id_notification_idx: inv,
            name: name.to_owned(),
        })?;
        let h = self.completion_leaf(inv);
        if self.options.cancel_child_sends {
            self.children.push((h, None));
        }
        Ok(h)
    }

    /// Creates an awakeable. No command is journaled: its completion arrives as a signal.
    pub fn sys_awakeable(&mut self) -> VmResult<Awakeable> {
        self.check_running()?;
        let signal = self.next_signal_id;
        self.next_signal_id += 1;
        let mut raw = self.start.id.to_vec();
        raw.extend_from_slice(&signal.to_be_bytes());
        let id = format!("{AWAKEABLE_PREFIX}{}", base64url_encode(&raw));
        Ok(Awakeable {
            id,
            handle: self.leaf(NotificationId::Signal(signal)),
        })
    }

    /// Journals the completion of an awakeable (`sign_1…` or legacy `prom_1…` id).
    pub fn sys_complete_awakeable(
        &mut self,
        awakeable_id: &str,
        result: CommandResult,
    ) -> VmResult<()> {
        self.check_running()?;
        let body = awakeable_id
            .strip_prefix(AWAKEABLE_PREFIX)
            .or_else(|| awakeable_id.strip_prefix(LEGACY_AWAKEABLE_PREFIX));
        // Checked before anything is journaled, so the same id fails the same way on replay:
        // the attempt goes on and the host decides (the Python facade raises a terminal error,
        // since retrying cannot fix an id).
        if body.and_then(base64url_decode).is_none_or(|b| b.len() <= 4) {
            return Err(Error::new(
                codes::BAD_REQUEST,
                format!("'{awakeable_id}' is not an awakeable id (expected 'sign_1…')"),
            ));
        }
        self.check_result(&result)?;
        self.journal_command(Command::CompleteAwakeable {
            awakeable_id: awakeable_id.to_owned(),
            result,
            name: String::new(),
        })?;
        Ok(())
    }

    /// A handle for a named signal sent to this invocation. Nothing is journaled.
    pub fn signal_handle(&mut self, name: &str) -> VmResult<Handle> {
        self.check_running()?;
        if name.is_empty() {
            return Err(Error::new(
                codes::BAD_REQUEST,
                "a signal name must not be empty",
            ));
        }
        Ok(self.leaf(NotificationId::SignalName(name.to_owned())))
    }

    /// Journals sending a named signal to another invocation.
    pub fn sys_complete_signal(
        &mut self,
        target_invocation_id: &str,
        name: &str,
        result: CommandResult,
    ) -> VmResult<()> {
        self.check_running()?;
        self.check_result(&result)?;
        self.journal_command(Command::SendSignal {
            target_invocation_id: target_invocation_id.to_owned(),
            signal: SignalRef::Name(name.to_owned()),
            result: Some(result),
            entry_name: String::new(),
        })?;
        Ok(())
    }

    /// Journals the cancellation of another invocation (signal 1).
    pub fn sys_cancel_invocation(&mut self, target_invocation_id: &str) -> VmResult<()> {
        self.check_running()?;
        self.journal_command(Command::SendSignal {
            target_invocation_id: target_invocation_id.to_owned(),
            signal: SignalRef::Idx(CANCEL_SIGNAL_ID),
            result: None,
            entry_name: String::new(),
        })?;
        Ok(())
    }

    /// Journals attaching to another invocation's result.
    pub fn sys_attach_invocation(&mut self, target: AttachTarget) -> VmResult<Handle> {
        self.check_running()?;
        let id = self.alloc_completion();
        self.journal_command(Command::AttachInvocation {
            target,
            result_completion_id: id,
            name: String::new(),
        })?;
        Ok(self.completion_leaf(id))
    }

    /// Journals reading another invocation's output (void if it has none yet).
    pub fn sys_get_invocation_output(&mut self, target: AttachTarget) -> VmResult<Handle> {
        self.check_running()?;
        let id = self.alloc_completion();
        self.journal_command(Command::GetInvocationOutput {
            target,
            result_completion_id: id,
            name: String::new(),
        })?;
        Ok(self.completion_leaf(id))
    }

    // ---- state ---------------------------------------------------------------------------------

    /// Reads a state key. Served from the eager state when it is known, else lazily.
    pub fn sys_state_get(&mut self, key: &str) -> VmResult<Handle> {
        self.check_running()?;
        let id = self.alloc_completion();
        let key_b = Bytes::copy_from_slice(key.as_bytes());
        let h = self.completion_leaf(id);
        let nid = NotificationId::Completion(id);
        if self.state == State::Replaying {
            let attempted = Command::GetLazyState {
                key: key_b.clone(),
                result_completion_id: id,
                name: String::new(),
            };
            let k = key_b.clone();
            let recorded = self.journal_command_with(attempted, |_, _| true);
            let recorded = match recorded? {
                Some(r) => r,
                None => unreachable!("replaying returns the recorded command"),
            };
            match recorded {
                Command::GetEagerState { key, value, .. } if key == k => {
                    let v = value.map_or(Value::Void, Value::Value);
                    self.notes.insert_ready(&nid, v, id);
                }
                Command::GetLazyState {
                    key,
                    result_completion_id,
                    ..
                } if key == k && result_completion_id == id => {}
                other => {
                    return Err(
                        self.mismatch_after_pop(&other, &format!("a get of state key '{key}'"))
                    )
                }
            }
            return Ok(h);
        }
        let known = self.eager.map.get(&key_b).cloned();
        match known {
            Some(v) => {
                self.journal_command(Command::GetEagerState {
                    key: key_b,
                    value: v.clone(),
                    name: String::new(),
                })?;
                self.notes
                    .insert_ready(&nid, v.map_or(Value::Void, Value::Value), id);
            }
            None if self.eager.complete => {
                self.journal_command(Command::GetEagerState {
                    key: key_b,
                    value: None,
                    name: String::new(),
                })?;
                self.notes.insert_ready(&nid, Value::Void, id);
            }
            None => {
                self.journal_command(Command::GetLazyState {
                    key: key_b,
                    result_completion_id: id,
                    name: String::new(),
                })?;
            }
        }
        Ok(h)
    }

    fn mismatch_after_pop(&mut self, recorded: &Command, attempted: &str) -> Error {
        let index = self.command_index as u32;
        let err = Error::new(
            codes::JOURNAL_MISMATCH,
            format!(
                "journal mismatch at command index {index}: the journal recorded {} but the handler now attempts {attempted}",
                replay::describe(recorded)
            ),
        )
        .with_related(self.related(index, recorded.message_type(), recorded.name()));
        self.fail(err)
    }

    /// Lists the state keys. Served eagerly (sorted) when the state is complete.
    pub fn sys_state_get_keys(&mut self) -> VmResult<Handle> {
        self.check_running()?;
        let id = self.alloc_completion();
        let h = self.completion_leaf(id);
        let nid = NotificationId::Completion(id);
        if self.state == State::Replaying {
            let attempted = Command::GetLazyStateKeys {
                result_completion_id: id,
                name: String::new(),
            };
            let recorded = self.journal_command_with(attempted, |_, _| true)?;
            match recorded {
                Some(Command::GetEagerStateKeys { keys, .. }) => {
                    self.notes.insert_ready(&nid, Value::StateKeys(keys), id);
                }
                Some(Command::GetLazyStateKeys {
                    result_completion_id,
                    ..
                }) if result_completion_id == id => {}
                Some(other) => {
                    return Err(self.mismatch_after_pop(&other, "a listing of state keys"))
                }
                None => unreachable!("replaying returns the recorded command"),
            }
            return Ok(h);
        }
        if self.eager.complete {
            let mut keys: Vec<Bytes> = self
                .eager
                .map
                .iter()
                .filter(|(_, v)| v.is_some())
                .map(|(k, _)| k.clone())
                .collect();
            keys.sort();
            self.journal_command(Command::GetEagerStateKeys {
                keys: keys.clone(),
                name: String::new(),
            })?;
            self.notes.insert_ready(&nid, Value::StateKeys(keys), id);
        } else {
            self.journal_command(Command::GetLazyStateKeys {
                result_completion_id: id,
                name: String::new(),
            })?;
        }
        Ok(h)
    }

    /// Sets a state key.
    pub fn sys_state_set(&mut self, key: &str, value: Bytes) -> VmResult<()> {
        let key = Bytes::copy_from_slice(key.as_bytes());
        self.journal_command(Command::SetState {
            key: key.clone(),
            value: value.clone(),
            name: String::new(),
        })?;
        self.eager.map.insert(key, Some(value));
        Ok(())
    }

    /// Clears a state key.
    pub fn sys_state_clear(&mut self, key: &str) -> VmResult<()> {
        let key = Bytes::copy_from_slice(key.as_bytes());
        self.journal_command(Command::ClearState {
            key: key.clone(),
            name: String::new(),
        })?;
        self.eager.map.insert(key, None);
        Ok(())
    }

    /// Clears every state key; afterwards the local view of the state is complete.
    pub fn sys_state_clear_all(&mut self) -> VmResult<()> {
        self.journal_command(Command::ClearAllState {
            name: String::new(),
        })?;
        self.eager.map.clear();
        self.eager.complete = true;
        Ok(())
    }

    // ---- promises (workflows) ----------------------------------------------------------------

    /// Journals a blocking read of a durable promise.
    pub fn sys_get_promise(&mut self, key: &str) -> VmResult<Handle> {
        self.check_running()?;
        let id = self.alloc_completion();
        self.journal_command(Command::GetPromise {
            key: key.to_owned(),
            result_completion_id: id,
            name: String::new(),
        })?;
        Ok(self.completion_leaf(id))
    }

    /// Journals a non-blocking read of a durable promise (void when not completed).
    pub fn sys_peek_promise(&mut self, key: &str) -> VmResult<Handle> {
        self.check_running()?;
        let id = self.alloc_completion();
        self.journal_command(Command::PeekPromise {
            key: key.to_owned(),
            result_completion_id: id,
            name: String::new(),
        })?;
        Ok(self.completion_leaf(id))
    }

    /// Journals completing a durable promise; the handle completes with void, or a failure
    /// if the promise was already completed.
    pub fn sys_complete_promise(&mut self, key: &str, result: CommandResult) -> VmResult<Handle> {
        self.check_running()?;
        self.check_result(&result)?;
        let id = self.alloc_completion();
        self.journal_command(Command::CompletePromise {
            key: key.to_owned(),
            completion: Some(result),
            result_completion_id: id,
            name: String::new(),
        })?;
        Ok(self.completion_leaf(id))
    }

    // ---- handles, combinators, selectors --------------------------------------------------------

    fn kind(&self, h: Handle) -> VmResult<&HandleKind> {
        self.handles
            .get(h.0 as usize)
            .ok_or_else(|| Error::new(codes::BAD_REQUEST, format!("unknown handle {}", h.0)))
    }

    fn node_of(&self, h: Handle) -> VmResult<u32> {
        match self.kind(h)? {
            HandleKind::Node(n) => Ok(*n),
            HandleKind::Leaf(_) => Err(Error::new(
                codes::BAD_REQUEST,
                format!("handle {} is not a combinator", h.0),
            )),
        }
    }

    /// `Some((failed, seq))` if `h` has completed.
    fn completion_of(&self, h: Handle) -> Option<(bool, u64)> {
        match &self.handles[h.0 as usize] {
            HandleKind::Leaf(id) => match self.notes.slot(id).map(|s| &s.state) {
                Some(SlotState::Ready { failed, seq, .. }) => Some((*failed, *seq)),
                _ => None,
            },
            HandleKind::Node(n) => self.nodes[*n as usize]
                .outcome
                .map(|(o, seq)| (!o.succeeded, seq)),
        }
    }

    /// Whether `h` has completed (a selector: whether every child was handed out).
    /// Never consumes input: only awaiting moves notifications to the ready set.
    pub fn is_completed(&self, h: Handle) -> bool {
        match self.handles.get(h.0 as usize) {
            None => false,
            Some(HandleKind::Node(n)) => {
                let node = &self.nodes[*n as usize];
                match node.kind {
                    NodeKind::Selector => node.pending == 0 && node.ready.is_empty(),
                    NodeKind::Combinator(_) => node.outcome.is_some(),
                }
            }
            Some(HandleKind::Leaf(_)) => self.completion_of(h).is_some(),
        }
    }

    /// How a completed combinator resolved; `None` while pending or for a leaf.
    pub fn outcome(&self, h: Handle) -> Option<Outcome> {
        match self.handles.get(h.0 as usize) {
            Some(HandleKind::Node(n)) => self.nodes[*n as usize].outcome.map(|(o, _)| o),
            _ => None,
        }
    }

    /// Takes the value of a completed leaf handle. `None` if it has not completed or was
    /// taken already.
    pub fn take_notification(&mut self, h: Handle) -> VmResult<Option<Value>> {
        let HandleKind::Leaf(id) = self.kind(h)?.clone() else {
            return Err(Error::new(
                codes::BAD_REQUEST,
                format!("handle {} is a combinator; use outcome()", h.0),
            ));
        };
        let limit = self.next_completion_id.max(self.next_signal_id);
        match self.notes.slot_mut(&id, limit).map(|s| &mut s.state) {
            Some(SlotState::Ready { value, .. }) => Ok(value.take()),
            _ => Ok(None),
        }
    }

    /// Looks at the value of a completed leaf handle without taking it.
    pub fn peek_notification(&self, h: Handle) -> Option<&Value> {
        match self.handles.get(h.0 as usize)? {
            HandleKind::Leaf(id) => match &self.notes.slot(id)?.state {
                SlotState::Ready { value, .. } => value.as_ref(),
                _ => None,
            },
            HandleKind::Node(_) => None,
        }
    }

    fn new_node(&mut self, kind: NodeKind, children: &[Handle]) -> VmResult<Handle> {
        for c in children {
            if let HandleKind::Node(n) = self.kind(*c)? {
                if self.nodes[*n as usize].kind == NodeKind::Selector {
                    return Err(Error::new(
                        codes::BAD_REQUEST,
                        "a selector cannot be the child of a combinator or selector",
                    ));
                }
            }
        }
        let node_id = self.nodes.len() as u32;
        self.nodes.push(Node::new(kind, children.to_vec()));
        let handle = Handle(self.handles.len() as u32);
        self.handles.push(HandleKind::Node(node_id));
        if let (NodeKind::Combinator(c), true) = (kind, children.is_empty()) {
            let seq = self.notes.bump_seq();
            self.nodes[node_id as usize].outcome = Some((Node::empty_outcome(c), seq));
            return Ok(handle);
        }
        let mut done_now = Vec::new();
        for (i, c) in children.iter().enumerate() {
            match self.completion_of(*c) {
                Some((failed, seq)) => done_now.push((seq, i as u32, failed)),
                None => match self.handles[c.0 as usize].clone() {
                    HandleKind::Leaf(id) => {
                        let limit = u32::MAX;
                        if let Some(slot) = self.notes.slot_mut(&id, limit) {
                            slot.watchers.push((node_id, i as u32));
                        }
                    }
                    HandleKind::Node(n) => self.nodes[n as usize].parents.push((node_id, i as u32)),
                },
            }
        }
        done_now.sort_unstable_by_key(|(seq, ..)| *seq);
        let events = done_now
            .into_iter()
            .map(|(_, i, failed)| (node_id, i, failed))
            .collect();
        self.propagate(events);
        Ok(handle)
    }

    /// A combinator over `children` (leaves or other combinators), resolved incrementally.
    /// First-completed over no children is refused: it could never complete.
    pub fn combinator(&mut self, kind: Combinator, children: &[Handle]) -> VmResult<Handle> {
        if kind == Combinator::FirstCompleted && children.is_empty() {
            return Err(Error::new(
                codes::BAD_REQUEST,
                "first-completed over no futures would never complete",
            ));
        }
        self.new_node(NodeKind::Combinator(kind), children)
    }

    /// A selector over `children`: [`Vm::select_next`] hands them out in completion order.
    pub fn selector(&mut self, children: &[Handle]) -> VmResult<Handle> {
        self.new_node(NodeKind::Selector, children)
    }

    /// Children of a selector not yet handed out (completed or not).
    pub fn selector_remaining(&self, selector: Handle) -> VmResult<usize> {
        let node = &self.nodes[self.node_of(selector)? as usize];
        Ok(node.pending + node.ready.len())
    }

    /// Forgets a combinator or selector the host no longer needs (frees its memory).
    pub fn release(&mut self, h: Handle) {
        if let Some(HandleKind::Node(n)) = self.handles.get(h.0 as usize) {
            let node = &mut self.nodes[*n as usize];
            if node.kind == NodeKind::Selector || node.outcome.is_some() || node.parents.is_empty()
            {
                node.alive = false;
                node.children = Vec::new();
                node.done = Vec::new();
                node.ready = VecDeque::new();
            }
        }
    }

    /// Applies child-completion events and everything they resolve, in order.
    fn propagate(&mut self, mut events: VecDeque<(u32, u32, bool)>) {
        while let Some((n, i, failed)) = events.pop_front() {
            let node = &mut self.nodes[n as usize];
            if !node.alive {
                continue;
            }
            if let Some(outcome) = node.child_done(i, failed) {
                let seq = self.notes.bump_seq();
                let node = &mut self.nodes[n as usize];
                node.outcome = Some((outcome, seq));
                for (p, pi) in std::mem::take(&mut node.parents) {
                    events.push_back((p, pi, !outcome.succeeded));
                }
            }
        }
    }

    /// Moves one notification from the input FIFO to the ready set.
    fn pop_one(&mut self) -> bool {
        let Some((id, failed)) = self.notes.pop_to_ready() else {
            return false;
        };
        let watchers = self.notes.take_watchers(&id);
        if !watchers.is_empty() {
            self.propagate(watchers.into_iter().map(|(n, i)| (n, i, failed)).collect());
        }
        true
    }

    // ---- awaiting ------------------------------------------------------------------------------

    /// Waits for `h` (a leaf or a combinator) and, with implicit cancellation, for the cancel
    /// signal. Moves notifications to the ready set one at a time, in journal order.
    pub fn do_await(&mut self, h: Handle) -> VmResult<AwaitOutcome> {
        self.kind(h)?;
        self.check_running()?;
        loop {
            if self.is_completed(h) {
                return Ok(AwaitOutcome::Ready);
            }
            if let Some(outcome) = self.step(h)? {
                return Ok(outcome);
            }
        }
    }

    /// The next child of `selector` in completion order, waiting if none has completed.
    pub fn select_next(&mut self, selector: Handle) -> VmResult<SelectOutcome> {
        let n = self.node_of(selector)? as usize;
        if self.nodes[n].kind != NodeKind::Selector {
            return Err(Error::new(
                codes::BAD_REQUEST,
                format!("handle {} is not a selector", selector.0),
            ));
        }
        self.check_running()?;
        loop {
            let node = &mut self.nodes[n];
            if let Some(i) = node.ready.pop_front() {
                return Ok(SelectOutcome::Selected(node.children[i as usize]));
            }
            if node.pending == 0 {
                return Ok(SelectOutcome::Exhausted);
            }
            if let Some(outcome) = self.step(selector)? {
                return Ok(match outcome {
                    AwaitOutcome::Cancelled => SelectOutcome::Cancelled,
                    AwaitOutcome::Suspended => SelectOutcome::Suspended,
                    AwaitOutcome::Pending {
                        waiting_input,
                        waiting_runs,
                    } => SelectOutcome::Pending {
                        waiting_input,
                        waiting_runs,
                    },
                    AwaitOutcome::Ready => unreachable!("step never reports ready"),
                });
            }
        }
    }

    fn cancel_requested(&self) -> bool {
        self.options.implicit_cancellation
            && matches!(
                self.notes
                    .slot(&NotificationId::Signal(CANCEL_SIGNAL_ID))
                    .map(|s| &s.state),
                Some(SlotState::Ready { value: Some(_), .. })
            )
    }

    /// Children to cancel whose invocation id is still unknown.
    fn children_missing_ids(&self) -> Vec<Handle> {
        self.children
            .iter()
            .filter(|(_, res)| !res.is_some_and(|r| self.completion_of(r).is_some()))
            .filter(|(inv, _)| self.completion_of(*inv).is_none())
            .map(|(inv, _)| *inv)
            .collect()
    }

    /// One step of progress towards `goal`; `Ok(None)` means "progress made, check again".
    fn step(&mut self, goal: Handle) -> VmResult<Option<AwaitOutcome>> {
        self.check_running()?;
        if self.cancel_requested() {
            let missing = self.children_missing_ids();
            if missing.is_empty() {
                self.cancel_children()?;
                self.notes
                    .consume(&NotificationId::Signal(CANCEL_SIGNAL_ID));
                return Ok(Some(AwaitOutcome::Cancelled));
            }
            if self.pop_one() {
                return Ok(None);
            }
            return self.block(goal, Some(&missing)).map(Some);
        }
        if self.pop_one() {
            return Ok(None);
        }
        self.block(goal, None).map(Some)
    }

    fn cancel_children(&mut self) -> VmResult<()> {
        let children = std::mem::take(&mut self.children);
        for (inv, res) in children {
            if res.is_some_and(|r| self.completion_of(r).is_some()) {
                continue;
            }
            if let Some(Value::InvocationId(id)) = self.peek_notification(inv).cloned() {
                self.sys_cancel_invocation(&id)?;
            }
        }
        Ok(())
    }

    /// Nothing queued: wait for input or runs, or suspend.
    fn block(&mut self, goal: Handle, cancel_ids: Option<&[Handle]>) -> VmResult<AwaitOutcome> {
        if self.state == State::Replaying {
            let next = self.replay.front().map(|f| f.ty);
            let index = (self.command_index + 1) as u32;
            let what = self.describe_wait(goal);
            let mut err = Error::new(
                codes::JOURNAL_MISMATCH,
                format!(
                    "journal mismatch at command index {index}: the handler awaits {what}, which the journal never completed before its next recorded command ({next:?}); the handler code is not deterministic or changed"
                ),
            );
            if let Some(ty) = next {
                err = err.with_related(RelatedCommand {
                    index,
                    ty,
                    name: None,
                });
            }
            return Err(self.fail(err));
        }
        let waiting_runs = self.executing_runs > 0;
        if !self.input_closed {
            self.maybe_awaiting_on(goal, cancel_ids);
            return Ok(AwaitOutcome::Pending {
                waiting_input: true,
                waiting_runs,
            });
        }
        if waiting_runs {
            return Ok(AwaitOutcome::Pending {
                waiting_input: false,
                waiting_runs,
            });
        }
        let tree = self.wait_tree(goal, cancel_ids);
        let msg = if self.version >= Version::V7 {
            Message::SuspensionV7(tree)
        } else {
            let (completions, signals, named_signals) = tree.flatten();
            Message::SuspensionV6 {
                completions,
                signals,
                named_signals,
            }
        };
        self.write(&msg, 0);
        self.close_with(None);
        Ok(AwaitOutcome::Suspended)
    }

    fn maybe_awaiting_on(&mut self, goal: Handle, cancel_ids: Option<&[Handle]>) {
        let send = self.version >= Version::V7
            && match self.options.awaiting_on {
                AwaitingOnPolicy::Always => true,
                AwaitingOnPolicy::UnlessRunExecuting => self.executing_runs == 0,
                AwaitingOnPolicy::Never => false,
            };
        if send && self.last_awaiting_on != Some(goal) {
            self.last_awaiting_on = Some(goal);
            let tree = self.wait_tree(goal, cancel_ids);
            self.write(
                &Message::AwaitingOn {
                    awaiting_on: tree,
                    executing_side_effects: false,
                },
                0,
            );
        }
    }

    /// The wire future of what the handler waits on, with the cancel signal added.
    fn wait_tree(&self, goal: Handle, cancel_ids: Option<&[Handle]>) -> WireFuture {
        if let Some(ids) = cancel_ids {
            let mut f = empty_wire(CombinatorType::AllCompleted);
            for h in ids {
                if let HandleKind::Leaf(id) = &self.handles[h.0 as usize] {
                    push_leaf(&mut f, id);
                }
            }
            sort_wire(&mut f);
            return f;
        }
        let mut f = self.wire_of(goal);
        // Once the cancel signal is in the journal (e.g. the handler caught the 409 and goes
        // on), waiting for it again would make the runtime resume the invocation at once,
        // forever.
        let cancel_received = self
            .notes
            .slot(&NotificationId::Signal(CANCEL_SIGNAL_ID))
            .is_some_and(|s| s.is_known());
        if self.options.implicit_cancellation && !cancel_received {
            if matches!(
                f.combinator_type,
                CombinatorType::FirstCompleted | CombinatorType::Unknown
            ) {
                f.waiting_signals.push(CANCEL_SIGNAL_ID);
                f.combinator_type = CombinatorType::FirstCompleted;
            } else {
                let mut outer = empty_wire(CombinatorType::FirstCompleted);
                outer.waiting_signals.push(CANCEL_SIGNAL_ID);
                outer.nested_futures.push(f);
                f = outer;
            }
            sort_wire(&mut f);
        }
        f
    }

    fn wire_of(&self, h: Handle) -> WireFuture {
        match &self.handles[h.0 as usize] {
            HandleKind::Leaf(id) => {
                let mut f = empty_wire(CombinatorType::FirstCompleted);
                push_leaf(&mut f, id);
                f
            }
            HandleKind::Node(n) => {
                let node = &self.nodes[*n as usize];
                let mut f = empty_wire(node.wire_type());
                for (i, c) in node.children.iter().enumerate() {
                    if node.done[i] {
                        continue;
                    }
                    match &self.handles[c.0 as usize] {
                        HandleKind::Leaf(id) => push_leaf(&mut f, id),
                        HandleKind::Node(_) => f.nested_futures.push(self.wire_of(*c)),
                    }
                }
                sort_wire(&mut f);
                f
            }
        }
    }

    fn describe_wait(&self, goal: Handle) -> String {
        let (c, s, n) = self.wire_of(goal).flatten();
        let mut parts = Vec::new();
        for id in c.iter().take(8) {
            match self.runs.get(id) {
                Some(r) => parts.push(format!("run '{}' (completion {id})", r.name)),
                None => parts.push(format!("completion {id}")),
            }
        }
        parts.extend(s.iter().take(8).map(|s| format!("signal {s}")));
        parts.extend(n.iter().take(8).map(|n| format!("signal '{n}'")));
        if c.len() + s.len() + n.len() > parts.len() {
            parts.push("…".into());
        }
        parts.join(", ")
    }
}
