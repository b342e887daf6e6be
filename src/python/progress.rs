//! Python progress callbacks `(event, info dict)` fed from engine threads: called with the
//! GIL (`Python::attach`); a callback that raises is reported once (as an unraisable
//! exception) and not called again, and never breaks the transfer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::progress::BytesFn;

/// A Python callable as a progress sink.
pub(crate) struct Callback {
    f: Py<PyAny>,
    broken: AtomicBool,
}

impl Callback {
    pub(crate) fn new(f: Py<PyAny>) -> Arc<Self> {
        Arc::new(Self {
            f,
            broken: AtomicBool::new(false),
        })
    }

    /// Call `f(event, info)`, `fill` writing `info`.
    pub(crate) fn call(&self, event: &str, fill: impl FnOnce(&Bound<'_, PyDict>) -> PyResult<()>) {
        if self.broken.load(Ordering::Relaxed) {
            return;
        }
        Python::attach(|py| {
            let d = PyDict::new(py);
            let called = fill(&d).and_then(|()| self.f.bind(py).call1((event, d)).map(drop));
            if let Err(e) = called {
                self.broken.store(true, Ordering::Relaxed);
                e.write_unraisable(py, Some(self.f.bind(py)));
            }
        });
    }

    /// `("bytes", {"done": n, "total": m})` events.
    pub(crate) fn bytes_fn(self: &Arc<Self>) -> BytesFn {
        let cb = self.clone();
        Arc::new(move |done, total| {
            cb.call("bytes", |d| {
                d.set_item("done", done)?;
                d.set_item("total", total)
            });
        })
    }
}
