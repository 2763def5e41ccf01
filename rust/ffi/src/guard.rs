//! The boundary: every `extern "C"` body runs inside [`call`] or [`call_vm`], which catch
//! panics, turn errors into status codes and remember the last error (per VM and per thread).

use std::any::Any;
use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};

use durable_futures_core::{codes, Error, Vm};

use crate::types::bad_arg;

/// The opaque VM handle given to C: the core VM plus the boundary's bookkeeping.
#[derive(Debug)]
pub struct DfVm {
    pub(crate) vm: Vm,
    /// The error of the most recent failing call on this VM.
    pub(crate) last_error: Option<Error>,
    /// Set when a panic unwound out of the core: its state can no longer be trusted.
    pub(crate) poisoned: bool,
}

thread_local! {
    static LAST_ERROR: RefCell<Option<Error>> = const { RefCell::new(None) };
}

pub(crate) fn set_thread_error(e: &Error) {
    LAST_ERROR.with(|l| *l.borrow_mut() = Some(e.clone()));
}

pub(crate) fn thread_error() -> Option<Error> {
    LAST_ERROR.with(|l| l.borrow().clone())
}

fn panic_error(payload: Box<dyn Any + Send>) -> Error {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic payload".to_owned());
    Error::new(codes::INTERNAL, format!("panic: {what}"))
}

/// The status code of an error. Core codes are `u16`, so every code fits.
pub(crate) fn code_of(e: &Error) -> i32 {
    i32::from(e.code)
}

/// Runs a body that does not involve a VM.
pub(crate) fn call(body: impl FnOnce() -> Result<(), Error>) -> i32 {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            set_thread_error(&e);
            code_of(&e)
        }
        Err(payload) => {
            let e = panic_error(payload);
            set_thread_error(&e);
            code_of(&e)
        }
    }
}

/// Runs `body` on the VM behind `vm`, records its error on the VM and the thread.
///
/// # Safety
/// `vm` must be NULL or a live pointer returned by `df_vm_new*` and not yet freed, with no
/// other call on the same VM running concurrently.
pub(crate) unsafe fn call_vm(
    vm: *mut DfVm,
    body: impl FnOnce(&mut DfVm) -> Result<(), Error>,
) -> i32 {
    let result = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: per this function's contract `vm` is NULL or live and not aliased.
        let Some(v) = (unsafe { vm.as_mut() }) else {
            return Err(bad_arg("vm is NULL"));
        };
        if v.poisoned {
            return Err(Error::new(
                codes::INTERNAL,
                "panic: the VM is unusable after an earlier panic; free it",
            ));
        }
        body(v)
    }));
    let error = match result {
        Ok(Ok(())) => return 0,
        Ok(Err(e)) => e,
        Err(payload) => {
            // SAFETY: as above; the closure that borrowed the VM has returned.
            if let Some(v) = unsafe { vm.as_mut() } {
                v.poisoned = true;
            }
            panic_error(payload)
        }
    };
    set_thread_error(&error);
    // SAFETY: as above.
    if let Some(v) = unsafe { vm.as_mut() } {
        v.last_error = Some(error.clone());
    }
    code_of(&error)
}

/// Writes `value` through the out-pointer `p` without reading (or dropping) what was there.
///
/// # Safety
/// `p` must be NULL or valid for writes of `T`.
pub(crate) unsafe fn write_out<T>(p: *mut T, what: &str, value: T) -> Result<(), Error> {
    if p.is_null() {
        return Err(bad_arg(format!("{what} is NULL")));
    }
    // SAFETY: non-NULL and valid for writes per the contract; `write` does not drop the old
    // (possibly uninitialised) contents.
    unsafe { p.write(value) };
    Ok(())
}
