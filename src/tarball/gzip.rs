//! The tar byte stream's sink: sha256 of the tar bytes, gzip framing exactly as CPython's
//! `GzipFile(filename="", mode="wb", compresslevel=N, mtime=0)` writes it, zlib raw deflate
//! (same library and parameters as CPython's `zlib.compressobj(N, DEFLATED, -MAX_WBITS,
//! DEF_MEM_LEVEL, 0)`), and sha256 + size of the compressed bytes written to the output.
//!
//! CPython's header: `1f 8b 08`, flags 0 (no FNAME for an empty name), mtime 0, XFL 2 for
//! level 9, 4 for level 1, else 0, OS 255. Trailer: CRC32 and ISIZE (size mod 2^32), little
//! endian. zlib's output does not depend on how the input is split into calls, so the bytes
//! match whatever write sizes `tarfile` used.

use std::io::{self, Write};

use flate2::{Compress, Compression, Crc, FlushCompress, Status};

use crate::digest::{Hasher, HashingWriter};
use crate::Digest;

/// Staging buffer for small writes (headers, small files): fewer, larger deflate calls.
const STAGE: usize = 256 * 1024;
/// Compressed bytes are written to the output in chunks of this size.
const OUT_CHUNK: usize = 256 * 1024;

/// What the sink wrote.
pub(crate) struct Finished {
    pub tar_digest: Digest,
    pub tar_size: u64,
    pub gz_digest: Digest,
    pub gz_size: u64,
}

pub(crate) struct GzipSink<W: Write> {
    out: HashingWriter<W>,
    compress: Compress,
    crc: Crc,
    tar: Hasher,
    stage: Vec<u8>,
    outbuf: Vec<u8>,
}

/// The 10-byte gzip header CPython writes for `filename=""`, `mtime=0`.
pub(crate) fn gzip_header(level: u32) -> [u8; 10] {
    let xfl = match level {
        9 => 2,
        1 => 4,
        _ => 0,
    };
    [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 0xff]
}

impl<W: Write> GzipSink<W> {
    /// Start the stream: writes the gzip header. `level` must be 0..=9.
    pub fn new(out: W, level: u32) -> io::Result<Self> {
        let mut out = HashingWriter::new(out);
        out.write_all(&gzip_header(level))?;
        Ok(Self {
            out,
            compress: Compress::new(Compression::new(level), false),
            crc: Crc::new(),
            tar: Hasher::new(),
            stage: Vec::with_capacity(STAGE),
            outbuf: Vec::with_capacity(OUT_CHUNK),
        })
    }

    /// Tar bytes written so far.
    pub fn tar_len(&self) -> u64 {
        self.tar.count() + self.stage.len() as u64
    }

    /// Append tar bytes.
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if self.stage.len() + data.len() <= STAGE {
            self.stage.extend_from_slice(data);
            return Ok(());
        }
        self.flush_stage()?;
        if data.len() < STAGE / 2 {
            self.stage.extend_from_slice(data);
            Ok(())
        } else {
            self.consume(data)
        }
    }

    /// Append `n` zero bytes.
    pub fn write_zeros(&mut self, mut n: usize) -> io::Result<()> {
        const ZEROS: [u8; 4096] = [0; 4096];
        while n > 0 {
            let k = n.min(ZEROS.len());
            self.write(&ZEROS[..k])?;
            n -= k;
        }
        Ok(())
    }

    fn flush_stage(&mut self) -> io::Result<()> {
        if self.stage.is_empty() {
            return Ok(());
        }
        let stage = std::mem::take(&mut self.stage);
        let r = self.consume(&stage);
        self.stage = stage;
        self.stage.clear();
        r
    }

    /// Hash, checksum and compress tar bytes.
    fn consume(&mut self, data: &[u8]) -> io::Result<()> {
        self.tar.update(data);
        self.crc.update(data);
        self.deflate(data, FlushCompress::None)
    }

    fn deflate(&mut self, mut input: &[u8], flush: FlushCompress) -> io::Result<()> {
        let finishing = matches!(flush, FlushCompress::Finish);
        if input.is_empty() && !finishing {
            return Ok(());
        }
        loop {
            if self.outbuf.len() == self.outbuf.capacity() {
                self.drain()?;
            }
            let before = self.compress.total_in();
            let status = self
                .compress
                .compress_vec(input, &mut self.outbuf, flush)
                .map_err(|e| io::Error::other(format!("deflate: {e}")))?;
            let consumed = (self.compress.total_in() - before) as usize;
            input = &input[consumed..];
            if finishing {
                if status == Status::StreamEnd {
                    return Ok(());
                }
            } else if input.is_empty() {
                return Ok(());
            }
        }
    }

    fn drain(&mut self) -> io::Result<()> {
        self.out.write_all(&self.outbuf)?;
        self.outbuf.clear();
        Ok(())
    }

    /// Finish the deflate stream, write the trailer and flush the output.
    pub fn finish(mut self) -> io::Result<Finished> {
        self.flush_stage()?;
        self.deflate(&[], FlushCompress::Finish)?;
        self.drain()?;
        let mut trailer = [0u8; 8];
        trailer[..4].copy_from_slice(&self.crc.sum().to_le_bytes());
        trailer[4..].copy_from_slice(&self.crc.amount().to_le_bytes());
        self.out.write_all(&trailer)?;
        self.out.flush()?;
        let tar_size = self.tar.count();
        let tar_digest = self.tar.finish();
        let (_, gz_digest, gz_size) = self.out.finish();
        Ok(Finished {
            tar_digest,
            tar_size,
            gz_digest,
            gz_size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::GzDecoder;
    use std::io::Read;

    #[test]
    fn header_bytes_match_cpython() {
        // python3 -c 'import gzip,io; b=io.BytesIO();
        //   gzip.GzipFile(filename="", mode="wb", compresslevel=6, mtime=0, fileobj=b).close();
        //   print(b.getvalue().hex())'
        assert_eq!(hex::encode(gzip_header(6)), "1f8b08000000000000ff");
        assert_eq!(gzip_header(9)[8], 2);
        assert_eq!(gzip_header(1)[8], 4);
        assert_eq!(gzip_header(0)[8], 0);
    }

    #[test]
    fn empty_stream_matches_cpython() {
        let mut out = Vec::new();
        let f = GzipSink::new(&mut out, 6).unwrap().finish().unwrap();
        assert_eq!(
            hex::encode(&out),
            "1f8b08000000000000ff03000000000000000000"
        );
        assert_eq!(f.tar_size, 0);
        assert_eq!(f.gz_size, out.len() as u64);
        assert_eq!(f.gz_digest, Digest::of_bytes(&out));
    }

    #[test]
    fn small_stream_matches_cpython() {
        // python3 -c 'import gzip,io; b=io.BytesIO(); g=gzip.GzipFile(filename="",
        //   mode="wb", compresslevel=6, mtime=0, fileobj=b); g.write(b"hello hello hello\n");
        //   g.close(); print(b.getvalue().hex())'
        let mut out = Vec::new();
        let mut s = GzipSink::new(&mut out, 6).unwrap();
        s.write(b"hello hello ").unwrap();
        s.write(b"hello\n").unwrap();
        let f = s.finish().unwrap();
        assert_eq!(
            hex::encode(&out),
            "1f8b08000000000000ffcb48cdc9c957c840905c003b7c8adf12000000"
        );
        assert_eq!(f.tar_digest, Digest::of_bytes(b"hello hello hello\n"));
    }

    #[test]
    fn chunking_does_not_change_bytes() {
        let mut data = Vec::new();
        for i in 0..400_000u32 {
            data.extend_from_slice(format!("line {i} {}\n", i % 97).as_bytes());
        }
        let mut one = Vec::new();
        let f = {
            let mut s = GzipSink::new(&mut one, 6).unwrap();
            s.write(&data).unwrap();
            s.finish().unwrap()
        };
        let mut many = Vec::new();
        {
            let mut s = GzipSink::new(&mut many, 6).unwrap();
            for (i, c) in data.chunks(7919).enumerate() {
                if i % 3 == 0 {
                    s.write_zeros(0).unwrap();
                }
                s.write(c).unwrap();
            }
            s.finish().unwrap();
        }
        assert_eq!(one, many);
        assert_eq!(f.tar_size, data.len() as u64);
        let mut back = Vec::new();
        GzDecoder::new(&one[..]).read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
    }
}
