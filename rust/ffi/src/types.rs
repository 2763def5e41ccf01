//! The C-visible types: borrowed slices, owned buffers, argument and result structs, and
//! the enums that name the integer constants of the ABI.
//!
//! Every struct is `#[repr(C)]` and has no `Drop`: memory owned by a struct returned to C is
//! released only by the matching `df_*_free` function. Enums cross the boundary as plain
//! integers (`uint32_t` / `int32_t` typedefs in the header); values coming *from* C are
//! validated before use, so an out-of-range integer is error 400, never undefined behaviour.

use std::ptr;

use durable_futures_core::{codes, Error};

/// A future: an integer handle allocated by the VM. Handle 0 is the cancellation signal.
pub type DfHandle = u32;

/// A borrowed byte string passed from the host: `len` bytes starting at `ptr`.
///
/// `ptr` may be NULL only when `len` is 0. Where an argument is optional (a call's key, an
/// idempotency key, ...), NULL means absent and a non-NULL pointer with `len == 0` means the
/// empty string. Strings must be UTF-8. The VM copies what it keeps; the bytes only need to
/// live until the call returns.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DfSlice {
    /// First byte (may be NULL when `len` is 0).
    pub ptr: *const u8,
    /// Number of bytes.
    pub len: usize,
}

impl DfSlice {
    /// A slice over `bytes` (for hosts written in Rust, benches and tests).
    pub fn new(bytes: &[u8]) -> DfSlice {
        DfSlice {
            ptr: bytes.as_ptr(),
            len: bytes.len(),
        }
    }

    /// The absent slice (NULL, 0).
    pub const fn null() -> DfSlice {
        DfSlice {
            ptr: ptr::null(),
            len: 0,
        }
    }

    /// The bytes; NULL with length 0 reads as empty.
    ///
    /// # Safety
    /// `ptr` must be NULL or valid for reads of `len` bytes for the lifetime `'a`.
    pub(crate) unsafe fn bytes<'a>(self, what: &str) -> Result<&'a [u8], Error> {
        if self.ptr.is_null() {
            if self.len != 0 {
                return Err(bad_arg(format!(
                    "{what}: NULL pointer with length {}",
                    self.len
                )));
            }
            return Ok(&[]);
        }
        // SAFETY: `ptr` is non-NULL and, per this function's contract, valid for `len` bytes
        // during `'a`.
        Ok(unsafe { std::slice::from_raw_parts(self.ptr, self.len) })
    }

    /// The bytes as UTF-8.
    ///
    /// # Safety
    /// As for [`DfSlice::bytes`].
    pub(crate) unsafe fn str<'a>(self, what: &str) -> Result<&'a str, Error> {
        // SAFETY: forwarded contract.
        let b = unsafe { self.bytes(what) }?;
        std::str::from_utf8(b).map_err(|e| bad_arg(format!("{what} is not UTF-8: {e}")))
    }

    /// `None` when `ptr` is NULL, else the UTF-8 string.
    ///
    /// # Safety
    /// As for [`DfSlice::bytes`].
    pub(crate) unsafe fn opt_str<'a>(self, what: &str) -> Result<Option<&'a str>, Error> {
        if self.ptr.is_null() {
            // Reject (NULL, n > 0) as in `bytes`.
            // SAFETY: a NULL pointer is never dereferenced by `bytes`.
            unsafe { self.bytes(what) }?;
            return Ok(None);
        }
        // SAFETY: forwarded contract.
        unsafe { self.str(what) }.map(Some)
    }
}

/// An owned byte buffer allocated by the library. Release it with `df_buffer_free`, and only
/// with that (never `free()`).
///
/// A present buffer always has a non-NULL `ptr`, even when `len` is 0 (then `ptr` must not be
/// dereferenced). `ptr == NULL` means "absent" (an optional field that is not set) or
/// "released". `cap` is the allocation size; hosts must not change any field.
#[repr(C)]
#[derive(Debug)]
pub struct DfBuffer {
    /// First byte.
    pub ptr: *mut u8,
    /// Number of valid bytes.
    pub len: usize,
    /// Allocated capacity (internal; pass it back unchanged).
    pub cap: usize,
}

impl DfBuffer {
    /// The absent buffer.
    pub const fn null() -> DfBuffer {
        DfBuffer {
            ptr: ptr::null_mut(),
            len: 0,
            cap: 0,
        }
    }

    /// Hands `v` over to the host.
    pub fn from_vec(v: Vec<u8>) -> DfBuffer {
        let mut v = std::mem::ManuallyDrop::new(v);
        DfBuffer {
            ptr: v.as_mut_ptr(),
            len: v.len(),
            cap: v.capacity(),
        }
    }

    pub(crate) fn from_opt(s: Option<String>) -> DfBuffer {
        s.map_or(DfBuffer::null(), |s| DfBuffer::from_vec(s.into_bytes()))
    }

    /// Takes the allocation back (NULL gives an empty vector) and leaves `self` absent.
    ///
    /// # Safety
    /// `self` must be absent or have been produced by [`DfBuffer::from_vec`] and not changed.
    pub unsafe fn take_vec(&mut self) -> Vec<u8> {
        let b = std::mem::replace(self, DfBuffer::null());
        if b.ptr.is_null() {
            return Vec::new();
        }
        // SAFETY: (ptr, len, cap) come from a `Vec<u8>` leaked by `from_vec`, per the contract.
        unsafe { Vec::from_raw_parts(b.ptr, b.len, b.cap) }
    }

    /// The bytes, for hosts written in Rust.
    ///
    /// # Safety
    /// `self` must be absent or a live buffer produced by this library.
    pub unsafe fn as_slice(&self) -> &[u8] {
        if self.ptr.is_null() {
            return &[];
        }
        // SAFETY: a live buffer owns `len` initialised bytes at `ptr`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// A borrowed key/value pair (request headers, call headers, failure metadata).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DfKeyValue {
    /// The key (UTF-8).
    pub key: DfSlice,
    /// The value (UTF-8).
    pub value: DfSlice,
}

/// An owned key/value pair, part of a struct released by its own `df_*_free`.
#[repr(C)]
#[derive(Debug)]
pub struct DfOwnedKeyValue {
    /// The key.
    pub key: DfBuffer,
    /// The value.
    pub value: DfBuffer,
}

/// Hands a vector of pairs to the host as `(ptr, len)`; released by [`free_pairs`].
pub(crate) fn pairs_into_raw(v: Vec<(String, String)>) -> (*mut DfOwnedKeyValue, usize) {
    let boxed: Box<[DfOwnedKeyValue]> = v
        .into_iter()
        .map(|(k, v)| DfOwnedKeyValue {
            key: DfBuffer::from_vec(k.into_bytes()),
            value: DfBuffer::from_vec(v.into_bytes()),
        })
        .collect();
    let len = boxed.len();
    (Box::into_raw(boxed).cast::<DfOwnedKeyValue>(), len)
}

/// Releases what [`pairs_into_raw`] produced; NULL is a no-op.
///
/// # Safety
/// `(ptr, len)` must be NULL or come unchanged from [`pairs_into_raw`], released once.
pub(crate) unsafe fn free_pairs(ptr: *mut DfOwnedKeyValue, len: usize) {
    if ptr.is_null() {
        return;
    }
    // SAFETY: `(ptr, len)` is a boxed slice leaked by `pairs_into_raw`.
    let mut boxed = unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(ptr, len)) };
    for kv in boxed.iter_mut() {
        // SAFETY: both buffers were made by `DfBuffer::from_vec`.
        unsafe {
            drop(kv.key.take_vec());
            drop(kv.value.take_vec());
        }
    }
}

/// Hands a vector of buffers to the host as `(ptr, len)`; released by [`free_buffers`].
pub(crate) fn buffers_into_raw(v: Vec<Vec<u8>>) -> (*mut DfBuffer, usize) {
    let boxed: Box<[DfBuffer]> = v.into_iter().map(DfBuffer::from_vec).collect();
    let len = boxed.len();
    (Box::into_raw(boxed).cast::<DfBuffer>(), len)
}

/// Releases what [`buffers_into_raw`] produced; NULL is a no-op.
///
/// # Safety
/// `(ptr, len)` must be NULL or come unchanged from [`buffers_into_raw`], released once.
pub(crate) unsafe fn free_buffers(ptr: *mut DfBuffer, len: usize) {
    if ptr.is_null() {
        return;
    }
    // SAFETY: `(ptr, len)` is a boxed slice leaked by `buffers_into_raw`.
    let mut boxed = unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(ptr, len)) };
    for b in boxed.iter_mut() {
        // SAFETY: each buffer was made by `DfBuffer::from_vec`.
        drop(unsafe { b.take_vec() });
    }
}

/// Reads a borrowed array of pairs.
///
/// # Safety
/// `ptr` must be NULL (with `len` 0) or valid for `len` reads, and every slice in it valid.
pub(crate) unsafe fn read_pairs(
    ptr: *const DfKeyValue,
    len: usize,
    what: &str,
) -> Result<Vec<(String, String)>, Error> {
    // SAFETY: forwarded contract.
    let items = unsafe { read_array(ptr, len, what) }?;
    items
        .iter()
        .map(|kv| {
            // SAFETY: forwarded contract: the slices inside the array are valid.
            let (k, v) = unsafe { (kv.key.str(what)?, kv.value.str(what)?) };
            Ok((k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// Reads a borrowed array.
///
/// # Safety
/// `ptr` must be NULL (with `len` 0) or valid for `len` reads of `T` during `'a`.
pub(crate) unsafe fn read_array<'a, T>(
    ptr: *const T,
    len: usize,
    what: &str,
) -> Result<&'a [T], Error> {
    if ptr.is_null() {
        if len != 0 {
            return Err(bad_arg(format!("{what}: NULL pointer with length {len}")));
        }
        return Ok(&[]);
    }
    // SAFETY: non-NULL and, per the contract, valid for `len` elements during `'a`.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Status codes returned by every `df_*` function that can fail. They are the core's error
/// codes, number for number; 0 is success. A VM closed by the host's own `df_vm_notify_error`
/// reports the code the host chose, which may be outside this list.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DfCode {
    /// Success.
    Ok = 0,
    /// Bad argument: NULL pointer, invalid UTF-8, unknown handle or enum value, bad
    /// awakeable id, a selector inside a combinator, ...
    BadRequest = 400,
    /// The invocation was cancelled.
    Cancelled = 409,
    /// The content type is not a supported protocol version.
    UnsupportedMediaType = 415,
    /// Internal error; also a panic caught at the boundary ("panic: …").
    Internal = 500,
    /// Journal mismatch (non-determinism); the message names the entry.
    JournalMismatch = 570,
    /// Protocol violation by the peer.
    ProtocolViolation = 571,
    /// The feature needs a newer protocol version.
    UnsupportedFeature = 573,
    /// The VM is closed (suspended, failed or ended).
    Closed = 598,
    /// The attempt suspended (marker; `df_vm_do_await` reports suspension as an outcome).
    Suspended = 599,
}

const _: () = {
    assert!(DfCode::BadRequest as i32 == codes::BAD_REQUEST as i32);
    assert!(DfCode::Cancelled as i32 == codes::CANCELLED as i32);
    assert!(DfCode::UnsupportedMediaType as i32 == codes::UNSUPPORTED_MEDIA_TYPE as i32);
    assert!(DfCode::Internal as i32 == codes::INTERNAL as i32);
    assert!(DfCode::JournalMismatch as i32 == codes::JOURNAL_MISMATCH as i32);
    assert!(DfCode::ProtocolViolation as i32 == codes::PROTOCOL_VIOLATION as i32);
    assert!(DfCode::UnsupportedFeature as i32 == codes::UNSUPPORTED_FEATURE as i32);
    assert!(DfCode::Closed as i32 == codes::CLOSED as i32);
    assert!(DfCode::Suspended as i32 == codes::SUSPENDED as i32);
};

/// Well-known handles.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DfWellKnownHandle {
    /// The cancellation signal of the invocation (signal 1); it exists in every VM.
    Cancel = 0,
}

const _: () = assert!(DfWellKnownHandle::Cancel as u32 == durable_futures_core::CANCEL_HANDLE.0);

/// Where the VM is in its life (`df_vm_state`).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DfState {
    /// No `StartMessage` yet.
    WaitingStart = 0,
    /// Receiving the recorded journal.
    WaitingReplayEntries = 1,
    /// The handler runs; its commands are checked against the journal.
    Replaying = 2,
    /// The handler runs; its commands are new.
    Processing = 3,
    /// Ended, suspended or failed.
    Closed = 4,
}

/// The kind of a value taken with `df_vm_take_notification`.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DfValueKind {
    /// Nothing: the handle has not completed, or its value was taken already.
    None = 0,
    /// Completed without a value (a timer, an absent state key, ...).
    Void = 1,
    /// A value: `bytes` holds it.
    Value = 2,
    /// A terminal failure: `failure_code`, message in `bytes`, `metadata`.
    Failure = 3,
    /// An invocation id (of a call or one-way call): `bytes` holds it.
    InvocationId = 4,
    /// State keys: `items` holds them.
    StateKeys = 5,
}

/// What `df_vm_do_await` / `df_vm_select_next` found.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DfAwaitKind {
    /// The awaited handle completed (`df_vm_do_await`).
    Ready = 0,
    /// `handle` is the next child in completion order (`df_vm_select_next`).
    Selected = 1,
    /// Every child of the selector was handed out already.
    Exhausted = 2,
    /// The invocation was cancelled: surface a terminal error 409 to the handler. Once.
    Cancelled = 3,
    /// Nothing can progress now: feed input (if `waiting_input`) or finish an executing
    /// run and propose its result (if `waiting_runs`), then call again.
    Pending = 4,
    /// The VM wrote a `SuspensionMessage` and closed: take the output and stop.
    Suspended = 5,
}

/// Combinator kinds for `df_vm_combinator`.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DfCombinatorKind {
    /// Resolves when the first child completes (success or failure).
    FirstCompleted = 0,
    /// Resolves when every child completed; never fails.
    AllCompleted = 1,
    /// Resolves with the first success, or fails when every child failed.
    FirstSucceededOrAllFailed = 2,
    /// Resolves when all succeeded, or fails with the first failure.
    AllSucceededOrFirstFailed = 3,
}

/// Retry policy kinds for `DfRetryPolicy.kind`.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DfRetryKind {
    /// Retry forever with the runtime's default delay.
    Infinite = 0,
    /// Never retry: the first retryable failure becomes a terminal failure.
    None = 1,
    /// Fixed delay (`interval_ms`) between attempts.
    FixedDelay = 2,
    /// Delay `interval_ms * factor^(attempt-1)`, capped by `max_interval_ms`.
    Exponential = 3,
}

/// What happens when a run's retries are exhausted (`DfRetryPolicy.on_max`).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DfOnMaxAttempts {
    /// The run completes with a terminal failure, which the handler sees.
    Fail = 0,
    /// The invocation is paused (protocol V7 only).
    Pause = 1,
}

/// `DfVmOptions.journal_mismatch_behavior` (V7 `ErrorMessage.behavior`).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DfErrorBehavior {
    /// The runtime retries the invocation.
    Retry = 0,
    /// The runtime pauses the invocation.
    Pause = 1,
    /// The runtime fails the invocation.
    Fail = 2,
}

/// `DfVmOptions.awaiting_on`: when to send the V7 `AwaitingOnMessage` hint.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DfAwaitingOn {
    /// Whenever the handler waits for input.
    Always = 0,
    /// Whenever the handler waits for input and no run is executing.
    UnlessRunExecuting = 1,
    /// Never.
    Never = 2,
}

/// Options of a VM; fill with `df_vm_options_default`, then change fields.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DfVmOptions {
    /// Every await also waits for the cancel signal and reports it (default true).
    pub implicit_cancellation: bool,
    /// On cancellation, cancel child calls still running (default true).
    pub cancel_child_calls: bool,
    /// On cancellation, cancel one-way calls too (default false).
    pub cancel_child_sends: bool,
    /// Compare payloads on replay (default true).
    pub payload_checks: bool,
    /// A `DfErrorBehavior` for journal mismatches on V7 (default retry).
    pub journal_mismatch_behavior: u32,
    /// A `DfAwaitingOn` (default unless-run-executing).
    pub awaiting_on: u32,
    /// Largest accepted frame payload, in bytes.
    pub max_frame_len: u32,
}

/// A terminal failure passed by the host (run failure, handler failure, awakeable rejection).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DfFailure {
    /// Failure code (HTTP-like: 500, 409, ...).
    pub code: u32,
    /// Message (UTF-8).
    pub message: DfSlice,
    /// Metadata pairs (protocol V6+); may be NULL when `metadata_len` is 0.
    pub metadata: *const DfKeyValue,
    /// Number of metadata pairs.
    pub metadata_len: usize,
}

/// The callee of `df_vm_sys_call` / `df_vm_sys_send`. Optional fields are absent when their
/// `ptr` is NULL.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DfTarget {
    /// Service name.
    pub service: DfSlice,
    /// Handler name.
    pub handler: DfSlice,
    /// Virtual object / workflow key (optional).
    pub key: DfSlice,
    /// Idempotency key (optional; must not be empty when present).
    pub idempotency_key: DfSlice,
    /// Headers passed to the callee; may be NULL when `headers_len` is 0.
    pub headers: *const DfKeyValue,
    /// Number of headers.
    pub headers_len: usize,
    /// Scope (optional, V7).
    pub scope: DfSlice,
    /// Limit key (optional, V7).
    pub limit_key: DfSlice,
}

/// How a run is retried after a retryable failure (`df_vm_propose_run_retryable_failure`).
/// The `has_*` flags say whether the optional field next to them is set.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DfRetryPolicy {
    /// A `DfRetryKind`.
    pub kind: u32,
    /// Fixed delay: the delay between attempts (optional; unset leaves it to the runtime).
    /// Exponential: the first delay (required).
    pub interval_ms: u64,
    /// Whether `interval_ms` is set.
    pub has_interval: bool,
    /// Exponential: growth factor per attempt.
    pub factor: f64,
    /// Exponential: upper bound of the delay.
    pub max_interval_ms: u64,
    /// Whether `max_interval_ms` is set.
    pub has_max_interval: bool,
    /// Attempts in total, the first one included.
    pub max_attempts: u32,
    /// Whether `max_attempts` is set.
    pub has_max_attempts: bool,
    /// Total time spent retrying, in ms.
    pub max_duration_ms: u64,
    /// Whether `max_duration_ms` is set.
    pub has_max_duration: bool,
    /// A `DfOnMaxAttempts`.
    pub on_max: u32,
}

/// The invocation's input, filled by `df_vm_sys_input`; release with `df_input_free`.
/// Optional strings are absent when their `ptr` is NULL.
#[repr(C)]
#[derive(Debug)]
pub struct DfInput {
    /// Printable invocation id (`inv_…`).
    pub invocation_id: DfBuffer,
    /// Raw invocation id bytes.
    pub raw_invocation_id: DfBuffer,
    /// Virtual object / workflow key (empty for services).
    pub key: DfBuffer,
    /// The input payload.
    pub input: DfBuffer,
    /// Seed for deterministic randomness.
    pub random_seed: u64,
    /// Headers of the original request.
    pub headers: *mut DfOwnedKeyValue,
    /// Number of headers.
    pub headers_len: usize,
    /// Idempotency key of the invocation (optional, V7).
    pub idempotency_key: DfBuffer,
    /// Scope (optional, V7).
    pub scope: DfBuffer,
    /// Limit key (optional, V7).
    pub limit_key: DfBuffer,
}

impl DfInput {
    /// An input holding nothing (every buffer absent).
    pub const fn empty() -> DfInput {
        DfInput {
            invocation_id: DfBuffer::null(),
            raw_invocation_id: DfBuffer::null(),
            key: DfBuffer::null(),
            input: DfBuffer::null(),
            random_seed: 0,
            headers: ptr::null_mut(),
            headers_len: 0,
            idempotency_key: DfBuffer::null(),
            scope: DfBuffer::null(),
            limit_key: DfBuffer::null(),
        }
    }
}

/// A notification value, filled by `df_vm_take_notification`; release with
/// `df_value_free`.
#[repr(C)]
#[derive(Debug)]
pub struct DfValue {
    /// A `DfValueKind`.
    pub kind: u32,
    /// The failure code when `kind` is failure, else 0.
    pub failure_code: u32,
    /// Value payload, failure message or invocation id; absent otherwise.
    pub bytes: DfBuffer,
    /// State keys when `kind` is state-keys; NULL otherwise.
    pub items: *mut DfBuffer,
    /// Number of state keys.
    pub items_len: usize,
    /// Failure metadata when `kind` is failure; NULL otherwise.
    pub metadata: *mut DfOwnedKeyValue,
    /// Number of metadata pairs.
    pub metadata_len: usize,
}

impl DfValue {
    /// The "nothing" value.
    pub const fn none() -> DfValue {
        DfValue {
            kind: DfValueKind::None as u32,
            failure_code: 0,
            bytes: DfBuffer::null(),
            items: ptr::null_mut(),
            items_len: 0,
            metadata: ptr::null_mut(),
            metadata_len: 0,
        }
    }
}

/// The result of `df_vm_do_await` and `df_vm_select_next`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DfAwaitResult {
    /// A `DfAwaitKind`.
    pub kind: u32,
    /// The selected child when `kind` is selected; 0 otherwise.
    pub handle: DfHandle,
    /// Pending only: more input may arrive.
    pub waiting_input: bool,
    /// Pending only: a run is executing.
    pub waiting_runs: bool,
}

/// How a combinator resolved (`df_vm_outcome`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DfOutcome {
    /// Whether the combinator has resolved; the other fields are meaningful only then.
    pub completed: bool,
    /// False when it failed (first-succeeded with all failed, all-succeeded with a failure).
    pub succeeded: bool,
    /// Whether `decided_by` is set.
    pub has_decided_by: bool,
    /// The child that decided the outcome (winner, or the failed child).
    pub decided_by: DfHandle,
}

/// The error for a bad argument (code 400).
pub(crate) fn bad_arg(message: impl Into<String>) -> Error {
    Error::new(codes::BAD_REQUEST, message)
}
