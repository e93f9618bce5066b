//! `imagepipe create-manifest`: one index (manifest list) per image with shared tags, pushed to staging right
//! after post-build, so that its digest is in image-info before sign runs.
//!
//! A shared tag never points at an index that lacks a declared platform: a platform not rebuilt in this run
//! is taken from the public registry (see [`imports`]), or the stage refuses before it pushes any index. A tag
//! already pointing at its index is left alone, so a re-run on unchanged input writes nothing.

mod imports;
mod index;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use tokio::sync::Mutex;

use crate::ci::{CiHost, RunIdentity};
use crate::files;
use crate::inputs;
use crate::model::image_info::{ImageInfo, ManifestData};
use crate::model::ledger::Stage;
use crate::model::manifest::Manifest;
use crate::model::placement::place_images;
use crate::model::reference::{Digest, DigestReference};
use crate::stages::{
    check_staging_prefix, finish_with_outputs, set_list_output, stage_record, summary,
};
use crate::store::registry::{ClientSettings, RegistryClient};
use crate::store::{AnyStore, Location, Store, media_type, staging_repository};

use imports::{Import, Published, Sources};
use index::{Child, Describer};

/// Indexes built at once; each needs a few requests, which the client bounds on its own.
const CONCURRENT_INDEXES: usize = 32;

/// Which kind of manifest list to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexMediaType {
    Oci,
    Docker,
}

impl IndexMediaType {
    fn as_str(self) -> &'static str {
        match self {
            Self::Oci => media_type::OCI_INDEX,
            Self::Docker => media_type::DOCKER_MANIFEST_LIST,
        }
    }
}

pub struct Settings {
    pub manifest: PathBuf,
    pub variables: std::collections::BTreeMap<String, String>,
    pub image_info: PathBuf,
    /// Where to write the updated image-info; the input file when absent.
    pub output: Option<PathBuf>,
    pub expect_sha256: Option<String>,
    /// The image-info last published: the record of the platforms this run did not rebuild.
    pub published_image_info: Option<PathBuf>,
    pub staging: Location,
    pub staging_prefix: Option<String>,
    pub media_type: IndexMediaType,
    pub client: ClientSettings,
}

/// One index to create: which image-info image it belongs to and the digests of its platforms, in the order
/// the manifest declares them.
struct Plan {
    repo: usize,
    image: usize,
    repository: String,
    shared_tags: Vec<String>,
    children: Vec<Child>,
    /// The index digest image-info records for the image, from an earlier run.
    recorded: Option<Digest>,
}

pub async fn run(
    settings: Settings,
    run: &RunIdentity,
    host: &mut dyn CiHost,
) -> anyhow::Result<()> {
    let Settings {
        manifest,
        variables,
        image_info,
        output,
        expect_sha256,
        published_image_info,
        staging,
        staging_prefix,
        media_type,
        client,
    } = settings;
    check_staging_prefix(staging_prefix.as_deref())?;
    let manifest = inputs::load_manifest(&manifest, &variables)?;
    let mut info = inputs::load_image_info_expecting(&image_info, expect_sha256.as_deref())?;
    info.pipeline.require(Stage::CreateManifest)?;
    inputs::require_manifest_registry(&info, &image_info, &manifest)?;
    let mut as_read = info.clone();
    as_read.normalize();
    let published = match &published_image_info {
        Some(file) => Some(inputs::load_published_image_info(file, &manifest)?),
        None => None,
    };
    let public_registry = manifest.registry.clone().unwrap_or_default();

    let client = Arc::new(RegistryClient::new(client)?);
    let staging_store = AnyStore::open(&staging, &client);
    let staged = |repository: &str| staging_repository(staging_prefix.as_deref(), repository);

    let (mut plans, imports) = plan(&manifest, &info, &image_info)?;
    if !imports.is_empty() {
        let public = AnyStore::open(&Location::Registry(public_registry.clone()), &client);
        let sources = Sources {
            public: &public,
            public_registry: &public_registry,
            staging: &staging_store,
            staged: &staged,
            published: published
                .as_ref()
                .zip(published_image_info.as_deref())
                .map(|(info, file)| Published { info, file }),
        };
        let records = imports::import_platforms(&imports, &sources).await?;
        for (import, record) in imports.iter().zip(records) {
            info.repos[import.repo].images[import.image]
                .platforms
                .push(record);
        }
        plans = plan(&manifest, &info, &image_info)?.0;
    }

    let total = plans.len();
    let describer = Describer::new(&staging_store);
    let done = Mutex::new(0usize);
    let indexes: Vec<(&Plan, Digest, usize)> = stream::iter(&plans)
        .map(|plan| {
            let repository = staged(&plan.repository);
            let describer = &describer;
            let store = &staging_store;
            let done = &done;
            async move {
                let recorded = match &plan.recorded {
                    Some(recorded) => {
                        index::recorded_index(
                            store,
                            &repository,
                            recorded,
                            &plan.children,
                            media_type,
                        )
                        .await?
                    }
                    None => None,
                };
                let index = match recorded {
                    Some(index) => index,
                    None => {
                        index::build_index(describer, &repository, &plan.children, media_type)
                            .await?
                    }
                };
                let pushed =
                    index::push_index(store, &repository, &plan.shared_tags, &index).await?;
                let digest = index.digest();
                let mut done = done.lock().await;
                *done += 1;
                let first_tag = plan
                    .shared_tags
                    .first()
                    .map(String::as_str)
                    .unwrap_or_default();
                let action = match pushed {
                    0 => "unchanged".to_owned(),
                    pushed => format!("{} pushed", summary::count(pushed, "tag")),
                };
                tracing::info!(
                    "index {} of {total}: {repository}:{first_tag} {digest} ({action})",
                    *done
                );
                Ok::<_, anyhow::Error>((plan, digest, pushed))
            }
        })
        .buffer_unordered(CONCURRENT_INDEXES)
        .try_collect()
        .await?;

    let created = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let (mut indexes_pushed, mut tags_pushed) = (0, 0);
    let mut references = Vec::with_capacity(indexes.len());
    for (plan, digest, pushed) in indexes {
        indexes_pushed += usize::from(pushed > 0);
        tags_pushed += pushed;
        let reference = format!("{public_registry}/{}@{digest}", plan.repository);
        references.push(reference.clone());
        let image = &mut info.repos[plan.repo].images[plan.image];
        record_index(&mut image.manifest, reference, &plan.shared_tags, &created);
    }
    info.normalize();
    // A re-run that changed no record leaves the ledger as it was: the stages after it (sign) still hold.
    if info.repos != as_read.repos || !info.pipeline.has(Stage::CreateManifest) {
        info.pipeline
            .record(stage_record(Stage::CreateManifest, run));
    } else {
        tracing::info!(
            "no record changed: the ledger keeps its `create-manifest` entry and what follows it"
        );
    }
    let output = output.unwrap_or(image_info);
    let digest = files::write_atomically(&output, &info)?;
    tracing::info!(
        "{} ({indexes_pushed} pushed, {} unchanged; {} pushed) in {}; {} HTTP requests",
        summary::count(total, "index"),
        total - indexes_pushed,
        summary::count(tags_pushed, "tag"),
        staging_store.name(),
        client.request_count()
    );
    set_list_output(host, "indexes", &references)?;
    finish_with_outputs(host, Stage::CreateManifest, &output, &digest, &info)
}

/// Records the index of an image. A record of the same digest with the same shared tags, in whatever order,
/// is kept as it is (its `created` and signatures stay); otherwise the record is the index's, with the tags in
/// the manifest's order.
fn record_index(
    recorded: &mut Option<ManifestData>,
    reference: String,
    shared_tags: &[String],
    created: &str,
) {
    if let Some(existing) = recorded
        .as_mut()
        .filter(|existing| existing.digest == reference)
    {
        let same_tags = existing.shared_tags.len() == shared_tags.len()
            && shared_tags
                .iter()
                .all(|tag| existing.shared_tags.contains(tag));
        if !same_tags {
            existing.shared_tags = shared_tags.to_vec();
        }
        return;
    }
    *recorded = Some(ManifestData {
        digest: reference,
        shared_tags: shared_tags.to_vec(),
        created: Some(created.to_owned()),
        ..ManifestData::default()
    });
}

/// Finds, for each image of image-info, its manifest image; plans an index for those with shared tags and
/// lists the declared platforms this run did not build.
fn plan(
    manifest: &Manifest,
    info: &ImageInfo,
    file: &Path,
) -> anyhow::Result<(Vec<Plan>, Vec<Import>)> {
    let mut plans = Vec::new();
    let mut imports = Vec::new();
    for placed in place_images(manifest, info, file)? {
        if placed.declared.shared_tags.is_empty() {
            continue;
        }
        let image = &info.repos[placed.repo].images[placed.image];
        let repository = &info.repos[placed.repo].repo;
        let first = placed.positions[0].image;
        let mut children = Vec::new();
        for (platform_index, entry) in placed.declared.platforms.iter().enumerate() {
            let built = placed.positions.iter().position(|position| {
                position.image == first && position.platform == platform_index
            });
            match built.map(|built| &image.platforms[built]) {
                Some(platform) => children.push(Child {
                    image: digest_of(&platform.digest, file)?,
                    attestation: platform
                        .attestation
                        .as_ref()
                        .map(|attestation| digest_of(&attestation.digest, file))
                        .transpose()?,
                }),
                None => imports.push(Import {
                    repo: placed.repo,
                    image: placed.image,
                    repository: repository.clone(),
                    entry: entry.clone(),
                }),
            }
        }
        plans.push(Plan {
            repo: placed.repo,
            image: placed.image,
            repository: repository.clone(),
            shared_tags: placed.declared.shared_tags.keys().cloned().collect(),
            children,
            recorded: image
                .manifest
                .as_ref()
                .filter(|recorded| !recorded.digest.is_empty())
                .map(|recorded| digest_of(&recorded.digest, file))
                .transpose()?,
        });
    }
    Ok((plans, imports))
}

fn digest_of(reference: &str, file: &Path) -> anyhow::Result<Digest> {
    let reference: DigestReference = reference
        .parse()
        .with_context(|| format!("reading `{}`", file.display()))?;
    Ok(reference.digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::image_info::{ImageData, PlatformData};
    use crate::model::manifest::{Image, PlatformEntry, Repo};

    fn image_of(platforms: Vec<PlatformData>) -> ImageData {
        ImageData {
            platforms,
            ..ImageData::default()
        }
    }

    fn entry(dockerfile: &str, architecture: &str, tag: &str) -> PlatformEntry {
        let mut entry = PlatformEntry {
            dockerfile: dockerfile.into(),
            os: "linux".into(),
            os_version: Some("bookworm".into()),
            architecture: Some(architecture.into()),
            ..PlatformEntry::default()
        };
        entry.tags.insert(tag.into(), Default::default());
        entry
    }

    fn built(dockerfile: &str, architecture: &str, fill: char) -> PlatformData {
        PlatformData {
            dockerfile: dockerfile.into(),
            digest: format!(
                "registry.example/acme/app@sha256:{}",
                fill.to_string().repeat(64)
            ),
            os_type: "Linux".into(),
            os_version: "bookworm".into(),
            architecture: architecture.into(),
            ..PlatformData::default()
        }
    }

    fn manifest() -> Manifest {
        let mut shared = Image {
            platforms: vec![
                entry("amd64", "amd64", "1-amd64"),
                entry("arm64", "arm64", "1-arm64"),
            ],
            ..Image::default()
        };
        shared.shared_tags.insert("1".into(), Default::default());
        shared
            .shared_tags
            .insert("latest".into(), Default::default());
        let alone = Image {
            platforms: vec![entry("debug", "amd64", "1-debug")],
            ..Image::default()
        };
        Manifest {
            registry: Some("registry.example".into()),
            repos: vec![Repo {
                name: "acme/app".into(),
                images: vec![shared, alone],
                ..Repo::default()
            }],
            ..Manifest::default()
        }
    }

    fn info(images: Vec<ImageData>) -> ImageInfo {
        ImageInfo {
            repos: vec![crate::model::image_info::RepoData {
                repo: "acme/app".into(),
                images,
                ..Default::default()
            }],
            ..ImageInfo::default()
        }
    }

    #[test]
    fn plans_indexes_for_shared_tags_only_in_declared_order() {
        let info = info(vec![
            image_of(vec![
                built("arm64", "arm64", 'b'),
                built("amd64", "amd64", 'a'),
            ]),
            image_of(vec![built("debug", "amd64", 'c')]),
        ]);
        let (plans, imports) =
            plan(&manifest(), &info, std::path::Path::new("i.json")).expect("plans");
        assert!(imports.is_empty());
        assert_eq!(
            plans.len(),
            1,
            "the image without shared tags gets no index"
        );
        assert_eq!(plans[0].shared_tags, ["1", "latest"]);
        let children: Vec<String> = plans[0]
            .children
            .iter()
            .map(|child| child.image.hex()[..1].to_owned())
            .collect();
        assert_eq!(children, ["a", "b"], "children follow the manifest's order");
    }

    #[test]
    fn a_platform_not_rebuilt_is_to_be_imported() {
        let info = info(vec![image_of(vec![built("amd64", "amd64", 'a')])]);
        let (plans, imports) =
            plan(&manifest(), &info, std::path::Path::new("i.json")).expect("plans");
        assert_eq!(plans[0].children.len(), 1);
        assert_eq!(imports.len(), 1);
        assert_eq!(imports[0].entry.dockerfile, "arm64");
    }

    #[test]
    fn an_index_record_keeps_its_place_when_only_the_tag_order_differs() {
        let reference = "registry.example/acme/app@sha256:11".to_owned();
        let tags =
            |tags: &[&str]| -> Vec<String> { tags.iter().map(|tag| (*tag).to_owned()).collect() };
        let mut recorded = Some(ManifestData {
            digest: reference.clone(),
            shared_tags: tags(&["latest", "1"]),
            created: Some("then".into()),
            ..ManifestData::default()
        });
        let before = recorded.clone();
        record_index(
            &mut recorded,
            reference.clone(),
            &tags(&["1", "latest"]),
            "now",
        );
        assert_eq!(
            recorded, before,
            "the same tags in another order change nothing"
        );

        record_index(
            &mut recorded,
            reference.clone(),
            &tags(&["1", "2", "latest"]),
            "now",
        );
        let changed = recorded.clone().expect("recorded");
        assert_eq!(
            changed.shared_tags,
            ["1", "2", "latest"],
            "the manifest's order"
        );
        assert_eq!(changed.created.as_deref(), Some("then"), "the same index");

        record_index(
            &mut recorded,
            "registry.example/acme/app@sha256:22".into(),
            &tags(&["1"]),
            "now",
        );
        assert_eq!(recorded.expect("recorded").created.as_deref(), Some("now"));
    }
}
