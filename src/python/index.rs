//! Index glue: `index_json` (configs → Spack's `index.json` bytes) and `update_index`.

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::errors::IntoPyResult;
use super::ops::parse_ref;
use super::runtime::block_on;
use super::{client_for, Client};
use crate::index::db::{read_config, Database, SpecRecords};
use crate::index::node::Targets;
use crate::index::update::{self, DbInputs};

/// A Python callable `(config bytes) -> records JSON str` as a [`SpackReader`].
pub(crate) fn spack_reader(
    f: &Py<PyAny>,
) -> impl Fn(&[u8]) -> Result<SpecRecords, String> + Sync + '_ {
    move |config: &[u8]| {
        let json: String = Python::attach(|py| {
            f.call1(py, (PyBytes::new(py, config),))
                .and_then(|r| r.extract(py))
                .map_err(|e| format!("Spack could not read the spec: {e}"))
        })?;
        SpecRecords::from_spack_json(json.as_bytes())
    }
}

pub(crate) fn parse_targets(targets: &str) -> PyResult<Targets> {
    Targets::from_json(targets.as_bytes())
        .map_err(|e| super::errors::invalid_argument(format!("targets: {e}")))
}

/// (name, reason) of configs left out.
type Skipped = Vec<(String, String)>;

/// Spack's `index.json` for `configs` (name, image config bytes), added in order to
/// `previous` (an `index.json` to merge into) or to an empty database.
#[pyfunction]
#[pyo3(signature = (configs, *, targets, spack_records = None, previous = None))]
fn index_json<'py>(
    py: Python<'py>,
    configs: Vec<(String, Vec<u8>)>,
    targets: &str,
    spack_records: Option<Py<PyAny>>,
    previous: Option<Vec<u8>>,
) -> PyResult<(Bound<'py, PyBytes>, Skipped)> {
    let targets = parse_targets(targets)?;
    let mut db = match previous {
        None => Database::new(),
        Some(p) => Database::parse(&p)
            .map_err(|e| super::errors::invalid_argument(format!("the previous index: {e}")))?,
    };
    let reader = spack_records.as_ref().map(spack_reader);
    let (bytes, skipped) = py.detach(|| {
        let mut skipped = Vec::new();
        for (name, config) in &configs {
            let read = reader.as_ref().map(|r| r as _);
            match read_config(config, &targets, read) {
                Ok(records) => db.add(&records),
                Err(why) => skipped.push((name.clone(), why)),
            }
        }
        (db.to_json(), skipped)
    });
    Ok((PyBytes::new(py, &bytes), skipped))
}

/// How an index update went (`update_index`).
#[pyclass(module = "spack_oci_rs._native", frozen, get_all)]
pub struct IndexUpdate {
    mode: String,
    note: Option<String>,
    manifest_digest: Option<String>,
    specs: usize,
    records: usize,
    spec_tags: usize,
    fetched: usize,
    reused: usize,
    skipped: Skipped,
    attempts: u32,
    settled: bool,
}

#[pymethods]
impl IndexUpdate {
    fn __repr__(&self) -> String {
        format!(
            "IndexUpdate(mode={:?}, specs={}, fetched={}, reused={}, skipped={}, attempts={}, settled={})",
            self.mode,
            self.specs,
            self.fetched,
            self.reused,
            self.skipped.len(),
            self.attempts,
            if self.settled { "True" } else { "False" }
        )
    }
}

impl From<update::IndexUpdate> for IndexUpdate {
    fn from(u: update::IndexUpdate) -> Self {
        Self {
            mode: u.mode.to_owned(),
            note: u.note,
            manifest_digest: u.manifest_digest.map(|d| d.to_string()),
            specs: u.specs,
            records: u.records,
            spec_tags: u.spec_tags,
            fetched: u.fetched,
            reused: u.reused,
            skipped: u.skipped.into_iter().map(|s| (s.tag, s.reason)).collect(),
            attempts: u.attempts,
            settled: u.settled,
        }
    }
}

/// Update `index.spack`: rebuild it from the tags (reusing what the previous index was
/// built from), or with `merge` (tags just pushed) add their specs to the current one.
#[pyfunction]
#[pyo3(signature = (r#ref, *, targets, merge = None, spack_records = None, concurrency = 64, attempts = 20, sign_key = None, client = None))]
#[allow(clippy::too_many_arguments)]
fn update_index(
    py: Python<'_>,
    r#ref: &str,
    targets: &str,
    merge: Option<Vec<String>>,
    spack_records: Option<Py<PyAny>>,
    concurrency: usize,
    attempts: u32,
    sign_key: Option<std::path::PathBuf>,
    client: Option<&Bound<'_, Client>>,
) -> PyResult<IndexUpdate> {
    let reference = parse_ref(py, r#ref)?;
    let targets = parse_targets(targets)?;
    let signer = super::sign::signer_for(py, sign_key)?;
    let signer = signer.as_deref();
    let c = client_for(py, client)?;
    let reader = spack_records.as_ref().map(spack_reader);
    let inputs = DbInputs {
        targets: &targets,
        spack: reader.as_ref().map(|r| r as _),
    };
    let out = block_on(py, async {
        match &merge {
            None => update::rebuild(&c, &reference, inputs, concurrency, signer).await,
            Some(tags) => update::merge(&c, &reference, tags, inputs, attempts, signer).await,
        }
    })?;
    out.map(IndexUpdate::from).into_py_result(py)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<IndexUpdate>()?;
    m.add_function(wrap_pyfunction!(index_json, m)?)?;
    m.add_function(wrap_pyfunction!(update_index, m)?)
}
