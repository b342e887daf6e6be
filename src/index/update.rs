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

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::join_all;
use futures_util::stream::{self, StreamExt};
use reqwest::header::ACCEPT;
use reqwest::Method;
use serde_json::{json, Value};

use super::db::{read_config, Database, SpackReader, SpecRecords};
use super::node::Targets;
use super::state::{IndexState, TagEntry, STATE_MEDIA_TYPE};
use super::SkippedTag;
use crate::digest::Digest;
use crate::error::{Error, ErrorKind, Result};
use crate::media_types;
use crate::reference::{tag_is_spec, Reference, INDEX_TAG};
use crate::registry::{to_compact_json, BlobSource, Repository, MAX_CONFIG_SIZE};
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

/// A tag of a rebuild: unchanged since `previous` (one HEAD, records reused) or fetched.
async fn rebuild_tag(
    repo: &Repository,
    tag: String,
    previous: Option<(&Database, &IndexState)>,
    inputs: DbInputs<'_>,
) -> (TagRecords, bool) {
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
) -> Result<IndexUpdate> {
    let repo = &client.repository(reference);
    let (tags, current) = tokio::join!(repo.list_tags(), read_current(repo));
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
        .map(|tag| rebuild_tag(repo, tag, previous, inputs))
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
    let digest = upload(repo, &db, &mut state).await?;
    update.manifest_digest = Some(digest);
    update.settled = true;
    update.attempts = 1;
    Ok(finish(update, &db))
}

fn finish(mut update: IndexUpdate, db: &Database) -> IndexUpdate {
    update.records = db.len();
    update.specs = db.specs();
    update
}

/// Upload the blobs of an `index.spack` image — the index, the state layer if any, a `{}`
/// config — and return its manifest (Spack's, with the index as `layers[0]`).
pub(crate) async fn upload_blobs(
    repo: &Repository,
    index: Bytes,
    state: Option<Bytes>,
) -> Result<Bytes> {
    let blobs: Vec<(&str, Bytes)> = [
        Some((media_types::OCI_CONFIG, Bytes::from_static(b"{}"))),
        Some((media_types::OCI_LAYER_GZIP, index)),
        state.map(|s| (STATE_MEDIA_TYPE, s)),
    ]
    .into_iter()
    .flatten()
    .collect();
    let sources: Vec<(Value, BlobSource, Digest)> = blobs
        .into_iter()
        .map(|(media_type, bytes)| {
            let digest = Digest::of_bytes(&bytes);
            let desc =
                json!({"mediaType": media_type, "digest": digest.to_string(), "size": bytes.len()});
            (desc, BlobSource::Bytes(bytes), digest)
        })
        .collect();
    let uploads = sources
        .iter()
        .map(|(_, src, digest)| repo.upload_blob(src, digest, false));
    for r in join_all(uploads).await {
        r?;
    }
    let mut descs = sources.into_iter().map(|(d, _, _)| d);
    let config = descs.next();
    let manifest = json!({
        "mediaType": media_types::OCI_MANIFEST,
        "schemaVersion": 2,
        "config": config,
        "layers": descs.collect::<Vec<_>>(),
    });
    Ok(Bytes::from(to_compact_json(&manifest)))
}

/// The blobs of `db` with its `state` (pointed at the index bytes).
async fn upload_db(repo: &Repository, db: &Database, state: &mut IndexState) -> Result<Bytes> {
    let index = Bytes::from(db.to_json());
    state.version = IndexState::VERSION;
    state.index = Digest::of_bytes(&index).to_string();
    upload_blobs(repo, index, Some(Bytes::from(state.to_bytes()))).await
}

pub(crate) async fn put_index_manifest(repo: &Repository, manifest: Bytes) -> Result<Digest> {
    let (digest, _) = repo
        .put_manifest(Some(INDEX_TAG), manifest, media_types::OCI_MANIFEST)
        .await?;
    Ok(digest)
}

async fn upload(repo: &Repository, db: &Database, state: &mut IndexState) -> Result<Digest> {
    let manifest = upload_db(repo, db, state).await?;
    put_index_manifest(repo, manifest).await
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
) -> Result<IndexUpdate> {
    let repo = &client.repository(reference);
    let fetches = join_all(pushed.iter().map(|t| fetch_tag(repo, t.clone())));
    let (fetched, current) = tokio::join!(fetches, read_current(repo));
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
        let why = match &current {
            None => Some("the repository has no index yet".to_owned()),
            Some(Current { db: Err(e), .. }) => {
                Some(format!("the current index cannot be read ({e})"))
            }
            Some(_) => None,
        };
        if let Some(note) = why {
            let mut rebuilt =
                rebuild(client, reference, inputs, super::DEFAULT_INDEX_CONCURRENCY).await?;
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
        let manifest = upload_db(repo, &db, &mut state).await?;
        let started = Instant::now();
        if head_manifest(repo, INDEX_TAG).await? == base {
            let ours = put_index_manifest(repo, manifest).await?;
            // A pusher that compared just before our PUT overwrites it within about one
            // round trip: look again after a few.
            tokio::time::sleep(started.elapsed() * 3 + jitter(attempt)).await;
            if head_manifest(repo, INDEX_TAG).await? == ours {
                update.manifest_digest = Some(ours);
                update.settled = true;
                return Ok(finish(update, &db));
            }
        } else {
            tokio::time::sleep(jitter(attempt)).await;
        }
        current = read_current(repo).await?;
        if let Some(Current {
            manifest,
            db: Ok(now),
            ..
        }) = &current
        {
            if hashes.iter().all(|h| now.in_buildcache(h)) {
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

/// A random pause growing with the attempt, so that racing pushers spread out.
fn jitter(attempt: u32) -> Duration {
    let ms = rand::random_range(10..=50) * u64::from(attempt.min(8));
    Duration::from_millis(ms)
}
