//! `durable_futures._core`: the compiled half of the Python package.
//!
//! Only bindings live here; the logic is in `durable-futures-core`. Every core error becomes
//! an exception of `durable_futures.errors` in one place ([`to_py`]), so tracebacks name the
//! public classes (`durable_futures.errors.JournalMismatchError`, ...).

use bytes::Bytes;
use durable_futures_core::protocol::Header;
use durable_futures_core::{
    AwaitOutcome, Combinator, CommandResult, Error, Failure, Handle, OnMaxAttempts, RetryPolicy,
    RunExit, SelectOutcome, Target, Value, Vm, VmOptions,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyBytes, PyList, PyTuple};

/// The version of the compiled core; the Python package checks it at import.
const VERSION: &str = env!("CARGO_PKG_VERSION");

// Results of `do_await` / `select_next`; mirrored in `_core.pyi` and `durable_futures._vm`.
const READY: u8 = 0;
const CANCELLED: u8 = 1;
const PENDING: u8 = 2;
const SUSPENDED: u8 = 3;
const EXHAUSTED: u8 = 4;

// Kinds of notification values.
const VOID: u8 = 0;
const VALUE: u8 = 1;
const FAILURE: u8 = 2;
const INVOCATION_ID: u8 = 3;
const STATE_KEYS: u8 = 4;

static ERROR_FOR_CODE: GILOnceCell<PyObject> = GILOnceCell::new();

/// The one conversion from core errors to Python exceptions.
fn to_py(e: Error) -> PyErr {
    Python::with_gil(|py| {
        let make = ERROR_FOR_CODE.get_or_try_init(py, || -> PyResult<PyObject> {
            Ok(py
                .import("durable_futures.errors")?
                .getattr("error_for_code")?
                .unbind())
        });
        match make.and_then(|f| f.call1(py, (e.code, e.message.clone()))) {
            Ok(exc) => PyErr::from_value(exc.into_bound(py)),
            Err(import_error) => import_error,
        }
    })
}

trait IntoPy<T> {
    fn py(self) -> PyResult<T>;
}

impl<T> IntoPy<T> for Result<T, Error> {
    fn py(self) -> PyResult<T> {
        self.map_err(to_py)
    }
}

fn failure(code: u32, message: String) -> Failure {
    failure_with(code, message, Vec::new())
}

fn failure_with(code: u32, message: String, metadata: Vec<(String, String)>) -> Failure {
    Failure {
        code,
        message,
        metadata,
    }
}

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
struct PyVm {
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

    fn is_closed(&self) -> bool {
        self.vm.state() == durable_futures_core::State::Closed
    }

    /// `(invocation_id, key, headers, input, random_seed)`.
    #[allow(clippy::type_complexity)]
    fn sys_input<'py>(
        &mut self,
        py: Python<'py>,
    ) -> PyResult<(
        String,
        String,
        Vec<(String, String)>,
        Bound<'py, PyBytes>,
        u64,
    )> {
        let i = self.vm.sys_input().py()?;
        let headers = i.headers.into_iter().map(|h| (h.key, h.value)).collect();
        Ok((
            i.invocation_id,
            i.key,
            headers,
            PyBytes::new(py, &i.input),
            i.random_seed,
        ))
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

    /// `kind`: 0 first-completed, 1 all-completed, 2 first-succeeded-or-all-failed,
    /// 3 all-succeeded-or-first-failed.
    fn combinator(&mut self, kind: u8, handles: Vec<u32>) -> PyResult<u32> {
        let kind = match kind {
            0 => Combinator::FirstCompleted,
            1 => Combinator::AllCompleted,
            2 => Combinator::FirstSucceededOrAllFailed,
            3 => Combinator::AllSucceededOrFirstFailed,
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

    /// 0 ready, 1 cancelled, 2 pending, 3 suspended.
    fn do_await(&mut self, handle: u32) -> PyResult<u8> {
        Ok(await_code(self.vm.do_await(Handle(handle)).py()?))
    }

    /// Awaits and, when ready, takes the value in the same call: `(code, value)`.
    fn await_take(&mut self, py: Python<'_>, handle: u32) -> PyResult<(u8, PyObject)> {
        let code = await_code(self.vm.do_await(Handle(handle)).py()?);
        if code != READY {
            return Ok((code, py.None()));
        }
        match self.vm.take_notification(Handle(handle)).py()? {
            Some(v) => Ok((READY, value_to_py(py, v)?)),
            None => Ok((READY, py.None())),
        }
    }

    /// `(code, handle)`: 0 selected, 1 cancelled, 2 pending, 3 suspended, 4 exhausted.
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

mod identity;

/// Python module `durable_futures._core`.
#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", VERSION)?;
    m.add("PROTOCOL_VERSIONS", (5u32, 7u32))?;
    m.add_class::<PyVm>()?;
    m.add_class::<engine_bindings::PyEngine>()?;
    identity::register(m)?;
    Ok(())
}

// ---- the embedded engine -----------------------------------------------------------------------

mod engine_bindings {
    use durable_futures_engine::engine::{Effect, Engine, EngineError, RetryOptions, Submission};
    use durable_futures_engine::model::{InvocationId, Outcome, Status};
    use durable_futures_engine::store::{Durability, Store, StoreError};
    use pyo3::prelude::*;
    use pyo3::types::PyBytes;
    use std::sync::{Mutex, PoisonError};

    use super::to_py;

    fn engine_err(e: EngineError) -> PyErr {
        let (code, message) = match &e {
            EngineError::Store(StoreError::Full(..)) => (507, e.to_string()),
            EngineError::Store(_) => (507, e.to_string()),
            EngineError::UnknownInvocation(_) => (404, e.to_string()),
            EngineError::BadAwakeable(_) => (400, e.to_string()),
            _ => (500, e.to_string()),
        };
        to_py(durable_futures_core::Error::new(code, message))
    }

    fn parse_id(id: &str) -> PyResult<InvocationId> {
        InvocationId::parse(id).ok_or_else(|| {
            to_py(durable_futures_core::Error::new(
                404,
                format!("'{id}' is not an invocation id"),
            ))
        })
    }

    fn outcome_py(py: Python<'_>, o: Outcome) -> PyResult<PyObject> {
        Ok(match o {
            Outcome::Success(v) => (true, PyBytes::new(py, &v))
                .into_pyobject(py)?
                .into_any()
                .unbind(),
            Outcome::Failure { code, message } => (false, (code, message))
                .into_pyobject(py)?
                .into_any()
                .unbind(),
        })
    }

    /// The embedded engine (see `durable_futures_engine::engine::Engine`). Used from one
    /// thread, the event loop's (it may be dropped on any).
    #[pyclass(module = "durable_futures._core", name = "Engine")]
    pub struct PyEngine {
        // Used from the event loop's thread only; the mutex (never contended, and skipped by
        // `get_mut`) makes the object Sync, so it can be dropped by the garbage collector on
        // whichever thread it runs.
        engine: Mutex<Engine>,
    }

    impl PyEngine {
        fn eng(&mut self) -> &mut Engine {
            self.engine
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner)
        }
    }

    #[pymethods]
    impl PyEngine {
        #[new]
        #[pyo3(signature = (path=None, durability="fsync", retry_initial_ms=50, retry_factor=2.0, retry_max_ms=10_000, retry_max_attempts=None, max_db_bytes=None))]
        fn new(
            path: Option<std::path::PathBuf>,
            durability: &str,
            retry_initial_ms: u64,
            retry_factor: f64,
            retry_max_ms: u64,
            retry_max_attempts: Option<u32>,
            max_db_bytes: Option<u64>,
        ) -> PyResult<PyEngine> {
            let durability = match durability {
                "fsync" => Durability::Fsync,
                "os" => Durability::Os,
                other => {
                    return Err(to_py(durable_futures_core::Error::new(
                        400,
                        format!("durability must be 'fsync' or 'os', not {other:?}"),
                    )))
                }
            };
            let mut store = match &path {
                Some(p) => Store::open(p, durability),
                None => Store::open_in_memory(),
            }
            .map_err(|e| engine_err(EngineError::Store(e)))?;
            if max_db_bytes.is_some() {
                store
                    .set_size_limit(max_db_bytes)
                    .map_err(|e| engine_err(EngineError::Store(e)))?;
            }
            let retry = RetryOptions {
                initial_ms: retry_initial_ms,
                factor: retry_factor,
                max_ms: retry_max_ms,
                max_attempts: retry_max_attempts,
            };
            Ok(PyEngine {
                engine: Mutex::new(Engine::open(store, retry).map_err(engine_err)?),
            })
        }

        /// `(invocation_id, existing)`.
        #[allow(clippy::too_many_arguments)]
        #[pyo3(signature = (service, handler, key, input, idempotency_key, invoke_at, now))]
        fn submit(
            &mut self,
            service: &str,
            handler: &str,
            key: &str,
            input: &[u8],
            idempotency_key: Option<&str>,
            invoke_at: u64,
            now: u64,
        ) -> PyResult<(String, bool)> {
            let req = Submission {
                service,
                handler,
                key,
                input,
                idempotency_key,
                invoke_at,
            };
            let s = self.eng().submit(&req, now).map_err(engine_err)?;
            Ok((s.id.to_text(), s.existing))
        }

        /// `(invocation_id, token, service, handler, request, content_type)` or `None`.
        #[allow(clippy::type_complexity)]
        fn next_attempt<'py>(
            &mut self,
            py: Python<'py>,
            now: u64,
        ) -> PyResult<
            Option<(
                String,
                u64,
                String,
                String,
                Bound<'py, PyBytes>,
                &'static str,
            )>,
        > {
            Ok(self.eng().next_attempt(now).map_err(engine_err)?.map(|a| {
                (
                    a.id.to_text(),
                    a.token,
                    a.service,
                    a.handler,
                    PyBytes::new(py, &a.request),
                    a.content_type,
                )
            }))
        }

        fn on_output(&mut self, id: &str, token: u64, data: &[u8], now: u64) -> PyResult<()> {
            self.eng().on_output(parse_id(id)?, token, data, now);
            Ok(())
        }

        fn not_delivered(&mut self, id: &str, token: u64) -> PyResult<()> {
            self.eng().not_delivered(parse_id(id)?, token);
            Ok(())
        }

        fn attempt_failed(&mut self, id: &str, token: u64, reason: &str, now: u64) -> PyResult<()> {
            self.eng().attempt_failed(parse_id(id)?, token, reason, now);
            Ok(())
        }

        /// Group commit. Effects: `("deliver", id, token, frames)` or
        /// `("completed", id, (ok, payload))`.
        fn commit(&mut self, py: Python<'_>, now: u64) -> PyResult<Vec<PyObject>> {
            let effects = self.eng().commit(now).map_err(engine_err)?;
            let mut out = Vec::with_capacity(effects.len());
            for e in effects {
                out.push(match e {
                    Effect::Deliver { id, token, frames } => {
                        ("deliver", id.to_text(), token, PyBytes::new(py, &frames))
                            .into_pyobject(py)?
                            .into_any()
                            .unbind()
                    }
                    Effect::Completed { id, outcome } => {
                        ("completed", id.to_text(), outcome_py(py, outcome)?)
                            .into_pyobject(py)?
                            .into_any()
                            .unbind()
                    }
                    _ => continue,
                });
            }
            Ok(out)
        }

        fn fire_timers(&mut self, now: u64) -> usize {
            self.eng().fire_timers(now)
        }

        fn next_wakeup(&mut self) -> Option<u64> {
            self.eng().next_wakeup()
        }

        fn has_ready(&mut self) -> bool {
            self.eng().has_ready()
        }

        fn commit_is_urgent(&mut self) -> bool {
            self.eng().commit_is_urgent()
        }

        fn has_pending(&mut self) -> bool {
            self.eng().has_pending()
        }

        fn set_shared_handlers(&mut self, handlers: Vec<(String, String)>) {
            self.eng().set_shared_handlers(handlers);
        }

        fn unfinished(&mut self) -> usize {
            self.eng().unfinished()
        }

        fn resolve_awakeable(&mut self, id: &str, value: &[u8]) -> PyResult<()> {
            self.eng().resolve_awakeable(id, value).map_err(engine_err)
        }

        fn reject_awakeable(&mut self, id: &str, code: u32, message: &str) -> PyResult<()> {
            self.eng()
                .reject_awakeable(id, code, message)
                .map_err(engine_err)
        }

        fn cancel(&mut self, id: &str) -> PyResult<()> {
            self.eng().cancel(parse_id(id)?).map_err(engine_err)
        }

        /// `None` while running, else `(ok, payload)`.
        fn outcome(&mut self, py: Python<'_>, id: &str) -> PyResult<Option<PyObject>> {
            match self.eng().outcome(&parse_id(id)?).map_err(engine_err)? {
                Some(o) => Ok(Some(outcome_py(py, o)?)),
                None => Ok(None),
            }
        }

        /// `(id, service, handler, key, status, attempt, created_at)` of stored invocations,
        /// newest first.
        #[allow(clippy::type_complexity)]
        fn list_invocations(
            &mut self,
            limit: usize,
        ) -> PyResult<Vec<(String, String, String, String, &'static str, u32, u64)>> {
            Ok(self
                .eng()
                .list(limit)
                .map_err(engine_err)?
                .into_iter()
                .map(|r| {
                    let status = match r.status {
                        Status::Ready => "ready",
                        Status::Suspended => "suspended",
                        _ => "completed",
                    };
                    (
                        r.id.to_text(),
                        r.service,
                        r.handler,
                        r.key,
                        status,
                        r.attempt,
                        r.created_at,
                    )
                })
                .collect())
        }

        /// `(service, handler, key, status)` of one invocation, `None` if unknown.
        fn invocation(
            &mut self,
            id: &str,
        ) -> PyResult<Option<(String, String, String, &'static str)>> {
            Ok(self
                .eng()
                .invocation(&parse_id(id)?)
                .map_err(engine_err)?
                .map(|r| {
                    let status = match r.status {
                        Status::Ready => "ready",
                        Status::Suspended => "suspended",
                        _ => "completed",
                    };
                    (r.service, r.handler, r.key, status)
                }))
        }

        /// The stored journal: protocol frames, in order.
        fn journal<'py>(
            &mut self,
            py: Python<'py>,
            id: &str,
        ) -> PyResult<Vec<Bound<'py, PyBytes>>> {
            Ok(self
                .eng()
                .journal(&parse_id(id)?)
                .map_err(engine_err)?
                .iter()
                .map(|f| PyBytes::new(py, f))
                .collect())
        }
    }
}
