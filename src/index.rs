//! Build-cache index: gather the image configs of every spec tag, and upload `index.spack`.
//!
//! Spack's Python turns the configs into its database (`BuildCacheDatabase`); the engine does
//! the network part: list tags once, fetch manifests and configs with high concurrency, and
//! upload the resulting `index.json` exactly as Spack's `_oci_update_index` does.

pub mod db;
pub mod node;

use std::collections::HashMap;

use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};

use crate::digest::Digest;
use crate::error::{ErrorKind, Result};
use crate::media_types;
use crate::reference::{tag_is_spec, Reference, INDEX_TAG};
use crate::registry::{to_compact_json, BlobSource};
use crate::transport::Client;

/// Default concurrency of config fetches.
pub const DEFAULT_INDEX_CONCURRENCY: usize = 64;

/// One spec tag's config.
#[derive(Clone, Debug)]
pub struct SpecConfig {
    pub tag: String,
    /// Digest of the image manifest the config came from.
    pub manifest_digest: Digest,
    /// The exact config bytes.
    pub config: Bytes,
}

/// A tag left out of the index, and why.
#[derive(Clone, Debug)]
pub struct SkippedTag {
    pub tag: String,
    pub reason: String,
}

#[derive(Clone, Debug, Default)]
pub struct IndexConfigs {
    /// Configs that carry a `"spec"` key, in tag order.
    pub configs: Vec<SpecConfig>,
    /// Tags whose manifest or config vanished or was unusable.
    pub skipped: Vec<SkippedTag>,
    /// How many spec tags were listed.
    pub spec_tags: usize,
    /// How many configs were reused from `previous` rather than fetched.
    pub reused: usize,
    /// The tags whose configs were reused (their manifest digest equals `previous`'s).
    pub reused_tags: Vec<String>,
}

/// List the tags of `reference`'s repository and fetch the config of every spec tag
/// (`*.spack` except `index.spack`) with `concurrency` requests in flight. Tags whose
/// manifest or config vanished between listing and fetching are skipped, not fatal.
///
/// `previous` maps tag → manifest digest for configs the caller already has (incremental
/// update): those tags' manifests are still fetched (a tag may have moved), but configs are
/// only fetched for tags that are new or changed.
#[allow(clippy::implicit_hasher)]
pub async fn index_configs(
    client: &Client,
    reference: &Reference,
    concurrency: usize,
    previous: Option<&HashMap<String, Digest>>,
) -> Result<IndexConfigs> {
    let repo = &client.repository(reference);
    let tags: Vec<String> = repo
        .list_tags()
        .await?
        .into_iter()
        .filter(|t| tag_is_spec(t))
        .collect();
    let spec_tags = tags.len();
    let tasks = tags.into_iter().map(|tag| async move {
        let manifest = match repo.get_manifest(&tag).await {
            Ok(m) if m.is_index() => {
                return Err(SkippedTag {
                    tag,
                    reason: "is an image index, not a Spack image".into(),
                })
            }
            Ok(m) => m,
            Err(e) => {
                return Err(SkippedTag {
                    tag,
                    reason: e.to_string(),
                })
            }
        };
        if previous.and_then(|p| p.get(&tag)) == Some(&manifest.digest) {
            return Ok((tag, manifest.digest, None));
        }
        let desc = manifest.config().map_err(|e| SkippedTag {
            tag: tag.clone(),
            reason: e.to_string(),
        })?;
        match repo
            .fetch_blob_bytes(&desc.digest, crate::registry::MAX_MANIFEST_SIZE * 16)
            .await
        {
            Ok(b) => Ok((tag, manifest.digest, Some(b))),
            Err(e) => Err(SkippedTag {
                tag,
                reason: e.to_string(),
            }),
        }
    });
    let results: Vec<_> = stream::iter(tasks.collect::<Vec<_>>())
        .buffered(concurrency.max(1))
        .collect()
        .await;
    let mut out = IndexConfigs {
        spec_tags,
        ..IndexConfigs::default()
    };
    for r in results {
        match r {
            Ok((tag, _, None)) => {
                out.reused += 1;
                out.reused_tags.push(tag);
            }
            Ok((tag, manifest_digest, Some(config))) => {
                let has_spec = serde_json::from_slice::<Value>(&config)
                    .ok()
                    .and_then(|v| v.as_object().map(|o| o.contains_key("spec")))
                    .unwrap_or(false);
                if has_spec {
                    out.configs.push(SpecConfig {
                        tag,
                        manifest_digest,
                        config,
                    });
                } else {
                    out.skipped.push(SkippedTag {
                        tag,
                        reason: "config has no \"spec\" key".into(),
                    });
                }
            }
            Err(s) => {
                tracing::warn!(tag = %s.tag, reason = %s.reason, "skipping tag");
                out.skipped.push(s);
            }
        }
    }
    Ok(out)
}

/// Upload `index_json` as Spack does: the index blob, a `{}` config blob, and an OCI manifest
/// with the index as its only layer, tagged `index.spack`. Returns the manifest digest.
pub async fn upload_index(
    client: &Client,
    reference: &Reference,
    index_json: Bytes,
) -> Result<Digest> {
    let repo = client.repository(reference);
    let index_digest = Digest::of_bytes(&index_json);
    let index_size = index_json.len();
    let empty = Bytes::from_static(b"{}");
    let empty_digest = Digest::of_bytes(&empty);
    let (index_src, empty_src) = (BlobSource::Bytes(index_json), BlobSource::Bytes(empty));
    let (a, b) = tokio::join!(
        repo.upload_blob(&index_src, &index_digest, false),
        repo.upload_blob(&empty_src, &empty_digest, false),
    );
    a?;
    b?;
    let manifest = json!({
        "mediaType": media_types::OCI_MANIFEST,
        "schemaVersion": 2,
        "config": {
            "mediaType": media_types::OCI_CONFIG,
            "digest": empty_digest.to_string(),
            "size": 2,
        },
        "layers": [{
            "mediaType": media_types::OCI_LAYER_GZIP,
            "digest": index_digest.to_string(),
            "size": index_size,
        }],
    });
    let (digest, _) = repo
        .put_manifest(
            Some(INDEX_TAG),
            Bytes::from(to_compact_json(&manifest)),
            media_types::OCI_MANIFEST,
        )
        .await?;
    Ok(digest)
}

/// Fetch the current index: its layer digest and bytes (Spack's `OCIIndexFetcher`). `None`
/// when the repository has no `index.spack`; no bytes when the digest equals `known` (the
/// index the caller has cached is fresh).
pub async fn fetch_index(
    client: &Client,
    reference: &Reference,
    known: Option<&Digest>,
) -> Result<Option<(Digest, Option<Bytes>)>> {
    let repo = client.repository(reference);
    let target = reference.with_tag(INDEX_TAG);
    let manifest = match repo.get_manifest(INDEX_TAG).await {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let layer = manifest.layers()?.into_iter().next().ok_or_else(|| {
        crate::Error::invalid_response(format!("{target}: index manifest has no layers"))
    })?;
    if known == Some(&layer.digest) {
        return Ok(Some((layer.digest, None)));
    }
    let bytes = repo.fetch_blob_bytes(&layer.digest, 1 << 30).await?;
    Ok(Some((layer.digest, Some(bytes))))
}
