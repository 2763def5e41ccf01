//! The invocation state machine.
//!
//! ```text
//!  WaitingStart ──StartMessage──▶ WaitingReplayEntries
//!  WaitingReplayEntries ──(the last of known_entries arrives)──▶ Replaying
//!  Replaying ──(a sys_* consumes the last recorded command)──▶ Processing
//!  Replaying | Processing ──(sys_end: EndMessage)──▶ Closed
//!  Replaying | Processing ──(nothing can progress, input closed: SuspensionMessage)──▶ Closed
//!  any state but Closed ──(any error: ErrorMessage)──▶ Closed, poisoned
//! ```
//!
//! Each state is a variant of `state::Phase` carrying the data valid in it (the recorded
//! commands while receiving and replaying them, the error once closed); [`State`] is its
//! public, data-free face. Every edge is taken in `transitions`, one file per family:
//!
//! - `transitions/input.rs`: frames from the runtime, and the two edges out of the waiting
//!   states;
//! - `transitions/journal.rs`: journaling a command and the replay check, and the one
//!   Replaying → Processing edge, which the replay fast path of `sys_run` takes too;
//! - `transitions/awaiting.rs`: waiting, which reports what the host must do, suspends, or
//!   (while replaying) finds a journal mismatch;
//! - `transitions/terminal.rs`: every edge into Closed (end, suspension, failure).
//!
//! The first error poisons the machine: it is written as an `ErrorMessage` and every later
//! call returns it. Every journal mismatch (570) is built by one constructor, in
//! `mismatch.rs`, from the comparison rules of `replay.rs`.
//!
//! The rest: the `sys_*` bodies in `commands/`, one file per kind of command (runs, calls,
//! signals and timers, state, promises); handles, combinators and selectors in `handles.rs`
//! and `futures.rs`; notification storage in `notifications.rs`; the public data types in
//! `types.rs`.
//!
//! The VM is synchronous and does no I/O: the host feeds input bytes, drains output bytes,
//! executes run closures, and passes in the clock where a command needs it.

mod commands;
mod futures;
mod handles;
mod mismatch;
mod notifications;
mod replay;
mod state;
mod transitions;
mod types;

use std::collections::HashMap;

pub use self::commands::parse_awakeable_id;
pub use self::futures::{Combinator, Handle, Outcome, CANCEL_HANDLE};
pub use self::notifications::Value;
pub use self::state::State;
pub use self::types::{
    AwaitOutcome, AwaitingOnPolicy, Awakeable, CallHandles, ErrorBehavior, Input, RunExit,
    RunHandle, SelectOutcome, Target, VmOptions,
};

use self::commands::{EagerState, RunInfo};
use self::futures::{HandleKind, Node};
use self::notifications::Notifications;
use self::state::Phase;
use crate::error::Error;
use crate::protocol::{
    encode_frame, Command, Decoder, Message, NotificationId, RawFrame, StartMessage, Version,
};

/// Signal 1: the runtime's cancellation of this invocation.
const CANCEL_SIGNAL_ID: u32 = 1;
/// Signals 2..=16 are reserved; awakeables take the ids from 17 on.
const FIRST_AWAKEABLE_SIGNAL_ID: u32 = 17;

/// The durable-execution VM for one invocation attempt.
#[derive(Debug)]
pub struct Vm {
    version: Version,
    options: VmOptions,
    decoder: Decoder,
    out: Vec<u8>,
    phase: Phase,
    input_closed: bool,
    start: StartMessage,
    /// Commands in the recorded journal (bounds the completion ids a notification may use).
    recorded_commands: u32,
    /// Index of the last command consumed or written (Input = 0); -1 before any.
    command_index: i64,
    /// That command itself, so that a failure of the handler can name the command it failed
    /// at. Moved in, never copied: keeping it costs the replay nothing.
    last_command: LastCommand,
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

/// The last command the handler consumed (replaying) or wrote (processing).
#[derive(Debug)]
enum LastCommand {
    /// None yet.
    None,
    /// A recorded command, still a frame (decoded only if a failure needs its name).
    Recorded(RawFrame),
    /// A command written in this attempt.
    Written(Command),
}

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
            phase: Phase::WaitingStart,
            input_closed: false,
            start: StartMessage::default(),
            recorded_commands: 0,
            command_index: -1,
            last_command: LastCommand::None,
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
        self.phase.state()
    }

    /// Failed attempts since the journal last grew, as the start message says (0 before it
    /// arrives): this attempt is number `retry_count() + 1` since then.
    pub fn retry_count(&self) -> u32 {
        self.start.retry_count_since_last_stored_entry
    }

    /// Whether the handler is re-executing recorded commands.
    pub fn is_replaying(&self) -> bool {
        matches!(self.phase, Phase::Replaying { .. })
    }

    /// The error that closed the VM, if any.
    pub fn last_error(&self) -> Option<&Error> {
        match &self.phase {
            Phase::Closed { failure } => failure.as_ref(),
            _ => None,
        }
    }

    /// Index of the last command consumed or written (the input command is 0), -1 before any.
    pub fn last_command_index(&self) -> i64 {
        self.command_index
    }

    /// Whether the handler can start: the whole recorded journal has been received.
    /// Returns the error if the VM failed before that.
    pub fn is_ready_to_execute(&self) -> VmResult<bool> {
        match self.phase {
            Phase::Replaying { .. } | Phase::Processing => Ok(true),
            Phase::Closed { .. } => Err(self.closed_error()),
            Phase::WaitingStart | Phase::WaitingReplayEntries { .. } => Ok(false),
        }
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
}
