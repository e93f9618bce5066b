//! Merging build fragments into one image-info (the post-build stage's logic).
//!
//! Each fragment entry is matched to its declaration in the manifest: repos by name, platforms by identity
//! (Dockerfile, os, osVersion, architecture, variant), images by the manifest image their platforms belong to.
//! Two fragments may record the same platform (a retried leg, an overlapping filter) only with the same digest.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use super::image_info::{ImageData, ImageInfo, ManifestData, PlatformData, RepoData};
use super::issue::JsonPath;
use super::ledger::{Pipeline, Stage};
use super::manifest::Manifest;
use super::platform::PlatformIdentity;

/// A fragment as read from its file.
#[derive(Debug, Clone)]
pub struct Fragment {
    pub file: PathBuf,
    pub info: ImageInfo,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    #[error(
        "`{repo}` {platform} has digest `{first_digest}` in `{first_file}` and `{second_digest}` in `{second_file}`",
        first_file = .first_file.display(), second_file = .second_file.display()
    )]
    DigestConflict {
        repo: String,
        platform: String,
        first_file: PathBuf,
        first_digest: String,
        second_file: PathBuf,
        second_digest: String,
    },
    #[error("`{file}` at `{path}`: repository `{repo}` is not in the manifest", file = .file.display())]
    UnknownRepository {
        file: PathBuf,
        path: JsonPath,
        repo: String,
    },
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
        "`{file}` at `{path}`: platform {platform} of `{repo}` matches {count} manifest entries; record its variant",
        file = .file.display()
    )]
    AmbiguousPlatform {
        file: PathBuf,
        path: JsonPath,
        repo: String,
        platform: PlatformIdentity,
        count: usize,
    },
}

/// Which fragment files count: for `<leg>.attempt-<N>.json`, only the highest N of each leg.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttemptSelection {
    pub kept: Vec<PathBuf>,
    pub superseded: Vec<PathBuf>,
}

/// Splits a fragment's file name into its leg and attempt; a name without `.attempt-N` is attempt 0, so that
/// any numbered retry supersedes it.
fn leg_and_attempt(file: &Path) -> (String, u64) {
    let stem = file
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Some((leg, attempt)) = stem.rsplit_once(".attempt-") {
        if let Ok(attempt) = attempt.parse() {
            return (leg.to_owned(), attempt);
        }
    }
    (stem, 0)
}

pub fn select_latest_attempts(files: &[PathBuf]) -> AttemptSelection {
    let mut latest: BTreeMap<String, (u64, &PathBuf)> = BTreeMap::new();
    for file in files {
        let (leg, attempt) = leg_and_attempt(file);
        let entry = latest.entry(leg).or_insert((attempt, file));
        if attempt > entry.0 {
            *entry = (attempt, file);
        }
    }
    let mut selection = AttemptSelection::default();
    for file in files {
        let (leg, _) = leg_and_attempt(file);
        if latest.get(&leg).is_some_and(|(_, kept)| *kept == file) {
            selection.kept.push(file.clone());
        } else {
            selection.superseded.push(file.clone());
        }
    }
    selection
}

/// Where a declared platform stands in the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Position {
    image: usize,
    platform: usize,
}

/// A platform or index value together with the fragment it came from, for conflict messages.
struct Sourced<T> {
    value: T,
    file: PathBuf,
}

#[derive(Default)]
struct MergedImage {
    manifest: Option<Sourced<ManifestData>>,
    platforms: BTreeMap<usize, Sourced<PlatformData>>,
}

/// The manifest's platforms, indexed by repository and identity (without variant, which image-info 1.0 omits).
struct Declarations<'a> {
    repos: HashMap<&'a str, HashMap<PlatformIdentity, Vec<(Position, PlatformIdentity)>>>,
}

impl<'a> Declarations<'a> {
    fn new(manifest: &'a Manifest) -> Self {
        let mut repos = HashMap::new();
        for repo in &manifest.repos {
            let platforms: &mut HashMap<PlatformIdentity, Vec<_>> =
                repos.entry(repo.name.as_str()).or_default();
            for (image, declared) in repo.images.iter().enumerate() {
                for (platform, entry) in declared.platforms.iter().enumerate() {
                    let identity = entry.identity();
                    platforms
                        .entry(identity.without_variant())
                        .or_default()
                        .push((Position { image, platform }, identity));
                }
            }
        }
        Self { repos }
    }
}

/// Merges fragments into one image-info. The result carries the latest `build` record among the fragments;
/// the caller appends the `post-build` record.
pub fn merge_fragments(
    manifest: &Manifest,
    fragments: &[Fragment],
) -> Result<ImageInfo, MergeError> {
    let declarations = Declarations::new(manifest);
    let mut merged: BTreeMap<&str, BTreeMap<usize, MergedImage>> = BTreeMap::new();
    let mut pipeline = Pipeline::default();
    for fragment in fragments {
        for (repo_index, repo) in fragment.info.repos.iter().enumerate() {
            let repo_path = JsonPath::root().key("repos").index(repo_index);
            let Some((&repo_name, declared)) = declarations.repos.get_key_value(repo.repo.as_str())
            else {
                return Err(MergeError::UnknownRepository {
                    file: fragment.file.clone(),
                    path: repo_path.key("repo"),
                    repo: repo.repo.clone(),
                });
            };
            let images = merged.entry(repo_name).or_default();
            for (image_index, image) in repo.images.iter().enumerate() {
                let image_path = repo_path.key("images").index(image_index);
                let mut first_position = None;
                for (platform_index, platform) in image.platforms.iter().enumerate() {
                    let path = image_path.key("platforms").index(platform_index);
                    let position = locate(declared, fragment, repo_name, path, platform)?;
                    first_position.get_or_insert(position);
                    let slot = images.entry(position.image).or_default();
                    add_platform(slot, repo_name, position.platform, platform, &fragment.file)?;
                }
                if let (Some(position), Some(manifest_data)) = (first_position, &image.manifest) {
                    let slot = images.entry(position.image).or_default();
                    add_index(slot, repo_name, manifest_data, &fragment.file)?;
                }
            }
        }
        let builds = fragment
            .info
            .pipeline
            .stages
            .iter()
            .filter(|record| record.stage == Stage::Build);
        if let Some(latest) = builds.max_by(|left, right| left.completed.cmp(&right.completed)) {
            let newer = pipeline
                .stages
                .first()
                .is_none_or(|kept| kept.completed < latest.completed);
            if newer {
                pipeline.stages = vec![latest.clone()];
            }
        }
    }
    let mut info = ImageInfo {
        pipeline,
        ..ImageInfo::default()
    };
    for repo in &manifest.repos {
        let Some(images) = merged.remove(repo.name.as_str()) else {
            continue;
        };
        let images = images
            .into_iter()
            .map(|(image_index, image)| ImageData {
                product_version: repo.images[image_index].product_version.clone(),
                manifest: image.manifest.map(|sourced| sourced.value),
                platforms: image
                    .platforms
                    .into_values()
                    .map(|sourced| sourced.value)
                    .collect(),
                ..ImageData::default()
            })
            .collect();
        info.repos.push(RepoData {
            repo: repo.name.clone(),
            images,
            ..RepoData::default()
        });
    }
    info.normalize();
    Ok(info)
}

fn locate(
    declared: &HashMap<PlatformIdentity, Vec<(Position, PlatformIdentity)>>,
    fragment: &Fragment,
    repo: &str,
    path: JsonPath,
    platform: &PlatformData,
) -> Result<Position, MergeError> {
    let identity = platform.identity();
    let candidates: Vec<Position> = declared
        .get(&identity.without_variant())
        .into_iter()
        .flatten()
        .filter(|(_, declared)| identity.matches(declared))
        .map(|(position, _)| *position)
        .collect();
    match candidates.as_slice() {
        [position] => Ok(*position),
        [] => Err(MergeError::UnknownPlatform {
            file: fragment.file.clone(),
            path,
            repo: repo.to_owned(),
            platform: identity,
        }),
        _ => Err(MergeError::AmbiguousPlatform {
            file: fragment.file.clone(),
            path,
            repo: repo.to_owned(),
            platform: identity,
            count: candidates.len(),
        }),
    }
}

fn add_platform(
    image: &mut MergedImage,
    repo: &str,
    index: usize,
    platform: &PlatformData,
    file: &Path,
) -> Result<(), MergeError> {
    let Some(existing) = image.platforms.get_mut(&index) else {
        image.platforms.insert(
            index,
            Sourced {
                value: platform.clone(),
                file: file.to_owned(),
            },
        );
        return Ok(());
    };
    if existing.value.digest != platform.digest {
        return Err(MergeError::DigestConflict {
            repo: repo.to_owned(),
            platform: platform.identity().to_string(),
            first_file: existing.file.clone(),
            first_digest: existing.value.digest.clone(),
            second_file: file.to_owned(),
            second_digest: platform.digest.clone(),
        });
    }
    let kept = &mut existing.value;
    kept.simple_tags
        .extend(platform.simple_tags.iter().cloned());
    kept.signatures.extend(platform.signatures.iter().cloned());
    fill(&mut kept.base_image_digest, &platform.base_image_digest);
    fill(&mut kept.created, &platform.created);
    fill(&mut kept.commit_url, &platform.commit_url);
    fill(&mut kept.variant, &platform.variant);
    if kept.layers.is_empty() {
        kept.layers.clone_from(&platform.layers);
    }
    Ok(())
}

fn add_index(
    image: &mut MergedImage,
    repo: &str,
    manifest: &ManifestData,
    file: &Path,
) -> Result<(), MergeError> {
    let Some(existing) = &mut image.manifest else {
        image.manifest = Some(Sourced {
            value: manifest.clone(),
            file: file.to_owned(),
        });
        return Ok(());
    };
    if existing.value.digest != manifest.digest {
        return Err(MergeError::DigestConflict {
            repo: repo.to_owned(),
            platform: "manifest list".to_owned(),
            first_file: existing.file.clone(),
            first_digest: existing.value.digest.clone(),
            second_file: file.to_owned(),
            second_digest: manifest.digest.clone(),
        });
    }
    existing
        .value
        .shared_tags
        .extend(manifest.shared_tags.iter().cloned());
    existing
        .value
        .signatures
        .extend(manifest.signatures.iter().cloned());
    Ok(())
}

fn fill(kept: &mut Option<String>, other: &Option<String>) {
    if kept.is_none() {
        kept.clone_from(other);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::manifest::{Image, PlatformEntry, Repo};

    fn digest(fill: char) -> String {
        format!(
            "registry.example/team/app@sha256:{}",
            fill.to_string().repeat(64)
        )
    }

    fn manifest() -> Manifest {
        let entry = |dockerfile: &str, architecture: &str, variant: Option<&str>| PlatformEntry {
            dockerfile: dockerfile.into(),
            os: "linux".into(),
            os_version: Some("bookworm".into()),
            architecture: Some(architecture.into()),
            variant: variant.map(Into::into),
            ..PlatformEntry::default()
        };
        Manifest {
            registry: Some("registry.example".into()),
            repos: vec![Repo {
                name: "team/app".into(),
                images: vec![
                    Image {
                        product_version: Some("1.4".into()),
                        platforms: vec![
                            entry("app/amd64", "amd64", None),
                            entry("app/arm64v8", "arm64", Some("v8")),
                        ],
                        ..Image::default()
                    },
                    Image {
                        product_version: Some("2.0".into()),
                        platforms: vec![entry("app2/amd64", "amd64", None)],
                        ..Image::default()
                    },
                ],
                ..Repo::default()
            }],
            ..Manifest::default()
        }
    }

    fn fragment(file: &str, platforms: Vec<PlatformData>) -> Fragment {
        Fragment {
            file: file.into(),
            info: ImageInfo {
                repos: vec![RepoData {
                    repo: "team/app".into(),
                    images: vec![ImageData {
                        platforms,
                        ..ImageData::default()
                    }],
                    ..RepoData::default()
                }],
                ..ImageInfo::default()
            },
        }
    }

    fn built(
        dockerfile: &str,
        architecture: &str,
        digest_fill: char,
        tags: &[&str],
    ) -> PlatformData {
        PlatformData {
            dockerfile: format!("{dockerfile}/Dockerfile"),
            digest: digest(digest_fill),
            os_type: "linux".into(),
            os_version: "bookworm".into(),
            architecture: architecture.into(),
            simple_tags: tags.iter().map(|tag| (*tag).to_owned()).collect(),
            ..PlatformData::default()
        }
    }

    #[test]
    fn merges_platforms_into_their_manifest_images() {
        let fragments = [
            fragment(
                "amd64.json",
                vec![
                    built("app/amd64", "amd64", 'a', &["1.4-amd64"]),
                    built("app2/amd64", "amd64", 'c', &[]),
                ],
            ),
            fragment(
                "arm64.json",
                vec![built("app/arm64v8", "arm64", 'b', &["1.4-arm64v8"])],
            ),
            fragment(
                "again.json",
                vec![built("app/amd64", "amd64", 'a', &["extra"])],
            ),
        ];
        let info = merge_fragments(&manifest(), &fragments).expect("merges");
        assert_eq!(info.repos.len(), 1);
        let images = &info.repos[0].images;
        assert_eq!(images.len(), 2);
        assert_eq!(images[0].product_version.as_deref(), Some("1.4"));
        assert_eq!(images[0].platforms.len(), 2);
        assert_eq!(images[0].platforms[0].simple_tags, ["1.4-amd64", "extra"]);
        assert_eq!(images[1].product_version.as_deref(), Some("2.0"));
    }

    #[test]
    fn conflicting_digests_name_both_files() {
        let fragments = [
            fragment("one.json", vec![built("app/amd64", "amd64", 'a', &[])]),
            fragment("two.json", vec![built("app/amd64", "amd64", 'b', &[])]),
        ];
        let error = merge_fragments(&manifest(), &fragments).expect_err("must conflict");
        let message = error.to_string();
        assert!(
            message.contains("one.json") && message.contains("two.json"),
            "{message}"
        );
        assert!(
            message.contains(&digest('a')) && message.contains(&digest('b')),
            "{message}"
        );
    }

    #[test]
    fn undeclared_platforms_are_refused() {
        let fragments = [fragment(
            "x.json",
            vec![built("app/s390x", "s390x", 'a', &[])],
        )];
        let error = merge_fragments(&manifest(), &fragments).expect_err("must refuse");
        assert!(
            matches!(error, MergeError::UnknownPlatform { .. }),
            "{error}"
        );
        assert_eq!(
            error.to_string(),
            "`x.json` at `repos[0].images[0].platforms[0]`: platform app/s390x (linux/s390x, bookworm) of `team/app` is not declared in the manifest"
        );
    }

    #[test]
    fn only_the_latest_attempt_of_a_leg_counts() {
        let files: Vec<PathBuf> = [
            "a.json",
            "a.attempt-2.json",
            "a.attempt-10.json",
            "b.attempt-1.json",
            "c.json",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        let selection = select_latest_attempts(&files);
        let names = |paths: &[PathBuf]| {
            paths
                .iter()
                .map(|path| path.display().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(&selection.kept),
            ["a.attempt-10.json", "b.attempt-1.json", "c.json"]
        );
        assert_eq!(names(&selection.superseded), ["a.json", "a.attempt-2.json"]);
    }
}
