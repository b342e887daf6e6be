//! `create_tarball`: Spack's `_do_create_tarball` in Rust, with the GIL released while the
//! prefix is archived and compressed.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};

use super::errors::to_pyerr;
use crate::error::{Error, ErrorKind};
use crate::tarball::{self, RelocationLists, TarballInfo as Info, TarballOptions};

/// What `create_tarball` wrote: checksums, sizes and the relocation lists.
#[pyclass(module = "spack_oci_rs._native", name = "TarballInfo", frozen)]
pub struct TarballInfo {
    info: Info,
}

#[pymethods]
impl TarballInfo {
    /// sha256 hex of the compressed tarball (Spack's `tar_gz_checksum.hexdigest()`).
    #[getter]
    fn checksum(&self) -> &str {
        self.info.compressed_digest.hex()
    }

    /// sha256 hex of the uncompressed tar stream (Spack's `tar_checksum.hexdigest()`).
    #[getter]
    fn uncompressed_checksum(&self) -> &str {
        self.info.uncompressed_digest.hex()
    }

    /// `sha256:<hex>` of the compressed tarball (the OCI blob digest).
    #[getter]
    fn compressed_digest(&self) -> String {
        self.info.compressed_digest.to_string()
    }

    /// `sha256:<hex>` of the tar stream (the OCI diff_id).
    #[getter]
    fn uncompressed_digest(&self) -> String {
        self.info.uncompressed_digest.to_string()
    }

    /// Size of the compressed tarball in bytes.
    #[getter]
    fn size(&self) -> u64 {
        self.info.compressed_size
    }

    /// Size of the tar stream in bytes.
    #[getter]
    fn uncompressed_size(&self) -> u64 {
        self.info.uncompressed_size
    }

    #[getter]
    fn relocate_binaries(&self) -> Vec<String> {
        self.info.relocation.relocate_binaries.clone()
    }

    #[getter]
    fn relocate_links(&self) -> Vec<String> {
        self.info.relocation.relocate_links.clone()
    }

    #[getter]
    fn relocate_textfiles(&self) -> Vec<String> {
        self.info.relocation.relocate_textfiles.clone()
    }

    fn __repr__(&self) -> String {
        let r = &self.info.relocation;
        format!(
            "TarballInfo(checksum={:?}, size={}, uncompressed_checksum={:?}, \
             uncompressed_size={}, relocate_binaries={}, relocate_links={}, \
             relocate_textfiles={})",
            self.info.compressed_digest.hex(),
            self.info.compressed_size,
            self.info.uncompressed_digest.hex(),
            self.info.uncompressed_size,
            r.relocate_binaries.len(),
            r.relocate_links.len(),
            r.relocate_textfiles.len(),
        )
    }
}

/// `dict(buildinfo)` updated with the lists, serialized by `dump` (or as JSON). Shared by
/// `create_tarball` and `push`.
pub(crate) fn dump_buildinfo(
    py: Python<'_>,
    buildinfo: Option<&Py<PyDict>>,
    dump: Option<&Py<PyAny>>,
    lists: &RelocationLists,
) -> PyResult<Vec<u8>> {
    let d = match buildinfo {
        Some(b) => b.bind(py).copy()?,
        None => PyDict::new(py),
    };
    // Spack: buildinfo.update({"relocate_binaries": …, "relocate_links": …,
    // "relocate_textfiles": …}); existing keys keep their place.
    d.set_item(
        "relocate_binaries",
        PyList::new(py, &lists.relocate_binaries)?,
    )?;
    d.set_item("relocate_links", PyList::new(py, &lists.relocate_links)?)?;
    d.set_item(
        "relocate_textfiles",
        PyList::new(py, &lists.relocate_textfiles)?,
    )?;
    let out = match dump {
        Some(f) => f.bind(py).call1((d,))?,
        None => py.import("json")?.call_method1("dumps", (d,))?,
    };
    if let Ok(b) = out.cast::<PyBytes>() {
        Ok(b.as_bytes().to_vec())
    } else if let Ok(s) = out.cast::<PyString>() {
        Ok(s.to_str()?.as_bytes().to_vec())
    } else {
        Err(super::errors::invalid_argument(format!(
            "dump must return bytes or str, not {}",
            out.get_type().name()?
        )))
    }
}

/// Write the gzip-compressed tarball of `prefix` to `dest` exactly as Spack's
/// `_do_create_tarball(dest, prefix, buildinfo, prefixes_to_relocate)` does, and return its
/// checksums, sizes and relocation lists. `dest` is written through a temporary file in its
/// directory and appears only when complete. The work runs on a helper thread with the GIL
/// released; Ctrl-C stops it within about 100 ms.
#[pyfunction]
#[pyo3(signature = (prefix, dest, *, prefixes_to_relocate, buildinfo, dump = None))]
fn create_tarball(
    py: Python<'_>,
    prefix: PathBuf,
    dest: PathBuf,
    prefixes_to_relocate: Vec<String>,
    buildinfo: Py<PyDict>,
    dump: Option<Py<PyAny>>,
) -> PyResult<TarballInfo> {
    let cancel = Arc::new(AtomicBool::new(false));
    let opts = TarballOptions {
        cancel: Some(cancel.clone()),
        ..TarballOptions::new(prefixes_to_relocate)
    };
    let build = async move {
        tokio::task::spawn_blocking(move || {
            let mut dump_error: Option<PyErr> = None;
            let result = tarball::create_tarball_file(&prefix, &dest, &opts, |lists| {
                Python::attach(|py| dump_buildinfo(py, Some(&buildinfo), dump.as_ref(), lists))
                    .map_err(|e| {
                        dump_error = Some(e);
                        Error::new(ErrorKind::InvalidInput, "serializing buildinfo failed")
                    })
            });
            (result, dump_error)
        })
        .await
    };
    // Ctrl-C stops the build, which removes its temp file, before KeyboardInterrupt is raised.
    let stop = move || cancel.store(true, Ordering::Relaxed);
    let (result, dump_error) = super::runtime::block_on_with(py, build, Some(stop))?
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    match result {
        Ok(info) => Ok(TarballInfo { info }),
        Err(e) => Err(dump_error.unwrap_or_else(|| to_pyerr(py, &e))),
    }
}

/// Add `create_tarball` and `TarballInfo` to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<TarballInfo>()?;
    m.add_function(wrap_pyfunction!(create_tarball, m)?)?;
    Ok(())
}
