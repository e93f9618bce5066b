//! A build fragment: what a build leg (or `imagepipe record`) pushed to staging, written as the image-info
//! entries of every manifest image that declares it, ready for post-build.

use std::collections::BTreeMap;

use anyhow::Context;
use oci_spec::image::{ImageIndex, ImageManifest};
use serde::Deserialize;

use crate::ci::RunIdentity;
use crate::model::image_info::{ImageData, ImageInfo, Layer, PlatformData, RepoData};
use crate::model::ledger::Stage;
use crate::model::manifest::Manifest;
use crate::model::platform::{Platform, same_platform};
use crate::model::reference::Digest;
use crate::stages::stage_record;
use crate::store::{AnyStore, ManifestReference, Store, StoreError, attestation, our_digest};

/// Where a platform stands in a manifest: `repos[repo].images[image].platforms[platform]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DeclaredAt {
    pub repo: usize,
    pub image: usize,
    pub platform: usize,
}

/// What staging holds for a built digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltImage {
    /// The platform image: the digest read, or its child for the platform when the build pushed an index with
    /// attestations.
    pub image: Digest,
    /// The attestation manifest that index lists for the image.
    pub attestation: Option<Digest>,
    /// Layers in build order, of the platform image.
    pub layers: Vec<Layer>,
    /// The config's `created`.
    pub created: Option<String>,
    /// The config's platform.
    pub platform: Platform,
}

/// The part of an image config a record takes.
#[derive(Deserialize)]
struct Config {
    #[serde(default)]
    created: Option<String>,
    architecture: String,
    os: String,
    #[serde(default)]
    variant: Option<String>,
}

/// Reads back what staging holds under `digest`, which confirms the build pushed it. An index (a build with
/// attestations) is read through its child for `platform`, or its first child that is not an attestation, and
/// the attestation manifest that describes that child.
pub async fn read_built(
    store: &AnyStore,
    repository: &str,
    digest: &Digest,
    platform: Option<&Platform>,
) -> anyhow::Result<BuiltImage> {
    let name = format!("{}/{repository}@{digest}", store.name());
    let manifest = get_manifest(store, repository, digest)
        .await
        .with_context(|| format!("confirming `{name}` in staging"))?;
    let (image_digest, attestation, image) =
        match serde_json::from_slice::<ImageManifest>(&manifest) {
            Ok(image) => (digest.clone(), None, image),
            Err(_) => {
                let index: ImageIndex = serde_json::from_slice(&manifest)
                    .with_context(|| format!("`{name}` is neither an image nor an index"))?;
                let child = platform_child(&index, platform)
                    .with_context(|| format!("`{name}` holds no image for the platform built"))?;
                let bytes = get_manifest(store, repository, &child).await?;
                let image = serde_json::from_slice(&bytes)
                    .with_context(|| format!("the image of `{name}` is not an image manifest"))?;
                let attestation = attestation_of(&index, &child);
                (child, attestation, image)
            }
        };
    let config_digest = our_digest(image.config().digest())
        .with_context(|| format!("`{name}` has a config digest that is not sha256"))?;
    let config = store
        .get_blob(repository, &config_digest)
        .await
        .with_context(|| format!("reading the config of `{name}`"))?;
    let config: Config = serde_json::from_slice(&config)
        .with_context(|| format!("the config of `{name}` declares no os and architecture"))?;
    Ok(BuiltImage {
        image: image_digest,
        attestation,
        layers: image
            .layers()
            .iter()
            .map(|layer| Layer {
                digest: layer.digest().to_string(),
                size: Some(layer.size()),
            })
            .collect(),
        created: config.created,
        platform: Platform {
            os: config.os,
            architecture: config.architecture,
            variant: config.variant.filter(|variant| !variant.is_empty()),
        },
    })
}

/// The index's image for `platform`, or its first image when no platform is wanted; attestations
/// (`unknown/unknown`) are never one.
fn platform_child(index: &ImageIndex, platform: Option<&Platform>) -> Option<Digest> {
    index
        .manifests()
        .iter()
        .filter(|child| {
            child
                .platform()
                .as_ref()
                .is_some_and(|platform| platform.os().to_string() != attestation::UNKNOWN)
        })
        .find(|child| {
            platform.is_none_or(|wanted| {
                child.platform().as_ref().is_some_and(|found| {
                    let found = Platform {
                        os: found.os().to_string(),
                        architecture: found.architecture().to_string(),
                        variant: found.variant().clone(),
                    };
                    same_platform(wanted, &found, true)
                })
            })
        })
        .and_then(|child| our_digest(child.digest()))
}

/// The attestation manifest an index lists for `image`, as BuildKit annotates it.
fn attestation_of(index: &ImageIndex, image: &Digest) -> Option<Digest> {
    index
        .manifests()
        .iter()
        .find(|child| {
            child.annotations().as_ref().is_some_and(|annotations| {
                annotations
                    .get(attestation::REFERENCE_TYPE)
                    .map(String::as_str)
                    == Some(attestation::ATTESTATION_MANIFEST)
                    && annotations
                        .get(attestation::REFERENCE_DIGEST)
                        .map(String::as_str)
                        == Some(image.as_str())
            })
        })
        .and_then(|child| our_digest(child.digest()))
}

async fn get_manifest(
    store: &AnyStore,
    repository: &str,
    digest: &Digest,
) -> Result<Vec<u8>, StoreError> {
    store
        .get_manifest(repository, ManifestReference::Digest(digest))
        .await?
        .map(|manifest| manifest.bytes.to_vec())
        .ok_or_else(|| StoreError::NotFound {
            store: store.name(),
            reference: format!("{repository}@{digest}"),
        })
}

/// One built platform: its record (without tags) and every place the manifest declares it.
#[derive(Debug, Clone)]
pub struct BuiltUnit {
    pub declared_at: Vec<DeclaredAt>,
    pub record: PlatformData,
}

/// The fragment of `units`: one image entry per manifest image that declares one of them, each platform with
/// the tags that image declares for it, and the ledger's `build` record.
pub fn fragment(manifest: &Manifest, units: &[BuiltUnit], run: &RunIdentity) -> ImageInfo {
    let mut images: BTreeMap<(usize, usize), Vec<PlatformData>> = BTreeMap::new();
    for unit in units {
        for at in &unit.declared_at {
            let entry = &manifest.repos[at.repo].images[at.image].platforms[at.platform];
            images
                .entry((at.repo, at.image))
                .or_default()
                .push(PlatformData {
                    simple_tags: entry.tags.keys().cloned().collect(),
                    ..unit.record.clone()
                });
        }
    }
    let mut info = ImageInfo::default();
    for ((repo, image), platforms) in images {
        let declared = &manifest.repos[repo];
        if info
            .repos
            .last()
            .is_none_or(|last| last.repo != declared.name)
        {
            info.repos.push(RepoData {
                repo: declared.name.clone(),
                ..RepoData::default()
            });
        }
        if let Some(last) = info.repos.last_mut() {
            last.images.push(ImageData {
                product_version: declared.images[image].product_version.clone(),
                platforms,
                ..ImageData::default()
            });
        }
    }
    info.pipeline.record(stage_record(Stage::Build, run));
    info.normalize();
    info
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::manifest::{Image, PlatformEntry, Repo};

    #[test]
    fn a_unit_declared_under_two_images_is_recorded_under_each_with_its_tags() {
        let entry = |tag: &str| {
            let mut entry = PlatformEntry {
                dockerfile: "src/app/amd64".into(),
                os: "linux".into(),
                os_version: Some("bookworm".into()),
                ..PlatformEntry::default()
            };
            if !tag.is_empty() {
                entry.tags.insert(tag.into(), Default::default());
            }
            entry
        };
        let manifest = Manifest {
            repos: vec![Repo {
                name: "acme/app".into(),
                images: vec![
                    Image {
                        product_version: Some("1.0".into()),
                        platforms: vec![entry("1.0-amd64")],
                        ..Image::default()
                    },
                    Image {
                        product_version: Some("1.0".into()),
                        platforms: vec![entry("")],
                        ..Image::default()
                    },
                ],
                ..Repo::default()
            }],
            ..Manifest::default()
        };
        let record = PlatformData::declared(
            &manifest.repos[0].images[0].platforms[0],
            "r.example/acme/app@sha256:11".into(),
        );
        let unit = BuiltUnit {
            declared_at: vec![
                DeclaredAt {
                    repo: 0,
                    image: 0,
                    platform: 0,
                },
                DeclaredAt {
                    repo: 0,
                    image: 1,
                    platform: 0,
                },
            ],
            record,
        };
        let info = fragment(&manifest, &[unit], &RunIdentity::default());
        let images = &info.repos[0].images;
        assert_eq!(images.len(), 2);
        let tags: Vec<&[String]> = images
            .iter()
            .map(|image| image.platforms[0].simple_tags.as_slice())
            .collect();
        assert!(tags.contains(&["1.0-amd64".to_owned()].as_slice()));
        assert!(tags.contains(&[].as_slice()));
        assert_eq!(info.pipeline.stages[0].stage, Stage::Build);
    }
}
