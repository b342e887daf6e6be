//! Install-side prefetch: for many spec images at once, fetch each manifest and download its
//! config and its own (last) layer into an OCI-layout blob directory (`blobs/sha256/<hex>`,
//! which is how Spack's download cache stores OCI blobs). Each image is a small pipeline
//! (manifest, then both blobs concurrently); images run concurrently with each other.

use std::path::{Path, PathBuf};

use futures_util::stream::{self, StreamExt};

use crate::digest::Digest;
use crate::error::Result;
use crate::reference::Reference;
use crate::transport::Client;

/// What was prefetched for one image.
#[derive(Clone, Debug)]
pub struct Prefetched {
    pub config: Digest,
    pub layer: Digest,
    /// Blobs downloaded now (0 when both were in the cache already).
    pub downloaded: usize,
}

/// Where `digest` lives under an OCI-layout blob directory.
pub fn blob_path(root: &Path, digest: &Digest) -> PathBuf {
    root.join("blobs")
        .join(digest.algorithm())
        .join(digest.hex())
}

async fn prefetch_one(client: &Client, reference: &Reference, root: &Path) -> Result<Prefetched> {
    let repo = &client.repository(reference);
    let manifest = repo.get_manifest(&reference.tag_or_digest()).await?;
    if manifest.is_index() {
        return Err(crate::Error::invalid_response(format!(
            "{reference}: an image index, not a Spack image"
        )));
    }
    let config = manifest.config()?.digest;
    let layer = manifest
        .layers()?
        .pop()
        .ok_or_else(|| crate::Error::invalid_response(format!("{reference}: no layers")))?
        .digest;
    let fetch = |d: Digest| async move {
        let dest = blob_path(root, &d);
        if dest.exists() {
            return Ok(0);
        }
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir).map_err(|e| crate::Error::io("creating", dir, &e))?;
        }
        repo.fetch_blob(&d, &dest).await.map(|_| 1)
    };
    let (a, b) = tokio::join!(fetch(config.clone()), fetch(layer.clone()));
    Ok(Prefetched {
        config,
        layer,
        downloaded: a? + b?,
    })
}

/// Prefetch many images, `concurrency` at a time; one result per reference, in order.
pub async fn prefetch(
    client: &Client,
    references: &[Reference],
    root: &Path,
    concurrency: usize,
) -> Vec<Result<Prefetched>> {
    let tasks: Vec<_> = references
        .iter()
        .map(|r| prefetch_one(client, r, root))
        .collect();
    stream::iter(tasks)
        .buffered(concurrency.max(1))
        .collect()
        .await
}
