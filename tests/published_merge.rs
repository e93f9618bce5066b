//! The merge of a run into the published image-info, on the large real image-info of a public project: a run
//! that rebuilt one image replaces that image and leaves the other 128 as they were.

mod common;

use std::path::Path;

use imagepipe::inputs;
use imagepipe::model::image_info::{ImageData, ImageInfo, PlatformData, RepoData};
use imagepipe::model::manifest::{Image, Manifest, PlatformEntry, Repo, TagOptions};
use imagepipe::model::published::merge_into_published;
use indexmap::IndexMap;
use serde_json::Value;

/// A manifest that declares exactly the images `info` records. The file is older than the project's manifest in
/// `shared/data`, which declares other versions, so the declarations are read back from the file itself.
fn manifest_declaring(info: &ImageInfo) -> Manifest {
    let tags = |tags: &[String]| -> IndexMap<String, TagOptions> {
        tags.iter()
            .map(|tag| (tag.clone(), TagOptions::default()))
            .collect()
    };
    let platform = |recorded: &PlatformData| {
        let (architecture, variant) = match recorded.architecture.as_str() {
            "arm32" => ("arm", Some("v7")),
            "arm64" => ("arm64", Some("v8")),
            other => (other, None),
        };
        let dockerfile = &recorded.dockerfile;
        PlatformEntry {
            dockerfile: dockerfile
                .strip_suffix("/Dockerfile")
                .unwrap_or(dockerfile)
                .to_owned(),
            os: recorded.os_type.to_ascii_lowercase(),
            os_version: Some(recorded.os_version.clone()),
            architecture: Some(architecture.to_owned()),
            variant: variant.map(str::to_owned),
            tags: tags(&recorded.simple_tags),
            ..PlatformEntry::default()
        }
    };
    let repos = info.repos.iter().map(|repo| Repo {
        name: repo.repo.clone(),
        images: repo
            .images
            .iter()
            .map(|image| Image {
                product_version: image.product_version.clone(),
                shared_tags: image
                    .manifest
                    .as_ref()
                    .map(|index| tags(&index.shared_tags))
                    .unwrap_or_default(),
                platforms: image.platforms.iter().map(platform).collect(),
                ..Image::default()
            })
            .collect(),
        ..Repo::default()
    });
    let mut manifest = Manifest {
        registry: Some("mcr.microsoft.com".into()),
        repos: repos.collect(),
        ..Manifest::default()
    };
    manifest.locate(Path::new("manifest.json"));
    manifest
}

/// `digest` with its hash replaced: the same name, another image.
fn rebuilt(digest: &mut String, fill: char) {
    let name = digest.split_once("@sha256:").map_or("", |(name, _)| name);
    *digest = format!("{name}@sha256:{}", fill.to_string().repeat(64));
}

/// A run that built `image` of `dotnet/aspnet` alone.
fn aspnet_run(image: &ImageData) -> ImageInfo {
    ImageInfo {
        repos: vec![RepoData {
            repo: "dotnet/aspnet".into(),
            images: vec![image.clone()],
            ..RepoData::default()
        }],
        ..ImageInfo::default()
    }
}

fn json(value: &impl serde::Serialize) -> Value {
    serde_json::to_value(value).expect("serializes")
}

#[test]
fn a_one_image_run_replaces_only_that_image_of_the_large_published_file() {
    let Some(data) = common::shared_data() else {
        return;
    };
    let file = data.join("dotnet/versions/image-info.dotnet-dotnet-docker-main.json");
    let published = inputs::load_image_info(&file).expect("loads");
    let counts = published.counts();
    assert_eq!(
        (counts.repos, counts.images, counts.platforms),
        (6, 129, 300)
    );
    let manifest = manifest_declaring(&published);

    // aspnet's `6.0-bullseye-slim` image: the `6.0` image declares its Dockerfiles too, so only its tags place it.
    let mut image = published.repos[0].images[0].clone();
    assert_eq!(published.repos[0].repo, "dotnet/aspnet");
    for (platform, fill) in image.platforms.iter_mut().zip(['b', 'c', 'd']) {
        rebuilt(&mut platform.digest, fill);
    }
    let index = image.manifest.as_mut().expect("the image has shared tags");
    rebuilt(&mut index.digest, 'e');
    let run = aspnet_run(&image);

    let merge = merge_into_published(&manifest, &published, &file, &run, Path::new("run.json"))
        .expect("merges");
    assert_eq!((merge.replaced, merge.added, merge.kept), (1, 0, 128));
    assert_eq!(merge.removed_images, []);
    assert_eq!(merge.removed_platforms, []);
    assert_eq!(merge.info.schema_version, "2.0");
    assert_eq!(merge.info.counts(), counts);
    let names = |info: &ImageInfo| -> Vec<String> {
        info.repos.iter().map(|repo| repo.repo.clone()).collect()
    };
    assert_eq!(names(&merge.info), names(&published));
    for (repo_index, (merged, before)) in merge.info.repos.iter().zip(&published.repos).enumerate()
    {
        for (image_index, (after, before)) in merged.images.iter().zip(&before.images).enumerate() {
            let expected = if (repo_index, image_index) == (0, 0) {
                &image
            } else {
                before
            };
            assert_eq!(
                json(after),
                json(expected),
                "repos[{repo_index}].images[{image_index}]"
            );
        }
    }

    let again = merge_into_published(&manifest, &merge.info, &file, &run, Path::new("run.json"))
        .expect("merges again");
    assert_eq!(again.info, merge.info, "merging twice changes nothing");
}

/// `6.0.18` → `6.0.19`: the next patch release of a version.
fn next_patch(version: &mut Option<String>) {
    if let Some(text) = version {
        if let Some((line, patch)) = text.rsplit_once('.') {
            if let Ok(patch) = patch.parse::<u64>() {
                *text = format!("{line}.{}", patch + 1);
            }
        }
    }
}

#[test]
fn a_patch_release_replaces_the_records_of_the_previous_patch() {
    let Some(data) = common::shared_data() else {
        return;
    };
    let file = data.join("dotnet/versions/image-info.dotnet-dotnet-docker-main.json");
    let published = inputs::load_image_info(&file).expect("loads");
    let mut manifest = manifest_declaring(&published);
    for image in manifest.repos.iter_mut().flat_map(|repo| &mut repo.images) {
        next_patch(&mut image.product_version);
    }
    let mut image = published.repos[0].images[0].clone();
    next_patch(&mut image.product_version);
    assert_eq!(image.product_version.as_deref(), Some("6.0.19"));
    for platform in &mut image.platforms {
        rebuilt(&mut platform.digest, 'f');
    }
    let run = aspnet_run(&image);
    let merge = merge_into_published(&manifest, &published, &file, &run, Path::new("run.json"))
        .expect("a published 6.0.18 record stands for the manifest's 6.0.19");
    assert_eq!((merge.replaced, merge.added, merge.kept), (1, 0, 128));
    assert_eq!(
        json(&merge.info.repos[0].images[0]),
        json(&image),
        "the run's image, version and all"
    );
}
