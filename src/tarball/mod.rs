//! Build-cache tarballs byte-identical to Spack v1.1.0's `_do_create_tarball`.
//!
//! [`write_tarball`] walks an install prefix once and writes the gzip-compressed tarball that
//! Spack writes for it, with the same bytes: same member names (absolute paths without the
//! leading `/`, parent directories included), order, headers (CPython's PAX format, uid/gid
//! 0, mtime 0, normalized modes), hard links, gzip framing and zlib level-6 stream. While
//! streaming, it classifies files for relocation exactly as Spack's `tarfile_of_spec_prefix`
//! does, then asks the caller for the buildinfo bytes (Spack: `syaml.dump(buildinfo)` updated
//! with the relocation lists) and appends them as `<prefix>/.spack/binary_distribution`.
//!
//! Each file is opened and read once; the sha256 of the tar stream and of the compressed
//! stream are computed in the same pass. Compression runs on the calling thread.
//!
//! Not UTF-8 is refused with an [`ErrorKind::InvalidInput`](crate::ErrorKind) error naming
//! the path: an absolute symlink target (Spack fails on it too) and the name of a file or
//! symlink to relocate (the lists hold UTF-8 strings; Spack lists such a name
//! surrogate-escaped and its YAML dump writes `\uDCxx` escapes). Other names may be any bytes,
//! as in Spack. A file that changes size while read is an error (Spack would silently cut it
//! or fail).

mod gzip;
mod hash;
mod header;
mod names;
mod relocation;
mod walk;

pub use hash::hash_tarball;

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::{Error, ErrorKind, Result};
use crate::Digest;

use header::{EntryType, Header};
use relocation::{Classifier, FileClass, PrefixMatcher};

/// Spack's gzip level (`gzip_compressed_tarfile`: `compresslevel=6`).
pub const DEFAULT_COMPRESSION_LEVEL: u32 = 6;

/// The level of the fast mode, chosen by measurement: on a 441 MiB tar of ELF libraries,
/// headers and docs, zlib-rs level 4 in 4 MiB members took 4.2 s and 156.8 MB where zlib
/// level 6 (Spack's) took 11.6 s and 152.5 MB: 2.8x faster, 2.8% larger. (Level 6: 2.1x,
/// +1.2%; level 3: 3.3x, +4.4%.)
pub const FAST_COMPRESSION_LEVEL: u32 = 4;

/// Read size for file contents.
const READ_CHUNK: usize = 1 << 20;

/// How to build a tarball.
#[derive(Clone, Debug)]
pub struct TarballOptions {
    /// Spack's `prefixes_to_relocate(spec)`: the install prefixes of the spec and of its link
    /// and run dependencies, the sbang install path and the store root. Text files containing
    /// one of them, and absolute symlinks into one of them, are listed for relocation. An empty
    /// list (or an empty string in it) matches everything, as Spack's regex does.
    pub prefixes_to_relocate: Vec<String>,
    /// zlib level, 0..=9; Spack uses 6. Other levels change the bytes (and the gzip XFL byte
    /// as CPython sets it).
    pub compression_level: u32,
    /// Set it to `true` (from any thread) to stop the build: it returns an
    /// [`ErrorKind::Cancelled`](crate::ErrorKind) error after at most one read chunk (1 MiB).
    pub cancel: Option<Arc<AtomicBool>>,
    /// Opt-in fast compression: zlib-rs instead of zlib, in independent 4 MiB gzip members.
    /// The tar (and so the diff_id) is unchanged; the compressed bytes and digest are not
    /// Spack's. See `gzip::FastMembers`.
    pub fast: bool,
    /// Told how many bytes of file contents this build has read so far (after each read
    /// chunk): the byte progress of a push.
    pub progress: Option<Arc<crate::progress::Share>>,
}

impl Default for TarballOptions {
    fn default() -> Self {
        Self {
            prefixes_to_relocate: Vec::new(),
            compression_level: DEFAULT_COMPRESSION_LEVEL,
            cancel: None,
            fast: false,
            progress: None,
        }
    }
}

impl TarballOptions {
    pub fn new(prefixes_to_relocate: Vec<String>) -> Self {
        Self {
            prefixes_to_relocate,
            ..Self::default()
        }
    }
}

/// Files to relocate on install, relative to the prefix, in archive order: the keys Spack adds
/// to the buildinfo dict (`relocate_binaries`, `relocate_links`, `relocate_textfiles`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RelocationLists {
    /// ELF and Mach-O files.
    pub relocate_binaries: Vec<String>,
    /// Symlinks with an absolute target under a prefix to relocate.
    pub relocate_links: Vec<String>,
    /// Text files containing a prefix to relocate.
    pub relocate_textfiles: Vec<String>,
}

/// What [`write_tarball`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TarballInfo {
    /// sha256 of the compressed bytes (Spack's `tar_gz_checksum`, the blob digest).
    pub compressed_digest: Digest,
    /// sha256 of the tar stream (Spack's `tar_checksum`, the layer's diff_id).
    pub uncompressed_digest: Digest,
    /// Bytes written to the output.
    pub compressed_size: u64,
    /// Bytes of the tar stream.
    pub uncompressed_size: u64,
    pub relocation: RelocationLists,
}

/// Write the gzip-compressed tarball of `prefix` to `out`, exactly as Spack's
/// `_do_create_tarball(path, prefix, buildinfo, prefixes_to_relocate)` writes it.
///
/// `buildinfo` is called once, after the scan and before the last member, with the relocation
/// lists; it returns the bytes of `<prefix>/.spack/binary_distribution` (Spack:
/// `syaml.dump(buildinfo, default_flow_style=True).encode("utf-8")` of the buildinfo dict
/// updated with the lists). An error it returns aborts the build and is returned as is.
///
/// Writes only to `out`; on error, `out` holds a partial stream.
pub fn write_tarball<W: Write>(
    prefix: &Path,
    opts: &TarballOptions,
    buildinfo: impl FnOnce(&RelocationLists) -> Result<Vec<u8>>,
    out: W,
) -> Result<TarballInfo> {
    if opts.compression_level > 9 {
        return Err(Error::invalid_input(format!(
            "compression level {} is not in 0..=9",
            opts.compression_level
        )));
    }
    let base = check_prefix(prefix)?;
    let matcher = PrefixMatcher::new(&opts.prefixes_to_relocate)?;
    let out_err = |e: &io::Error| Error::new(ErrorKind::Io, format!("writing tarball: {e}"));

    let sink = if opts.fast {
        gzip::GzipSink::new_fast(out, opts.compression_level)
    } else {
        gzip::GzipSink::new(out, opts.compression_level).map_err(|e| out_err(&e))?
    };
    let mut b = Builder {
        sink,
        matcher: &matcher,
        lists: RelocationLists::default(),
        buf: vec![0; READ_CHUNK],
        header: Vec::with_capacity(4 * header::BLOCK),
        cancel: opts.cancel.as_deref(),
        progress: opts.progress.as_deref(),
        read: 0,
    };
    walk::walk(prefix, &base, &mut b)?;

    let data = buildinfo(&b.lists)?;
    let mut name = names::join(&base);
    name.extend_from_slice(b"/.spack/binary_distribution");
    b.header(&Header {
        name: &name,
        linkname: b"",
        size: data.len() as u64,
        mode: 0o644,
        kind: EntryType::Regular,
    })?;
    b.write(&data)?;
    b.write_zeros(header::padding(data.len() as u64))?;
    let end = header::end_of_archive_len(b.sink.tar_len());
    b.write_zeros(end)?;

    let f = b.sink.finish().map_err(|e| out_err(&e))?;
    Ok(TarballInfo {
        compressed_digest: f.gz_digest,
        uncompressed_digest: f.tar_digest,
        compressed_size: f.gz_size,
        uncompressed_size: f.tar_size,
        relocation: b.lists,
    })
}

/// [`write_tarball`] to the file `dest`: writes a temporary file in `dest`'s directory and
/// renames it to `dest` only on success, so `dest` never holds a partial tarball and nothing
/// is left behind on error.
pub fn create_tarball_file(
    prefix: &Path,
    dest: &Path,
    opts: &TarballOptions,
    buildinfo: impl FnOnce(&RelocationLists) -> Result<Vec<u8>>,
) -> Result<TarballInfo> {
    use std::os::unix::fs::PermissionsExt;

    let dir = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let file_name = dest
        .file_name()
        .ok_or_else(|| Error::invalid_input(format!("{}: not a file path", dest.display())))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.", file_name.to_string_lossy()))
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(0o666))
        .tempfile_in(dir)
        .map_err(|e| Error::io("creating a temporary file in", dir, &e))?;
    let out = NamedWriter {
        inner: tmp.as_file_mut(),
        name: dest,
    };
    let info = write_tarball(prefix, opts, buildinfo, out)?;
    tmp.persist(dest)
        .map_err(|e| Error::io("renaming the tarball to", dest, &e.error))?;
    Ok(info)
}

/// A writer whose errors name the file being written.
struct NamedWriter<'a, W> {
    inner: W,
    name: &'a Path,
}

impl<W: Write> Write for NamedWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf).map_err(|e| self.annotate(&e))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush().map_err(|e| self.annotate(&e))
    }
}

impl<W> NamedWriter<'_, W> {
    fn annotate(&self, e: &io::Error) -> io::Error {
        io::Error::new(e.kind(), format!("{}: {e}", self.name.display()))
    }
}

/// Spack: `os.path.isabs(prefix) and os.path.isdir(prefix)`. Returns the member name
/// components of the prefix.
fn check_prefix(prefix: &Path) -> Result<Vec<&[u8]>> {
    let Some(base) = names::name_components(prefix) else {
        return Err(Error::invalid_input(format!(
            "prefix {:?} must be an absolute path to a directory",
            prefix.display().to_string()
        )));
    };
    if base.is_empty() {
        return Err(Error::invalid_input(format!(
            "prefix {:?}: cannot archive the root directory",
            prefix.display().to_string()
        )));
    }
    let meta = std::fs::metadata(prefix).map_err(|e| Error::io("prefix", prefix, &e))?;
    if !meta.is_dir() {
        return Err(Error::invalid_input(format!(
            "prefix {:?} is not a directory",
            prefix.display().to_string()
        )));
    }
    Ok(base)
}

struct Builder<'m, W: Write> {
    sink: gzip::GzipSink<W>,
    matcher: &'m PrefixMatcher,
    lists: RelocationLists,
    buf: Vec<u8>,
    header: Vec<u8>,
    cancel: Option<&'m AtomicBool>,
    progress: Option<&'m crate::progress::Share>,
    /// Bytes of file contents read.
    read: u64,
}

impl<W: Write> Builder<'_, W> {
    fn check_cancel(&self) -> Result<()> {
        match self.cancel {
            Some(c) if c.load(Ordering::Relaxed) => Err(Error::cancelled()),
            _ => Ok(()),
        }
    }

    fn write(&mut self, data: &[u8]) -> Result<()> {
        self.sink
            .write(data)
            .map_err(|e| Error::new(ErrorKind::Io, format!("writing tarball: {e}")))
    }

    fn write_zeros(&mut self, n: usize) -> Result<()> {
        self.sink
            .write_zeros(n)
            .map_err(|e| Error::new(ErrorKind::Io, format!("writing tarball: {e}")))
    }

    fn header(&mut self, h: &Header<'_>) -> Result<()> {
        self.check_cancel()?;
        let mut buf = std::mem::take(&mut self.header);
        buf.clear();
        header::write_header(h, &mut buf);
        let r = self.write(&buf);
        self.header = buf;
        r
    }

    /// Stream the file's `size` bytes into the archive, classifying them on the way.
    fn copy_file(&mut self, f: &walk::FileEntry<'_>) -> Result<Option<FileClass>> {
        // The classifier needs the first 8 bytes in the first chunk.
        debug_assert!(self.buf.len() >= 8);
        let mut file = File::open(f.path).map_err(|e| Error::io("opening", f.path, &e))?;
        let mut classifier =
            (!under_dot_spack(f.rel)).then(|| Classifier::new(self.matcher, f.size));
        let mut remaining = f.size;
        while remaining > 0 {
            let want = remaining.min(self.buf.len() as u64) as usize;
            let got = read_full(&mut file, &mut self.buf[..want])
                .map_err(|e| Error::io("reading", f.path, &e))?;
            if got < want {
                return Err(changed_size(
                    f.path,
                    f.size,
                    f.size - remaining + got as u64,
                ));
            }
            self.check_cancel()?;
            let chunk = &self.buf[..got];
            if let Some(c) = classifier.as_mut().filter(|c| c.wants_more()) {
                c.feed(chunk);
            }
            self.sink
                .write(chunk)
                .map_err(|e| Error::new(ErrorKind::Io, format!("writing tarball: {e}")))?;
            remaining -= got as u64;
            self.read += got as u64;
            if let Some(p) = self.progress {
                p.reached(self.read);
            }
        }
        let mut probe = [0u8; 1];
        if read_full(&mut file, &mut probe).map_err(|e| Error::io("reading", f.path, &e))? > 0 {
            return Err(Error::new(
                ErrorKind::Io,
                format!(
                    "{} changed size while being archived (grew beyond {} bytes)",
                    f.path.display(),
                    f.size
                ),
            ));
        }
        Ok(classifier.map(Classifier::finish))
    }
}

fn changed_size(path: &Path, expected: u64, got: u64) -> Error {
    Error::new(
        ErrorKind::Io,
        format!(
            "{} changed size while being archived (expected {expected} bytes, read {got})",
            path.display()
        ),
    )
}

/// Spack skips classification when `relpath.split(os.sep, 1)[0] == ".spack"`.
fn under_dot_spack(rel: &[u8]) -> bool {
    rel == b".spack" || rel.starts_with(b".spack/")
}

/// Read until `buf` is full or end of file; returns the bytes read.
fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn utf8_rel(rel: &[u8], path: &Path, what: &str) -> Result<String> {
    String::from_utf8(rel.to_vec()).map_err(|_| {
        Error::invalid_input(format!(
            "{} needs relocation ({what}) but its name is not valid UTF-8 (the relocation \
             lists hold UTF-8 names)",
            path.display()
        ))
    })
}

impl<W: Write> walk::Visitor for Builder<'_, W> {
    fn directory(&mut self, name: &[u8]) -> Result<()> {
        self.header(&Header {
            name,
            linkname: b"",
            size: 0,
            mode: 0o755,
            kind: EntryType::Directory,
        })
    }

    fn file(&mut self, f: &walk::FileEntry<'_>) -> Result<()> {
        self.header(&Header {
            name: f.name,
            linkname: b"",
            size: f.size,
            mode: f.mode,
            kind: EntryType::Regular,
        })?;
        let class = self.copy_file(f)?;
        self.write_zeros(header::padding(f.size))?;
        match class {
            Some(FileClass::Binary) => {
                self.lists
                    .relocate_binaries
                    .push(utf8_rel(f.rel, f.path, "binary")?);
            }
            Some(FileClass::TextToRelocate) => {
                self.lists
                    .relocate_textfiles
                    .push(utf8_rel(f.rel, f.path, "text file")?);
            }
            Some(FileClass::Other) | None => {}
        }
        Ok(())
    }

    fn symlink(&mut self, name: &[u8], rel: &[u8], path: &Path, target: &[u8]) -> Result<()> {
        // Spack: `os.path.isabs(linkname) and binary_regex.match(linkname.encode("utf-8"))`,
        // for every symlink (also under .spack/); the encode fails for non-UTF-8 targets.
        if target.first() == Some(&b'/') {
            if !names::is_utf8(target) {
                return Err(Error::invalid_input(format!(
                    "symlink {} has an absolute target that is not valid UTF-8, which Spack \
                     cannot check for relocation",
                    path.display()
                )));
            }
            if self.matcher.link_matches(target) {
                self.lists
                    .relocate_links
                    .push(utf8_rel(rel, path, "symlink")?);
            }
        }
        self.header(&Header {
            name,
            linkname: target,
            size: 0,
            mode: 0o755,
            kind: EntryType::Symlink,
        })
    }

    fn hardlink(&mut self, name: &[u8], mode: u32, target_name: &[u8]) -> Result<()> {
        self.header(&Header {
            name,
            linkname: target_name,
            size: 0,
            mode,
            kind: EntryType::HardLink,
        })
    }
}

#[cfg(test)]
mod tests;
