//! Manifests and indexes: fetch (with platform selection), upload, and image configs.

use bytes::Bytes;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::Method;
use serde_json::Value;

use crate::digest::Digest;
use crate::error::{Error, ErrorKind, Result};
use crate::media_types;
use crate::reference::Reference;
use crate::transport::{error_from_response, Body, Client};

/// Manifests and indexes larger than this are refused (the distribution spec's 4 MiB).
pub const MAX_MANIFEST_SIZE: usize = 4 * 1024 * 1024;
/// Image configs larger than this are refused (Spack configs hold a spec; they are small).
pub const MAX_CONFIG_SIZE: usize = 64 * 1024 * 1024;

/// A fetched manifest or index, with its exact bytes.
#[derive(Clone, Debug)]
pub struct Manifest {
    pub media_type: String,
    pub digest: Digest,
    pub bytes: Bytes,
    pub json: Value,
    /// The URL it was fetched from (for messages).
    pub url: String,
}

/// A layer or config descriptor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

/// An image manifest with its config, as Spack's `get_manifest_and_config` returns them.
#[derive(Clone, Debug)]
pub struct ImageManifest {
    pub manifest: Manifest,
    pub config: Value,
    pub config_bytes: Bytes,
}

fn field<'a>(v: &'a Value, key: &str, what: &str) -> Result<&'a Value> {
    v.get(key)
        .ok_or_else(|| Error::invalid_response(format!("{what}: no \"{key}\" field")))
}

impl Descriptor {
    pub fn from_json(v: &Value, what: &str) -> Result<Self> {
        let media_type = field(v, "mediaType", what)?
            .as_str()
            .ok_or_else(|| Error::invalid_response(format!("{what}: mediaType is not a string")))?
            .to_string();
        let digest = field(v, "digest", what)?
            .as_str()
            .ok_or_else(|| Error::invalid_response(format!("{what}: digest is not a string")))?;
        // A malformed digest here is the registry's fault, not the caller's.
        let digest = Digest::parse(digest)
            .map_err(|e| Error::invalid_response(format!("{what}: {}", e.message())))?;
        let size = field(v, "size", what)?
            .as_u64()
            .ok_or_else(|| Error::invalid_response(format!("{what}: size is not a number")))?;
        Ok(Self {
            media_type,
            digest,
            size,
        })
    }
}

impl Manifest {
    /// The config descriptor of an image manifest.
    pub fn config(&self) -> Result<Descriptor> {
        let what = self.describe();
        Descriptor::from_json(
            field(&self.json, "config", &what)?,
            &format!("{what} config"),
        )
    }

    /// The layer descriptors of an image manifest.
    pub fn layers(&self) -> Result<Vec<Descriptor>> {
        let what = self.describe();
        field(&self.json, "layers", &what)?
            .as_array()
            .ok_or_else(|| Error::invalid_response(format!("{what}: layers is not a list")))?
            .iter()
            .enumerate()
            .map(|(i, l)| Descriptor::from_json(l, &format!("{what} layer {i}")))
            .collect()
    }

    pub fn is_index(&self) -> bool {
        media_types::is_index(&self.media_type)
    }

    fn describe(&self) -> String {
        if self.url.is_empty() {
            format!("manifest {}", self.digest)
        } else {
            format!("manifest {} from {}", self.digest, self.url)
        }
    }
}

/// Whether a manifest PUT was refused because the registry lacks a blob it refers to.
pub fn is_missing_blob_error(e: &Error) -> bool {
    e.has_code("BLOB_UNKNOWN") || e.has_code("MANIFEST_BLOB_UNKNOWN")
}

/// The blobs an image manifest (or index: none) refers to: config first, then layers, each
/// with a label for messages ("config", "layer 2 of 3").
pub fn referenced_blobs(json: &Value) -> Vec<(String, Digest)> {
    let mut out = Vec::new();
    if let Some(d) = json
        .pointer("/config/digest")
        .and_then(Value::as_str)
        .and_then(|d| Digest::parse(d).ok())
    {
        out.push(("config".to_string(), d));
    }
    if let Some(layers) = json.get("layers").and_then(Value::as_array) {
        let n = layers.len();
        for (i, l) in layers.iter().enumerate() {
            if let Some(d) = l
                .get("digest")
                .and_then(Value::as_str)
                .and_then(|d| Digest::parse(d).ok())
            {
                out.push((format!("layer {} of {n}", i + 1), d));
            }
        }
    }
    out
}

/// Compact JSON exactly as Python's `json.dumps(obj, separators=(",", ":"))`: key order kept,
/// non-ASCII and DEL escaped as `\uXXXX`.
pub fn to_compact_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_json(value, &mut out);
    out
}

fn write_json(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|_| n.is_f64()) {
                out.extend_from_slice(python_float_repr(f).as_bytes());
            } else {
                out.extend_from_slice(n.to_string().as_bytes());
            }
        }
        Value::String(s) => write_json_string(s, out),
        Value::Array(a) => {
            out.push(b'[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(v, out);
            }
            out.push(b']');
        }
        Value::Object(m) => {
            out.push(b'{');
            for (i, (k, v)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json_string(k, out);
                out.push(b':');
                write_json(v, out);
            }
            out.push(b'}');
        }
    }
}

fn python_float_repr(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        }
    } else if f.fract() == 0.0 && f.abs() < 1e16 {
        format!("{f:.1}")
    } else {
        // Shortest round-trip representation, like Python's repr.
        let s = format!("{f:e}");
        let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        if (-5..16).contains(&exp) {
            format!("{f}")
        } else {
            let sign = if exp < 0 { "-" } else { "+" };
            format!("{mant}e{sign}{:02}", exp.abs())
        }
    }
}

fn write_json_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            ' '..='~' => out.push(c as u8),
            _ => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.extend_from_slice(format!("\\u{unit:04x}").as_bytes());
                }
            }
        }
    }
    out.push(b'"');
}

impl Client {
    /// GET a manifest or index by tag or digest (the reference's digest wins), verified
    /// against the digest when pinned.
    pub async fn get_manifest(&self, reference: &Reference) -> Result<Manifest> {
        let what = format!("fetching manifest {reference}");
        let req = super::request(
            reference,
            Method::GET,
            reference.manifest_url(),
            false,
            &what,
        )
        .header(ACCEPT, &media_types::accept_all());
        let url = req.url.clone();
        // Body problems name the URL: a proxy in the way is the usual cause.
        let at = format!("{what} from {url}");
        let mut retrier = self.retrier();
        let (content_type, bytes) = loop {
            let resp = self.send_with(&req, &mut retrier).await?;
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

    /// PUT a manifest (exact bytes) under the reference's tag, or under its digest when
    /// `by_digest`. Returns the digest and size.
    pub async fn put_manifest(
        &self,
        reference: &Reference,
        bytes: Bytes,
        media_type: &str,
        by_digest: bool,
    ) -> Result<(Digest, u64)> {
        let digest = Digest::of_bytes(&bytes);
        let target = if by_digest {
            digest.to_string()
        } else {
            reference.tag.clone()
        };
        let what = format!("uploading manifest {}:{target}", reference.repository());
        if bytes.len() > MAX_MANIFEST_SIZE {
            return Err(Error::invalid_input(format!(
                "{what}: manifest of {} bytes exceeds {MAX_MANIFEST_SIZE}",
                bytes.len()
            )));
        }
        let size = bytes.len() as u64;
        let req = super::request(
            reference,
            Method::PUT,
            reference.manifest_url_for(&target),
            true,
            &what,
        )
        .header(CONTENT_TYPE, media_type)
        .body(Body::Bytes(bytes));
        let resp = self.send(&req).await?;
        if resp.status().as_u16() != 201 {
            let err = error_from_response(resp, &what).await;
            if is_missing_blob_error(&err) {
                return Err(self.name_missing_blobs(reference, &req, err).await);
            }
            return Err(err);
        }
        Ok((digest, size))
    }

    /// The error of a manifest PUT refused for a missing blob, saying which blobs the
    /// repository lacks (checked with HEAD; the registry's own detail otherwise).
    async fn name_missing_blobs(
        &self,
        reference: &Reference,
        req: &crate::transport::Request,
        err: Error,
    ) -> Error {
        let json = match &req.body {
            Body::Bytes(b) => serde_json::from_slice::<Value>(b).ok(),
            _ => None,
        };
        let missing = match json {
            Some(json) => self
                .missing_blobs(reference, &json)
                .await
                .unwrap_or_default(),
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

    /// The blobs `manifest` refers to that the repository of `reference` lacks (HEAD each,
    /// a few at a time), labelled as by [`referenced_blobs`].
    pub async fn missing_blobs(
        &self,
        reference: &Reference,
        manifest: &Value,
    ) -> Result<Vec<(String, Digest)>> {
        use futures_util::stream::{self, StreamExt, TryStreamExt};
        let blobs = referenced_blobs(manifest);
        let found: Vec<Option<(String, Digest)>> =
            stream::iter(blobs.into_iter().map(|(label, d)| async move {
                let exists = self.blob_exists(reference, &d).await?;
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
        reference: &Reference,
        architecture: &str,
        recurse: u32,
    ) -> Result<ImageManifest> {
        let mut reference = reference.clone();
        let mut depth = recurse;
        let manifest = loop {
            let m = self.get_manifest(&reference).await?;
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
            .fetch_blob_bytes(&reference, &config_desc.digest, MAX_CONFIG_SIZE)
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_json_like_python() {
        let v: Value = serde_json::from_str(
            r#"{"b":1,"a":[true,null,"x\u00e9\ud83d\ude00\u007f\n\"\\"],"f":1.5,"g":2.0,"h":1e20,"i":1e-7}"#,
        )
        .unwrap();
        let s = String::from_utf8(to_compact_json(&v)).unwrap();
        // json.dumps(..., separators=(",", ":")) gives exactly this:
        assert_eq!(
            s,
            r#"{"b":1,"a":[true,null,"x\u00e9\ud83d\ude00\u007f\n\"\\"],"f":1.5,"g":2.0,"h":1e+20,"i":1e-07}"#
        );
    }
}
