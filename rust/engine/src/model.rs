//! What the engine stores: invocations, their journals, timers, state and idempotency keys.
//!
//! The store (`store.rs`) persists these; the engine (`engine.rs`) decides what changes.
//! Journal entries are service-protocol frames exactly as the protocol defines them
//! (8-byte header + payload), so a journal can be replayed by the VM offline.

/// An invocation id: 16 random bytes, printed as `inv_` + lowercase hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InvocationId(pub [u8; 16]);

impl InvocationId {
    /// The printable form, `inv_<32 hex digits>`.
    pub fn to_text(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(36);
        s.push_str("inv_");
        for b in self.0 {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        s
    }

    /// Parses the printable form.
    pub fn parse(s: &str) -> Option<InvocationId> {
        let hex = s.strip_prefix("inv_")?;
        if hex.len() != 32 {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, chunk) in hex.as_bytes().chunks(2).enumerate() {
            let h = std::str::from_utf8(chunk).ok()?;
            out[i] = u8::from_str_radix(h, 16).ok()?;
        }
        Some(InvocationId(out))
    }
}

/// Where an invocation is in its life, as stored. Not `non_exhaustive`: hosts name every
/// status. (What an operator sees adds facts only memory has: see `Engine::status_of`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Waiting to run (new, or woken by a notification, or retrying at `next_retry_at`).
    Ready,
    /// Waiting for a notification (timer, call, awakeable); not in memory.
    Suspended,
    /// Finished with a result (success or terminal failure).
    Completed,
    /// Stopped by an operator or by its retry policy: no attempt starts until it is resumed
    /// (or cancelled, or killed). Notifications are journaled meanwhile but do not wake it.
    Paused,
}

impl Status {
    /// Stable code stored in the database.
    pub fn code(self) -> i64 {
        match self {
            Status::Ready => 0,
            Status::Suspended => 1,
            Status::Completed => 2,
            Status::Paused => 3,
        }
    }

    /// From the stored code.
    pub fn from_code(c: i64) -> Option<Status> {
        match c {
            0 => Some(Status::Ready),
            1 => Some(Status::Suspended),
            2 => Some(Status::Completed),
            3 => Some(Status::Paused),
            _ => None,
        }
    }
}

/// Longest stack trace kept with a failure, in bytes (note included).
pub const MAX_STACKTRACE_BYTES: usize = 16 * 1024;

/// What ends a stack trace cut to [`MAX_STACKTRACE_BYTES`].
pub const TRUNCATED_NOTE: &str = "… (truncated)";

/// `s` if it fits in [`MAX_STACKTRACE_BYTES`]; else its beginning, cut at a character
/// boundary, and [`TRUNCATED_NOTE`], together no longer than the bound.
pub fn bounded_stacktrace(s: &str) -> String {
    if s.len() <= MAX_STACKTRACE_BYTES {
        return s.to_owned();
    }
    let mut at = MAX_STACKTRACE_BYTES - TRUNCATED_NOTE.len();
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    let mut out = String::with_capacity(MAX_STACKTRACE_BYTES);
    out.push_str(&s[..at]);
    out.push_str(TRUNCATED_NOTE);
    out
}

/// Why the last attempt of an invocation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureInfo {
    /// Error code (500 for a failure the host reported).
    pub code: u32,
    /// Error message.
    pub message: String,
    /// Stack trace, at most [`MAX_STACKTRACE_BYTES`] (see [`bounded_stacktrace`]).
    pub stacktrace: String,
    /// Index of the command the handler failed at (the input command is 0).
    pub related_command_index: Option<u32>,
    /// What that command is, in the handler's terms (`"run"`, `"sleep"`, `"call"`, ...), or
    /// the protocol's name of its message type.
    pub related_command_type: Option<String>,
    /// Its name (a run's name, ...), if it has one.
    pub related_command_name: Option<String>,
}

impl FailureInfo {
    /// A failure with a code and a message only (as a host reports one).
    pub fn new(code: u32, message: impl Into<String>) -> FailureInfo {
        FailureInfo {
            code,
            message: message.into(),
            stacktrace: String::new(),
            related_command_index: None,
            related_command_type: None,
            related_command_name: None,
        }
    }
}

/// The outcome of a completed invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The handler returned this value.
    Success(Vec<u8>),
    /// The handler failed terminally.
    Failure {
        /// Failure code.
        code: u32,
        /// Failure message.
        message: String,
    },
}

/// Who waits for an invocation's result inside the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// The calling invocation.
    pub invocation: InvocationId,
    /// The completion id of the call result in the caller's journal.
    pub result_completion_id: u32,
}

/// One invocation as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvocationRow {
    /// Id.
    pub id: InvocationId,
    /// Target service.
    pub service: String,
    /// Target handler.
    pub handler: String,
    /// Virtual object key ("" for services).
    pub key: String,
    /// Idempotency key given at submission, if any.
    pub idempotency_key: Option<String>,
    /// Status.
    pub status: Status,
    /// Failed attempts so far (0 before the first failure).
    pub attempt: u32,
    /// When the next attempt may start (ms since the epoch); 0 = now.
    pub next_retry_at: u64,
    /// The caller waiting for the result, if this is a call.
    pub caller: Option<Caller>,
    /// Created (ms since the epoch).
    pub created_at: u64,
    /// The outcome once completed.
    pub outcome: Option<Outcome>,
    /// Why the last attempt failed, if one did (kept after later attempts and completion).
    pub last_failure: Option<FailureInfo>,
    /// Last change of the row (ms since the epoch).
    pub modified_at: u64,
    /// Completed (ms since the epoch); `None` before, and for invocations completed by a
    /// version that did not record it.
    pub completed_at: Option<u64>,
    /// When a completed invocation's journal and idempotency key may be deleted (its
    /// completion time plus the retention of its handler when it completed).
    pub expires_at: Option<u64>,
    /// The invocation was cancelled: its next failed attempt ends it (409 "canceled")
    /// instead of being retried.
    pub cancel_requested: bool,
}

/// A durable timer: completes `completion_id` of `invocation` at `wake_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerRow {
    /// Owner.
    pub invocation: InvocationId,
    /// The sleep's completion id.
    pub completion_id: u32,
    /// Due time (ms since the epoch).
    pub wake_at: u64,
}

/// A change to virtual-object state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateOp {
    /// Set `name` to `value`.
    Set {
        /// The virtual object's service.
        service: String,
        /// The object's key.
        key: String,
        /// The state entry's name.
        name: String,
        /// The new value.
        value: Vec<u8>,
    },
    /// Remove `name`.
    Clear {
        /// The virtual object's service.
        service: String,
        /// The object's key.
        key: String,
        /// The state entry's name.
        name: String,
    },
    /// Remove every entry of the object.
    ClearAll {
        /// The virtual object's service.
        service: String,
        /// The object's key.
        key: String,
    },
}

/// Everything one group commit writes, in one transaction.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Batch {
    /// New invocations (with their input as journal entry 0 in `journal`).
    pub new_invocations: Vec<InvocationRow>,
    /// Status/attempt/retry/outcome updates of existing invocations (whole rows).
    pub updated_invocations: Vec<InvocationRow>,
    /// Journal entries appended: (invocation, index, frame bytes). Indexes are dense per
    /// invocation and never rewritten.
    pub journal: Vec<(InvocationId, u32, Vec<u8>)>,
    /// Timers added.
    pub timers_added: Vec<TimerRow>,
    /// Timers removed (fired): (invocation, completion id).
    pub timers_removed: Vec<(InvocationId, u32)>,
    /// State changes, in order.
    pub state: Vec<StateOp>,
    /// Idempotency keys registered: (service, handler, key, idempotency key) → invocation.
    pub idempotency: Vec<(String, String, String, String, InvocationId)>,
    /// Callers attached to a running invocation (a call with its idempotency key): (callee,
    /// caller). Answered, like the callee's own caller, when it completes.
    pub callers_attached: Vec<(InvocationId, Caller)>,
    /// Callees whose attached callers were answered (all of them are removed).
    pub callers_released: Vec<InvocationId>,
    /// Durable promises completed: (workflow service, key, promise name) → outcome.
    pub promises: Vec<(PromiseKey, Outcome)>,
    /// Invocations that wait for a durable promise (a `GetPromise` command not answered yet).
    pub promise_waiters_added: Vec<(PromiseKey, Caller)>,
    /// Promises whose waiters were answered (all of them are removed).
    pub promise_waiters_released: Vec<PromiseKey>,
    /// Invocations attached to another one's result (an `AttachInvocation` command not
    /// answered yet): (callee, waiter).
    pub attachers_added: Vec<(InvocationId, Caller)>,
    /// Callees whose attachers were answered (all of them are removed).
    pub attachers_released: Vec<InvocationId>,
}

/// A durable promise: (workflow service, workflow key, promise name).
pub type PromiseKey = (String, String, String);

impl Batch {
    /// Whether nothing is to be written.
    pub fn is_empty(&self) -> bool {
        self.new_invocations.is_empty()
            && self.updated_invocations.is_empty()
            && self.journal.is_empty()
            && self.timers_added.is_empty()
            && self.timers_removed.is_empty()
            && self.state.is_empty()
            && self.idempotency.is_empty()
            && self.callers_attached.is_empty()
            && self.callers_released.is_empty()
            && self.promises.is_empty()
            && self.promise_waiters_added.is_empty()
            && self.promise_waiters_released.is_empty()
            && self.attachers_added.is_empty()
            && self.attachers_released.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::{bounded_stacktrace, InvocationId, Status, MAX_STACKTRACE_BYTES, TRUNCATED_NOTE};

    #[test]
    fn status_codes_round_trip() {
        for s in [
            Status::Ready,
            Status::Suspended,
            Status::Completed,
            Status::Paused,
        ] {
            assert_eq!(Status::from_code(s.code()), Some(s));
        }
        assert_eq!(Status::Paused.code(), 3);
        assert_eq!(Status::from_code(4), None);
    }

    #[test]
    fn a_stacktrace_is_cut_at_a_character_boundary_with_a_note() {
        let fits = "x".repeat(MAX_STACKTRACE_BYTES);
        assert_eq!(bounded_stacktrace(&fits), fits);
        // 3-byte characters: the cut falls inside one and moves back to its start.
        let long = "€".repeat(MAX_STACKTRACE_BYTES);
        let cut = bounded_stacktrace(&long);
        assert!(cut.len() <= MAX_STACKTRACE_BYTES, "{}", cut.len());
        assert!(cut.len() > MAX_STACKTRACE_BYTES - TRUNCATED_NOTE.len() - 3);
        let kept = cut.strip_suffix(TRUNCATED_NOTE).expect("the note");
        assert!(kept.chars().all(|c| c == '€'));
        // One byte over: cut.
        let over = "y".repeat(MAX_STACKTRACE_BYTES + 1);
        let cut = bounded_stacktrace(&over);
        assert_eq!(cut.len(), MAX_STACKTRACE_BYTES);
        assert!(cut.ends_with(TRUNCATED_NOTE));
    }

    #[test]
    fn invocation_id_text_round_trips() {
        let id = InvocationId([
            0x00, 0x01, 0x0f, 0x10, 0x7f, 0x80, 0xab, 0xcd, 0xef, 0xff, 0x12, 0x34, 0x56, 0x78,
            0x9a, 0xbc,
        ]);
        let text = id.to_text();
        assert_eq!(text, "inv_00010f107f80abcdefff123456789abc");
        assert_eq!(InvocationId::parse(&text), Some(id));
        assert_eq!(
            InvocationId::parse("inv_00010f107f80abcdefff123456789ab"),
            None
        );
        assert_eq!(
            InvocationId::parse("inv_00010f107f80abcdefff123456789abg"),
            None
        );
        assert_eq!(
            InvocationId::parse("00010f107f80abcdefff123456789abc"),
            None
        );
    }
}
