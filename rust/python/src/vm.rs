//! `durable_futures._core.Vm`: one invocation attempt's state machine.
//!
//! The methods on the replay path (`sys_run`, `await_take`, `select_next`, the value of a
//! completed handle) return small tuples and integer codes: they run once per journal entry,
//! and a tuple is the cheapest object to make and unpack. Records made once per attempt
//! (`sys_input`, `last_error`) are classes with named fields.

use bytes::Bytes;
use durable_futures_core::protocol::{AttachTarget, Header};
use durable_futures_core::{
    AwaitOutcome, Combinator, CommandResult, Error, Handle, OnMaxAttempts, RetryPolicy, RunExit,
    SelectOutcome, Target, Value, Vm, VmOptions,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

use super::protocol::type_name;
use super::{failure, failure_with, IntoPy};

// Results of `do_await`, `await_take` and `select_next` (exported as `OUTCOME_*`).
pub const READY: u8 = 0;
pub const CANCELLED: u8 = 1;
pub const PENDING: u8 = 2;
pub const SUSPENDED: u8 = 3;
pub const EXHAUSTED: u8 = 4;

// Kinds of notification values (exported as `KIND_*`).
pub const VOID: u8 = 0;
pub const VALUE: u8 = 1;
pub const FAILURE: u8 = 2;
pub const INVOCATION_ID: u8 = 3;
pub const STATE_KEYS: u8 = 4;

// Combinator kinds of `Vm.combinator` (exported as `COMBINATOR_*`).
pub const FIRST_COMPLETED: u8 = 0;
pub const ALL_COMPLETED: u8 = 1;
pub const FIRST_SUCCEEDED_OR_ALL_FAILED: u8 = 2;
pub const ALL_SUCCEEDED_OR_FIRST_FAILED: u8 = 3;

/// `(kind, payload)` of a completed handle: `(VALUE, bytes)`, `(FAILURE, (code, message,
/// metadata))`, `(VOID, None)`, `(INVOCATION_ID, str)` or `(STATE_KEYS, [str])`.
fn value_to_py(py: Python<'_>, v: Value) -> PyResult<PyObject> {
    let (kind, payload): (u8, PyObject) = match v {
        Value::Void => (VOID, py.None()),
        Value::Value(b) => (VALUE, PyBytes::new(py, &b).into_any().unbind()),
        Value::Failure(f) => (
            FAILURE,
            (f.code, f.message, f.metadata)
                .into_pyobject(py)?
                .into_any()
                .unbind(),
        ),
        Value::InvocationId(id) => (INVOCATION_ID, id.into_pyobject(py)?.into_any().unbind()),
        Value::StateKeys(keys) => {
            let list = PyList::empty(py);
            for k in keys {
                list.append(String::from_utf8_lossy(&k).into_owned())?;
            }
            (STATE_KEYS, list.into_any().unbind())
        }
    };
    Ok(
        PyTuple::new(py, [kind.into_pyobject(py)?.into_any().unbind(), payload])?
            .into_any()
            .unbind(),
    )
}

fn await_code(o: AwaitOutcome) -> u8 {
    match o {
        AwaitOutcome::Ready => READY,
        AwaitOutcome::Cancelled => CANCELLED,
        AwaitOutcome::Pending { .. } => PENDING,
        AwaitOutcome::Suspended => SUSPENDED,
    }
}

/// What `Vm.sys_input` returns: the invocation and its input.
#[pyclass(module = "durable_futures._core", name = "Input", frozen, get_all)]
pub struct PyInput {
    invocation_id: String,
    /// The virtual object's key ("" for services).
    key: String,
    headers: Vec<(String, String)>,
    input: Py<PyBytes>,
    random_seed: u64,
}

/// The error that closed a VM (`Vm.last_error()`), with the command it is about.
#[pyclass(module = "durable_futures._core", name = "VmError", frozen, get_all)]
pub struct PyVmError {
    code: u16,
    message: String,
    stacktrace: String,
    /// Index among commands (the input command is 0).
    related_command_index: Option<u32>,
    /// The command's message type name (`RunCommand`, ...).
    related_command_type: Option<String>,
    related_command_name: Option<String>,
    next_retry_delay_ms: Option<u64>,
}

#[pymethods]
impl PyVmError {
    fn __repr__(&self) -> String {
        format!(
            "VmError(code={}, message={:?}, related_command_index={:?}, related_command_type={:?}, related_command_name={:?})",
            self.code,
            self.message,
            self.related_command_index,
            self.related_command_type,
            self.related_command_name
        )
    }
}

/// The target of an attach or get-output command: exactly one of the two.
fn attach_target(
    invocation_id: Option<String>,
    workflow: Option<(String, String)>,
) -> PyResult<AttachTarget> {
    match (invocation_id, workflow) {
        (Some(id), None) => Ok(AttachTarget::InvocationId(id)),
        (None, Some((name, key))) => Ok(AttachTarget::Workflow {
            workflow_name: name,
            workflow_key: key,
            scope: None,
        }),
        _ => Err(PyValueError::new_err(
            "give either invocation_id or workflow=(name, key)",
        )),
    }
}

/// The retry policy of a run: all `None` means retry forever.
#[allow(clippy::too_many_arguments)]
fn policy(
    max_attempts: Option<u32>,
    max_duration_ms: Option<u64>,
    initial_interval_ms: Option<u64>,
    max_interval_ms: Option<u64>,
    factor: Option<f64>,
) -> RetryPolicy {
    if max_attempts.is_none()
        && max_duration_ms.is_none()
        && initial_interval_ms.is_none()
        && max_interval_ms.is_none()
        && factor.is_none()
    {
        return RetryPolicy::Infinite;
    }
    RetryPolicy::Exponential {
        initial_interval_ms: initial_interval_ms.unwrap_or(50),
        factor: factor.unwrap_or(2.0),
        max_interval_ms: Some(max_interval_ms.unwrap_or(10_000)),
        max_attempts,
        max_duration_ms,
        on_max: OnMaxAttempts::Fail,
    }
}

/// One invocation attempt's state machine (see `durable_futures_core::Vm`).
#[pyclass(module = "durable_futures._core", name = "Vm")]
pub struct PyVm {
    vm: Vm,
}

#[pymethods]
impl PyVm {
    #[new]
    #[pyo3(signature = (content_type, implicit_cancellation=true))]
    fn new(content_type: &str, implicit_cancellation: bool) -> PyResult<PyVm> {
        let mut options = VmOptions::default();
        options.implicit_cancellation = implicit_cancellation;
        Ok(PyVm {
            vm: Vm::new(content_type, options).py()?,
        })
    }

    fn response_content_type(&self) -> &'static str {
        self.vm.response_content_type()
    }

    fn notify_input(&mut self, data: &[u8]) {
        self.vm.notify_input(data);
    }

    fn notify_input_closed(&mut self) {
        self.vm.notify_input_closed();
    }

    #[pyo3(signature = (message, stacktrace="", code=500, retry_delay_ms=None))]
    fn notify_error(
        &mut self,
        message: &str,
        stacktrace: &str,
        code: u16,
        retry_delay_ms: Option<u64>,
    ) {
        let mut e = Error::new(code, message).with_stacktrace(stacktrace);
        e.next_retry_delay_ms = retry_delay_ms;
        self.vm.notify_error(e);
    }

    fn take_output<'py>(&mut self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let out = self.vm.take_output();
        PyBytes::new(py, &out)
    }

    fn is_ready_to_execute(&self) -> PyResult<bool> {
        self.vm.is_ready_to_execute().py()
    }

    fn is_replaying(&self) -> bool {
        self.vm.is_replaying()
    }

    fn retry_count(&self) -> u32 {
        self.vm.retry_count()
    }

    fn is_closed(&self) -> bool {
        self.vm.state() == durable_futures_core::State::Closed
    }

    /// The invocation and its input.
    fn sys_input(&mut self, py: Python<'_>) -> PyResult<PyInput> {
        let i = self.vm.sys_input().py()?;
        Ok(PyInput {
            invocation_id: i.invocation_id,
            key: i.key,
            headers: i.headers.into_iter().map(|h| (h.key, h.value)).collect(),
            input: PyBytes::new(py, &i.input).unbind(),
            random_seed: i.random_seed,
        })
    }

    /// The error that closed the VM (a journal mismatch, a protocol violation, an error
    /// the host reported), `None` if it is open or ended without one.
    fn last_error(&self) -> Option<PyVmError> {
        self.vm.last_error().map(|e| {
            let related = e.related_command.as_ref();
            PyVmError {
                code: e.code,
                message: e.message.clone(),
                stacktrace: e.stacktrace.clone(),
                related_command_index: related.map(|r| r.index),
                related_command_type: related.map(|r| type_name(r.ty)),
                related_command_name: related.and_then(|r| r.name.clone()),
                next_retry_delay_ms: e.next_retry_delay_ms,
            }
        })
    }

    /// `(handle, replayed)`.
    fn sys_run(&mut self, name: &str) -> PyResult<(u32, bool)> {
        let r = self.vm.sys_run(name).py()?;
        Ok((r.handle.0, r.replayed))
    }

    fn propose_run_success(&mut self, handle: u32, value: &[u8]) -> PyResult<()> {
        let exit = RunExit::Success(Bytes::copy_from_slice(value));
        self.vm
            .propose_run_completion(Handle(handle), exit, &RetryPolicy::Infinite)
            .py()
    }

    #[pyo3(signature = (handle, code, message, metadata=Vec::new()))]
    fn propose_run_failure(
        &mut self,
        handle: u32,
        code: u32,
        message: String,
        metadata: Vec<(String, String)>,
    ) -> PyResult<()> {
        let exit = RunExit::TerminalFailure(failure_with(code, message, metadata));
        self.vm
            .propose_run_completion(Handle(handle), exit, &RetryPolicy::Infinite)
            .py()
    }

    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (handle, code, message, stacktrace, attempt_duration_ms, max_attempts=None, max_duration_ms=None, initial_interval_ms=None, max_interval_ms=None, factor=None))]
    fn propose_run_retryable(
        &mut self,
        handle: u32,
        code: u16,
        message: &str,
        stacktrace: &str,
        attempt_duration_ms: u64,
        max_attempts: Option<u32>,
        max_duration_ms: Option<u64>,
        initial_interval_ms: Option<u64>,
        max_interval_ms: Option<u64>,
        factor: Option<f64>,
    ) -> PyResult<()> {
        let exit = RunExit::RetryableFailure {
            error: Error::new(code, message).with_stacktrace(stacktrace),
            attempt_duration_ms,
        };
        let p = policy(
            max_attempts,
            max_duration_ms,
            initial_interval_ms,
            max_interval_ms,
            factor,
        );
        self.vm
            .propose_run_completion(Handle(handle), exit, &p)
            .py()
    }

    fn sys_sleep(&mut self, name: &str, wake_up_time_ms: u64) -> PyResult<u32> {
        Ok(self.vm.sys_sleep(name, wake_up_time_ms).py()?.0)
    }

    /// `(invocation_id_handle, result_handle)`.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (service, handler, parameter, key=None, idempotency_key=None, headers=Vec::new(), name=""))]
    fn sys_call(
        &mut self,
        service: String,
        handler: String,
        parameter: &[u8],
        key: Option<String>,
        idempotency_key: Option<String>,
        headers: Vec<(String, String)>,
        name: &str,
    ) -> PyResult<(u32, u32)> {
        let t = target(service, handler, key, idempotency_key, headers);
        let h = self
            .vm
            .sys_call(t, Bytes::copy_from_slice(parameter), name)
            .py()?;
        Ok((h.invocation_id.0, h.result.0))
    }

    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (service, handler, parameter, key=None, idempotency_key=None, headers=Vec::new(), invoke_time_ms=None, name=""))]
    fn sys_send(
        &mut self,
        service: String,
        handler: String,
        parameter: &[u8],
        key: Option<String>,
        idempotency_key: Option<String>,
        headers: Vec<(String, String)>,
        invoke_time_ms: Option<u64>,
        name: &str,
    ) -> PyResult<u32> {
        let t = target(service, handler, key, idempotency_key, headers);
        let h = self
            .vm
            .sys_send(t, Bytes::copy_from_slice(parameter), invoke_time_ms, name)
            .py()?;
        Ok(h.0)
    }

    /// `(awakeable_id, handle)`.
    fn sys_awakeable(&mut self) -> PyResult<(String, u32)> {
        let a = self.vm.sys_awakeable().py()?;
        Ok((a.id, a.handle.0))
    }

    fn sys_resolve_awakeable(&mut self, id: &str, value: &[u8]) -> PyResult<()> {
        let r = CommandResult::Value(Bytes::copy_from_slice(value));
        self.vm.sys_complete_awakeable(id, r).py()
    }

    fn sys_reject_awakeable(&mut self, id: &str, code: u32, message: String) -> PyResult<()> {
        self.vm
            .sys_complete_awakeable(id, CommandResult::Failure(failure(code, message)))
            .py()
    }

    fn signal_handle(&mut self, name: &str) -> PyResult<u32> {
        Ok(self.vm.signal_handle(name).py()?.0)
    }

    fn sys_cancel_invocation(&mut self, invocation_id: &str) -> PyResult<()> {
        self.vm.sys_cancel_invocation(invocation_id).py()
    }

    fn sys_get_promise(&mut self, key: &str) -> PyResult<u32> {
        Ok(self.vm.sys_get_promise(key).py()?.0)
    }

    fn sys_peek_promise(&mut self, key: &str) -> PyResult<u32> {
        Ok(self.vm.sys_peek_promise(key).py()?.0)
    }

    fn sys_resolve_promise(&mut self, key: &str, value: &[u8]) -> PyResult<u32> {
        let r = CommandResult::Value(Bytes::copy_from_slice(value));
        Ok(self.vm.sys_complete_promise(key, r).py()?.0)
    }

    fn sys_reject_promise(&mut self, key: &str, code: u32, message: String) -> PyResult<u32> {
        let r = CommandResult::Failure(failure(code, message));
        Ok(self.vm.sys_complete_promise(key, r).py()?.0)
    }

    /// Attaches to another invocation's result: by `invocation_id`, or by the workflow
    /// `(name, key)` whose main handler it is.
    #[pyo3(signature = (invocation_id=None, workflow=None))]
    fn sys_attach_invocation(
        &mut self,
        invocation_id: Option<String>,
        workflow: Option<(String, String)>,
    ) -> PyResult<u32> {
        let t = attach_target(invocation_id, workflow)?;
        Ok(self.vm.sys_attach_invocation(t).py()?.0)
    }

    /// Reads another invocation's output now (void while it has none).
    #[pyo3(signature = (invocation_id=None, workflow=None))]
    fn sys_get_invocation_output(
        &mut self,
        invocation_id: Option<String>,
        workflow: Option<(String, String)>,
    ) -> PyResult<u32> {
        let t = attach_target(invocation_id, workflow)?;
        Ok(self.vm.sys_get_invocation_output(t).py()?.0)
    }

    fn sys_state_get(&mut self, key: &str) -> PyResult<u32> {
        Ok(self.vm.sys_state_get(key).py()?.0)
    }

    fn sys_state_get_keys(&mut self) -> PyResult<u32> {
        Ok(self.vm.sys_state_get_keys().py()?.0)
    }

    fn sys_state_set(&mut self, key: &str, value: &[u8]) -> PyResult<()> {
        self.vm
            .sys_state_set(key, Bytes::copy_from_slice(value))
            .py()
    }

    fn sys_state_clear(&mut self, key: &str) -> PyResult<()> {
        self.vm.sys_state_clear(key).py()
    }

    fn sys_state_clear_all(&mut self) -> PyResult<()> {
        self.vm.sys_state_clear_all().py()
    }

    fn sys_write_output_success(&mut self, value: &[u8]) -> PyResult<()> {
        self.vm
            .sys_write_output(CommandResult::Value(Bytes::copy_from_slice(value)))
            .py()
    }

    #[pyo3(signature = (code, message, metadata=Vec::new()))]
    fn sys_write_output_failure(
        &mut self,
        code: u32,
        message: String,
        metadata: Vec<(String, String)>,
    ) -> PyResult<()> {
        self.vm
            .sys_write_output(CommandResult::Failure(failure_with(
                code, message, metadata,
            )))
            .py()
    }

    fn sys_end(&mut self) -> PyResult<()> {
        self.vm.sys_end().py()
    }

    /// `kind`: one of the `COMBINATOR_*` constants.
    fn combinator(&mut self, kind: u8, handles: Vec<u32>) -> PyResult<u32> {
        let kind = match kind {
            FIRST_COMPLETED => Combinator::FirstCompleted,
            ALL_COMPLETED => Combinator::AllCompleted,
            FIRST_SUCCEEDED_OR_ALL_FAILED => Combinator::FirstSucceededOrAllFailed,
            ALL_SUCCEEDED_OR_FIRST_FAILED => Combinator::AllSucceededOrFirstFailed,
            _ => {
                return Err(PyValueError::new_err(format!(
                    "unknown combinator kind {kind}"
                )))
            }
        };
        let hs: Vec<Handle> = handles.into_iter().map(Handle).collect();
        Ok(self.vm.combinator(kind, &hs).py()?.0)
    }

    /// `(succeeded, decided_by)` of a resolved combinator, `None` while pending.
    fn outcome(&self, handle: u32) -> Option<(bool, Option<u32>)> {
        self.vm
            .outcome(Handle(handle))
            .map(|o| (o.succeeded, o.decided_by.map(|h| h.0)))
    }

    fn selector(&mut self, handles: Vec<u32>) -> PyResult<u32> {
        let hs: Vec<Handle> = handles.into_iter().map(Handle).collect();
        Ok(self.vm.selector(&hs).py()?.0)
    }

    fn selector_remaining(&self, selector: u32) -> PyResult<usize> {
        self.vm.selector_remaining(Handle(selector)).py()
    }

    fn release(&mut self, handle: u32) {
        self.vm.release(Handle(handle));
    }

    fn is_completed(&self, handle: u32) -> bool {
        self.vm.is_completed(Handle(handle))
    }

    /// Whether the notification of `handle` has arrived (queued or ready), without
    /// consuming input.
    fn has_arrived(&self, handle: u32) -> bool {
        self.vm.has_arrived(Handle(handle))
    }

    /// `OUTCOME_READY`, `_CANCELLED`, `_PENDING` or `_SUSPENDED`.
    fn do_await(&mut self, handle: u32) -> PyResult<u8> {
        Ok(await_code(self.vm.do_await(Handle(handle)).py()?))
    }

    /// Awaits and, when ready, takes the value in the same call: `(code, value)`, `value`
    /// as `take_notification` returns it.
    fn await_take(&mut self, py: Python<'_>, handle: u32) -> PyResult<(u8, PyObject)> {
        awaited_to_py(py, self.await_then_take(handle)?)
    }

    /// `await_take` for the common case of a replayed run: the value's bytes alone when the
    /// handle is ready with a value (no tuples to build and unpack), otherwise exactly what
    /// `await_take` returns.
    fn await_value(&mut self, py: Python<'_>, handle: u32) -> PyResult<PyObject> {
        match self.await_then_take(handle)? {
            Ok(Some(Value::Value(b))) => Ok(PyBytes::new(py, &b).into_any().unbind()),
            other => Ok(awaited_to_py(py, other)?
                .into_pyobject(py)?
                .into_any()
                .unbind()),
        }
    }

    /// `(code, handle)`: an `OUTCOME_*` code (`OUTCOME_READY`: `handle` was selected;
    /// `OUTCOME_EXHAUSTED`: every handle was).
    fn select_next(&mut self, selector: u32) -> PyResult<(u8, u32)> {
        Ok(match self.vm.select_next(Handle(selector)).py()? {
            SelectOutcome::Selected(h) => (READY, h.0),
            SelectOutcome::Cancelled => (CANCELLED, 0),
            SelectOutcome::Pending { .. } => (PENDING, 0),
            SelectOutcome::Suspended => (SUSPENDED, 0),
            SelectOutcome::Exhausted => (EXHAUSTED, 0),
        })
    }

    /// `(kind, payload)` of a completed leaf handle, `None` if not completed (or taken).
    fn take_notification(&mut self, py: Python<'_>, handle: u32) -> PyResult<Option<PyObject>> {
        match self.vm.take_notification(Handle(handle)).py()? {
            Some(v) => Ok(Some(value_to_py(py, v)?)),
            None => Ok(None),
        }
    }
}

impl PyVm {
    /// Awaits `handle`, then takes its value if it is ready: `Err(code)` while it is not.
    fn await_then_take(&mut self, handle: u32) -> PyResult<Result<Option<Value>, u8>> {
        let code = await_code(self.vm.do_await(Handle(handle)).py()?);
        if code != READY {
            return Ok(Err(code));
        }
        Ok(Ok(self.vm.take_notification(Handle(handle)).py()?))
    }
}

/// What `await_take` returns for an outcome of [`PyVm::await_then_take`].
fn awaited_to_py(py: Python<'_>, awaited: Result<Option<Value>, u8>) -> PyResult<(u8, PyObject)> {
    Ok(match awaited {
        Err(code) => (code, py.None()),
        Ok(Some(v)) => (READY, value_to_py(py, v)?),
        Ok(None) => (READY, py.None()),
    })
}

fn target(
    service: String,
    handler: String,
    key: Option<String>,
    idempotency_key: Option<String>,
    headers: Vec<(String, String)>,
) -> Target {
    Target {
        service,
        handler,
        key,
        idempotency_key,
        headers: headers
            .into_iter()
            .map(|(key, value)| Header { key, value })
            .collect(),
        ..Target::default()
    }
}
