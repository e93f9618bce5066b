//! The workload: N images, each its own repository, of P platform images of L layers, pushed by digest to
//! staging the way build legs push, with the manifest and fragments that post-build merges.
//!
//! Layers are pseudo-random bytes (incompressible, unique per image, platform and layer), so no two blobs are
//! the same and no tool can skip one because another repository has it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use imagepipe::model::reference::Digest;
use imagepipe::store::registry::{ClientSettings, RegistryClient, RegistryStore};
use imagepipe::store::{ManifestReference, Store, StoredManifest, media_type};
use serde_json::{Value, json};

use crate::common;
use crate::settings::Settings;

/// The path put before each repository in staging.
pub const PREFIX: &str = "staging/run";
/// Images pushed at once while setting a scene.
const SETUP_CONCURRENCY: usize = 16;

pub struct PlatformImage {
    pub architecture: &'static str,
    pub variant: Option<&'static str>,
    /// Layers, then the config.
    pub blobs: Vec<Bytes>,
    pub manifest: StoredManifest,
    /// The platform's own tag, `1.0-<architecture>`.
    pub tag: String,
}

pub struct WorkloadImage {
    /// The public repository, `bench/app-NNN`.
    pub repository: String,
    pub platforms: Vec<PlatformImage>,
    /// An OCI index of the platforms, for the repositories the peers sign (imagepipe makes its own).
    pub index: StoredManifest,
}

impl WorkloadImage {
    /// Platform digests, then the index's: every digest the pipeline signs.
    pub fn digests(&self, index: &Digest) -> Vec<Digest> {
        self.platforms
            .iter()
            .map(|platform| platform.manifest.digest())
            .chain([index.clone()])
            .collect()
    }
}

pub fn generate(settings: &Settings) -> Vec<WorkloadImage> {
    (0..settings.images)
        .map(|image| {
            let platforms: Vec<PlatformImage> = settings
                .platforms()
                .iter()
                .enumerate()
                .map(|(number, (architecture, variant))| {
                    platform_image(settings, image, number, architecture, *variant)
                })
                .collect();
            let index = index_of(&platforms);
            WorkloadImage {
                repository: format!("bench/app-{image:03}"),
                platforms,
                index,
            }
        })
        .collect()
}

fn platform_image(
    settings: &Settings,
    image: usize,
    number: usize,
    architecture: &'static str,
    variant: Option<&'static str>,
) -> PlatformImage {
    let mut random = fastrand::Rng::with_seed((image * 64 + number) as u64);
    let layers: Vec<Bytes> = (0..settings.layers)
        .map(|_| {
            let mut bytes = vec![0; settings.layer_bytes];
            random.fill(&mut bytes);
            Bytes::from(bytes)
        })
        .collect();
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|layer| Digest::of(layer).to_string())
        .collect();
    let mut config = json!({"architecture": architecture, "os": "linux", "created": "2026-01-01T00:00:00Z",
        "rootfs": {"type": "layers", "diff_ids": diff_ids}, "config": {}});
    if let Some(variant) = variant {
        config["variant"] = variant.into();
    }
    let config = Bytes::from(config.to_string());
    let layer_descriptors: Vec<Value> = layers
        .iter()
        .map(|layer| json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": Digest::of(layer).as_str(), "size": layer.len()}))
        .collect();
    let manifest = json!({"schemaVersion": 2, "mediaType": media_type::OCI_MANIFEST,
        "config": {"mediaType": media_type::OCI_CONFIG, "digest": Digest::of(&config).as_str(), "size": config.len()},
        "layers": layer_descriptors});
    let mut blobs = layers;
    blobs.push(config);
    PlatformImage {
        architecture,
        variant,
        blobs,
        manifest: StoredManifest {
            media_type: media_type::OCI_MANIFEST.to_owned(),
            bytes: Bytes::from(manifest.to_string()),
        },
        tag: format!("1.0-{architecture}"),
    }
}

fn index_of(platforms: &[PlatformImage]) -> StoredManifest {
    let manifests: Vec<Value> = platforms
        .iter()
        .map(|platform| {
            let mut descriptor = json!({"mediaType": media_type::OCI_MANIFEST, "digest": platform.manifest.digest().as_str(),
                "size": platform.manifest.bytes.len(), "platform": {"architecture": platform.architecture, "os": "linux"}});
            if let Some(variant) = platform.variant {
                descriptor["platform"]["variant"] = variant.into();
            }
            descriptor
        })
        .collect();
    StoredManifest {
        media_type: media_type::OCI_INDEX.to_owned(),
        bytes: Bytes::from(
            json!({"schemaVersion": 2, "mediaType": media_type::OCI_INDEX, "manifests": manifests})
                .to_string(),
        ),
    }
}

/// A store for `host` through its own client: for setting scenes and checking results, never measured.
pub fn store(host: &str) -> RegistryStore {
    let client = RegistryClient::new(ClientSettings::default()).expect("a registry client");
    RegistryStore::new(Arc::new(client), host)
}

/// Pushes every platform image by digest into `<prefix><repository>` of `host`; with `with_index`, the index too,
/// under the first shared tag.
pub async fn push(images: &[WorkloadImage], host: &str, prefix: &str, with_index: Option<&str>) {
    let store = store(host);
    stream::iter(images)
        .for_each_concurrent(SETUP_CONCURRENCY, |image| {
            let store = &store;
            async move {
                let repository = format!("{prefix}{}", image.repository);
                for platform in &image.platforms {
                    for blob in &platform.blobs {
                        store
                            .put_blob(&repository, &Digest::of(blob), blob.clone())
                            .await
                            .expect("pushes a blob");
                    }
                    let digest = platform.manifest.digest();
                    store
                        .put_manifest(
                            &repository,
                            ManifestReference::Digest(&digest),
                            &platform.manifest,
                        )
                        .await
                        .expect("pushes a platform manifest");
                }
                if let Some(tag) = with_index {
                    store
                        .put_manifest(&repository, ManifestReference::Tag(tag), &image.index)
                        .await
                        .expect("pushes an index");
                }
            }
        })
        .await;
}

/// Writes `manifest.json` (public registry `public`) and one fragment per image under `folder`; returns the
/// manifest's path.
pub fn write_inputs(
    settings: &Settings,
    images: &[WorkloadImage],
    folder: &Path,
    public: &str,
) -> PathBuf {
    let shared_tags: serde_json::Map<String, Value> = settings
        .shared_tag_names()
        .into_iter()
        .map(|tag| (tag, json!({})))
        .collect();
    let mut declared = Vec::new();
    for (number, image) in images.iter().enumerate() {
        let entries = image
            .platforms
            .iter()
            .map(|platform| {
                let mut entry = json!({"dockerfile": format!("src/{}", platform.architecture),
                    "simpleTags": [platform.tag], "digest": format!("{public}/{}@{}", image.repository, platform.manifest.digest()),
                    "osType": "linux", "osVersion": "bookworm", "architecture": platform.architecture});
                if let Some(variant) = platform.variant {
                    entry["variant"] = variant.into();
                }
                entry
            })
            .collect();
        common::images::write_fragment(
            &folder.join(format!("fragments/leg-{number:03}.json")),
            &image.repository,
            entries,
        );
        let platforms: Vec<Value> = image
            .platforms
            .iter()
            .map(|platform| {
                let mut entry = json!({"dockerfile": format!("src/{}", platform.architecture), "os": "linux",
                    "osVersion": "bookworm", "architecture": platform.architecture, "tags": {platform.tag.clone(): {}}});
                if let Some(variant) = platform.variant {
                    entry["variant"] = variant.into();
                }
                entry
            })
            .collect();
        declared.push(
            json!({"name": image.repository, "images": [{"productVersion": "1.0",
            "sharedTags": shared_tags, "platforms": platforms}]}),
        );
    }
    let manifest = folder.join("manifest.json");
    common::files::write_json(&manifest, &json!({"registry": public, "repos": declared}));
    manifest
}

/// Each image's index digest, as create-manifest recorded it in image-info.
pub fn index_digests(info: &Path) -> Vec<Digest> {
    let info = common::read_json(info);
    info["repos"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|repo| {
            let reference = repo["images"][0]["manifest"]["digest"]
                .as_str()
                .expect("create-manifest recorded an index digest");
            reference
                .rsplit_once('@')
                .expect("a digest reference")
                .1
                .parse()
                .expect("a digest")
        })
        .collect()
}
