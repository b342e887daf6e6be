//! Registry operations on one repository (OCI distribution spec), as verbs of a
//! [`Repository`] handle: tags, blobs (exists, fetch, upload, mount, copy), manifests and
//! upload sessions. Every request goes through [`crate::transport::Client`]; the wire types
//! (manifests, descriptors, compact JSON) are in [`wire`].
//!
//! ```no_run
//! # async fn demo(client: spack_oci_rs::transport::Client) -> spack_oci_rs::Result<()> {
//! let reference = spack_oci_rs::Reference::parse("ghcr.io/org/cache:zlib-1.3-abc.spack")?;
//! let repo = client.repository(&reference);
//! let tags = repo.list_tags().await?;
//! let manifest = repo.get_manifest(&reference.tag_or_digest()).await?;
//! # Ok(()) }
//! ```

mod blobs;
mod copy;
mod manifests;
mod session;
mod tags;
mod uploads;
pub mod wire;

pub use blobs::FetchOutcome;
pub use copy::BlobCopy;
pub use tags::MAX_TAG_PAGE;
pub use uploads::{BlobSource, Opened, UploadSource, DEFAULT_CHUNK_SIZE, MIN_CHUNK_SIZE};
pub use wire::{
    is_missing_blob_error, referenced_blobs, to_compact_json, Descriptor, ImageManifest, LayerInfo,
    Manifest, MAX_CONFIG_SIZE, MAX_MANIFEST_SIZE,
};

use reqwest::Method;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference::Reference;
use crate::transport::auth::Scope;
use crate::transport::{Client, Request};

/// A handle to one repository of one registry, sharing its client's connection pool, token
/// cache, limits and retry policy. Cheap to clone. The verbs ignore the tag and digest of the
/// reference it was made from, except where they say so.
#[derive(Clone)]
pub struct Repository {
    client: Client,
    reference: Reference,
}

impl Client {
    /// The repository of `reference` (registry and name; its tag and digest are kept only as
    /// [`Repository::reference`]).
    pub fn repository(&self, reference: &Reference) -> Repository {
        Repository {
            client: self.clone(),
            reference: reference.clone(),
        }
    }
}

impl Repository {
    /// The reference this handle was made from.
    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// `registry/name`, for messages.
    pub fn name(&self) -> String {
        self.reference.repository()
    }

    /// The reference for a manifest target: a tag, or a digest (`sha256:…`, which then
    /// pins and verifies what is fetched).
    pub fn target(&self, tag_or_digest: &str) -> Result<Reference> {
        if tag_or_digest.contains(':') {
            Ok(self.reference.with_digest(Digest::parse(tag_or_digest)?))
        } else {
            Ok(self.reference.with_tag(tag_or_digest))
        }
    }

    /// A request against this repository, with a pull (or push) scope.
    pub(crate) fn request(
        &self,
        method: Method,
        url: impl Into<String>,
        push: bool,
        what: impl Into<String>,
    ) -> Request {
        request(&self.reference, method, url, push, what)
    }

    /// Resolve a `Location` header against the registry.
    pub(crate) fn resolve(&self, location: &str) -> Result<url::Url> {
        resolve_location(&self.reference, location)
    }
}

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
pub(crate) fn resolve_location(reference: &Reference, location: &str) -> Result<url::Url> {
    let base = url::Url::parse(&reference.base_url())
        .map_err(|e| Error::invalid_reference(format!("{reference}: {e}")))?;
    base.join(location).map_err(|e| {
        Error::invalid_response(format!(
            "{}: invalid Location {location:?}: {e}",
            reference.repository()
        ))
    })
}
