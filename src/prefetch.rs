//! Install-side prefetch: for many spec images at once, fetch each manifest and download its
//! config and its own (last) layer into an OCI-layout blob directory (`blobs/sha256/<hex>`,
//! which is how Spack's download cache stores OCI blobs). Each image is a small pipeline
//! (manifest, then both blobs concurrently); images run concurrently with each other.

use std::path::{Path, PathBuf};

use futures_util::stream::{self, StreamExt};

use crate::digest::Digest;
use crate::error::Result;
use crate::reference::Reference;
use crate::sign::{verify_manifest, PublicKey};
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

async fn prefetch_one(
    client: &Client,
    reference: &Reference,
    root: &Path,
    trusted: Option<&[PublicKey]>,
) -> Result<Prefetched> {
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
    let verify = async {
        match trusted {
            Some(keys) => verify_manifest(repo, reference, &manifest.digest, keys)
                .await
                .map(Some),
            None => Ok(None),
        }
    };
    // With trusted keys, blobs download beside the verification into hidden files, and are
    // renamed into the cache only once the signature is accepted.
    let staged = trusted.is_some();
    let (verified, a, b) = tokio::join!(
        verify,
        fetch_into(repo, root, &config, staged),
        fetch_into(repo, root, &layer, staged)
    );
    let failure = verified
        .err()
        .or_else(|| a.as_ref().err().cloned())
        .or_else(|| b.as_ref().err().cloned());
    if let Some(e) = failure {
        if staged {
            for staging in [&a, &b].into_iter().flatten().flatten() {
                let _ = std::fs::remove_file(staging);
            }
        }
        return Err(e);
    }
    let (a, b) = (a?, b?);
    let mut downloaded = 0;
    for (digest, staging) in [(&config, a), (&layer, b)] {
        if let Some(staging) = staging {
            let dest = blob_path(root, digest);
            if staged {
                std::fs::rename(&staging, &dest)
                    .map_err(|e| crate::Error::io("renaming download to", &dest, &e))?;
            }
            downloaded += 1;
        }
    }
    Ok(Prefetched {
        config,
        layer,
        downloaded,
    })
}

/// Download `digest` into the cache under `root` unless it is there: the path written
/// (`None` when cached already); with `staged`, a hidden file beside its place.
async fn fetch_into(
    repo: &crate::registry::Repository,
    root: &Path,
    digest: &Digest,
    staged: bool,
) -> Result<Option<PathBuf>> {
    let dest = blob_path(root, digest);
    if dest.exists() {
        return Ok(None);
    }
    let dir = dest.parent().expect("blob paths have a parent");
    std::fs::create_dir_all(dir).map_err(|e| crate::Error::io("creating", dir, &e))?;
    let target = if staged {
        dir.join(format!(
            ".{}.unverified.{}",
            digest.hex(),
            std::process::id()
        ))
    } else {
        dest
    };
    repo.fetch_blob(digest, &target).await?;
    Ok(Some(target))
}

/// Prefetch many images, `concurrency` at a time; one result per reference, in order. With
/// `trusted` keys, an image is accepted only when signed by one of them ([`crate::sign`]);
/// a refused image leaves nothing in the cache.
pub async fn prefetch(
    client: &Client,
    references: &[Reference],
    root: &Path,
    concurrency: usize,
    trusted: Option<&[PublicKey]>,
) -> Vec<Result<Prefetched>> {
    let tasks: Vec<_> = references
        .iter()
        .map(|r| prefetch_one(client, r, root, trusted))
        .collect();
    stream::iter(tasks)
        .buffered(concurrency.max(1))
        .collect()
        .await
}
