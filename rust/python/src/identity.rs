//! `IdentityVerifier` and `parse_identity_key`: the runtime's request signatures, checked by
//! the core's `identity` module, so that the package needs no cryptography library of its own.

use durable_futures_core::identity::{parse_key, IdentityVerifier};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// Checks requests against the configured `publickeyv1_…` keys.
#[pyclass(module = "durable_futures._core", name = "IdentityVerifier", frozen)]
pub(crate) struct PyIdentityVerifier(IdentityVerifier);

#[pymethods]
impl PyIdentityVerifier {
    #[new]
    fn new(keys: Vec<String>) -> PyResult<Self> {
        if keys.is_empty() {
            return Err(PyValueError::new_err("no identity keys given"));
        }
        IdentityVerifier::new(&keys)
            .map(Self)
            .map_err(|e| PyValueError::new_err(e.to_string()))
    }

    /// `None` if the request is signed by one of the keys, else why not. `scheme` and `jwt`
    /// are the values of the `x-restate-signature-scheme` and `x-restate-jwt-v1` headers,
    /// `now` the time in seconds since the Unix epoch.
    fn verify(
        &self,
        py: Python<'_>,
        scheme: Option<&str>,
        jwt: Option<&str>,
        path: &str,
        now: f64,
    ) -> Option<String> {
        py.allow_threads(|| self.0.verify(scheme, jwt, path, now))
            .err()
            .map(|e| e.to_string())
    }
}

/// The 32 bytes of a `publickeyv1_…` key (`ValueError` if it is not one).
#[pyfunction]
fn parse_identity_key<'py>(py: Python<'py>, key: &str) -> PyResult<Bound<'py, PyBytes>> {
    parse_key(key)
        .map(|raw| PyBytes::new(py, &raw))
        .map_err(|e| PyValueError::new_err(e.to_string()))
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyIdentityVerifier>()?;
    m.add_function(wrap_pyfunction!(parse_identity_key, m)?)
}
