//! Making and uploading one item's layer: a tarball file (hashed, then uploaded), a small
//! prefix (archived into memory), a large prefix (archived on a blocking thread and
//! streamed into the upload, or into a temp file when streaming is off).

use std::io;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::Semaphore;

use super::streaming::{CancelOnDrop, TarballStream};
use super::{BuildinfoFn, LayerInfo, LayerSource, PushOptions};
use crate::digest::Digest;
use crate::error::{Error, ErrorKind, Result};
use crate::registry::{BlobSource, Repository};
use crate::tarball::{self, hash_tarball, RelocationLists, TarballInfo, TarballOptions};

pub(super) struct MadeLayer {
    pub(super) info: LayerInfo,
    pub(super) uploaded: bool,
    pub(super) relocation: Option<RelocationLists>,
}

impl MadeLayer {
    /// The layer a prefix's tarball made.
    fn of(digest: Digest, info: TarballInfo, uploaded: bool) -> Self {
        MadeLayer {
            info: LayerInfo {
                digest,
                diff_id: info.uncompressed_digest,
                size: info.compressed_size,
            },
            uploaded,
            relocation: Some(info.relocation),
        }
    }
}

pub(super) async fn make_layer(
    repo: &Repository,
    source: &LayerSource,
    options: &PushOptions,
    jobs: &Arc<Semaphore>,
) -> Result<MadeLayer> {
    match source {
        LayerSource::Tarball { path, diff_id } => {
            let (digest, size, diff) = {
                let _permit = jobs.acquire().await.map_err(|_| Error::cancelled())?;
                let path = path.clone();
                let known = diff_id.clone();
                tokio::task::spawn_blocking(move || hash_tarball(&path, known))
                    .await
                    .map_err(|e| Error::new(ErrorKind::Io, format!("hashing task failed: {e}")))??
            };
            let uploaded = repo
                .upload_blob(&BlobSource::File(path.clone()), &digest, false)
                .await?;
            Ok(MadeLayer {
                info: LayerInfo {
                    digest,
                    diff_id: diff,
                    size,
                },
                uploaded,
                relocation: None,
            })
        }
        LayerSource::Prefix {
            path,
            options: topts,
            buildinfo,
        } => {
            let job = PrefixJob {
                repo,
                prefix: path,
                topts,
                buildinfo,
                jobs,
            };
            if prefix_is_small(path) {
                return small_prefix(&job).await;
            }
            if options.stream_layers {
                return stream_prefix(&job).await;
            }
            temp_file_layer(&job, options).await
        }
    }
}

/// What archiving one prefix into a layer needs.
struct PrefixJob<'a> {
    repo: &'a Repository,
    prefix: &'a Path,
    topts: &'a TarballOptions,
    buildinfo: &'a BuildinfoFn,
    jobs: &'a Arc<Semaphore>,
}

/// Archive a prefix into a temp file, then upload the file.
async fn temp_file_layer(job: &PrefixJob<'_>, options: &PushOptions) -> Result<MadeLayer> {
    let tmpdir = options.tmpdir.clone().unwrap_or_else(std::env::temp_dir);
    // The temp file belongs to this future: if it is dropped (Ctrl-C), the file is removed
    // at once and the tarball thread stops soon after.
    let (file, tmp) = tempfile::Builder::new()
        .prefix(".spack-oci-layer-")
        .suffix(".tar.gz")
        .tempfile_in(&tmpdir)
        .map_err(|e| Error::io("creating a temp file in", &tmpdir, &e))?
        .into_parts();
    let (path, bi) = (job.prefix.to_path_buf(), job.buildinfo.clone());
    let info = archive(job.jobs, job.topts, move |t| {
        let sink = io::BufWriter::with_capacity(1 << 20, file);
        tarball::write_tarball(&path, &t, |l| bi(l), sink)
    })
    .await?;
    let digest = info.compressed_digest.clone();
    let uploaded = job
        .repo
        .upload_blob(&BlobSource::File(tmp.to_path_buf()), &digest, false)
        .await?;
    drop(tmp);
    Ok(MadeLayer::of(digest, info, uploaded))
}

/// Prefixes whose files add up to less than this are archived into memory and uploaded
/// monolithically once their digest is known: their CPU slot is held only while archiving,
/// and the upload is two requests instead of three. (At most `jobs` such buffers exist.)
pub const SMALL_PREFIX: u64 = 8 << 20;

/// Whether the regular files below `prefix` add up to less than [`SMALL_PREFIX`] (stops
/// counting as soon as they do not; errors count as "not small": the archiver reports them).
fn prefix_is_small(prefix: &Path) -> bool {
    let mut total = 0u64;
    let mut stack = vec![prefix.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return false;
        };
        for entry in entries {
            let Ok(entry) = entry else { return false };
            let Ok(meta) = entry.metadata() else {
                return false;
            };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                total += meta.len();
                if total >= SMALL_PREFIX {
                    return false;
                }
            }
        }
    }
    true
}

/// Run `build` (an archiver) on a blocking thread with the tarball options, holding a CPU
/// slot meanwhile; the thread is told to stop if this future is dropped.
async fn archive<T: Send + 'static>(
    jobs: &Semaphore,
    topts: &TarballOptions,
    build: impl FnOnce(TarballOptions) -> Result<T> + Send + 'static,
) -> Result<T> {
    let _permit = jobs.acquire().await.map_err(|_| Error::cancelled())?;
    let mut topts = topts.clone();
    let cancel = CancelOnDrop::default();
    if topts.cancel.is_none() {
        topts.cancel = Some(cancel.0.clone());
    }
    let out = tokio::task::spawn_blocking(move || build(topts))
        .await
        .map_err(|e| Error::new(ErrorKind::Io, format!("tarball task failed: {e}")))?;
    drop(cancel);
    out
}

/// Archive a small prefix into memory (holding a CPU slot only meanwhile), then upload it.
async fn small_prefix(job: &PrefixJob<'_>) -> Result<MadeLayer> {
    let (prefix, bi) = (job.prefix.to_path_buf(), job.buildinfo.clone());
    let (bytes, info) = archive(job.jobs, job.topts, move |t| {
        let mut out = Vec::new();
        tarball::write_tarball(&prefix, &t, |l| bi(l), &mut out).map(|info| (out, info))
    })
    .await?;
    let digest = info.compressed_digest.clone();
    // No HEAD: for a small blob, uploading it again costs less than asking.
    job.repo
        .upload_blob(&BlobSource::Bytes(Bytes::from(bytes)), &digest, true)
        .await?;
    Ok(MadeLayer::of(digest, info, true))
}

/// Archive a prefix on a blocking thread and stream it into the upload (resumed by
/// archiving again, see [`TarballStream`]).
async fn stream_prefix(job: &PrefixJob<'_>) -> Result<MadeLayer> {
    let source = TarballStream::new(job.prefix, job.topts, job.buildinfo, job.jobs);
    let digest = job
        .repo
        .upload_source(&source)
        .await
        .map_err(|e| e.context(format!("uploading the tarball of {}", job.prefix.display())))?;
    let info = source
        .info()
        .ok_or_else(|| Error::new(ErrorKind::Io, "the tarball was not completed"))?;
    debug_assert_eq!(digest, info.compressed_digest);
    Ok(MadeLayer::of(digest, info, true))
}
