//! Image references and OCI mirror URLs, parsed exactly as Spack's `spack.oci.image` does.
//!
//! `oci://host/repo[:tag][@digest]` means https, `oci+http://…` plain http; a bare reference
//! (`ubuntu:24.04`) means https with Docker Hub defaults (`index.docker.io`, `library/`).

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

use crate::digest::Digest;
use crate::error::{Error, Result};

/// The transport a reference is reached over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    Https,
    Http,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Https => "https",
            Scheme::Http => "http",
        }
    }
}

/// Spack's longest tag, in characters. The regexes leave the length out: a counted repetition
/// of the Unicode class `\w` costs tens of milliseconds to compile (engine start-up).
const MAX_TAG_CHARS: usize = 128;

static REFERENCE: LazyLock<Regex> = LazyLock::new(|| {
    let alnum = r"[a-zA-Z0-9]+";
    let separator = r"(?:[._]|__|[-]+)";
    let domain_component = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
    let optional_port = r"(?::[0-9]+)?";
    let tag = r"[\w][\w.-]*";
    let digest = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}";
    let ipv6 = r"\[(?:[a-fA-F0-9:]+)\]";
    let domain_name = format!(r"{domain_component}(?:\.{domain_component})*");
    let host = format!(r"(?:{domain_name}|{ipv6})");
    let domain_and_port = format!("{host}{optional_port}");
    let path_component = format!("{alnum}(?:{separator}{alnum})*");
    let remote_name = format!(r"{path_component}(?:/{path_component})*");
    Regex::new(&format!(
        r"^(?:({domain_and_port})/)?({remote_name})(?::({tag}))?(?:@({digest}))?$"
    ))
    .expect("valid regex")
});

/// Spack's tag pattern for validity checks (with [`MAX_TAG_CHARS`]).
static TAG: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[\w][\w.-]*$").expect("valid regex"));

/// A parsed image reference: `domain/name:tag[@digest]` plus the scheme.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    pub scheme: Scheme,
    /// Registry host, with port when one was given (`localhost:5000`).
    pub domain: String,
    /// Repository name, lower-cased.
    pub name: String,
    pub tag: String,
    pub digest: Option<Digest>,
}

impl Reference {
    /// Parse a bare reference (`host/repo:tag@digest`) reached over `scheme`.
    ///
    /// Defaults as Spack: no domain → `index.docker.io` and `library/`; a first component
    /// without `.`/`:` that is not `localhost` is a Docker Hub namespace; tag `latest`.
    pub fn parse_with_scheme(s: &str, scheme: Scheme) -> Result<Self> {
        let caps = REFERENCE
            .captures(s)
            .filter(|c| {
                c.get(3)
                    .is_none_or(|t| t.as_str().chars().count() <= MAX_TAG_CHARS)
            })
            .ok_or_else(|| Error::invalid_reference(format!("invalid image reference: {s:?}")))?;
        let domain = caps.get(1).map(|m| m.as_str());
        let name = caps[2].to_string();
        let tag = caps.get(3).map_or("latest", |m| m.as_str()).to_string();
        let digest = caps.get(4).map(|m| Digest::parse(m.as_str())).transpose()?;
        let (domain, name) = match domain {
            None => ("index.docker.io".to_string(), format!("library/{name}")),
            Some(d)
                if !d.contains('.')
                    && !d.contains(':')
                    && d != "localhost"
                    && d == d.to_lowercase() =>
            {
                ("index.docker.io".to_string(), format!("{d}/{name}"))
            }
            Some(d) => (d.to_string(), name),
        };
        Ok(Self {
            scheme,
            domain,
            name: name.to_lowercase(),
            tag,
            digest,
        })
    }

    /// Parse an OCI mirror URL (`oci://…` = https, `oci+http://…` = http) or, failing that, a
    /// bare reference (https).
    pub fn parse(s: &str) -> Result<Self> {
        if let Some(rest) = s.strip_prefix("oci://") {
            Self::parse_with_scheme(rest, Scheme::Https)
        } else if let Some(rest) = s.strip_prefix("oci+http://") {
            Self::parse_with_scheme(rest, Scheme::Http)
        } else if s.contains("://") {
            Err(Error::invalid_reference(format!(
                "invalid OCI URL: {s:?} (expected oci://host/repo or oci+http://host/repo)"
            )))
        } else {
            Self::parse_with_scheme(s, Scheme::Https)
        }
    }

    /// The same repository with another tag (and no digest).
    #[must_use]
    pub fn with_tag(&self, tag: &str) -> Self {
        Self {
            tag: tag.to_string(),
            digest: None,
            ..self.clone()
        }
    }

    /// The same repository and tag, pinned to a digest.
    #[must_use]
    pub fn with_digest(&self, digest: Digest) -> Self {
        Self {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// `scheme://domain/v2/`
    pub fn base_url(&self) -> String {
        format!("{}://{}/v2/", self.scheme.as_str(), self.domain)
    }

    /// The digest if pinned, else the tag.
    pub fn tag_or_digest(&self) -> String {
        self.digest
            .as_ref()
            .map_or_else(|| self.tag.clone(), ToString::to_string)
    }

    pub fn manifest_url(&self) -> String {
        format!(
            "{}{}/manifests/{}",
            self.base_url(),
            self.name,
            self.tag_or_digest()
        )
    }

    pub fn manifest_url_for(&self, tag_or_digest: &str) -> String {
        format!(
            "{}{}/manifests/{}",
            self.base_url(),
            self.name,
            tag_or_digest
        )
    }

    pub fn blob_url(&self, digest: &Digest) -> String {
        format!("{}{}/blobs/{}", self.base_url(), self.name, digest)
    }

    pub fn uploads_url(&self) -> String {
        format!("{}{}/blobs/uploads/", self.base_url(), self.name)
    }

    pub fn tags_url(&self) -> String {
        format!("{}{}/tags/list", self.base_url(), self.name)
    }

    /// The repository as `domain/name`, for messages.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.name)
    }

    /// The mirror URL of this repository (`oci://domain/name` or `oci+http://…`).
    pub fn mirror_url(&self) -> String {
        match self.scheme {
            Scheme::Https => format!("oci://{}/{}", self.domain, self.name),
            Scheme::Http => format!("oci+http://{}/{}", self.domain, self.name),
        }
    }
}

impl fmt::Display for Reference {
    /// `domain/name:tag[@digest]`, as Spack prints image references.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}:{}", self.domain, self.name, self.tag)?;
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({}://{self})", self.scheme.as_str())
    }
}

/// Spack's `ensure_valid_tag`: replace characters outside `[\w.-]` by `_`; a tag longer than
/// 128 characters keeps its first and last 64.
pub fn ensure_valid_tag(tag: &str) -> String {
    let sanitized: Vec<char> = tag
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '_' || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if sanitized.len() > 128 {
        let head: String = sanitized[..64].iter().collect();
        let tail: String = sanitized[sanitized.len() - 64..].iter().collect();
        head + &tail
    } else {
        sanitized.into_iter().collect()
    }
}

/// Spack's `_oci_default_tag`: `<name>-<version>-<dag hash>.spack`, made valid.
pub fn default_tag(name: &str, version: &str, dag_hash: &str) -> String {
    ensure_valid_tag(&format!("{name}-{version}-{dag_hash}.spack"))
}

/// The tag of the build-cache index image.
pub const INDEX_TAG: &str = "index.spack";

/// Spack's `tag_is_spec`: ends in `.spack` and is not the index tag.
pub fn tag_is_spec(tag: &str) -> bool {
    tag.as_bytes().ends_with(b".spack") && tag != INDEX_TAG
}

/// Whether `tag` is a valid OCI tag: Spack's `[\w][\w.-]{0,127}`.
pub fn is_valid_tag(tag: &str) -> bool {
    tag.chars().count() <= MAX_TAG_CHARS && TAG.is_match(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Reference {
        Reference::parse(s).unwrap()
    }

    #[test]
    fn docker_hub_defaults() {
        let r = p("ubuntu");
        assert_eq!(
            (r.domain.as_str(), r.name.as_str(), r.tag.as_str()),
            ("index.docker.io", "library/ubuntu", "latest")
        );
        let r = p("myuser/myimage:v1");
        assert_eq!(
            (r.domain.as_str(), r.name.as_str(), r.tag.as_str()),
            ("index.docker.io", "myuser/myimage", "v1")
        );
        let r = p("localhost/img");
        assert_eq!(r.domain, "localhost");
        let r = p("Docker/img");
        assert_eq!((r.domain.as_str(), r.name.as_str()), ("Docker", "img"));
    }

    #[test]
    fn urls_and_schemes() {
        let r = p("oci+http://127.0.0.1:5000/My/Repo:tag");
        assert_eq!(r.scheme, Scheme::Http);
        assert_eq!(r.domain, "127.0.0.1:5000");
        assert_eq!(r.name, "my/repo");
        assert_eq!(
            r.manifest_url(),
            "http://127.0.0.1:5000/v2/my/repo/manifests/tag"
        );
        assert_eq!(r.tags_url(), "http://127.0.0.1:5000/v2/my/repo/tags/list");
        let r = p("oci://ghcr.io/org/cache");
        assert_eq!(r.scheme, Scheme::Https);
        assert_eq!(r.to_string(), "ghcr.io/org/cache:latest");
        assert_eq!(r.mirror_url(), "oci://ghcr.io/org/cache");
        let d = "sha256:".to_string() + &"a".repeat(64);
        let r = p(&format!("ghcr.io/a/b:t@{d}"));
        assert_eq!(r.digest.as_ref().unwrap().to_string(), d);
        assert!(r.manifest_url().ends_with(&format!("/manifests/{d}")));
    }

    #[test]
    fn invalid() {
        for bad in [
            "",
            "a b",
            "host/Repo::x",
            "s3://bucket/x",
            "ghcr.io/a@sha256:abc",
            "-x",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
        let e = Reference::parse("oci://a b").unwrap_err();
        assert!(e.to_string().contains("a b"));
    }

    #[test]
    fn tags() {
        assert_eq!(default_tag("zlib", "1.3", "abc"), "zlib-1.3-abc.spack");
        assert_eq!(ensure_valid_tag("a+b@c=d"), "a_b_c_d");
        let long = "x".repeat(100) + &"y".repeat(100);
        let t = ensure_valid_tag(&long);
        assert_eq!(t.len(), 128);
        assert_eq!(t, "x".repeat(64) + &"y".repeat(64));
        assert!(tag_is_spec("a.spack"));
        assert!(!tag_is_spec("index.spack"));
        assert!(!tag_is_spec("latest"));
    }

    #[test]
    fn tag_length_is_spack_s() {
        let longest = "é".repeat(MAX_TAG_CHARS);
        assert!(is_valid_tag(&longest));
        assert_eq!(p(&format!("oci://h.io/r:{longest}")).tag, longest);
        let over = "é".repeat(MAX_TAG_CHARS + 1);
        assert!(!is_valid_tag(&over));
        assert!(Reference::parse(&format!("oci://h.io/r:{over}")).is_err());
        assert!(
            Reference::parse(&format!("oci://h.io/r:{over}@sha256:{}", "a".repeat(64))).is_err()
        );
    }
}
