//! The traversal of Spack's `reproducible_tarfile_from_prefix(include_parent_directories=True)`
//! with the skip rule of `tarfile_of_spec_prefix`:
//! - every directory leading to the prefix (not the root), then the prefix itself;
//! - depth-first pre-order; in each directory, entries sorted by (Python `str`) name, all
//!   non-directories first in that order, then the subdirectories in that order;
//! - symlinks, regular files, directories only (FIFOs, sockets, devices are left out);
//! - a regular file with more than one link whose (st_dev, st_ino) was seen before becomes a
//!   hard link to the first name;
//! - any entry with the (st_dev, st_ino) of `<prefix>/.spack/binary_distribution` (lstat) is
//!   skipped, wherever it is.

use std::ffi::OsString;
use std::fs::{self, Metadata};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use std::collections::HashMap;

use super::names;
use crate::error::{Error, Result};

/// A regular file to add.
pub(crate) struct FileEntry<'a> {
    /// Member name.
    pub name: &'a [u8],
    /// Path relative to the prefix (`/`-separated).
    pub rel: &'a [u8],
    /// Path on disk.
    pub path: &'a Path,
    pub size: u64,
    /// 0o755 if owner-executable, else 0o644.
    pub mode: u32,
}

/// Receives the entries in archive order.
pub(crate) trait Visitor {
    fn directory(&mut self, name: &[u8]) -> Result<()>;
    fn file(&mut self, file: &FileEntry<'_>) -> Result<()>;
    fn symlink(&mut self, name: &[u8], rel: &[u8], path: &Path, target: &[u8]) -> Result<()>;
    fn hardlink(&mut self, name: &[u8], mode: u32, target_name: &[u8]) -> Result<()>;
}

struct Dir {
    path: PathBuf,
    name: Vec<u8>,
    rel: Vec<u8>,
}

/// The entries of `dir`, in the order Python's `sorted(os.scandir())` gives them.
fn list_sorted(dir: &Path, entries: &mut Vec<(OsString, fs::DirEntry)>) -> Result<()> {
    entries.clear();
    let read_dir = fs::read_dir(dir).map_err(|e| Error::io("listing directory", dir, &e))?;
    for entry in read_dir {
        let entry = entry.map_err(|e| Error::io("listing directory", dir, &e))?;
        entries.push((entry.file_name(), entry));
    }
    names::sort_like_python(entries, |(n, _)| n.as_os_str());
    Ok(())
}

/// Walk `prefix`, whose member name components are `base` (non-empty).
pub(crate) fn walk(prefix: &Path, base: &[&[u8]], visitor: &mut impl Visitor) -> Result<()> {
    for i in 1..base.len() {
        visitor.directory(&names::join(&base[..i]))?;
    }

    let buildinfo = prefix.join(".spack").join("binary_distribution");
    let skip = fs::symlink_metadata(&buildinfo)
        .ok()
        .map(|m| (m.dev(), m.ino()));

    let mut hardlinks: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    let mut stack = vec![Dir {
        path: prefix.to_path_buf(),
        name: names::join(base),
        rel: Vec::new(),
    }];
    let mut new_dirs: Vec<Dir> = Vec::new();
    let mut entries: Vec<(OsString, fs::DirEntry)> = Vec::new();

    while let Some(dir) = stack.pop() {
        visitor.directory(&dir.name)?;

        list_sorted(&dir.path, &mut entries)?;

        for (file_name, entry) in entries.drain(..) {
            let path = entry.path();
            let mut meta: Option<Metadata> = None;
            if let Some(key) = skip {
                let m = lstat(&path)?;
                if (m.dev(), m.ino()) == key {
                    continue;
                }
                meta = Some(m);
            }
            let file_type = entry
                .file_type()
                .map_err(|e| Error::io("reading metadata of", &path, &e))?;
            let name = names::child(&dir.name, file_name.as_bytes());
            let rel = names::child(&dir.rel, file_name.as_bytes());

            if file_type.is_dir() {
                new_dirs.push(Dir { path, name, rel });
            } else if file_type.is_symlink() {
                let target = fs::read_link(&path)
                    .map_err(|e| Error::io("reading symlink", &path, &e))?
                    .into_os_string()
                    .into_vec();
                visitor.symlink(&name, &rel, &path, &target)?;
            } else if file_type.is_file() {
                let m = match meta {
                    Some(m) => m,
                    None => lstat(&path)?,
                };
                if !m.file_type().is_file() {
                    // Replaced since it was listed; Spack would fail differently. Say so.
                    return Err(Error::new(
                        crate::ErrorKind::Io,
                        format!("{} changed type while being archived", path.display()),
                    ));
                }
                let mode = if m.mode() & 0o100 != 0 { 0o755 } else { 0o644 };
                if m.nlink() > 1 {
                    let key = (m.dev(), m.ino());
                    if let Some(first) = hardlinks.get(&key) {
                        visitor.hardlink(&name, mode, first)?;
                        continue;
                    }
                    hardlinks.insert(key, name.clone());
                }
                visitor.file(&FileEntry {
                    name: &name,
                    rel: &rel,
                    path: &path,
                    size: m.size(),
                    mode,
                })?;
            } else {
                debug_assert!(
                    file_type.is_fifo()
                        || file_type.is_socket()
                        || file_type.is_block_device()
                        || file_type.is_char_device()
                );
            }
        }
        // Pop order must be alphabetical.
        stack.extend(new_dirs.drain(..).rev());
    }
    Ok(())
}

fn lstat(path: &Path) -> Result<Metadata> {
    fs::symlink_metadata(path).map_err(|e| Error::io("reading metadata of", path, &e))
}
