//! # durable-futures-core
//!
//! The durable-execution VM of durable-futures: a synchronous, sans-I/O state machine that
//! speaks Restate's service protocol (V5, V6, V7). It holds the journal, decides replay versus
//! processing, checks every command against the journal (error 570 on a mismatch, naming the
//! entry), allocates completion and signal ids exactly as the protocol requires, moves
//! notifications to the ready set one at a time in journal order, and resolves selectors and
//! combinator trees incrementally.
//!
//! The host (the Python facade, the C ABI, the embedded engine) drives it:
//!
//! 1. [`Vm::new`] with the request's content type; feed bytes with [`Vm::notify_input`] until
//!    [`Vm::is_ready_to_execute`]; [`Vm::notify_input_closed`] when the runtime closes.
//! 2. Run the handler: [`Vm::sys_input`], then `sys_*` calls that return [`Handle`]s.
//!    [`Vm::sys_run`] says whether the run was replayed; if not, the host executes the
//!    closure and reports it with [`Vm::propose_run_completion`].
//! 3. Wait with [`Vm::do_await`] or [`Vm::select_next`]; take values with
//!    [`Vm::take_notification`]. Drain [`Vm::take_output`] and send it to the runtime.
//! 4. [`Vm::sys_write_output`] then [`Vm::sys_end`]; or a retryable failure via
//!    [`Vm::notify_error`].
//!
//! There is no clock, no randomness, no thread and no socket in this crate: time and seeds
//! are arguments.

#![deny(missing_docs)]

pub mod error;
#[cfg(feature = "request-identity")]
pub mod identity;
pub mod protocol;
pub mod retry;
mod util;
pub mod vm;

pub use error::{codes, Error, RelatedCommand};
pub use protocol::{
    AttachTarget, CommandResult, Failure, Header, MessageType, NotificationResult, Version,
};
pub use retry::{OnMaxAttempts, RetryDecision, RetryPolicy};
pub use vm::{
    parse_awakeable_id, AwaitOutcome, AwaitingOnPolicy, Awakeable, CallHandles, Combinator,
    ErrorBehavior, Handle, Input, Outcome, RunExit, RunHandle, SelectOutcome, State, Target, Value,
    Vm, VmOptions, CANCEL_HANDLE,
};
