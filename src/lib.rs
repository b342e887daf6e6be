//! spack-oci-rs: the engine behind Spack's OCI build caches.
//!
//! The core (everything outside `python`) is plain Rust, usable and tested without Python:
//! - [`reference`]: image references and `oci://` mirror URLs, parsed as Spack parses them;
//! - [`digest`]: sha256 digests and hashing writers;
//! - [`transport`]: the one request path (TLS, auth, limits, retries) on reqwest, no OCI verbs;
//! - [`registry`]: a [`registry::Repository`] handle (`client.repository(&reference)`) with
//!   the verbs (tags, blobs, uploads, manifests, copies) and the wire types;
//! - [`tarball`]: Spack-identical build-cache tarballs;
//! - [`push`] (plan → layers → image) and [`index`]: whole push plans and build-cache
//!   indexes;
//! - [`sign`]: cosign-compatible signatures of pushed images, verified before install.
//!
//! `python` is the thin PyO3 layer, compiled only with the `python` feature.

pub mod copy;
pub mod digest;
pub mod error;
pub mod index;
pub mod media_types;
pub mod prefetch;
pub mod probe;
pub mod progress;
pub mod push;
pub mod reference;
pub mod registry;
pub mod sign;
pub mod tarball;
pub mod transport;

#[cfg(feature = "python")]
mod python;

pub use digest::Digest;
pub use error::{Error, ErrorKind, Result};
pub use reference::Reference;
