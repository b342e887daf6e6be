//! Index database glue: `index_json` (configs → Spack's `index.json` bytes).

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::index::db::{read_config, Database, SpecRecords};
use crate::index::node::Targets;

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
    Targets::from_json(targets.as_bytes()).map_err(pyo3::exceptions::PyValueError::new_err)
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
        Some(p) => Database::parse(&p).map_err(|e| {
            pyo3::exceptions::PyValueError::new_err(format!("the previous index: {e}"))
        })?,
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

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(index_json, m)?)
}
