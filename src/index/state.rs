//! What an index was built from, stored with it: the map tag → manifest digest → config
//! digest (and the spec's dag hash), so that a rebuild on any machine asks each tag's
//! manifest digest with one HEAD and fetches only tags that are new or changed.
//!
//! It travels as a second layer of the `index.spack` manifest, after the index itself:
//! Spack's `OCIIndexFetcher` reads `layers[0]` only, and registries, docker and skopeo see
//! an ordinary blob (media type [`STATE_MEDIA_TYPE`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// Media type of the state layer.
pub const STATE_MEDIA_TYPE: &str = "application/vnd.spack-oci-rs.index-state.v1+json";

/// One spec tag as the index saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagEntry {
    pub manifest: String,
    pub config: String,
    /// The dag hash of the tag's spec (its record in the index).
    pub hash: String,
}

/// The state of one index: the digest of the `index.json` it describes, and its tags.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexState {
    pub version: u32,
    /// `sha256:` digest of the `index.json` layer this state belongs to.
    pub index: String,
    pub tags: BTreeMap<String, TagEntry>,
}

impl IndexState {
    pub const VERSION: u32 = 1;

    /// Read a state layer; `None` when it is not one of ours, or belongs to another index
    /// (e.g. the index was rewritten by Spack's own Python since).
    pub fn parse(bytes: &[u8], index_digest: &Digest) -> Option<Self> {
        let state: Self = serde_json::from_slice(bytes).ok()?;
        (state.version == Self::VERSION && state.index == index_digest.to_string()).then_some(state)
    }

    /// The entry of `tag` when its manifest is still `manifest`.
    pub fn unchanged(&self, tag: &str, manifest: &Digest) -> Option<&TagEntry> {
        self.tags
            .get(tag)
            .filter(|e| e.manifest == manifest.to_string())
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn belongs_to_one_index() {
        let index = Digest::of_bytes(b"index");
        let m = Digest::of_bytes(b"manifest");
        let mut s = IndexState {
            version: IndexState::VERSION,
            index: index.to_string(),
            ..IndexState::default()
        };
        let entry = TagEntry {
            manifest: m.to_string(),
            config: Digest::of_bytes(b"c").to_string(),
            hash: "h".into(),
        };
        s.tags.insert("a.spack".into(), entry);
        let back = IndexState::parse(&s.to_bytes(), &index).unwrap();
        assert_eq!(back, s);
        assert!(back.unchanged("a.spack", &m).is_some());
        assert!(back.unchanged("a.spack", &index).is_none());
        assert!(IndexState::parse(&s.to_bytes(), &m).is_none());
        assert!(IndexState::parse(b"[]", &index).is_none());
    }
}
