//! `imagepipe create-manifest`: one index (manifest list) per image with shared tags, pushed to staging right
//! after post-build, so that its digest is in image-info before sign runs.
//!
//! A shared tag never points at an index that lacks a declared platform: a platform not rebuilt in this run
//! is taken from the public registry by its first tag and copied into staging (signatures too), or the stage
//! refuses before it pushes any index.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use oci_spec::image::{
    Arch, Descriptor, ImageIndexBuilder, ImageManifest, MediaType, Os, PlatformBuilder,
};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::ci::{self, CiHost, RunIdentity};
use crate::files;
use crate::inputs;
use crate::model::image_info::{ImageInfo, ManifestData, PlatformData};
use crate::model::ledger::Stage;
use crate::model::manifest::{Manifest, PlatformEntry};
use crate::model::placement::place_images;
use crate::model::reference::{Digest, DigestReference};
use crate::stages::{Refusal, check_staging_prefix, stage_record, summary};
use crate::store::copy::{Copier, CopyStats};
use crate::store::registry::{ClientSettings, RegistryClient};
use crate::store::{
    AnyStore, Location, ManifestReference, Store, StoreError, StoredManifest, media_type,
    our_digest, staging_repository,
};

/// Indexes built at once; each needs a few requests, which the client bounds on its own.
const CONCURRENT_INDEXES: usize = 8;

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
    children: Vec<Digest>,
}

/// A declared platform this run did not rebuild, to be taken from the public registry.
struct Import {
    repo: usize,
    image: usize,
    repository: String,
    entry: PlatformEntry,
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
    let public_registry = manifest.registry.clone().unwrap_or_default();

    let client = Arc::new(RegistryClient::new(client)?);
    let staging_store = AnyStore::open(&staging, &client);
    let staged = |repository: &str| staging_repository(staging_prefix.as_deref(), repository);

    let (mut plans, imports) = plan(&manifest, &info, &image_info)?;
    if !imports.is_empty() {
        let public = AnyStore::open(&Location::Registry(public_registry.clone()), &client);
        let found = find_published(&public, &imports).await?;
        let mut copied = CopyStats::default();
        for (import, digest) in imports.iter().zip(&found) {
            let copier = Copier {
                source: &public,
                from: &import.repository,
                target: &staging_store,
                to: &staged(&import.repository),
                same_store: false,
            };
            copied += copier.copy_manifest(digest).await.with_context(|| {
                format!(
                    "copying `{public_registry}/{}@{digest}` into staging",
                    import.repository
                )
            })?;
            copied += copier.copy_signatures(digest).await?;
            let image = &mut info.repos[import.repo].images[import.image];
            image
                .platforms
                .push(unchanged_platform(&public_registry, import, digest));
        }
        tracing::info!(
            "took {} not rebuilt in this run from {public_registry}: {} objects copied, {} already in staging",
            summary::count(imports.len(), "platform"),
            copied.objects_copied,
            copied.objects_skipped
        );
        plans = plan(&manifest, &info, &image_info)?.0;
    }

    let total = plans.len();
    let describer = Describer::new(&staging_store);
    let done = Mutex::new(0usize);
    let indexes: Vec<(&Plan, Digest, bool)> = stream::iter(&plans)
        .map(|plan| {
            let existing = info.repos[plan.repo].images[plan.image].manifest.as_ref();
            let recorded = existing
                .filter(|manifest| manifest.shared_tags == plan.shared_tags)
                .and_then(|manifest| manifest.digest.parse::<DigestReference>().ok())
                .map(|reference| reference.digest);
            let repository = staged(&plan.repository);
            let describer = &describer;
            let store = &staging_store;
            let done = &done;
            async move {
                let index = build_index(describer, &repository, &plan.children, media_type).await?;
                let pushed = push_index(
                    store,
                    &repository,
                    &plan.shared_tags,
                    &index,
                    recorded.as_ref(),
                )
                .await?;
                let digest = index.digest();
                let mut done = done.lock().await;
                *done += 1;
                let first_tag = plan
                    .shared_tags
                    .first()
                    .map(String::as_str)
                    .unwrap_or_default();
                let action = if pushed { "pushed" } else { "unchanged" };
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
    let mut pushed_count = 0;
    for (plan, digest, pushed) in indexes {
        pushed_count += usize::from(pushed);
        let reference = format!("{public_registry}/{}@{digest}", plan.repository);
        let image = &mut info.repos[plan.repo].images[plan.image];
        let same = image
            .manifest
            .as_ref()
            .is_some_and(|manifest| manifest.digest == reference);
        if !same {
            image.manifest = Some(ManifestData {
                digest: reference,
                shared_tags: plan.shared_tags.clone(),
                created: Some(created.clone()),
                ..ManifestData::default()
            });
        }
    }
    info.pipeline
        .record(stage_record(Stage::CreateManifest, run));
    let output = output.unwrap_or(image_info);
    let digest = files::write_atomically(&output, &info)?;
    tracing::info!(
        "{} ({pushed_count} pushed, {} unchanged) in {}; {} HTTP requests",
        summary::count(total, "index"),
        total - pushed_count,
        staging_store.name(),
        client.request_count()
    );
    ci::set_stage_outputs(host, Stage::CreateManifest, &output, &digest)
        .context("setting the step outputs")?;
    host.summary(&summary::image_table("imagepipe create-manifest", &info))
        .context("writing the step summary")?;
    Ok(())
}

/// Finds, for each image of image-info, its manifest image; plans an index for those with shared tags and
/// lists the declared platforms this run did not build.
fn plan(
    manifest: &Manifest,
    info: &ImageInfo,
    file: &std::path::Path,
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
                Some(platform) => children.push(digest_of(platform, file)?),
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
        });
    }
    Ok((plans, imports))
}

fn digest_of(platform: &PlatformData, file: &std::path::Path) -> anyhow::Result<Digest> {
    let reference: DigestReference = platform
        .digest
        .parse()
        .with_context(|| format!("reading `{}`", file.display()))?;
    Ok(reference.digest)
}

/// The current digest of each platform to import, by its first tag in the public registry. Refuses, naming
/// every platform it cannot find, before anything is pushed.
async fn find_published(public: &AnyStore, imports: &[Import]) -> anyhow::Result<Vec<Digest>> {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for import in imports {
        let first_tag = import.entry.tags.keys().next();
        let descriptor = match first_tag {
            Some(tag) => {
                public
                    .head_manifest(&import.repository, ManifestReference::Tag(tag))
                    .await?
            }
            None => None,
        };
        match descriptor.and_then(|descriptor| our_digest(descriptor.digest())) {
            Some(digest) => found.push(digest),
            None => missing.push(format!(
                "`{}` {} (tag `{}` not in {})",
                import.repository,
                import.entry.identity(),
                first_tag.map(String::as_str).unwrap_or("none declared"),
                public.name()
            )),
        }
    }
    if missing.is_empty() {
        Ok(found)
    } else {
        Err(Refusal {
            message: format!(
                "a shared tag would miss {}: {}",
                summary::count(missing.len(), "declared platform"),
                missing.join("; ")
            ),
            hint: Some("build the missing platforms in this run, or publish them first".to_owned()),
        }
        .into())
    }
}

fn unchanged_platform(public_registry: &str, import: &Import, digest: &Digest) -> PlatformData {
    let entry = &import.entry;
    PlatformData {
        dockerfile: entry.dockerfile.clone(),
        simple_tags: entry.tags.keys().cloned().collect(),
        digest: format!("{public_registry}/{}@{digest}", import.repository),
        os_type: entry.os.clone(),
        os_version: entry.os_version.clone().unwrap_or_default(),
        architecture: entry.architecture().to_owned(),
        variant: entry.variant.clone(),
        is_unchanged: true,
        ..PlatformData::default()
    }
}

/// The platform fields an image's config declares.
#[derive(Deserialize)]
struct ConfigPlatform {
    architecture: String,
    os: String,
    #[serde(default)]
    variant: Option<String>,
    #[serde(default, rename = "os.version")]
    os_version: Option<String>,
}

/// Describes platform images for index entries, once per digest however many indexes list it.
struct Describer<'a> {
    store: &'a AnyStore,
    known: Mutex<HashMap<Digest, Descriptor>>,
}

impl<'a> Describer<'a> {
    fn new(store: &'a AnyStore) -> Self {
        Self {
            store,
            known: Mutex::default(),
        }
    }

    /// The descriptor of a platform image, with the platform read from its config.
    async fn describe(&self, repository: &str, digest: &Digest) -> anyhow::Result<Descriptor> {
        if let Some(known) = self.known.lock().await.get(digest) {
            return Ok(known.clone());
        }
        let name = format!("{}/{repository}@{digest}", self.store.name());
        let manifest = self
            .store
            .get_manifest(repository, ManifestReference::Digest(digest))
            .await?
            .ok_or_else(|| StoreError::NotFound {
                store: self.store.name(),
                reference: format!("{repository}@{digest}"),
            })
            .with_context(|| format!("reading platform image `{name}`"))?;
        let image: ImageManifest = serde_json::from_slice(&manifest.bytes)
            .with_context(|| format!("`{name}` is not an image manifest"))?;
        let config_digest = our_digest(image.config().digest())
            .with_context(|| format!("`{name}` has a config digest that is not sha256"))?;
        let config = self.store.get_blob(repository, &config_digest).await?;
        let declared: ConfigPlatform = serde_json::from_slice(&config)
            .with_context(|| format!("the config of `{name}` declares no os and architecture"))?;
        let mut platform = PlatformBuilder::default()
            .architecture(Arch::from(declared.architecture.as_str()))
            .os(Os::from(declared.os.as_str()));
        if let Some(variant) = declared.variant.filter(|variant| !variant.is_empty()) {
            platform = platform.variant(variant);
        }
        if let Some(version) = declared.os_version.filter(|version| !version.is_empty()) {
            platform = platform.os_version(version);
        }
        let mut descriptor = manifest.descriptor();
        descriptor.set_platform(Some(platform.build().context("describing a platform")?));
        self.known
            .lock()
            .await
            .insert(digest.clone(), descriptor.clone());
        Ok(descriptor)
    }
}

/// The index over `children`, in their declared order. It holds no timestamp or annotation, so the same
/// children always give the same bytes and digest.
async fn build_index(
    describer: &Describer<'_>,
    repository: &str,
    children: &[Digest],
    media_type: IndexMediaType,
) -> anyhow::Result<StoredManifest> {
    let mut manifests = Vec::with_capacity(children.len());
    for child in children {
        manifests.push(describer.describe(repository, child).await?);
    }
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::from(media_type.as_str()))
        .manifests(manifests)
        .build()
        .context("building an index")?;
    Ok(StoredManifest {
        media_type: media_type.as_str().to_owned(),
        bytes: serde_json::to_vec(&index)
            .context("serializing an index")?
            .into(),
    })
}

/// Pushes the index under every shared tag. When image-info already records this digest (a re-run), only
/// tags that do not point at it yet are pushed; otherwise each tag is pushed once. Returns whether anything
/// was pushed.
async fn push_index(
    store: &AnyStore,
    repository: &str,
    shared_tags: &[String],
    index: &StoredManifest,
    recorded: Option<&Digest>,
) -> anyhow::Result<bool> {
    let digest = index.digest();
    let mut pushed = false;
    for tag in shared_tags {
        if recorded == Some(&digest) {
            let current = store
                .head_manifest(repository, ManifestReference::Tag(tag))
                .await?;
            if current
                .and_then(|descriptor| our_digest(descriptor.digest()))
                .as_ref()
                == Some(&digest)
            {
                continue;
            }
        }
        store
            .put_manifest(repository, ManifestReference::Tag(tag), index)
            .await
            .with_context(|| format!("pushing index `{}/{repository}:{tag}`", store.name()))?;
        pushed = true;
    }
    Ok(pushed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::image_info::ImageData;
    use crate::model::manifest::{Image, Repo};

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
            .map(|digest| digest.hex()[..1].to_owned())
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
        let platform = unchanged_platform("registry.example", &imports[0], &Digest::of(b"x"));
        assert!(platform.is_unchanged);
        assert_eq!(platform.simple_tags, ["1-arm64"]);
        assert!(
            platform
                .digest
                .starts_with("registry.example/acme/app@sha256:")
        );
    }
}
