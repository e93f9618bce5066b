//! Merging a run's image-info into the published one, as ImageBuilder's publish does (issue #9).
//!
//! A partial release rebuilds only some images, so its image-info holds only those; published alone, it would
//! erase the record of every other image. The merge starts from the published file, drops what the manifest no
//! longer declares (repositories, platforms, then images left without platforms), and puts each run image in
//! the place of the published image that stands for the same manifest image, or appends it. Images are matched
//! through [`super::placement`], as every stage matches them; platforms by the declaration they stand for.
//!
//! A published image that cannot be placed unambiguously is an error rather than dropped: losing a record of what
//! is published silently is worse than stopping.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::image_info::{ImageData, ImageInfo, PlatformData, RepoData, SCHEMA_VERSION};
use super::issue::{FirstSeen, JsonPath};
use super::manifest::Manifest;
use super::placement::{PlacementError, Position, RepoDeclarations};
use super::platform::PlatformIdentity;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishedMergeError {
    #[error(
        "`{file}` at `{path}`: the run built repository `{repo}`, which the manifest does not declare",
        file = .file.display()
    )]
    UndeclaredRunRepository {
        file: PathBuf,
        path: JsonPath,
        repo: String,
    },
    #[error(
        "`{file}` at `{path}`: the image has no platforms, so it stands for no image of `{repo}`",
        file = .file.display()
    )]
    NoPlatforms {
        file: PathBuf,
        path: JsonPath,
        repo: String,
    },
    #[error(
        "`{file}` at `{path}`: the image stands for the same image of `{repo}` as the one at `{first}`",
        file = .file.display()
    )]
    SameImageTwice {
        file: PathBuf,
        path: JsonPath,
        first: JsonPath,
        repo: String,
    },
    #[error(transparent)]
    Placement(#[from] PlacementError),
}

/// The image-info to publish, and what the merge did, for a log line.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishedMerge {
    /// The image-info to publish: schema 2.0, the run's ledger, the published order (not normalized).
    pub info: ImageInfo,
    /// Published images a run image took the place of.
    pub replaced: usize,
    /// Run images no published image stood for, appended (with their repository when it is new).
    pub added: usize,
    /// Published images no run image touched, kept as they were but for platforms no longer declared.
    pub kept: usize,
    /// Published images dropped: their repository or all their platforms are no longer in the manifest.
    pub removed_images: Vec<RemovedImage>,
    /// Published platforms dropped because the manifest no longer declares them, those of dropped images
    /// included.
    pub removed_platforms: Vec<RemovedPlatform>,
}

/// A published image the manifest no longer declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedImage {
    pub repo: String,
    /// Where it stood in the published file.
    pub path: JsonPath,
    pub product_version: Option<String>,
    pub shared_tags: Vec<String>,
}

/// A published platform the manifest no longer declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedPlatform {
    pub repo: String,
    pub platform: PlatformIdentity,
}

impl fmt::Display for PublishedMerge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} images replaced, {} added, {} kept; {} images and {} platforms no longer in the manifest removed",
            self.replaced,
            self.added,
            self.kept,
            self.removed_images.len(),
            self.removed_platforms.len()
        )
    }
}

impl fmt::Display for RemovedImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` image at `{}`", self.repo, self.path)?;
        if let Some(version) = &self.product_version {
            write!(f, ", version `{version}`")?;
        }
        if !self.shared_tags.is_empty() {
            write!(f, ", shared tags `{}`", self.shared_tags.join("`, `"))?;
        }
        Ok(())
    }
}

impl fmt::Display for RemovedPlatform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` platform {}", self.repo, self.platform)
    }
}

/// An image of the result and the manifest image it stands for.
struct Slot {
    /// The manifest image: its index in the repository's declaration.
    image: usize,
    /// Where each platform of `data` stands in the manifest, in the same order.
    positions: Vec<Position>,
    data: ImageData,
    /// Where in the run file the image came from; `None` while it is the published record.
    run_path: Option<JsonPath>,
}

struct MergedRepo {
    data: RepoData,
    slots: Vec<Slot>,
}

/// Merges `run` (read from `run_file`) into `published` (read from `published_file`), as described in the
/// module documentation. Pure: the result is not normalized, so that the published order stays as it was.
pub fn merge_into_published(
    manifest: &Manifest,
    published: &ImageInfo,
    published_file: &Path,
    run: &ImageInfo,
    run_file: &Path,
) -> Result<PublishedMerge, PublishedMergeError> {
    let declarations = RepoDeclarations::of_manifest(manifest);
    let mut extra = published.extra.clone();
    extra.extend(run.extra.clone());
    let mut merge = PublishedMerge {
        info: ImageInfo {
            schema_version: SCHEMA_VERSION.to_owned(),
            repos: Vec::new(),
            pipeline: run.pipeline.clone(),
            extra,
        },
        replaced: 0,
        added: 0,
        kept: 0,
        removed_images: Vec::new(),
        removed_platforms: Vec::new(),
    };
    let mut repos = still_declared(&declarations, published, published_file, &mut merge)?;
    let mut run_images = FirstSeen::default();
    for (repo_index, repo) in run.repos.iter().enumerate() {
        let repo_path = JsonPath::root().key("repos").index(repo_index);
        let Some(declared) = declarations.get(repo.repo.as_str()) else {
            return Err(PublishedMergeError::UndeclaredRunRepository {
                file: run_file.to_owned(),
                path: repo_path.key("repo"),
                repo: repo.repo.clone(),
            });
        };
        let target = match repos.iter().position(|kept| kept.data.repo == repo.repo) {
            Some(index) => index,
            None => {
                repos.push(MergedRepo {
                    data: RepoData {
                        repo: repo.repo.clone(),
                        ..RepoData::default()
                    },
                    slots: Vec::new(),
                });
                repos.len() - 1
            }
        };
        let target = &mut repos[target];
        target.data.extra.extend(repo.extra.clone());
        for (image_index, image) in repo.images.iter().enumerate() {
            let path = repo_path.key("images").index(image_index);
            let mut built = place(declared, run_file, &path, image.clone())?;
            if let Some(first) = run_images.repeat_of((repo.repo.as_str(), built.image), &path) {
                return Err(PublishedMergeError::SameImageTwice {
                    file: run_file.to_owned(),
                    path,
                    first,
                    repo: repo.repo.clone(),
                });
            }
            built.run_path = Some(path);
            match target
                .slots
                .iter_mut()
                .find(|slot| slot.image == built.image)
            {
                Some(slot) => {
                    replace(slot, built);
                    merge.replaced += 1;
                }
                None => {
                    target.slots.push(built);
                    merge.added += 1;
                }
            }
        }
    }
    // A run repository without images adds nothing.
    for repo in repos.into_iter().filter(|repo| !repo.slots.is_empty()) {
        let mut data = repo.data;
        for slot in repo.slots {
            merge.kept += usize::from(slot.run_path.is_none());
            data.images.push(slot.data);
        }
        for platform in data
            .images
            .iter_mut()
            .flat_map(|image| &mut image.platforms)
        {
            // The published record says what is published; whether this run rebuilt it is the run's business.
            platform.is_unchanged = false;
        }
        merge.info.repos.push(data);
    }
    Ok(merge)
}

/// The published repositories and images with what the manifest no longer declares dropped (and noted in
/// `merge`), each image placed on its manifest image.
fn still_declared(
    declarations: &HashMap<&str, RepoDeclarations<'_>>,
    published: &ImageInfo,
    file: &Path,
    merge: &mut PublishedMerge,
) -> Result<Vec<MergedRepo>, PublishedMergeError> {
    let mut repos = Vec::new();
    for (repo_index, repo) in published.repos.iter().enumerate() {
        let repo_path = JsonPath::root().key("repos").index(repo_index);
        let declared = declarations.get(repo.repo.as_str());
        let mut slots = Vec::new();
        let mut images = FirstSeen::default();
        for (image_index, image) in repo.images.iter().enumerate() {
            let path = repo_path.key("images").index(image_index);
            let (platforms, removed): (Vec<PlatformData>, Vec<PlatformData>) =
                image.platforms.iter().cloned().partition(|platform| {
                    declared.is_some_and(|declared| declared.declares(&platform.identity()))
                });
            merge
                .removed_platforms
                .extend(removed.iter().map(|platform| RemovedPlatform {
                    repo: repo.repo.clone(),
                    platform: platform.identity(),
                }));
            let Some(declared) = declared.filter(|_| !platforms.is_empty()) else {
                merge.removed_images.push(RemovedImage {
                    repo: repo.repo.clone(),
                    path,
                    product_version: image.product_version.clone(),
                    shared_tags: image
                        .manifest
                        .iter()
                        .flat_map(|index| index.shared_tags.clone())
                        .collect(),
                });
                continue;
            };
            let still = ImageData {
                platforms,
                ..image.clone()
            };
            let slot = place(declared, file, &path, still)?;
            if let Some(first) = images.repeat_of(slot.image, &path) {
                return Err(PublishedMergeError::SameImageTwice {
                    file: file.to_owned(),
                    path,
                    first,
                    repo: repo.repo.clone(),
                });
            }
            slots.push(slot);
        }
        if !slots.is_empty() {
            let data = RepoData {
                repo: repo.repo.clone(),
                images: Vec::new(),
                extra: repo.extra.clone(),
            };
            repos.push(MergedRepo { data, slots });
        }
    }
    Ok(repos)
}

/// Places a recorded image on its manifest image: the one its first platform stands in, as every stage reads it.
fn place(
    declared: &RepoDeclarations<'_>,
    file: &Path,
    path: &JsonPath,
    data: ImageData,
) -> Result<Slot, PublishedMergeError> {
    let positions = declared.place(file, path, &data)?;
    let Some(first) = positions.first() else {
        return Err(PublishedMergeError::NoPlatforms {
            file: file.to_owned(),
            path: path.clone(),
            repo: declared.repo().name.clone(),
        });
    };
    Ok(Slot {
        image: first.image,
        positions,
        data,
        run_path: None,
    })
}

/// Puts the run's image in the place of the published one. Published platforms the run did not rebuild stay (an
/// image without shared tags may be rebuilt one platform at a time), in the published order with the run's in
/// the places of those they replace; the run's new platforms follow. The index is the run's, when it made one.
fn replace(slot: &mut Slot, run: Slot) {
    let mut rebuilt: Vec<Option<(Position, PlatformData)>> = run
        .positions
        .into_iter()
        .zip(run.data.platforms)
        .map(Some)
        .collect();
    let published = std::mem::take(&mut slot.data.platforms);
    let mut positions = Vec::with_capacity(published.len());
    let mut platforms = Vec::with_capacity(published.len());
    for (position, platform) in slot.positions.iter().zip(published) {
        let same = rebuilt
            .iter_mut()
            .find(|entry| entry.as_ref().is_some_and(|(at, _)| at == position))
            .and_then(Option::take);
        positions.push(*position);
        platforms.push(same.map_or(platform, |(_, platform)| platform));
    }
    for (position, platform) in rebuilt.into_iter().flatten() {
        positions.push(position);
        platforms.push(platform);
    }
    let manifest = run.data.manifest.or_else(|| slot.data.manifest.take());
    slot.data = ImageData {
        manifest,
        platforms,
        ..run.data
    };
    slot.positions = positions;
    slot.run_path = run.run_path;
}

#[cfg(test)]
mod fixtures;

#[cfg(test)]
mod tests {
    use super::fixtures::{
        APP, GONE, TOOL, app_and_tool, manifest, merged, published, repo, run, summary,
    };
    use super::*;
    use crate::model::ledger::{Pipeline, Stage, StageRecord};

    /// Merges `run` into [`published`], checks the result, the counts (replaced, added, kept) and what was
    /// removed, and that merging the result again with the same run changes nothing.
    fn check(
        manifest: &Manifest,
        run: &ImageInfo,
        expected: &[&str],
        counts: [usize; 3],
        removed: &[&str],
    ) {
        let merge = merged(manifest, &published(), run);
        assert_eq!(summary(&merge.info), expected);
        assert_eq!([merge.replaced, merge.added, merge.kept], counts);
        let removed_now: Vec<String> = merge
            .removed_images
            .iter()
            .map(ToString::to_string)
            .chain(merge.removed_platforms.iter().map(ToString::to_string))
            .collect();
        assert_eq!(removed_now, removed);

        let again = merged(manifest, &merge.info, run);
        assert_eq!(again.info, merge.info, "merging twice changes nothing");
        assert_eq!(again.removed_images, []);
        assert_eq!(again.removed_platforms, []);
    }

    #[test]
    fn a_rebuilt_image_replaces_its_published_record() {
        let manifest = app_and_tool();
        let expected = [
            "team/app 1.0 a amd64:a arm64v8:a",
            "team/app 2.0 b amd64:b arm64v8:b",
            "team/app 3.0 - amd64:a arm64v8:a",
            "team/tool 1.0 a amd64:a",
        ];
        let run = run(&manifest, &[("team/app", 1, 'b')]);
        check(&manifest, &run, &expected, [1, 0, 3], &GONE);
    }

    #[test]
    fn a_partial_rebuild_without_shared_tags_keeps_the_other_platforms() {
        let manifest = app_and_tool();
        let mut run = run(&manifest, &[("team/app", 2, 'b')]);
        run.repos[0].images[0].platforms.remove(0);
        let expected = [
            "team/app 1.0 a amd64:a arm64v8:a",
            "team/app 2.0 a amd64:a arm64v8:a",
            "team/app 3.0 - amd64:a arm64v8:b",
            "team/tool 1.0 a amd64:a",
        ];
        check(&manifest, &run, &expected, [1, 0, 3], &GONE);
    }

    #[test]
    fn an_image_no_longer_in_the_manifest_is_dropped() {
        let manifest = manifest(vec![
            repo("team/app", &[APP[0], APP[2]]),
            repo("team/tool", TOOL),
        ]);
        let run = run(&manifest, &[("team/app", 0, 'b')]);
        let expected = [
            "team/app 1.0 b amd64:b arm64v8:b",
            "team/app 3.0 - amd64:a arm64v8:a",
            "team/tool 1.0 a amd64:a",
        ];
        let removed = [
            "`team/app` image at `repos[0].images[1]`, version `2.0`, shared tags `2.0`",
            GONE[0],
            "`team/app` platform app/2.0/amd64 (linux/amd64, bookworm)",
            "`team/app` platform app/2.0/arm64v8 (linux/arm64, bookworm)",
            GONE[1],
        ];
        check(&manifest, &run, &expected, [1, 0, 2], &removed);
    }

    #[test]
    fn platforms_and_repositories_no_longer_in_the_manifest_are_dropped() {
        // 1.0 loses its arm64 platform; team/tool is gone, so its only image is left without platforms.
        let fewer = ("1.0", &["1.0", "latest"][..], &["amd64"][..]);
        let manifest = manifest(vec![repo("team/app", &[fewer, APP[1], APP[2]])]);
        let run = run(&manifest, &[("team/app", 2, 'b')]);
        let expected = [
            "team/app 1.0 a amd64:a",
            "team/app 2.0 a amd64:a arm64v8:a",
            "team/app 3.0 - amd64:b arm64v8:b",
        ];
        let removed = [
            "`team/tool` image at `repos[1].images[0]`, version `1.0`, shared tags `1.0`",
            GONE[0],
            "`team/app` platform app/1.0/arm64v8 (linux/arm64, bookworm)",
            "`team/tool` platform tool/1.0/amd64 (linux/amd64, bookworm)",
            GONE[1],
        ];
        check(&manifest, &run, &expected, [1, 0, 2], &removed);
    }

    #[test]
    fn new_images_and_repositories_are_appended_in_the_run_order() {
        let newer = ("4.0", &["4.0"][..], &["amd64"][..]);
        let manifest = manifest(vec![
            repo("team/app", &[APP[0], APP[1], APP[2], newer]),
            repo("team/tool", TOOL),
            repo("team/new", TOOL),
        ]);
        let built = [
            ("team/new", 0, 'c'),
            ("team/app", 3, 'b'),
            ("team/tool", 0, 'b'),
        ];
        let expected = [
            "team/app 1.0 a amd64:a arm64v8:a",
            "team/app 2.0 a amd64:a arm64v8:a",
            "team/app 3.0 - amd64:a arm64v8:a",
            "team/app 4.0 b amd64:b",
            "team/tool 1.0 b amd64:b",
            "team/new 1.0 c amd64:c",
        ];
        check(
            &manifest,
            &run(&manifest, &built),
            &expected,
            [1, 2, 3],
            &GONE,
        );
    }

    #[test]
    fn untouched_images_keep_their_values_and_the_run_its_ledger() {
        let manifest = app_and_tool();
        let mut published = published();
        published.extra.insert("kept".into(), "published".into());
        published.extra.insert("both".into(), "published".into());
        published.repos[0].images[0].platforms[1].is_unchanged = true;
        published.repos[0].images[2]
            .extra
            .insert("note".into(), "as published".into());
        let mut run = run(&manifest, &[("team/app", 1, 'b')]);
        run.extra.insert("both".into(), "run".into());
        run.repos[0].images[0].platforms[0].is_unchanged = true;
        run.pipeline = Pipeline {
            stages: vec![StageRecord {
                stage: Stage::PostBuild,
                completed: "2025-01-01T00:00:00Z".into(),
                tool: "imagepipe 0.1.0".into(),
                run_id: None,
                attempt: None,
            }],
        };

        let merge = merged(&manifest, &published, &run);
        let info = &merge.info;
        assert_eq!(info.schema_version, SCHEMA_VERSION);
        assert_eq!(info.pipeline, run.pipeline);
        assert_eq!(info.extra["kept"], "published");
        assert_eq!(info.extra["both"], "run");
        let platforms = info
            .repos
            .iter()
            .flat_map(|repo| &repo.images)
            .flat_map(|image| &image.platforms);
        assert!(platforms.clone().all(|platform| !platform.is_unchanged));
        assert_eq!(platforms.count(), 7);

        let mut expected = published.repos[0].images.clone();
        expected[0].platforms[1].is_unchanged = false;
        expected[1] = run.repos[0].images[0].clone();
        expected[1].platforms[0].is_unchanged = false;
        assert_eq!(info.repos[0].images, expected);
        assert_eq!(info.repos[1], published.repos[1]);
        assert_eq!(
            merge.to_string(),
            "1 images replaced, 0 added, 3 kept; 1 images and 1 platforms no longer in the manifest removed"
        );
    }

    #[test]
    fn refuses_what_it_cannot_place() {
        let manifest = app_and_tool();
        let good_run = || run(&manifest, &[("team/app", 0, 'b')]);
        let mut undeclared_platform = good_run();
        undeclared_platform.repos[0].images[0].platforms[1].architecture = "s390x".into();
        let mut undeclared_repository = good_run();
        undeclared_repository.repos[0].repo = "team/other".into();
        let mut no_platforms = good_run();
        no_platforms.repos[0].images[0].platforms.clear();
        let mut twice = good_run();
        let image = twice.repos[0].images[0].clone();
        twice.repos[0].images.push(image);
        let mut published_twice = published();
        let image = published_twice.repos[1].images[0].clone();
        published_twice.repos[1].images.push(image);
        // A second image that declares the same Dockerfiles with other tags: a record without tags fits both.
        let mut ambiguous = manifest.clone();
        let mut again = ambiguous.repos[0].images[2].clone();
        again
            .platforms
            .iter_mut()
            .for_each(|platform| platform.tags.clear());
        ambiguous.repos[0].images.push(again);
        ambiguous.locate(Path::new("manifest.json"));
        let mut untagged = published();
        for platform in &mut untagged.repos[0].images[2].platforms {
            platform.simple_tags = vec!["other".into()];
        }

        let cases = [
            (
                "undeclared platform",
                &manifest,
                published(),
                undeclared_platform,
                "`run.json` at `repos[0].images[0].platforms[1]`: platform app/1.0/arm64v8 (linux/s390x/v8, bookworm) of `team/app` is not declared in the manifest",
            ),
            (
                "undeclared repository",
                &manifest,
                published(),
                undeclared_repository,
                "`run.json` at `repos[0].repo`: the run built repository `team/other`, which the manifest does not declare",
            ),
            (
                "no platforms",
                &manifest,
                published(),
                no_platforms,
                "`run.json` at `repos[0].images[0]`: the image has no platforms, so it stands for no image of `team/app`",
            ),
            (
                "the same image twice in the run",
                &manifest,
                published(),
                twice,
                "`run.json` at `repos[0].images[1]`: the image stands for the same image of `team/app` as the one at `repos[0].images[0]`",
            ),
            (
                "the same image twice in the published file",
                &manifest,
                published_twice,
                good_run(),
                "`published.json` at `repos[1].images[1]`: the image stands for the same image of `team/tool` as the one at `repos[1].images[0]`",
            ),
            (
                "an ambiguous published image",
                &ambiguous,
                untagged,
                good_run(),
                "`published.json` at `repos[0].images[2]`: the image matches `repos[0].images[2]`, `repos[0].images[3]` of `team/app` equally well",
            ),
        ];
        for (case, manifest, published, run, message) in cases {
            let error = merge_into_published(
                manifest,
                &published,
                Path::new("published.json"),
                &run,
                Path::new("run.json"),
            )
            .expect_err(case);
            assert_eq!(error.to_string(), message, "{case}");
        }
    }
}
