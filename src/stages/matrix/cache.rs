//! Which units would build the same image again: left out of the matrix.
//!
//! A unit is unchanged when, in every repository that declares it, the published image-info has its record
//! (found by identity), and
//! - the record's `contextDigest` is the digest of the Dockerfile's folder now (a record without one counts as
//!   changed: it was not built by a pipeline that records it);
//! - the image its final stage is built from is the one recorded as `baseImageDigest`: an image from elsewhere is
//!   resolved now in its registry (the record may name the tag's index or the platform's image in it);
//! - every unit of this manifest it is built from is itself unchanged.
//!
//! Only the final stage's base is recorded, so an earlier stage's image from elsewhere changing goes unseen,
//! as in ImageBuilder.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use futures_util::stream::{self, StreamExt as _, TryStreamExt as _};
use serde::Deserialize;

use crate::build::context::context_digest;
use crate::model::dependencies::{BaseImage, Dependencies};
use crate::model::image_info::{ImageInfo, PlatformData};
use crate::model::image_reference::{ImageReference, Pointer};
use crate::model::legs::Leg;
use crate::model::manifest::Manifest;
use crate::model::platform::{Platform, PlatformIdentity, same_platform};
use crate::model::platform_record::dockerfile_folder;
use crate::store::registry::RegistryClient;
use crate::store::{AnyStore, Location, ManifestReference, Store as _, media_type, our_digest};

/// Registry look-ups at once.
const CONCURRENT_LOOKUPS: usize = 8;

/// What the published record and the files say about one unit, before its bases are looked at.
struct Candidate<'a> {
    records: Vec<&'a PlatformData>,
    /// The image from elsewhere its final stage is built from, to resolve now.
    external_base: Option<&'a str>,
}

/// An image from elsewhere as its registry serves it now.
struct Resolved {
    digest: String,
    /// For an index: each platform's image in it.
    children: Vec<(Platform, String)>,
}

/// The units of `legs` (and the units they are built from) that are unchanged since `published`.
pub async fn unchanged_units(
    manifest: &Manifest,
    manifest_file: &Path,
    dependencies: &Dependencies,
    legs: &[Leg],
    published: &ImageInfo,
    client: &Arc<RegistryClient>,
) -> anyhow::Result<HashSet<PlatformIdentity>> {
    let folder = manifest_file.parent().unwrap_or(Path::new(""));
    let repos_of = declaring_repos(manifest);
    // The units planned, and every unit of this manifest they are built from (for another platform, too).
    let mut units: BTreeSet<&PlatformIdentity> = legs
        .iter()
        .flat_map(|leg| &leg.units)
        .map(|unit| &unit.identity)
        .collect();
    let mut pending: Vec<&PlatformIdentity> = units.iter().copied().collect();
    while let Some(unit) = pending.pop() {
        for base in dependencies.bases_of(unit) {
            if units.insert(base) {
                pending.push(base);
            }
        }
    }

    let mut candidates: HashMap<&PlatformIdentity, Candidate<'_>> = HashMap::new();
    for unit in units {
        let Some(records) = records_of(published, repos_of.get(unit), unit) else {
            continue;
        };
        let context = folder.join(dockerfile_folder(&unit.dockerfile));
        let now = context_digest(&context)?.to_string();
        if records
            .iter()
            .any(|record| record.context_digest.as_deref() != Some(now.as_str()))
        {
            continue;
        }
        let external_base = match dependencies
            .of(unit)
            .and_then(|bases| bases.final_base.as_ref())
        {
            Some(BaseImage::External(image)) => Some(image.as_str()),
            _ => None,
        };
        candidates.insert(
            unit,
            Candidate {
                records,
                external_base,
            },
        );
    }

    let names: BTreeSet<&str> = candidates
        .values()
        .filter_map(|candidate| candidate.external_base)
        .collect();
    let resolved: HashMap<&str, Option<Resolved>> = stream::iter(names)
        .map(|name| async move { Ok::<_, anyhow::Error>((name, resolve(name, client).await?)) })
        .buffer_unordered(CONCURRENT_LOOKUPS)
        .try_collect()
        .await?;

    let mut verdicts: HashMap<&PlatformIdentity, bool> = HashMap::new();
    for &unit in candidates.keys() {
        decide(unit, &candidates, &resolved, dependencies, &mut verdicts);
    }
    Ok(verdicts
        .into_iter()
        .filter(|(_, unchanged)| *unchanged)
        .map(|(unit, _)| unit.clone())
        .collect())
}

/// Whether `unit` is unchanged, memoized in `verdicts`. Bases are decided first; the `FROM` graph has no cycle
/// (reading the Dockerfiles refuses one), and a unit being decided counts as changed should one appear.
fn decide<'a>(
    unit: &'a PlatformIdentity,
    candidates: &HashMap<&'a PlatformIdentity, Candidate<'_>>,
    resolved: &HashMap<&str, Option<Resolved>>,
    dependencies: &'a Dependencies,
    verdicts: &mut HashMap<&'a PlatformIdentity, bool>,
) -> bool {
    if let Some(verdict) = verdicts.get(unit) {
        return *verdict;
    }
    verdicts.insert(unit, false);
    let Some(candidate) = candidates.get(unit) else {
        return false;
    };
    let base_unchanged = match candidate.external_base {
        None => true,
        Some(name) => match resolved.get(name).and_then(Option::as_ref) {
            None => false,
            Some(now) => candidate.records.iter().all(|record| {
                record
                    .base_image_digest
                    .as_deref()
                    .is_some_and(|recorded| same_base(recorded, now, &unit.platform()))
            }),
        },
    };
    let verdict = base_unchanged
        && dependencies
            .bases_of(unit)
            .iter()
            .all(|base| decide(base, candidates, resolved, dependencies, verdicts));
    verdicts.insert(unit, verdict);
    verdict
}

/// Whether a recorded `baseImageDigest` (`name@sha256:…`) is the image resolved now: the tag's own digest, or the
/// image for `platform` in the index it names.
fn same_base(recorded: &str, now: &Resolved, platform: &Platform) -> bool {
    let recorded = recorded
        .rsplit_once('@')
        .map_or(recorded, |(_, digest)| digest);
    recorded == now.digest
        || now
            .children
            .iter()
            .any(|(child, digest)| digest == recorded && same_platform(platform, child, false))
}

/// The repositories that declare each unit.
fn declaring_repos(manifest: &Manifest) -> HashMap<PlatformIdentity, BTreeSet<&str>> {
    let mut repos: HashMap<PlatformIdentity, BTreeSet<&str>> = HashMap::new();
    for repo in &manifest.repos {
        for entry in repo.images.iter().flat_map(|image| &image.platforms) {
            repos
                .entry(entry.identity())
                .or_default()
                .insert(repo.name.as_str());
        }
    }
    repos
}

/// The published record of `unit` in each of `repos`; `None` when one has none.
fn records_of<'a>(
    published: &'a ImageInfo,
    repos: Option<&BTreeSet<&str>>,
    unit: &PlatformIdentity,
) -> Option<Vec<&'a PlatformData>> {
    repos?
        .iter()
        .map(|name| {
            published
                .repos
                .iter()
                .filter(|repo| repo.repo == *name)
                .flat_map(|repo| &repo.images)
                .flat_map(|image| &image.platforms)
                .find(|record| record.identity().matches(unit))
        })
        .collect()
}

/// The manifest list entries this reads of an index.
#[derive(Deserialize)]
struct IndexEntries {
    #[serde(default)]
    manifests: Vec<IndexEntry>,
}

#[derive(Deserialize)]
struct IndexEntry {
    digest: String,
    platform: Option<IndexPlatform>,
}

#[derive(Deserialize)]
struct IndexPlatform {
    os: String,
    architecture: String,
    variant: Option<String>,
}

/// `name` (a `FROM` line's image) as its registry serves it now; `None` when the name is not one an image can
/// have (an `ARG` left empty) or the registry does not have it, which counts as changed.
async fn resolve(name: &str, client: &Arc<RegistryClient>) -> anyhow::Result<Option<Resolved>> {
    let Ok(reference) = name.parse::<ImageReference>() else {
        tracing::debug!(
            "`{name}` is not an image name to resolve: the units built from it count as changed"
        );
        return Ok(None);
    };
    let tag = match &reference.pointer {
        Pointer::Digest(digest) => {
            return Ok(Some(Resolved {
                digest: digest.to_string(),
                children: Vec::new(),
            }));
        }
        Pointer::Tag(tag) => tag,
    };
    let store = AnyStore::open(&Location::Registry(reference.registry.clone()), client);
    let context = || format!("resolving the base image `{name}`");
    let Some(descriptor) = store
        .head_manifest(&reference.repository, ManifestReference::Tag(tag))
        .await
        .with_context(context)?
    else {
        tracing::debug!(
            "`{name}` is not in its registry: the units built from it count as changed"
        );
        return Ok(None);
    };
    let Some(digest) = our_digest(descriptor.digest()) else {
        return Ok(None);
    };
    let mut children = Vec::new();
    if media_type::is_index(descriptor.media_type().as_ref()) {
        let index = store
            .get_manifest(&reference.repository, ManifestReference::Digest(&digest))
            .await
            .with_context(context)?;
        let entries = index
            .and_then(|index| serde_json::from_slice::<IndexEntries>(&index.bytes).ok())
            .map(|index| index.manifests)
            .unwrap_or_default();
        children = entries
            .into_iter()
            .filter_map(|entry| {
                let platform = entry.platform?;
                let platform = Platform {
                    os: platform.os,
                    architecture: platform.architecture,
                    variant: platform.variant,
                };
                Some((platform, entry.digest))
            })
            .collect();
    }
    Ok(Some(Resolved {
        digest: digest.to_string(),
        children,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_base_is_the_tag_or_the_platforms_image_in_it() {
        let (index, amd64, arm64) = (
            format!("sha256:{}", "1".repeat(64)),
            format!("sha256:{}", "2".repeat(64)),
            format!("sha256:{}", "3".repeat(64)),
        );
        let platform = |text: &str| -> Platform { text.parse().expect("platform") };
        let now = Resolved {
            digest: index.clone(),
            children: vec![
                (platform("linux/amd64"), amd64.clone()),
                (platform("linux/arm64/v8"), arm64.clone()),
            ],
        };
        let named = |digest: &str| format!("registry.example/library/debian@{digest}");
        assert!(same_base(&named(&index), &now, &platform("linux/arm64")));
        assert!(same_base(&named(&arm64), &now, &platform("linux/arm64")));
        assert!(same_base(&arm64, &now, &platform("linux/arm64/v8")));
        assert!(!same_base(&named(&amd64), &now, &platform("linux/arm64")));
        assert!(!same_base(
            &named(&"4".repeat(64)),
            &now,
            &platform("linux/amd64")
        ));
    }
}
