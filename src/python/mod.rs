//! The PyO3 module `spack_oci_rs._native`: thin glue over the Rust core. Every blocking call
//! releases the GIL (`runtime::block_on`); JSON crosses the boundary through Python's `json`
//! module so that key order and exact bytes are preserved.

mod auth;
mod call;
mod errors;
mod index;
mod logging;
mod ops;
mod push;
mod runtime;
mod tarball;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;

use crate::transport::{self, ClientOptions};
use errors::IntoPyResult;

/// A connection pool, token cache and settings shared by the calls that use it.
#[pyclass(module = "spack_oci_rs._native", frozen)]
pub struct Client {
    options: ClientOptions,
    registries: Vec<String>,
    /// The Rust client of the current process (rebuilt after fork).
    cached: Mutex<Option<(u32, transport::Client)>>,
}

impl Client {
    fn get(&self, py: Python<'_>) -> PyResult<transport::Client> {
        let pid = std::process::id();
        let mut guard = self
            .cached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((owner, c)) = guard.as_ref() {
            if *owner == pid {
                return Ok(c.clone());
            }
        }
        // Build inside the runtime so reqwest's pool binds to this process's runtime.
        let rt = runtime::runtime();
        let _enter = rt.enter();
        let c = transport::Client::new(self.options.clone()).into_py_result(py)?;
        *guard = Some((pid, c.clone()));
        Ok(c)
    }
}

/// `into` = `value` seconds when given (`None` keeps the default), which must be positive.
fn set_seconds(name: &str, value: Option<f64>, into: &mut Duration) -> PyResult<()> {
    match value {
        None => Ok(()),
        Some(v) if v.is_finite() && v > 0.0 => {
            *into = Duration::from_secs_f64(v);
            Ok(())
        }
        Some(v) => Err(errors::invalid_argument(format!(
            "{name} must be positive, not {v}"
        ))),
    }
}

#[pymethods]
impl Client {
    #[new]
    #[pyo3(signature = (
        *,
        credentials = None,
        access_tokens = None,
        docker_config = None,
        client_cert = None,
        client_key = None,
        ca_certs = None,
        verify_ssl = None,
        connect_timeout = None,
        read_timeout = None,
        retries = None,
        max_concurrency = None,
        retry_budget = None,
        retry_backoff = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        credentials: Option<&Bound<'_, PyDict>>,
        access_tokens: Option<&Bound<'_, PyDict>>,
        docker_config: Option<&Bound<'_, PyAny>>,
        client_cert: Option<PathBuf>,
        client_key: Option<PathBuf>,
        ca_certs: Option<Vec<PathBuf>>,
        verify_ssl: Option<bool>,
        connect_timeout: Option<f64>,
        read_timeout: Option<f64>,
        retries: Option<u32>,
        max_concurrency: Option<usize>,
        retry_budget: Option<f64>,
        retry_backoff: Option<f64>,
    ) -> PyResult<Self> {
        let (provider, registries) =
            auth::credential_provider(credentials, access_tokens, docker_config)?;
        let mut options = ClientOptions {
            ca_certs: ca_certs.unwrap_or_default(),
            credentials: provider,
            client_cert,
            client_key,
            ..ClientOptions::default()
        };
        // Not given: the value of `ClientOptions::default()`, the one place defaults live.
        let o = &mut options;
        set_seconds("connect_timeout", connect_timeout, &mut o.connect_timeout)?;
        set_seconds("read_timeout", read_timeout, &mut o.read_timeout)?;
        set_seconds("retry_budget", retry_budget, &mut o.retry.budget)?;
        set_seconds("retry_backoff", retry_backoff, &mut o.retry.initial_backoff)?;
        o.verify_tls = verify_ssl.unwrap_or(o.verify_tls);
        o.retry.max_attempts = retries.map_or(o.retry.max_attempts, |r| r.max(1));
        let per_registry = &mut o.max_concurrency_per_registry;
        *per_registry = max_concurrency.map_or(*per_registry, |m| m.max(1));
        Ok(Self {
            options,
            registries,
            cached: Mutex::new(None),
        })
    }

    /// The value each setting takes when it is not given (or given as `None`).
    #[classattr]
    #[allow(non_snake_case)]
    fn DEFAULTS(py: Python<'_>) -> PyResult<Py<PyDict>> {
        let o = ClientOptions::default();
        let d = PyDict::new(py);
        d.set_item("verify_ssl", o.verify_tls)?;
        d.set_item("connect_timeout", o.connect_timeout.as_secs_f64())?;
        d.set_item("read_timeout", o.read_timeout.as_secs_f64())?;
        d.set_item("retries", o.retry.max_attempts)?;
        d.set_item("max_concurrency", o.max_concurrency_per_registry)?;
        d.set_item("retry_budget", o.retry.budget.as_secs_f64())?;
        d.set_item("retry_backoff", o.retry.initial_backoff.as_secs_f64())?;
        Ok(d.unbind())
    }

    /// Where the credentials for `registry` would come from, without the secret.
    fn credentials_source(&self, registry: &str) -> String {
        self.options.credentials.describe(registry)
    }

    fn __repr__(&self) -> String {
        // Registries with credentials are named; the credentials never are.
        format!(
            "Client(credentials_for={:?}, verify_ssl={}, connect_timeout={:?}, retries={}, \
             retry_budget={:?})",
            self.registries,
            self.options.verify_tls,
            self.options.connect_timeout.as_secs_f64(),
            self.options.retry.max_attempts,
            self.options.retry.budget.as_secs_f64()
        )
    }
}

/// The client used when a call is given none.
fn default_client(py: Python<'_>) -> PyResult<&Py<Client>> {
    static DEFAULT: PyOnceLock<Py<Client>> = PyOnceLock::new();
    DEFAULT.get_or_try_init(py, || {
        Py::new(
            py,
            Client {
                options: ClientOptions::default(),
                registries: Vec::new(),
                cached: Mutex::new(None),
            },
        )
    })
}

/// The Rust client for an optional Python `Client` argument.
pub(crate) fn client_for(
    py: Python<'_>,
    client: Option<&Bound<'_, Client>>,
) -> PyResult<transport::Client> {
    match client {
        Some(c) => c.get().get(py),
        None => default_client(py)?.get().get(py),
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<Client>()?;
    ops::register(m)?;
    index::register(m)?;
    push::register(m)?;
    tarball::register(m)?;
    logging::register(m)?;
    Ok(())
}
