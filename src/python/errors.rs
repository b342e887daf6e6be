//! Engine errors as Python exceptions. The classes live in `spack_oci_rs.exceptions` (pure
//! Python, so they can also derive from `ValueError`/`OSError`); this maps kinds onto them.

use pyo3::exceptions::{
    PyConnectionError, PyException, PyKeyboardInterrupt, PyOSError, PyRuntimeError,
};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyModule};

use crate::error::{Error, ErrorKind};

fn exceptions_module(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    MODULE
        .get_or_try_init(py, || {
            py.import("spack_oci_rs.exceptions").map(Bound::unbind)
        })
        .map(|m| m.bind(py))
}

/// The exception class name for an error kind.
pub fn class_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidReference => "InvalidReferenceError",
        ErrorKind::InvalidDigest => "InvalidDigestError",
        ErrorKind::NotFound => "NotFoundError",
        ErrorKind::Authentication => "AuthenticationError",
        ErrorKind::DigestMismatch => "DigestMismatchError",
        ErrorKind::InvalidResponse => "InvalidResponseError",
        ErrorKind::Transport => "TransportError",
        ErrorKind::Io => "LocalFileError",
        ErrorKind::InvalidInput => "InvalidArgumentError",
        ErrorKind::Signature => "SignatureError",
        _ => "RegistryError",
    }
}

/// Build the Python exception instance for an engine error.
pub fn to_pyerr(py: Python<'_>, err: &Error) -> PyErr {
    if err.kind() == ErrorKind::Cancelled {
        return PyKeyboardInterrupt::new_err(err.to_string());
    }
    let build = || -> PyResult<PyErr> {
        let class = exceptions_module(py)?.getattr(class_name(err.kind()))?;
        let codes: Vec<String> = err.codes().iter().map(|c| c.code.clone()).collect();
        let kwargs = PyDict::new(py);
        // An error the engine gave up on is still one that may succeed later.
        let later = crate::transport::retry::is_retryable(&err.clone().retried_again());
        kwargs.set_item("retryable", later)?;
        kwargs.set_item("retry_after", err.retry_after().map(|d| d.as_secs_f64()))?;
        let instance = class.call((err.to_string(), err.status(), codes), Some(&kwargs))?;
        let pyerr = PyErr::from_value(instance);
        if let Some(source) = std::error::Error::source(err) {
            let text = source.to_string();
            let cause = match err.kind() {
                ErrorKind::Io => PyOSError::new_err(text),
                ErrorKind::Transport => PyConnectionError::new_err(text),
                _ => PyException::new_err(text),
            };
            pyerr.set_cause(py, Some(cause));
        }
        Ok(pyerr)
    };
    build().unwrap_or_else(|e| PyRuntimeError::new_err(format!("{err} (and: {e})")))
}

/// An invalid argument as `InvalidArgumentError` (an `OciError` and a `ValueError`): no
/// raw `ValueError`/`TypeError` leaves the bindings.
pub fn invalid_argument(message: impl Into<String>) -> PyErr {
    let err = Error::invalid_input(message);
    Python::attach(|py| to_pyerr(py, &err))
}

/// `Result<T, Error>` → `PyResult<T>`.
pub trait IntoPyResult<T> {
    fn into_py_result(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> IntoPyResult<T> for crate::Result<T> {
    fn into_py_result(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| to_pyerr(py, &e))
    }
}
