//! Blob copies between repositories: cross-repository mounts, streamed copies, and the
//! layers of a base image.

use futures_util::future::BoxFuture;
use futures_util::stream::{self, StreamExt};
use futures_util::FutureExt;
use reqwest::Method;
use serde_json::Value;
use std::sync::Arc;

use super::session::Mode;
use super::uploads::{Opened, UploadSource};
use super::Repository;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::progress::ByteProgress;
use crate::reference::Reference;
use crate::transport::{error_from_response, transport_error};

/// A blob of another repository as an upload source: its download, from any offset.
struct RemoteBlob<'a> {
    src: &'a Repository,
    digest: Digest,
    size: u64,
    progress: Option<Arc<ByteProgress>>,
}

/// How a blob reached the destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobCopy {
    /// A cross-repository mount: no bytes moved.
    Mounted,
    /// Downloaded from the source and uploaded as it arrived.
    Streamed,
}

impl UploadSource for RemoteBlob<'_> {
    fn size(&self) -> Option<u64> {
        Some(self.size)
    }

    fn digest(&self) -> Option<Digest> {
        Some(self.digest.clone())
    }

    fn open(&self, offset: u64) -> BoxFuture<'_, Result<Opened>> {
        async move {
            let what = format!("fetching blob {} from {}", self.digest, self.src.name());
            let url = self.src.reference.blob_url(&self.digest);
            let req = self.src.request(Method::GET, url, false, &what);
            let resp = self.src.client.send(&req).await?;
            if !resp.status().is_success() {
                return Err(error_from_response(resp, &what).await);
            }
            // Skip what the destination holds already (the registry checks the digest).
            let mut skip = offset;
            let progress = self.progress.clone();
            let stream = resp.inner.bytes_stream().filter_map(move |chunk| {
                let out = match chunk {
                    Ok(mut b) => {
                        let n = (skip.min(b.len() as u64)) as usize;
                        skip -= n as u64;
                        let rest = b.split_off(n);
                        if let Some(p) = &progress {
                            p.add(rest.len() as u64);
                        }
                        (!rest.is_empty()).then_some(Ok(rest))
                    }
                    Err(e) => Some(Err(std::io::Error::other(transport_error(&what, &e)))),
                };
                futures_util::future::ready(out)
            });
            let digest = self.digest.clone();
            Ok(Opened {
                stream: stream.boxed(),
                finish: futures_util::future::ready(Ok(digest)).boxed(),
            })
        }
        .boxed()
    }
}

impl Repository {
    /// Try a cross-repository mount of `digest` from `from` into this repository (same
    /// registry). Returns `true` if the registry mounted it.
    pub async fn mount_blob(&self, digest: &Digest, from: &Reference) -> Result<bool> {
        let what = format!(
            "mounting blob {digest} from {} into {}",
            from.repository(),
            self.name()
        );
        let mut url = url::Url::parse(&self.reference.uploads_url())
            .map_err(|e| Error::invalid_reference(format!("{}: {e}", self.reference)))?;
        url.query_pairs_mut()
            .append_pair("mount", &digest.to_string())
            .append_pair("from", &from.name);
        let mut req = self.request(Method::POST, url.to_string(), true, &what);
        req.scopes
            .push(crate::transport::auth::Scope::pull(&from.name));
        let resp = self.client.send(&req).await?;
        match resp.status().as_u16() {
            201 => Ok(true),
            202 => {
                // The registry opened an ordinary upload session instead: close it.
                if let Some(loc) = resp.header("location").map(str::to_string) {
                    drop(resp);
                    if let Ok(u) = self.resolve(&loc) {
                        let del = self.request(Method::DELETE, u.to_string(), true, &what);
                        let _ = self.client.send(&del).await;
                    }
                }
                Ok(false)
            }
            _ => Err(error_from_response(resp, &what).await),
        }
    }

    /// Copy blob `digest` (of `size` bytes) from `src` into this repository: mount when both
    /// are on one registry, else stream the download straight into a monolithic upload (the
    /// registry verifies the digest).
    pub async fn copy_blob(&self, src: &Repository, digest: &Digest, size: u64) -> Result<()> {
        self.copy_blob_counted(src, digest, size, None)
            .await
            .map(drop)
    }

    /// [`Repository::copy_blob`], adding the bytes moved (or mounted) to `progress`.
    pub async fn copy_blob_counted(
        &self,
        src: &Repository,
        digest: &Digest,
        size: u64,
        progress: Option<&Arc<ByteProgress>>,
    ) -> Result<BlobCopy> {
        let (from, to) = (&src.reference, &self.reference);
        if from.domain == to.domain
            && from.scheme == to.scheme
            && self.mount_blob(digest, from).await?
        {
            if let Some(p) = progress {
                p.add(size);
            }
            return Ok(BlobCopy::Mounted);
        }
        let remote = RemoteBlob {
            src,
            digest: digest.clone(),
            size,
            progress: progress.cloned(),
        };
        self.upload(&remote, Mode::Monolithic)
            .await
            .map(|_| BlobCopy::Streamed)
            .map_err(|e| {
                e.context(format!(
                    "copying blob {digest} from {}",
                    src.reference.repository()
                ))
            })
    }

    /// Copy the layers of the image `src` (for `architecture`) that this repository lacks;
    /// return the base manifest and config (Spack's `copy_missing_layers`).
    pub async fn copy_missing_layers(
        &self,
        src: &Repository,
        architecture: &str,
    ) -> Result<(Value, Value)> {
        let im = src
            .get_manifest_and_config(&src.reference.tag_or_digest(), architecture, 3)
            .await?;
        let layers = im.manifest.layers()?;
        let tasks = layers.iter().map(|l| async move {
            if self.blob_exists(&l.digest).await? {
                return Ok(());
            }
            self.copy_blob(src, &l.digest, l.size).await
        });
        let results: Vec<Result<()>> = stream::iter(tasks.collect::<Vec<_>>())
            .buffer_unordered(8)
            .collect()
            .await;
        results.into_iter().collect::<Result<Vec<()>>>()?;
        Ok((im.manifest.json, im.config))
    }
}
