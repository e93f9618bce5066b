//! Fixtures for the unit tests of the published merge: a small manifest, the image-info a build records for
//! it, and a one-line summary of each image to compare results by.

use std::path::Path;

use super::{PublishedMerge, merge_into_published};
use crate::model::image_info::{ImageData, ImageInfo, ManifestData, PlatformData, RepoData};
use crate::model::manifest::{Image, Manifest, PlatformEntry, Repo, TagOptions};

/// An image as declared: product version, shared tags, platform folders (`amd64`, `arm64v8`).
pub(super) type Declared<'a> = (&'a str, &'a [&'a str], &'a [&'a str]);

pub(super) const APP: &[Declared<'_>] = &[
    ("1.0", &["1.0", "latest"], &["amd64", "arm64v8"]),
    ("2.0", &["2.0"], &["amd64", "arm64v8"]),
    ("3.0", &[], &["amd64", "arm64v8"]),
];
pub(super) const TOOL: &[Declared<'_>] = &[("1.0", &["1.0"], &["amd64"])];

pub(super) fn repo(name: &str, images: &[Declared<'_>]) -> Repo {
    let short = name.rsplit('/').next().unwrap_or(name);
    let platform = |version: &str, folder: &str| {
        let (architecture, variant) = match folder {
            "arm64v8" => ("arm64", Some("v8".to_owned())),
            other => (other, None),
        };
        PlatformEntry {
            dockerfile: format!("{short}/{version}/{folder}"),
            os: "linux".into(),
            os_version: Some("bookworm".into()),
            architecture: Some(architecture.into()),
            variant,
            tags: [(format!("{version}-{folder}"), TagOptions::default())].into(),
            ..PlatformEntry::default()
        }
    };
    let images = images.iter().map(|(version, shared, folders)| Image {
        product_version: Some((*version).to_owned()),
        shared_tags: shared
            .iter()
            .map(|tag| ((*tag).to_owned(), TagOptions::default()))
            .collect(),
        platforms: folders
            .iter()
            .map(|folder| platform(version, folder))
            .collect(),
        ..Image::default()
    });
    Repo {
        name: name.into(),
        images: images.collect(),
        ..Repo::default()
    }
}

/// The manifest most tests merge under: team/app and team/tool as [`published`] holds them.
pub(super) fn app_and_tool() -> Manifest {
    manifest(vec![repo("team/app", APP), repo("team/tool", TOOL)])
}

pub(super) fn manifest(repos: Vec<Repo>) -> Manifest {
    let mut manifest = Manifest {
        repos,
        ..Manifest::default()
    };
    manifest.locate(Path::new("manifest.json"));
    manifest
}

/// Image `index` of `repo` as a build records it, every digest ending in `fill`. The run writes 2.0, with
/// variants; the published file is 1.0, without.
fn recorded(repo: &Repo, index: usize, fill: char, run: bool) -> ImageData {
    let declared = &repo.images[index];
    let digest = format!(
        "registry.example/{}@sha256:{}",
        repo.name,
        fill.to_string().repeat(64)
    );
    let platforms = declared.platforms.iter().map(|entry| PlatformData {
        dockerfile: format!("{}/Dockerfile", entry.dockerfile),
        digest: digest.clone(),
        os_type: "Linux".into(),
        os_version: entry.os_version.clone().unwrap_or_default(),
        architecture: entry.architecture().to_owned(),
        variant: entry.variant.clone().filter(|_| run),
        simple_tags: entry.tags.keys().cloned().collect(),
        ..PlatformData::default()
    });
    ImageData {
        product_version: declared.product_version.clone(),
        manifest: (!declared.shared_tags.is_empty()).then(|| ManifestData {
            digest: digest.clone(),
            shared_tags: declared.shared_tags.keys().cloned().collect(),
            ..ManifestData::default()
        }),
        platforms: platforms.collect(),
        ..ImageData::default()
    }
}

/// What was published: every image of team/app and team/tool, and team/gone, which no manifest declares.
pub(super) fn published() -> ImageInfo {
    let repos = [
        repo("team/app", APP),
        repo("team/tool", TOOL),
        repo("team/gone", TOOL),
    ];
    ImageInfo {
        schema_version: "1.0".into(),
        repos: repos
            .iter()
            .map(|repo| RepoData {
                repo: repo.name.clone(),
                images: (0..repo.images.len())
                    .map(|index| recorded(repo, index, 'a', false))
                    .collect(),
                ..RepoData::default()
            })
            .collect(),
        ..ImageInfo::default()
    }
}

/// A run that built `images`: (repository, image index in `manifest`, digest fill).
pub(super) fn run(manifest: &Manifest, images: &[(&str, usize, char)]) -> ImageInfo {
    let mut info = ImageInfo::default();
    for (name, index, fill) in images {
        let Some(repo) = manifest.repos.iter().find(|repo| repo.name == *name) else {
            panic!("`{name}` is not in the test manifest");
        };
        let image = recorded(repo, *index, *fill, true);
        match info.repos.iter_mut().find(|data| data.repo == *name) {
            Some(data) => data.images.push(image),
            None => info.repos.push(RepoData {
                repo: (*name).to_owned(),
                images: vec![image],
                ..RepoData::default()
            }),
        }
    }
    info
}

/// One line an image: `repo version index platform…`, each digest shown by its fill, `-` for no index.
pub(super) fn summary(info: &ImageInfo) -> Vec<String> {
    let fill = |digest: &str| digest.chars().last().unwrap_or('?');
    let mut lines = Vec::new();
    for repo in &info.repos {
        for image in &repo.images {
            let version = image.product_version.as_deref().unwrap_or("-");
            let index = image
                .manifest
                .as_ref()
                .map_or('-', |index| fill(&index.digest));
            let mut line = format!("{} {version} {index}", repo.repo);
            for platform in &image.platforms {
                let folder = platform.dockerfile.split('/').rev().nth(1).unwrap_or("?");
                line.push_str(&format!(" {folder}:{}", fill(&platform.digest)));
            }
            lines.push(line);
        }
    }
    lines
}

pub(super) fn merged(
    manifest: &Manifest,
    published: &ImageInfo,
    run: &ImageInfo,
) -> PublishedMerge {
    merge_into_published(
        manifest,
        published,
        Path::new("published.json"),
        run,
        Path::new("run.json"),
    )
    .expect("merges")
}

pub(super) const GONE: [&str; 2] = [
    "`team/gone` image at `repos[2].images[0]`, version `1.0`, shared tags `1.0`",
    "`team/gone` platform gone/1.0/amd64 (linux/amd64, bookworm)",
];
