//! Manifests and indexes: fetch (with platform selection and digest pinning), upload (naming
//! the blobs a refused manifest lacks), and image configs.

use bytes::Bytes;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::Method;
use serde_json::Value;

use super::wire::{
    is_missing_blob_error, referenced_blobs, Descriptor, ImageManifest, LayerInfo, Manifest,
    MAX_CONFIG_SIZE, MAX_MANIFEST_SIZE,
};
use super::Repository;
use crate::digest::Digest;
use crate::error::{Error, ErrorKind, Result};
use crate::media_types;
use crate::transport::{error_from_response, Body};

impl Repository {
    /// GET a manifest or index by tag or digest (`sha256:…`), verified against the digest
    /// when it is one.
    pub async fn get_manifest(&self, tag_or_digest: &str) -> Result<Manifest> {
        let reference = &self.target(tag_or_digest)?;
        let what = format!("fetching manifest {reference}");
        let req = self
            .request(Method::GET, reference.manifest_url(), false, &what)
            .header(ACCEPT, &media_types::accept_all());
        let url = req.url.clone();
        // Body problems name the URL: a proxy in the way is the usual cause.
        let at = format!("{what} from {url}");
        let mut retrier = self.client.retrier();
        let (content_type, bytes) = loop {
            let resp = self.client.send_with(&req, &mut retrier).await?;
            if resp.status().as_u16() != 200 {
                return Err(error_from_response(resp, &what).await);
            }
            let content_type = resp
                .header("content-type")
                .map(|c| c.split(';').next().unwrap_or("").trim().to_string())
                .unwrap_or_default();
            match resp.bytes_limited(MAX_MANIFEST_SIZE, &at).await {
                Ok(bytes) => break (content_type, bytes),
                // A dropped connection: fetch again; an oversized one is final.
                Err(e) => retrier.wait(e, &what).await?,
            }
        };
        let digest = Digest::of_bytes(&bytes);
        if let Some(expected) = &reference.digest {
            if *expected != digest {
                return Err(Error::new(
                    ErrorKind::DigestMismatch,
                    format!("{at}: expected {expected}, received {digest}"),
                ));
            }
        }
        let json: Value = serde_json::from_slice(&bytes).map_err(|e| {
            let hint = if content_type == "text/html" || bytes.trim_ascii_start().starts_with(b"<")
            {
                " (received an HTML page: a proxy or login page in the way?)"
            } else {
                ""
            };
            Error::invalid_response(format!("{at}: the manifest is not JSON: {e}{hint}"))
        })?;
        let body_type = json.get("mediaType").and_then(Value::as_str).unwrap_or("");
        let media_type =
            if media_types::is_manifest(&content_type) || media_types::is_index(&content_type) {
                content_type
            } else if media_types::is_manifest(body_type) || media_types::is_index(body_type) {
                body_type.to_string()
            } else {
                return Err(Error::invalid_response(format!(
                    "{at}: not a manifest or index: media type {body_type:?} (Content-Type \
                     {content_type:?})"
                )));
            };
        Ok(Manifest {
            media_type,
            digest,
            bytes,
            json,
            url,
        })
    }

    /// PUT a manifest (exact bytes) under `tag`, or under its own digest when `tag` is
    /// `None`. Returns the digest and size.
    pub async fn put_manifest(
        &self,
        tag: Option<&str>,
        bytes: Bytes,
        media_type: &str,
    ) -> Result<(Digest, u64)> {
        let digest = Digest::of_bytes(&bytes);
        let target = tag.map_or_else(|| digest.to_string(), str::to_string);
        let what = format!("uploading manifest {}:{target}", self.name());
        if bytes.len() > MAX_MANIFEST_SIZE {
            return Err(Error::invalid_input(format!(
                "{what}: manifest of {} bytes exceeds {MAX_MANIFEST_SIZE}",
                bytes.len()
            )));
        }
        let size = bytes.len() as u64;
        let req = self
            .request(
                Method::PUT,
                self.reference.manifest_url_for(&target),
                true,
                &what,
            )
            .header(CONTENT_TYPE, media_type)
            .body(Body::Bytes(bytes));
        let resp = self.client.send(&req).await?;
        if !resp.status().is_success() {
            let err = error_from_response(resp, &what).await;
            if is_missing_blob_error(&err) {
                return Err(self.name_missing_blobs(&req, err).await);
            }
            return Err(err);
        }
        Ok((digest, size))
    }

    /// The error of a manifest PUT refused for a missing blob, saying which blobs the
    /// repository lacks (checked with HEAD; the registry's own detail otherwise).
    async fn name_missing_blobs(&self, req: &crate::transport::Request, err: Error) -> Error {
        let json = match &req.body {
            Body::Bytes(b) => serde_json::from_slice::<Value>(b).ok(),
            _ => None,
        };
        let missing = match json {
            Some(json) => self.missing_blobs(&json).await.unwrap_or_default(),
            None => Vec::new(),
        };
        let named = if missing.is_empty() {
            err.codes()
                .iter()
                .filter(|c| c.code.contains("BLOB_UNKNOWN"))
                .map(|c| c.message.clone())
                .collect::<Vec<_>>()
                .join(", ")
        } else {
            missing
                .iter()
                .map(|(label, d)| format!("{d} ({label})"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        err.context(format!(
            "the registry lacks blobs the manifest refers to: {named}"
        ))
    }

    /// The blobs `manifest` refers to that this repository lacks (HEAD each, a few at a
    /// time), labelled as by [`referenced_blobs`].
    pub async fn missing_blobs(&self, manifest: &Value) -> Result<Vec<(String, Digest)>> {
        use futures_util::stream::{self, StreamExt, TryStreamExt};
        let blobs = referenced_blobs(manifest);
        let found: Vec<Option<(String, Digest)>> =
            stream::iter(blobs.into_iter().map(|(label, d)| async move {
                let exists = self.blob_exists(&d).await?;
                Ok::<_, Error>((!exists).then_some((label, d)))
            }))
            .buffered(8)
            .try_collect()
            .await?;
        Ok(found.into_iter().flatten().collect())
    }

    /// Spack's `get_manifest_and_config`: fetch the manifest, descending into an index to the
    /// entry for `architecture` (at most `recurse` levels), then fetch and verify its config.
    pub async fn get_manifest_and_config(
        &self,
        tag_or_digest: &str,
        architecture: &str,
        recurse: u32,
    ) -> Result<ImageManifest> {
        let mut reference = self.target(tag_or_digest)?;
        let mut depth = recurse;
        let manifest = loop {
            let m = self.get_manifest(&reference.tag_or_digest()).await?;
            if !m.is_index() {
                break m;
            }
            if depth == 0 {
                return Err(Error::invalid_response(format!(
                    "{reference}: maximum recursion depth reached while fetching an image index"
                )));
            }
            depth -= 1;
            let entries = m
                .json
                .get("manifests")
                .and_then(Value::as_array)
                .ok_or_else(|| {
                    Error::invalid_response(format!("{reference}: index has no manifests list"))
                })?;
            let entry = entries
                .iter()
                .find(|e| {
                    e.pointer("/platform/architecture").and_then(Value::as_str)
                        == Some(architecture)
                })
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::NotFound,
                        format!("{reference}: the image index has no entry for {architecture}"),
                    )
                })?;
            let d = Descriptor::from_json(entry, &format!("{reference} index entry"))?;
            reference = reference.with_digest(d.digest);
        };
        let config_desc = manifest.config()?;
        let config_bytes = self
            .fetch_blob_bytes(&config_desc.digest, MAX_CONFIG_SIZE)
            .await?;
        let config: Value = serde_json::from_slice(&config_bytes).map_err(|e| {
            Error::invalid_response(format!(
                "{reference}: config {} is not JSON: {e}",
                config_desc.digest
            ))
        })?;
        Ok(ImageManifest {
            manifest,
            config,
            config_bytes,
        })
    }

    /// Spack's `_oci_get_blob_info`: the last layer of the image tagged `tag` and its
    /// diff_id.
    pub async fn blob_info(&self, tag: &str) -> Result<LayerInfo> {
        let reference = self.reference.with_tag(tag);
        let im = self.get_manifest_and_config(tag, "amd64", 3).await?;
        let layer = im.manifest.layers()?.pop().ok_or_else(|| {
            Error::invalid_response(format!("{reference}: manifest has no layers"))
        })?;
        let diff_id = im
            .config
            .pointer("/rootfs/diff_ids")
            .and_then(Value::as_array)
            .and_then(|a| a.last())
            .and_then(Value::as_str)
            .ok_or_else(|| {
                Error::invalid_response(format!("{reference}: config has no rootfs.diff_ids"))
            })?;
        Ok(LayerInfo {
            digest: layer.digest,
            diff_id: Digest::parse(diff_id)?,
            size: layer.size,
        })
    }
}
