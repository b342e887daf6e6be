//! Signing bindings: `sign`, `verify` (and their async twins), `generate_key_pair`, and the
//! key arguments the other calls take (`sign_key=`, `trusted_keys=`).

use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;

use super::call::{add_twin, plain, twins};
use super::errors::IntoPyResult;
use super::ops::parse_ref;
use super::{client_for, Client};
use crate::sign::{self as core, PrivateKey, PublicKey, Signer};

/// A signature that was accepted: the manifest digest, and the trusted key that signed it.
#[pyclass(module = "spack_oci_rs._native", frozen, get_all)]
pub struct Verified {
    digest: String,
    key: String,
    fingerprint: String,
}

#[pymethods]
impl Verified {
    fn __repr__(&self) -> String {
        format!("Verified(digest={:?}, key={:?})", self.digest, self.key)
    }
}

/// The signer of a `sign_key=` argument (read before any request is sent).
pub(crate) fn signer_for(py: Python<'_>, key: Option<PathBuf>) -> PyResult<Option<Arc<Signer>>> {
    key.map(|k| PrivateKey::load(&k).map(|k| Arc::new(Signer::new(k))))
        .transpose()
        .into_py_result(py)
}

/// The keys of a `trusted_keys=` argument (read before any request is sent).
pub(crate) fn trusted_for(
    py: Python<'_>,
    keys: Option<Vec<PathBuf>>,
) -> PyResult<Option<Arc<Vec<PublicKey>>>> {
    keys.map(|ks| {
        ks.iter()
            .map(|k| PublicKey::load(k))
            .collect::<crate::Result<Vec<_>>>()
            .map(Arc::new)
    })
    .transpose()
    .into_py_result(py)
}

twins! {
    /// Sign the image `ref` (tag or digest) with the private key at `key_path`, cosign's
    /// way; returns the manifest digest that was signed.
    #[pyo3(signature = (r#ref, key_path, *, client = None))]
    fn sign / sign_async (
        py,
        r#ref: &str,
        key_path: PathBuf,
        client: Option<&Bound<'_, Client>>,
    ) -> String {
        let reference = parse_ref(py, r#ref)?;
        let key = PrivateKey::load(&key_path).into_py_result(py)?;
        let c = client_for(py, client)?;
        plain(async move { core::sign(&c, &reference, key).await.map(|d| d.to_string()) })
    }
}

twins! {
    /// Verify that the image `ref` is signed by one of `public_keys`; raises
    /// `SignatureError` naming the image and the reason otherwise.
    #[pyo3(signature = (r#ref, public_keys, *, client = None))]
    fn verify / verify_async (
        py,
        r#ref: &str,
        public_keys: Vec<PathBuf>,
        client: Option<&Bound<'_, Client>>,
    ) -> Verified {
        let reference = parse_ref(py, r#ref)?;
        let keys = trusted_for(py, Some(public_keys))?.unwrap_or_default();
        let c = client_for(py, client)?;
        plain(async move {
            let v = core::verify(&c, &reference, &keys).await?;
            Ok(Verified {
                digest: v.digest.to_string(),
                key: v.key,
                fingerprint: v.fingerprint.to_string(),
            })
        })
    }
}

/// Write a new ECDSA P-256 key pair to `PREFIX.key` (mode 0600) and `PREFIX.pub`; returns
/// both paths.
#[pyfunction]
fn generate_key_pair(py: Python<'_>, prefix: PathBuf) -> PyResult<(String, String)> {
    let (private, public) = core::write_key_pair(&prefix).into_py_result(py)?;
    Ok((private.display().to_string(), public.display().to_string()))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Verified>()?;
    add_twin(
        m,
        wrap_pyfunction!(sign, m)?,
        wrap_pyfunction!(sign_async, m)?,
    )?;
    add_twin(
        m,
        wrap_pyfunction!(verify, m)?,
        wrap_pyfunction!(verify_async, m)?,
    )?;
    m.add_function(wrap_pyfunction!(generate_key_pair, m)?)?;
    Ok(())
}
