//! Making and uploading one item's layer: a tarball file (hashed, then uploaded), a small
//! prefix (archived into memory), a large prefix (archived on a blocking thread and
//! streamed into the upload, or into a temp file when the registry refuses streams).

use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::Semaphore;

use super::streaming::{tokio_stream_from, ChannelWriter, STREAM_CHUNK};
use super::{BuildinfoFn, LayerInfo, LayerSource, PushOptions};
use crate::error::{Error, ErrorKind, Result};
use crate::registry::{BlobSource, Repository};
use crate::tarball::{self, hash_tarball, RelocationLists, TarballInfo, TarballOptions};

pub(super) struct MadeLayer {
    pub(super) info: LayerInfo,
    pub(super) uploaded: bool,
    pub(super) relocation: Option<RelocationLists>,
}

pub(super) async fn make_layer(
    repo: &Repository,
    source: &LayerSource,
    options: &PushOptions,
    jobs: &Semaphore,
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
            if prefix_is_small(path) {
                return small_prefix(repo, path, topts, buildinfo, jobs).await;
            }
            if options.stream_layers {
                match stream_prefix(repo, path, topts, buildinfo, jobs).await {
                    Ok(made) => return Ok(made),
                    Err(e) if streaming_unsupported(&e) => {
                        tracing::info!(error = %e, "streamed upload refused; using a temp file");
                    }
                    Err(e) => return Err(e),
                }
            }
            let (tmp, info) = {
                let _permit = jobs.acquire().await.map_err(|_| Error::cancelled())?;
                let path = path.clone();
                let mut topts = topts.clone();
                let buildinfo = buildinfo.clone();
                let tmpdir = options.tmpdir.clone().unwrap_or_else(std::env::temp_dir);
                // The temp file belongs to this future: if it is dropped (Ctrl-C), the file
                // is removed at once and the tarball thread stops soon after.
                let (file, tmp) = tempfile::Builder::new()
                    .prefix(".spack-oci-layer-")
                    .suffix(".tar.gz")
                    .tempfile_in(&tmpdir)
                    .map_err(|e| Error::io("creating a temp file in", &tmpdir, &e))?
                    .into_parts();
                let cancel = CancelOnDrop::default();
                if topts.cancel.is_none() {
                    topts.cancel = Some(cancel.0.clone());
                }
                let info = tokio::task::spawn_blocking(move || -> Result<TarballInfo> {
                    tarball::write_tarball(
                        &path,
                        &topts,
                        |l| buildinfo(l),
                        io::BufWriter::with_capacity(1 << 20, file),
                    )
                })
                .await
                .map_err(|e| Error::new(ErrorKind::Io, format!("tarball task failed: {e}")))??;
                drop(cancel);
                (tmp, info)
            };
            let digest = info.compressed_digest.clone();
            let uploaded = repo
                .upload_blob(&BlobSource::File(tmp.to_path_buf()), &digest, false)
                .await?;
            drop(tmp);
            Ok(MadeLayer {
                info: LayerInfo {
                    digest,
                    diff_id: info.uncompressed_digest.clone(),
                    size: info.compressed_size,
                },
                uploaded,
                relocation: Some(info.relocation),
            })
        }
    }
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

/// Archive a small prefix into memory (holding a CPU slot only meanwhile), then upload it.
async fn small_prefix(
    repo: &Repository,
    prefix: &Path,
    topts: &TarballOptions,
    buildinfo: &BuildinfoFn,
    jobs: &Semaphore,
) -> Result<MadeLayer> {
    let (bytes, info) = {
        let _permit = jobs.acquire().await.map_err(|_| Error::cancelled())?;
        let (prefix, mut topts, buildinfo) =
            (prefix.to_path_buf(), topts.clone(), buildinfo.clone());
        let cancel = CancelOnDrop::default();
        if topts.cancel.is_none() {
            topts.cancel = Some(cancel.0.clone());
        }
        let built = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            tarball::write_tarball(&prefix, &topts, |l| buildinfo(l), &mut out)
                .map(|info| (out, info))
        })
        .await
        .map_err(|e| Error::new(ErrorKind::Io, format!("tarball task failed: {e}")))??;
        drop(cancel);
        built
    };
    let digest = info.compressed_digest.clone();
    // No HEAD: for a small blob, uploading it again costs less than asking.
    repo.upload_blob(&BlobSource::Bytes(Bytes::from(bytes)), &digest, true)
        .await?;
    Ok(MadeLayer {
        info: LayerInfo {
            digest,
            diff_id: info.uncompressed_digest.clone(),
            size: info.compressed_size,
        },
        uploaded: true,
        relocation: Some(info.relocation),
    })
}

/// Sets its flag when dropped: tells a tarball thread that its future is gone.
#[derive(Default)]
struct CancelOnDrop(Arc<std::sync::atomic::AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Registries that cap request sizes or do not take streamed PATCH answer with these.
fn streaming_unsupported(e: &Error) -> bool {
    matches!(e.status(), Some(400 | 405 | 411 | 413 | 416 | 501))
}

/// Archive a prefix on a blocking thread and stream it into a PATCH upload. Retried as a
/// whole (the tarball is reproducible, so a retry sends the same bytes).
async fn stream_prefix(
    repo: &Repository,
    prefix: &Path,
    topts: &TarballOptions,
    buildinfo: &BuildinfoFn,
    jobs: &Semaphore,
) -> Result<MadeLayer> {
    // One retry state for the whole layer: its POSTs and whole-stream retries share it.
    let mut retrier = repo.client().retrier();
    let what = format!(
        "uploading the tarball of {} to {}",
        prefix.display(),
        repo.name()
    );
    loop {
        // Open the upload session before taking a CPU slot: the slot is for archiving, not for
        // waiting on the network. It is given back as soon as the tarball is written.
        let (location, _) = repo.start_upload_with(&what, &mut retrier).await?;
        let permit = jobs.acquire().await.map_err(|_| Error::cancelled())?;
        let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(8);
        let (prefix_c, topts_c, bi) = (prefix.to_path_buf(), topts.clone(), buildinfo.clone());
        let builder = tokio::task::spawn_blocking(move || {
            let mut w = ChannelWriter {
                tx: tx.clone(),
                buf: Vec::with_capacity(STREAM_CHUNK),
            };
            let r =
                tarball::write_tarball(&prefix_c, &topts_c, |l| bi(l), &mut w).and_then(|info| {
                    w.flush()
                        .map(|()| info)
                        .map_err(|e| Error::new(ErrorKind::Transport, format!("streaming: {e}")))
                });
            if let Err(e) = &r {
                // Make the HTTP body fail so the registry never sees a complete blob.
                let _ = tx.blocking_send(Err(io::Error::other(e.to_string())));
            }
            r
        });
        let body = reqwest::Body::wrap_stream(tokio_stream_from(rx));
        let info_slot: Arc<Mutex<Option<TarballInfo>>> = Arc::default();
        let slot = info_slot.clone();
        let builder_result: Arc<Mutex<Option<Error>>> = Arc::default();
        let br = builder_result.clone();
        let finish = async move {
            let built = builder.await;
            drop(permit);
            match built {
                Ok(Ok(info)) => {
                    let d = info.compressed_digest.clone();
                    *slot.lock().expect("slot") = Some(info);
                    Ok(d)
                }
                Ok(Err(e)) => {
                    *br.lock().expect("slot") = Some(e.clone());
                    Err(e)
                }
                Err(e) => Err(Error::new(
                    ErrorKind::Io,
                    format!("tarball task failed: {e}"),
                )),
            }
        };
        let result = repo.upload_stream_to(location, body, finish, &what).await;
        match result {
            Ok(digest) => {
                let info = info_slot
                    .lock()
                    .expect("slot")
                    .take()
                    .expect("tarball info");
                debug_assert_eq!(digest, info.compressed_digest);
                return Ok(MadeLayer {
                    info: LayerInfo {
                        digest,
                        diff_id: info.uncompressed_digest.clone(),
                        size: info.compressed_size,
                    },
                    uploaded: true,
                    relocation: Some(info.relocation),
                });
            }
            Err(e) => {
                // A tarball error (unreadable file, …) is the real cause and is final.
                if let Some(be) = builder_result.lock().expect("slot").take() {
                    return Err(be);
                }
                retrier.wait(e, &what).await?;
            }
        }
    }
}
