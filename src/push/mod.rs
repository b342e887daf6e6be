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
use crate::reference::Reference;
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
    let target = client.repository(&target);
    let base_image = base_image.map(|b| client.repository(&b));
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
        let existing = existing_layers(&target, &items, &layers).await;
        for (i, found) in existing.into_iter().enumerate() {
            if let Existing::Yes(info) = found {
                skipped[i] = true;
                slots[i].status = ItemStatus::Skipped;
                if let Some(info) = info {
                    slots[i].layer = Some(info.clone());
                    layers.insert(items[i].key.clone(), info);
                }
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
                let r = make_layer(&target, &source, &options, &jobs).await;
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
            Some(b) => target.copy_missing_layers(b, &arch).await,
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
                Ok((bm, bc)) => put_image(target, item, (bm, bc), layers, reupload).await,
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
