//! Blob copies between repositories: cross-repository mounts, streamed copies, and the
//! layers of a base image.

use futures_util::stream::{self, StreamExt};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::Method;
use serde_json::Value;

use super::uploads::with_digest_param;
use super::Repository;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference::Reference;
use crate::transport::error_from_response;

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
                        let _ = self.client.send_no_retry(&del).await;
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
        let (src, dst) = (&src.reference, &self.reference);
        if src.domain == dst.domain
            && src.scheme == dst.scheme
            && self.mount_blob(digest, src).await?
        {
            return Ok(());
        }
        let what = format!(
            "copying blob {digest} from {} to {}",
            src.repository(),
            dst.repository()
        );
        let mut retrier = self.client.retrier();
        loop {
            let result = async {
                let get = super::request(src, Method::GET, src.blob_url(digest), false, &what);
                let resp = self.client.send_with(&get, &mut retrier).await?;
                if resp.status().as_u16() != 200 {
                    return Err(error_from_response(resp, &what).await);
                }
                let (location, _) = self.start_upload_with(&what, &mut retrier).await?;
                let put = self
                    .request(
                        Method::PUT,
                        with_digest_param(location, digest).to_string(),
                        true,
                        &what,
                    )
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, &size.to_string());
                let body = reqwest::Body::wrap_stream(resp.inner.bytes_stream());
                let resp = self.client.send_stream(&put, body).await?;
                if resp.status().as_u16() != 201 {
                    return Err(error_from_response(resp, &what).await);
                }
                Ok(())
            }
            .await;
            match result {
                Ok(()) => return Ok(()),
                Err(e) => retrier.wait(e, &what).await?,
            }
        }
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
