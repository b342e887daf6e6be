//! Hashing a finished build-cache tarball: the digests of its compressed and uncompressed
//! bytes, in one read.

use std::io::{self, Read};
use std::path::Path;

use crate::digest::{Digest, Hasher, HashingWriter};
use crate::error::{Error, ErrorKind, Result};

/// Digest and size of a `.tar.gz` file, and the digest of its uncompressed tar (diff_id).
pub fn hash_tarball(path: &Path, known_diff_id: Option<Digest>) -> Result<(Digest, u64, Digest)> {
    let file = std::fs::File::open(path).map_err(|e| Error::io("opening", path, &e))?;
    let mut reader = io::BufReader::with_capacity(1 << 20, file);
    let mut compressed = Hasher::new();
    let mut uncompressed = HashingWriter::new(io::sink());
    {
        // Hash the compressed bytes while decompressing them, reading the file once.
        struct Tee<'a, R> {
            inner: R,
            hasher: &'a mut Hasher,
        }
        impl<R: Read> Read for Tee<'_, R> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.inner.read(buf)?;
                self.hasher.update(&buf[..n]);
                Ok(n)
            }
        }
        let tee = Tee {
            inner: &mut reader,
            hasher: &mut compressed,
        };
        if known_diff_id.is_some() {
            let mut tee = tee;
            io::copy(&mut tee, &mut io::sink()).map_err(|e| Error::io("reading", path, &e))?;
        } else {
            let mut gz = flate2::read::MultiGzDecoder::new(tee);
            io::copy(&mut gz, &mut uncompressed).map_err(|e| {
                Error::new(
                    ErrorKind::InvalidInput,
                    format!("{} is not a gzip-compressed tarball: {e}", path.display()),
                )
            })?;
            // Hash whatever follows the gzip stream too, so the digest covers the whole file.
            let mut rest = gz.into_inner();
            io::copy(&mut rest, &mut io::sink()).map_err(|e| Error::io("reading", path, &e))?;
        }
    }
    let size = compressed.count();
    let diff_id = match known_diff_id {
        Some(d) => d,
        None => uncompressed.finish().1,
    };
    Ok((compressed.finish(), size, diff_id))
}
