//! Merging build fragments into one image-info (the post-build stage's logic).
//!
//! Each fragment entry is matched to its declaration in the manifest: repos by name, platforms by identity
//! (Dockerfile, os, osVersion, architecture, variant), images by the manifest image their platforms belong to.
//! Two fragments may record the same platform (a retried leg, an overlapping filter) only with the same digest.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::path::{Path, PathBuf};

use super::image_info::{ImageData, ImageInfo, ManifestData, PlatformData, RepoData};
use super::issue::JsonPath;
use super::ledger::{Pipeline, Stage};
use super::manifest::Manifest;
use super::placement::{PlacementError, RepoDeclarations};

/// A fragment as read from its file.
#[derive(Debug, Clone)]
pub struct Fragment {
    pub file: PathBuf,
    pub info: ImageInfo,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    #[error(
        "`{repo}` {subject} has digest `{first_digest}` in `{first_file}` and `{second_digest}` in `{second_file}`",
        first_file = .first_file.display(), second_file = .second_file.display()
    )]
    DigestConflict {
        repo: String,
        /// The platform, or "manifest list".
        subject: String,
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
    #[error(transparent)]
    Placement(#[from] PlacementError),
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

/// Merges fragments into one image-info. The result carries the latest `build` record among the fragments;
/// the caller appends the `post-build` record.
pub fn merge_fragments(
    manifest: &Manifest,
    fragments: &[Fragment],
) -> Result<ImageInfo, MergeError> {
    let declarations = RepoDeclarations::of_manifest(manifest);
    let mut merged: BTreeMap<&str, BTreeMap<usize, MergedImage>> = BTreeMap::new();
    let mut pipeline = Pipeline::default();
    for fragment in fragments {
        for (repo_index, repo) in fragment.info.repos.iter().enumerate() {
            let repo_path = JsonPath::root().key("repos").index(repo_index);
            let Some(declared) = declarations.get(repo.repo.as_str()) else {
                return Err(MergeError::UnknownRepository {
                    file: fragment.file.clone(),
                    path: repo_path.key("repo"),
                    repo: repo.repo.clone(),
                });
            };
            let repo_name = declared.repo().name.as_str();
            let images = merged.entry(repo_name).or_default();
            for (image_index, image) in repo.images.iter().enumerate() {
                let image_path = repo_path.key("images").index(image_index);
                let positions = declared.place(&fragment.file, &image_path, image)?;
                for (position, platform) in positions.iter().zip(&image.platforms) {
                    let slot = images.entry(position.image).or_default();
                    add_platform(slot, repo_name, position.platform, platform, &fragment.file)?;
                }
                if let (Some(position), Some(manifest_data)) = (positions.first(), &image.manifest)
                {
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

fn add_platform(
    image: &mut MergedImage,
    repo: &str,
    index: usize,
    platform: &PlatformData,
    file: &Path,
) -> Result<(), MergeError> {
    match image.platforms.entry(index) {
        Entry::Vacant(slot) => {
            slot.insert(Sourced::new(platform, file));
            Ok(())
        }
        Entry::Occupied(mut slot) => {
            let what = || platform.identity().to_string();
            slot.get_mut().absorb(repo, what, platform, file)
        }
    }
}

fn add_index(
    image: &mut MergedImage,
    repo: &str,
    manifest: &ManifestData,
    file: &Path,
) -> Result<(), MergeError> {
    match &mut image.manifest {
        None => {
            image.manifest = Some(Sourced::new(manifest, file));
            Ok(())
        }
        Some(existing) => existing.absorb(repo, || "manifest list".to_owned(), manifest, file),
    }
}

/// A platform or an index as fragments record it: identified by its digest, completed by what another
/// fragment knows about the same digest.
trait Recorded: Clone {
    fn digest(&self) -> &str;
    fn complete_from(&mut self, other: &Self);
}

impl Recorded for PlatformData {
    fn digest(&self) -> &str {
        &self.digest
    }

    fn complete_from(&mut self, other: &Self) {
        self.simple_tags.extend(other.simple_tags.iter().cloned());
        self.signatures.extend(other.signatures.iter().cloned());
        fill(&mut self.base_image_digest, &other.base_image_digest);
        fill(&mut self.created, &other.created);
        fill(&mut self.commit_url, &other.commit_url);
        fill(&mut self.context_digest, &other.context_digest);
        fill(&mut self.variant, &other.variant);
        if self.layers.is_empty() {
            self.layers.clone_from(&other.layers);
        }
    }
}

impl Recorded for ManifestData {
    fn digest(&self) -> &str {
        &self.digest
    }

    fn complete_from(&mut self, other: &Self) {
        self.shared_tags.extend(other.shared_tags.iter().cloned());
        self.signatures.extend(other.signatures.iter().cloned());
    }
}

impl<T: Recorded> Sourced<T> {
    fn new(value: &T, file: &Path) -> Self {
        Self {
            value: value.clone(),
            file: file.to_owned(),
        }
    }

    /// Merges a second record of the same thing; a different digest is a conflict naming both files.
    fn absorb(
        &mut self,
        repo: &str,
        what: impl FnOnce() -> String,
        other: &T,
        file: &Path,
    ) -> Result<(), MergeError> {
        if self.value.digest() != other.digest() {
            return Err(MergeError::DigestConflict {
                repo: repo.to_owned(),
                subject: what(),
                first_file: self.file.clone(),
                first_digest: self.value.digest().to_owned(),
                second_file: file.to_owned(),
                second_digest: other.digest().to_owned(),
            });
        }
        self.value.complete_from(other);
        Ok(())
    }
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
            matches!(
                error,
                MergeError::Placement(PlacementError::UnknownPlatform { .. })
            ),
            "{error}"
        );
        assert_eq!(
            error.to_string(),
            "`x.json` at `repos[0].images[0].platforms[0]`: platform app/s390x (linux/s390x, bookworm) of `team/app` is not declared in the manifest"
        );
    }

    #[test]
    fn a_dockerfile_in_two_images_goes_where_its_tags_are_declared() {
        // As in ImageBuilder manifests: `1.4` lists the platform with its tags, `latest` lists it again without.
        let mut manifest = manifest();
        let mut tagged = manifest.repos[0].images[0].platforms[0].clone();
        tagged.tags.insert("1.4-amd64".into(), Default::default());
        manifest.repos[0].images[0].platforms[0] = tagged;
        let mut again = manifest.repos[0].images[0].clone();
        again.platforms.truncate(1);
        again.platforms[0].tags.clear();
        manifest.repos[0].images.push(again);

        let fragments = [
            fragment(
                "tagged.json",
                vec![built("app/amd64", "amd64", 'a', &["1.4-amd64"])],
            ),
            fragment("untagged.json", vec![built("app/amd64", "amd64", 'a', &[])]),
        ];
        let info = merge_fragments(&manifest, &fragments).expect("merges");
        let tags: Vec<Vec<String>> = info.repos[0]
            .images
            .iter()
            .map(|image| {
                image
                    .platforms
                    .iter()
                    .flat_map(|platform| platform.simple_tags.clone())
                    .collect()
            })
            .collect();
        assert_eq!(tags, [vec!["1.4-amd64".to_owned()], vec![]]);
        assert_eq!(info.repos[0].images.len(), 2);

        let unclear = [fragment(
            "unclear.json",
            vec![built("app/amd64", "amd64", 'a', &["other"])],
        )];
        let error = merge_fragments(&manifest, &unclear).expect_err("two images fit equally");
        assert!(
            matches!(
                error,
                MergeError::Placement(PlacementError::AmbiguousImage { .. })
            ),
            "{error}"
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
