//! ECDSA P-256 keys in PEM: PKCS#8 private keys and SubjectPublicKeyInfo public keys, as
//! `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256` writes them and
//! `cosign verify --key` reads them. The crypto is RustCrypto's `p256`. Messages name the
//! key file, never its contents.

use std::path::{Path, PathBuf};

use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};

use crate::digest::Digest;
use crate::error::{Error, ErrorKind, Result};

/// Key files larger than this are not keys.
const MAX_KEY_FILE: u64 = 64 * 1024;

/// A private signing key and the file it came from.
pub struct PrivateKey {
    key: SigningKey,
    path: PathBuf,
}

/// A trusted public key and where it came from (the name [`crate::sign::verify`] reports).
#[derive(Clone, Debug)]
pub struct PublicKey {
    key: VerifyingKey,
    name: String,
}

fn read_key_file(path: &Path, what: &str) -> Result<String> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io("reading", path, &e))?;
    if meta.len() > MAX_KEY_FILE {
        return Err(Error::invalid_input(format!(
            "{}: not a {what}: {} bytes",
            path.display(),
            meta.len()
        )));
    }
    std::fs::read_to_string(path).map_err(|e| Error::io("reading", path, &e))
}

/// Whether the file can be read by its group or others (Unix mode bits).
#[cfg(unix)]
fn readable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0)
}

#[cfg(not(unix))]
fn readable_by_others(_: &Path) -> bool {
    false
}

impl PrivateKey {
    /// Read a PKCS#8 (or SEC1 `EC PRIVATE KEY`) P-256 private key in PEM. A file that its
    /// group or others can read gets a warning.
    pub fn load(path: &Path) -> Result<Self> {
        let text = read_key_file(path, "P-256 private key")?;
        if readable_by_others(path) {
            tracing::warn!(
                "signing key {} is readable by group or others: chmod 600 it",
                path.display()
            );
        }
        let key = SigningKey::from_pkcs8_pem(&text)
            .or_else(|_| p256::SecretKey::from_sec1_pem(&text).map(SigningKey::from))
            .map_err(|_| {
                Error::invalid_input(format!(
                    "{}: not an ECDSA P-256 private key in PEM (PKCS#8 or SEC1)",
                    path.display()
                ))
            })?;
        Ok(Self {
            key,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The DER ECDSA-SHA256 signature of `data` (deterministic, RFC 6979).
    pub fn sign(&self, data: &[u8]) -> Vec<u8> {
        let sig: Signature = self.key.sign(data);
        sig.to_der().as_bytes().to_vec()
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            key: *self.key.verifying_key(),
            name: self.path.display().to_string(),
        }
    }
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey({})", self.path.display())
    }
}

impl PublicKey {
    /// Read a SubjectPublicKeyInfo P-256 public key in PEM; it is named by its path.
    pub fn load(path: &Path) -> Result<Self> {
        let text = read_key_file(path, "P-256 public key")?;
        Self::from_pem(&text, &path.display().to_string())
    }

    /// A public key from PEM text, named `name` in results and messages.
    pub fn from_pem(text: &str, name: &str) -> Result<Self> {
        let key = VerifyingKey::from_public_key_pem(text).map_err(|_| {
            Error::invalid_input(format!(
                "{name}: not an ECDSA P-256 public key in PEM (SubjectPublicKeyInfo)"
            ))
        })?;
        Ok(Self {
            key,
            name: name.to_string(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `sha256:` of the DER SubjectPublicKeyInfo, to tell keys apart in messages.
    pub fn fingerprint(&self) -> Digest {
        let der = self
            .key
            .to_public_key_der()
            .expect("a valid P-256 key encodes");
        Digest::of_bytes(der.as_bytes())
    }

    /// Whether `der` is a valid ECDSA-SHA256 signature of `data` by this key.
    pub fn verifies(&self, data: &[u8], der: &[u8]) -> bool {
        Signature::from_der(der).is_ok_and(|sig| self.key.verify(data, &sig).is_ok())
    }
}

/// Write a new key pair to `PREFIX.key` (PKCS#8 PEM, mode 0600) and `PREFIX.pub`
/// (SubjectPublicKeyInfo PEM); neither may exist yet. Returns both paths.
pub fn write_key_pair(prefix: &Path) -> Result<(PathBuf, PathBuf)> {
    let (private, public) = generate()?;
    let path = |ext: &str| {
        let mut p = prefix.as_os_str().to_owned();
        p.push(ext);
        PathBuf::from(p)
    };
    let (key_path, pub_path) = (path(".key"), path(".pub"));
    for p in [&key_path, &pub_path] {
        if p.exists() {
            return Err(Error::invalid_input(format!(
                "{} exists already",
                p.display()
            )));
        }
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let write = |p: &Path, text: &str, options: &std::fs::OpenOptions| {
        use std::io::Write;
        options
            .open(p)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| Error::io("writing", p, &e))
    };
    write(&key_path, &private, &options)?;
    let public_options = {
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create_new(true);
        o
    };
    if let Err(e) = write(&pub_path, &public, &public_options) {
        let _ = std::fs::remove_file(&key_path);
        return Err(e);
    }
    Ok((key_path, pub_path))
}

/// A new key pair: (PKCS#8 private key PEM, SubjectPublicKeyInfo public key PEM).
pub fn generate() -> Result<(String, String)> {
    let key = SigningKey::random(&mut rand_core::OsRng);
    let private = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| Error::new(ErrorKind::InvalidInput, format!("encoding the key: {e}")))?;
    let public = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| Error::new(ErrorKind::InvalidInput, format!("encoding the key: {e}")))?;
    Ok((private.to_string(), public))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify_round_trip() {
        let (private, public) = generate().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        std::fs::write(&path, private).unwrap();
        let key = PrivateKey::load(&path).unwrap();
        let public = PublicKey::from_pem(&public, "pub").unwrap();
        let sig = key.sign(b"payload");
        assert!(public.verifies(b"payload", &sig));
        assert!(!public.verifies(b"other", &sig));
        assert!(!public.verifies(b"payload", &sig[..sig.len() - 1]));
        assert_eq!(public.fingerprint(), key.public_key().fingerprint());
    }

    #[test]
    fn bad_key_files_name_the_file_not_the_contents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.pem");
        std::fs::write(&path, "-----BEGIN PRIVATE KEY-----\nSECRETSTUFF\n").unwrap();
        let e = PrivateKey::load(&path).unwrap_err().to_string();
        assert!(e.contains("bad.pem"), "{e}");
        assert!(!e.contains("SECRETSTUFF"), "{e}");
        let e = PublicKey::load(&path).unwrap_err().to_string();
        assert!(e.contains("not an ECDSA P-256 public key"), "{e}");
    }
}
