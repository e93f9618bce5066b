//! `imagepipe publish`: copies what was signed from staging to the public registry, byte for byte with its
//! signatures, and only then sets tags. It creates no digest, so every signature made in staging stays valid.
//!
//! Order matters for what a failure leaves behind: every image's content (blobs, platform manifests, indexes,
//! signature objects) is copied first, tags last, so no tag ever points at something incomplete, and a
//! re-run skips what is already there and completes the job.
//!
//! Unless `--allow-unsigned`, refuses before copying anything when staging holds no signature object for some
//! digest: the ledger's `sign` entry and image-info's `signatures[]` are only what the file says.
//!
//! With `--published-image-info`, the final image-info is the published record with this run's images replacing
//! theirs (see [`crate::model::published`]), so a partial release keeps the record of what it did not rebuild.

mod target_tags;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use futures_util::future::try_join_all;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use tokio::sync::Mutex;

use crate::ci::{CiHost, RunIdentity};
use crate::files;
use crate::inputs;
use crate::model::image_info::{DigestSlot, ImageInfo};
use crate::model::ledger::Stage;
use crate::model::published::merge_into_published;
use crate::model::reference::{Digest, DigestReference};
use crate::sign::signer::Storage;
use crate::stages::{
    InvalidFlag, Refusal, check_staging_prefix, finish_with_outputs, set_list_output,
    signature_listings, stage_record, summary,
};
use crate::store::copy::{Copier, CopyMemory, CopyStats};
use crate::store::registry::{ClientSettings, RegistryClient};
use crate::store::{
    AnyStore, Location, ManifestReference, Store, StoreError, signature_tag, staging_repository,
};
use target_tags::{Known, list_targets, read_listed_tags, tag_group};

/// Digests named in a refusal before the rest are only counted.
const LISTED_DIGESTS: usize = 10;

pub struct Settings {
    pub image_info: PathBuf,
    pub expect_sha256: Option<String>,
    pub output: PathBuf,
    /// The image-info last published, which the final one completes.
    pub published_image_info: Option<PathBuf>,
    /// The manifest, with its variables: what the published record may still hold.
    pub manifest: Option<(PathBuf, BTreeMap<String, String>)>,
    pub staging: Location,
    pub staging_prefix: Option<String>,
    /// Publish here instead of the registry each digest names.
    pub registry_override: Option<Location>,
    pub dry_run: bool,
    pub require_verify: bool,
    pub allow_unsigned: bool,
    pub jobs: usize,
    pub client: ClientSettings,
}

/// Where one image goes and what it consists of.
struct ImagePlan {
    /// The repository path in staging.
    source: String,
    target: Location,
    /// The repository path in the target.
    repository: String,
    /// Platform digests with their simple tags, and attestation manifests with none.
    platforms: Vec<(Digest, Vec<String>)>,
    /// The index digest with its shared tags.
    index: Option<(Digest, Vec<String>)>,
    /// The `.sig` manifest sign recorded for each digest, holding its signature.
    recorded_signatures: HashMap<Digest, Digest>,
}

impl ImagePlan {
    /// The target repository, as [`list_targets`] keys it.
    fn target_key(&self) -> (String, String) {
        (self.target.to_string(), self.repository.clone())
    }

    fn digests(&self) -> impl Iterator<Item = &Digest> {
        self.platforms
            .iter()
            .map(|(digest, _)| digest)
            .chain(self.index.iter().map(|(digest, _)| digest))
    }

    /// The simple tags of its platform images.
    fn platform_tags(&self) -> impl Iterator<Item = (&String, &Digest)> {
        self.platforms
            .iter()
            .flat_map(|(digest, tags)| tags.iter().map(move |tag| (tag, digest)))
    }

    /// The shared tags of its index.
    fn shared_tags(&self) -> impl Iterator<Item = (&String, &Digest)> {
        self.index
            .iter()
            .flat_map(|(digest, tags)| tags.iter().map(move |tag| (tag, digest)))
    }
}

pub async fn run(
    settings: Settings,
    run: &RunIdentity,
    host: &mut dyn CiHost,
) -> anyhow::Result<()> {
    let Settings {
        image_info,
        expect_sha256,
        output,
        published_image_info,
        manifest,
        staging,
        staging_prefix,
        registry_override,
        dry_run,
        require_verify,
        allow_unsigned,
        jobs,
        client,
    } = settings;
    check_staging_prefix(staging_prefix.as_deref())?;
    let info = inputs::load_image_info_expecting(&image_info, expect_sha256.as_deref())?;
    let mut required = vec![Stage::PostBuild, Stage::CreateManifest];
    if allow_unsigned {
        let warning = "publishing with --allow-unsigned: images may reach the public registry without signatures";
        tracing::warn!("{warning}");
        host.warning(warning, None);
    } else {
        required.push(Stage::Sign);
    }
    if require_verify {
        required.push(Stage::Verify);
    }
    info.pipeline.require_these(Stage::Publish, &required)?;
    // The whole record is worked out before anything is copied: a published file that does not fit the
    // manifest stops the stage here.
    let mut record = match &published_image_info {
        Some(file) => {
            if registry_override.is_some() {
                return Err(InvalidFlag(
                    "--published-image-info: the published record names the manifest's registry, so it cannot be \
                     completed for `--registry-override`"
                        .to_owned(),
                )
                .into());
            }
            let Some((manifest, variables)) = &manifest else {
                return Err(InvalidFlag(
                    "--published-image-info needs `--manifest`, to drop what the manifest no longer declares"
                        .to_owned(),
                )
                .into());
            };
            merge_published(&info, &image_info, file, manifest, variables)?
        }
        None => info.clone(),
    };

    let plans = plan(&info, staging_prefix.as_deref(), registry_override.as_ref())?;
    let client = Arc::new(RegistryClient::new(client)?);
    let source = AnyStore::open(&staging, &client);
    let targets: Vec<AnyStore> = plans
        .iter()
        .map(|plan| AnyStore::open(&plan.target, &client))
        .collect();
    // Both registries are read side by side: the signature check and what the targets hold.
    let signatures = async {
        if allow_unsigned {
            Ok(SignatureTags::new())
        } else {
            require_signatures(&source, &plans, jobs).await
        }
    };
    let (signature_tags, listings) = tokio::join!(signatures, list_targets(&plans, &targets, jobs));
    let signature_tags = signature_tags?;
    if dry_run {
        print!("{}", describe(&plans, &client).await?);
        tracing::info!("dry run: nothing was copied or tagged");
        return Ok(());
    }

    let current = read_listed_tags(&plans, &targets, &listings, jobs).await?;
    let memory = CopyMemory::default();
    let total = plans.len();
    let done = Mutex::new(0usize);
    let copied: Vec<CopyStats> = stream::iter(plans.iter().zip(&targets))
        .map(|(plan, target)| {
            let (source, done, staging) = (&source, &done, &staging);
            let (signature_tags, listings, memory) = (&signature_tags, &listings, &memory);
            let current = &current;
            async move {
                let copier = Copier {
                    source,
                    from: &plan.source,
                    target,
                    to: &plan.repository,
                    same_store: *staging == plan.target,
                    listing: listings.get(&plan.target_key()),
                    memory: Some(memory),
                };
                let tagged: HashSet<&Digest> = plan
                    .platform_tags()
                    .chain(plan.shared_tags())
                    .filter(|(tag, digest)| {
                        current.get(&(plan.target_key(), (*tag).clone()))
                            == Some(&Some((*digest).clone()))
                    })
                    .map(|(_, digest)| digest)
                    .collect();
                let stats = copy_image(&copier, plan, signature_tags, &tagged)
                    .await
                    .with_context(|| format!("copying `{}` to {}", plan.repository, plan.target))?;
                let mut done = done.lock().await;
                *done += 1;
                tracing::info!("copied {} of {total} images: {}", *done, plan.repository);
                Ok::<_, anyhow::Error>(stats)
            }
        })
        .buffer_unordered(jobs)
        .try_collect()
        .await?;
    let stats: CopyStats = copied.into_iter().sum();

    // Every platform tag, then every shared tag, each group set concurrently: a shared tag is the last thing to
    // move, so it never names an index whose platform tags are not set yet.
    let known = Known {
        listings: &listings,
        current: &current,
        memory: &memory,
    };
    let platform_tags = tag_group(
        &plans,
        &targets,
        &known,
        ImagePlan::platform_tags,
        jobs,
        "platform",
    )
    .await?;
    let shared_tags = tag_group(
        &plans,
        &targets,
        &known,
        ImagePlan::shared_tags,
        jobs,
        "shared",
    )
    .await?;
    let (tags_set, tags_unchanged) = (
        platform_tags.set + shared_tags.set,
        platform_tags.unchanged + shared_tags.unchanged,
    );
    let published_tags: Vec<String> = platform_tags
        .names
        .into_iter()
        .chain(shared_tags.names)
        .collect();

    if let Some(Location::Registry(registry)) = &registry_override {
        rename_registry(&mut record, registry);
    }
    record.pipeline.record(stage_record(Stage::Publish, run));
    let digest = files::write_atomically(&output, &record)?;
    tracing::info!(
        "published {}: {} objects copied ({} bytes), {} already there ({} bytes); {tags_set} tags set, \
         {tags_unchanged} unchanged; {} HTTP requests",
        summary::count(total, "image"),
        stats.objects_copied,
        stats.bytes_copied,
        stats.objects_skipped,
        stats.bytes_skipped,
        client.request_count()
    );
    set_list_output(host, "published-tags", &published_tags)?;
    finish_with_outputs(host, Stage::Publish, &output, &digest, &info)
}

/// The published record `published` with this run's images (`info`, read from `file`) replacing theirs.
fn merge_published(
    info: &ImageInfo,
    file: &Path,
    published: &Path,
    manifest: &Path,
    variables: &BTreeMap<String, String>,
) -> anyhow::Result<ImageInfo> {
    let manifest = inputs::load_manifest(manifest, variables)?;
    inputs::require_manifest_registry(info, file, &manifest)?;
    let previous = inputs::load_published_image_info(published, &manifest)?;
    let merged = merge_into_published(&manifest, &previous, published, info, file)?;
    tracing::info!(
        "the final image-info completes `{}`: {merged}",
        published.display()
    );
    Ok(merged.info)
}

/// Refuses, naming them all, the digests for which staging holds no signature object: one `tags/list` per
/// staging repository shows the `.sig` tags; a digest without one is looked up among its referrers where the
/// registry has the API.
///
/// The rule is "staging holds a signature object for each digest", whatever image-info says. The ledger's `sign`
/// entry and the `signatures[]` records are text anyone can add to the file; a record whose object is not in
/// staging would publish the image unsigned just the same (copy_signatures copies what it finds, and finds
/// nothing). Whether the object holds a valid signature by the right key is for `verify` (`--require-verify`):
/// publish has no key, and this check only makes sure it never copies an image with nothing to copy beside it.
async fn require_signatures(
    source: &AnyStore,
    plans: &[ImagePlan],
    jobs: usize,
) -> anyhow::Result<SignatureTags> {
    let repositories: BTreeSet<String> = plans.iter().map(|plan| plan.source.clone()).collect();
    let listings = signature_listings(source, repositories, jobs).await?;
    let listings = &listings;
    let lookups = plans.iter().flat_map(|plan| {
        plan.digests().map(move |digest| async move {
            let tagged = listings
                .get(plan.source.as_str())
                .is_some_and(|tags| tags.contains(&signature_tag(digest)));
            let looking = || {
                format!(
                    "looking for the signatures of `{}/{}@{digest}`",
                    source.name(),
                    plan.source
                )
            };
            let signed = tagged
                || (source
                    .has_referrers_api(&plan.source)
                    .await
                    .with_context(looking)?
                    && !source
                        .signatures_of(&plan.source, digest)
                        .await
                        .with_context(looking)?
                        .is_empty());
            let known = tagged
                .then(|| plan.recorded_signatures.get(digest).cloned())
                .flatten();
            Ok::<_, anyhow::Error>((plan, digest, known, signed))
        })
    });
    let checked: Vec<(&ImagePlan, &Digest, Option<Digest>, bool)> = stream::iter(lookups)
        .buffered(jobs.max(1))
        .try_collect()
        .await?;
    let total = checked.len();
    let mut tags = SignatureTags::new();
    let mut unsigned = Vec::new();
    for (plan, digest, tagged, signed) in checked {
        if !signed {
            unsigned.push(format!("`{}@{digest}`", plan.source));
        }
        if let Some(tagged) = tagged {
            tags.insert((plan.source.clone(), digest.clone()), tagged);
        }
    }
    if unsigned.is_empty() {
        return Ok(tags);
    }
    Err(Refusal {
        message: format!(
            "{} of {} have no signature in staging `{}`, so nothing was published: {}",
            unsigned.len(),
            summary::count(total, "digest"),
            source.name(),
            summary::listing(&unsigned, LISTED_DIGESTS)
        ),
        hint: Some(
            "run `imagepipe sign` on this image-info with these staging flags, or pass `--allow-unsigned` to \
             publish unsigned images"
                .to_owned(),
        ),
    }
    .into())
}

/// Copies an image's content (the index with the platform images it lists, then any it does not list), then
/// every digest's signatures, each group concurrently.
///
/// `tagged` are the image's digests a target tag already named before the copy: the target holds each whole (a
/// registry refuses a manifest whose content is missing), so they are not asked about again, and an index among
/// them brings its platforms with it.
async fn copy_image(
    copier: &Copier<'_, AnyStore, AnyStore>,
    plan: &ImagePlan,
    signature_tags: &SignatureTags,
    tagged: &HashSet<&Digest>,
) -> Result<CopyStats, StoreError> {
    let mut stats = CopyStats::default();
    let already = CopyStats::skipped(0);
    let listed = match &plan.index {
        Some((digest, _)) if tagged.contains(digest) => {
            stats += already;
            None
        }
        Some((digest, _)) => {
            let (copied, listed) = copier.copy_manifest_listing(digest).await?;
            stats += copied;
            listed
        }
        None => Some(Vec::new()),
    };
    if let Some(listed) = listed {
        let platforms = plan
            .platforms
            .iter()
            .filter(|(digest, _)| !listed.contains(digest))
            .map(|(digest, _)| async move {
                if tagged.contains(digest) {
                    return Ok(already);
                }
                copier.copy_manifest(digest).await
            });
        stats += try_join_all(platforms).await?.into_iter().sum();
    }
    let signatures = plan.digests().map(|digest| {
        let known = signature_tags.get(&(plan.source.clone(), digest.clone()));
        copier.copy_signatures_known(digest, known)
    });
    stats += try_join_all(signatures).await?.into_iter().sum();
    Ok(stats)
}

/// For each staged digest whose `.sig` tag is in staging, by staged repository and digest: the signature
/// manifest sign recorded. A target whose tag names it holds our signature, so the copy leaves it alone.
type SignatureTags = HashMap<(String, Digest), Digest>;

/// What each image consists of and where it goes.
fn plan(
    info: &ImageInfo,
    prefix: Option<&str>,
    registry_override: Option<&Location>,
) -> anyhow::Result<Vec<ImagePlan>> {
    let mut plans: Vec<ImagePlan> = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    for entry in info.digest_entries() {
        let reference: DigestReference = entry
            .reference
            .parse()
            .with_context(|| format!("reading `{}`", entry.reference))?;
        if current != Some((entry.repo, entry.image)) {
            let target = match (registry_override, reference.registry()) {
                (Some(location), _) => location.clone(),
                (None, Some(registry)) => Location::Registry(registry.to_owned()),
                (None, None) => anyhow::bail!(
                    "`{}` names no registry to publish to; pass `--registry-override`",
                    entry.reference
                ),
            };
            plans.push(ImagePlan {
                source: staging_repository(prefix, reference.repository()),
                target,
                repository: reference.repository().to_owned(),
                platforms: Vec::new(),
                index: None,
                recorded_signatures: HashMap::new(),
            });
            current = Some((entry.repo, entry.image));
        }
        let Some(plan) = plans.last_mut() else {
            continue;
        };
        let image = &info.repos[entry.repo].images[entry.image];
        let records = match entry.slot {
            DigestSlot::Platform(index) => {
                let platform = &image.platforms[index];
                plan.platforms
                    .push((reference.digest.clone(), platform.simple_tags.clone()));
                &platform.signatures[..]
            }
            // Copied untagged: an index lists it, and an image without one still keeps its attestation.
            DigestSlot::Attestation(index) => {
                plan.platforms.push((reference.digest.clone(), Vec::new()));
                image.platforms[index]
                    .attestation
                    .as_ref()
                    .map_or(&[][..], |attestation| &attestation.signatures)
            }
            DigestSlot::Index => {
                let manifest = image.manifest.as_ref();
                let tags = manifest
                    .map(|manifest| manifest.shared_tags.clone())
                    .unwrap_or_default();
                plan.index = Some((reference.digest.clone(), tags));
                manifest.map_or(&[][..], |manifest| &manifest.signatures)
            }
            DigestSlot::Syndicated(_) => {
                tracing::warn!(
                    "`{}` is a syndicated copy; publish does not copy syndicated digests",
                    entry.reference
                );
                continue;
            }
        };
        let recorded = records
            .iter()
            .rev()
            .filter(|record| record.format == Storage::Tag.format())
            .find_map(|record| record.digest.parse::<Digest>().ok());
        if let Some(recorded) = recorded {
            plan.recorded_signatures.insert(reference.digest, recorded);
        }
    }
    Ok(plans)
}

/// The dry run's report: each object to copy and each tag to set, marking what the target already has.
async fn describe(plans: &[ImagePlan], client: &Arc<RegistryClient>) -> Result<String, StoreError> {
    let mut report = String::new();
    for plan in plans {
        let target = AnyStore::open(&plan.target, client);
        for digest in plan.digests() {
            let present = target
                .head_manifest(&plan.repository, ManifestReference::Digest(digest))
                .await?
                .is_some();
            let note = if present { " (already there)" } else { "" };
            report.push_str(&format!(
                "copy {}/{}@{digest}{note}\n",
                plan.target, plan.repository
            ));
        }
        for (tag, digest) in plan.platform_tags().chain(plan.shared_tags()) {
            report.push_str(&format!(
                "tag  {}/{}:{tag} -> {digest}\n",
                plan.target, plan.repository
            ));
        }
    }
    Ok(report)
}

/// With `--registry-override`, the final image-info names where the images are.
fn rename_registry(info: &mut ImageInfo, registry: &str) {
    let rename = |reference: &mut String| {
        if let Ok(parsed) = reference.parse::<DigestReference>() {
            *reference = format!("{registry}/{}@{}", parsed.repository(), parsed.digest);
        }
    };
    for image in info
        .repos
        .iter_mut()
        .flat_map(|repo| repo.images.iter_mut())
    {
        image
            .platforms
            .iter_mut()
            .for_each(|platform| rename(&mut platform.digest));
        if let Some(manifest) = &mut image.manifest {
            rename(&mut manifest.digest);
            // Publish copies no syndicated digest, but their names follow the others': every name in image-info
            // must name one registry, or the final file would not load.
            manifest.syndicated_digests.iter_mut().for_each(rename);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn a_registry_override_renames_every_digest_and_the_file_still_loads() {
        let name = |name: &str| format!("{name}@sha256:{}", "1".repeat(64));
        let mut info: ImageInfo =
            serde_json::from_value(serde_json::json!({"schemaVersion": "2.0",
            "repos": [{"repo": "team/app", "images": [{
                "manifest": {"digest": name("registry.example/team/app"), "sharedTags": ["1"],
                    "syndicatedDigests": [name("registry.example/team/copy")]},
                "platforms": [{"dockerfile": "a", "digest": name("registry.example/team/app"),
                    "osType": "Linux", "architecture": "amd64"}]}]}]}))
            .expect("parses");
        rename_registry(&mut info, "127.0.0.1:5000");
        let renamed: Vec<&str> = info.digest_references().collect();
        assert_eq!(
            renamed,
            [
                name("127.0.0.1:5000/team/app"),
                name("127.0.0.1:5000/team/app"),
                name("127.0.0.1:5000/team/copy")
            ]
        );
        assert_eq!(info.check(Path::new("final.json")), Vec::new());
    }
}
