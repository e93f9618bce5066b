//! Which manifest entry a recorded image and its platforms stand for.
//!
//! One Dockerfile may be declared in several images of a repository (ImageBuilder manifests list a platform
//! under each manifest list that includes it), so a platform alone does not always say where it belongs; the
//! image it is recorded in, with its tags, does.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use super::image_info::{ImageData, ImageInfo};
use super::issue::JsonPath;
use super::manifest::{Image, Manifest, Repo};
use super::platform::PlatformIdentity;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error(
        "`{file}` at `{path}`: platform {platform} of `{repo}` is not declared in the manifest",
        file = .file.display()
    )]
    UnknownPlatform {
        file: PathBuf,
        path: JsonPath,
        repo: String,
        platform: PlatformIdentity,
    },
    #[error(
        "`{file}` at `{path}`: the image matches {candidates} of `{repo}` equally well",
        file = .file.display(), candidates = .candidates.join(", ")
    )]
    AmbiguousImage {
        file: PathBuf,
        path: JsonPath,
        repo: String,
        candidates: Vec<String>,
    },
}

/// Where a declared platform stands in the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub image: usize,
    pub platform: usize,
}

/// A platform as the manifest declares it.
struct Declared {
    position: Position,
    identity: PlatformIdentity,
    tags: BTreeSet<String>,
}

/// One repository's declarations: its platforms indexed by identity without variant (image-info 1.0 records
/// none), and its images.
pub struct RepoDeclarations<'a> {
    repo: &'a Repo,
    platforms: HashMap<PlatformIdentity, Vec<Declared>>,
}

impl<'a> RepoDeclarations<'a> {
    pub fn new(repo: &'a Repo) -> Self {
        let mut platforms: HashMap<PlatformIdentity, Vec<Declared>> = HashMap::new();
        for (image, declared) in repo.images.iter().enumerate() {
            for (platform, entry) in declared.platforms.iter().enumerate() {
                let identity = entry.identity();
                platforms
                    .entry(identity.without_variant())
                    .or_default()
                    .push(Declared {
                        position: Position { image, platform },
                        identity,
                        tags: entry.tags.keys().cloned().collect(),
                    });
            }
        }
        Self { repo, platforms }
    }

    /// The declarations of every repository of `manifest`, by name.
    pub fn of_manifest(manifest: &'a Manifest) -> HashMap<&'a str, Self> {
        manifest
            .repos
            .iter()
            .map(|repo| (repo.name.as_str(), Self::new(repo)))
            .collect()
    }

    pub fn repo(&self) -> &'a Repo {
        self.repo
    }

    /// Whether the repository declares a platform the recorded one may stand for; a recorded platform without
    /// variant stands for any variant, as in [`Self::place`].
    pub fn declares(&self, identity: &PlatformIdentity) -> bool {
        !self.candidates(identity).is_empty()
    }

    /// The declarations a recorded platform may stand for.
    fn candidates(&self, identity: &PlatformIdentity) -> Vec<&Declared> {
        self.platforms
            .get(&identity.without_variant())
            .into_iter()
            .flatten()
            .filter(|declared| identity.matches(&declared.identity))
            .collect()
    }

    /// Places each platform of a recorded image in the manifest.
    ///
    /// One Dockerfile may be declared in several images (each manifest list that includes it), so a platform
    /// alone does not say which image it belongs to. The image does: of the manifest images that declare all of
    /// its platforms (and its product version), the one whose tags it carries wins.
    pub fn place(
        &self,
        fragment: &Path,
        image_path: &JsonPath,
        image: &ImageData,
    ) -> Result<Vec<Position>, PlacementError> {
        let mut candidates = Vec::with_capacity(image.platforms.len());
        for (index, platform) in image.platforms.iter().enumerate() {
            let identity = platform.identity();
            let found = self.candidates(&identity);
            if found.is_empty() {
                return Err(PlacementError::UnknownPlatform {
                    file: fragment.to_owned(),
                    path: image_path.key("platforms").index(index),
                    repo: self.repo.name.clone(),
                    platform: identity,
                });
            }
            candidates.push(found);
        }
        let images: BTreeSet<usize> = candidates
            .iter()
            .map(|found| {
                found
                    .iter()
                    .map(|declared| declared.position.image)
                    .collect::<BTreeSet<_>>()
            })
            .reduce(|common, next| &common & &next)
            .unwrap_or_default();
        let product_version_fits = |index: &usize| match (
            &image.product_version,
            &self.repo.images[*index].product_version,
        ) {
            (Some(recorded), Some(declared)) => same_release_line(recorded, declared),
            _ => true,
        };
        let scored: Vec<(usize, usize)> = images
            .into_iter()
            .filter(product_version_fits)
            .map(|index| (index, self.score(index, image, &candidates)))
            .collect();
        let best = scored.iter().map(|(_, score)| *score).max();
        let winners: Vec<usize> = scored
            .iter()
            .filter(|(_, score)| Some(*score) == best)
            .map(|(index, _)| *index)
            .collect();
        let chosen = match winners.as_slice() {
            [only] => *only,
            // No single image declares all its platforms: place each by itself, where that is unambiguous.
            [] => return self.place_each(fragment, image_path, &candidates),
            _ => {
                return Err(PlacementError::AmbiguousImage {
                    file: fragment.to_owned(),
                    path: image_path.clone(),
                    repo: self.repo.name.clone(),
                    candidates: winners
                        .iter()
                        .map(|index| self.image_path(*index))
                        .collect(),
                });
            }
        };
        Ok(candidates
            .iter()
            .filter_map(|found| {
                found
                    .iter()
                    .find(|declared| declared.position.image == chosen)
            })
            .map(|declared| declared.position)
            .collect())
    }

    /// How well a recorded image fits manifest image `index`: one point per platform whose tags are exactly the
    /// declared ones, one for shared tags that are exactly the declared ones.
    fn score(&self, index: usize, image: &ImageData, candidates: &[Vec<&Declared>]) -> usize {
        let platforms = image
            .platforms
            .iter()
            .zip(candidates)
            .filter(|(platform, found)| {
                let tags: BTreeSet<String> = platform.simple_tags.iter().cloned().collect();
                found
                    .iter()
                    .any(|declared| declared.position.image == index && declared.tags == tags)
            })
            .count();
        let shared = image.manifest.as_ref().is_some_and(|manifest| {
            let recorded: BTreeSet<&String> = manifest.shared_tags.iter().collect();
            let declared: BTreeSet<&String> = self.repo.images[index].shared_tags.keys().collect();
            recorded == declared
        });
        platforms + usize::from(shared)
    }

    fn place_each(
        &self,
        fragment: &Path,
        image_path: &JsonPath,
        candidates: &[Vec<&Declared>],
    ) -> Result<Vec<Position>, PlacementError> {
        candidates
            .iter()
            .map(|found| match found.as_slice() {
                [only] => Ok(only.position),
                _ => Err(PlacementError::AmbiguousImage {
                    file: fragment.to_owned(),
                    path: image_path.clone(),
                    repo: self.repo.name.clone(),
                    candidates: found
                        .iter()
                        .map(|declared| self.image_path(declared.position.image))
                        .collect(),
                }),
            })
            .collect()
    }

    fn image_path(&self, index: usize) -> String {
        format!("`{}`", self.repo.images[index].origin.path)
    }
}

/// Whether two product versions are of one release line: the same major and minor version, as ImageBuilder
/// compares them, so a record published as `8.0.10` still stands for the manifest's `8.0.11`. Versions that are
/// not numbers compare whole.
fn same_release_line(recorded: &str, declared: &str) -> bool {
    let line = |version: &str| -> Option<(u64, u64)> {
        let mut parts = version.split(['.', '-', '+']);
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some((major, minor))
    };
    match (line(recorded), line(declared)) {
        (Some(recorded), Some(declared)) => recorded == declared,
        _ => recorded == declared,
    }
}

/// An image of image-info, with the manifest image it stands for.
pub struct PlacedImage<'a> {
    /// Where it stands in image-info: `repos[repo].images[image]`.
    pub repo: usize,
    pub image: usize,
    pub path: JsonPath,
    pub declared: &'a Image,
    /// Where each of its platforms stands in the manifest, in the order image-info lists them.
    pub positions: Vec<Position>,
}

/// Places every image of `info` (read from `file`) on its manifest image. Images of repositories the manifest
/// does not declare, and images without platforms, are left out.
pub fn place_images<'a>(
    manifest: &'a Manifest,
    info: &ImageInfo,
    file: &Path,
) -> Result<Vec<PlacedImage<'a>>, PlacementError> {
    let mut placed = Vec::new();
    for (repo_index, repo) in info.repos.iter().enumerate() {
        let Some(declared_repo) = manifest
            .repos
            .iter()
            .find(|declared| declared.name == repo.repo)
        else {
            continue;
        };
        let declarations = RepoDeclarations::new(declared_repo);
        for (image_index, image) in repo.images.iter().enumerate() {
            let path = JsonPath::root()
                .key("repos")
                .index(repo_index)
                .key("images")
                .index(image_index);
            let positions = declarations.place(file, &path, image)?;
            let Some(first) = positions.first() else {
                continue;
            };
            placed.push(PlacedImage {
                repo: repo_index,
                image: image_index,
                path,
                declared: &declared_repo.images[first.image],
                positions,
            });
        }
    }
    Ok(placed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_versions_compare_by_release_line() {
        for (recorded, declared, same) in [
            ("8.0.10", "8.0.11", true),
            ("8.0", "8.0.11", true),
            ("8.0.11-preview.1", "8.0.11", true),
            ("8.0.10", "8.1.0", false),
            ("6.0.18", "8.0.18", false),
            ("latest", "latest", true),
            ("latest", "8.0", false),
        ] {
            assert_eq!(
                same_release_line(recorded, declared),
                same,
                "{recorded} vs {declared}"
            );
        }
    }
}
