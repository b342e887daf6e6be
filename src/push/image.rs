//! Image composition: the config and manifest of one item on its base image, exactly as
//! Spack writes them, and their upload (re-uploading blobs a registry lost meanwhile).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Map, Value};
use tokio::sync::Semaphore;

use super::layers::make_layer;
use super::{LayerInfo, LayerSource, PushItem, PushOptions};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::media_types;
use crate::registry::{to_compact_json, BlobSource, Repository};
use crate::sign::Signer;

/// Spack's `default_manifest()`.
pub fn default_manifest() -> Value {
    json!({
        "mediaType": media_types::OCI_MANIFEST,
        "schemaVersion": 2,
        "config": {"mediaType": media_types::OCI_CONFIG},
        "layers": [],
    })
}

/// Spack's `default_config(architecture, os)`.
pub fn default_config(architecture: &str, os: &str) -> Value {
    json!({
        "architecture": architecture,
        "os": os,
        "rootfs": {"type": "layers", "diff_ids": []},
        "config": {"Env": []},
    })
}

/// Spack's `_oci_retrieve_env_dict_from_config` as a list: `PATH` defaults to
/// `/bin:/usr/bin`, then the base image's entries.
pub fn base_env(config: &Value) -> Vec<String> {
    let mut env: Vec<(String, String)> = vec![("PATH".into(), "/bin:/usr/bin".into())];
    if let Some(entries) = config.pointer("/config/Env").and_then(Value::as_array) {
        for e in entries.iter().filter_map(Value::as_str) {
            let (k, v) = e.split_once('=').unwrap_or((e, ""));
            if let Some(slot) = env.iter_mut().find(|(key, _)| key == k) {
                slot.1 = v.to_string();
            } else {
                env.push((k.to_string(), v.to_string()));
            }
        }
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// What a push can upload again when a manifest PUT says a blob is missing (`BLOB_UNKNOWN`:
/// garbage collection or a concurrent delete between the layer upload and the manifest).
pub(super) struct Reupload<'a> {
    /// The layers this push made or found, by digest, with their sources.
    pub(super) sources: HashMap<Digest, &'a LayerSource>,
    pub(super) base_image: Option<&'a Repository>,
    pub(super) options: &'a PushOptions,
    pub(super) jobs: &'a Arc<Semaphore>,
}

/// Compose the config and manifest of one item (Spack's `_oci_put_manifest`) and upload both.
/// A manifest refused for a missing blob gets its missing blobs uploaded again (config,
/// layers re-made from their tarball or prefix, base layers copied again), then one more PUT.
///
/// With a `signer`, the signature's blobs go up beside the config (the manifest digest is
/// known once it is composed) and its manifest beside the image's: no round trip in series.
/// The item fails if its signature does.
pub(super) async fn put_image(
    target: &Repository,
    item: &PushItem,
    (base_manifest, base_config): (&Value, &Value),
    layers: &HashMap<String, LayerInfo>,
    reupload: &Reupload<'_>,
    signer: Option<&Signer>,
) -> Result<(Digest, u64)> {
    let (config_bytes, manifest_bytes, media_type) =
        compose_image(item, base_manifest, base_config, layers)?;
    let config = Bytes::from(config_bytes);
    let manifest_bytes = Bytes::from(manifest_bytes);
    let manifest_digest = Digest::of_bytes(&manifest_bytes);
    let tag = Some(item.tag.as_str());
    let prepare_signature = async {
        match signer {
            Some(s) => s.prepare(target, tag, &manifest_digest).await.map(Some),
            None => Ok(None),
        }
    };
    // No HEAD first: a config holds a timestamp, so it is new on every push (a HEAD would
    // cost a round trip per item for nothing).
    let config_digest = Digest::of_bytes(&config);
    let config_source = BlobSource::Bytes(config.clone());
    let (_, signature) = tokio::try_join!(
        target.upload_blob(&config_source, &config_digest, true),
        prepare_signature,
    )?;
    let put = async {
        match target
            .put_manifest(tag, manifest_bytes.clone(), &media_type)
            .await
        {
            Err(e) if crate::registry::is_missing_blob_error(&e) => {
                tracing::info!(error = %e, "blobs vanished before the manifest; uploading them again");
                let manifest: Value = serde_json::from_slice(&manifest_bytes)
                    .map_err(|j| Error::invalid_input(format!("composed manifest: {j}")))?;
                for (label, digest) in target.missing_blobs(&manifest).await? {
                    reupload
                        .blob(target, &config, base_manifest, (&label, &digest))
                        .await
                        .map_err(|r| r.unwrap_or_else(|why| e.clone().context(why)))?;
                }
                target
                    .put_manifest(tag, manifest_bytes.clone(), &media_type)
                    .await
            }
            r => r,
        }
    };
    let put_signature = async {
        match signature {
            Some(p) => p.put(target).await,
            None => Ok(()),
        }
    };
    let (pushed, signed) = tokio::join!(put, put_signature);
    let pushed = pushed?;
    signed.map_err(|e| e.context(format!("signing {}:{}", target.name(), item.tag)))?;
    Ok(pushed)
}

impl Reupload<'_> {
    /// Upload one missing blob again: the config, a layer this push made (made again from its
    /// source), or a base-image layer (copied again). `Err(Ok(e))` is an upload error,
    /// `Err(Err(why))` says why the blob cannot be uploaded again.
    async fn blob(
        &self,
        target: &Repository,
        config: &Bytes,
        base_manifest: &Value,
        (label, digest): (&str, &Digest),
    ) -> std::result::Result<(), std::result::Result<Error, String>> {
        if *digest == Digest::of_bytes(config) {
            let source = BlobSource::Bytes(config.clone());
            target
                .upload_blob(&source, digest, true)
                .await
                .map_err(Ok)?;
        } else if let Some(source) = self.sources.get(digest) {
            let made = make_layer(target, source, self.options, self.jobs)
                .await
                .map_err(Ok)?;
            if made.info.digest != *digest {
                return Err(Err(format!(
                    "{digest} ({label}) was made again but came out as {}",
                    made.info.digest
                )));
            }
        } else if let (Some(base), Some(size)) =
            (self.base_image, layer_size(base_manifest, digest))
        {
            target.copy_blob(base, digest, size).await.map_err(Ok)?;
        } else {
            return Err(Err(format!(
                "{digest} ({label}) cannot be uploaded again: this push did not make it"
            )));
        }
        Ok(())
    }
}

/// The size of layer `digest` of a manifest, if it has that layer.
fn layer_size(manifest: &Value, digest: &Digest) -> Option<u64> {
    manifest
        .get("layers")?
        .as_array()?
        .iter()
        .find(|l| l.get("digest").and_then(Value::as_str) == Some(&digest.to_string()))?
        .get("size")?
        .as_u64()
}

/// The image config of an item: the base config with the item's diff_ids, `Env` and extra
/// fields (Spack's `_oci_put_manifest`).
fn compose_config<S: std::hash::BuildHasher>(
    item: &PushItem,
    base_config: &Value,
    own: &[&LayerInfo],
    layers: &HashMap<String, LayerInfo, S>,
) -> Result<Value> {
    let mut config = base_config.clone();
    let obj = config
        .as_object_mut()
        .ok_or_else(|| Error::invalid_response("base image config is not a JSON object"))?;
    let rootfs = obj
        .entry("rootfs")
        .or_insert_with(|| json!({"type": "layers", "diff_ids": []}));
    let diff_ids = rootfs
        .as_object_mut()
        .ok_or_else(|| Error::invalid_response("base image config: rootfs is not an object"))?
        .entry("diff_ids")
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .ok_or_else(|| {
            Error::invalid_response("base image config: rootfs.diff_ids is not a list")
        })?;
    for l in own {
        diff_ids.push(Value::String(l.diff_id.to_string()));
    }
    let env = item.env.clone().unwrap_or_else(|| base_env(base_config));
    let cfg = obj.entry("config").or_insert_with(|| json!({}));
    let cfg = cfg
        .as_object_mut()
        .ok_or_else(|| Error::invalid_response("base image config: config is not an object"))?;
    cfg.insert(
        "Env".into(),
        Value::Array(env.into_iter().map(Value::String).collect()),
    );
    if let Some(extra) = &item.extra_config {
        let mut extra = extra.clone();
        if item.fill_checksum {
            let info = layers.get(&item.key).ok_or_else(|| {
                Error::invalid_input(format!(
                    "{}: fill_checksum needs the item's own layer",
                    item.tag
                ))
            })?;
            extra.insert(
                "binary_cache_checksum".into(),
                json!({"hash_algorithm": "sha256", "hash": info.digest.hex()}),
            );
            extra.insert("archive_size".into(), json!(info.size));
        }
        for (k, v) in extra {
            obj.insert(k, v);
        }
    }
    Ok(config)
}

/// The exact config and manifest bytes of an item, and the manifest media type.
pub fn compose_image<S: std::hash::BuildHasher>(
    item: &PushItem,
    base_manifest: &Value,
    base_config: &Value,
    layers: &HashMap<String, LayerInfo, S>,
) -> Result<(Vec<u8>, Vec<u8>, String)> {
    let keys: Vec<String> = if item.layers.is_empty() {
        vec![item.key.clone()]
    } else {
        item.layers.clone()
    };
    let own: Vec<&LayerInfo> = keys.iter().filter_map(|k| layers.get(k)).collect();
    let media_type = base_manifest
        .get("mediaType")
        .and_then(Value::as_str)
        .unwrap_or(media_types::OCI_MANIFEST)
        .to_string();
    let docker = media_type == media_types::DOCKER_MANIFEST;

    let config = compose_config(item, base_config, &own, layers)?;
    let config_bytes = to_compact_json(&config);
    let config_digest = Digest::of_bytes(&config_bytes);

    let config_media_type = base_manifest
        .pointer("/config/mediaType")
        .and_then(Value::as_str)
        .unwrap_or(media_types::OCI_CONFIG);
    let layer_type = if docker {
        media_types::DOCKER_LAYER_GZIP
    } else {
        media_types::OCI_LAYER_GZIP
    };
    let mut manifest_layers: Vec<Value> = base_manifest
        .get("layers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for l in &own {
        manifest_layers
            .push(json!({"mediaType": layer_type, "digest": l.digest.to_string(), "size": l.size}));
    }
    let mut manifest = Map::new();
    manifest.insert("mediaType".into(), Value::String(media_type.clone()));
    manifest.insert("schemaVersion".into(), json!(2));
    manifest.insert(
        "config".into(),
        json!({"mediaType": config_media_type, "digest": config_digest.to_string(), "size": config_bytes.len()}),
    );
    manifest.insert("layers".into(), Value::Array(manifest_layers));
    if !docker {
        if let Some(a) = item.annotations.as_ref().filter(|a| !a.is_empty()) {
            manifest.insert("annotations".into(), Value::Object(a.clone()));
        }
    }
    Ok((
        config_bytes,
        to_compact_json(&Value::Object(manifest)),
        media_type,
    ))
}
