//! The credential arguments of `Client(...)`: explicit username/password pairs, access
//! tokens, and the opt-in Docker/podman login files, chained in that order.

use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict};

use crate::transport::auth::{CredentialProvider, Credentials, StaticCredentials};
use crate::transport::credentials::{ChainCredentials, DockerConfig};

/// The credential provider for `Client(credentials=, access_tokens=, docker_config=)`, and
/// the registries given explicit credentials (for `repr`).
pub(crate) fn credential_provider(
    credentials: Option<&Bound<'_, PyDict>>,
    access_tokens: Option<&Bound<'_, PyDict>>,
    docker_config: Option<&Bound<'_, PyAny>>,
) -> PyResult<(Arc<dyn CredentialProvider>, Vec<String>)> {
    let mut creds = StaticCredentials::new();
    let mut registries = Vec::new();
    if let Some(d) = credentials {
        for (k, v) in d.iter() {
            let registry: String = k.extract()?;
            let (user, password): (String, String) = v.extract().map_err(|_| {
                super::errors::invalid_argument(format!(
                    "credentials for {registry} must be a (username, password) tuple"
                ))
            })?;
            creds.insert(registry.clone(), Credentials::new(user, password));
            registries.push(registry);
        }
    }
    if let Some(d) = access_tokens {
        for (k, v) in d.iter() {
            let registry: String = k.extract()?;
            let token: String = v.extract().map_err(|_| {
                super::errors::invalid_argument(format!(
                    "the access token for {registry} must be a str"
                ))
            })?;
            if token.is_empty() || token.chars().any(|c| c.is_control() || c == ' ') {
                return Err(super::errors::invalid_argument(format!(
                    "the access token for {registry} is empty or holds spaces or control \
                     characters"
                )));
            }
            // A username/password pair for the same registry wins (as in Spack, whose OCI
            // client uses the mirror's access_pair).
            if !registries.contains(&registry) {
                creds.insert(registry.clone(), Credentials::bearer_token(token));
                registries.push(registry);
            }
        }
    }
    let explicit: Arc<dyn CredentialProvider> = Arc::new(creds);
    let docker = match docker_config {
        None => None,
        Some(v) if v.is_instance_of::<PyBool>() => {
            if v.extract::<bool>()? {
                Some(DockerConfig::from_env())
            } else {
                None
            }
        }
        Some(v) => {
            let path: PathBuf = v.extract().map_err(|_| {
                super::errors::invalid_argument(
                    "docker_config must be a bool or the path of a config.json",
                )
            })?;
            Some(DockerConfig::from_file(path))
        }
    };
    let provider: Arc<dyn CredentialProvider> = match docker {
        Some(dc) => Arc::new(ChainCredentials::new(vec![explicit, Arc::new(dc)])),
        None => explicit,
    };
    Ok((provider, registries))
}
