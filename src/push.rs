//! A whole push plan in one call: one runtime, one connection pool, one token cache.
//!
//! Phases, each concurrent: (1) find what exists (list tags once, then fetch manifest and
//! config only of the tags that exist); (2) make and upload the layers (tarballs on disk are
//! hashed and uploaded monolithically; install prefixes are archived on blocking threads and
//! streamed straight into the upload); (3) copy the base image's layers per architecture;
//! (4) compose and upload the image config and manifest of every item whose layers are all
//! present. One failing item does not stop the others.

use std::collections::{BTreeSet, HashMap};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use serde_json::{json, Map, Value};
use tokio::sync::Semaphore;

use crate::digest::{Digest, Hasher, HashingWriter};
use crate::error::{Error, ErrorKind, Result};
use crate::media_types;
use crate::reference::Reference;
use crate::registry::{to_compact_json, BlobSource};
use crate::tarball::{self, RelocationLists, TarballInfo, TarballOptions};
use crate::transport::Client;

/// The compressed and uncompressed identity of a layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerInfo {
    /// Digest of the gzip-compressed tarball (the blob).
    pub digest: Digest,
    /// Digest of the uncompressed tar (the config's `rootfs.diff_ids` entry).
    pub diff_id: Digest,
    /// Size of the compressed blob.
    pub size: u64,
}

/// Serializes the buildinfo once the relocation scan is known (Spack does it in Python).
pub type BuildinfoFn = Arc<dyn Fn(&RelocationLists) -> Result<Vec<u8>> + Send + Sync>;

/// Where an item's layer comes from.
#[derive(Clone)]
pub enum LayerSource {
    /// A finished `.tar.gz` on disk. The diff_id is computed unless given.
    Tarball {
        path: PathBuf,
        diff_id: Option<Digest>,
    },
    /// An install prefix, archived exactly as Spack archives it.
    Prefix {
        path: PathBuf,
        options: TarballOptions,
        buildinfo: BuildinfoFn,
    },
}

/// One image to push.
#[derive(Clone)]
pub struct PushItem {
    /// Identifies the item within the plan (Spack: the DAG hash). Defaults to the tag.
    pub key: String,
    pub tag: String,
    /// The item's own layer; `None` for an image made only of other items' layers (`--tag`).
    pub layer: Option<LayerSource>,
    /// Keys of the items whose layers make up the image, bottom first, the item's own key
    /// included where its layer goes. Keys whose layers are unknown are left out, as Spack
    /// does. Empty means `[key]`.
    pub layers: Vec<String>,
    /// Platform architecture in Go notation (`amd64`, `arm64`), selects the base image.
    pub architecture: String,
    /// The complete `config.Env` list; `None` keeps the base image's (with a default PATH).
    pub env: Option<Vec<String>>,
    /// Fields merged at the top level of the image config (Spack: the spec dict, …).
    pub extra_config: Option<Map<String, Value>>,
    /// Set `binary_cache_checksum` and `archive_size` in the config from the built layer
    /// (in place when `extra_config` has them, else appended).
    pub fill_checksum: bool,
    /// Manifest annotations (dropped for Docker-format manifests, as Spack does).
    pub annotations: Option<Map<String, Value>>,
}

impl PushItem {
    pub fn new(tag: impl Into<String>) -> Self {
        let tag = tag.into();
        Self {
            key: tag.clone(),
            tag,
            layer: None,
            layers: Vec::new(),
            architecture: "amd64".into(),
            env: None,
            extra_config: None,
            fill_checksum: false,
            annotations: None,
        }
    }
}

/// Options of a push.
#[derive(Clone, Debug)]
pub struct PushOptions {
    /// Rebuild and re-upload even if the tag exists.
    pub force: bool,
    /// Layers made at once (tarball building is CPU-bound). Default: number of CPUs.
    pub jobs: usize,
    /// Stream prefix tarballs into the upload (POST, streamed PATCH, PUT). When false, or
    /// when the registry refuses streamed uploads, the tarball goes to a temp file first.
    pub stream_layers: bool,
    /// Directory for temp files (default: the system temp dir).
    pub tmpdir: Option<PathBuf>,
}

impl Default for PushOptions {
    fn default() -> Self {
        Self {
            force: false,
            jobs: std::thread::available_parallelism().map_or(2, std::num::NonZero::get),
            stream_layers: true,
            tmpdir: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItemStatus {
    /// The manifest was accepted by the registry.
    Pushed,
    /// The tag existed already (and `force` was off): nothing was uploaded.
    Skipped,
    Failed,
}

impl ItemStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemStatus::Pushed => "pushed",
            ItemStatus::Skipped => "skipped",
            ItemStatus::Failed => "failed",
        }
    }
}

/// What happened to one item.
#[derive(Clone, Debug)]
pub struct ItemResult {
    pub key: String,
    pub tag: String,
    pub status: ItemStatus,
    pub manifest_digest: Option<Digest>,
    pub manifest_size: Option<u64>,
    pub layer: Option<LayerInfo>,
    /// Whether the layer blob was uploaded in this push (false if it existed or was skipped).
    pub layer_uploaded: bool,
    pub relocation: Option<RelocationLists>,
    pub error: Option<Error>,
    /// Time spent making and uploading the layer.
    pub layer_seconds: f64,
}

/// Progress events, in the order things happen.
#[derive(Clone, Debug)]
pub enum Progress {
    /// Existence check done: `to_push` of `total` items need work.
    Planned { total: usize, to_push: usize },
    LayerDone {
        key: String,
        tag: String,
        digest: Digest,
        size: u64,
        seconds: f64,
    },
    LayerFailed {
        key: String,
        tag: String,
        error: String,
    },
    ManifestDone {
        key: String,
        tag: String,
        digest: Digest,
    },
    ManifestFailed {
        key: String,
        tag: String,
        error: String,
    },
}

pub type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

/// A push plan.
pub struct PushPlan {
    pub target: Reference,
    pub base_image: Option<Reference>,
    pub items: Vec<PushItem>,
    /// Layers already known from elsewhere (an earlier push), by key.
    pub known_layers: HashMap<String, LayerInfo>,
    pub options: PushOptions,
    pub progress: Option<ProgressFn>,
}

/// Run a push plan. Never fails as a whole for one item: per-item errors are in the results;
/// errors that concern everything (an invalid base image) fail every item that needs it.
pub async fn push(client: &Client, plan: PushPlan) -> Vec<ItemResult> {
    let PushPlan {
        target,
        base_image,
        items,
        known_layers,
        options,
        progress,
    } = plan;
    let emit = |p: Progress| {
        if let Some(f) = &progress {
            f(p);
        }
    };
    let mut slots: Vec<ItemResult> = items
        .iter()
        .map(|it| ItemResult {
            key: it.key.clone(),
            tag: it.tag.clone(),
            status: ItemStatus::Pushed,
            manifest_digest: None,
            manifest_size: None,
            layer: None,
            layer_uploaded: false,
            relocation: None,
            error: None,
            layer_seconds: 0.0,
        })
        .collect();
    let mut layers: HashMap<String, LayerInfo> = known_layers;

    // (1) What exists already.
    let mut skipped = vec![false; items.len()];
    if !options.force {
        let existing = existing_layers(client, &target, &items).await;
        for (i, found) in existing.into_iter().enumerate() {
            if let Some(info) = found {
                skipped[i] = true;
                slots[i].status = ItemStatus::Skipped;
                slots[i].layer = Some(info.clone());
                layers.insert(items[i].key.clone(), info);
            }
        }
    }
    emit(Progress::Planned {
        total: items.len(),
        to_push: skipped.iter().filter(|s| !**s).count(),
    });

    // (2) Layers.
    let jobs = Arc::new(Semaphore::new(options.jobs.max(1)));
    let layer_tasks = items
        .iter()
        .enumerate()
        .filter(|(i, it)| !skipped[*i] && it.layer.is_some())
        .map(|(i, it)| {
            let jobs = jobs.clone();
            let options = options.clone();
            let target = target.clone();
            let source = it.layer.clone().expect("filtered");
            async move {
                let start = Instant::now();
                let r = make_layer(client, &target, &source, &options, &jobs).await;
                (i, r, start.elapsed())
            }
        });
    let outcomes: Vec<_> = stream::iter(layer_tasks.collect::<Vec<_>>())
        .buffer_unordered(items.len().max(1))
        .collect()
        .await;
    for (i, outcome, elapsed) in outcomes {
        let item = &items[i];
        let slot = &mut slots[i];
        slot.layer_seconds = elapsed.as_secs_f64();
        match outcome {
            Ok(made) => {
                emit(Progress::LayerDone {
                    key: item.key.clone(),
                    tag: item.tag.clone(),
                    digest: made.info.digest.clone(),
                    size: made.info.size,
                    seconds: slot.layer_seconds,
                });
                slot.layer = Some(made.info.clone());
                slot.layer_uploaded = made.uploaded;
                slot.relocation = made.relocation;
                layers.insert(item.key.clone(), made.info);
            }
            Err(e) => {
                emit(Progress::LayerFailed {
                    key: item.key.clone(),
                    tag: item.tag.clone(),
                    error: e.to_string(),
                });
                slot.status = ItemStatus::Failed;
                slot.error = Some(e);
            }
        }
    }

    // (3) Base images per architecture, only for items that still need a manifest.
    let needs_manifest: Vec<usize> = (0..items.len())
        .filter(|&i| !skipped[i] && slots[i].status != ItemStatus::Failed)
        .collect();
    let archs: BTreeSet<String> = needs_manifest
        .iter()
        .map(|&i| items[i].architecture.clone())
        .collect();
    let mut bases: HashMap<String, std::result::Result<(Value, Value), Error>> = HashMap::new();
    for arch in archs {
        let base = match &base_image {
            None => Ok((default_manifest(), default_config(&arch, "linux"))),
            Some(b) => copy_missing_layers(client, b, &target, &arch)
                .await
                .map(|im| (im.0, im.1)),
        };
        bases.insert(arch, base);
    }

    // (4) Configs and manifests. A layer that vanished before its manifest went up is
    // made again from its source (see `Reupload`).
    let reupload = Reupload {
        sources: items
            .iter()
            .zip(&slots)
            .filter_map(|(it, s)| Some((s.layer.as_ref()?.digest.clone(), it.layer.as_ref()?)))
            .collect(),
        base_image: base_image.as_ref(),
        options: &options,
        jobs: &jobs,
    };
    let manifest_tasks = needs_manifest.iter().map(|&i| {
        let item = &items[i];
        let base = &bases[&item.architecture];
        let layers = &layers;
        let target = &target;
        let reupload = &reupload;
        async move {
            let r = match base {
                Ok((bm, bc)) => put_image(client, target, item, (bm, bc), layers, reupload).await,
                Err(e) => Err(e
                    .clone()
                    .context(format!("base image for {}", item.architecture))),
            };
            (i, r)
        }
    });
    let outcomes: Vec<_> = stream::iter(manifest_tasks.collect::<Vec<_>>())
        .buffer_unordered(64)
        .collect()
        .await;
    for (i, r) in outcomes {
        let item = &items[i];
        let slot = &mut slots[i];
        match r {
            Ok((digest, size)) => {
                emit(Progress::ManifestDone {
                    key: item.key.clone(),
                    tag: item.tag.clone(),
                    digest: digest.clone(),
                });
                slot.manifest_digest = Some(digest);
                slot.manifest_size = Some(size);
                slot.status = ItemStatus::Pushed;
            }
            Err(e) => {
                emit(Progress::ManifestFailed {
                    key: item.key.clone(),
                    tag: item.tag.clone(),
                    error: e.to_string(),
                });
                slot.status = ItemStatus::Failed;
                slot.error = Some(e);
            }
        }
    }
    slots
}

/// For every item with a layer: its layer info if its tag exists with a usable manifest.
async fn existing_layers(
    client: &Client,
    target: &Reference,
    items: &[PushItem],
) -> Vec<Option<LayerInfo>> {
    // One tag listing replaces a manifest GET per missing item. If listing fails, check
    // every tag directly, as Spack does.
    let tags: Option<BTreeSet<String>> = client
        .list_tags(target)
        .await
        .ok()
        .map(|t| t.into_iter().collect());
    let tasks = items.iter().map(|it| {
        let tags = &tags;
        async move {
            if it.layer.is_none() || tags.as_ref().is_some_and(|t| !t.contains(&it.tag)) {
                return None;
            }
            blob_info(client, &target.with_tag(&it.tag)).await.ok()
        }
    });
    stream::iter(tasks.collect::<Vec<_>>())
        .buffered(64)
        .collect()
        .await
}

/// Spack's `_oci_get_blob_info`: the last layer of an existing image and its diff_id.
pub async fn blob_info(client: &Client, reference: &Reference) -> Result<LayerInfo> {
    let im = client
        .get_manifest_and_config(reference, "amd64", 3)
        .await?;
    let layer =
        im.manifest.layers()?.pop().ok_or_else(|| {
            Error::invalid_response(format!("{reference}: manifest has no layers"))
        })?;
    let diff_id = im
        .config
        .pointer("/rootfs/diff_ids")
        .and_then(Value::as_array)
        .and_then(|a| a.last())
        .and_then(Value::as_str)
        .ok_or_else(|| {
            Error::invalid_response(format!("{reference}: config has no rootfs.diff_ids"))
        })?;
    Ok(LayerInfo {
        digest: layer.digest,
        diff_id: Digest::parse(diff_id)?,
        size: layer.size,
    })
}

struct MadeLayer {
    info: LayerInfo,
    uploaded: bool,
    relocation: Option<RelocationLists>,
}

async fn make_layer(
    client: &Client,
    target: &Reference,
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
            let uploaded = client
                .upload_blob(target, &BlobSource::File(path.clone()), &digest, false)
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
                return small_prefix(client, target, path, topts, buildinfo, jobs).await;
            }
            if options.stream_layers {
                match stream_prefix(client, target, path, topts, buildinfo, jobs).await {
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
            let uploaded = client
                .upload_blob(target, &BlobSource::File(tmp.to_path_buf()), &digest, false)
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
    client: &Client,
    target: &Reference,
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
    client
        .upload_blob(
            target,
            &BlobSource::Bytes(Bytes::from(bytes)),
            &digest,
            true,
        )
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

/// Bytes sent per chunk from the tarball thread to the upload.
const STREAM_CHUNK: usize = 1 << 20;

struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(STREAM_CHUNK),
        ));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the upload stopped"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= STREAM_CHUNK {
            self.send_buf()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buf()
    }
}

/// Archive a prefix on a blocking thread and stream it into a PATCH upload. Retried as a
/// whole (the tarball is reproducible, so a retry sends the same bytes).
async fn stream_prefix(
    client: &Client,
    target: &Reference,
    prefix: &Path,
    topts: &TarballOptions,
    buildinfo: &BuildinfoFn,
    jobs: &Semaphore,
) -> Result<MadeLayer> {
    // One retry state for the whole layer: its POSTs and whole-stream retries share it.
    let mut retrier = client.retrier();
    let what = format!(
        "uploading the tarball of {} to {}",
        prefix.display(),
        target.repository()
    );
    loop {
        // Open the upload session before taking a CPU slot: the slot is for archiving, not for
        // waiting on the network. It is given back as soon as the tarball is written.
        let (location, _) = client
            .start_upload_with(target, &what, &mut retrier)
            .await?;
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
        let result = client
            .upload_stream_to(target, location, body, finish, &what)
            .await;
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

fn tokio_stream_from(
    rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
) -> impl futures_util::Stream<Item = io::Result<Bytes>> + Send + 'static {
    stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

/// Digest and size of a `.tar.gz` file, and the digest of its uncompressed tar (diff_id).
fn hash_tarball(path: &Path, known_diff_id: Option<Digest>) -> Result<(Digest, u64, Digest)> {
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

/// Spack's `default_manifest()`.
pub fn default_manifest() -> Value {
    json!({
        "mediaType": media_types::OCI_MANIFEST,
        "schemaVersion": 2,
        "config": {"mediaType": media_types::OCI_CONFIG},
        "layers": [],
    })
}

/// Spack's `default_config(architecture, os)`.
pub fn default_config(architecture: &str, os: &str) -> Value {
    json!({
        "architecture": architecture,
        "os": os,
        "rootfs": {"type": "layers", "diff_ids": []},
        "config": {"Env": []},
    })
}

/// Spack's `_oci_retrieve_env_dict_from_config` as a list: `PATH` defaults to
/// `/bin:/usr/bin`, then the base image's entries.
pub fn base_env(config: &Value) -> Vec<String> {
    let mut env: Vec<(String, String)> = vec![("PATH".into(), "/bin:/usr/bin".into())];
    if let Some(entries) = config.pointer("/config/Env").and_then(Value::as_array) {
        for e in entries.iter().filter_map(Value::as_str) {
            let (k, v) = e.split_once('=').unwrap_or((e, ""));
            if let Some(slot) = env.iter_mut().find(|(key, _)| key == k) {
                slot.1 = v.to_string();
            } else {
                env.push((k.to_string(), v.to_string()));
            }
        }
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// Copy the layers of `src` (for `architecture`) that `dst` lacks; return the base manifest
/// and config (Spack's `copy_missing_layers`).
pub async fn copy_missing_layers(
    client: &Client,
    src: &Reference,
    dst: &Reference,
    architecture: &str,
) -> Result<(Value, Value)> {
    let im = client.get_manifest_and_config(src, architecture, 3).await?;
    let layers = im.manifest.layers()?;
    let tasks = layers.iter().map(|l| async move {
        if client.blob_exists(dst, &l.digest).await? {
            return Ok(());
        }
        client.copy_blob(src, dst, &l.digest, l.size).await
    });
    let results: Vec<Result<()>> = stream::iter(tasks.collect::<Vec<_>>())
        .buffer_unordered(8)
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<()>>>()?;
    Ok((im.manifest.json, im.config))
}

/// What a push can upload again when a manifest PUT says a blob is missing (`BLOB_UNKNOWN`:
/// garbage collection or a concurrent delete between the layer upload and the manifest).
struct Reupload<'a> {
    /// The layers this push made or found, by digest, with their sources.
    sources: HashMap<Digest, &'a LayerSource>,
    base_image: Option<&'a Reference>,
    options: &'a PushOptions,
    jobs: &'a Semaphore,
}

/// Compose the config and manifest of one item (Spack's `_oci_put_manifest`) and upload both.
/// A manifest refused for a missing blob gets its missing blobs uploaded again (config,
/// layers re-made from their tarball or prefix, base layers copied again), then one more PUT.
async fn put_image(
    client: &Client,
    target: &Reference,
    item: &PushItem,
    (base_manifest, base_config): (&Value, &Value),
    layers: &HashMap<String, LayerInfo>,
    reupload: &Reupload<'_>,
) -> Result<(Digest, u64)> {
    let (config_bytes, manifest_bytes, media_type) =
        compose_image(item, base_manifest, base_config, layers)?;
    let reference = target.with_tag(&item.tag);
    let config_digest = Digest::of_bytes(&config_bytes);
    let config_bytes = Bytes::from(config_bytes);
    let manifest_bytes = Bytes::from(manifest_bytes);
    // No HEAD first: a config holds a timestamp, so it is new on every push (a HEAD would
    // cost a round trip per item for nothing).
    client
        .upload_blob(
            &reference,
            &BlobSource::Bytes(config_bytes.clone()),
            &config_digest,
            true,
        )
        .await?;
    match client
        .put_manifest(&reference, manifest_bytes.clone(), &media_type, false)
        .await
    {
        Err(e) if crate::registry::is_missing_blob_error(&e) => {
            tracing::info!(error = %e, "blobs vanished before the manifest; uploading them again");
            let manifest: Value = serde_json::from_slice(&manifest_bytes)
                .map_err(|j| Error::invalid_input(format!("composed manifest: {j}")))?;
            for (label, digest) in client.missing_blobs(&reference, &manifest).await? {
                if digest == config_digest {
                    let source = BlobSource::Bytes(config_bytes.clone());
                    client
                        .upload_blob(&reference, &source, &digest, true)
                        .await?;
                } else if let Some(source) = reupload.sources.get(&digest) {
                    let made =
                        make_layer(client, target, source, reupload.options, reupload.jobs).await?;
                    if made.info.digest != digest {
                        return Err(e.context(format!(
                            "{digest} ({label}) was made again but came out as {}",
                            made.info.digest
                        )));
                    }
                } else if let (Some(base), Some(size)) =
                    (reupload.base_image, layer_size(base_manifest, &digest))
                {
                    client.copy_blob(base, target, &digest, size).await?;
                } else {
                    return Err(e.context(format!(
                        "{digest} ({label}) cannot be uploaded again: this push did not make it"
                    )));
                }
            }
            client
                .put_manifest(&reference, manifest_bytes, &media_type, false)
                .await
        }
        r => r,
    }
}

/// The size of layer `digest` of a manifest, if it has that layer.
fn layer_size(manifest: &Value, digest: &Digest) -> Option<u64> {
    manifest
        .get("layers")?
        .as_array()?
        .iter()
        .find(|l| l.get("digest").and_then(Value::as_str) == Some(&digest.to_string()))?
        .get("size")?
        .as_u64()
}

/// The exact config and manifest bytes of an item, and the manifest media type.
pub fn compose_image<S: std::hash::BuildHasher>(
    item: &PushItem,
    base_manifest: &Value,
    base_config: &Value,
    layers: &HashMap<String, LayerInfo, S>,
) -> Result<(Vec<u8>, Vec<u8>, String)> {
    let keys: Vec<String> = if item.layers.is_empty() {
        vec![item.key.clone()]
    } else {
        item.layers.clone()
    };
    let own: Vec<&LayerInfo> = keys.iter().filter_map(|k| layers.get(k)).collect();
    let media_type = base_manifest
        .get("mediaType")
        .and_then(Value::as_str)
        .unwrap_or(media_types::OCI_MANIFEST)
        .to_string();
    let docker = media_type == media_types::DOCKER_MANIFEST;

    let mut config = base_config.clone();
    let obj = config
        .as_object_mut()
        .ok_or_else(|| Error::invalid_response("base image config is not a JSON object"))?;
    let rootfs = obj
        .entry("rootfs")
        .or_insert_with(|| json!({"type": "layers", "diff_ids": []}));
    let diff_ids = rootfs
        .as_object_mut()
        .ok_or_else(|| Error::invalid_response("base image config: rootfs is not an object"))?
        .entry("diff_ids")
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .ok_or_else(|| {
            Error::invalid_response("base image config: rootfs.diff_ids is not a list")
        })?;
    for l in &own {
        diff_ids.push(Value::String(l.diff_id.to_string()));
    }
    let env = item.env.clone().unwrap_or_else(|| base_env(base_config));
    let cfg = obj.entry("config").or_insert_with(|| json!({}));
    let cfg = cfg
        .as_object_mut()
        .ok_or_else(|| Error::invalid_response("base image config: config is not an object"))?;
    cfg.insert(
        "Env".into(),
        Value::Array(env.into_iter().map(Value::String).collect()),
    );
    if let Some(extra) = &item.extra_config {
        let mut extra = extra.clone();
        if item.fill_checksum {
            let info = layers.get(&item.key).ok_or_else(|| {
                Error::invalid_input(format!(
                    "{}: fill_checksum needs the item's own layer",
                    item.tag
                ))
            })?;
            extra.insert(
                "binary_cache_checksum".into(),
                json!({"hash_algorithm": "sha256", "hash": info.digest.hex()}),
            );
            extra.insert("archive_size".into(), json!(info.size));
        }
        for (k, v) in extra {
            obj.insert(k, v);
        }
    }
    let config_bytes = to_compact_json(&config);
    let config_digest = Digest::of_bytes(&config_bytes);

    let config_media_type = base_manifest
        .pointer("/config/mediaType")
        .and_then(Value::as_str)
        .unwrap_or(media_types::OCI_CONFIG);
    let layer_type = if docker {
        media_types::DOCKER_LAYER_GZIP
    } else {
        media_types::OCI_LAYER_GZIP
    };
    let mut manifest_layers: Vec<Value> = base_manifest
        .get("layers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for l in &own {
        manifest_layers
            .push(json!({"mediaType": layer_type, "digest": l.digest.to_string(), "size": l.size}));
    }
    let mut manifest = Map::new();
    manifest.insert("mediaType".into(), Value::String(media_type.clone()));
    manifest.insert("schemaVersion".into(), json!(2));
    manifest.insert(
        "config".into(),
        json!({"mediaType": config_media_type, "digest": config_digest.to_string(), "size": config_bytes.len()}),
    );
    manifest.insert("layers".into(), Value::Array(manifest_layers));
    if !docker {
        if let Some(a) = item.annotations.as_ref().filter(|a| !a.is_empty()) {
            manifest.insert("annotations".into(), Value::Object(a.clone()));
        }
    }
    Ok((
        config_bytes,
        to_compact_json(&Value::Object(manifest)),
        media_type,
    ))
}
