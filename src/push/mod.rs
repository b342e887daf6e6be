//! A whole push plan in one call: one runtime, one connection pool, one token cache.
//!
//! Phases, each concurrent: (1) [`plan`]: find what exists (list tags once, then fetch
//! manifest and config only of the tags that exist); (2) [`layers`]: make and upload the
//! layers (tarballs on disk are hashed and uploaded monolithically; install prefixes are
//! archived on blocking threads and streamed straight into the upload); (3) copy the base
//! image's layers per architecture; (4) [`image`]: compose and upload the image config and
//! manifest of every item whose layers are all present. One failing item does not stop the
//! others.

mod image;
mod layers;
mod plan;
mod streaming;

pub use crate::registry::LayerInfo;
pub use image::{base_env, compose_image, default_config, default_manifest};
pub use layers::SMALL_PREFIX;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use futures_util::stream::{self, StreamExt};
use serde_json::{Map, Value};
use tokio::sync::Semaphore;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::progress::{ByteProgress, Share};
use crate::reference::Reference;
use crate::registry::Repository;
use crate::sign::Signer;
use crate::tarball::{RelocationLists, TarballOptions};
use crate::transport::Client;
use image::{put_image, Reupload};
use layers::make_layer;
use plan::{existing_layers, Existing};

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
    /// Byte progress of the layers being made (at most every 100 ms, and once when all
    /// are): `done` of `total` input bytes, where a prefix's input is the file contents its
    /// tarball reads (counted as they are read) and a tarball file's is its length (counted
    /// once uploaded). `total` is summed before the first layer starts and corrected as
    /// layers end; at the end `done == total`.
    Bytes { done: u64, total: u64 },
}

pub type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

/// A push plan.
pub struct PushPlan {
    pub target: Reference,
    pub base_image: Option<Reference>,
    pub items: Vec<PushItem>,
    /// Layers already known from elsewhere (an earlier push), by key.
    pub known_layers: HashMap<String, LayerInfo>,
    /// The repository's tags, listed by the caller just before: the push does not list
    /// them again. `None`: listed by the push (unless `force`).
    pub listed_tags: Option<BTreeSet<String>>,
    pub options: PushOptions,
    pub progress: Option<ProgressFn>,
    /// Sign every image whose manifest this push uploads (cosign layout, [`crate::sign`]).
    pub signer: Option<Arc<Signer>>,
}

/// Run a push plan. Never fails as a whole for one item: per-item errors are in the results;
/// errors that concern everything (an invalid base image) fail every item that needs it.
pub async fn push(client: &Client, plan: PushPlan) -> Vec<ItemResult> {
    let PushPlan {
        target,
        base_image,
        items,
        known_layers,
        listed_tags,
        options,
        progress,
        signer,
    } = plan;
    let mut run = Run {
        target: client.repository(&target),
        base_image: base_image.map(|b| client.repository(&b)),
        slots: items.iter().map(ItemResult::new).collect(),
        skipped: vec![false; items.len()],
        items,
        layers: known_layers,
        jobs: Arc::new(Semaphore::new(options.jobs.max(1))),
        options,
        progress,
        signer,
    };
    run.check_local();
    run.find_existing(listed_tags).await;
    run.make_layers().await;
    let needs_manifest: Vec<usize> = (0..run.items.len())
        .filter(|&i| !run.skipped[i] && run.slots[i].status != ItemStatus::Failed)
        .collect();
    let bases = run.bases(&needs_manifest).await;
    run.put_images(&needs_manifest, &bases).await;
    run.slots
}

impl ItemResult {
    fn new(it: &PushItem) -> Self {
        Self {
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
        }
    }

    fn fail(&mut self, e: Error) {
        self.status = ItemStatus::Failed;
        self.error = Some(e);
    }
}

/// The state of one push between its phases.
struct Run {
    target: Repository,
    base_image: Option<Repository>,
    items: Vec<PushItem>,
    slots: Vec<ItemResult>,
    /// Items with nothing more to do (their tag exists, or they failed locally).
    skipped: Vec<bool>,
    layers: HashMap<String, LayerInfo>,
    options: PushOptions,
    jobs: Arc<Semaphore>,
    progress: Option<ProgressFn>,
    signer: Option<Arc<Signer>>,
}

type Bases = HashMap<String, Result<(Value, Value)>>;

impl Run {
    fn emit(&self, p: Progress) {
        if let Some(f) = &self.progress {
            f(p);
        }
    }

    /// (0) Local before remote: an item whose tarball or prefix cannot be read fails now,
    /// and sends no request.
    fn check_local(&mut self) {
        for (i, item) in self.items.iter().enumerate() {
            if let Err(e) = item.layer.as_ref().map_or(Ok(()), plan::check_local) {
                self.skipped[i] = true;
                self.slots[i].fail(e);
            }
        }
    }

    /// (1) What exists already (among `listed` tags, when the caller listed them).
    async fn find_existing(&mut self, listed: Option<BTreeSet<String>>) {
        if !self.options.force && self.skipped.iter().any(|s| !*s) {
            let (existing, tags) =
                existing_layers(&self.target, &self.items, &self.layers, listed).await;
            if let (Some(signer), Some(tags)) = (&self.signer, tags) {
                signer.assume_listed(tags.into_iter().collect());
            }
            for (i, found) in existing.into_iter().enumerate() {
                let Existing::Yes(info) = found else { continue };
                if self.skipped[i] {
                    continue;
                }
                self.skipped[i] = true;
                self.slots[i].status = ItemStatus::Skipped;
                if let Some(info) = info {
                    self.slots[i].layer = Some(info.clone());
                    self.layers.insert(self.items[i].key.clone(), info);
                }
            }
        }
        self.emit(Progress::Planned {
            total: self.items.len(),
            to_push: self.skipped.iter().filter(|s| !**s).count(),
        });
    }

    /// (2) Layers, made and uploaded concurrently (CPU work `jobs` at a time).
    async fn make_layers(&mut self) {
        let this = &*self;
        let todo: Vec<usize> = (0..this.items.len())
            .filter(|&i| !this.skipped[i] && this.items[i].layer.is_some())
            .collect();
        let (bytes, shares) = this.byte_shares(&todo).await;
        let tasks = todo
            .iter()
            .zip(shares)
            .map(|(&i, share)| async move {
                let start = Instant::now();
                let layer = this.items[i].layer.as_ref().expect("filtered");
                let source = layers::with_share(layer, share.as_ref());
                let r = make_layer(&this.target, &source, &this.options, &this.jobs).await;
                if let Some(s) = share {
                    s.end(r.is_ok());
                }
                (i, r, start.elapsed())
            })
            .collect::<Vec<_>>();
        // The signature config goes up while the layers do (the signatures need it later).
        let preload = async {
            if let Some(s) = this.signer.as_deref().filter(|_| !todo.is_empty()) {
                s.preload_config(&this.target).await;
            }
        };
        let (outcomes, ()): (Vec<_>, ()) = tokio::join!(
            stream::iter(tasks)
                .buffer_unordered(this.items.len().max(1))
                .collect(),
            preload
        );
        if let Some(b) = bytes {
            b.finish();
        }
        for (i, outcome, elapsed) in outcomes {
            let (key, tag) = (self.items[i].key.clone(), self.items[i].tag.clone());
            self.slots[i].layer_seconds = elapsed.as_secs_f64();
            match outcome {
                Ok(made) => {
                    self.emit(Progress::LayerDone {
                        key: key.clone(),
                        tag,
                        digest: made.info.digest.clone(),
                        size: made.info.size,
                        seconds: elapsed.as_secs_f64(),
                    });
                    let slot = &mut self.slots[i];
                    slot.layer = Some(made.info.clone());
                    slot.layer_uploaded = made.uploaded;
                    slot.relocation = made.relocation;
                    self.layers.insert(key, made.info);
                }
                Err(e) => {
                    let error = e.to_string();
                    self.emit(Progress::LayerFailed { key, tag, error });
                    self.slots[i].fail(e);
                }
            }
        }
    }

    /// With a progress callback: the byte progress of the layers `todo` and one share of it
    /// per layer, expected to be its input size (see [`Progress::Bytes`]).
    async fn byte_shares(
        &self,
        todo: &[usize],
    ) -> (Option<Arc<ByteProgress>>, Vec<Option<Arc<Share>>>) {
        let Some(f) = self.progress.clone().filter(|_| !todo.is_empty()) else {
            return (None, vec![None; todo.len()]);
        };
        let sources: Vec<LayerSource> = todo
            .iter()
            .filter_map(|&i| self.items[i].layer.clone())
            .collect();
        let sizes = tokio::task::spawn_blocking(move || {
            sources.iter().map(layers::input_size).collect::<Vec<_>>()
        })
        .await
        .unwrap_or_else(|_| vec![0; todo.len()]);
        let bytes = ByteProgress::new(Arc::new(move |done, total| {
            f(Progress::Bytes { done, total });
        }));
        let shares = sizes.iter().map(|&n| Some(Share::new(&bytes, n))).collect();
        (Some(bytes), shares)
    }

    /// (3) Base images per architecture, only for items that still need a manifest.
    async fn bases(&self, needs_manifest: &[usize]) -> Bases {
        let archs: BTreeSet<String> = needs_manifest
            .iter()
            .map(|&i| self.items[i].architecture.clone())
            .collect();
        let mut bases = Bases::new();
        for arch in archs {
            let base = match &self.base_image {
                None => Ok((default_manifest(), default_config(&arch, "linux"))),
                Some(b) => self.target.copy_missing_layers(b, &arch).await,
            };
            bases.insert(arch, base);
        }
        bases
    }

    /// (4) Configs and manifests. A layer that vanished before its manifest went up is
    /// made again from its source (see `Reupload`).
    async fn put_all(
        &self,
        needs_manifest: &[usize],
        bases: &Bases,
    ) -> Vec<(usize, Result<(Digest, u64)>)> {
        let reupload = Reupload {
            sources: self
                .items
                .iter()
                .zip(&self.slots)
                .filter_map(|(it, s)| Some((s.layer.as_ref()?.digest.clone(), it.layer.as_ref()?)))
                .collect(),
            base_image: self.base_image.as_ref(),
            options: &self.options,
            jobs: &self.jobs,
        };
        let tasks = needs_manifest.iter().map(|&i| {
            let item = &self.items[i];
            let (layers, reupload, signer) = (&self.layers, &reupload, self.signer.as_deref());
            async move {
                let r = match &bases[&item.architecture] {
                    Ok((bm, bc)) => {
                        put_image(&self.target, item, (bm, bc), layers, reupload, signer).await
                    }
                    Err(e) => Err(e
                        .clone()
                        .context(format!("base image for {}", item.architecture))),
                };
                (i, r)
            }
        });
        stream::iter(tasks.collect::<Vec<_>>())
            .buffer_unordered(64)
            .collect()
            .await
    }

    async fn put_images(&mut self, needs_manifest: &[usize], bases: &Bases) {
        let outcomes = self.put_all(needs_manifest, bases).await;
        for (i, r) in outcomes {
            let (key, tag) = (self.items[i].key.clone(), self.items[i].tag.clone());
            match r {
                Ok((digest, size)) => {
                    self.emit(Progress::ManifestDone {
                        key,
                        tag,
                        digest: digest.clone(),
                    });
                    let slot = &mut self.slots[i];
                    slot.manifest_digest = Some(digest);
                    slot.manifest_size = Some(size);
                    slot.status = ItemStatus::Pushed;
                }
                Err(e) => {
                    let error = e.to_string();
                    self.emit(Progress::ManifestFailed { key, tag, error });
                    self.slots[i].fail(e);
                }
            }
        }
    }
}
