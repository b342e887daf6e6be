//! Verification: an image is accepted only when its signature image holds a signature by one
//! of the trusted keys over a payload naming this repository, this manifest digest and (for
//! a tag) this tag. Everything read from the signature image is size-capped; every refusal
//! is a [`ErrorKind::Signature`] error naming the image and the reason.
//!
//! Our own payloads are made again locally: a layer whose digest equals the expected
//! payload's is checked without downloading it (no extra round trip); other layers (cosign's
//! own signatures, hostile ones) are downloaded, capped at [`MAX_PAYLOAD_SIZE`].

use base64::Engine as _;
use serde_json::Value;

use super::image::{signature_tag, SIGNATURE_ANNOTATION, SIGNATURE_LAYER};
use super::keys::PublicKey;
use super::payload::{Payload, MAX_PAYLOAD_SIZE};
use crate::digest::Digest;
use crate::error::{Error, ErrorKind, Result};
use crate::reference::Reference;
use crate::registry::{Descriptor, Repository};
use crate::transport::Client;

/// Signature annotations longer than this are refused (a DER P-256 signature is ≤ 72 bytes).
const MAX_SIGNATURE_LEN: usize = 1024;
/// Signature images with more layers than this are refused.
const MAX_SIGNATURES: usize = 64;

/// Which key signed.
#[derive(Clone, Debug)]
pub struct Verified {
    pub digest: Digest,
    /// The trusted key's name (its path).
    pub key: String,
    pub fingerprint: Digest,
}

fn refused(image: &str, reason: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Signature, format!("{image}: refused: {reason}"))
}

/// Verify the image `reference` (tag or digest): fetch its manifest, then its signatures.
pub async fn verify(
    client: &Client,
    reference: &Reference,
    keys: &[PublicKey],
) -> Result<Verified> {
    let repo = client.repository(reference);
    let manifest = repo.get_manifest(&reference.tag_or_digest()).await?;
    verify_manifest(&repo, reference, &manifest.digest, keys).await
}

/// Verify that the manifest `digest`, fetched as `reference`, is signed by one of `keys`.
pub async fn verify_manifest(
    repo: &Repository,
    reference: &Reference,
    digest: &Digest,
    keys: &[PublicKey],
) -> Result<Verified> {
    let image = reference.to_string();
    if keys.is_empty() {
        return Err(Error::invalid_input(format!(
            "{image}: no trusted keys given"
        )));
    }
    let sig_tag = signature_tag(digest);
    let manifest = match repo.get_manifest(&sig_tag).await {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(refused(
                &image,
                format!("no signature ({sig_tag} not found)"),
            ));
        }
        Err(e) => return Err(e),
    };
    let layers = manifest
        .layers()
        .map_err(|e| refused(&image, e.message()))?;
    if layers.len() > MAX_SIGNATURES {
        return Err(refused(
            &image,
            format!("{} signatures, more than {MAX_SIGNATURES}", layers.len()),
        ));
    }
    let expected = Payload {
        docker_reference: repo.name(),
        digest: digest.clone(),
        tag: reference.digest.is_none().then(|| reference.tag.clone()),
    };
    let mut reasons = Vec::new();
    let raw = manifest.json.get("layers").and_then(Value::as_array);
    for (i, layer) in layers.iter().enumerate() {
        let annotation = raw
            .and_then(|l| l.get(i))
            .and_then(|l| l.pointer("/annotations"))
            .and_then(|a| a.get(SIGNATURE_ANNOTATION))
            .and_then(Value::as_str);
        match check_layer(repo, layer, annotation, &expected, keys).await {
            Ok(v) => return Ok(v),
            Err(reason) => reasons.push(reason),
        }
    }
    if reasons.is_empty() {
        reasons.push("the signature image has no signatures".into());
    }
    reasons.dedup();
    Err(refused(&image, reasons.join("; ")))
}

/// One signature layer: `Ok` with the key that signed, or why it does not count.
async fn check_layer(
    repo: &Repository,
    layer: &Descriptor,
    annotation: Option<&str>,
    expected: &Payload,
    keys: &[PublicKey],
) -> std::result::Result<Verified, String> {
    if layer.media_type != SIGNATURE_LAYER {
        return Err(format!(
            "layer of media type {:?} is not a signature",
            layer.media_type
        ));
    }
    let b64 = annotation.ok_or("a signature layer has no signature annotation")?;
    if b64.len() > MAX_SIGNATURE_LEN {
        return Err(format!("signature of {} characters is too long", b64.len()));
    }
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| format!("signature is not base64: {e}"))?;
    let ours = expected.to_bytes();
    let payload = if layer.digest == Digest::of_bytes(&ours) {
        ours.into()
    } else if layer.size > MAX_PAYLOAD_SIZE as u64 {
        return Err(format!(
            "payload of {} bytes exceeds {MAX_PAYLOAD_SIZE}",
            layer.size
        ));
    } else {
        repo.fetch_blob_bytes(&layer.digest, MAX_PAYLOAD_SIZE)
            .await
            .map_err(|e| format!("payload {}: {}", layer.digest, e.message()))?
    };
    let claims = Payload::parse(&payload)?;
    let Some(key) = keys.iter().find(|k| k.verifies(&payload, &der)) else {
        return Err(if p256::ecdsa::Signature::from_der(&der).is_err() {
            "signature is not a DER ECDSA signature (truncated?)".into()
        } else {
            "bad signature: not made by any trusted key over this payload".into()
        });
    };
    if claims.digest != expected.digest {
        return Err(format!("signed for another digest ({})", claims.digest));
    }
    if claims.docker_reference != expected.docker_reference {
        return Err(format!(
            "signed for another repository ({})",
            claims.docker_reference
        ));
    }
    if expected.tag.is_some() && claims.tag != expected.tag {
        let other = claims.tag.as_deref().unwrap_or("no tag");
        return Err(format!("signed for another tag ({other})"));
    }
    Ok(Verified {
        digest: expected.digest.clone(),
        key: key.name().to_string(),
        fingerprint: key.fingerprint(),
    })
}
