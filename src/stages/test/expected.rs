//! What image-info and the manifest say staging must hold, image by image, and the objects to read from staging
//! to find out whether it does.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;

use crate::model::image_info::ImageInfo;
use crate::model::manifest::Manifest;
use crate::model::placement::place_images;
use crate::model::platform::Platform;
use crate::model::reference::{Digest, DigestReference};
use crate::store::staging_repository;

use super::staging::Probe;

/// One image of image-info, as the checks see it.
#[derive(Debug)]
pub(super) struct Expected {
    /// The public repository path, e.g. `acme/app`.
    pub(super) repository: String,
    /// The same repository in staging.
    pub(super) staged: String,
    pub(super) platforms: Vec<ExpectedPlatform>,
    pub(super) index: Option<ExpectedIndex>,
    /// The manifest's shared tags for this image; `None` when the manifest does not declare the repository.
    pub(super) declared_shared_tags: Option<Vec<String>>,
}

#[derive(Debug)]
pub(super) struct ExpectedPlatform {
    pub(super) digest: Digest,
    /// As image-info records it (canonical names); a missing variant matches any, as in image-info 1.0.
    pub(super) recorded: Platform,
    /// As the manifest declares it; `None` when the manifest does not declare the repository.
    pub(super) declared: Option<Platform>,
    pub(super) simple_tags: Vec<String>,
    /// The attestation manifest the index lists beside the image.
    pub(super) attestation: Option<Digest>,
}

#[derive(Debug)]
pub(super) struct ExpectedIndex {
    pub(super) digest: Digest,
    pub(super) shared_tags: Vec<String>,
}

impl Expected {
    /// What to read from staging for this image.
    pub(super) fn probes(&self) -> Vec<Probe> {
        let mut probes = Vec::new();
        for platform in &self.platforms {
            probes.push(self.image_probe(&platform.digest));
            probes.extend(platform.simple_tags.iter().map(|tag| self.tag_probe(tag)));
        }
        if let Some(index) = &self.index {
            probes.push(self.index_probe(&index.digest));
            probes.extend(index.shared_tags.iter().map(|tag| self.tag_probe(tag)));
        }
        probes
    }

    pub(super) fn image_probe(&self, digest: &Digest) -> Probe {
        Probe::Image {
            repository: self.staged.clone(),
            digest: digest.clone(),
        }
    }

    pub(super) fn index_probe(&self, digest: &Digest) -> Probe {
        Probe::Index {
            repository: self.staged.clone(),
            digest: digest.clone(),
        }
    }

    pub(super) fn tag_probe(&self, tag: &str) -> Probe {
        Probe::Tag {
            repository: self.staged.clone(),
            tag: tag.to_owned(),
        }
    }
}

/// How the report names a platform image: `` `repository@digest` (platform) ``.
pub(super) fn platform_subject(repository: &str, platform: &ExpectedPlatform) -> String {
    format!("`{repository}@{}` ({})", platform.digest, platform.recorded)
}

/// What image-info (read from `file`) and the manifest say staging must hold.
pub(super) fn expectations(
    manifest: &Manifest,
    info: &ImageInfo,
    file: &Path,
    prefix: Option<&str>,
) -> anyhow::Result<Vec<Expected>> {
    let placed: HashMap<(usize, usize), _> = place_images(manifest, info, file)?
        .into_iter()
        .map(|placed| ((placed.repo, placed.image), placed))
        .collect();
    let digest_of = |reference: &str| -> anyhow::Result<Digest> {
        let reference: DigestReference = reference
            .parse()
            .with_context(|| format!("reading `{}`", file.display()))?;
        Ok(reference.digest)
    };
    let mut expected = Vec::new();
    for (repo_index, repo) in info.repos.iter().enumerate() {
        let declared_repo = manifest
            .repos
            .iter()
            .find(|declared| declared.name == repo.repo);
        for (image_index, image) in repo.images.iter().enumerate() {
            let placed = placed.get(&(repo_index, image_index));
            let mut platforms = Vec::with_capacity(image.platforms.len());
            for (platform_index, platform) in image.platforms.iter().enumerate() {
                let declared = declared_repo
                    .zip(placed)
                    .and_then(|(declared_repo, placed)| {
                        let position = placed.positions.get(platform_index)?;
                        let entry = declared_repo
                            .images
                            .get(position.image)?
                            .platforms
                            .get(position.platform)?;
                        Some(entry.identity().platform())
                    });
                platforms.push(ExpectedPlatform {
                    digest: digest_of(&platform.digest)?,
                    recorded: platform.identity().platform(),
                    declared,
                    simple_tags: platform.simple_tags.clone(),
                    attestation: platform
                        .attestation
                        .as_ref()
                        .map(|attestation| digest_of(&attestation.digest))
                        .transpose()?,
                });
            }
            let index = match &image.manifest {
                Some(index) => Some(ExpectedIndex {
                    digest: digest_of(&index.digest)?,
                    shared_tags: index.shared_tags.clone(),
                }),
                None => None,
            };
            let declared_shared_tags = match (declared_repo, placed) {
                (Some(_), Some(placed)) => {
                    Some(placed.declared.shared_tags.keys().cloned().collect())
                }
                (Some(_), None) => Some(Vec::new()),
                (None, _) => None,
            };
            expected.push(Expected {
                repository: repo.repo.clone(),
                staged: staging_repository(prefix, &repo.repo),
                platforms,
                index,
                declared_shared_tags,
            });
        }
    }
    Ok(expected)
}
