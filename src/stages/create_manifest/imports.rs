//! Platforms a run did not rebuild: a shared tag must still list them, so each is taken from the public
//! registry by its first tag and copied into staging with its signatures.
//!
//! Its record comes whole from the published image-info when one is given (the record of what the public
//! registry serves), after checking that the tag still serves that digest; otherwise it is read from the
//! registry (`stages::fragment::read_built`, as a build reads its own result), and the fields only a build knows
//! are said to be unknown. Every lookup happens before anything is
//! copied, so a platform that cannot be found, or a record the registry contradicts, stops the stage before it
//! writes anything.

use std::path::Path;

use anyhow::Context;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use tokio::sync::Mutex;

use crate::model::image_info::{ImageInfo, PlatformData};
use crate::model::manifest::PlatformEntry;
use crate::model::reference::{Digest, DigestReference};
use crate::stages::fragment::read_built;
use crate::stages::{Refusal, summary};
use crate::store::copy::{Copier, CopyStats};
use crate::store::{AnyStore, ManifestReference, Store, our_digest};

/// Lookups and copies at once.
const CONCURRENT_IMPORTS: usize = 8;

/// Platforms named in a refusal before the rest are only counted.
const LISTED_PLATFORMS: usize = 10;

/// A declared platform this run did not rebuild, to be taken from the public registry.
pub struct Import {
    pub repo: usize,
    pub image: usize,
    pub repository: String,
    pub entry: PlatformEntry,
}

impl Import {
    fn name(&self) -> String {
        format!("`{}` {}", self.repository, self.entry.identity())
    }

    fn first_tag(&self) -> Option<&str> {
        self.entry.tags.keys().next().map(String::as_str)
    }
}

/// The previously published image-info, the record of what the public registry serves.
pub struct Published<'a> {
    pub info: &'a ImageInfo,
    pub file: &'a Path,
}

/// Where the imports come from and go.
pub struct Sources<'a> {
    pub public: &'a AnyStore,
    pub public_registry: &'a str,
    pub staging: &'a AnyStore,
    pub staged: &'a (dyn Fn(&str) -> String + Sync),
    pub published: Option<Published<'a>>,
}

/// A platform found in the public registry, with its previous record where the published file has one.
struct Found<'a> {
    import: &'a Import,
    digest: Digest,
    previous: Option<&'a PlatformData>,
}

/// Copies every import into staging and returns its record, in the order of `imports`.
pub async fn import_platforms(
    imports: &[Import],
    sources: &Sources<'_>,
) -> anyhow::Result<Vec<PlatformData>> {
    let listed: Vec<String> = imports.iter().map(Import::name).collect();
    let found = find_all(imports, sources).await.with_context(|| {
        format!(
            "importing {} not rebuilt in this run from {}: {}",
            summary::count(imports.len(), "platform"),
            sources.public.name(),
            summary::listing(&listed, LISTED_PLATFORMS)
        )
    })?;

    let total = found.len();
    let done = Mutex::new(0usize);
    let copied: Vec<(PlatformData, CopyStats)> = stream::iter(&found)
        .map(|found| {
            let done = &done;
            async move {
                let imported = import_one(found, sources).await.with_context(|| {
                    format!(
                        "importing {}, not rebuilt in this run, from {}",
                        found.import.name(),
                        sources.public.name()
                    )
                })?;
                let mut done = done.lock().await;
                *done += 1;
                tracing::info!(
                    "imported {} of {total} platforms not rebuilt in this run: {} {}",
                    *done,
                    found.import.name(),
                    found.digest
                );
                Ok::<_, anyhow::Error>(imported)
            }
        })
        .buffered(CONCURRENT_IMPORTS)
        .try_collect()
        .await?;

    let mut stats = CopyStats::default();
    let mut records = Vec::with_capacity(copied.len());
    for (record, copy) in copied {
        stats += copy;
        records.push(record);
    }
    let from_record = found
        .iter()
        .filter(|found| found.previous.is_some())
        .count();
    tracing::info!(
        "took {} not rebuilt in this run from {}: {} objects copied, {} already in staging",
        summary::count(total, "platform"),
        sources.public_registry,
        stats.objects_copied,
        stats.objects_skipped
    );
    if from_record < total {
        let source = match &sources.published {
            Some(published) => format!("not in `{}`", published.file.display()),
            None => "no published image-info given".to_owned(),
        };
        tracing::warn!(
            "{} of {} recorded from the registry ({source}): `created` and `layers` read from the image; \
             `baseImageDigest` and `commitUrl` cannot be known (pass `--published-image-info` with the image-info \
             that was last published)",
            total - from_record,
            summary::count(total, "imported platform"),
        );
    }
    Ok(records)
}

/// Looks every import up by its first tag; refuses, naming them all, those that cannot be found and those whose
/// published record names another digest than the tag serves.
async fn find_all<'a>(
    imports: &'a [Import],
    sources: &Sources<'a>,
) -> anyhow::Result<Vec<Found<'a>>> {
    let lookups: Vec<Option<Digest>> = stream::iter(imports)
        .map(|import| async move {
            let Some(tag) = import.first_tag() else {
                return Ok(None);
            };
            let descriptor = sources
                .public
                .head_manifest(&import.repository, ManifestReference::Tag(tag))
                .await
                .with_context(|| format!("looking up `{}:{tag}`", import.repository))?;
            Ok::<_, anyhow::Error>(
                descriptor.and_then(|descriptor| our_digest(descriptor.digest())),
            )
        })
        .buffered(CONCURRENT_IMPORTS)
        .try_collect()
        .await?;

    let mut found = Vec::new();
    let mut missing = Vec::new();
    let mut contradicted = Vec::new();
    for (import, digest) in imports.iter().zip(lookups) {
        let Some(digest) = digest else {
            missing.push(format!(
                "{} (tag `{}` not in {})",
                import.name(),
                import.first_tag().unwrap_or("none declared"),
                sources.public.name()
            ));
            continue;
        };
        let previous = sources
            .published
            .as_ref()
            .and_then(|published| previous_record(published.info, import));
        if let Some(previous) = previous {
            let recorded = previous
                .digest
                .parse::<DigestReference>()
                .map(|reference| reference.digest);
            if recorded.as_ref() != Ok(&digest) {
                contradicted.push(format!(
                    "{} (recorded `{}`, but `{}:{}` is {digest})",
                    import.name(),
                    previous.digest,
                    import.repository,
                    import.first_tag().unwrap_or_default()
                ));
                continue;
            }
        }
        found.push(Found {
            import,
            digest,
            previous,
        });
    }
    if !missing.is_empty() {
        return Err(Refusal {
            message: format!(
                "a shared tag would miss {}: {}",
                summary::count(missing.len(), "declared platform"),
                summary::listing(&missing, LISTED_PLATFORMS)
            ),
            hint: Some("build the missing platforms in this run, or publish them first".to_owned()),
        }
        .into());
    }
    if let Some(published) = sources
        .published
        .as_ref()
        .filter(|_| !contradicted.is_empty())
    {
        return Err(Refusal {
            message: format!(
                "`{}` does not record what the public registry serves for {}: {}",
                published.file.display(),
                summary::count(contradicted.len(), "platform"),
                summary::listing(&contradicted, LISTED_PLATFORMS)
            ),
            hint: Some(
                "pass the image-info that was last published, or rebuild these platforms in this run"
                    .to_owned(),
            ),
        }
        .into());
    }
    Ok(found)
}

/// The published record of a declared platform: one of the repository's records with its identity, the one
/// with exactly its tags when the platform is recorded under several images.
fn previous_record<'a>(published: &'a ImageInfo, import: &Import) -> Option<&'a PlatformData> {
    let declared = import.entry.identity();
    let candidates: Vec<&PlatformData> = published
        .repos
        .iter()
        .filter(|repo| repo.repo == import.repository)
        .flat_map(|repo| &repo.images)
        .flat_map(|image| &image.platforms)
        .filter(|record| record.identity().matches(&declared))
        .collect();
    let same_tags = |record: &&&PlatformData| {
        record.simple_tags.len() == import.entry.tags.len()
            && record
                .simple_tags
                .iter()
                .all(|tag| import.entry.tags.contains_key(tag))
    };
    candidates
        .iter()
        .find(same_tags)
        .or(candidates.first())
        .copied()
}

/// Copies one platform with its signatures into staging and makes its record.
async fn import_one(
    found: &Found<'_>,
    sources: &Sources<'_>,
) -> anyhow::Result<(PlatformData, CopyStats)> {
    let import = found.import;
    let staged = (sources.staged)(&import.repository);
    let copier = Copier {
        source: sources.public,
        from: &import.repository,
        target: sources.staging,
        to: &staged,
        same_store: false,
        listing: None,
        memory: None,
    };
    let mut stats = copier.copy_manifest(&found.digest).await?;
    stats += copier.copy_signatures(&found.digest).await?;
    // The index lists a carried-over image's attestation beside it, so it comes into staging too.
    if let Some(attestation) = found
        .previous
        .and_then(|previous| previous.attestation.as_ref())
    {
        let reference: DigestReference = attestation
            .digest
            .parse()
            .with_context(|| format!("reading the attestation of {}", import.name()))?;
        stats += copier.copy_manifest(&reference.digest).await?;
        stats += copier.copy_signatures(&reference.digest).await?;
    }
    let record = match found.previous {
        Some(previous) => PlatformData {
            is_unchanged: true,
            ..previous.clone()
        },
        None => {
            let digest = format!(
                "{}/{}@{}",
                sources.public_registry, import.repository, found.digest
            );
            let mut record = PlatformData::declared(&import.entry, digest);
            record.is_unchanged = true;
            let image = read_built(
                sources.staging,
                &staged,
                &found.digest,
                Some(&import.entry.identity().platform()),
            )
            .await?;
            record.layers = image.layers;
            record.created = image.created;
            record
        }
    };
    Ok((record, stats))
}
