//! Registry building blocks: tags, blobs, manifests, base-image copies, the index.

use std::path::PathBuf;

use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};
use serde_json::Value;

use super::call::{add_twin, plain, twins, Call};
use super::errors::{to_pyerr, IntoPyResult};
use super::{client_for, Client};
use crate::digest::Digest;
use crate::reference::{self, Reference};
use crate::registry::{to_compact_json, BlobSource};

// The `concurrency = 64` defaults below are `DEFAULT_INDEX_CONCURRENCY` (a literal, so that
// the signature Python sees shows it); this fails to compile if they drift apart.
const _: () = assert!(crate::index::DEFAULT_INDEX_CONCURRENCY == 64);

pub(crate) fn parse_ref(py: Python<'_>, s: &str) -> PyResult<Reference> {
    Reference::parse(s).into_py_result(py)
}

pub(crate) fn parse_digest(py: Python<'_>, s: &str) -> PyResult<Digest> {
    Digest::parse(s).into_py_result(py)
}

/// A JSON-compatible Python object as a serde value (via `json.dumps`, keeping key order).
pub(crate) fn to_value(py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    let text: String = py
        .import("json")?
        .call_method1("dumps", (obj,))?
        .extract()?;
    serde_json::from_str(&text)
        .map_err(|e| super::errors::invalid_argument(format!("not JSON-compatible: {e}")))
}

/// A serde value as a Python object (via `json.loads`).
pub(crate) fn from_value(py: Python<'_>, v: &Value) -> PyResult<Py<PyAny>> {
    from_json_bytes(py, &serde_json::to_vec(v).expect("serializable"))
}

pub(crate) fn from_json_bytes(py: Python<'_>, b: &[u8]) -> PyResult<Py<PyAny>> {
    Ok(py
        .import("json")?
        .call_method1("loads", (PyBytes::new(py, b),))?
        .unbind())
}

twins! {
    /// All tags of the repository of `ref`, sorted, following `Link` pagination.
    #[pyo3(signature = (r#ref, *, client = None))]
    fn list_tags / list_tags_async (
        py,
        r#ref: &str,
        client: Option<&Bound<'_, Client>>,
    ) -> Vec<String> {
        let reference = parse_ref(py, r#ref)?;
        let c = client_for(py, client)?;
        plain(async move { c.repository(&reference).list_tags().await })
    }
}

twins! {
    /// Whether the blob exists in the repository of `ref`.
    #[pyo3(signature = (r#ref, digest, *, client = None))]
    fn blob_exists / blob_exists_async (
        py,
        r#ref: &str,
        digest: &str,
        client: Option<&Bound<'_, Client>>,
    ) -> bool {
        let reference = parse_ref(py, r#ref)?;
        let digest = parse_digest(py, digest)?;
        let c = client_for(py, client)?;
        plain(async move { c.repository(&reference).blob_exists(&digest).await })
    }
}

twins! {
    /// Stream one blob to `dest`, verified; returns its size.
    #[pyo3(signature = (r#ref, digest, dest, *, client = None))]
    fn fetch_blob / fetch_blob_async (
        py,
        r#ref: &str,
        digest: &str,
        dest: PathBuf,
        client: Option<&Bound<'_, Client>>,
    ) -> u64 {
        let reference = parse_ref(py, r#ref)?;
        let digest = parse_digest(py, digest)?;
        let c = client_for(py, client)?;
        plain(async move {
            let out = c.repository(&reference).fetch_blob(&digest, &dest).await;
            out.map(|o| o.size)
        })
    }
}

/// The outcome of one download of `fetch_blobs`.
#[pyclass(module = "spack_oci_rs._native", frozen, get_all)]
pub struct FetchResult {
    r#ref: String,
    digest: String,
    dest: PathBuf,
    ok: bool,
    size: Option<u64>,
    error: Option<Py<PyAny>>,
    /// Times the download resumed with `Range` after a drop.
    resumed: u32,
    /// Times it started over from the first byte.
    restarted: u32,
    /// Failed attempts that were retried.
    retries: u32,
}

#[pymethods]
impl FetchResult {
    fn __repr__(&self) -> String {
        format!(
            "FetchResult(digest={:?}, dest={:?}, ok={}, size={:?})",
            self.digest,
            self.dest.display().to_string(),
            self.ok,
            self.size
        )
    }
}

twins! {
    /// Download many blobs concurrently; one result per request, in order.
    #[pyo3(signature = (requests, *, concurrency = 16, client = None))]
    fn fetch_blobs / fetch_blobs_async (
        py,
        requests: Vec<(String, String, PathBuf)>,
        concurrency: usize,
        client: Option<&Bound<'_, Client>>,
    ) -> Vec<FetchResult> {
        let fut = fetch_blobs_future(py, &requests, concurrency, client)?;
        Call::new(fut, move |py, results| Ok(fetch_results(py, results, requests)))
    }
}

type Fetched = Vec<crate::Result<crate::registry::FetchOutcome>>;

fn fetch_blobs_future(
    py: Python<'_>,
    requests: &[(String, String, PathBuf)],
    concurrency: usize,
    client: Option<&Bound<'_, Client>>,
) -> PyResult<impl std::future::Future<Output = Fetched> + Send + 'static> {
    let c = client_for(py, client)?;
    let jobs: Vec<(crate::Result<(Reference, Digest)>, PathBuf)> = requests
        .iter()
        .map(|(r, d, dest)| {
            let parsed = Reference::parse(r).and_then(|r| Ok((r, Digest::parse(d)?)));
            (parsed, dest.clone())
        })
        .collect();
    Ok(async move {
        let tasks: Vec<_> = jobs
            .into_iter()
            .map(|(p, dest)| {
                let c = c.clone();
                async move {
                    match p {
                        Ok((r, d)) => c.repository(&r).fetch_blob(&d, &dest).await,
                        Err(e) => Err(e),
                    }
                }
            })
            .collect();
        stream::iter(tasks)
            .buffered(concurrency.max(1))
            .collect::<Vec<_>>()
            .await
    })
}

fn fetch_results(
    py: Python<'_>,
    results: Fetched,
    requests: Vec<(String, String, PathBuf)>,
) -> Vec<FetchResult> {
    results
        .into_iter()
        .zip(requests)
        .map(|(r, (rf, d, dest))| {
            let (ok, error) = match r {
                Ok(o) => (Some(o), None),
                Err(e) => (None, Some(to_pyerr(py, &e).into_value(py).into_any())),
            };
            FetchResult {
                r#ref: rf,
                digest: d,
                dest,
                ok: ok.is_some(),
                size: ok.as_ref().map(|o| o.size),
                error,
                resumed: ok.as_ref().map_or(0, |o| o.resumed),
                restarted: ok.as_ref().map_or(0, |o| o.restarted),
                retries: ok.as_ref().map_or(0, |o| o.retries),
            }
        })
        .collect()
}

/// Blob bytes from `data` (bytes or a path to read) for the upload functions.
fn blob_source(data: &Bound<'_, PyAny>) -> PyResult<BlobSource> {
    if let Ok(b) = data.cast::<PyBytes>() {
        Ok(BlobSource::Bytes(Bytes::copy_from_slice(b.as_bytes())))
    } else if let Ok(p) = data.extract::<PathBuf>() {
        Ok(BlobSource::File(p))
    } else {
        Err(super::errors::invalid_argument(
            "data must be bytes or a path",
        ))
    }
}

twins! {
    /// Upload a blob (a file path or bytes) unless present; returns (digest, uploaded).
    #[pyo3(signature = (r#ref, data, digest = None, *, force = false, client = None))]
    fn upload_blob / upload_blob_async (
        py,
        r#ref: &str,
        data: &Bound<'_, PyAny>,
        digest: Option<&str>,
        force: bool,
        client: Option<&Bound<'_, Client>>,
    ) -> (String, bool) {
        let reference = parse_ref(py, r#ref)?;
        let source = blob_source(data)?;
        let given = digest.map(|d| parse_digest(py, d)).transpose()?;
        let c = client_for(py, client)?;
        plain(async move {
            let digest = match (given, &source) {
                (Some(d), _) => d,
                (None, BlobSource::Bytes(b)) => Digest::of_bytes(b),
                (None, BlobSource::File(p)) => {
                    let p = p.clone();
                    tokio::task::spawn_blocking(move || crate::digest::file_digest(&p))
                        .await
                        .map_err(|e| crate::Error::invalid_input(e.to_string()))??
                }
            };
            let repo = c.repository(&reference);
            let uploaded = repo.upload_blob(&source, &digest, force).await?;
            Ok((digest.to_string(), uploaded))
        })
    }
}

/// Manifest bytes and their JSON: exact bytes as given, or a dict as Spack's compact JSON.
fn manifest_bytes(py: Python<'_>, manifest: &Bound<'_, PyAny>) -> PyResult<(Vec<u8>, Value)> {
    if let Ok(b) = manifest.cast::<PyBytes>() {
        let bytes = b.as_bytes().to_vec();
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| crate::Error::invalid_input(format!("manifest is not JSON: {e}")))
            .into_py_result(py)?;
        Ok((bytes, v))
    } else {
        let v = to_value(py, manifest)?;
        Ok((to_compact_json(&v), v))
    }
}

twins! {
    /// Upload a manifest (a dict, serialized as compact JSON like Spack, or exact bytes) under
    /// the tag of `ref`, or under its digest when `tag` is false. Returns (digest, size).
    #[pyo3(signature = (r#ref, manifest, *, tag = true, media_type = None, client = None))]
    fn upload_manifest / upload_manifest_async (
        py,
        r#ref: &str,
        manifest: &Bound<'_, PyAny>,
        tag: bool,
        media_type: Option<String>,
        client: Option<&Bound<'_, Client>>,
    ) -> (String, u64) {
        let reference = parse_ref(py, r#ref)?;
        let (bytes, json) = manifest_bytes(py, manifest)?;
        let from_json = || json.get("mediaType").and_then(Value::as_str).map(str::to_string);
        let Some(media_type) = media_type.or_else(from_json) else {
            let e = crate::Error::invalid_input("the manifest has no mediaType; pass media_type=");
            return Err(to_pyerr(py, &e));
        };
        let c = client_for(py, client)?;
        plain(async move {
            let tag = tag.then_some(reference.tag.as_str());
            let repo = c.repository(&reference);
            let (d, size) = repo.put_manifest(tag, Bytes::from(bytes), &media_type).await?;
            Ok((d.to_string(), size))
        })
    }
}

twins! {
    /// (manifest, config) of `ref`, descending into an image index for `architecture`.
    #[pyo3(signature = (r#ref, architecture = "amd64", *, recurse = 3, client = None))]
    fn get_manifest_and_config / get_manifest_and_config_async (
        py,
        r#ref: &str,
        architecture: &str,
        recurse: u32,
        client: Option<&Bound<'_, Client>>,
    ) -> (Py<PyAny>, Py<PyAny>) {
        let reference = parse_ref(py, r#ref)?;
        let c = client_for(py, client)?;
        let arch = architecture.to_string();
        let fut = async move {
            let at = reference.tag_or_digest();
            c.repository(&reference).get_manifest_and_config(&at, &arch, recurse).await
        };
        Call::new(fut, |py, im| {
            let im = im.into_py_result(py)?;
            Ok((
                from_json_bytes(py, &im.manifest.bytes)?,
                from_json_bytes(py, &im.config_bytes)?,
            ))
        })
    }
}

twins! {
    /// Copy the layers of `src` (for `architecture`) missing in `dst`; returns the base
    /// (manifest, config). Same registry: cross-repository mount; else streamed copy.
    #[pyo3(signature = (src, dst, architecture = "amd64", *, client = None))]
    fn copy_missing_layers / copy_missing_layers_async (
        py,
        src: &str,
        dst: &str,
        architecture: &str,
        client: Option<&Bound<'_, Client>>,
    ) -> (Py<PyAny>, Py<PyAny>) {
        let (s, d) = (parse_ref(py, src)?, parse_ref(py, dst)?);
        let c = client_for(py, client)?;
        let arch = architecture.to_string();
        let fut = async move {
            let src = c.repository(&s);
            c.repository(&d).copy_missing_layers(&src, &arch).await
        };
        Call::new(fut, |py, out| {
            let (m, cfg) = out.into_py_result(py)?;
            Ok((from_value(py, &m)?, from_value(py, &cfg)?))
        })
    }
}

/// The configs of all spec tags, for building the index.
#[pyclass(module = "spack_oci_rs._native", frozen, get_all)]
pub struct IndexConfigs {
    /// `(tag, manifest digest, config dict)` of every spec tag whose config has a "spec" key.
    configs: Py<PyList>,
    /// `(tag, reason)` of tags left out.
    skipped: Vec<(String, String)>,
    spec_tags: usize,
}

twins! {
    /// List tags and fetch the config of every spec tag concurrently.
    #[pyo3(signature = (r#ref, *, concurrency = 64, client = None))]
    fn build_index / build_index_async (
        py,
        r#ref: &str,
        concurrency: usize,
        client: Option<&Bound<'_, Client>>,
    ) -> IndexConfigs {
        let reference = parse_ref(py, r#ref)?;
        let c = client_for(py, client)?;
        let fut = async move { crate::index::index_configs(&c, &reference, concurrency).await };
        Call::new(fut, |py, out| index_configs_to_py(py, &out.into_py_result(py)?))
    }
}

fn index_configs_to_py(py: Python<'_>, out: &crate::index::IndexConfigs) -> PyResult<IndexConfigs> {
    let configs = PyList::empty(py);
    for sc in &out.configs {
        let cfg = from_json_bytes(py, &sc.config)?;
        configs.append((
            PyString::new(py, &sc.tag),
            sc.manifest_digest.to_string(),
            cfg,
        ))?;
    }
    Ok(IndexConfigs {
        configs: configs.unbind(),
        skipped: out
            .skipped
            .iter()
            .map(|s| (s.tag.clone(), s.reason.clone()))
            .collect(),
        spec_tags: out.spec_tags,
    })
}

twins! {
    /// Upload an `index.json` (bytes or a path) as the `index.spack` image; returns the
    /// manifest digest.
    #[pyo3(signature = (r#ref, index, *, client = None))]
    fn upload_index / upload_index_async (
        py,
        r#ref: &str,
        index: &Bound<'_, PyAny>,
        client: Option<&Bound<'_, Client>>,
    ) -> String {
        let reference = parse_ref(py, r#ref)?;
        let data = match blob_source(index)? {
            BlobSource::Bytes(b) => b,
            BlobSource::File(p) => Bytes::from(
                std::fs::read(&p).map_err(|e| to_pyerr(py, &crate::Error::io("reading", &p, &e)))?,
            ),
        };
        let c = client_for(py, client)?;
        plain(async move {
            let digest = crate::index::upload_index(&c, &reference, data).await?;
            Ok(digest.to_string())
        })
    }
}

twins! {
    /// The current `index.spack`: (layer digest, bytes), or None when there is none. With
    /// `known` equal to the current layer digest the bytes are not fetched (None).
    #[pyo3(signature = (r#ref, *, known = None, client = None))]
    fn fetch_index / fetch_index_async (
        py,
        r#ref: &str,
        known: Option<&str>,
        client: Option<&Bound<'_, Client>>,
    ) -> Option<(String, Option<Py<PyBytes>>)> {
        let reference = parse_ref(py, r#ref)?;
        let known = known.map(|k| parse_digest(py, k)).transpose()?;
        let c = client_for(py, client)?;
        let fut = async move { crate::index::fetch_index(&c, &reference, known.as_ref()).await };
        Call::new(fut, |py, out| {
            let out = out.into_py_result(py)?;
            Ok(out.map(|(d, b)| (d.to_string(), b.map(|b| PyBytes::new(py, &b).unbind()))))
        })
    }
}

/// The outcome of prefetching one image.
#[pyclass(module = "spack_oci_rs._native", frozen, get_all)]
pub struct PrefetchResult {
    r#ref: String,
    ok: bool,
    config_digest: Option<String>,
    layer_digest: Option<String>,
    downloaded: usize,
    error: Option<Py<PyAny>>,
}

#[pymethods]
impl PrefetchResult {
    fn __repr__(&self) -> String {
        format!(
            "PrefetchResult(ref={:?}, ok={}, downloaded={})",
            self.r#ref, self.ok, self.downloaded
        )
    }
}

twins! {
    /// For each image: fetch its manifest, then its config and last layer into
    /// `root/blobs/sha256/<hex>` (skipping blobs already there), all concurrently.
    #[pyo3(signature = (refs, root, *, concurrency = 16, client = None))]
    fn prefetch_images / prefetch_images_async (
        py,
        refs: Vec<String>,
        root: PathBuf,
        concurrency: usize,
        client: Option<&Bound<'_, Client>>,
    ) -> Vec<PrefetchResult> {
        let parsed: Vec<Reference> = refs
            .iter()
            .map(|r| parse_ref(py, r))
            .collect::<PyResult<_>>()?;
        let c = client_for(py, client)?;
        let fut = async move { crate::prefetch::prefetch(&c, &parsed, &root, concurrency).await };
        Call::new(fut, move |py, results| Ok(prefetch_results(py, results, refs)))
    }
}

type Prefetches = Vec<crate::Result<crate::prefetch::Prefetched>>;

fn prefetch_results(py: Python<'_>, results: Prefetches, refs: Vec<String>) -> Vec<PrefetchResult> {
    results
        .into_iter()
        .zip(refs)
        .map(|(r, rf)| {
            let (ok, error) = match r {
                Ok(p) => (Some(p), None),
                Err(e) => (None, Some(to_pyerr(py, &e).into_value(py).into_any())),
            };
            PrefetchResult {
                r#ref: rf,
                ok: ok.is_some(),
                config_digest: ok.as_ref().map(|p| p.config.to_string()),
                layer_digest: ok.as_ref().map(|p| p.layer.to_string()),
                downloaded: ok.as_ref().map_or(0, |p| p.downloaded),
                error,
            }
        })
        .collect()
}

twins! {
    /// Probe a registry and repository (the CLI's `doctor`): a dict with `connect_ms`,
    /// `rtt_ms`, `http_version`, `auth_scheme`, `pull` and `push` (`{"ok": bool, "detail":
    /// str}`), `range` and `mount` (bool or None when they could not be tried).
    #[pyo3(signature = (r#ref, *, client = None))]
    fn probe / probe_async (py, r#ref: &str, client: Option<&Bound<'_, Client>>) -> Py<PyDict> {
        let reference = parse_ref(py, r#ref)?;
        let c = client_for(py, client)?;
        let fut = async move { crate::probe::probe(&c, &reference).await };
        Call::new(fut, |py, p| probe_to_py(py, &p.into_py_result(py)?))
    }
}

fn probe_to_py(py: Python<'_>, p: &crate::probe::Probe) -> PyResult<Py<PyDict>> {
    let d = PyDict::new(py);
    d.set_item("connect_ms", p.connect_ms)?;
    d.set_item("rtt_ms", p.rtt_ms)?;
    d.set_item("http_version", &p.http_version)?;
    d.set_item("auth_scheme", &p.auth_scheme)?;
    for (name, check) in [("pull", &p.pull), ("push", &p.push)] {
        let c = PyDict::new(py);
        match check {
            Ok(detail) => {
                c.set_item("ok", true)?;
                c.set_item("detail", detail)?;
            }
            Err(e) => {
                c.set_item("ok", false)?;
                c.set_item("detail", e.to_string())?;
                c.set_item("error", super::errors::class_name(e.kind()))?;
            }
        }
        d.set_item(name, c)?;
    }
    d.set_item("range", p.range)?;
    d.set_item("mount", p.mount)?;
    Ok(d.unbind())
}

/// Spack's default tag `<name>-<version>-<hash>.spack`, sanitized and shortened.
#[pyfunction]
fn default_tag(name: &str, version: &str, dag_hash: &str) -> String {
    reference::default_tag(name, version, dag_hash)
}

/// Spack's `ensure_valid_tag`.
#[pyfunction]
fn ensure_valid_tag(tag: &str) -> String {
    reference::ensure_valid_tag(tag)
}

/// Parse an image reference or OCI URL: a dict with scheme, domain, name, tag, digest.
#[pyfunction]
fn parse_reference<'py>(py: Python<'py>, r#ref: &str) -> PyResult<Bound<'py, PyDict>> {
    let r = parse_ref(py, r#ref)?;
    let d = PyDict::new(py);
    d.set_item("scheme", r.scheme.as_str())?;
    d.set_item("domain", &r.domain)?;
    d.set_item("name", &r.name)?;
    d.set_item("tag", &r.tag)?;
    d.set_item("digest", r.digest.as_ref().map(ToString::to_string))?;
    Ok(d)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<FetchResult>()?;
    m.add_class::<IndexConfigs>()?;
    m.add_class::<PrefetchResult>()?;
    add_twin(
        m,
        wrap_pyfunction!(list_tags, m)?,
        wrap_pyfunction!(list_tags_async, m)?,
    )?;
    add_twin(
        m,
        wrap_pyfunction!(blob_exists, m)?,
        wrap_pyfunction!(blob_exists_async, m)?,
    )?;
    add_twin(
        m,
        wrap_pyfunction!(fetch_blob, m)?,
        wrap_pyfunction!(fetch_blob_async, m)?,
    )?;
    add_twin(
        m,
        wrap_pyfunction!(fetch_blobs, m)?,
        wrap_pyfunction!(fetch_blobs_async, m)?,
    )?;
    add_twin(
        m,
        wrap_pyfunction!(upload_blob, m)?,
        wrap_pyfunction!(upload_blob_async, m)?,
    )?;
    add_twin(
        m,
        wrap_pyfunction!(upload_manifest, m)?,
        wrap_pyfunction!(upload_manifest_async, m)?,
    )?;
    add_twin(
        m,
        wrap_pyfunction!(get_manifest_and_config, m)?,
        wrap_pyfunction!(get_manifest_and_config_async, m)?,
    )?;
    add_twin(
        m,
        wrap_pyfunction!(copy_missing_layers, m)?,
        wrap_pyfunction!(copy_missing_layers_async, m)?,
    )?;
    add_twin(
        m,
        wrap_pyfunction!(build_index, m)?,
        wrap_pyfunction!(build_index_async, m)?,
    )?;
    add_twin(
        m,
        wrap_pyfunction!(upload_index, m)?,
        wrap_pyfunction!(upload_index_async, m)?,
    )?;
    add_twin(
        m,
        wrap_pyfunction!(fetch_index, m)?,
        wrap_pyfunction!(fetch_index_async, m)?,
    )?;
    add_twin(
        m,
        wrap_pyfunction!(prefetch_images, m)?,
        wrap_pyfunction!(prefetch_images_async, m)?,
    )?;
    add_twin(
        m,
        wrap_pyfunction!(probe, m)?,
        wrap_pyfunction!(probe_async, m)?,
    )?;
    m.add_function(wrap_pyfunction!(default_tag, m)?)?;
    m.add_function(wrap_pyfunction!(ensure_valid_tag, m)?)?;
    m.add_function(wrap_pyfunction!(parse_reference, m)?)?;
    Ok(())
}
