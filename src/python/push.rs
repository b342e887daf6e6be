//! `push`: a whole push plan in one call.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyDict;
use serde_json::Value;

use super::call::{add_twin, twins, Call};
use super::errors::to_pyerr;
use super::ops::{parse_digest, parse_ref, to_value};
use super::{client_for, Client};
use crate::digest::Digest;
use crate::push::{
    self as core, BuildinfoFn, ItemStatus, LayerInfo, LayerSource, Progress, PushItem as CoreItem,
    PushOptions, PushPlan,
};
use crate::tarball::{RelocationLists, TarballOptions};
use crate::transport::limits::StatsSnapshot;

/// One image to push: its tag, its layer (a finished tarball or an install prefix to
/// archive) and what goes into its config and manifest.
#[pyclass(module = "spack_oci_rs._native", frozen, get_all)]
pub struct PushItem {
    tag: String,
    key: String,
    tarball: Option<PathBuf>,
    diff_id: Option<String>,
    prefix: Option<PathBuf>,
    prefixes_to_relocate: Vec<String>,
    buildinfo: Option<Py<PyDict>>,
    layers: Vec<String>,
    architecture: String,
    env: Option<Vec<String>>,
    extra_config: Option<Py<PyDict>>,
    fill_checksum: bool,
    annotations: Option<Py<PyDict>>,
}

#[pymethods]
impl PushItem {
    #[new]
    #[pyo3(signature = (
        tag,
        *,
        key = None,
        tarball = None,
        diff_id = None,
        prefix = None,
        prefixes_to_relocate = Vec::new(),
        buildinfo = None,
        layers = Vec::new(),
        architecture = "amd64".to_string(),
        env = None,
        extra_config = None,
        fill_checksum = None,
        annotations = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        tag: String,
        key: Option<String>,
        tarball: Option<PathBuf>,
        diff_id: Option<String>,
        prefix: Option<PathBuf>,
        prefixes_to_relocate: Vec<String>,
        buildinfo: Option<Py<PyDict>>,
        layers: Vec<String>,
        architecture: String,
        env: Option<Vec<String>>,
        extra_config: Option<Py<PyDict>>,
        fill_checksum: Option<bool>,
        annotations: Option<Py<PyDict>>,
    ) -> PyResult<Self> {
        if tarball.is_some() && prefix.is_some() {
            return Err(super::errors::invalid_argument(format!(
                "{tag}: give either tarball= or prefix=, not both"
            )));
        }
        if !crate::reference::is_valid_tag(&tag) {
            return Err(to_pyerr(
                py,
                &crate::Error::invalid_reference(format!("invalid tag {tag:?}")),
            ));
        }
        if let Some(d) = &diff_id {
            parse_digest(py, d)?;
        }
        let has_layer = tarball.is_some() || prefix.is_some();
        Ok(Self {
            key: key.unwrap_or_else(|| tag.clone()),
            tag,
            tarball,
            diff_id,
            prefix,
            prefixes_to_relocate,
            buildinfo,
            layers,
            architecture,
            env,
            fill_checksum: fill_checksum.unwrap_or(has_layer && extra_config.is_some()),
            extra_config,
            annotations,
        })
    }

    fn __repr__(&self) -> String {
        let layer = match (&self.tarball, &self.prefix) {
            (Some(t), _) => format!("tarball={:?}", t.display().to_string()),
            (_, Some(p)) => format!("prefix={:?}", p.display().to_string()),
            _ => "no layer".into(),
        };
        format!("PushItem({:?}, key={:?}, {layer})", self.tag, self.key)
    }
}

/// The outcome of one item.
#[pyclass(module = "spack_oci_rs._native", frozen, get_all)]
pub struct PushResult {
    key: String,
    tag: String,
    /// "pushed", "skipped" or "failed".
    status: String,
    manifest_digest: Option<String>,
    manifest_size: Option<u64>,
    digest: Option<String>,
    diff_id: Option<String>,
    size: Option<u64>,
    uploaded: bool,
    relocate_binaries: Option<Vec<String>>,
    relocate_links: Option<Vec<String>>,
    relocate_textfiles: Option<Vec<String>>,
    error: Option<Py<PyAny>>,
    seconds: f64,
    /// Push-wide (the same on every result of one push): requests the registry refused with
    /// 429/503, seconds spent waiting for it, uploads continued from an offset, retries.
    throttled: u64,
    throttle_wait: f64,
    resumed: u64,
    retries: u64,
}

#[pymethods]
impl PushResult {
    fn __repr__(&self) -> String {
        format!(
            "PushResult(tag={:?}, status={:?}, manifest_digest={:?}, digest={:?})",
            self.tag, self.status, self.manifest_digest, self.digest
        )
    }
}

fn dict_to_map(
    py: Python<'_>,
    d: Option<&Py<PyDict>>,
) -> PyResult<Option<serde_json::Map<String, Value>>> {
    d.map(|d| match to_value(py, d.bind(py).as_any())? {
        Value::Object(m) => Ok(m),
        _ => Err(super::errors::invalid_argument("expected a dict")),
    })
    .transpose()
}

/// A buildinfo serializer: calls `dump(dict(buildinfo) | relocation lists)` with the GIL.
pub(crate) fn buildinfo_fn(buildinfo: Option<Py<PyDict>>, dump: Option<Py<PyAny>>) -> BuildinfoFn {
    Arc::new(move |lists: &RelocationLists| {
        Python::attach(|py| {
            super::tarball::dump_buildinfo(py, buildinfo.as_ref(), dump.as_ref(), lists)
        })
        .map_err(|e| crate::Error::invalid_input(format!("serializing buildinfo: {e}")))
    })
}

fn progress_fn(cb: Py<PyAny>) -> core::ProgressFn {
    Arc::new(move |p: Progress| {
        Python::attach(|py| {
            let d = PyDict::new(py);
            let event = match &p {
                Progress::Planned { total, to_push } => {
                    let _ = d.set_item("total", total);
                    let _ = d.set_item("to_push", to_push);
                    "planned"
                }
                Progress::LayerDone {
                    key,
                    tag,
                    digest,
                    size,
                    seconds,
                } => {
                    let _ = (d.set_item("key", key), d.set_item("tag", tag));
                    let _ = (
                        d.set_item("digest", digest.to_string()),
                        d.set_item("size", size),
                    );
                    let _ = d.set_item("seconds", seconds);
                    "layer_done"
                }
                Progress::LayerFailed { key, tag, error } => {
                    let _ = (
                        d.set_item("key", key),
                        d.set_item("tag", tag),
                        d.set_item("error", error),
                    );
                    "layer_failed"
                }
                Progress::ManifestDone { key, tag, digest } => {
                    let _ = (d.set_item("key", key), d.set_item("tag", tag));
                    let _ = d.set_item("digest", digest.to_string());
                    "manifest_done"
                }
                Progress::ManifestFailed { key, tag, error } => {
                    let _ = (
                        d.set_item("key", key),
                        d.set_item("tag", tag),
                        d.set_item("error", error),
                    );
                    "manifest_failed"
                }
                Progress::Bytes { done, total } => {
                    let _ = (d.set_item("done", done), d.set_item("total", total));
                    "bytes"
                }
            };
            if let Err(e) = cb.bind(py).call1((event, d)) {
                // A broken callback must not break the push; report it once per event.
                e.print(py);
            }
        });
    })
}

twins! {
    /// Push a whole plan; one result per item, in order.
    #[pyo3(signature = (
        target,
        items,
        *,
        base_image = None,
        force = false,
        jobs = None,
        known_layers = None,
        tags = None,
        buildinfo_dump = None,
        progress = None,
        stream_layers = true,
        tmpdir = None,
        compression = "spack",
        sign_key = None,
        client = None,
    ))]
    fn push / push_async (
        py,
        target: &str,
        items: Vec<Py<PushItem>>,
        base_image: Option<&str>,
        force: bool,
        jobs: Option<usize>,
        known_layers: Option<HashMap<String, (String, String, u64)>>,
        tags: Option<Vec<String>>,
        buildinfo_dump: Option<Py<PyAny>>,
        progress: Option<Py<PyAny>>,
        stream_layers: bool,
        tmpdir: Option<PathBuf>,
        compression: &str,
        sign_key: Option<PathBuf>,
        client: Option<&Bound<'_, Client>>,
    ) -> Vec<PushResult> {
        let fast = compression_is_fast(py, compression)?;
        let mut options = PushOptions {
            force,
            stream_layers,
            tmpdir,
            ..PushOptions::default()
        };
        options.jobs = jobs.map_or(options.jobs, |j| j.max(1));
        let plan = PushPlan {
            target: parse_ref(py, target)?,
            base_image: base_image.map(|b| parse_ref(py, b)).transpose()?,
            items: core_items(py, &items, fast, buildinfo_dump.as_ref())?,
            known_layers: known_layer_infos(py, known_layers)?,
            listed_tags: tags.map(|t| t.into_iter().collect()),
            options,
            progress: progress.map(progress_fn),
            signer: super::sign::signer_for(py, sign_key)?,
        };
        let c = client_for(py, client)?;
        Call::new(push_counted(c, plan), |py, results| Ok(to_results(py, results)))
    }
}

/// The engine's item for a Python `PushItem`.
fn core_item(
    py: Python<'_>,
    it: &PushItem,
    fast: bool,
    dump: Option<&Py<PyAny>>,
) -> PyResult<CoreItem> {
    let layer = if let Some(t) = &it.tarball {
        Some(LayerSource::Tarball {
            path: t.clone(),
            diff_id: it
                .diff_id
                .as_deref()
                .map(|d| parse_digest(py, d))
                .transpose()?,
        })
    } else {
        it.prefix.as_ref().map(|p| LayerSource::Prefix {
            path: p.clone(),
            options: TarballOptions {
                prefixes_to_relocate: it.prefixes_to_relocate.clone(),
                fast,
                compression_level: if fast {
                    crate::tarball::FAST_COMPRESSION_LEVEL
                } else {
                    crate::tarball::DEFAULT_COMPRESSION_LEVEL
                },
                ..TarballOptions::default()
            },
            buildinfo: buildinfo_fn(
                it.buildinfo.as_ref().map(|b| b.clone_ref(py)),
                dump.map(|f| f.clone_ref(py)),
            ),
        })
    };
    Ok(CoreItem {
        key: it.key.clone(),
        tag: it.tag.clone(),
        layer,
        layers: it.layers.clone(),
        architecture: it.architecture.clone(),
        env: it.env.clone(),
        extra_config: dict_to_map(py, it.extra_config.as_ref())?,
        fill_checksum: it.fill_checksum,
        annotations: dict_to_map(py, it.annotations.as_ref())?,
    })
}

/// `compression="fast"` (zlib-rs, digests differ from Spack's) or `"spack"`.
fn compression_is_fast(py: Python<'_>, compression: &str) -> PyResult<bool> {
    match compression {
        "spack" => Ok(false),
        "fast" => Ok(true),
        other => Err(to_pyerr(
            py,
            &crate::Error::invalid_input(format!(
                "compression must be \"spack\" or \"fast\", not {other:?}"
            )),
        )),
    }
}

/// The engine's items, checked for duplicate keys before anything is sent.
fn core_items(
    py: Python<'_>,
    items: &[Py<PushItem>],
    fast: bool,
    buildinfo_dump: Option<&Py<PyAny>>,
) -> PyResult<Vec<CoreItem>> {
    let mut seen = std::collections::HashSet::new();
    items
        .iter()
        .map(|it| {
            let it = it.get();
            if !seen.insert(it.key.clone()) {
                let e = crate::Error::invalid_input(format!("duplicate item key {:?}", it.key));
                return Err(to_pyerr(py, &e));
            }
            core_item(py, it, fast, buildinfo_dump)
        })
        .collect()
}

/// `known_layers` as the engine's layer infos (digests checked).
fn known_layer_infos(
    py: Python<'_>,
    known: Option<HashMap<String, (String, String, u64)>>,
) -> PyResult<HashMap<String, LayerInfo>> {
    known
        .unwrap_or_default()
        .into_iter()
        .map(|(k, (digest, diff_id, size))| {
            let info = LayerInfo {
                digest: parse_digest(py, &digest)?,
                diff_id: parse_digest(py, &diff_id)?,
                size,
            };
            Ok((k, info))
        })
        .collect()
}

/// Run a push, with what rate limiting and interruptions cost it.
async fn push_counted(
    c: crate::transport::Client,
    plan: PushPlan,
) -> (Vec<core::ItemResult>, StatsSnapshot) {
    let before = c.stats();
    let results = core::push(&c, plan).await;
    (results, c.stats().since(&before))
}

fn to_results(
    py: Python<'_>,
    (results, stats): (Vec<core::ItemResult>, StatsSnapshot),
) -> Vec<PushResult> {
    results
        .into_iter()
        .map(|r| PushResult {
            throttled: stats.throttled,
            throttle_wait: stats.waited.as_secs_f64(),
            resumed: stats.resumed,
            retries: stats.retried,
            status: r.status.as_str().to_string(),
            manifest_digest: r.manifest_digest.as_ref().map(Digest::to_string),
            manifest_size: r.manifest_size,
            digest: r.layer.as_ref().map(|l| l.digest.to_string()),
            diff_id: r.layer.as_ref().map(|l| l.diff_id.to_string()),
            size: r.layer.as_ref().map(|l| l.size),
            uploaded: r.layer_uploaded,
            relocate_binaries: r.relocation.as_ref().map(|l| l.relocate_binaries.clone()),
            relocate_links: r.relocation.as_ref().map(|l| l.relocate_links.clone()),
            relocate_textfiles: r.relocation.as_ref().map(|l| l.relocate_textfiles.clone()),
            error: r
                .error
                .as_ref()
                .map(|e| to_pyerr(py, e).into_value(py).into_any()),
            seconds: r.layer_seconds,
            key: r.key,
            tag: r.tag,
        })
        .inspect(|r| debug_assert!(r.status != ItemStatus::Failed.as_str() || r.error.is_some()))
        .collect()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PushItem>()?;
    m.add_class::<PushResult>()?;
    add_twin(
        m,
        wrap_pyfunction!(push, m)?,
        wrap_pyfunction!(push_async, m)?,
    )
}
