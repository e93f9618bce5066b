//! The real manifest.json and image-info.json files of a large public project load, resolve and round-trip.

mod common;

use std::collections::BTreeMap;

use common::{Imagepipe, Ran, read_json};
use imagepipe::files;
use imagepipe::inputs;
use imagepipe::model::image_info::ImageInfo;
use imagepipe::model::manifest::Manifest;
use serde_json::Value;

fn platforms(manifest: &Manifest) -> usize {
    manifest
        .repos
        .iter()
        .flat_map(|repo| &repo.images)
        .map(|image| image.platforms.len())
        .sum()
}

#[test]
fn the_large_manifest_loads_with_every_reference_resolved() {
    let Some(data) = common::shared_data() else {
        return;
    };
    let file = data.join("dotnet/dotnet-docker/manifest.json");
    let manifest = inputs::load_manifest(&file, &BTreeMap::new()).expect("loads");
    let images: usize = manifest.repos.iter().map(|repo| repo.images.len()).sum();
    assert_eq!(
        (manifest.repos.len(), images, platforms(&manifest)),
        (7, 262, 601)
    );

    // Everything stages read is expanded: no `$(` is left in tags, versions, build args or paths.
    let resolved = serde_json::to_value(&manifest.repos).expect("serializes");
    let mut leftovers = Vec::new();
    for repo in resolved.as_array().into_iter().flatten() {
        for image in repo["images"].as_array().into_iter().flatten() {
            let mut texts: Vec<String> = image["sharedTags"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(tag, _)| tag.clone())
                .collect();
            texts.extend(image["productVersion"].as_str().map(str::to_owned));
            for platform in image["platforms"].as_array().into_iter().flatten() {
                texts.extend(
                    platform["tags"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(tag, _)| tag.clone()),
                );
                texts.extend(
                    platform["buildArgs"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .filter_map(|(_, value)| value.as_str().map(str::to_owned)),
                );
                texts.extend(platform["dockerfile"].as_str().map(str::to_owned));
            }
            leftovers.extend(texts.into_iter().filter(|text| text.contains("$(")));
        }
    }
    assert!(leftovers.is_empty(), "unexpanded: {leftovers:?}");

    // `$(Repo:<id>)` names the repository with its registry, as a base image reference needs.
    let build_args: Vec<&String> = manifest.repos[1]
        .images
        .iter()
        .flat_map(|image| &image.platforms)
        .flat_map(|platform| platform.build_args.values())
        .collect();
    assert!(
        build_args
            .iter()
            .any(|value| value.starts_with("mcr.microsoft.com/dotnet/runtime-deps")),
        "{build_args:?}"
    );
}

#[test]
fn the_image_builder_manifest_needs_only_the_unique_id_built_in() {
    let Some(data) = common::shared_data() else {
        return;
    };
    let file = data.join("dotnet/docker-tools/manifest.json");
    let error =
        inputs::load_manifest(&file, &BTreeMap::new()).expect_err("UniqueId is not in the file");
    let undefined: Vec<&str> = error
        .issues()
        .iter()
        .map(|issue| issue.found.as_str())
        .collect();
    assert!(!undefined.is_empty());
    assert!(
        undefined
            .iter()
            .all(|found| found.starts_with("`$(UniqueId)` is not defined")),
        "{undefined:?}"
    );

    let overrides = BTreeMap::from([("UniqueId".to_owned(), "20261129".to_owned())]);
    let manifest = inputs::load_manifest(&file, &overrides).expect("loads with the built-in");
    let shared: Vec<&String> = manifest.repos[0].images[0].shared_tags.keys().collect();
    assert_eq!(shared, ["latest", "20261129"], "in the file's order");
    assert_eq!(platforms(&manifest), 5);

    for small in [
        "dotnet/docker-tools/test-manifest.json",
        "dotnet/dotnet-docker/manifest.samples.json",
    ] {
        let manifest = inputs::load_manifest(&data.join(small), &BTreeMap::new()).expect(small);
        assert!(platforms(&manifest) > 0, "{small}");
    }
}

#[test]
fn manifests_round_trip_without_losing_a_key() {
    let Some(data) = common::shared_data() else {
        return;
    };
    for name in [
        "dotnet/dotnet-docker/manifest.json",
        "dotnet/dotnet-docker/manifest.versions.json",
        "dotnet/dotnet-docker/manifest.samples.json",
        "dotnet/docker-tools/manifest.json",
        "dotnet/docker-tools/test-manifest.json",
    ] {
        let file = data.join(name);
        let original = read_json(&file);
        let manifest = inputs::read_manifest_as_written(&file).expect(name);
        let saved = serde_json::to_value(&manifest).expect("serializes");
        assert!(saved == original, "{name} changed in a round trip");
    }
}

/// Each platform and image of an image-info as canonical JSON text, in sorted order: the content of the file
/// without the order of lists whose order carries no meaning, and with 1.0 layer strings in their 2.0 form.
fn content(info: &Value) -> (Vec<String>, Vec<String>) {
    let mut platforms = Vec::new();
    let mut images = Vec::new();
    for repo in info["repos"].as_array().into_iter().flatten() {
        for image in repo["images"].as_array().into_iter().flatten() {
            let mut image = image.clone();
            let Some(object) = image.as_object_mut() else {
                continue;
            };
            if let Some(Value::Array(platform_list)) = object.remove("platforms") {
                for mut platform in platform_list {
                    if let Some(Value::Array(tags)) = platform.get_mut("simpleTags") {
                        tags.sort_by_key(Value::to_string);
                    }
                    if let Some(Value::Array(layers)) = platform.get_mut("layers") {
                        for layer in layers.iter_mut() {
                            if let Value::String(digest) = layer {
                                *layer = serde_json::json!({ "digest": digest });
                            }
                        }
                    }
                    platforms.push(format!("{}: {platform}", repo["repo"]));
                }
            }
            if let Some(Value::Array(tags)) = object
                .get_mut("manifest")
                .and_then(|manifest| manifest.get_mut("sharedTags"))
            {
                tags.sort_by_key(Value::to_string);
            }
            images.push(format!("{}: {image}", repo["repo"]));
        }
    }
    platforms.sort();
    images.sort();
    (platforms, images)
}

#[test]
fn image_info_files_round_trip_losslessly_into_schema_2() {
    let Some(data) = common::shared_data() else {
        return;
    };
    let expected_counts = [
        (
            "image-info.dotnet-dotnet-docker-main.json",
            (6, 129, 300, 105),
        ),
        (
            "image-info.dotnet-dotnet-docker-main-samples.json",
            (1, 2, 14, 2),
        ),
        (
            "image-info.dotnet-docker-tools-main-imagebuilder.json",
            (1, 1, 3, 1),
        ),
    ];
    let folder = tempfile::tempdir().expect("temp dir");
    for (name, (repos, images, platforms, indexes)) in expected_counts {
        let file = data.join("dotnet/versions").join(name);
        let original = read_json(&file);
        assert_eq!(original["schemaVersion"], "1.0", "{name}");

        let mut loaded = inputs::load_image_info(&file).expect(name);
        let counts = loaded.counts();
        assert_eq!(
            (
                counts.repos,
                counts.images,
                counts.platforms,
                counts.indexes
            ),
            (repos, images, platforms, indexes),
            "{name}"
        );

        loaded.normalize();
        let saved_file = folder.path().join(name);
        files::write_atomically(&saved_file, &loaded).expect("writes");
        let saved = read_json(&saved_file);
        assert_eq!(saved["schemaVersion"], "2.0", "{name}");
        assert!(
            content(&saved) == content(&original),
            "{name}: content changed in a round trip"
        );

        // Saving what was loaded back gives the same bytes: the output is deterministic.
        let mut reloaded = inputs::load_image_info(&saved_file).expect("reloads");
        assert_eq!(reloaded, loaded, "{name}");
        reloaded.normalize();
        assert_eq!(
            files::to_bytes(&reloaded),
            std::fs::read(&saved_file).expect("reads"),
            "{name}"
        );
    }
}

#[test]
fn layers_keep_their_build_order() {
    let Some(data) = common::shared_data() else {
        return;
    };
    let file = data.join("dotnet/versions/image-info.dotnet-docker-tools-main-imagebuilder.json");
    let original = read_json(&file);
    let mut info: ImageInfo = inputs::load_image_info(&file).expect("loads");
    info.normalize();
    let digest = |value: &Value| value["digest"].as_str().map(str::to_owned);
    let platform = info.repos[0].images[0]
        .platforms
        .iter()
        .find(|platform| {
            Some(platform.digest.clone())
                == digest(&original["repos"][0]["images"][0]["platforms"][0])
        })
        .expect("the first platform is still there");
    let original_layers: Vec<&str> = original["repos"][0]["images"][0]["platforms"][0]["layers"]
        .as_array()
        .expect("has layers")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let layers: Vec<&str> = platform
        .layers
        .iter()
        .map(|layer| layer.digest.as_str())
        .collect();
    assert!(!layers.is_empty());
    assert_eq!(layers, original_layers);
}

#[test]
fn validate_accepts_the_real_files() {
    let Some(data) = common::shared_data() else {
        return;
    };
    let Ran { code, stderr, .. } = Imagepipe::new()
        .arg("validate")
        .arg("--manifest")
        .arg(data.join("dotnet/dotnet-docker/manifest.json"))
        .arg("--image-info")
        .arg(data.join("dotnet/versions/image-info.dotnet-dotnet-docker-main.json"))
        .run();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("7 repos, 262 images, 601 platforms"),
        "{stderr}"
    );
    assert!(
        stderr.contains("6 repos, 129 images, 300 platforms, 105 manifest lists"),
        "{stderr}"
    );
}
