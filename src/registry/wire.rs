//! Wire types of the distribution spec: manifests, descriptors, image configs, the layer
//! identity of a Spack image, and compact JSON exactly as Spack writes it.

use bytes::Bytes;
use serde_json::Value;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::media_types;

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

/// The compressed and uncompressed identity of a layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerInfo {
    /// Digest of the gzip-compressed tarball (the blob).
    pub digest: Digest,
    /// Digest of the uncompressed tar (the config's `rootfs.diff_ids` entry).
    pub diff_id: Digest,
    /// Size of the compressed blob.
    pub size: u64,
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
