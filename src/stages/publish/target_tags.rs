//! The target side of publish: what each target repository holds (one `tags/list`, then a HEAD per listed tag
//! the plans set), and setting the tags, platform tags and shared tags each as a group, from what was learned.

use std::collections::{BTreeSet, HashMap};

use anyhow::Context;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use tokio::sync::Mutex;

use super::ImagePlan;
use crate::model::reference::Digest;
use crate::store::copy::{CopyMemory, TargetListing, absent_when_unreadable};
use crate::store::{AnyStore, ManifestReference, Store, StoreError, our_digest, tag_sets};

/// Tags set between two progress lines.
const TAG_PROGRESS: usize = 100;

/// What setting one group of tags did.
pub(super) struct TagGroup {
    /// Every tag of the group, as `registry/repository:tag`, in plan order.
    pub names: Vec<String>,
    pub set: usize,
    pub unchanged: usize,
}

/// Sets one group of every plan's tags, `jobs` at a time, with progress every [`TAG_PROGRESS`] tags.
pub(super) async fn tag_group<'a, I>(
    plans: &'a [ImagePlan],
    targets: &'a [AnyStore],
    known: &Known<'_>,
    tags_of: impl Fn(&'a ImagePlan) -> I,
    jobs: usize,
    group: &str,
) -> anyhow::Result<TagGroup>
where
    I: Iterator<Item = (&'a String, &'a Digest)>,
{
    let tags: Vec<(&ImagePlan, &AnyStore, &String, &Digest)> = plans
        .iter()
        .zip(targets)
        .flat_map(|(plan, target)| {
            tags_of(plan).map(move |(tag, digest)| (plan, target, tag, digest))
        })
        .collect();
    let total = tags.len();
    let done = Mutex::new((0usize, 0usize));
    stream::iter(&tags)
        .map(|(plan, target, tag, digest)| {
            let done = &done;
            async move {
                let set = set_tag(target, plan, tag, digest, known)
                    .await
                    .with_context(|| {
                        format!("tagging `{}/{}:{tag}`", plan.target, plan.repository)
                    })?;
                let mut done = done.lock().await;
                done.0 += 1;
                done.1 += usize::from(set);
                if done.0 % TAG_PROGRESS == 0 || done.0 == total {
                    tracing::info!(
                        "{group} tags: {} of {total} ({} set, {} unchanged)",
                        done.0,
                        done.1,
                        done.0 - done.1
                    );
                }
                Ok::<_, anyhow::Error>(())
            }
        })
        .buffer_unordered(jobs.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    let (_, set) = done.into_inner();
    Ok(TagGroup {
        names: tags
            .iter()
            .map(|(plan, _, tag, _)| format!("{}/{}:{tag}", plan.target, plan.repository))
            .collect(),
        set,
        unchanged: total - set,
    })
}

/// What the copy phase learned, which the tag phase uses instead of asking again.
pub(super) struct Known<'a> {
    pub listings: &'a HashMap<(String, String), TargetListing>,
    pub current: &'a CurrentTags,
    pub memory: &'a CopyMemory,
}

/// What each tag the targets listed named before the copy, by target repository and tag.
pub(super) type CurrentTags = HashMap<((String, String), String), Option<Digest>>;

/// Reads every tag of the plans that its target listed (a HEAD each), before the copy: a tag already naming its
/// digest spares the copy and the tag phase any question about that digest.
pub(super) async fn read_listed_tags(
    plans: &[ImagePlan],
    targets: &[AnyStore],
    listings: &HashMap<(String, String), TargetListing>,
    jobs: usize,
) -> anyhow::Result<CurrentTags> {
    let mut wanted: HashMap<((String, String), String), &AnyStore> = HashMap::new();
    for (plan, target) in plans.iter().zip(targets) {
        let key = plan.target_key();
        let Some(listing) = listings.get(&key) else {
            continue;
        };
        for (tag, _) in plan.platform_tags().chain(plan.shared_tags()) {
            if listing.tags.contains(tag) {
                wanted.entry((key.clone(), tag.clone())).or_insert(target);
            }
        }
    }
    stream::iter(wanted)
        .map(|(key, target)| async move {
            let ((location, repository), tag) = &key;
            // A tag the target keeps failing to read (torn by a crash) is set again like a missing one.
            let current = absent_when_unreadable(
                target
                    .head_manifest(repository, ManifestReference::Tag(tag))
                    .await,
            )
            .with_context(|| format!("reading `{location}/{repository}:{tag}`"))?
            .and_then(|descriptor| our_digest(descriptor.digest()));
            Ok::<_, anyhow::Error>((key, current))
        })
        .buffer_unordered(jobs.max(1))
        .try_collect()
        .await
}

/// Points `tag` at `digest` unless it already did before the copy; true when it was set. Nothing is asked
/// beyond what [`read_listed_tags`] read, except where the target could not be listed; the manifest's bytes are
/// those the copy read, where it read them.
async fn set_tag(
    target: &AnyStore,
    plan: &ImagePlan,
    tag: &str,
    digest: &Digest,
    known: &Known<'_>,
) -> Result<bool, StoreError> {
    let repository = plan.repository.as_str();
    let key = plan.target_key();
    let current = match known.current.get(&(key.clone(), tag.to_owned())) {
        Some(read) => read.clone(),
        // A repository that could not be listed is asked about each tag.
        None if !known.listings.contains_key(&key) => absent_when_unreadable(
            target
                .head_manifest(repository, ManifestReference::Tag(tag))
                .await,
        )?
        .and_then(|descriptor| our_digest(descriptor.digest())),
        None => None,
    };
    if current.as_ref() == Some(digest) {
        return Ok(false);
    }
    let copied = known.memory.manifest(digest).await;
    let manifest = match copied {
        Some(manifest) => manifest,
        None => target
            .get_manifest(repository, ManifestReference::Digest(digest))
            .await?
            .ok_or_else(|| StoreError::NotFound {
                store: target.name(),
                reference: format!("{repository}@{digest}"),
            })?,
    };
    target
        .put_manifest(repository, ManifestReference::Tag(tag), &manifest)
        .await?;
    Ok(true)
}

/// What each target repository holds, one `tags/list` each, so that the copy and the tags ask it less. A
/// repository that cannot be listed is asked about each object instead.
pub(super) async fn list_targets(
    plans: &[ImagePlan],
    targets: &[AnyStore],
    jobs: usize,
) -> HashMap<(String, String), TargetListing> {
    let mut by_target: HashMap<String, (&AnyStore, BTreeSet<String>)> = HashMap::new();
    for (plan, target) in plans.iter().zip(targets) {
        by_target
            .entry(plan.target.to_string())
            .or_insert_with(|| (target, BTreeSet::new()))
            .1
            .insert(plan.repository.clone());
    }
    let mut listings = HashMap::new();
    for (location, (target, repositories)) in by_target {
        for (repository, tags) in tag_sets(target, repositories, jobs).await {
            match tags {
                Ok(tags) => {
                    listings.insert((location.clone(), repository), TargetListing { tags });
                }
                Err(error) => {
                    tracing::debug!("listing the tags of `{location}/{repository}`: {error}");
                }
            }
        }
    }
    listings
}
