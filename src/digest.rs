//! Content digests (`sha256:<hex>`) and hashing writers.

use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

use crate::error::Error;

/// A validated `sha256:<64 lowercase hex>` digest, the only algorithm Spack uses.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// Parse `sha256:<hex>`; the error names what is wrong (algorithm, length, characters).
    pub fn parse(s: &str) -> Result<Self, Error> {
        let Some((alg, hex)) = s.split_once(':') else {
            return Err(Error::invalid_digest(format!(
                "{s:?}: expected <algorithm>:<hex>"
            )));
        };
        if alg != "sha256" {
            return Err(Error::invalid_digest(format!(
                "{s:?}: unsupported algorithm {alg:?} (only sha256 is supported)"
            )));
        }
        if hex.len() != 64 {
            return Err(Error::invalid_digest(format!(
                "{s:?}: a sha256 digest has 64 hex characters, not {}",
                hex.len()
            )));
        }
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::invalid_digest(format!("{s:?}: not hexadecimal")));
        }
        Ok(Self {
            hex: hex.to_ascii_lowercase(),
        })
    }

    /// sha256 of a byte slice.
    pub fn of_bytes(data: &[u8]) -> Self {
        Self::from_hasher(Sha256::new_with_prefix(data))
    }

    pub(crate) fn from_hasher(h: Sha256) -> Self {
        Self {
            hex: hex::encode(h.finalize()),
        }
    }

    /// The hex part, without `sha256:`.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    pub fn algorithm(&self) -> &'static str {
        "sha256"
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest(sha256:{})", self.hex)
    }
}

impl FromStr for Digest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

/// A writer that hashes and counts everything written through it, then passes it on.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// Bytes written so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// The inner writer, the digest and the byte count.
    pub fn finish(self) -> (W, Digest, u64) {
        (self.inner, Digest::from_hasher(self.hasher), self.count)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Incremental sha256 with a byte count, for streams that are not `Write`.
#[derive(Clone, Default)]
pub struct Hasher {
    inner: Sha256,
    count: u64,
}

impl Hasher {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, data: &[u8]) {
        self.inner.update(data);
        self.count += data.len() as u64;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn finish(self) -> Digest {
        Digest::from_hasher(self.inner)
    }
}

/// sha256 and size of a whole file, read in large blocks.
pub fn file_digest(path: &std::path::Path) -> Result<Digest, Error> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io("opening", path, &e))?;
    let mut w = HashingWriter::new(io::sink());
    io::copy(&mut f, &mut w).map_err(|e| Error::io("reading", path, &e))?;
    Ok(w.finish().1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display() {
        let d = Digest::of_bytes(b"{}");
        assert_eq!(
            d.to_string(),
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(Digest::parse(&d.to_string()).unwrap(), d);
        assert_eq!(
            Digest::parse(&d.to_string().to_uppercase().replace("SHA256", "sha256")).unwrap(),
            d
        );
    }

    #[test]
    fn parse_errors() {
        for bad in [
            "abc",
            "md5:00",
            "sha256:00",
            &format!("sha256:{}", "g".repeat(64)),
        ] {
            let e = Digest::parse(bad).unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn hashing_writer() {
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"{}").unwrap();
        let (v, d, n) = w.finish();
        assert_eq!(v, b"{}");
        assert_eq!(n, 2);
        assert_eq!(d, Digest::of_bytes(b"{}"));
    }
}
