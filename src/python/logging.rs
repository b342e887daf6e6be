//! Rust `tracing` events, emitted as `log` records, go to Python's `logging` under the
//! logger `spack_oci_rs` (children by module: `spack_oci_rs.transport`, …). Levels are cached
//! on the Rust side; `reset_logging()` drops the cache after Python's levels change.

use std::sync::OnceLock;

use pyo3::prelude::*;

static HANDLE: OnceLock<pyo3_log::ResetHandle> = OnceLock::new();

/// Forget the cached Python logger levels (call after `logging.getLogger(...).setLevel`).
#[pyfunction]
fn reset_logging() {
    if let Some(h) = HANDLE.get() {
        h.reset();
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    if HANDLE.get().is_none() {
        // Our own events at any level; other crates' (HTTP, TLS internals, which could show
        // headers at trace level) only from warnings up. Another extension may own the global
        // `log` logger already: then ours stays silent.
        let logger = pyo3_log::Logger::new(m.py(), pyo3_log::Caching::LoggersAndLevels)?
            .filter(log::LevelFilter::Warn)
            .filter_target("spack_oci_rs".to_string(), log::LevelFilter::Trace);
        if let Ok(handle) = logger.install() {
            let _ = HANDLE.set(handle);
        }
    }
    m.add_function(wrap_pyfunction!(reset_logging, m)?)?;
    Ok(())
}
