//! Build-cache index: gather the image configs of every spec tag, and upload `index.spack`.
//!
//! Spack's Python turns the configs into its database (`BuildCacheDatabase`); the engine does
//! the network part: list tags once, fetch manifests and configs with high concurrency, and
//! upload the resulting `index.json` exactly as Spack's `_oci_update_index` does.

pub mod db;
pub mod node;
pub mod state;
pub mod update;

use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use serde_json::Value;

use crate::digest::Digest;
use crate::error::{ErrorKind, Result};
use crate::reference::{tag_is_spec, Reference, INDEX_TAG};

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
}

/// List the tags of `reference`'s repository and fetch the config of every spec tag
/// (`*.spack` except `index.spack`) with `concurrency` requests in flight. Tags whose
/// manifest or config vanished between listing and fetching are skipped, not fatal.
/// ([`update::rebuild`] does the whole update, reusing what the previous index had.)
pub async fn index_configs(
    client: &Client,
    reference: &Reference,
    concurrency: usize,
) -> Result<IndexConfigs> {
    let repo = &client.repository(reference);
    let tags: Vec<String> = repo
        .list_tags()
        .await?
        .into_iter()
        .filter(|t| tag_is_spec(t))
        .collect();
    let mut out = IndexConfigs {
        spec_tags: tags.len(),
        ..IndexConfigs::default()
    };
    let results: Vec<_> = stream::iter(tags)
        .map(|tag| update::fetch_tag(repo, tag))
        .buffered(concurrency.max(1))
        .collect()
        .await;
    for r in results {
        let has_spec = |config: &[u8]| {
            serde_json::from_slice::<Value>(config)
                .ok()
                .is_some_and(|v| v.as_object().is_some_and(|o| o.contains_key("spec")))
        };
        match r {
            Ok(f) if has_spec(&f.config) => out.configs.push(SpecConfig {
                tag: f.tag,
                manifest_digest: f.manifest,
                config: f.config,
            }),
            Ok(f) => out.skipped.push(SkippedTag {
                tag: f.tag,
                reason: "config has no \"spec\" key".into(),
            }),
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
    let image = update::IndexImage::new(index_json, None);
    image.upload_blobs(&repo, None).await?;
    update::put_index_manifest(&repo, image.manifest, None).await
}

/// Fetch the current index: its layer digest and bytes (Spack's `OCIIndexFetcher`). `None`
/// when the repository has no `index.spack`; no bytes when the digest equals `known` (the
/// index the caller has cached is fresh). With `trusted` keys, the index image must be signed
/// by one of them ([`crate::sign`]) before its layer is fetched or reported fresh.
pub async fn fetch_index(
    client: &Client,
    reference: &Reference,
    known: Option<&Digest>,
    trusted: Option<&[crate::sign::PublicKey]>,
) -> Result<Option<(Digest, Option<Bytes>)>> {
    let repo = client.repository(reference);
    let target = reference.with_tag(INDEX_TAG);
    let manifest = match repo.get_manifest(INDEX_TAG).await {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if let Some(keys) = trusted {
        crate::sign::verify_manifest(&repo, &target, &manifest.digest, keys).await?;
    }
    let layer = manifest.layers()?.into_iter().next().ok_or_else(|| {
        crate::Error::invalid_response(format!("{target}: index manifest has no layers"))
    })?;
    if known == Some(&layer.digest) {
        return Ok(Some((layer.digest, None)));
    }
    let bytes = repo.fetch_blob_bytes(&layer.digest, 1 << 30).await?;
    Ok(Some((layer.digest, Some(bytes))))
}
