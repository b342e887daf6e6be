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
    /// The opt-in fast mode: independent gzip members compressed by zlib-rs.
    fast: Option<FastMembers>,
}

/// Tar bytes per gzip member in fast mode: large enough that restarting the dictionary
/// costs well under 1% of the size.
const MEMBER: usize = 4 << 20;

/// Fast mode: the tar stream cut into [`MEMBER`]-byte pieces, each compressed on its own by
/// zlib-rs (a faster deflate than zlib's, with different bytes) and written as a complete
/// gzip member. A multi-member gzip file is one gzip stream to every reader (Python's
/// `gzip`/`tarfile`, Go's `compress/gzip`, GNU gzip), and the tar inside is the same, so the
/// layer's diff_id is unchanged; only the compressed digest differs from Spack's.
struct FastMembers {
    level: i32,
    chunk: Vec<u8>,
    members: u64,
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
            fast: None,
        })
    }

    /// Start a fast-mode stream (see [`FastMembers`]); nothing is written until a member is
    /// complete.
    pub fn new_fast(out: W, level: u32) -> Self {
        Self {
            out: HashingWriter::new(out),
            compress: Compress::new(Compression::new(level), false),
            crc: Crc::new(),
            tar: Hasher::new(),
            stage: Vec::new(),
            outbuf: Vec::new(),
            fast: Some(FastMembers {
                level: i32::try_from(level).unwrap_or(6),
                chunk: Vec::with_capacity(MEMBER),
                members: 0,
            }),
        }
    }

    /// Compress `data` as one complete gzip member (fast mode).
    fn write_member(&mut self, data: &[u8], level: i32) -> io::Result<()> {
        let config = zlib_rs::DeflateConfig {
            level,
            method: zlib_rs::Method::Deflated,
            window_bits: -15, // raw deflate: the gzip framing is ours
            mem_level: 8,
            strategy: zlib_rs::Strategy::Default,
        };
        let mut buf = vec![0u8; zlib_rs::compress_bound(data.len()) + 64];
        let (compressed, rc) = zlib_rs::compress_slice(&mut buf, data, config);
        if rc != zlib_rs::ReturnCode::Ok {
            return Err(io::Error::other(format!("zlib-rs deflate failed: {rc:?}")));
        }
        let mut crc = Crc::new();
        crc.update(data);
        self.out.write_all(&gzip_header(level as u32))?;
        self.out.write_all(compressed)?;
        let mut trailer = [0u8; 8];
        trailer[..4].copy_from_slice(&crc.sum().to_le_bytes());
        trailer[4..].copy_from_slice(&(data.len() as u32).to_le_bytes());
        self.out.write_all(&trailer)
    }

    /// Tar bytes written so far.
    pub fn tar_len(&self) -> u64 {
        self.tar.count() + self.stage.len() as u64
    }

    /// Append tar bytes.
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if self.fast.is_some() {
            return self.write_fast(data);
        }
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

    fn write_fast(&mut self, mut data: &[u8]) -> io::Result<()> {
        self.tar.update(data);
        while !data.is_empty() {
            let fast = self.fast.as_mut().expect("fast mode");
            let take = (MEMBER - fast.chunk.len()).min(data.len());
            fast.chunk.extend_from_slice(&data[..take]);
            data = &data[take..];
            if fast.chunk.len() == MEMBER {
                self.flush_member()?;
            }
        }
        Ok(())
    }

    fn flush_member(&mut self) -> io::Result<()> {
        let fast = self.fast.as_mut().expect("fast mode");
        let chunk = std::mem::take(&mut fast.chunk);
        let level = fast.level;
        fast.members += 1;
        self.write_member(&chunk, level)?;
        let fast = self.fast.as_mut().expect("fast mode");
        fast.chunk = chunk;
        fast.chunk.clear();
        Ok(())
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
        if let Some(fast) = &self.fast {
            // The last piece; an empty stream is still one (empty) member.
            if !fast.chunk.is_empty() || fast.members == 0 {
                self.flush_member()?;
            }
            self.out.flush()?;
            let tar_size = self.tar.count();
            let tar_digest = self.tar.finish();
            let (_, gz_digest, gz_size) = self.out.finish();
            return Ok(Finished {
                tar_digest,
                tar_size,
                gz_digest,
                gz_size,
            });
        }
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
    fn fast_members_decompress_to_the_same_tar() {
        let data: Vec<u8> = (0..(MEMBER * 2 + 12345))
            .map(|i| (i % 251) as u8 ^ (i / 7919) as u8)
            .collect();
        let mut out = Vec::new();
        let mut sink = GzipSink::new_fast(&mut out, 6);
        for piece in data.chunks(100_003) {
            sink.write(piece).unwrap();
        }
        let f = sink.finish().unwrap();
        assert_eq!(f.tar_digest, Digest::of_bytes(&data));
        assert_eq!(f.gz_digest, Digest::of_bytes(&out));
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&out[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        // Three members, each a full gzip stream.
        let starts = out.windows(4).filter(|w| *w == [0x1f, 0x8b, 8, 0]).count();
        assert!(starts >= 3);
        let mut empty = Vec::new();
        GzipSink::new_fast(&mut empty, 6).finish().unwrap();
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&empty[..])
            .read_to_end(&mut back)
            .unwrap();
        assert!(back.is_empty() && !empty.is_empty());
    }

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
