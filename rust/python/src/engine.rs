//! `durable_futures._core.Engine`: the embedded engine, and the records it hands out.
//!
//! Records are classes with named fields (`Attempt`, `Deliver`, `Completed`, ...), and
//! stored invocations are `InvocationRow` named tuples; the one exception is an outcome,
//! `(ok, payload)`, which the Python engine hands to whoever waits as it is.

use std::sync::{Mutex, PoisonError};

use durable_futures_engine::engine::{
    Effect, Engine, EngineError, OnMaxAttempts, RetryOptions, Submission, DEFAULT_RETENTION_MS,
};
use durable_futures_engine::model::{FailureInfo, InvocationId, InvocationRow, Outcome};
use durable_futures_engine::query::SqlValue;
use durable_futures_engine::store::{Durability, Store, StoreError};
use pyo3::exceptions::{PyKeyError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyBytes, PyDict, PyTuple};

use super::to_py;

/// The exception for an engine error: `KeyError` for an unknown invocation, `ValueError`
/// for an operation its state does not allow, else the error of `durable_futures.errors`
/// for the code (507 for the store, 400 for a bad awakeable).
fn engine_err(e: EngineError) -> PyErr {
    let (code, message) = match &e {
        EngineError::NotFound(_) => return PyKeyError::new_err(e.to_string()),
        EngineError::Conflict(_) | EngineError::BadQuery(_) => {
            return PyValueError::new_err(e.to_string())
        }
        EngineError::Store(StoreError::Full(..)) => (507, e.to_string()),
        EngineError::Store(_) => (507, e.to_string()),
        EngineError::BadAwakeable(_) => (400, e.to_string()),
        _ => (500, e.to_string()),
    };
    to_py(durable_futures_core::Error::new(code, message))
}

// `Engine.__new__`'s text signature spells these defaults out for Python (stubtest reads
// it); they must stay what the signature uses.
const _: () = assert!(DEFAULT_RETENTION_MS == 86_400_000);

fn on_max_attempts(s: &str) -> PyResult<OnMaxAttempts> {
    match s {
        "pause" => Ok(OnMaxAttempts::Pause),
        "kill" => Ok(OnMaxAttempts::Kill),
        other => Err(PyValueError::new_err(format!(
            "on_max_attempts must be 'pause' or 'kill', not {other:?}"
        ))),
    }
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

/// The fields of `InvocationRow`: the first seven as before, then what an operator needs.
const INVOCATION_ROW_FIELDS: [&str; 15] = [
    "id",
    "service",
    "handler",
    "key",
    "status",
    "failed_attempts",
    "created_at_ms",
    "idempotency_key",
    "next_retry_at_ms",
    "modified_at_ms",
    "completed_at_ms",
    "completion_result",
    "completion_failure",
    "journal_size",
    "last_failure",
];

/// The fields of `FailureInfo`.
const FAILURE_INFO_FIELDS: [&str; 6] = [
    "code",
    "message",
    "stacktrace",
    "related_command_index",
    "related_command_type",
    "related_command_name",
];

static INVOCATION_ROW: GILOnceCell<PyObject> = GILOnceCell::new();
static FAILURE_INFO: GILOnceCell<PyObject> = GILOnceCell::new();

fn named_tuple(py: Python<'_>, name: &str, fields: &[&str], doc: &str) -> PyResult<PyObject> {
    let kwargs = PyDict::new(py);
    kwargs.set_item("module", "durable_futures._core")?;
    let ty = py
        .import("collections")?
        .getattr("namedtuple")?
        .call((name, fields.to_vec()), Some(&kwargs))?;
    ty.setattr("__doc__", doc)?;
    Ok(ty.unbind())
}

/// `InvocationRow`: a named tuple of a stored invocation (see [`INVOCATION_ROW_FIELDS`]).
pub fn invocation_row_type(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    INVOCATION_ROW
        .get_or_try_init(py, || {
            named_tuple(
                py,
                "InvocationRow",
                &INVOCATION_ROW_FIELDS,
                "A stored invocation: id, service, handler, key (\"\" for services), status \
                 (restate's: \"pending\", \"scheduled\", \"ready\", \"running\", \
                 \"backing-off\", \"suspended\", \"paused\" or \"completed\"), failed attempts \
                 since the last journaled entry, creation time (ms since the epoch), idempotency \
                 key, next attempt time (0: none), last change, completion time, completion \
                 result (\"success\" or \"failure\"), completion failure (\"[code] message\"), \
                 journal entries, and the last failure (a FailureInfo).",
            )
        })
        .map(|ty| ty.bind(py))
}

/// `FailureInfo`: a named tuple of the last failure of an invocation.
pub fn failure_info_type(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    FAILURE_INFO
        .get_or_try_init(py, || {
            named_tuple(
                py,
                "FailureInfo",
                &FAILURE_INFO_FIELDS,
                "Why the last attempt of an invocation failed: code, message, stack trace (at \
                 most 16 KiB), and the command the handler failed at: its index, its type in \
                 the handler's words (\"run\", \"sleep\", \"call\", ...) and its name.",
            )
        })
        .map(|ty| ty.bind(py))
}

fn failure_py(py: Python<'_>, f: FailureInfo) -> PyResult<PyObject> {
    let fields = (
        f.code,
        f.message,
        f.stacktrace,
        f.related_command_index,
        f.related_command_type,
        f.related_command_name,
    );
    Ok(failure_info_type(py)?.call1(fields)?.unbind())
}

/// Milliseconds since the epoch by the wall clock, for reads that are not given the host's
/// clock.
fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn row_py(py: Python<'_>, engine: &Engine, r: InvocationRow, now: u64) -> PyResult<PyObject> {
    let status = engine.display_status(&r, now);
    let journal_size = engine.journal_len(&r.id).map_err(engine_err)?;
    let (completion_result, completion_failure) = match &r.outcome {
        None => (None, None),
        Some(Outcome::Success(_)) => (Some("success"), None),
        Some(Outcome::Failure { code, message }) => {
            (Some("failure"), Some(format!("[{code}] {message}")))
        }
    };
    let last_failure = match r.last_failure {
        Some(f) => Some(failure_py(py, f)?),
        None => None,
    };
    let fields = [
        r.id.to_text().into_pyobject(py)?.into_any(),
        r.service.into_pyobject(py)?.into_any(),
        r.handler.into_pyobject(py)?.into_any(),
        r.key.into_pyobject(py)?.into_any(),
        status.into_pyobject(py)?.into_any(),
        r.attempt.into_pyobject(py)?.into_any(),
        r.created_at.into_pyobject(py)?.into_any(),
        r.idempotency_key.into_pyobject(py)?.into_any(),
        r.next_retry_at.into_pyobject(py)?.into_any(),
        r.modified_at.into_pyobject(py)?.into_any(),
        r.completed_at.into_pyobject(py)?.into_any(),
        completion_result.into_pyobject(py)?.into_any(),
        completion_failure.into_pyobject(py)?.into_any(),
        journal_size.into_pyobject(py)?.into_any(),
        last_failure.into_pyobject(py)?.into_any(),
    ];
    let fields = PyTuple::new(py, fields)?;
    Ok(invocation_row_type(py)?.call1(fields)?.unbind())
}

/// An attempt to start (`Engine.next_attempt`).
#[pyclass(module = "durable_futures._core", name = "Attempt", frozen, get_all)]
pub struct PyAttempt {
    id: String,
    /// Identifies the attempt in `on_output`, `not_delivered` and `attempt_failed`.
    token: u64,
    service: String,
    handler: String,
    /// `StartMessage` + the journal.
    request: Py<PyBytes>,
    content_type: String,
}

/// The request an attempt would start with (`Engine.attempt_request`).
#[pyclass(
    module = "durable_futures._core",
    name = "AttemptRequest",
    frozen,
    get_all
)]
pub struct PyAttemptRequest {
    /// `StartMessage` + the journal.
    body: Py<PyBytes>,
    /// Entries in the journal.
    entries: u32,
    content_type: String,
}

/// Effect of a commit: feed `frames` to the live attempt `token` of `id`.
#[pyclass(module = "durable_futures._core", name = "Deliver", frozen, get_all)]
pub struct PyDeliver {
    id: String,
    token: u64,
    frames: Py<PyBytes>,
}

/// Effect of a commit: invocation `id` completed with `outcome`, `(ok, payload)` as
/// `Engine.outcome` returns it.
#[pyclass(module = "durable_futures._core", name = "Completed", frozen, get_all)]
pub struct PyCompleted {
    id: String,
    outcome: PyObject,
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
    /// The retry defaults are restate-server's `default-retry-policy`: 500 ms doubling up to
    /// 60 s, 70 attempts, then pause (`retry_on_max_attempts="kill"` fails the invocation
    /// instead). `retry_max_attempts=None` retries forever. `retention_ms`: how long a
    /// completed invocation keeps its journal and idempotency key (one day).
    #[new]
    #[pyo3(signature = (
        path=None,
        durability="fsync",
        retry_initial_ms=500,
        retry_factor=2.0,
        retry_max_ms=60_000,
        retry_max_attempts=Some(70),
        max_db_bytes=None,
        retry_on_max_attempts="pause",
        mismatch_is_terminal=false,
        retention_ms=DEFAULT_RETENTION_MS,
    ))]
    #[pyo3(
        text_signature = "(path=None, durability='fsync', retry_initial_ms=500, \
        retry_factor=2.0, retry_max_ms=60000, retry_max_attempts=70, max_db_bytes=None, \
        retry_on_max_attempts='pause', mismatch_is_terminal=False, retention_ms=86400000)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn new(
        path: Option<std::path::PathBuf>,
        durability: &str,
        retry_initial_ms: u64,
        retry_factor: f64,
        retry_max_ms: u64,
        retry_max_attempts: Option<u32>,
        max_db_bytes: Option<u64>,
        retry_on_max_attempts: &str,
        mismatch_is_terminal: bool,
        retention_ms: u64,
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
            on_max_attempts: on_max_attempts(retry_on_max_attempts)?,
        };
        let mut engine = Engine::open(store, retry).map_err(engine_err)?;
        engine.set_mismatch_is_terminal(mismatch_is_terminal);
        engine.set_default_retention(retention_ms);
        Ok(PyEngine {
            engine: Mutex::new(engine),
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

    /// The next attempt to start, if one is due at `now`.
    fn next_attempt(&mut self, py: Python<'_>, now: u64) -> PyResult<Option<PyAttempt>> {
        Ok(self
            .eng()
            .next_attempt(now)
            .map_err(engine_err)?
            .map(|a| PyAttempt {
                id: a.id.to_text(),
                token: a.token,
                service: a.service,
                handler: a.handler,
                request: PyBytes::new(py, &a.request).unbind(),
                content_type: a.content_type.to_owned(),
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

    /// Group commit; what it released, in order: `Deliver` and `Completed` effects.
    fn commit(&mut self, py: Python<'_>, now: u64) -> PyResult<Vec<PyObject>> {
        // The write and its fsync run with the GIL released: run closures on other
        // threads go on meanwhile (nothing else calls this engine: its host is one loop).
        let eng = self.eng();
        let effects = py.allow_threads(|| eng.commit(now)).map_err(engine_err)?;
        let mut out = Vec::with_capacity(effects.len());
        for e in effects {
            // Exhaustive: a new kind of effect does not compile until it is handed out.
            let effect = match e {
                Effect::Deliver { id, token, frames } => PyDeliver {
                    id: id.to_text(),
                    token,
                    frames: PyBytes::new(py, &frames).unbind(),
                }
                .into_pyobject(py)?
                .into_any(),
                Effect::Completed { id, outcome } => PyCompleted {
                    id: id.to_text(),
                    outcome: outcome_py(py, outcome)?,
                }
                .into_pyobject(py)?
                .into_any(),
            };
            out.push(effect.unbind());
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

    /// Invocations waiting in line for an attempt to start.
    fn ready_len(&mut self) -> usize {
        self.eng().ready_len()
    }

    fn has_pending(&mut self) -> bool {
        self.eng().has_pending()
    }

    /// The retry policy of a service (`handler=None`) or of one of its handlers; a handler's
    /// beats its service's, which beats the engine's.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (service, handler, initial_ms, factor, max_ms, max_attempts, on_max_attempts))]
    fn set_retry_policy(
        &mut self,
        service: &str,
        handler: Option<&str>,
        initial_ms: u64,
        factor: f64,
        max_ms: u64,
        max_attempts: Option<u32>,
        on_max_attempts: &str,
    ) -> PyResult<()> {
        let policy = RetryOptions {
            initial_ms,
            factor,
            max_ms,
            max_attempts,
            on_max_attempts: self::on_max_attempts(on_max_attempts)?,
        };
        self.eng().set_retry_policy(service, handler, policy);
        Ok(())
    }

    /// How long completed invocations of a service (`handler=None`) or of one of its
    /// handlers keep their journal and idempotency key (ms); a handler's beats its
    /// service's, which beats the engine's `retention_ms`.
    #[pyo3(signature = (service, handler, ms))]
    fn set_retention(&mut self, service: &str, handler: Option<&str>, ms: u64) {
        self.eng().set_retention(service, handler, ms);
    }

    /// Deletes completed invocations whose retention has passed at `now` (at most 1,000 per
    /// call); returns how many. Call it periodically, again at once while it returns 1,000.
    fn purge_expired(&mut self, now: u64) -> PyResult<usize> {
        self.eng().purge_expired(now).map_err(engine_err)
    }

    fn set_shared_handlers(&mut self, handlers: Vec<(String, String)>) {
        self.eng().set_shared_handlers(handlers);
    }

    /// Workflows as `(service, main handler)`: the main handler runs once per key.
    fn set_workflows(&mut self, workflows: Vec<(String, String)>) {
        self.eng().set_workflows(workflows);
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

    /// Cancels an invocation in any state but completed (see the engine's `cancel`); the
    /// calls it awaits too. `KeyError` if unknown, `ValueError` if completed. `now`: the
    /// host's clock (ms), the wall clock if not given.
    #[pyo3(signature = (id, now=None))]
    fn cancel(&mut self, id: &str, now: Option<u64>) -> PyResult<()> {
        let now = now.unwrap_or_else(wall_clock_ms);
        self.eng().cancel(parse_id(id)?, now).map_err(engine_err)
    }

    /// Ends an invocation at once with 409 "killed", and the calls it awaits. `KeyError` if
    /// unknown, `ValueError` if completed.
    #[pyo3(signature = (id, now=None))]
    fn kill(&mut self, id: &str, now: Option<u64>) -> PyResult<()> {
        let now = now.unwrap_or_else(wall_clock_ms);
        self.eng().kill(parse_id(id)?, now).map_err(engine_err)
    }

    /// Stops an invocation's attempts until `resume`. `KeyError` if unknown, `ValueError` if
    /// completed.
    #[pyo3(signature = (id, now=None))]
    fn pause(&mut self, id: &str, now: Option<u64>) -> PyResult<()> {
        let now = now.unwrap_or_else(wall_clock_ms);
        self.eng().pause(parse_id(id)?, now).map_err(engine_err)
    }

    /// Runs a paused, suspended or backing-off invocation now, with a fresh count of
    /// attempts. `KeyError` if unknown, `ValueError` if completed.
    #[pyo3(signature = (id, now=None))]
    fn resume(&mut self, id: &str, now: Option<u64>) -> PyResult<()> {
        let now = now.unwrap_or_else(wall_clock_ms);
        self.eng().resume(parse_id(id)?, now).map_err(engine_err)
    }

    /// Deletes a completed invocation (row, journal, idempotency key). `KeyError` if
    /// unknown, `ValueError` if not completed.
    fn purge(&mut self, id: &str) -> PyResult<()> {
        self.eng().purge(parse_id(id)?).map_err(engine_err)
    }

    /// The id of the invocation running workflow `workflow`'s main handler under `key`
    /// (submitted, committed or not, and not purged), `None` if there is none.
    fn workflow_run(&mut self, workflow: &str, key: &str) -> PyResult<Option<String>> {
        Ok(self
            .eng()
            .workflow_run(workflow, key)
            .map_err(engine_err)?
            .map(|id| id.to_text()))
    }

    /// The id of the invocation submitted to `service`/`handler` under `key` (`""` for a
    /// plain service) with `idempotency_key`, `None` if there is none.
    fn idempotent_invocation(
        &mut self,
        service: &str,
        handler: &str,
        key: &str,
        idempotency_key: &str,
    ) -> PyResult<Option<String>> {
        Ok(self
            .eng()
            .idempotent_invocation(service, handler, key, idempotency_key)
            .map_err(engine_err)?
            .map(|id| id.to_text()))
    }

    /// `None` while running, else `(ok, payload)`.
    fn outcome(&mut self, py: Python<'_>, id: &str) -> PyResult<Option<PyObject>> {
        match self.eng().outcome(&parse_id(id)?).map_err(engine_err)? {
            Some(o) => Ok(Some(outcome_py(py, o)?)),
            None => Ok(None),
        }
    }

    /// The `limit` most recently created invocations, newest first. `now` (the host's clock,
    /// ms; the wall clock if not given) tells a backing-off or scheduled invocation from a
    /// ready one.
    #[pyo3(signature = (limit, now=None))]
    fn list_invocations(
        &mut self,
        py: Python<'_>,
        limit: usize,
        now: Option<u64>,
    ) -> PyResult<Vec<PyObject>> {
        let now = now.unwrap_or_else(wall_clock_ms);
        let engine = self.eng();
        engine
            .list(limit)
            .map_err(engine_err)?
            .into_iter()
            .map(|r| row_py(py, engine, r, now))
            .collect()
    }

    /// One stored invocation (an indexed lookup), `None` if unknown; `now` as in
    /// `list_invocations`.
    #[pyo3(signature = (id, now=None))]
    fn invocation(
        &mut self,
        py: Python<'_>,
        id: &str,
        now: Option<u64>,
    ) -> PyResult<Option<PyObject>> {
        let now = now.unwrap_or_else(wall_clock_ms);
        let id = parse_id(id)?;
        let engine = self.eng();
        match engine.invocation(&id).map_err(engine_err)? {
            Some(r) => Ok(Some(row_py(py, engine, r, now)?)),
            None => Ok(None),
        }
    }

    /// Runs one read-only SQL statement over `sys_invocation`, `sys_journal` and `state`
    /// (restate's introspection tables; statuses as of `now`): `(columns, rows)`, values
    /// `None`, `int`, `float`, `str` or `bytes`. `ValueError` for a statement that writes,
    /// is not one query, fails, returns more than 10,000 rows or runs over 5 s.
    fn query(
        &mut self,
        py: Python<'_>,
        sql: &str,
        now: u64,
    ) -> PyResult<(Vec<String>, Vec<Vec<PyObject>>)> {
        let result = self.eng().query(sql, now).map_err(engine_err)?;
        let mut rows = Vec::with_capacity(result.rows.len());
        for row in result.rows {
            let mut values = Vec::with_capacity(row.len());
            for v in row {
                values.push(match v {
                    SqlValue::Null => py.None(),
                    SqlValue::Integer(i) => i.into_pyobject(py)?.into_any().unbind(),
                    SqlValue::Real(f) => f.into_pyobject(py)?.into_any().unbind(),
                    SqlValue::Text(t) => t.into_pyobject(py)?.into_any().unbind(),
                    SqlValue::Blob(b) => PyBytes::new(py, &b).into_any().unbind(),
                });
            }
            rows.push(values);
        }
        Ok((result.columns, rows))
    }

    /// How many entries the stored journal of `id` has (0 for an unknown id).
    fn journal_len(&mut self, id: &str) -> PyResult<u32> {
        self.eng().journal_len(&parse_id(id)?).map_err(engine_err)
    }

    /// The request an attempt of `id` would start with now (what the engine itself
    /// sends: `StartMessage` with the object's state, then the stored journal), for an
    /// offline replay.
    fn attempt_request(&mut self, py: Python<'_>, id: &str) -> PyResult<PyAttemptRequest> {
        let r = self
            .eng()
            .attempt_request(&parse_id(id)?)
            .map_err(|e| match e {
                EngineError::NotFound(_) => {
                    to_py(durable_futures_core::Error::new(404, e.to_string()))
                }
                e => engine_err(e),
            })?;
        Ok(PyAttemptRequest {
            body: PyBytes::new(py, &r.body).unbind(),
            entries: r.entries,
            content_type: r.content_type.to_owned(),
        })
    }

    /// The stored journal: protocol frames, in order.
    fn journal<'py>(&mut self, py: Python<'py>, id: &str) -> PyResult<Vec<Bound<'py, PyBytes>>> {
        Ok(self
            .eng()
            .journal(&parse_id(id)?)
            .map_err(engine_err)?
            .iter()
            .map(|f| PyBytes::new(py, f))
            .collect())
    }
}
