//! Keeping `index.spack` current at a cost that depends on what changed:
//!
//! - [`rebuild`] (`spack buildcache update-index`): list the tags; for a tag the stored
//!   [`IndexState`] knows, one HEAD tells whether its manifest moved — unchanged tags take
//!   their records from the previous index, the others (and every tag on a first run) get
//!   their manifest and config fetched. The index stays the source of truth: it is written
//!   from the tags, in tag order, exactly as Spack writes it.
//! - [`merge`] (`push --update-index`): read the current index, add the specs just pushed,
//!   upload. No tag listing. Before the final PUT the index manifest digest is compared with
//!   the one merged into; when another pusher got there first, merge into theirs and try
//!   again; after the PUT, check once more (a pusher that checked just before ours would
//!   overwrite it), bounded by `attempts`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::join_all;
use futures_util::stream::{self, StreamExt};
use reqwest::header::ACCEPT;
use reqwest::Method;
use serde_json::json;

use super::db::{read_config, Database, SpackReader, SpecRecords};
use super::node::Targets;
use super::state::{IndexState, TagEntry, STATE_MEDIA_TYPE};
use super::SkippedTag;
use crate::digest::Digest;
use crate::error::{Error, ErrorKind, Result};
use crate::media_types;
use crate::reference::{tag_is_spec, Reference, INDEX_TAG};
use crate::registry::{to_compact_json, BlobSource, Repository, MAX_CONFIG_SIZE};
use crate::sign::image::{Prepared, Signer};
use crate::transport::Client;

/// What the database needs from Spack (see [`read_config`]).
#[derive(Clone, Copy)]
pub struct DbInputs<'a> {
    pub targets: &'a Targets,
    pub spack: Option<SpackReader<'a>>,
}

/// How an update went.
#[derive(Clone, Debug, Default)]
pub struct IndexUpdate {
    /// `"rebuild"` or `"merge"`.
    pub mode: &'static str,
    /// Why a merge became a rebuild (no index yet, an unreadable one).
    pub note: Option<String>,
    pub manifest_digest: Option<Digest>,
    /// Specs in the index (records marked `in_buildcache`) and all records.
    pub specs: usize,
    pub records: usize,
    /// Spec tags listed (rebuild) or pushed (merge).
    pub spec_tags: usize,
    /// Configs fetched, and tags whose records came from the previous index.
    pub fetched: usize,
    pub reused: usize,
    pub skipped: Vec<SkippedTag>,
    /// Merge rounds (1 when no other pusher interfered).
    pub attempts: u32,
    /// False when concurrent pushers kept replacing the index until `attempts` ran out.
    pub settled: bool,
}

/// The index currently in the repository.
struct Current {
    manifest: Digest,
    db: std::result::Result<Database, String>,
    state: IndexState,
}

async fn read_current(repo: &Repository) -> Result<Option<Current>> {
    let manifest = match repo.get_manifest(INDEX_TAG).await {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let layers = manifest.layers()?;
    let index = layers.first().ok_or_else(|| {
        Error::invalid_response(format!("{}: the index manifest has no layers", repo.name()))
    })?;
    let state_layer = layers.iter().find(|l| l.media_type == STATE_MEDIA_TYPE);
    let (bytes, state) = tokio::join!(repo.fetch_blob_bytes(&index.digest, 1 << 30), async {
        match state_layer {
            Some(l) => repo.fetch_blob_bytes(&l.digest, 1 << 30).await.ok(),
            None => None,
        }
    });
    let state = state.and_then(|s| IndexState::parse(&s, &index.digest));
    Ok(Some(Current {
        manifest: manifest.digest,
        db: Database::parse(&bytes?),
        state: state.unwrap_or_default(),
    }))
}

/// The manifest digest of `tag`, with one HEAD (a GET where the registry sends no digest).
async fn head_manifest(repo: &Repository, tag: &str) -> Result<Digest> {
    let target = repo.target(tag)?;
    let what = format!("checking manifest {target}");
    let req = repo
        .request(Method::HEAD, target.manifest_url(), false, &what)
        .header(ACCEPT, &media_types::accept_all());
    let resp = repo.client().send(&req).await?;
    if !resp.status().is_success() {
        return Err(crate::transport::error_from_response(resp, &what).await);
    }
    match resp.header("docker-content-digest").map(Digest::parse) {
        Some(Ok(d)) => Ok(d),
        _ => Ok(repo.get_manifest(tag).await?.digest),
    }
}

/// A spec tag's manifest and config, fetched.
pub(crate) struct Fetched {
    pub tag: String,
    pub manifest: Digest,
    pub config_digest: Digest,
    pub config: Bytes,
}

pub(crate) async fn fetch_tag(
    repo: &Repository,
    tag: String,
) -> std::result::Result<Fetched, SkippedTag> {
    let skip = |tag: &str, reason: String| SkippedTag {
        tag: tag.to_owned(),
        reason,
    };
    let manifest = match repo.get_manifest(&tag).await {
        Ok(m) if m.is_index() => {
            return Err(skip(&tag, "is an image index, not a Spack image".into()))
        }
        Ok(m) => m,
        Err(e) => return Err(skip(&tag, e.to_string())),
    };
    let desc = manifest.config().map_err(|e| skip(&tag, e.to_string()))?;
    match repo.fetch_blob_bytes(&desc.digest, MAX_CONFIG_SIZE).await {
        Ok(config) => Ok(Fetched {
            tag,
            manifest: manifest.digest,
            config_digest: desc.digest,
            config,
        }),
        Err(e) => Err(skip(&tag, e.to_string())),
    }
}

/// One tag's records, ready to add, or why it is left out.
type TagRecords = std::result::Result<(String, TagEntry, SpecRecords), SkippedTag>;

fn records_of(f: Fetched, inputs: DbInputs<'_>) -> TagRecords {
    match read_config(&f.config, inputs.targets, inputs.spack) {
        Ok(records) => {
            let entry = TagEntry {
                manifest: f.manifest.to_string(),
                config: f.config_digest.to_string(),
                hash: records.root().to_owned(),
            };
            Ok((f.tag, entry, records))
        }
        Err(reason) => Err(SkippedTag { tag: f.tag, reason }),
    }
}

/// A tag's records, read just now (by a merge that turned into a rebuild).
type Known<'a> = HashMap<&'a str, &'a (String, TagEntry, SpecRecords)>;

/// A tag of a rebuild: read just now (`known`), unchanged since `previous` (one HEAD,
/// records reused) or fetched.
async fn rebuild_tag(
    repo: &Repository,
    tag: String,
    previous: Option<(&Database, &IndexState)>,
    known: &Known<'_>,
    inputs: DbInputs<'_>,
) -> (TagRecords, bool) {
    if let Some(r) = known.get(tag.as_str()) {
        return (Ok((*r).clone()), false);
    }
    if let Some((db, state)) = previous.filter(|(_, s)| s.tags.contains_key(&tag)) {
        let head = match head_manifest(repo, &tag).await {
            Ok(d) => d,
            Err(e) => {
                return (
                    Err(SkippedTag {
                        tag,
                        reason: e.to_string(),
                    }),
                    false,
                )
            }
        };
        if let Some(entry) = state.unchanged(&tag, &head) {
            if let Ok(records) = SpecRecords::from_database(db, &entry.hash) {
                return (Ok((tag, entry.clone(), records)), true);
            }
        }
    }
    match fetch_tag(repo, tag).await {
        Ok(f) => (records_of(f, inputs), false),
        Err(s) => (Err(s), false),
    }
}

/// Add `records` in order to `db` and `state`; the rest go to `update.skipped`.
fn add_all(
    db: &mut Database,
    state: &mut IndexState,
    records: Vec<TagRecords>,
    update: &mut IndexUpdate,
) {
    for r in records {
        match r {
            Ok((tag, entry, records)) => {
                db.add(&records);
                state.tags.insert(tag, entry);
            }
            Err(s) => {
                tracing::warn!(tag = %s.tag, reason = %s.reason, "skipping tag");
                update.skipped.push(s);
            }
        }
    }
}

/// `spack buildcache update-index`: the index written from the tags.
pub async fn rebuild(
    client: &Client,
    reference: &Reference,
    inputs: DbInputs<'_>,
    concurrency: usize,
    signer: Option<&Signer>,
) -> Result<IndexUpdate> {
    rebuild_knowing(client, reference, inputs, concurrency, signer, &[]).await
}

/// [`rebuild`], with the records of some tags read already (`known`).
async fn rebuild_knowing(
    client: &Client,
    reference: &Reference,
    inputs: DbInputs<'_>,
    concurrency: usize,
    signer: Option<&Signer>,
    known: &[TagRecords],
) -> Result<IndexUpdate> {
    let known: Known<'_> = known
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|r| (r.0.as_str(), r))
        .collect();
    let repo = &client.repository(reference);
    let (tags, current, ()) =
        tokio::join!(repo.list_tags(), read_current(repo), preload(signer, repo));
    let tags: Vec<String> = tags?.into_iter().filter(|t| tag_is_spec(t)).collect();
    // A previous index that cannot be read is only a cache miss for a rebuild.
    let current = current.ok().flatten();
    let previous = current
        .as_ref()
        .and_then(|c| c.db.as_ref().ok().map(|db| (db, &c.state)));
    let mut update = IndexUpdate {
        mode: "rebuild",
        spec_tags: tags.len(),
        ..IndexUpdate::default()
    };
    let results: Vec<(TagRecords, bool)> = stream::iter(tags)
        .map(|tag| rebuild_tag(repo, tag, previous, &known, inputs))
        .buffered(concurrency.max(1))
        .collect()
        .await;
    let mut db = Database::new();
    let mut state = IndexState::default();
    let mut records = Vec::with_capacity(results.len());
    for (r, reused) in results {
        if reused {
            update.reused += 1;
        } else if r.is_ok() {
            update.fetched += 1;
        }
        records.push(r);
    }
    add_all(&mut db, &mut state, records, &mut update);
    let digest = upload(repo, &db, &mut state, signer).await?;
    update.manifest_digest = Some(digest);
    update.settled = true;
    update.attempts = 1;
    Ok(finish(update, &db))
}

/// The signature config uploaded (with a `signer`) while the index is read.
async fn preload(signer: Option<&Signer>, repo: &Repository) {
    if let Some(s) = signer {
        s.preload_config(repo).await;
    }
}

fn finish(mut update: IndexUpdate, db: &Database) -> IndexUpdate {
    update.records = db.len();
    update.specs = db.specs();
    update
}

/// An `index.spack` image made locally: its manifest (Spack's, with the index as
/// `layers[0]`) and the blobs it names — a `{}` config, the index, the state layer if any.
pub(crate) struct IndexImage {
    pub manifest: Bytes,
    /// Each blob, and whether it is new content for sure (no HEAD before its upload: the
    /// index and state change with every update, the `{}` config rarely is missing).
    blobs: Vec<(BlobSource, Digest, bool)>,
}

impl IndexImage {
    pub fn new(index: Bytes, state: Option<Bytes>) -> Self {
        let blobs: Vec<(&str, Bytes, bool)> = [
            Some((media_types::OCI_CONFIG, Bytes::from_static(b"{}"), false)),
            Some((media_types::OCI_LAYER_GZIP, index, true)),
            state.map(|s| (STATE_MEDIA_TYPE, s, true)),
        ]
        .into_iter()
        .flatten()
        .collect();
        let mut descs = Vec::with_capacity(blobs.len());
        let blobs = blobs
            .into_iter()
            .map(|(media_type, bytes, new)| {
                let digest = Digest::of_bytes(&bytes);
                descs.push(json!({"mediaType": media_type, "digest": digest.to_string(), "size": bytes.len()}));
                (BlobSource::Bytes(bytes), digest, new)
            })
            .collect();
        let mut descs = descs.into_iter();
        let config = descs.next();
        let manifest = json!({
            "mediaType": media_types::OCI_MANIFEST,
            "schemaVersion": 2,
            "config": config,
            "layers": descs.collect::<Vec<_>>(),
        });
        Self {
            manifest: Bytes::from(to_compact_json(&manifest)),
            blobs,
        }
    }

    /// Upload the blobs and, with `signer`, the blobs of the manifest's signature beside
    /// them; the signature is returned ready to PUT with the manifest.
    pub async fn upload_blobs(
        &self,
        repo: &Repository,
        signer: Option<&Signer>,
    ) -> Result<Option<Prepared>> {
        let uploads = join_all(
            self.blobs
                .iter()
                .map(|(src, digest, new)| repo.upload_blob(src, digest, *new)),
        );
        let digest = Digest::of_bytes(&self.manifest);
        let sign = async {
            match signer {
                Some(s) => s.prepare(repo, Some(INDEX_TAG), &digest).await.map(Some),
                None => Ok(None),
            }
        };
        let (uploads, prepared) = tokio::join!(uploads, sign);
        for r in uploads {
            r?;
        }
        prepared
    }
}

/// The image of `db` with its `state` (pointed at the index bytes).
fn db_image(db: &Database, state: &mut IndexState) -> IndexImage {
    let index = Bytes::from(db.to_json());
    state.version = IndexState::VERSION;
    state.index = Digest::of_bytes(&index).to_string();
    IndexImage::new(index, Some(Bytes::from(state.to_bytes())))
}

/// PUT the index manifest under `index.spack`, and its signature beside it.
pub(crate) async fn put_index_manifest(
    repo: &Repository,
    manifest: Bytes,
    signature: Option<Prepared>,
) -> Result<Digest> {
    let sign = async {
        match signature {
            Some(p) => p.put(repo).await,
            None => Ok(()),
        }
    };
    let put = repo.put_manifest(Some(INDEX_TAG), manifest, media_types::OCI_MANIFEST);
    let ((digest, _), ()) = tokio::try_join!(put, sign)?;
    Ok(digest)
}

async fn upload(
    repo: &Repository,
    db: &Database,
    state: &mut IndexState,
    signer: Option<&Signer>,
) -> Result<Digest> {
    let image = db_image(db, state);
    let signature = image.upload_blobs(repo, signer).await?;
    put_index_manifest(repo, image.manifest, signature).await
}

/// Default merge rounds before giving up on a busy index.
pub const DEFAULT_MERGE_ATTEMPTS: u32 = 20;

/// `push --update-index`: the specs of `pushed` (tags just pushed) added to the current index.
/// Without an index, or with one that cannot be read, this is a [`rebuild`].
pub async fn merge(
    client: &Client,
    reference: &Reference,
    pushed: &[String],
    inputs: DbInputs<'_>,
    attempts: u32,
    signer: Option<&Signer>,
) -> Result<IndexUpdate> {
    let repo = &client.repository(reference);
    let fetches = join_all(pushed.iter().map(|t| fetch_tag(repo, t.clone())));
    let (fetched, current, ()) = tokio::join!(fetches, read_current(repo), preload(signer, repo));
    let mut current = current?;
    let mut update = IndexUpdate {
        mode: "merge",
        spec_tags: pushed.len(),
        ..IndexUpdate::default()
    };
    let mine: Vec<TagRecords> = fetched
        .into_iter()
        .map(|f| f.map_or_else(Err, |f| records_of(f, inputs)))
        .collect();
    update.fetched = mine.iter().filter(|r| r.is_ok()).count();
    let hashes: Vec<String> = mine
        .iter()
        .filter_map(|r| r.as_ref().ok().map(|(_, _, rec)| rec.root().to_owned()))
        .collect();
    for attempt in 1..=attempts.max(1) {
        update.attempts = attempt;
        if let Some(note) = cannot_merge_into(current.as_ref()) {
            let mut rebuilt = rebuild_knowing(
                client,
                reference,
                inputs,
                super::DEFAULT_INDEX_CONCURRENCY,
                signer,
                &mine,
            )
            .await?;
            rebuilt.note = Some(note);
            return Ok(rebuilt);
        }
        let Some(Current {
            manifest: base,
            db: Ok(mut db),
            mut state,
        }) = current.take()
        else {
            unreachable!("checked above");
        };
        update.skipped.clear();
        add_all(&mut db, &mut state, mine.clone(), &mut update);
        let image = db_image(&db, &mut state);
        if let Some(ours) = put_if_unchanged(repo, image, &base, signer, attempt).await? {
            update.manifest_digest = Some(ours);
            update.settled = true;
            return Ok(finish(update, &db));
        }
        current = read_current(repo).await?;
        if let Some(Current {
            manifest,
            db: Ok(now),
            ..
        }) = &current
        {
            if hashes.iter().all(|h| now.in_buildcache(h)) {
                adopt(repo, manifest, signer).await?;
                update.manifest_digest = Some(manifest.clone());
                update.settled = true;
                return Ok(finish(update, now));
            }
        }
    }
    tracing::warn!(
        repository = %repo.name(),
        attempts,
        "other pushers kept replacing the index; run `spack buildcache update-index` to repair it"
    );
    Ok(update)
}

/// Why a merge must rebuild instead: no index yet, or one that cannot be read.
fn cannot_merge_into(current: Option<&Current>) -> Option<String> {
    match current {
        None => Some("the repository has no index yet".to_owned()),
        Some(Current { db: Err(e), .. }) => Some(format!("the current index cannot be read ({e})")),
        Some(_) => None,
    }
}

/// Another pusher's index holds our specs: it is the one to sign.
async fn adopt(repo: &Repository, manifest: &Digest, signer: Option<&Signer>) -> Result<()> {
    if let Some(s) = signer {
        s.sign(repo, Some(INDEX_TAG), manifest).await?;
    }
    Ok(())
}

/// One merge round's upload: the blobs (and the signature's), then the manifest PUT if the
/// index is still `base`. `Some(digest)` when ours is the index a moment after the PUT.
async fn put_if_unchanged(
    repo: &Repository,
    image: IndexImage,
    base: &Digest,
    signer: Option<&Signer>,
    attempt: u32,
) -> Result<Option<Digest>> {
    let signature = image.upload_blobs(repo, signer).await?;
    let started = Instant::now();
    if head_manifest(repo, INDEX_TAG).await? != *base {
        tokio::time::sleep(jitter(attempt)).await;
        return Ok(None);
    }
    let ours = put_index_manifest(repo, image.manifest, signature).await?;
    // A pusher that compared just before our PUT overwrites it within about one round
    // trip: look again after a few.
    tokio::time::sleep(started.elapsed() * 3 + jitter(attempt)).await;
    Ok((head_manifest(repo, INDEX_TAG).await? == ours).then_some(ours))
}

/// A random pause growing with the attempt, so that racing pushers spread out.
fn jitter(attempt: u32) -> Duration {
    let ms = rand::random_range(10..=50) * u64::from(attempt.min(8));
    Duration::from_millis(ms)
}
