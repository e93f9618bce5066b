//! `imagepipe record`: the fragment for an image another tool built and pushed to staging
//! (docker/build-push-action, a script), so that post-build takes it like one of our own builds.
//!
//! Refuses a digest staging does not hold (exit 3), and a Dockerfile and platform the manifest does not declare
//! (exit 2): the platform is read from the image's config, not taken on trust.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use crate::ci::{CiHost, RunIdentity, SourceRevision};
use crate::files;
use crate::inputs;
use crate::model::image_info::{AttestationData, PlatformData};
use crate::model::platform::PlatformIdentity;
use crate::model::platform_record::dockerfile_path;
use crate::model::reference::Digest;
use crate::stages::fragment::{self, BuiltUnit, DeclaredAt};
use crate::stages::{InvalidFlag, Refusal, check_staging_prefix, summary};
use crate::store::registry::{ClientSettings, RegistryClient};
use crate::store::{AnyStore, Location, ManifestReference, Store, staging_repository};

pub struct Settings {
    pub manifest: PathBuf,
    pub variables: BTreeMap<String, String>,
    /// The Dockerfile (or its folder) as the manifest names it.
    pub dockerfile: String,
    pub digest: Digest,
    pub staging: Location,
    pub staging_prefix: Option<String>,
    pub output: PathBuf,
    pub client: ClientSettings,
}

pub async fn run(
    settings: Settings,
    run: &RunIdentity,
    host: &mut dyn CiHost,
) -> anyhow::Result<()> {
    let Settings {
        manifest: manifest_file,
        variables,
        dockerfile,
        digest,
        staging,
        staging_prefix,
        output,
        client,
    } = settings;
    check_staging_prefix(staging_prefix.as_deref())?;
    let manifest = inputs::load_manifest(&manifest_file, &variables)?;
    let wanted = dockerfile_path(&dockerfile);
    let repositories: Vec<usize> = manifest
        .repos
        .iter()
        .enumerate()
        .filter(|(_, repo)| {
            repo.images
                .iter()
                .flat_map(|image| &image.platforms)
                .any(|entry| dockerfile_path(&entry.dockerfile) == wanted)
        })
        .map(|(index, _)| index)
        .collect();
    let repo = match repositories.as_slice() {
        [only] => *only,
        [] => {
            return Err(InvalidFlag(format!(
                "--dockerfile: `{dockerfile}` is not declared in `{}`",
                manifest_file.display()
            ))
            .into());
        }
        _ => {
            let names: Vec<String> = repositories
                .iter()
                .map(|index| format!("`{}`", manifest.repos[*index].name))
                .collect();
            return Err(InvalidFlag(format!(
                "--dockerfile: `{dockerfile}` is declared in {}; record it from one repository's build",
                names.join(", ")
            ))
            .into());
        }
    };
    let repository = manifest.repos[repo].name.clone();

    let client = Arc::new(RegistryClient::new(client)?);
    let store = AnyStore::open(&staging, &client);
    let staged = staging_repository(staging_prefix.as_deref(), &repository);
    if store
        .head_manifest(&staged, ManifestReference::Digest(&digest))
        .await?
        .is_none()
    {
        return Err(Refusal {
            message: format!("`{}/{staged}@{digest}` is not in staging", store.name()),
            hint: Some("push the image to staging by digest before recording it".to_owned()),
        }
        .into());
    }
    let built = fragment::read_built(&store, &staged, &digest, None).await?;

    let declared_at: Vec<DeclaredAt> = manifest.repos[repo]
        .images
        .iter()
        .enumerate()
        .flat_map(|(image, declared)| {
            declared
                .platforms
                .iter()
                .enumerate()
                .map(move |(platform, entry)| (image, platform, entry))
        })
        .filter(|(_, _, entry)| {
            let built_identity = PlatformIdentity::new(
                &entry.dockerfile,
                &built.platform.os,
                entry.os_version.as_deref().unwrap_or_default(),
                &built.platform.architecture,
                built.platform.variant.as_deref(),
            );
            dockerfile_path(&entry.dockerfile) == wanted
                && built_identity.matches(&entry.identity())
        })
        .map(|(image, platform, _)| DeclaredAt {
            repo,
            image,
            platform,
        })
        .collect();
    let Some(first) = declared_at.first() else {
        return Err(InvalidFlag(format!(
            "--digest: `{digest}` is an image for {}, which `{dockerfile}` is not declared for in `{}`",
            built.platform,
            manifest_file.display()
        ))
        .into());
    };
    let entry = &manifest.repos[repo].images[first.image].platforms[first.platform];
    let public = manifest.registry.clone().unwrap_or_default();
    let record = PlatformData {
        created: built.created.clone(),
        layers: built.layers.clone(),
        commit_url: SourceRevision::from_environment().map(|source| source.file_url(&wanted)),
        attestation: built
            .attestation
            .as_ref()
            .map(|attestation| AttestationData {
                digest: format!("{public}/{repository}@{attestation}"),
                ..AttestationData::default()
            }),
        ..PlatformData::declared(entry, format!("{public}/{repository}@{}", built.image))
    };
    let info = fragment::fragment(
        &manifest,
        &[BuiltUnit {
            declared_at: declared_at.clone(),
            record,
        }],
        run,
    );
    files::write_atomically(&output, &info)
        .with_context(|| format!("writing the fragment `{}`", output.display()))?;
    tracing::info!(
        "recorded `{repository}@{digest}` ({}) for {} of the manifest in `{}`",
        built.platform,
        summary::count(declared_at.len(), "image"),
        output.display()
    );
    host.set_output("stage", "record")
        .and_then(|()| host.set_output("fragment", &output.display().to_string()))
        .context("setting the step outputs")?;
    Ok(())
}
