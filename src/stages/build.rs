//! `imagepipe build`: builds one leg's platforms (or every leg the filters keep) in dependency order, pushes each
//! to staging, confirms its digest by reading it back, and writes the leg's fragment `<leg>.attempt-<N>.json`
//! for post-build.
//!
//! A `FROM` naming an image of this manifest is pinned to the digest this leg just built in staging, so an image
//! never builds on a stale or public copy of its base. Refuses a leg the manifest does not have and a
//! Dockerfile the chosen builder cannot build (exit 2), and a build whose digest staging does not serve (exit 1).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;

use crate::build::dockerfile;
use crate::build::{self, AnyBuilder, BuildRequest, BuilderChoice, PushTarget, StagedImage};
use crate::ci::{CiHost, RunIdentity, SourceRevision};
use crate::files;
use crate::inputs;
use crate::model::image_info::{AttestationData, PlatformData};
use crate::model::legs::{self, Filters, Leg, ManifestPosition};
use crate::model::manifest::{Manifest, PlatformEntry};
use crate::model::platform_record::dockerfile_path;
use crate::model::reference::Digest;
use crate::stages::fragment::{self, BuiltUnit, DeclaredAt};
use crate::stages::{InvalidFlag, check_staging_prefix, summary};
use crate::store::registry::{ClientSettings, RegistryClient, is_loopback};
use crate::store::{AnyStore, Location, staging_repository};

pub struct Settings {
    pub manifest: PathBuf,
    pub variables: BTreeMap<String, String>,
    /// The leg to build, as `imagepipe matrix` names it; every leg the filters keep when absent.
    pub leg: Option<String>,
    pub filters: Filters,
    pub builder: BuilderChoice,
    /// `--build-arg`, over the manifest's `buildArgs`.
    pub build_args: BTreeMap<String, String>,
    pub staging: Location,
    pub staging_prefix: Option<String>,
    /// The folder the fragments are written to.
    pub fragments: PathBuf,
    pub client: ClientSettings,
}

/// What every unit of a build shares.
struct Shared<'a> {
    manifest: &'a Manifest,
    /// The manifest's public registry, which records name.
    public: String,
    root: &'a Path,
    builder: &'a AnyBuilder,
    store: &'a AnyStore,
    staging: &'a Location,
    staging_prefix: Option<&'a str>,
    client: &'a Arc<RegistryClient>,
    insecure: bool,
    build_args: &'a BTreeMap<String, String>,
    timestamp: u64,
    run_tag: String,
}

pub async fn run(
    settings: Settings,
    run: &RunIdentity,
    host: &mut dyn CiHost,
) -> anyhow::Result<()> {
    let Settings {
        manifest: manifest_file,
        variables,
        leg,
        filters,
        builder,
        build_args,
        staging,
        staging_prefix,
        fragments,
        client,
    } = settings;
    check_staging_prefix(staging_prefix.as_deref())?;
    let manifest = inputs::load_manifest(&manifest_file, &variables)?;
    let root = manifest_file
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned();
    let dependencies = build::dependencies::read_dependencies(&manifest, &manifest_file)?;
    let planned = legs::plan_legs(&manifest, &dependencies, &filters);
    let chosen: Vec<&Leg> = match &leg {
        Some(name) => match planned.iter().find(|planned| &planned.name == name) {
            Some(found) => vec![found],
            None => {
                let names: Vec<String> = planned
                    .iter()
                    .map(|leg| format!("`{}`", leg.name))
                    .collect();
                return Err(InvalidFlag(format!(
                    "--leg: `{name}` is not a leg of `{}`; its legs are {}",
                    manifest_file.display(),
                    summary::listing(&names, 20)
                ))
                .into());
            }
        },
        None => planned.iter().collect(),
    };
    let insecure = match &staging {
        Location::Registry(host) => {
            is_loopback(host)
                || client
                    .insecure_registries
                    .iter()
                    .any(|insecure| insecure == host)
        }
        Location::Layout(_) => false,
    };
    let builder = AnyBuilder::resolve(builder).await?;
    tracing::info!(
        "building {} with the {} builder",
        summary::count(chosen.len(), "leg"),
        builder.name()
    );
    let client = Arc::new(RegistryClient::new(client)?);
    let store = AnyStore::open(&staging, &client);
    let shared = Shared {
        manifest: &manifest,
        public: manifest.registry.clone().unwrap_or_default(),
        root: &root,
        builder: &builder,
        store: &store,
        staging: &staging,
        staging_prefix: staging_prefix.as_deref(),
        client: &client,
        insecure,
        build_args: &build_args,
        timestamp: source_date_epoch(&root),
        run_tag: run_tag(run),
    };
    let attempt = run.attempt.unwrap_or(1);
    for leg in chosen {
        let units = build_leg(&shared, leg)
            .await
            .with_context(|| format!("building leg `{}`", leg.name))?;
        let file = fragments.join(format!("{}.attempt-{attempt}.json", leg.name));
        let info = fragment::fragment(&manifest, &units, run);
        files::write_atomically(&file, &info)
            .with_context(|| format!("writing the fragment of `{}`", leg.name))?;
        tracing::info!(
            "leg `{}`: {} built; fragment `{}`",
            leg.name,
            summary::count(units.len(), "platform"),
            file.display()
        );
    }
    host.set_output("stage", "build")
        .and_then(|()| host.set_output("fragments", &fragments.display().to_string()))
        .context("setting the step outputs")?;
    Ok(())
}

/// Builds the units of one leg, bases first, each pinned to the digests of the bases built before it.
async fn build_leg(shared: &Shared<'_>, leg: &Leg) -> anyhow::Result<Vec<BuiltUnit>> {
    // For each unit built so far: where it is in staging, and its public name.
    let mut built: Vec<Option<(StagedImage, String)>> = vec![None; leg.units.len()];
    let mut units = Vec::new();
    let total = leg.units.len();
    for (index, unit) in leg.units.iter().enumerate() {
        let Some(first) = unit.positions.first() else {
            continue;
        };
        let at = declared_at(first);
        let repository = shared.manifest.repos[at.repo].name.clone();
        let entry = &shared.manifest.repos[at.repo].images[at.image].platforms[at.platform];
        let bases: Vec<(Vec<String>, &(StagedImage, String))> = unit
            .bases
            .iter()
            .filter_map(|base| {
                let names =
                    public_names(shared.manifest, &shared.public, &leg.units[*base].positions);
                built.get(*base)?.as_ref().map(|staged| (names, staged))
            })
            .collect();
        let (staged, record) = build_unit(shared, &repository, entry, &bases, index, &leg.name)
            .await
            .with_context(|| {
                format!(
                    "building `{}` for {}",
                    entry.dockerfile,
                    unit.identity.platform()
                )
            })?;
        tracing::info!(
            "built {} of {total} in leg `{}`: {repository} {} {}",
            index + 1,
            leg.name,
            unit.identity.platform(),
            staged.digest
        );
        let public_name = format!("{}/{repository}@{}", shared.public, staged.digest);
        built[index] = Some((staged, public_name));
        units.push(BuiltUnit {
            declared_at: unit.positions.iter().map(declared_at).collect(),
            record,
        });
    }
    Ok(units)
}

fn declared_at(position: &ManifestPosition) -> DeclaredAt {
    DeclaredAt {
        repo: position.repo,
        image: position.image,
        platform: position.platform,
    }
}

/// `registry/repo:tag` for every tag a unit's images give it: what a `FROM` naming it may say.
fn public_names(manifest: &Manifest, public: &str, positions: &[ManifestPosition]) -> Vec<String> {
    let mut names = Vec::new();
    for position in positions {
        let declared_repo = &manifest.repos[position.repo];
        let declared_image = &declared_repo.images[position.image];
        let tags = declared_image.platforms[position.platform]
            .tags
            .keys()
            .chain(declared_image.shared_tags.keys());
        names.extend(tags.map(|tag| format!("{public}/{}:{tag}", declared_repo.name)));
    }
    names
}

/// Builds one unit and confirms it in staging. Returns where it is and its record.
async fn build_unit(
    shared: &Shared<'_>,
    repository: &str,
    entry: &PlatformEntry,
    bases: &[(Vec<String>, &(StagedImage, String))],
    index: usize,
    leg: &str,
) -> anyhow::Result<(StagedImage, PlatformData)> {
    let declared = PathBuf::from(dockerfile_path(&entry.dockerfile));
    let dockerfile = shared.root.join(&declared);
    let folder = dockerfile.parent().unwrap_or(shared.root).to_owned();
    let text = std::fs::read_to_string(&dockerfile).map_err(|source| build::BuildError::Io {
        path: dockerfile.clone(),
        source,
    })?;
    let mut args = entry.build_args.clone();
    args.extend(
        shared
            .build_args
            .iter()
            .map(|(name, value)| (name.clone(), value.clone())),
    );
    let lines = dockerfile::from_lines(&text, &declared, &args)?;

    let mut replacements = BTreeMap::new();
    let mut staged_bases = BTreeMap::new();
    let mut base_image_digest = None;
    for line in lines.iter().filter(|line| !line.earlier_stage) {
        let Some((_, (staged, public_name))) =
            bases.iter().find(|(names, _)| names.contains(&line.image))
        else {
            continue;
        };
        let pinned = pinned_reference(shared.staging, staged);
        replacements.insert(line.image.clone(), pinned.clone());
        staged_bases.insert(pinned, staged.clone());
        base_image_digest = Some(public_name.clone());
    }
    let pinned_folder = tempfile::tempdir().context("making a folder for the pinned Dockerfile")?;
    let pinned_file = pinned_folder.path().join("Dockerfile");
    std::fs::write(
        &pinned_file,
        dockerfile::replace_from_images(&text, &lines, &replacements),
    )
    .map_err(|source| build::BuildError::Io {
        path: pinned_file.clone(),
        source,
    })?;

    let platform = entry.identity().platform();
    let staged_repository = staging_repository(shared.staging_prefix, repository);
    let request = BuildRequest {
        context: folder.clone(),
        dockerfile: pinned_file,
        declared_dockerfile: declared.clone(),
        platform: platform.clone(),
        build_args: args,
        labels: labels(
            shared.timestamp,
            SourceRevision::from_environment().as_ref(),
        ),
        timestamp: shared.timestamp,
        staged_bases,
    };
    let target = PushTarget {
        location: shared.staging.clone(),
        repository: staged_repository.clone(),
        tag: format!("{}-{leg}-{index}", shared.run_tag)
            .chars()
            .take(128)
            .collect(),
        insecure: shared.insecure,
        client: Arc::clone(shared.client),
    };
    let built = shared.builder.build(&request, &target).await?;
    let image = fragment::read_built(
        shared.store,
        &staged_repository,
        &built.digest,
        Some(&platform),
    )
    .await?;
    let source = SourceRevision::from_environment();
    let public_name = |digest: &Digest| format!("{}/{repository}@{digest}", shared.public);
    let record = PlatformData {
        attestation: image.attestation.as_ref().map(|digest| AttestationData {
            digest: public_name(digest),
            ..AttestationData::default()
        }),
        created: image.created,
        layers: image.layers,
        base_image_digest: base_image_digest.or(built.base_image_digest),
        commit_url: source
            .as_ref()
            .map(|source| source.file_url(&declared.display().to_string())),
        context_digest: Some(build::context_digest(&folder)?.to_string()),
        ..PlatformData::declared(entry, public_name(&image.image))
    };
    Ok((
        StagedImage {
            location: shared.staging.clone(),
            repository: staged_repository,
            digest: built.digest,
        },
        record,
    ))
}

/// How a pinned `FROM` names a base in staging: by registry and digest, or for an OCI layout (which a
/// Dockerfile cannot name) by repository and digest, found through [`BuildRequest::staged_bases`].
fn pinned_reference(staging: &Location, staged: &StagedImage) -> String {
    match staging {
        Location::Registry(host) => format!("{host}/{}@{}", staged.repository, staged.digest),
        Location::Layout(_) => format!("{}@{}", staged.repository, staged.digest),
    }
}

/// The OCI labels every build sets: when, and from which revision and source where the CI host says.
fn labels(timestamp: u64, source: Option<&SourceRevision>) -> BTreeMap<String, String> {
    let created = std::time::UNIX_EPOCH + std::time::Duration::from_secs(timestamp);
    let mut labels = BTreeMap::from([(
        "org.opencontainers.image.created".to_owned(),
        humantime::format_rfc3339_seconds(created).to_string(),
    )]);
    if let Some(source) = source {
        labels.insert(
            "org.opencontainers.image.revision".to_owned(),
            source.revision.clone(),
        );
        labels.insert(
            "org.opencontainers.image.source".to_owned(),
            source.repository_url.clone(),
        );
    }
    labels
}

/// Seconds for every timestamp a build writes: `SOURCE_DATE_EPOCH`, else the time of the commit the manifest's
/// folder is at, else 0, so that equal inputs give equal digests.
fn source_date_epoch(root: &Path) -> u64 {
    if let Some(seconds) = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|value| value.trim().parse().ok())
    {
        return seconds;
    }
    std::process::Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["log", "-1", "--format=%ct"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .and_then(|output| String::from_utf8_lossy(&output.stdout).trim().parse().ok())
        .unwrap_or(0)
}

/// A tag prefix unique to this run, for builders that push to a tag: the CI run, else the time.
fn run_tag(run: &RunIdentity) -> String {
    let unique = run.run_id.clone().unwrap_or_else(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_millis())
            .unwrap_or_default();
        now.to_string()
    });
    let attempt = run.attempt.unwrap_or(1);
    format!("build-{unique}-{attempt}")
        .chars()
        .map(|character| {
            if character.is_ascii_alphanumeric() || character == '-' || character == '.' {
                character
            } else {
                '-'
            }
        })
        .collect()
}
