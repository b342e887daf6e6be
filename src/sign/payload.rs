//! The simple-signing payload that a signature covers (cosign's `cosign container image
//! signature`): the repository (`critical.identity.docker-reference`), the manifest digest
//! (`critical.image.docker-manifest-digest`) and, in `optional`, the tag it was pushed under.

use serde_json::{json, Value};

use crate::digest::Digest;

/// Payloads larger than this are refused unread (ours are ~250 bytes).
pub const MAX_PAYLOAD_SIZE: usize = 64 * 1024;

/// `critical.type` of every payload.
pub const PAYLOAD_TYPE: &str = "cosign container image signature";

/// What one signature says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payload {
    /// `registry/repository`.
    pub docker_reference: String,
    pub digest: Digest,
    /// The tag the image was signed under (`optional.tag`); `None` for a digest-only
    /// signature (cosign's own, for instance).
    pub tag: Option<String>,
}

impl Payload {
    /// The exact bytes that are signed (compact JSON, fixed key order).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = json!({
            "critical": {
                "identity": {"docker-reference": self.docker_reference},
                "image": {"docker-manifest-digest": self.digest.to_string()},
                "type": PAYLOAD_TYPE,
            },
            "optional": {},
        });
        if let Some(tag) = &self.tag {
            v["optional"]["tag"] = Value::String(tag.clone());
        }
        serde_json::to_vec(&v).expect("JSON of strings")
    }

    /// Read a payload, or say why it is not one.
    pub fn parse(bytes: &[u8]) -> std::result::Result<Self, String> {
        if bytes.len() > MAX_PAYLOAD_SIZE {
            return Err(format!(
                "payload of {} bytes exceeds {MAX_PAYLOAD_SIZE}",
                bytes.len()
            ));
        }
        let v: Value =
            serde_json::from_slice(bytes).map_err(|e| format!("payload is not JSON: {e}"))?;
        let text = |p: &str| v.pointer(p).and_then(Value::as_str);
        if text("/critical/type") != Some(PAYLOAD_TYPE) {
            return Err(format!("payload critical.type is not {PAYLOAD_TYPE:?}"));
        }
        let docker_reference = text("/critical/identity/docker-reference")
            .ok_or("payload has no critical.identity.docker-reference")?
            .to_string();
        let digest = text("/critical/image/docker-manifest-digest")
            .and_then(|d| Digest::parse(d).ok())
            .ok_or("payload has no valid critical.image.docker-manifest-digest")?;
        Ok(Self {
            docker_reference,
            digest,
            tag: text("/optional/tag").map(str::to_string),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let p = Payload {
            docker_reference: "localhost:5000/cache".into(),
            digest: Digest::of_bytes(b"m"),
            tag: Some("zlib-1.3-abc.spack".into()),
        };
        let bytes = p.to_bytes();
        assert!(bytes.starts_with(b"{\"critical\":{\"identity\":{\"docker-reference\""));
        assert_eq!(Payload::parse(&bytes).unwrap(), p);
        assert!(Payload::parse(b"not json")
            .unwrap_err()
            .contains("not JSON"));
        assert!(Payload::parse(&vec![b' '; MAX_PAYLOAD_SIZE + 1])
            .unwrap_err()
            .contains("exceeds"));
        assert!(Payload::parse(b"{\"critical\":{}}")
            .unwrap_err()
            .contains("critical.type"));
    }
}
