//! The PyO3 module `spack_oci_rs._native`: thin glue over the Rust core. Every blocking call
//! releases the GIL (`runtime::block_on`); JSON crosses the boundary through Python's `json`
//! module so that key order and exact bytes are preserved.

mod auth;
mod errors;
mod index;
mod logging;
mod ops;
mod push;
mod runtime;
mod sign;
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
        verify_ssl = true,
        connect_timeout = 10.0,
        read_timeout = 60.0,
        retries = 5,
        max_concurrency = 32,
        retry_budget = 300.0,
        retry_backoff = 0.2,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        credentials: Option<&Bound<'_, PyDict>>,
        access_tokens: Option<&Bound<'_, PyDict>>,
        docker_config: Option<&Bound<'_, PyAny>>,
        client_cert: Option<PathBuf>,
        client_key: Option<PathBuf>,
        ca_certs: Option<Vec<PathBuf>>,
        verify_ssl: bool,
        connect_timeout: f64,
        read_timeout: f64,
        retries: u32,
        max_concurrency: usize,
        retry_budget: f64,
        retry_backoff: f64,
    ) -> PyResult<Self> {
        let (provider, registries) =
            auth::credential_provider(credentials, access_tokens, docker_config)?;
        let positive = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(Duration::from_secs_f64(v))
            } else {
                Err(errors::invalid_argument(format!(
                    "{name} must be positive, not {v}"
                )))
            }
        };
        let mut options = ClientOptions {
            ca_certs: ca_certs.unwrap_or_default(),
            verify_tls: verify_ssl,
            connect_timeout: positive("connect_timeout", connect_timeout)?,
            read_timeout: positive("read_timeout", read_timeout)?,
            max_concurrency_per_registry: max_concurrency.max(1),
            credentials: provider,
            client_cert,
            client_key,
            ..ClientOptions::default()
        };
        options.retry.max_attempts = retries.max(1);
        options.retry.budget = positive("retry_budget", retry_budget)?;
        options.retry.initial_backoff = positive("retry_backoff", retry_backoff)?;
        Ok(Self {
            options,
            registries,
            cached: Mutex::new(None),
        })
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
    sign::register(m)?;
    logging::register(m)?;
    Ok(())
}
