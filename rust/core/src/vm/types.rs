//! The public data types of the VM: its options, and what the host passes in and gets back.

use bytes::Bytes;

use super::Handle;
use crate::error::Error;
use crate::protocol::{Failure, Header, DEFAULT_MAX_FRAME_LEN};

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

/// Options of a [`Vm`](super::Vm).
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

/// The invocation's input, as returned by [`Vm::sys_input`](super::Vm::sys_input).
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

/// Returned by [`Vm::sys_run`](super::Vm::sys_run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunHandle {
    /// The handle of the run's result.
    pub handle: Handle,
    /// `true` when the journal already holds the result: the closure must not run.
    pub replayed: bool,
}

/// Returned by [`Vm::sys_call`](super::Vm::sys_call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallHandles {
    /// Completes with the callee's invocation id.
    pub invocation_id: Handle,
    /// Completes with the callee's result.
    pub result: Handle,
}

/// Returned by [`Vm::sys_awakeable`](super::Vm::sys_awakeable).
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

/// Result of [`Vm::do_await`](super::Vm::do_await).
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

/// Result of [`Vm::select_next`](super::Vm::select_next).
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
