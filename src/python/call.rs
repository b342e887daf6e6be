//! One definition per engine call, two ways to run it: [`Call::wait`] blocks (GIL released,
//! Ctrl-C aware) for the synchronous module, [`Call::awaitable`] is the asyncio twin that
//! `spack_oci_rs.aio` exposes. [`twins!`] writes both `#[pyfunction]`s from one body: the
//! body checks and converts the Python arguments (with the GIL, before any request) and
//! returns a [`Call`]; the async function is registered as `_<name>_async`.

use std::future::Future;

use pyo3::prelude::*;

use super::errors::IntoPyResult;
use super::runtime::{block_on, future_into_py};

/// A future of the engine and how its output becomes a Python value (with the GIL).
pub(crate) struct Call<F, C> {
    fut: F,
    finish: C,
}

impl<F, C, T> Call<F, C>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    C: FnOnce(Python<'_>, F::Output) -> PyResult<T> + Send + 'static,
    T: for<'py> IntoPyObject<'py> + Send + 'static,
{
    /// `fut`, whose output `finish` turns into the Python result.
    pub(crate) fn new(fut: F, finish: C) -> Self {
        Self { fut, finish }
    }

    /// Run to completion on the engine's runtime, the GIL released.
    pub(crate) fn wait(self, py: Python<'_>) -> PyResult<T> {
        let out = block_on(py, self.fut)?;
        (self.finish)(py, out)
    }

    /// An asyncio awaitable on the same runtime; cancelling it drops the future.
    pub(crate) fn awaitable(self, py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
        let Self { fut, finish } = self;
        future_into_py(py, async move {
            let out = fut.await;
            Python::attach(|py| finish(py, out))
        })
    }
}

/// A call whose engine result is already the Python value (errors become `OciError`s).
pub(crate) fn plain<F, T>(
    fut: F,
) -> Call<F, impl FnOnce(Python<'_>, crate::Result<T>) -> PyResult<T> + Send + 'static>
where
    F: Future<Output = crate::Result<T>> + Send + 'static,
    T: for<'py> IntoPyObject<'py> + Send + 'static,
{
    Call::new(fut, |py, out: crate::Result<T>| out.into_py_result(py))
}

/// `fn name / name_async (py, args...) -> Output { body }`: the synchronous `name` and its
/// asyncio twin (Python name `_name_async`), both from `body`, an expression of type
/// [`Call`] (it may use `?` and `py`). Attributes (docs, `#[pyo3(signature = ...)]`) go on
/// both.
macro_rules! twins {
    (
        $(#[$attr:meta])*
        fn $name:ident / $aname:ident ($py:ident $(, $arg:ident : $ty:ty)* $(,)?)
            -> $out:ty $body:block
    ) => {
        #[pyfunction]
        $(#[$attr])*
        #[allow(clippy::too_many_arguments)]
        fn $name($py: Python<'_>, $($arg: $ty),*) -> PyResult<$out> {
            $body.wait($py)
        }

        #[pyfunction]
        $(#[$attr])*
        #[allow(clippy::too_many_arguments)]
        fn $aname<'py>($py: Python<'py>, $($arg: $ty),*) -> PyResult<Bound<'py, PyAny>> {
            $body.awaitable($py)
        }
    };
}

pub(crate) use twins;

/// Register a [`twins!`] pair: `sync` under its name, `awaitable` as `_<name>_async` (for
/// `spack_oci_rs.aio`, which gives it the signature of `sync`).
pub(crate) fn add_twin<'py>(
    m: &Bound<'py, PyModule>,
    sync: Bound<'py, pyo3::types::PyCFunction>,
    awaitable: Bound<'py, pyo3::types::PyCFunction>,
) -> PyResult<()> {
    let name: String = sync.getattr("__name__")?.extract()?;
    m.setattr(format!("_{name}_async"), awaitable)?; // not in `__all__`: private
    m.add_function(sync)
}
