//! Signed build caches, in cosign's layout so that cosign, Kyverno, Harbor or openssl alone
//! can check them: [`keys`] (ECDSA P-256 key pairs in PEM), [`payload`] (the simple-signing
//! JSON that is signed), [`image`] (the signature image tagged `sha256-<hex>.sig` in the same
//! repository, one layer per signature, accumulated) and [`verify`] (a signed image, checked
//! against trusted public keys, before anything of it is accepted).
//!
//! The payload binds the tag too (`optional.tag`): a verifier asked for tag `T` refuses a
//! signature made for another tag, so re-pointing `T` at another signed image of the same
//! repository is refused (see `docs/signing.md`).

pub mod image;
pub mod keys;
pub mod payload;
pub mod verify;

pub use image::{sign, signature_tag, Signer};
pub use keys::{generate, write_key_pair, PrivateKey, PublicKey};
pub use payload::Payload;
pub use verify::{verify, verify_manifest, Verified};
