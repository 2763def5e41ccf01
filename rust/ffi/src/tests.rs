//! Null-safety, ownership and error reporting at the boundary. The C program under
//! `tests/c` and `tests/test_ffi.py` drive whole invocations; these check the edges.

use std::path::PathBuf;
use std::ptr;

use durable_futures_core::codes;

use crate::guard::{call, call_vm};
use crate::*;

const V6: &[u8] = b"application/vnd.restate.invocation.v6";

fn vector(path: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/conformance/vectors")
        .join(path);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn s(b: &[u8]) -> DfSlice {
    DfSlice::new(b)
}

fn new_vm() -> *mut DfVm {
    let mut vm = ptr::null_mut();
    // SAFETY: valid slice and out-pointer.
    assert_eq!(unsafe { df_vm_new(s(V6), &mut vm) }, 0);
    assert!(!vm.is_null());
    vm
}

/// A VM that received `path` whole, with the input closed, past `sys_input`.
fn started(path: &str) -> *mut DfVm {
    let vm = new_vm();
    let body = vector(path);
    let mut input = DfInput::empty();
    // SAFETY: `vm` is live; the slices and out-pointers are valid.
    unsafe {
        assert_eq!(df_vm_notify_input(vm, s(&body)), 0);
        assert_eq!(df_vm_notify_input_closed(vm), 0);
        assert_eq!(df_vm_sys_input(vm, &mut input), 0);
        df_input_free(&mut input);
    }
    vm
}

fn thread_message() -> (i32, String) {
    let mut b = DfBuffer::null();
    // SAFETY: valid out-pointer; the buffer is released below.
    unsafe {
        let code = df_last_error_message(&mut b);
        let m = String::from_utf8(b.as_slice().to_vec()).unwrap();
        df_buffer_free(&mut b);
        (code, m)
    }
}

fn vm_message(vm: *mut DfVm) -> (i32, String) {
    let mut b = DfBuffer::null();
    // SAFETY: `vm` is live; valid out-pointer; the buffer is released below.
    unsafe {
        let code = df_vm_last_error(vm, &mut b);
        let m = String::from_utf8(b.as_slice().to_vec()).unwrap();
        df_buffer_free(&mut b);
        (code, m)
    }
}

#[test]
fn null_vm_is_400_everywhere() {
    let vm: *mut DfVm = ptr::null_mut();
    let mut h = 0u32;
    let mut flag = false;
    let mut buf = DfBuffer::null();
    let mut r = DfAwaitResult {
        kind: 0,
        handle: 0,
        waiting_input: false,
        waiting_runs: false,
    };
    // SAFETY: NULL VM is allowed and must be rejected; other pointers are valid.
    let results = unsafe {
        [
            df_vm_notify_input(vm, s(b"x")),
            df_vm_notify_input_closed(vm),
            df_vm_take_output(vm, &mut buf),
            df_vm_is_ready_to_execute(vm, &mut flag),
            df_vm_sys_input(vm, &mut DfInput::empty()),
            df_vm_sys_run(vm, s(b"r"), &mut h, &mut flag),
            df_vm_sys_sleep(vm, s(b""), 0, &mut h),
            df_vm_sys_end(vm),
            df_vm_do_await(vm, 0, &mut r),
            df_vm_select_next(vm, 0, &mut r),
            df_vm_is_completed(vm, 0, &mut flag),
            df_vm_take_notification(vm, 0, &mut DfValue::none()),
            df_vm_last_error(vm, &mut buf),
            df_vm_release(vm, 0),
        ]
    };
    assert!(results.iter().all(|c| *c == DfCode::BadRequest as i32));
    assert_eq!(thread_message(), (400, "vm is NULL".to_owned()));
    assert!(buf.ptr.is_null(), "no buffer is handed out on failure");
    // SAFETY: NULL is documented as a no-op for every free function.
    unsafe {
        df_vm_free(ptr::null_mut());
        df_buffer_free(ptr::null_mut());
        df_input_free(ptr::null_mut());
        df_value_free(ptr::null_mut());
    }
}

#[test]
fn null_out_pointers_and_bad_slices_are_400() {
    let vm = started("race-call/attempt-0001.req.bin");
    // SAFETY: `vm` is live; the NULL out-pointers and bogus slices must be rejected.
    unsafe {
        assert_eq!(df_vm_sys_sleep(vm, s(b""), 0, ptr::null_mut()), 400);
        assert_eq!(vm_message(vm), (400, "out is NULL".to_owned()));
        let bogus = DfSlice {
            ptr: ptr::null(),
            len: 3,
        };
        let mut h = 0;
        assert_eq!(df_vm_sys_sleep(vm, bogus, 0, &mut h), 400);
        assert!(vm_message(vm).1.contains("NULL pointer with length 3"));
        assert_eq!(df_vm_sys_sleep(vm, s(b"\xff"), 0, &mut h), 400);
        assert!(vm_message(vm).1.contains("not UTF-8"));
        assert_eq!(
            df_vm_sys_call(vm, ptr::null(), s(b""), s(b""), &mut h, &mut h),
            400
        );
        assert_eq!(df_vm_sys_write_output_failure(vm, ptr::null()), 400);
        // NULL with length 0 is the empty string: a valid (unnamed) timer.
        assert_eq!(df_vm_sys_sleep(vm, DfSlice::null(), 0, &mut h), 0);
        df_vm_free(vm);
    }
}

#[test]
fn buffers_are_owned_until_freed_once() {
    let vm = new_vm();
    let mut out = DfBuffer {
        ptr: ptr::dangling_mut(), // garbage must be overwritten, not freed
        len: 99,
        cap: 99,
    };
    // SAFETY: `vm` is live; the buffer is written, then released twice (second is a no-op).
    unsafe {
        assert_eq!(df_vm_take_output(vm, &mut out), 0);
        assert!(
            !out.ptr.is_null(),
            "a present buffer is never NULL, even when empty"
        );
        assert_eq!(out.len, 0);
        df_buffer_free(&mut out);
        assert!(out.ptr.is_null() && out.len == 0 && out.cap == 0);
        df_buffer_free(&mut out);
        df_vm_free(vm);
    }
}

#[test]
fn output_outlives_the_vm() {
    let vm = started("race-call/attempt-0001.req.bin");
    let mut out = DfBuffer::null();
    // SAFETY: `vm` is live until `df_vm_free`; `out` is released after it.
    unsafe {
        let mut h = 0;
        assert_eq!(df_vm_sys_sleep(vm, s(b""), 0, &mut h), 0);
        assert_eq!(df_vm_take_output(vm, &mut out), 0);
        df_vm_free(vm);
        // The VM is gone; the buffer is the host's.
        assert_eq!(out.len, 0, "replayed commands write nothing");
        df_buffer_free(&mut out);
    }
}

#[test]
fn input_and_values_are_released_and_reset() {
    let vm = new_vm();
    let body = vector("run-terminal-failure/attempt-0001.req.bin");
    let mut input = DfInput::empty();
    let mut value = DfValue::none();
    let (mut h, mut replayed) = (0, false);
    let mut r = DfAwaitResult {
        kind: 99,
        handle: 0,
        waiting_input: false,
        waiting_runs: false,
    };
    // SAFETY: `vm` is live; every out-pointer is valid; frees happen once (then no-ops).
    unsafe {
        assert_eq!(df_vm_notify_input(vm, s(&body)), 0);
        assert_eq!(df_vm_notify_input_closed(vm), 0);
        assert_eq!(df_vm_sys_input(vm, &mut input), 0);
        assert_eq!(input.input.as_slice(), b"\"x\"");
        assert!(input.invocation_id.as_slice().starts_with(b"inv_"));
        assert!(input.headers_len > 0);
        assert!(
            input.idempotency_key.ptr.is_null(),
            "absent optional is NULL"
        );
        df_input_free(&mut input);
        assert!(input.input.ptr.is_null() && input.headers.is_null());
        df_input_free(&mut input);

        assert_eq!(df_vm_sys_run(vm, s(b"explode"), &mut h, &mut replayed), 0);
        assert!(replayed);
        assert_eq!(df_vm_do_await(vm, h, &mut r), 0);
        assert_eq!(r.kind, DfAwaitKind::Ready as u32);
        assert_eq!(df_vm_take_notification(vm, h, &mut value), 0);
        assert_eq!(value.kind, DfValueKind::Failure as u32);
        assert_eq!(value.failure_code, 500);
        assert_eq!(value.bytes.as_slice(), b"boom");
        df_value_free(&mut value);
        assert_eq!(value.kind, DfValueKind::None as u32);
        assert!(value.bytes.ptr.is_null());
        df_value_free(&mut value);
        // Taken already: kind none, not an error.
        assert_eq!(df_vm_take_notification(vm, h, &mut value), 0);
        assert_eq!(value.kind, DfValueKind::None as u32);
        // A combinator handle or an unknown one is an error.
        assert_eq!(df_vm_take_notification(vm, 4242, &mut value), 400);
        df_vm_free(vm);
    }
}

#[test]
fn content_type_errors_and_headers() {
    let mut vm: *mut DfVm = ptr::dangling_mut();
    // SAFETY: valid slices and out-pointers; created VMs are freed.
    unsafe {
        assert_eq!(df_vm_new(s(b"text/plain"), &mut vm), 415);
        assert!(vm.is_null(), "out is NULL on failure");
        assert!(thread_message().1.contains("text/plain"));

        let headers = [
            DfKeyValue {
                key: s(b"X-Latin-1"),
                value: s(b"caf\xe9"), // not UTF-8, and not the content type: fine
            },
            DfKeyValue {
                key: s(b"Content-Type"),
                value: s(b"application/vnd.restate.invocation.v7"),
            },
        ];
        assert_eq!(
            df_vm_new_from_headers(headers.as_ptr(), 2, ptr::null(), &mut vm),
            0
        );
        let mut ct = DfSlice::null();
        assert_eq!(df_vm_response_content_type(vm, &mut ct), 0);
        assert_eq!(
            std::slice::from_raw_parts(ct.ptr, ct.len),
            b"application/vnd.restate.invocation.v7"
        );
        df_vm_free(vm);
        assert_eq!(
            df_vm_new_from_headers(headers.as_ptr(), 1, ptr::null(), &mut vm),
            415
        );
        assert_eq!(
            df_vm_new_from_headers(ptr::null(), 1, ptr::null(), &mut vm),
            400
        );
    }
}

#[test]
fn options_round_trip_and_validation() {
    let mut o = DfVmOptions {
        implicit_cancellation: false,
        cancel_child_calls: false,
        cancel_child_sends: true,
        payload_checks: false,
        journal_mismatch_behavior: 7,
        awaiting_on: 7,
        max_frame_len: 0,
    };
    let mut vm = ptr::null_mut();
    // SAFETY: valid pointers; created VMs are freed.
    unsafe {
        assert_eq!(df_vm_options_default(&mut o), 0);
        assert!(o.implicit_cancellation && o.payload_checks && !o.cancel_child_sends);
        assert_eq!(o.awaiting_on, DfAwaitingOn::UnlessRunExecuting as u32);
        assert_eq!(df_vm_new_with_options(s(V6), &o, &mut vm), 0);
        df_vm_free(vm);
        o.awaiting_on = 42;
        assert_eq!(df_vm_new_with_options(s(V6), &o, &mut vm), 400);
        assert!(thread_message().1.contains("awaiting_on"));
    }
}

#[test]
fn input_errors_are_reported_once_and_poison_the_vm() {
    let vm = new_vm();
    let mut ready = true;
    // SAFETY: `vm` is live; valid slices and out-pointers.
    unsafe {
        // An InputCommand frame before the StartMessage.
        assert_eq!(df_vm_notify_input(vm, s(&[4, 0, 0, 0, 0, 0, 0, 0])), 571);
        // Input to a closed VM is ignored...
        assert_eq!(df_vm_notify_input(vm, s(b"more")), 0);
        // ...and every operation returns the error that closed it.
        assert_eq!(df_vm_is_ready_to_execute(vm, &mut ready), 571);
        assert!(!ready);
        let (code, msg) = vm_message(vm);
        assert_eq!(code, 571);
        assert!(msg.contains("StartMessage"), "{msg}");
        df_vm_free(vm);
    }
}

#[test]
fn retry_policies() {
    let policy = |kind: DfRetryKind| DfRetryPolicy {
        kind: kind as u32,
        interval_ms: 10,
        has_interval: true,
        factor: 2.0,
        max_interval_ms: 0,
        has_max_interval: false,
        max_attempts: 3,
        has_max_attempts: true,
        max_duration_ms: 0,
        has_max_duration: false,
        on_max: DfOnMaxAttempts::Fail as u32,
    };
    // The first attempt of race-call has only the input: the VM is processing after it.
    let vm = started("race-call/attempt-0000.req.bin");
    let (mut h, mut replayed) = (0, true);
    let mut out = DfBuffer::null();
    // SAFETY: `vm` is live; valid pointers; frees once.
    unsafe {
        assert_eq!(df_vm_sys_run(vm, s(b"r"), &mut h, &mut replayed), 0);
        assert!(!replayed);
        let mut bad = policy(DfRetryKind::Exponential);
        bad.factor = f64::NAN;
        assert_eq!(
            df_vm_propose_run_retryable_failure(vm, h, 503, s(b"flaky"), 5, &bad),
            400
        );
        // No retries: the failure becomes a terminal failure proposed to the runtime.
        let none = policy(DfRetryKind::None);
        assert_eq!(
            df_vm_propose_run_retryable_failure(vm, h, 503, s(b"flaky"), 5, &none),
            0
        );
        assert_eq!(df_vm_take_output(vm, &mut out), 0);
        let bytes = out.as_slice();
        assert!(bytes.windows(5).any(|w| w == b"flaky"));
        df_buffer_free(&mut out);

        // Retry forever (NULL policy): the attempt fails with the run's error.
        assert_eq!(df_vm_sys_run(vm, s(b"r2"), &mut h, &mut replayed), 0);
        assert_eq!(
            df_vm_propose_run_retryable_failure(vm, h, 503, s(b"flaky"), 5, ptr::null()),
            0
        );
        assert_eq!(df_vm_sys_end(vm), 0, "ending a closed VM is harmless");
        let mut h2 = 0;
        assert_eq!(df_vm_sys_sleep(vm, s(b""), 0, &mut h2), 503);
        df_vm_free(vm);
    }
}

#[test]
fn panics_become_500_and_poison_the_vm() {
    let vm = new_vm();
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let code = call(|| panic!("boom"));
    // SAFETY: `vm` is live.
    let vm_code = unsafe { call_vm(vm, |_| panic!("inside {}", 42)) };
    std::panic::set_hook(prev);
    assert_eq!(code, codes::INTERNAL as i32);
    assert_eq!(vm_code, 500);
    assert_eq!(vm_message(vm), (500, "panic: inside 42".to_owned()));
    let mut flag = false;
    // SAFETY: `vm` is live (poisoned, but still owned by us).
    unsafe {
        assert_eq!(df_vm_has_output(vm, &mut flag), 500);
        assert!(vm_message(vm).1.contains("earlier panic"));
        df_vm_free(vm);
    }
}

#[test]
fn codes_and_constants_match_the_core() {
    assert_eq!(
        DfCode::JournalMismatch as i32,
        codes::JOURNAL_MISMATCH as i32
    );
    assert_eq!(
        DfWellKnownHandle::Cancel as u32,
        durable_futures_core::CANCEL_HANDLE.0
    );
    // SAFETY: `df_version` returns a static NUL-terminated string.
    let v = unsafe { std::ffi::CStr::from_ptr(df_version()) };
    assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
}

#[test]
fn unsupported_run_completions_leave_the_run_executing() {
    let mut vm = ptr::null_mut();
    let body = vector("race-call/attempt-0000.req.bin");
    let (mut h, mut replayed) = (0, true);
    let mut input = DfInput::empty();
    let md = [DfKeyValue {
        key: s(b"k"),
        value: s(b"v"),
    }];
    let mut failure = DfFailure {
        code: 500,
        message: s(b"boom"),
        metadata: md.as_ptr(),
        metadata_len: 1,
    };
    let pause = DfRetryPolicy {
        kind: DfRetryKind::FixedDelay as u32,
        interval_ms: 0,
        has_interval: false,
        factor: 1.0,
        max_interval_ms: 0,
        has_max_interval: false,
        max_attempts: 1,
        has_max_attempts: true,
        max_duration_ms: 0,
        has_max_duration: false,
        on_max: DfOnMaxAttempts::Pause as u32,
    };
    // SAFETY: valid pointers; the VM and the input are freed once.
    unsafe {
        assert_eq!(
            df_vm_new(s(b"application/vnd.restate.invocation.v5"), &mut vm),
            0
        );
        assert_eq!(df_vm_notify_input(vm, s(&body)), 0);
        assert_eq!(df_vm_notify_input_closed(vm), 0);
        assert_eq!(df_vm_sys_input(vm, &mut input), 0);
        df_input_free(&mut input);
        assert_eq!(df_vm_sys_run(vm, s(b"r"), &mut h, &mut replayed), 0);
        assert!(!replayed);
        assert_eq!(df_vm_propose_run_terminal_failure(vm, h, &failure), 573);
        assert!(vm_message(vm)
            .1
            .contains("failure metadata needs service protocol V6"));
        assert_eq!(
            df_vm_propose_run_retryable_failure(vm, h, 500, s(b"x"), 1, &pause),
            573
        );
        // The run is still executing: its result can be proposed without the metadata.
        failure.metadata_len = 0;
        assert_eq!(df_vm_propose_run_terminal_failure(vm, h, &failure), 0);
        df_vm_free(vm);
    }
}

#[test]
fn promise_calls_on_a_recorded_workflow_journal() {
    // workflow-approve-k1-peek: the runtime answered the peek of `approval` with void (the
    // promise was still pending).
    let vm = started("workflow-approve-k1-peek/attempt-0001.req.bin");
    let mut h = 0;
    let mut r = DfAwaitResult {
        kind: 99,
        handle: 0,
        waiting_input: false,
        waiting_runs: false,
    };
    let mut value = DfValue::none();
    // SAFETY: `vm` is live; valid slices and out-pointers; the value is freed once.
    unsafe {
        assert_eq!(
            df_vm_sys_complete_promise_failure(vm, s(b"approval"), ptr::null(), &mut h),
            400
        );
        assert_eq!(vm_message(vm), (400, "failure is NULL".to_owned()));
        // The refused call journaled nothing: the peek is still the next command.
        assert_eq!(df_vm_sys_peek_promise(vm, s(b"approval"), &mut h), 0);
        assert_eq!(df_vm_do_await(vm, h, &mut r), 0);
        assert_eq!(r.kind, DfAwaitKind::Ready as u32);
        assert_eq!(df_vm_take_notification(vm, h, &mut value), 0);
        assert_eq!(value.kind, DfValueKind::Void as u32);
        df_value_free(&mut value);
        df_vm_free(vm);
    }

    // workflow-approve-k1: the promise read resolves with the JSON string "yes".
    let vm = started("workflow-approve-k1/attempt-0001.req.bin");
    let value_of = |vm: *mut DfVm, h: DfHandle| {
        let mut value = DfValue::none();
        // SAFETY: `vm` is live; the value is copied out, then freed once.
        unsafe {
            assert_eq!(df_vm_take_notification(vm, h, &mut value), 0);
            let out = (value.kind, value.bytes.as_slice().to_vec());
            df_value_free(&mut value);
            out
        }
    };
    // SAFETY: `vm` is live; valid slices and out-pointers.
    unsafe {
        let (mut promise, mut timer) = (0, 0);
        assert_eq!(df_vm_sys_state_set(vm, s(b"status"), s(b"\"waiting\"")), 0);
        assert_eq!(df_vm_sys_get_promise(vm, s(b"approval"), &mut promise), 0);
        assert_eq!(df_vm_sys_sleep(vm, s(b""), 0, &mut timer), 0);
        assert_eq!(df_vm_do_await(vm, promise, &mut r), 0);
        assert_eq!(r.kind, DfAwaitKind::Ready as u32);
        assert_eq!(
            value_of(vm, promise),
            (DfValueKind::Value as u32, b"\"yes\"".to_vec())
        );
        let mut done = true;
        assert_eq!(df_vm_is_completed(vm, timer, &mut done), 0);
        assert!(!done, "the timer never fired");
        df_vm_free(vm);
    }
}
