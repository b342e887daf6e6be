//! What a push must do: which items' tags exist already with a usable image.

use std::collections::{BTreeSet, HashMap, HashSet};

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

/// Whether an item's image exists already.
pub(super) enum Existing {
    /// Not there (or unusable): push it.
    No,
    /// There; its layer info when an item to push stacks that layer (else not fetched).
    Yes(Option<LayerInfo>),
}

/// For every item: does its tag exist with a usable image. One tag listing decides (the
/// caller's `listed` tags, else listed now); the manifests and configs of existing items are
/// fetched (in one parallel round) only for the layers that items still to push stack on
/// and `known` lacks. If listing fails, every tag is checked directly, as Spack does. The
/// listed tags are returned too.
pub(super) async fn existing_layers(
    repo: &Repository,
    items: &[PushItem],
    known: &HashMap<String, LayerInfo>,
    listed: Option<BTreeSet<String>>,
) -> (Vec<Existing>, Option<BTreeSet<String>>) {
    let tags = match listed {
        Some(tags) => Some(tags),
        None => repo.list_tags().await.ok().map(|t| t.into_iter().collect()),
    };
    let listed =
        |it: &PushItem| it.layer.is_some() && tags.as_ref().is_none_or(|t| t.contains(&it.tag));
    let needed: HashSet<&str> = items
        .iter()
        .filter(|it| it.layer.is_none() || tags.as_ref().is_some_and(|t| !t.contains(&it.tag)))
        .flat_map(|it| it.layers.iter().map(String::as_str))
        .filter(|k| !known.contains_key(*k))
        .collect();
    let tasks = items.iter().map(|it| {
        let fetch = listed(it) && (tags.is_none() || needed.contains(it.key.as_str()));
        async move {
            if !listed(it) {
                return Existing::No;
            }
            if !fetch {
                return Existing::Yes(None);
            }
            match repo.blob_info(&it.tag).await {
                Ok(info) => Existing::Yes(Some(info)),
                Err(_) => Existing::No,
            }
        }
    });
    let existing = stream::iter(tasks.collect::<Vec<_>>())
        .buffered(64)
        .collect()
        .await;
    (existing, tags)
}
