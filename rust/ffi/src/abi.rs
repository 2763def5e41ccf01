//! The `extern "C"` functions. Each body runs inside [`call`] / [`call_vm`]: panics become
//! code 500 ("panic: …"), errors become their core code and are remembered as the last error
//! of the VM and of the calling thread.

use std::ptr;

use bytes::Bytes;
use durable_futures_core::{
    codes, CommandResult, Error, Handle, RetryPolicy, RunExit, State, Version, Vm, VmOptions,
};

use crate::convert::{
    await_to_c, combinator_from_c, failure_from_c, input_to_c, options_from_c, options_to_c,
    policy_from_c, select_to_c, target_from_c, value_to_c,
};
use crate::guard::{call, call_vm, code_of, thread_error, write_out, DfVm};
use crate::types::{
    bad_arg, free_buffers, free_pairs, read_array, DfAwaitResult, DfBuffer, DfFailure, DfHandle,
    DfInput, DfKeyValue, DfOnMaxAttempts, DfOutcome, DfRetryKind, DfRetryPolicy, DfSlice, DfState,
    DfTarget, DfValue, DfVmOptions,
};

fn new_vm(content_type: &str, options: VmOptions) -> Result<*mut DfVm, Error> {
    let vm = Vm::new(content_type, options)?;
    Ok(Box::into_raw(Box::new(DfVm {
        vm,
        last_error: None,
        poisoned: false,
    })))
}

/// Copies an error message into `out` (if non-NULL) and returns the error's code.
///
/// # Safety
/// `out` must be NULL or valid for writes of a `DfBuffer`.
unsafe fn report(error: Option<Error>, out: *mut DfBuffer) -> i32 {
    let (code, message) = match error {
        Some(e) => (code_of(&e), e.message),
        None => (0, String::new()),
    };
    if !out.is_null() {
        // SAFETY: non-NULL and valid for writes per the contract.
        unsafe { out.write(DfBuffer::from_vec(message.into_bytes())) };
    }
    code
}

// ---- library -----------------------------------------------------------------------------

/// The version of this library (the workspace version, e.g. "0.1.0"), as a static
/// NUL-terminated string. Never free it.
#[no_mangle]
pub extern "C" fn df_version() -> *const std::ffi::c_char {
    // The only body without `call`: it returns a pointer to a literal and cannot panic.
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// Copies the message of the last error raised on the calling thread (by any VM or by a
/// function without one, such as `df_vm_new`) into `*out` and returns its code; returns 0
/// and an empty message when there was none. `out` may be NULL to get only the code.
/// Release `*out` with `df_buffer_free`.
///
/// # Safety
/// `out` must be NULL or valid for writes of a `DfBuffer` that holds no unreleased buffer.
#[no_mangle]
pub unsafe extern "C" fn df_last_error_message(out: *mut DfBuffer) -> i32 {
    let mut code = 0;
    let status = call(|| {
        // SAFETY: forwarded contract.
        code = unsafe { report(thread_error(), out) };
        Ok(())
    });
    if status != 0 {
        status
    } else {
        code
    }
}

/// Releases a buffer produced by this library and resets it to absent (ptr NULL), so a
/// second call is harmless. NULL `buf`, and a buffer whose `ptr` is NULL, are no-ops.
///
/// # Safety
/// `buf` must be NULL or point to a `DfBuffer` that is absent or was filled by this library
/// and not modified since.
#[no_mangle]
pub unsafe extern "C" fn df_buffer_free(buf: *mut DfBuffer) {
    call(|| {
        // SAFETY: forwarded contract.
        if let Some(b) = unsafe { buf.as_mut() } {
            // SAFETY: the buffer is absent or came from `DfBuffer::from_vec` unchanged.
            drop(unsafe { b.take_vec() });
        }
        Ok(())
    });
}

/// Releases everything a `DfInput` owns and resets it (every buffer absent). NULL is a no-op,
/// and so is a second call.
///
/// # Safety
/// `input` must be NULL or point to a `DfInput` that is empty or was filled by
/// `df_vm_sys_input` and not modified since.
#[no_mangle]
pub unsafe extern "C" fn df_input_free(input: *mut DfInput) {
    call(|| {
        // SAFETY: forwarded contract.
        let Some(i) = (unsafe { input.as_mut() }) else {
            return Ok(());
        };
        let mut i = std::mem::replace(i, DfInput::empty());
        // SAFETY: every buffer and the header array were produced by this library.
        unsafe {
            for b in [
                &mut i.invocation_id,
                &mut i.raw_invocation_id,
                &mut i.key,
                &mut i.input,
                &mut i.idempotency_key,
                &mut i.scope,
                &mut i.limit_key,
            ] {
                drop(b.take_vec());
            }
            free_pairs(i.headers, i.headers_len);
        }
        Ok(())
    });
}

/// Releases everything a `DfValue` owns and resets it to kind none. NULL is a no-op, and so
/// is a second call.
///
/// # Safety
/// `value` must be NULL or point to a `DfValue` that is none or was filled by
/// `df_vm_take_notification` and not modified since.
#[no_mangle]
pub unsafe extern "C" fn df_value_free(value: *mut DfValue) {
    call(|| {
        // SAFETY: forwarded contract.
        let Some(v) = (unsafe { value.as_mut() }) else {
            return Ok(());
        };
        let mut v = std::mem::replace(v, DfValue::none());
        // SAFETY: the buffer and arrays were produced by this library.
        unsafe {
            drop(v.bytes.take_vec());
            free_buffers(v.items, v.items_len);
            free_pairs(v.metadata, v.metadata_len);
        }
        Ok(())
    });
}

// ---- lifecycle ---------------------------------------------------------------------------

/// Fills `*out` with the default VM options.
///
/// # Safety
/// `out` must be NULL (error 400) or valid for writes of a `DfVmOptions`.
#[no_mangle]
pub unsafe extern "C" fn df_vm_options_default(out: *mut DfVmOptions) -> i32 {
    call(|| {
        // SAFETY: forwarded contract.
        unsafe { write_out(out, "out", options_to_c(&VmOptions::default())) }
    })
}

/// Creates a VM for a request whose `content-type` header is `content_type`
/// (`application/vnd.restate.invocation.v5` to `v7`), with default options. On success
/// `*out` holds the VM (release it with `df_vm_free`); on failure `*out` is NULL and the
/// code is 415 (unsupported content type) or 400.
///
/// # Safety
/// `content_type` must be a valid slice; `out` must be valid for writes of a pointer.
#[no_mangle]
pub unsafe extern "C" fn df_vm_new(content_type: DfSlice, out: *mut *mut DfVm) -> i32 {
    // SAFETY: forwarded contract.
    unsafe { df_vm_new_with_options(content_type, ptr::null(), out) }
}

/// Like `df_vm_new`, with options (`options` may be NULL for the defaults).
///
/// # Safety
/// `content_type` must be a valid slice; `options` NULL or valid for reads; `out` valid for
/// writes of a pointer.
#[no_mangle]
pub unsafe extern "C" fn df_vm_new_with_options(
    content_type: DfSlice,
    options: *const DfVmOptions,
    out: *mut *mut DfVm,
) -> i32 {
    call(|| {
        // SAFETY: forwarded contract.
        unsafe {
            write_out(out, "out", ptr::null_mut())?;
            let ct = content_type.str("content_type")?;
            let opts = match options.as_ref() {
                Some(o) => options_from_c(o)?,
                None => VmOptions::default(),
            };
            out.write(new_vm(ct, opts)?);
        }
        Ok(())
    })
}

/// Creates a VM from the request's headers: the `content-type` header (matched without
/// regard to case) selects the protocol version; a missing one is error 415. `options` may be
/// NULL for the defaults. On failure `*out` is NULL.
///
/// # Safety
/// `headers` must be NULL (with `headers_len` 0) or valid for `headers_len` reads, each
/// slice valid; `options` NULL or valid for reads; `out` valid for writes of a pointer.
#[no_mangle]
pub unsafe extern "C" fn df_vm_new_from_headers(
    headers: *const DfKeyValue,
    headers_len: usize,
    options: *const DfVmOptions,
    out: *mut *mut DfVm,
) -> i32 {
    call(|| {
        // SAFETY: forwarded contract.
        unsafe {
            write_out(out, "out", ptr::null_mut())?;
            // Only the content-type must be UTF-8: other headers may hold any bytes.
            let mut ct = None;
            for h in read_array(headers, headers_len, "headers")? {
                if h.key
                    .bytes("header name")?
                    .eq_ignore_ascii_case(b"content-type")
                {
                    ct = Some(h.value.str("content-type")?);
                    break;
                }
            }
            let Some(ct) = ct else {
                return Err(Error::new(
                    codes::UNSUPPORTED_MEDIA_TYPE,
                    "the request has no content-type header",
                ));
            };
            let opts = match options.as_ref() {
                Some(o) => options_from_c(o)?,
                None => VmOptions::default(),
            };
            out.write(new_vm(ct, opts)?);
        }
        Ok(())
    })
}

/// Frees a VM. NULL is a no-op. The handle must not be used afterwards; buffers, inputs and
/// values already handed out stay valid until their own free.
///
/// # Safety
/// `vm` must be NULL or a live VM from `df_vm_new*`, freed once, with no call on it running.
#[no_mangle]
pub unsafe extern "C" fn df_vm_free(vm: *mut DfVm) {
    call(|| {
        if !vm.is_null() {
            // SAFETY: `vm` came from `Box::into_raw` in `new_vm` and is freed once.
            drop(unsafe { Box::from_raw(vm) });
        }
        Ok(())
    });
}

/// Copies the message of the last error of this VM into `*out` and returns its code; 0 and
/// an empty message if no call on it failed. The last error is the error of the most recent
/// failing call on the VM; when none failed, the error that closed the VM (if any). `out`
/// may be NULL to get only the code. Release `*out` with `df_buffer_free`.
///
/// # Safety
/// `vm` must be NULL (returns 400) or live; `out` NULL or valid for writes of a `DfBuffer`
/// holding no unreleased buffer.
#[no_mangle]
pub unsafe extern "C" fn df_vm_last_error(vm: *mut DfVm, out: *mut DfBuffer) -> i32 {
    let mut code = 0;
    // Not `call_vm`: this must work on a VM poisoned by a panic, to read the panic message,
    // and must not overwrite the last error it reports.
    let status = call(|| {
        // SAFETY: forwarded contract: NULL or live, not aliased during the call.
        let Some(v) = (unsafe { vm.as_ref() }) else {
            return Err(bad_arg("vm is NULL"));
        };
        let e = v.last_error.clone().or_else(|| v.vm.last_error().cloned());
        // SAFETY: forwarded contract.
        code = unsafe { report(e, out) };
        Ok(())
    });
    if status != 0 {
        status
    } else {
        code
    }
}

/// The `content-type` of the response (the negotiated protocol version) as a borrowed
/// static string in `*out`; do not free it.
///
/// # Safety
/// `vm` must be NULL (400) or live; `out` valid for writes of a `DfSlice`.
#[no_mangle]
pub unsafe extern "C" fn df_vm_response_content_type(vm: *mut DfVm, out: *mut DfSlice) -> i32 {
    // SAFETY: forwarded contract.
    unsafe {
        call_vm(vm, |v| {
            let ct = v.vm.response_content_type();
            write_out(out, "out", DfSlice::new(ct.as_bytes()))
        })
    }
}

/// The VM's state, a `DfState`, in `*out`.
///
/// # Safety
/// `vm` must be NULL (400) or live; `out` valid for writes.
#[no_mangle]
pub unsafe extern "C" fn df_vm_state(vm: *mut DfVm, out: *mut u32) -> i32 {
    // SAFETY: forwarded contract.
    unsafe {
        call_vm(vm, |v| {
            let s = match v.vm.state() {
                State::WaitingStart => DfState::WaitingStart,
                State::WaitingReplayEntries => DfState::WaitingReplayEntries,
                State::Replaying => DfState::Replaying,
                State::Processing => DfState::Processing,
                State::Closed => DfState::Closed,
            };
            write_out(out, "out", s as u32)
        })
    }
}

// ---- input and output --------------------------------------------------------------------

/// Feeds bytes received from the runtime; any chunking is fine. Returns the error that
/// closed the VM while decoding these bytes (571 for a bad frame, ...), else 0. Input fed to
/// an already closed VM is ignored.
///
/// # Safety
/// `vm` must be NULL (400) or live; `bytes` a valid slice.
#[no_mangle]
pub unsafe extern "C" fn df_vm_notify_input(vm: *mut DfVm, bytes: DfSlice) -> i32 {
    // SAFETY: forwarded contract.
    unsafe {
        call_vm(vm, |v| {
            let b = bytes.bytes("bytes")?;
            let was_closed = v.vm.state() == State::Closed;
            v.vm.notify_input(b);
            newly_failed(v, was_closed)
        })
    }
}

fn newly_failed(v: &DfVm, was_closed: bool) -> Result<(), Error> {
    match v.vm.last_error() {
        Some(e) if !was_closed => Err(e.clone()),
        _ => Ok(()),
    }
}

/// The runtime closed its side of the stream. Returns the error if this closed the VM
/// (the stream ended inside a frame or before the journal was complete: 571), else 0.
///
/// # Safety
/// `vm` must be NULL (400) or live.
#[no_mangle]
pub unsafe extern "C" fn df_vm_notify_input_closed(vm: *mut DfVm) -> i32 {
    // SAFETY: forwarded contract.
    unsafe {
        call_vm(vm, |v| {
            let was_closed = v.vm.state() == State::Closed;
            v.vm.notify_input_closed();
            newly_failed(v, was_closed)
        })
    }
}

/// The handler failed with a retryable error: writes an `ErrorMessage` with `code` (a core
/// code or any code of the host's choosing), `message` and `stacktrace`, and closes the VM.
/// Later calls return this error.
///
/// # Safety
/// `vm` must be NULL (400) or live; the slices valid.
#[no_mangle]
pub unsafe extern "C" fn df_vm_notify_error(
    vm: *mut DfVm,
    code: u16,
    message: DfSlice,
    stacktrace: DfSlice,
) -> i32 {
    // SAFETY: forwarded contract.
    unsafe {
        call_vm(vm, |v| {
            let e = Error::new(code, message.str("message")?)
                .with_stacktrace(stacktrace.str("stacktrace")?);
            v.vm.notify_error(e);
            Ok(())
        })
    }
}

/// Moves everything the VM wrote so far into `*out` (an empty buffer when there is nothing
/// new). Send it to the runtime, then release it with `df_buffer_free`. Works on a closed VM
/// too: that is how the final `EndMessage`, `SuspensionMessage` or `ErrorMessage` is taken.
///
/// # Safety
/// `vm` must be NULL (400) or live; `out` valid for writes of a `DfBuffer` holding no
/// unreleased buffer.
#[no_mangle]
pub unsafe extern "C" fn df_vm_take_output(vm: *mut DfVm, out: *mut DfBuffer) -> i32 {
    // SAFETY: forwarded contract.
    unsafe {
        call_vm(vm, |v| {
            write_out(out, "out", DfBuffer::null())?;
            out.write(DfBuffer::from_vec(v.vm.take_output()));
            Ok(())
        })
    }
}

/// Whether output is waiting to be taken, in `*out`.
///
/// # Safety
/// `vm` must be NULL (400) or live; `out` valid for writes.
#[no_mangle]
pub unsafe extern "C" fn df_vm_has_output(vm: *mut DfVm, out: *mut bool) -> i32 {
    // SAFETY: forwarded contract.
    unsafe { call_vm(vm, |v| write_out(out, "out", v.vm.has_output())) }
}

/// Whether the handler can start (the whole recorded journal was received), in `*out`.
/// Returns the error if the VM failed before that (e.g. 571).
///
/// # Safety
/// `vm` must be NULL (400) or live; `out` valid for writes.
#[no_mangle]
pub unsafe extern "C" fn df_vm_is_ready_to_execute(vm: *mut DfVm, out: *mut bool) -> i32 {
    // SAFETY: forwarded contract.
    unsafe {
        call_vm(vm, |v| {
            write_out(out, "out", false)?;
            out.write(v.vm.is_ready_to_execute()?);
            Ok(())
        })
    }
}

/// Whether the handler is re-executing recorded commands, in `*out`.
///
/// # Safety
/// `vm` must be NULL (400) or live; `out` valid for writes.
#[no_mangle]
pub unsafe extern "C" fn df_vm_is_replaying(vm: *mut DfVm, out: *mut bool) -> i32 {
    // SAFETY: forwarded contract.
    unsafe { call_vm(vm, |v| write_out(out, "out", v.vm.is_replaying())) }
}

// ---- input, output, end ------------------------------------------------------------------

/// Replays the input command and fills `*out` with the invocation's input (payload,
/// invocation id, key, headers, random seed, ...). Release it with `df_input_free`. On
/// failure `*out` is left empty.
///
/// # Safety
/// `vm` must be NULL (400) or live; `out` valid for writes of a `DfInput` holding nothing
/// unreleased.
#[no_mangle]
pub unsafe extern "C" fn df_vm_sys_input(vm: *mut DfVm, out: *mut DfInput) -> i32 {
    // SAFETY: forwarded contract.
    unsafe {
        call_vm(vm, |v| {
            write_out(out, "out", DfInput::empty())?;
            out.write(input_to_c(v.vm.sys_input()?));
            Ok(())
        })
    }
}

/// Journals the handler's successful result (`value`, the serialized output).
///
/// # Safety
/// `vm` must be NULL (400) or live; `value` a valid slice.
#[no_mangle]
pub unsafe extern "C" fn df_vm_sys_write_output_success(vm: *mut DfVm, value: DfSlice) -> i32 {
    // SAFETY: forwarded contract.
    unsafe {
        call_vm(vm, |v| {
            let b = Bytes::copy_from_slice(value.bytes("value")?);
            v.vm.sys_write_output(CommandResult::Value(b))
        })
    }
}

/// Journals the handler's terminal failure.
///
/// # Safety
/// `vm` must be NULL (400) or live; `failure` NULL (400) or valid, with valid slices.
#[no_mangle]
pub unsafe extern "C" fn df_vm_sys_write_output_failure(
    vm: *mut DfVm,
    failure: *const DfFailure,
) -> i32 {
    // SAFETY: forwarded contract.
    unsafe {
        call_vm(vm, |v| {
            let f = failure.as_ref().ok_or_else(|| bad_arg("failure is NULL"))?;
            v.vm.sys_write_output(CommandResult::Failure(failure_from_c(f)?))
        })
    }
}

/// Ends the invocation: writes `EndMessage` and closes. Harmless on a closed VM. While
/// replaying (the journal records more commands) it is a journal mismatch (570).
///
/// # Safety
/// `vm` must be NULL (400) or live.
#[no_mangle]
pub unsafe extern "C" fn df_vm_sys_end(vm: *mut DfVm) -> i32 {
    // SAFETY: forwarded contract.
    unsafe { call_vm(vm, |v| v.vm.sys_end()) }
}

// ---- runs --------------------------------------------------------------------------------

/// Journals a run named `name`: `*out_handle` completes with its result. When
/// `*out_replayed` is false the host must execute the closure (at once: runs are eager) and
/// report how it ended with a `df_vm_propose_run_*` function; when true the result is in the
/// journal and the closure must not run.
///
/// # Safety
/// `vm` must be NULL (400) or live; `name` a valid slice; the out-pointers valid for writes.
#[no_mangle]
pub unsafe extern "C" fn df_vm_sys_run(
    vm: *mut DfVm,
    name: DfSlice,
    out_handle: *mut DfHandle,
    out_replayed: *mut bool,
) -> i32 {
    // SAFETY: forwarded contract.
    unsafe {
        call_vm(vm, |v| {
            write_out(out_handle, "out_handle", 0)?;
            write_out(out_replayed, "out_replayed", false)?;
            let r = v.vm.sys_run(name.str("name")?)?;
            out_handle.write(r.handle.0);
            out_replayed.write(r.replayed);
            Ok(())
        })
    }
}

/// Reports that the run `handle` returned `value`: proposes it to the runtime. Ignored (0)
/// once the VM is closed; 400 if `handle` is not an executing run.
///
/// # Safety
/// `vm` must be NULL (400) or live; `value` a valid slice.
#[no_mangle]
pub unsafe extern "C" fn df_vm_propose_run_success(
    vm: *mut DfVm,
    handle: DfHandle,
    value: DfSlice,
) -> i32 {
    // SAFETY: forwarded contract.
    unsafe {
        call_vm(vm, |v| {
            let b = Bytes::copy_from_slice(value.bytes("value")?);
            v.vm.propose_run_completion(Handle(handle), RunExit::Success(b), &RetryPolicy::Infinite)
        })
    }
}

/// Reports that the run `handle` failed terminally: the failure is journaled and the
/// handler sees it; it is never retried. Metadata needs protocol V6: 573 otherwise, and the
/// run stays executing so its result can be proposed again.
///
/// # Safety
/// `vm` must be NULL (400) or live; `failure` NULL (400) or valid, with valid slices.
#[no_mangle]
pub unsafe extern "C" fn df_vm_propose_run_terminal_failure(
    vm: *mut DfVm,
    handle: DfHandle,
    failure: *const DfFailure,
) -> i32 {
    // SAFETY: forwarded contract.
    unsafe {
        call_vm(vm, |v| {
            let f = failure.as_ref().ok_or_else(|| bad_arg("failure is NULL"))?;
            let f = failure_from_c(f)?;
            if !f.metadata.is_empty() {
                check_run_version(v, Version::V6, "failure metadata")?;
            }
            v.vm.propose_run_completion(
                Handle(handle),
                RunExit::TerminalFailure(f),
                &RetryPolicy::Infinite,
            )
        })
    }
}

/// Reports that the run `handle` failed with a retryable error (`code`, `message`) after
/// `attempt_duration_ms`. `policy` (NULL = retry forever) decides: either the attempt fails
/// (an `ErrorMessage` carrying the retry delay is written, the VM closes and later calls
/// return that error), or retries are exhausted and a terminal failure is proposed instead,
/// which the handler sees when it awaits the run. A policy that pauses when exhausted needs
/// protocol V7: 573 otherwise, and the run stays executing.
///
/// # Safety
/// `vm` must be NULL (400) or live; `message` a valid slice; `policy` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn df_vm_propose_run_retryable_failure(
    vm: *mut DfVm,
    handle: DfHandle,
    code: u16,
    message: DfSlice,
    attempt_duration_ms: u64,
    policy: *const DfRetryPolicy,
) -> i32 {
    // SAFETY: forwarded contract.
    unsafe {
        call_vm(vm, |v| {
            let policy = match policy.as_ref() {
                Some(p) => {
                    let pauses = p.on_max == DfOnMaxAttempts::Pause as u32
                        && p.kind != DfRetryKind::Infinite as u32
                        && p.kind != DfRetryKind::None as u32;
                    if pauses {
                        check_run_version(v, Version::V7, "pausing on exhausted run retries")?;
                    }
                    policy_from_c(p)?
                }
                None => RetryPolicy::Infinite,
            };
            let error = Error::new(code, message.str("message")?);
            v.vm.propose_run_completion(
                Handle(handle),
                RunExit::RetryableFailure {
                    error,
                    attempt_duration_ms,
                },
                &policy,
            )
        })
    }
}

/// Whether a run completion needing `min` can be proposed: error 573 if the negotiated
/// version is older (on a closed VM proposals are ignored, so nothing to check).
///
/// The core checks this too, but only after it has marked the run as no longer executing,
/// so its error would leave the run without a result and impossible to propose again.
/// Checked here first, the host can propose again without the unsupported part.
fn check_run_version(v: &DfVm, min: Version, what: &str) -> Result<(), Error> {
    let version = v.vm.version();
    if v.vm.state() == State::Closed || version >= min {
        return Ok(());
    }
    Err(Error::new(
        codes::UNSUPPORTED_FEATURE,
        format!("{what} needs service protocol {min:?}, but {version:?} was negotiated"),
    ))
}

// ---- timers, calls, awakeables, signals ----------------------------------------------------

/// Journals a durable timer named `name` (may be empty) waking at `wake_up_time_ms`
/// (milliseconds since the UNIX epoch; the VM has no clock). `*out` completes (void) when it
/// fires.
///
/// # Safety
/// `vm` must be NULL (400) or live; `name` a valid slice; `out` valid for writes.
#[no_mangle]
pub unsafe extern "C" fn df_vm_sys_sleep(
    vm: *mut DfVm,
    name: DfSlice,
    wake_up_time_ms: u64,
    out: *mut DfHandle,
) -> i32 {
    // SAFETY: forwarded contract.
    unsafe {
        call_vm(vm, |v| {
            write_out(out, "out", 0)?;
            out.write(v.vm.sys_sleep(name.str("name")?, wake_up_time_ms)?.0);
            Ok(())
        })
    }
}

/// Journals a request-response call of `target` with `parameter` (serialized argument).
/// `*out_invocation_id` completes with the callee's invocation id, `*out_result` with its
/// result. `name` may be empty.
///
/// # Safety
/// `vm` must be NULL (400) or live; `target` NULL (400) or valid with valid slices; the
/// slices valid; the out-pointers valid for writes.
#[no_mangle]
pub unsafe extern "C" fn df_vm_sys_call(
    vm: *mut DfVm,
    target: *const DfTarget,
    parameter: DfSlice,
    name: DfSlice,
    out_invocation_id: *mut DfHandle,
    out_result: *mut DfHandle,
) -> i32 {
    // SAFETY: forwarded contract.
    unsafe {
        call_vm(vm, |v| {
            write_out(out_invocation_id, "out_invocation_id", 0)?;
            write_out(out_result, "out_result", 0)?;
            let t = target.as_ref().ok_or_else(|| bad_arg("target is NULL"))?;
            let t = target_from_c(t)?;
            let p = Bytes::copy_from_slice(parameter.bytes("parameter")?);
            let h = v.vm.sys_call(t, p, name.str("name")?)?;
            out_invocation_id.write(h.invocation_id.0);
            out_result.write(h.result.0);
            Ok(())
        })
    }
}

/// Journals a one-way call of `target` with `parameter`, delayed until `invoke_time_ms`
/// (ms since the epoch; 0 = now). `*out_invocation_id` completes with the callee's
/// invocation id.
///
/// # Safety
/// As for `df_vm_sys_call`.
#[no_mangle]
pub unsafe extern "C" fn df_vm_sys_send(
    vm: *mut DfVm,
    target: *const DfTarget,
    parameter: DfSlice,
    invoke_time_ms: u64,
    name: DfSlice,
    out_invocation_id: *mut DfHandle,
) -> i32 {
    // SAFETY: forwarded contract.
    unsafe {
        call_vm(vm, |v| {
            write_out(out_invocation_id, "out_invocation_id", 0)?;
            let t = target.as_ref().ok_or_else(|| bad_arg("target is NULL"))?;
            let t = target_from_c(t)?;
            let p = Bytes::copy_from_slice(parameter.bytes("parameter")?);
            let delay = (invoke_time_ms != 0).then_some(invoke_time_ms);
            let h = v.vm.sys_send(t, p, delay, name.str("name")?)?;
            out_invocation_id.write(h.0);
            Ok(())
        })
    }
}

/// Creates an awakeable: `*out_id` receives its id (`sign_1…`, release with
/// `df_buffer_free`) to hand to whoever completes it; `*out_handle` completes when it is
/// resolved or rejected. Nothing is journaled.
///
/// # Safety
/// `vm` must be NULL (400) or live; the out-pointers valid for writes (`out_id` holding no
/// unreleased buffer).
#[no_mangle]
pub unsafe extern "C" fn df_vm_sys_awakeable(
    vm: *mut DfVm,
    out_id: *mut DfBuffer,
    out_handle: *mut DfHandle,
) -> i32 {
    // SAFETY: forwarded contract.
    unsafe {
        call_vm(vm, |v| {
            write_out(out_id, "out_id", DfBuffer::null())?;
            write_out(out_handle, "out_handle", 0)?;
            let a = v.vm.sys_awakeable()?;
            out_id.write(DfBuffer::from_vec(a.id.into_bytes()));
            out_handle.write(a.handle.0);
            Ok(())
        })
    }
}

/// Journals resolving the awakeable `id` (`sign_1…` or legacy `prom_1…`) with `value`.
/// A malformed id is error 400.
///
/// # Safety
/// `vm` must be NULL (400) or live; the slices valid.
#[no_mangle]
pub unsafe extern "C" fn df_vm_sys_complete_awakeable_success(
    vm: *mut DfVm,
    id: DfSlice,
    value: DfSlice,
) -> i32 {
    // SAFETY: forwarded contract.
    unsafe {
        call_vm(vm, |v| {
            let b = Bytes::copy_from_slice(value.bytes("value")?);
            v.vm.sys_complete_awakeable(id.str("id")?, CommandResult::Value(b))
        })
    }
}

/// Journals rejecting the awakeable `id` with a terminal failure.
///
/// # Safety
/// `vm` must be NULL (400) or live; `id` valid; `failure` NULL (400) or valid.
#[no_mangle]
pub unsafe extern "C" fn df_vm_sys_complete_awakeable_failure(
    vm: *mut DfVm,
    id: DfSlice,
    failure: *const DfFailure,
) -> i32 {
    // SAFETY: forwarded contract.
    unsafe {
        call_vm(vm, |v| {
            let f = failure.as_ref().ok_or_else(|| bad_arg("failure is NULL"))?;
            let f = failure_from_c(f)?;
            v.vm.sys_complete_awakeable(id.str("id")?, CommandResult::Failure(f))
        })
    }
}

/// A handle (in `*out`) for the named signal `name` sent to this invocation. Nothing is
/// journaled.
///
/// # Safety
/// `vm` must be NULL (400) or live; `name` valid; `out` valid for writes.
#[no_mangle]
pub unsafe extern "C" fn df_vm_signal_handle(
    vm: *mut DfVm,
    name: DfSlice,
    out: *mut DfHandle,
) -> i32 {
    // SAFETY: forwarded contract.
    unsafe {
        call_vm(vm, |v| {
            write_out(out, "out", 0)?;
            out.write(v.vm.signal_handle(name.str("name")?)?.0);
            Ok(())
        })
    }
}

/// Journals sending the named signal `name` with `value` to the invocation
/// `target_invocation_id`.
///
/// # Safety
/// `vm` must be NULL (400) or live; the slices valid.
#[no_mangle]
pub unsafe extern "C" fn df_vm_sys_complete_signal_success(
    vm: *mut DfVm,
    target_invocation_id: DfSlice,
    name: DfSlice,
    value: DfSlice,
) -> i32 {
    // SAFETY: forwarded contract.
    unsafe {
        call_vm(vm, |v| {
            let b = Bytes::copy_from_slice(value.bytes("value")?);
            v.vm.sys_complete_signal(
                target_invocation_id.str("target_invocation_id")?,
                name.str("name")?,
                CommandResult::Value(b),
            )
        })
    }
}

/// Journals the cancellation of the invocation `target_invocation_id`.
///
/// # Safety
/// `vm` must be NULL (400) or live; the slice valid.
#[no_mangle]
pub unsafe extern "C" fn df_vm_sys_cancel_invocation(
    vm: *mut DfVm,
    target_invocation_id: DfSlice,
) -> i32 {
    // SAFETY: forwarded contract.
    unsafe {
        call_vm(vm, |v| {
            v.vm.sys_cancel_invocation(target_invocation_id.str("target_invocation_id")?)
        })
    }
}

// ---- state -------------------------------------------------------------------------------

/// Reads the state key `key`: `*out` completes with the value, or void when the key is
/// absent (served at once from eager state when the runtime sent it).
///
/// # Safety
/// `vm` must be NULL (400) or live; `key` valid; `out` valid for writes.
#[no_mangle]
pub unsafe extern "C" fn df_vm_sys_state_get(
    vm: *mut DfVm,
    key: DfSlice,
    out: *mut DfHandle,
) -> i32 {
    // SAFETY: forwarded contract.
    unsafe {
        call_vm(vm, |v| {
            write_out(out, "out", 0)?;
            out.write(v.vm.sys_state_get(key.str("key")?)?.0);
            Ok(())
        })
    }
}

/// Lists the state keys: `*out` completes with a state-keys value.
///
/// # Safety
/// `vm` must be NULL (400) or live; `out` valid for writes.
#[no_mangle]
pub unsafe extern "C" fn df_vm_sys_state_get_keys(vm: *mut DfVm, out: *mut DfHandle) -> i32 {
    // SAFETY: forwarded contract.
    unsafe {
        call_vm(vm, |v| {
            write_out(out, "out", 0)?;
            out.write(v.vm.sys_state_get_keys()?.0);
            Ok(())
        })
    }
}

/// Sets the state key `key` to `value`.
///
/// # Safety
/// `vm` must be NULL (400) or live; the slices valid.
#[no_mangle]
pub unsafe extern "C" fn df_vm_sys_state_set(vm: *mut DfVm, key: DfSlice, value: DfSlice) -> i32 {
    // SAFETY: forwarded contract.
    unsafe {
        call_vm(vm, |v| {
            let b = Bytes::copy_from_slice(value.bytes("value")?);
            v.vm.sys_state_set(key.str("key")?, b)
        })
    }
}

/// Clears the state key `key`.
///
/// # Safety
/// `vm` must be NULL (400) or live; `key` valid.
#[no_mangle]
pub unsafe extern "C" fn df_vm_sys_state_clear(vm: *mut DfVm, key: DfSlice) -> i32 {
    // SAFETY: forwarded contract.
    unsafe { call_vm(vm, |v| v.vm.sys_state_clear(key.str("key")?)) }
}

/// Clears every state key.
///
/// # Safety
/// `vm` must be NULL (400) or live.
#[no_mangle]
pub unsafe extern "C" fn df_vm_sys_state_clear_all(vm: *mut DfVm) -> i32 {
    // SAFETY: forwarded contract.
    unsafe { call_vm(vm, |v| v.vm.sys_state_clear_all()) }
}

// ---- promises (workflows) ----------------------------------------------------------------

/// Journals a blocking read of the durable promise `key`; `*out` completes with its value or
/// failure.
///
/// # Safety
/// `vm` must be NULL (400) or live; `key` valid; `out` valid for writes.
#[no_mangle]
pub unsafe extern "C" fn df_vm_sys_get_promise(
    vm: *mut DfVm,
    key: DfSlice,
    out: *mut DfHandle,
) -> i32 {
    // SAFETY: forwarded contract.
    unsafe {
        call_vm(vm, |v| {
            write_out(out, "out", 0)?;
            out.write(v.vm.sys_get_promise(key.str("key")?)?.0);
            Ok(())
        })
    }
}

/// Journals a non-blocking read of the durable promise `key`; `*out` completes with its
/// value, failure, or void when it is not completed yet.
///
/// # Safety
/// `vm` must be NULL (400) or live; `key` valid; `out` valid for writes.
#[no_mangle]
pub unsafe extern "C" fn df_vm_sys_peek_promise(
    vm: *mut DfVm,
    key: DfSlice,
    out: *mut DfHandle,
) -> i32 {
    // SAFETY: forwarded contract.
    unsafe {
        call_vm(vm, |v| {
            write_out(out, "out", 0)?;
            out.write(v.vm.sys_peek_promise(key.str("key")?)?.0);
            Ok(())
        })
    }
}

/// Journals resolving the durable promise `key` with `value`; `*out` completes with void,
/// or a failure if the promise was already completed.
///
/// # Safety
/// `vm` must be NULL (400) or live; the slices valid; `out` valid for writes.
#[no_mangle]
pub unsafe extern "C" fn df_vm_sys_complete_promise_success(
    vm: *mut DfVm,
    key: DfSlice,
    value: DfSlice,
    out: *mut DfHandle,
) -> i32 {
    // SAFETY: forwarded contract.
    unsafe {
        call_vm(vm, |v| {
            write_out(out, "out", 0)?;
            let b = Bytes::copy_from_slice(value.bytes("value")?);
            let h =
                v.vm.sys_complete_promise(key.str("key")?, CommandResult::Value(b))?;
            out.write(h.0);
            Ok(())
        })
    }
}

/// Journals rejecting the durable promise `key` with a terminal failure; `*out` as for
/// `df_vm_sys_complete_promise_success`.
///
/// # Safety
/// `vm` must be NULL (400) or live; `key` valid; `failure` NULL (400) or valid; `out` valid
/// for writes.
#[no_mangle]
pub unsafe extern "C" fn df_vm_sys_complete_promise_failure(
    vm: *mut DfVm,
    key: DfSlice,
    failure: *const DfFailure,
    out: *mut DfHandle,
) -> i32 {
    // SAFETY: forwarded contract.
    unsafe {
        call_vm(vm, |v| {
            write_out(out, "out", 0)?;
            let f = failure.as_ref().ok_or_else(|| bad_arg("failure is NULL"))?;
            let f = failure_from_c(f)?;
            let h =
                v.vm.sys_complete_promise(key.str("key")?, CommandResult::Failure(f))?;
            out.write(h.0);
            Ok(())
        })
    }
}

// ---- combinators, selectors, awaiting ----------------------------------------------------

/// A combinator (`kind`, a `DfCombinatorKind`) over `children` (leaf handles or other
/// combinators, not selectors), resolved incrementally; its handle in `*out`. First-completed
/// over no children is refused (400): it could never complete.
///
/// # Safety
/// `vm` must be NULL (400) or live; `children` NULL (with `len` 0) or valid for `len` reads;
/// `out` valid for writes.
#[no_mangle]
pub unsafe extern "C" fn df_vm_combinator(
    vm: *mut DfVm,
    kind: u32,
    children: *const DfHandle,
    len: usize,
    out: *mut DfHandle,
) -> i32 {
    // SAFETY: forwarded contract.
    unsafe {
        call_vm(vm, |v| {
            write_out(out, "out", 0)?;
            let kind = combinator_from_c(kind)?;
            let hs: Vec<Handle> = read_array(children, len, "children")?
                .iter()
                .map(|h| Handle(*h))
                .collect();
            out.write(v.vm.combinator(kind, &hs)?.0);
            Ok(())
        })
    }
}

/// A selector over `children`: `df_vm_select_next` hands them out in the order they
/// completed (the journal's order). Its handle in `*out`.
///
/// # Safety
/// As for `df_vm_combinator`.
#[no_mangle]
pub unsafe extern "C" fn df_vm_selector(
    vm: *mut DfVm,
    children: *const DfHandle,
    len: usize,
    out: *mut DfHandle,
) -> i32 {
    // SAFETY: forwarded contract.
    unsafe {
        call_vm(vm, |v| {
            write_out(out, "out", 0)?;
            let hs: Vec<Handle> = read_array(children, len, "children")?
                .iter()
                .map(|h| Handle(*h))
                .collect();
            out.write(v.vm.selector(&hs)?.0);
            Ok(())
        })
    }
}

/// The number of children of `selector` not yet handed out (completed or not), in `*out`.
///
/// # Safety
/// `vm` must be NULL (400) or live; `out` valid for writes.
#[no_mangle]
pub unsafe extern "C" fn df_vm_selector_remaining(
    vm: *mut DfVm,
    selector: DfHandle,
    out: *mut usize,
) -> i32 {
    // SAFETY: forwarded contract.
    unsafe {
        call_vm(vm, |v| {
            write_out(out, "out", 0)?;
            out.write(v.vm.selector_remaining(Handle(selector))?);
            Ok(())
        })
    }
}

/// The next child of `selector` in completion order, waiting (by consuming input already
/// fed) if none completed yet. `*out` says: selected (`handle`), exhausted, cancelled,
/// pending (feed input / finish a run and call again) or suspended.
///
/// # Safety
/// `vm` must be NULL (400) or live; `out` valid for writes.
#[no_mangle]
pub unsafe extern "C" fn df_vm_select_next(
    vm: *mut DfVm,
    selector: DfHandle,
    out: *mut DfAwaitResult,
) -> i32 {
    // SAFETY: forwarded contract.
    unsafe {
        call_vm(vm, |v| {
            let r = select_to_c(v.vm.select_next(Handle(selector))?);
            write_out(out, "out", r)
        })
    }
}

/// Waits for `handle` (a leaf or a combinator) and, with implicit cancellation, for the
/// cancel signal. `*out` says: ready, cancelled (surface a terminal error 409), pending (feed
/// input / finish a run and call again) or suspended (take the output and stop). Completions
/// become visible one at a time in journal order, so the result is the same on every replay.
///
/// # Safety
/// `vm` must be NULL (400) or live; `out` valid for writes.
#[no_mangle]
pub unsafe extern "C" fn df_vm_do_await(
    vm: *mut DfVm,
    handle: DfHandle,
    out: *mut DfAwaitResult,
) -> i32 {
    // SAFETY: forwarded contract.
    unsafe {
        call_vm(vm, |v| {
            let r = await_to_c(v.vm.do_await(Handle(handle))?);
            write_out(out, "out", r)
        })
    }
}

/// Whether `handle` has completed (a selector: whether every child was handed out), in
/// `*out`. Never consumes input; an unknown handle reads as not completed.
///
/// # Safety
/// `vm` must be NULL (400) or live; `out` valid for writes.
#[no_mangle]
pub unsafe extern "C" fn df_vm_is_completed(
    vm: *mut DfVm,
    handle: DfHandle,
    out: *mut bool,
) -> i32 {
    // SAFETY: forwarded contract.
    unsafe {
        call_vm(vm, |v| {
            write_out(out, "out", v.vm.is_completed(Handle(handle)))
        })
    }
}

/// How the combinator `handle` resolved, in `*out` (`completed` false while pending or for a
/// leaf).
///
/// # Safety
/// `vm` must be NULL (400) or live; `out` valid for writes.
#[no_mangle]
pub unsafe extern "C" fn df_vm_outcome(
    vm: *mut DfVm,
    handle: DfHandle,
    out: *mut DfOutcome,
) -> i32 {
    // SAFETY: forwarded contract.
    unsafe {
        call_vm(vm, |v| {
            let o = match v.vm.outcome(Handle(handle)) {
                Some(o) => DfOutcome {
                    completed: true,
                    succeeded: o.succeeded,
                    has_decided_by: o.decided_by.is_some(),
                    decided_by: o.decided_by.map_or(0, |h| h.0),
                },
                None => DfOutcome {
                    completed: false,
                    succeeded: false,
                    has_decided_by: false,
                    decided_by: 0,
                },
            };
            write_out(out, "out", o)
        })
    }
}

/// Forgets a combinator or selector the host no longer needs (frees its memory). Other
/// handles are ignored.
///
/// # Safety
/// `vm` must be NULL (400) or live.
#[no_mangle]
pub unsafe extern "C" fn df_vm_release(vm: *mut DfVm, handle: DfHandle) -> i32 {
    // SAFETY: forwarded contract.
    unsafe {
        call_vm(vm, |v| {
            v.vm.release(Handle(handle));
            Ok(())
        })
    }
}

/// Takes the value of the completed leaf `handle` into `*out` (release it with
/// `df_value_free`): kind none if it has not completed or was taken already; 400 for a
/// combinator (use `df_vm_outcome`) or an unknown handle.
///
/// # Safety
/// `vm` must be NULL (400) or live; `out` valid for writes of a `DfValue` holding nothing
/// unreleased.
#[no_mangle]
pub unsafe extern "C" fn df_vm_take_notification(
    vm: *mut DfVm,
    handle: DfHandle,
    out: *mut DfValue,
) -> i32 {
    // SAFETY: forwarded contract.
    unsafe {
        call_vm(vm, |v| {
            write_out(out, "out", DfValue::none())?;
            out.write(value_to_c(v.vm.take_notification(Handle(handle))?));
            Ok(())
        })
    }
}
