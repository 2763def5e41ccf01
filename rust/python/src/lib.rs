//! `durable_futures._core`: the compiled half of the Python package.
//!
//! Only bindings live here; the logic is in `durable-futures-core` and
//! `durable-futures-engine`. Every core error becomes an exception of
//! `durable_futures.errors` in one place ([`to_py`]), so tracebacks name the public classes
//! (`durable_futures.errors.JournalMismatchError`, ...).
//!
//! - [`bell`]: `Bell`, the hand-off between the event loop and closures' threads;
//! - [`vm`]: `Vm`, one invocation attempt, with the outcome and value-kind codes it returns;
//! - [`engine`]: `Engine`, the embedded engine, and the records it hands out;
//! - [`protocol`]: `Message`, `decode_frames`, `encode_frame`: the protocol's frames, typed,
//!   so that Python never parses or writes protobuf.

use durable_futures_core::{Error, Failure};
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;

mod bell;
mod engine;
mod identity;
mod protocol;
mod vm;

/// The version of the compiled core: the Cargo workspace version, which is also the Python
/// package's (`durable_futures.__version__`, and the wheel's metadata through maturin).
const VERSION: &str = env!("CARGO_PKG_VERSION");

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

/// Python module `durable_futures._core`.
#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", VERSION)?;
    m.add("PROTOCOL_VERSIONS", (5u32, 7u32))?;
    m.add("OUTCOME_READY", vm::READY)?;
    m.add("OUTCOME_CANCELLED", vm::CANCELLED)?;
    m.add("OUTCOME_PENDING", vm::PENDING)?;
    m.add("OUTCOME_SUSPENDED", vm::SUSPENDED)?;
    m.add("OUTCOME_EXHAUSTED", vm::EXHAUSTED)?;
    m.add("KIND_VOID", vm::VOID)?;
    m.add("KIND_VALUE", vm::VALUE)?;
    m.add("KIND_FAILURE", vm::FAILURE)?;
    m.add("KIND_INVOCATION_ID", vm::INVOCATION_ID)?;
    m.add("KIND_STATE_KEYS", vm::STATE_KEYS)?;
    m.add("COMBINATOR_FIRST_COMPLETED", vm::FIRST_COMPLETED)?;
    m.add("COMBINATOR_ALL_COMPLETED", vm::ALL_COMPLETED)?;
    m.add(
        "COMBINATOR_FIRST_SUCCEEDED_OR_ALL_FAILED",
        vm::FIRST_SUCCEEDED_OR_ALL_FAILED,
    )?;
    m.add(
        "COMBINATOR_ALL_SUCCEEDED_OR_FIRST_FAILED",
        vm::ALL_SUCCEEDED_OR_FIRST_FAILED,
    )?;
    m.add_class::<bell::PyBell>()?;
    m.add_class::<vm::PyVm>()?;
    m.add_class::<vm::PyInput>()?;
    m.add_class::<vm::PyVmError>()?;
    m.add_class::<engine::PyEngine>()?;
    m.add_class::<engine::PyAttempt>()?;
    m.add_class::<engine::PyAttemptRequest>()?;
    m.add_class::<engine::PyDeliver>()?;
    m.add_class::<engine::PyCompleted>()?;
    m.add("InvocationRow", engine::invocation_row_type(m.py())?)?;
    m.add("FailureInfo", engine::failure_info_type(m.py())?)?;
    m.add_class::<protocol::PyMessage>()?;
    m.add_class::<protocol::PyFailure>()?;
    m.add_function(wrap_pyfunction!(protocol::decode_frames, m)?)?;
    m.add_function(wrap_pyfunction!(protocol::decode_frame, m)?)?;
    m.add_function(wrap_pyfunction!(protocol::encode_frame, m)?)?;
    identity::register(m)?;
    Ok(())
}
