//! The signature image, as cosign lays it out: tagged `sha256-<manifest hex>.sig` in the
//! signed image's repository, one layer per signature (the payload blob, media type
//! [`SIGNATURE_LAYER`], the base64 DER signature in the [`SIGNATURE_ANNOTATION`] annotation).
//! Signing again with another key adds a layer; the same signature is not added twice.
//!
//! The config blob is the same for every signature image, so a [`Signer`] uploads it once
//! per push; the payload blob goes up in one session without a HEAD first.

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{json, Value};

use super::keys::PrivateKey;
use super::payload::Payload;
use crate::digest::Digest;
use crate::error::{ErrorKind, Result};
use crate::media_types;
use crate::reference::Reference;
use crate::registry::{to_compact_json, BlobSource, Repository};
use crate::transport::Client;

pub const SIGNATURE_LAYER: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

/// The config of every signature image (cosign's empty image config).
const SIGNATURE_CONFIG: &[u8] = br#"{"architecture":"","config":{},"created":"0001-01-01T00:00:00Z","history":[{"created":"0001-01-01T00:00:00Z"}],"os":"","rootfs":{"type":"layers","diff_ids":[]}}"#;

/// The tag of the signature image of `digest`: `sha256-<hex>.sig`.
pub fn signature_tag(digest: &Digest) -> String {
    format!("{}-{}.sig", digest.algorithm(), digest.hex())
}

/// Signs images with one key; the config blob is uploaded at most once per signer.
pub struct Signer {
    key: PrivateKey,
    config_uploaded: tokio::sync::OnceCell<()>,
    /// The tags of the repository, when a push listed them: a signature tag not
    /// among them is not fetched before it is written (saves a GET per image).
    listed: std::sync::OnceLock<std::collections::HashSet<String>>,
}

/// A signature whose blobs are uploaded; only its manifest remains to be PUT.
pub struct Prepared {
    tag: String,
    manifest: Option<Bytes>,
}

impl Signer {
    pub fn new(key: PrivateKey) -> Self {
        Self {
            key,
            config_uploaded: tokio::sync::OnceCell::new(),
            listed: std::sync::OnceLock::new(),
        }
    }

    /// The repository's tags as just listed (see [`Signer::prepare`]).
    pub fn assume_listed(&self, tags: std::collections::HashSet<String>) {
        let _ = self.listed.set(tags);
    }

    /// Upload the signature config now (once per signer: a HEAD, and the upload if it is
    /// missing), beside other work, so that the first signatures do not wait for it in
    /// series. An error is left for [`Signer::prepare`] to meet again and report.
    pub async fn preload_config(&self, repo: &Repository) {
        if let Err(e) = self.upload_config(repo).await {
            tracing::debug!(error = %e, "signature config not uploaded yet");
        }
    }

    async fn upload_config(&self, repo: &Repository) -> Result<()> {
        self.config_uploaded
            .get_or_try_init(|| async {
                let config = Bytes::from_static(SIGNATURE_CONFIG);
                let digest = Digest::of_bytes(&config);
                // No HEAD where the listing shows no signature yet: it would find nothing.
                let surely_new = self.listed.get().is_some_and(|l| {
                    !l.iter()
                        .any(|t| t.rsplit_once('.').is_some_and(|(_, e)| e == "sig"))
                });
                repo.upload_blob(&BlobSource::Bytes(config), &digest, surely_new)
                    .await
                    .map(drop)
            })
            .await
            .copied()
    }

    /// Upload the blobs of a signature of the manifest `digest` pushed under `tag` (the
    /// payload, the config once) and read the signature image that exists already (unless
    /// the push's tag listing says there is none), all concurrently; the manifest is PUT by [`Prepared::put`]. Needs only the digest, so it
    /// runs beside the image's own uploads.
    pub async fn prepare(
        &self,
        repo: &Repository,
        tag: Option<&str>,
        digest: &Digest,
    ) -> Result<Prepared> {
        let payload = Bytes::from(
            Payload {
                docker_reference: repo.name(),
                digest: digest.clone(),
                tag: tag.map(str::to_string),
            }
            .to_bytes(),
        );
        let signature = base64::engine::general_purpose::STANDARD.encode(self.key.sign(&payload));
        let payload_digest = Digest::of_bytes(&payload);
        let sig_tag = signature_tag(digest);
        let source = BlobSource::Bytes(payload.clone());
        let listed_absent = self.listed.get().is_some_and(|l| !l.contains(&sig_tag));
        let existing = async {
            if listed_absent {
                Ok(None)
            } else {
                existing_signatures(repo, &sig_tag).await
            }
        };
        let (existing, (), _) = tokio::try_join!(
            existing,
            self.upload_config(repo),
            repo.upload_blob(&source, &payload_digest, true),
        )?;
        let layer = json!({
            "mediaType": SIGNATURE_LAYER,
            "size": payload.len(),
            "digest": payload_digest.to_string(),
            "annotations": {SIGNATURE_ANNOTATION: signature},
        });
        let manifest = with_layer(existing, layer);
        Ok(Prepared {
            tag: sig_tag,
            manifest: manifest.map(|m| Bytes::from(to_compact_json(&m))),
        })
    }

    /// Sign the manifest `digest` pushed under `tag`: prepare, then PUT.
    pub async fn sign(&self, repo: &Repository, tag: Option<&str>, digest: &Digest) -> Result<()> {
        self.prepare(repo, tag, digest).await?.put(repo).await
    }
}

impl Prepared {
    /// PUT the signature image (nothing when the same signature was there already).
    pub async fn put(self, repo: &Repository) -> Result<()> {
        if let Some(manifest) = self.manifest {
            repo.put_manifest(Some(&self.tag), manifest, media_types::OCI_MANIFEST)
                .await?;
        }
        Ok(())
    }
}

/// The signature image under `sig_tag`, or `None` when there is none.
async fn existing_signatures(repo: &Repository, sig_tag: &str) -> Result<Option<Value>> {
    match repo.get_manifest(sig_tag).await {
        Ok(m) => Ok(Some(m.json)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The signature manifest with `layer` added to `existing`'s layers; `None` when `existing`
/// has that very layer (same payload, same signature) already.
fn with_layer(existing: Option<Value>, layer: Value) -> Option<Value> {
    let mut layers: Vec<Value> = existing
        .as_ref()
        .and_then(|m| m.get("layers"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if layers.iter().any(|l| {
        l.get("digest") == layer.get("digest")
            && l.pointer("/annotations")
                .and_then(|a| a.get(SIGNATURE_ANNOTATION))
                == layer
                    .pointer("/annotations")
                    .and_then(|a| a.get(SIGNATURE_ANNOTATION))
    }) {
        return None;
    }
    layers.push(layer);
    Some(json!({
        "schemaVersion": 2,
        "mediaType": media_types::OCI_MANIFEST,
        "config": {
            "mediaType": media_types::OCI_CONFIG,
            "size": SIGNATURE_CONFIG.len(),
            "digest": Digest::of_bytes(SIGNATURE_CONFIG).to_string(),
        },
        "layers": layers,
    }))
}

/// Sign the image `reference` (a tag, or a digest) with `key`. Returns the manifest digest
/// that was signed.
pub async fn sign(client: &Client, reference: &Reference, key: PrivateKey) -> Result<Digest> {
    let repo = client.repository(reference);
    let manifest = repo.get_manifest(&reference.tag_or_digest()).await?;
    let tag = reference.digest.is_none().then_some(reference.tag.as_str());
    Signer::new(key).sign(&repo, tag, &manifest.digest).await?;
    Ok(manifest.digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_accumulate_without_duplicates() {
        let layer =
            |sig: &str| json!({"digest": "sha256:aa", "annotations": {SIGNATURE_ANNOTATION: sig}});
        let one = with_layer(None, layer("A")).unwrap();
        let two = with_layer(Some(one.clone()), layer("B")).unwrap();
        assert_eq!(two["layers"].as_array().unwrap().len(), 2);
        assert!(with_layer(Some(two), layer("A")).is_none());
        assert_eq!(
            signature_tag(&Digest::of_bytes(b"")),
            "sha256-e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855.sig"
        );
    }
}
