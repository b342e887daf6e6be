//! The shared tokio runtime, recreated in a forked child (a child never uses its parent's
//! runtime threads or sockets), and `block_on` that releases the GIL and stays responsive to
//! Ctrl-C.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::prelude::*;
use tokio::runtime::Runtime;

static RUNTIME: Mutex<Option<(u32, Arc<Runtime>)>> = Mutex::new(None);

/// The runtime of this process.
pub fn runtime() -> Arc<Runtime> {
    let pid = std::process::id();
    let mut guard = RUNTIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((owner, rt)) = guard.as_ref() {
        if *owner == pid {
            return rt.clone();
        }
        // Inherited from the parent across fork(): its threads do not exist here. Leak it
        // rather than drop it (dropping would wait for threads that will never answer).
        if let Some((_, old)) = guard.take() {
            std::mem::forget(old);
        }
    }
    let rt = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(
                std::thread::available_parallelism()
                    .map_or(2, std::num::NonZero::get)
                    .max(2),
            )
            .thread_name("spack-oci-rs")
            .enable_all()
            .build()
            .expect("cannot start the tokio runtime"),
    );
    *guard = Some((pid, rt.clone()));
    rt
}

/// Run `fut` to completion with the GIL released. Every 100 ms the calling thread checks for
/// Python signals; a `KeyboardInterrupt` drops the future, which cancels every transfer
/// (temp files are removed by their guards) and is raised in Python.
pub fn block_on<F, T>(py: Python<'_>, fut: F) -> PyResult<T>
where
    F: Future<Output = T> + Send,
    T: Send,
{
    let rt = runtime();
    py.detach(|| {
        rt.block_on(async {
            tokio::pin!(fut);
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    out = &mut fut => return Ok(out),
                    _ = tick.tick() => {
                        check_signals()?;
                    }
                }
            }
        })
    })
}

/// Run Python's pending signal handlers (a `KeyboardInterrupt` comes back as the error).
// The closure is needed: `Python::check_signals` as a path is not general enough.
#[allow(clippy::redundant_closure_for_method_calls)]
fn check_signals() -> PyResult<()> {
    Python::attach(|py| py.check_signals())
}
