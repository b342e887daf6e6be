//! `copy` / `copy_async`: a build cache from one repository or registry to another.

use std::sync::Arc;

use pyo3::prelude::*;

use super::call::{add_twin, twins, Call};
use super::errors::{to_pyerr, IntoPyResult};
use super::ops::parse_ref;
use super::progress::Callback;
use super::{client_for, Client};
use crate::copy::{self as core, CopyEvent, CopyOptions, TagCopy};

/// The outcome of one tag of a copy.
#[pyclass(module = "spack_oci_rs._native", frozen, get_all)]
pub struct CopyResult {
    tag: String,
    /// "copied", "unchanged" or "failed".
    status: &'static str,
    manifest_digest: Option<String>,
    blobs_copied: usize,
    blobs_mounted: usize,
    blobs_present: usize,
    bytes_copied: u64,
    error: Option<Py<PyAny>>,
}

#[pymethods]
impl CopyResult {
    fn __repr__(&self) -> String {
        format!(
            "CopyResult(tag={:?}, status={:?}, copied={}, mounted={}, present={})",
            self.tag, self.status, self.blobs_copied, self.blobs_mounted, self.blobs_present
        )
    }
}

fn to_result(py: Python<'_>, r: TagCopy) -> CopyResult {
    CopyResult {
        tag: r.tag,
        status: r.status.as_str(),
        manifest_digest: r.manifest_digest.map(|d| d.to_string()),
        blobs_copied: r.blobs_copied,
        blobs_mounted: r.blobs_mounted,
        blobs_present: r.blobs_present,
        bytes_copied: r.bytes_copied,
        error: r.error.map(|e| to_pyerr(py, &e).into_value(py).into_any()),
    }
}

/// `("bytes", {done, total})` and `("tag", {tag, status, error})` events.
fn events(cb: Py<PyAny>) -> core::CopyFn {
    let cb = Callback::new(cb);
    let bytes = cb.bytes_fn();
    Arc::new(move |e: CopyEvent<'_>| match e {
        CopyEvent::Bytes { done, total } => bytes(done, total),
        CopyEvent::Tag(r) => cb.call("tag", |d| {
            d.set_item("tag", &r.tag)?;
            d.set_item("status", r.status.as_str())?;
            d.set_item("bytes_copied", r.bytes_copied)?;
            d.set_item("error", r.error.as_ref().map(ToString::to_string))
        }),
    })
}

twins! {
    /// Copy the tags of `src` (all, or `tags`) to `dst`: blobs mounted on one registry, else
    /// streamed; manifests byte for byte; tags the destination has unchanged are skipped;
    /// `index.spack` last. One result per tag.
    #[pyo3(signature = (src, dst, *, tags = None, concurrency = 8, progress = None, client = None))]
    fn copy / copy_async (
        py,
        src: &str,
        dst: &str,
        tags: Option<Vec<String>>,
        concurrency: usize,
        progress: Option<Py<PyAny>>,
        client: Option<&Bound<'_, Client>>,
    ) -> Vec<CopyResult> {
        let (s, d) = (parse_ref(py, src)?, parse_ref(py, dst)?);
        let c = client_for(py, client)?;
        let opts = CopyOptions { tags, concurrency };
        let events = progress.map(events);
        Call::new(
            async move { core::copy(&c, &s, &d, opts, events).await },
            |py, out: crate::Result<Vec<TagCopy>>| {
                let out = out.into_py_result(py)?;
                Ok(out.into_iter().map(|r| to_result(py, r)).collect::<Vec<_>>())
            },
        )
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<CopyResult>()?;
    add_twin(
        m,
        wrap_pyfunction!(copy, m)?,
        wrap_pyfunction!(copy_async, m)?,
    )
}
