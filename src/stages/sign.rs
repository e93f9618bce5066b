//! `imagepipe sign`: a signature for every digest in image-info, each platform image and each index, in
//! staging, naming the public repository so that it stays valid after publish.
//!
//! Refuses unless create-manifest ran after post-build, and (given the manifest) unless every image with
//! shared tags has its index: signing before the indexes exist is how manifest lists went unsigned. Refuses too,
//! before writing any signature, when staging does not hold every digest: signing what is not there (a wrong
//! `--staging-prefix`) would fill an empty repository with signatures and record them in image-info.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use tokio::sync::Mutex;

use crate::ci::{CiHost, RunIdentity};
use crate::files;
use crate::inputs;
use crate::model::image_info::{DigestEntry, ImageInfo, SignatureRecord};
use crate::model::issue::JsonPath;
use crate::model::ledger::Stage;
use crate::model::manifest::Manifest;
use crate::model::placement::place_images;
use crate::model::reference::{Digest, DigestReference};
use crate::sign::keys::{KeySource, SigningKey};
use crate::sign::signer::{Added, SignError, Signer, Storage};
use crate::stages::{
    Refusal, check_staging_prefix, finish_with_outputs, set_list_output, signature_listings,
    stage_record, summary,
};
use crate::store::registry::{ClientSettings, RegistryClient};
use crate::store::{
    AnyStore, Location, ManifestReference, Store, signature_tag, staging_repository,
};

/// Digests signed at once: each takes a few small requests, which the client bounds on its own.
const CONCURRENT_SIGNATURES: usize = 32;
/// Digests named in a refusal before the rest are only counted.
const LISTED_DIGESTS: usize = 10;

/// Where signatures go: `auto` picks referrers when the registry has the API, else the `.sig` tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureMode {
    Tag,
    Referrers,
    Auto,
}

pub struct Settings {
    pub image_info: PathBuf,
    pub output: Option<PathBuf>,
    pub expect_sha256: Option<String>,
    /// With a manifest, every image it gives shared tags must have an index in image-info.
    pub manifest: Option<(PathBuf, BTreeMap<String, String>)>,
    pub key: KeySource,
    /// From `COSIGN_PASSWORD`, as cosign reads it.
    pub password: Vec<u8>,
    pub staging: Location,
    pub staging_prefix: Option<String>,
    pub mode: SignatureMode,
    pub client: ClientSettings,
}

pub async fn run(
    settings: Settings,
    run: &RunIdentity,
    host: &mut dyn CiHost,
) -> anyhow::Result<()> {
    let Settings {
        image_info,
        output,
        expect_sha256,
        manifest,
        key,
        password,
        staging,
        staging_prefix,
        mode,
        client,
    } = settings;
    check_staging_prefix(staging_prefix.as_deref())?;
    let mut info = inputs::load_image_info_expecting(&image_info, expect_sha256.as_deref())?;
    info.pipeline.require(Stage::Sign)?;
    if let Some((manifest, variables)) = &manifest {
        let manifest = inputs::load_manifest(manifest, variables)?;
        inputs::require_manifest_registry(&info, &image_info, &manifest)?;
        require_indexes(&manifest, &info, &image_info)?;
    }
    require_recorded_indexes(&info)?;
    let signing_key = SigningKey::load(&key, &password)?;
    let public_key = signing_key.public_key();
    let key_id = public_key.key_id();

    let client = Arc::new(RegistryClient::new(client)?);
    let store = AnyStore::open(&staging, &client);
    let probe_repository = staging_repository(
        staging_prefix.as_deref(),
        info.repos.first().map_or("", |repo| repo.repo.as_str()),
    );
    let storage = match mode {
        SignatureMode::Tag => Storage::Tag,
        SignatureMode::Referrers if store.has_referrers_api(&probe_repository).await? => {
            Storage::Referrer
        }
        SignatureMode::Referrers => {
            return Err(Refusal {
                message: format!(
                    "{} has no referrers API, so signatures cannot be stored as referrers",
                    store.name()
                ),
                hint: Some("use `--signature-mode tag` (or `auto`) with this registry".to_owned()),
            }
            .into());
        }
        SignatureMode::Auto if store.has_referrers_api(&probe_repository).await? => {
            Storage::Referrer
        }
        SignatureMode::Auto => Storage::Tag,
    };
    let staged = |repository: &str| staging_repository(staging_prefix.as_deref(), repository);
    let signer = Signer {
        store: &store,
        key: &signing_key,
        public_key: &public_key,
        storage,
    };
    let entries = info.digest_entries();
    let record = |digest: &Digest| SignatureRecord {
        digest: digest.to_string(),
        format: storage.format().to_owned(),
        key_id: key_id.clone(),
    };
    let (already, pending) = signed_already(&signer, entries, &staged).await?;
    // A digest already signed by this key was in staging when it was signed; the rest must be there now.
    require_staged(&store, &pending, &staged).await?;

    let total = pending.len();
    let done = Mutex::new(0usize);
    let mut signed: Vec<(DigestEntry, SignatureRecord, bool)> = stream::iter(pending)
        .map(|entry| {
            let (signer, done, record) = (&signer, &done, &record);
            let staged = &staged;
            async move {
                let reference: DigestReference = entry
                    .reference
                    .parse()
                    .with_context(|| format!("reading `{}`", entry.reference))?;
                let repository = staged(reference.repository());
                let outcome = signer
                    .sign(&repository, reference.name(), &reference.digest)
                    .await
                    .map_err(reportable)
                    .with_context(|| {
                        format!(
                            "signing `{}/{repository}@{}`",
                            signer.store.name(),
                            reference.digest
                        )
                    })?;
                let mut done = done.lock().await;
                *done += 1;
                if *done % 50 == 0 || *done == total {
                    tracing::info!("signed {} of {total} digests", *done);
                }
                Ok::<_, anyhow::Error>((entry, record(&outcome.signature_manifest), outcome.added))
            }
        })
        .buffer_unordered(CONCURRENT_SIGNATURES)
        .try_collect()
        .await?;
    let total = total + already.len();
    signed.extend(
        already
            .into_iter()
            .map(|(entry, manifest)| (entry, record(&manifest), false)),
    );

    let added = signed.iter().filter(|(_, _, added)| *added).count();
    // Another signer's write may still replace a `.sig` tag with a copy read before ours landed: look again
    // once such writes have landed, and keep the digest of the manifest holding our signature then.
    let to_settle: Vec<Added> = signed
        .iter()
        .filter(|(_, _, added)| *added)
        .filter_map(|(entry, _, _)| {
            let reference: DigestReference = entry.reference.parse().ok()?;
            Some(Added {
                repository: staged(reference.repository()),
                identity: reference.name().to_owned(),
                digest: reference.digest,
            })
        })
        .collect();
    let settled: BTreeMap<(String, Digest), Digest> = signer
        .settle(to_settle)
        .await
        .map_err(reportable)
        .with_context(|| format!("checking the signatures added in {}", store.name()))?
        .into_iter()
        .map(|(added, manifest)| ((added.repository, added.digest), manifest))
        .collect();
    for (entry, mut record, _) in signed {
        if let Ok(reference) = entry.reference.parse::<DigestReference>() {
            let key = (staged(reference.repository()), reference.digest);
            if let Some(manifest) = settled.get(&key) {
                record.digest = manifest.to_string();
            }
        }
        if let Some(records) = info.signatures_mut(&entry) {
            records.retain(|existing| {
                existing.key_id != record.key_id || existing.format != record.format
            });
            records.push(record);
        }
    }
    info.pipeline.record(stage_record(Stage::Sign, run));
    info.normalize();
    let output = output.unwrap_or(image_info);
    let digest = files::write_atomically(&output, &info)?;
    tracing::info!(
        "{} signed with key {}: {added} new, {} already signed; {} HTTP requests",
        summary::count(total, "digest"),
        &key_id[..12.min(key_id.len())],
        total - added,
        client.request_count()
    );
    let signed: Vec<String> = info
        .digest_entries()
        .into_iter()
        .map(|entry| entry.reference)
        .collect();
    set_list_output(host, "signed", &signed)?;
    finish_with_outputs(host, Stage::Sign, &output, &digest, &info)
}

/// Splits `entries` into those already signed by this key (with the manifest holding the signature) and the
/// rest. With `.sig` tags, one `tags/list` per repository shows which digests have any signature at all, and
/// only those are read; referrers are looked up for every digest by [`Signer::sign`] instead.
async fn signed_already(
    signer: &Signer<'_, AnyStore>,
    entries: Vec<DigestEntry>,
    staged: &impl Fn(&str) -> String,
) -> anyhow::Result<(Vec<(DigestEntry, Digest)>, Vec<DigestEntry>)> {
    if signer.storage != Storage::Tag {
        return Ok((Vec::new(), entries));
    }
    let store = signer.store;
    let mut references = Vec::with_capacity(entries.len());
    for entry in entries {
        let reference: DigestReference = entry
            .reference
            .parse()
            .with_context(|| format!("reading `{}`", entry.reference))?;
        references.push((entry, reference));
    }
    let repositories: BTreeSet<String> = references
        .iter()
        .map(|(_, reference)| staged(reference.repository()))
        .collect();
    let listings = signature_listings(store, repositories, CONCURRENT_SIGNATURES).await?;
    let listings = &listings;
    let checked: Vec<(DigestEntry, Option<Digest>)> = stream::iter(references)
        .map(|(entry, reference)| async move {
            let repository = staged(reference.repository());
            let tagged = listings
                .get(&repository)
                .is_some_and(|tags| tags.contains(&signature_tag(&reference.digest)));
            if !tagged {
                return Ok((entry, None));
            }
            let ours = signer
                .signed_already(&repository, reference.name(), &reference.digest)
                .await
                .with_context(|| {
                    format!(
                        "reading the signatures of `{}/{repository}@{}`",
                        store.name(),
                        reference.digest
                    )
                })?;
            Ok::<_, anyhow::Error>((entry, ours))
        })
        .buffer_unordered(CONCURRENT_SIGNATURES)
        .try_collect()
        .await?;
    let mut already = Vec::new();
    let mut pending = Vec::new();
    for (entry, ours) in checked {
        match ours {
            Some(manifest) => already.push((entry, manifest)),
            None => pending.push(entry),
        }
    }
    Ok((already, pending))
}

/// Every digest must be in staging, where it is signed: one HEAD per digest, all before anything is written.
async fn require_staged(
    store: &AnyStore,
    entries: &[DigestEntry],
    staged: &impl Fn(&str) -> String,
) -> anyhow::Result<()> {
    let lookups = entries.iter().map(|entry| async move {
        let reference: DigestReference = entry
            .reference
            .parse()
            .with_context(|| format!("reading `{}`", entry.reference))?;
        let repository = staged(reference.repository());
        let present = store
            .head_manifest(&repository, ManifestReference::Digest(&reference.digest))
            .await
            .with_context(|| {
                format!(
                    "looking for `{}/{repository}@{}`",
                    store.name(),
                    reference.digest
                )
            })?;
        Ok::<_, anyhow::Error>(
            present
                .is_none()
                .then(|| format!("`{repository}@{}`", reference.digest)),
        )
    });
    let missing: Vec<String> = stream::iter(lookups)
        .buffered(CONCURRENT_SIGNATURES)
        .try_collect::<Vec<_>>()
        .await?
        .into_iter()
        .flatten()
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Refusal {
        message: format!(
            "{} of {} are not in staging `{}`, so nothing was signed: {}",
            missing.len(),
            summary::count(entries.len(), "digest"),
            store.name(),
            summary::listing(&missing, LISTED_DIGESTS)
        ),
        hint: Some(
            "sign where the build pushed the images: pass the `--staging-registry` and `--staging-prefix` \
             that create-manifest was given"
                .to_owned(),
        ),
    }
    .into())
}

/// Every image the manifest gives shared tags must have its index recorded.
fn require_indexes(
    manifest: &Manifest,
    info: &ImageInfo,
    file: &std::path::Path,
) -> anyhow::Result<()> {
    for placed in place_images(manifest, info, file)? {
        let shared_tags = &placed.declared.shared_tags;
        let image = &info.repos[placed.repo].images[placed.image];
        if !shared_tags.is_empty() && image.manifest.is_none() {
            let repository = &info.repos[placed.repo].repo;
            return Err(missing_index(
                repository,
                &placed.path,
                shared_tags.keys().next(),
            ));
        }
    }
    Ok(())
}

/// An index recorded without a digest cannot be signed.
fn require_recorded_indexes(info: &ImageInfo) -> anyhow::Result<()> {
    for (repo_index, repo) in info.repos.iter().enumerate() {
        for (image_index, image) in repo.images.iter().enumerate() {
            if image
                .manifest
                .as_ref()
                .is_some_and(|manifest| manifest.digest.is_empty())
            {
                let path = JsonPath::root()
                    .key("repos")
                    .index(repo_index)
                    .key("images")
                    .index(image_index);
                let tag = image
                    .manifest
                    .as_ref()
                    .and_then(|manifest| manifest.shared_tags.first());
                return Err(missing_index(&repo.repo, &path, tag));
            }
        }
    }
    Ok(())
}

/// A store failure stays a `StoreError` in the chain, so that its hint and exit code are reported.
fn reportable(error: SignError) -> anyhow::Error {
    match error {
        SignError::Store(error) => error.into(),
        other => other.into(),
    }
}

fn missing_index(repository: &str, path: &JsonPath, tag: Option<&String>) -> anyhow::Error {
    let tag = tag.map(|tag| format!(":{tag}")).unwrap_or_default();
    Refusal {
        message: format!("`{repository}{tag}` (image-info `{path}`) has shared tags but no index digest, so it would go unsigned"),
        hint: Some("run `imagepipe create-manifest` on this image-info first".to_owned()),
    }
    .into()
}
