//! What a push must do: which items' tags exist already with a usable image.

use std::collections::BTreeSet;

use futures_util::stream::{self, StreamExt};

use super::{LayerInfo, PushItem};
use crate::registry::Repository;

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
