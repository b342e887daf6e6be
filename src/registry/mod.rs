//! Registry operations on one repository: blobs, manifests, tags (OCI distribution spec).

mod blobs;
mod manifests;
mod tags;

pub use blobs::{BlobSource, FetchOutcome};
pub use manifests::{
    is_missing_blob_error, referenced_blobs, to_compact_json, Descriptor, ImageManifest, Manifest,
    MAX_MANIFEST_SIZE,
};

use reqwest::Method;

use crate::reference::Reference;
use crate::transport::auth::Scope;
use crate::transport::Request;

/// Build a request against `reference`'s registry with the given scope.
pub fn request(
    reference: &Reference,
    method: Method,
    url: impl Into<String>,
    push: bool,
    what: impl Into<String>,
) -> Request {
    let mut r = Request::new(method, url, what);
    r.host.clone_from(&reference.domain);
    r.scheme = reference.scheme;
    r.scopes = vec![if push {
        Scope::push(&reference.name)
    } else {
        Scope::pull(&reference.name)
    }];
    r
}

/// Resolve a `Location` header (absolute or relative) against the registry's `/v2/` URL,
/// as Spack does with `urljoin`.
pub(crate) fn resolve_location(reference: &Reference, location: &str) -> crate::Result<url::Url> {
    let base = url::Url::parse(&reference.base_url())
        .map_err(|e| crate::Error::invalid_reference(format!("{reference}: {e}")))?;
    base.join(location).map_err(|e| {
        crate::Error::invalid_response(format!(
            "{}: invalid Location {location:?}: {e}",
            reference.repository()
        ))
    })
}
