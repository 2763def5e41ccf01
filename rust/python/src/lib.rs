//! `durable_futures._core`: the compiled half of the Python package.
//!
//! Only bindings live here; the logic is in `durable-futures-core`.

use pyo3::prelude::*;

/// The version of the compiled core; the Python package checks it at import.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Python module `durable_futures._core`.
#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", VERSION)?;
    m.add("PROTOCOL_VERSIONS", (5u32, 7u32))?;
    Ok(())
}
