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
    block_on_with(py, fut, None::<fn()>)
}

/// [`block_on`], the one Ctrl-C loop. With `stop`, a signal calls it instead of dropping the
/// future, and the future runs to its end (which `stop` makes soon: a blocking thread that
/// must clean up first) before the `KeyboardInterrupt` is raised.
pub fn block_on_with<F, T, S>(py: Python<'_>, fut: F, mut stop: Option<S>) -> PyResult<T>
where
    F: Future<Output = T> + Send,
    T: Send,
    S: FnOnce() + Send,
{
    let rt = runtime();
    py.detach(|| {
        rt.block_on(async {
            tokio::pin!(fut);
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut interrupt: Option<PyErr> = None;
            loop {
                tokio::select! {
                    out = &mut fut => return interrupt.map_or(Ok(out), Err),
                    _ = tick.tick(), if interrupt.is_none() => {
                        if let Err(e) = check_signals() {
                            match stop.take() {
                                Some(stop) => {
                                    stop();
                                    interrupt = Some(e);
                                }
                                None => return Err(e),
                            }
                        }
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

// -- asyncio: the same futures as awaitables, spawned on the same per-process runtime --------

tokio::task_local! {
    static TASK_LOCALS: std::cell::OnceCell<pyo3_async_runtimes::TaskLocals>;
}

/// pyo3-async-runtimes' view of our runtime (its own tokio runtime would not follow a fork).
struct EngineRuntime;

/// A task's failure, as pyo3-async-runtimes wants it.
pub struct JoinError(tokio::task::JoinError);

impl pyo3_async_runtimes::generic::JoinError for JoinError {
    fn is_panic(&self) -> bool {
        self.0.is_panic()
    }
    fn into_panic(self) -> Box<dyn std::any::Any + Send + 'static> {
        self.0.into_panic()
    }
}

/// A spawned task.
pub struct JoinHandle(tokio::task::JoinHandle<()>);

impl Future for JoinHandle {
    type Output = Result<(), JoinError>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx).map_err(JoinError)
    }
}

impl pyo3_async_runtimes::generic::Runtime for EngineRuntime {
    type JoinError = JoinError;
    type JoinHandle = JoinHandle;

    fn spawn<F>(fut: F) -> JoinHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        JoinHandle(runtime().spawn(fut))
    }

    fn spawn_blocking<F>(f: F) -> JoinHandle
    where
        F: FnOnce() + Send + 'static,
    {
        JoinHandle(runtime().spawn_blocking(f))
    }
}

impl pyo3_async_runtimes::generic::ContextExt for EngineRuntime {
    fn scope<F, R>(
        locals: pyo3_async_runtimes::TaskLocals,
        fut: F,
    ) -> std::pin::Pin<Box<dyn Future<Output = R> + Send>>
    where
        F: Future<Output = R> + Send + 'static,
    {
        let cell = std::cell::OnceCell::new();
        let _ = cell.set(locals);
        Box::pin(TASK_LOCALS.scope(cell, fut))
    }

    fn get_task_locals() -> Option<pyo3_async_runtimes::TaskLocals> {
        TASK_LOCALS
            .try_with(|c| c.get().cloned())
            .unwrap_or_default()
    }
}

/// `fut` as an asyncio awaitable, run on the engine's runtime. Cancelling the awaitable
/// drops the future, which cancels its transfers.
pub fn future_into_py<F, T>(py: Python<'_>, fut: F) -> PyResult<Bound<'_, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'py> IntoPyObject<'py> + Send + 'static,
{
    pyo3_async_runtimes::generic::future_into_py::<EngineRuntime, F, T>(py, fut)
}
