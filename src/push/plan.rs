//! What a push must do: which items' tags exist already with a usable image.

use std::collections::BTreeSet;

use futures_util::stream::{self, StreamExt};

use super::{LayerInfo, LayerSource, PushItem};
use crate::error::{Error, ErrorKind, Result};
use crate::registry::Repository;

/// Whether a layer's source can be read: a tarball file that opens, a prefix directory that
/// lists. Checked before any request.
pub(super) fn check_local(source: &LayerSource) -> Result<()> {
    match source {
        LayerSource::Tarball { path, .. } => {
            let meta = std::fs::metadata(path).map_err(|e| Error::io("reading", path, &e))?;
            if !meta.is_file() {
                return Err(Error::new(
                    ErrorKind::Io,
                    format!("{} is not a file", path.display()),
                ));
            }
            std::fs::File::open(path).map_err(|e| Error::io("opening", path, &e))?;
        }
        LayerSource::Prefix { path, .. } => {
            let meta = std::fs::metadata(path).map_err(|e| Error::io("reading", path, &e))?;
            if !meta.is_dir() {
                return Err(Error::new(
                    ErrorKind::Io,
                    format!("{} is not a directory", path.display()),
                ));
            }
            std::fs::read_dir(path).map_err(|e| Error::io("listing", path, &e))?;
        }
    }
    Ok(())
}

/// For every item with a layer: its layer info if its tag exists with a usable manifest.
pub(super) async fn existing_layers(
    repo: &Repository,
    items: &[PushItem],
) -> Vec<Option<LayerInfo>> {
    // One tag listing replaces a manifest GET per missing item. If listing fails, check
    // every tag directly, as Spack does.
    let tags: Option<BTreeSet<String>> =
        repo.list_tags().await.ok().map(|t| t.into_iter().collect());
    let tasks = items.iter().map(|it| {
        let tags = &tags;
        async move {
            if it.layer.is_none() || tags.as_ref().is_some_and(|t| !t.contains(&it.tag)) {
                return None;
            }
            repo.blob_info(&it.tag).await.ok()
        }
    });
    stream::iter(tasks.collect::<Vec<_>>())
        .buffered(64)
        .collect()
        .await
}
