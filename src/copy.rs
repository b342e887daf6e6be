//! `copy`: a build cache (every tag, or the tags asked for) from one repository to another,
//! on one registry or between two. Blobs are mounted when both repositories are on one
//! registry, else streamed from the download into the upload (no temp file); manifests are
//! PUT with the exact bytes fetched and their media type, so every digest stays the same.
//! A tag whose manifest the destination already holds is left alone, and blobs the
//! destination has are not sent again: a second run uploads nothing, an interrupted one
//! continues where it stopped. `index.spack` is copied last, and only when every other tag
//! of the copy arrived (an index naming specs the destination lacks would send installs to
//! missing tags).

use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::stream::{self, StreamExt};
use futures_util::FutureExt;

use crate::error::{Error, ErrorKind, Result};
use crate::progress::{ByteProgress, BytesFn};
use crate::reference::Reference;
use crate::registry::{BlobCopy, Descriptor, Manifest, Repository};
use crate::transport::Client;

/// The tag of the build-cache index image.
pub const INDEX_TAG: &str = "index.spack";

/// What happened to one tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TagStatus {
    /// Its manifest (and what was missing of its blobs) was copied.
    Copied,
    /// The destination had the same manifest under the tag: nothing sent.
    Unchanged,
    Failed,
}

impl TagStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TagStatus::Copied => "copied",
            TagStatus::Unchanged => "unchanged",
            TagStatus::Failed => "failed",
        }
    }
}

/// The result of one tag.
#[derive(Debug)]
pub struct TagCopy {
    pub tag: String,
    pub status: TagStatus,
    pub manifest_digest: Option<crate::Digest>,
    /// Blobs streamed from the source.
    pub blobs_copied: usize,
    /// Blobs mounted from the source repository.
    pub blobs_mounted: usize,
    /// Blobs the destination had already.
    pub blobs_present: usize,
    /// Bytes streamed.
    pub bytes_copied: u64,
    pub error: Option<Error>,
}

impl TagCopy {
    fn new(tag: &str) -> Self {
        Self {
            tag: tag.to_string(),
            status: TagStatus::Copied,
            manifest_digest: None,
            blobs_copied: 0,
            blobs_mounted: 0,
            blobs_present: 0,
            bytes_copied: 0,
            error: None,
        }
    }

    fn failed(mut self, e: Error) -> Self {
        self.status = TagStatus::Failed;
        self.error = Some(e);
        self
    }
}

/// Progress of a copy.
pub enum CopyEvent<'a> {
    /// Bytes moved (or mounted) and expected so far (throttled).
    Bytes { done: u64, total: u64 },
    /// One tag is done.
    Tag(&'a TagCopy),
}

pub type CopyFn = Arc<dyn Fn(CopyEvent<'_>) + Send + Sync>;

/// What to copy.
pub struct CopyOptions {
    /// These tags (each must exist in the source), or every tag when `None`.
    pub tags: Option<Vec<String>>,
    /// Tags copied at the same time.
    pub concurrency: usize,
}

/// Copy `opts.tags` (or every tag) of `src` to `dst`; one result per tag, in order, the
/// index last. Fails as a whole only when the source cannot be listed (a repository that
/// does not exist is an error) or when source and destination are one repository.
pub async fn copy(
    client: &Client,
    src: &Reference,
    dst: &Reference,
    opts: CopyOptions,
    events: Option<CopyFn>,
) -> Result<Vec<TagCopy>> {
    if src.domain == dst.domain && src.name == dst.name {
        return Err(Error::invalid_input(format!(
            "copying {} onto itself: give another repository or registry",
            src.repository()
        )));
    }
    let (s, d) = (client.repository(src), client.repository(dst));
    let listed = s.list_existing_tags().await?;
    let mut tags = opts.tags.unwrap_or_else(|| listed.clone());
    tags.sort();
    tags.dedup();
    let with_index = tags.iter().any(|t| t == INDEX_TAG);
    tags.retain(|t| t != INDEX_TAG);
    let present = d.list_tags().await?;
    let bytes = events
        .clone()
        .map(|e| -> BytesFn { Arc::new(move |done, total| e(CopyEvent::Bytes { done, total })) });
    let run = Run {
        src: s,
        dst: d,
        listed,
        present,
        progress: bytes.map(ByteProgress::new),
        events,
    };
    let jobs: Vec<_> = tags.iter().map(|t| run.tag(t)).collect();
    let mut results: Vec<TagCopy> = stream::iter(jobs)
        .buffered(opts.concurrency.max(1))
        .collect()
        .await;
    if with_index {
        let failed = results
            .iter()
            .filter(|r| r.status == TagStatus::Failed)
            .count();
        let index = if failed == 0 {
            run.tag(INDEX_TAG).await
        } else {
            let why = format!("not copied: {failed} other tag(s) of the copy failed");
            let r = TagCopy::new(INDEX_TAG).failed(Error::invalid_input(why));
            run.emit(&r);
            r
        };
        results.push(index);
    }
    if let Some(p) = &run.progress {
        p.finish();
    }
    Ok(results)
}

/// The state shared by the tags of one copy.
struct Run {
    src: Repository,
    dst: Repository,
    listed: Vec<String>,
    present: Vec<String>,
    progress: Option<Arc<ByteProgress>>,
    events: Option<CopyFn>,
}

impl Run {
    fn emit(&self, r: &TagCopy) {
        if let Some(e) = &self.events {
            e(CopyEvent::Tag(r));
        }
    }

    async fn tag(&self, tag: &str) -> TagCopy {
        let mut out = TagCopy::new(tag);
        if let Err(e) = self.copy_tag(tag, &mut out).await {
            out = out.failed(e.context(format!("copying {}:{tag}", self.src.name())));
        }
        self.emit(&out);
        out
    }

    async fn copy_tag(&self, tag: &str, out: &mut TagCopy) -> Result<()> {
        if self
            .listed
            .binary_search_by(|t| t.as_str().cmp(tag))
            .is_err()
        {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("the source has no tag {tag}"),
            ));
        }
        let m = self.src.get_manifest(tag).await?;
        out.manifest_digest = Some(m.digest.clone());
        if self
            .present
            .binary_search_by(|t| t.as_str().cmp(tag))
            .is_ok()
        {
            let theirs = self.dst.get_manifest(tag).await?;
            if theirs.digest == m.digest {
                out.status = TagStatus::Unchanged;
                return Ok(());
            }
        }
        self.copy_contents(&m, out).await?;
        self.dst
            .put_manifest(Some(tag), m.bytes.clone(), &m.media_type)
            .await?;
        Ok(())
    }

    /// Everything `m` refers to: blobs, and for an image index its manifests (PUT by
    /// digest, each after its own blobs).
    fn copy_contents<'a>(
        &'a self,
        m: &'a Manifest,
        out: &'a mut TagCopy,
    ) -> BoxFuture<'a, Result<()>> {
        async move {
            if !m.is_index() {
                let mut blobs = vec![m.config()?];
                blobs.extend(m.layers()?);
                return self.copy_blobs(&blobs, out).await;
            }
            let entries = m
                .json
                .get("manifests")
                .and_then(serde_json::Value::as_array)
                .cloned()
                .unwrap_or_default();
            for entry in entries {
                let d = Descriptor::from_json(&entry, "image index entry")?;
                let child = self.src.get_manifest(&d.digest.to_string()).await?;
                self.copy_contents(&child, out).await?;
                self.dst
                    .put_manifest(None, child.bytes.clone(), &child.media_type)
                    .await?;
            }
            Ok(())
        }
        .boxed()
    }

    async fn copy_blobs(&self, blobs: &[Descriptor], out: &mut TagCopy) -> Result<()> {
        let tasks: Vec<_> = blobs
            .iter()
            .map(|b| async move {
                if self.dst.blob_exists(&b.digest).await? {
                    return Ok(None);
                }
                if let Some(p) = &self.progress {
                    p.expect(b.size);
                }
                let how = self
                    .dst
                    .copy_blob_counted(&self.src, &b.digest, b.size, self.progress.as_ref())
                    .await?;
                Ok::<_, Error>(Some((how, b.size)))
            })
            .collect();
        let done: Vec<Result<Option<(BlobCopy, u64)>>> =
            stream::iter(tasks).buffer_unordered(4).collect().await;
        for r in done {
            match r? {
                None => out.blobs_present += 1,
                Some((BlobCopy::Mounted, _)) => out.blobs_mounted += 1,
                Some((BlobCopy::Streamed, size)) => {
                    out.blobs_copied += 1;
                    out.bytes_copied += size;
                }
            }
        }
        Ok(())
    }
}
