//! The structure of a real manifest (`shared/data/dotnet/…`) with tiny images: what the benchmarks run the
//! stages on when they want real shapes (hundreds of images, platforms listed under several images, shared
//! tags) without real builds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::stream::{self, StreamExt};
use imagepipe::model::manifest::{Manifest, PlatformEntry};
use imagepipe::store::registry::{ClientSettings, RegistryClient, RegistryStore};
use serde_json::{Value, json};

use super::images::{TestImage, write_fragment};

/// Blobs of each tiny image: one layer and the config.
pub const BLOBS_PER_IMAGE: usize = 2;

/// Copies the manifest in `source` and what it includes into `work`, naming `registry` as the public
/// registry; returns the copy's path.
pub fn copy_manifest(source: &Path, work: &Path, registry: &str) -> PathBuf {
    let mut manifest = super::read_json(&source.join("manifest.json"));
    manifest["registry"] = registry.into();
    for included in manifest["includes"].as_array().cloned().unwrap_or_default() {
        let name = included.as_str().expect("an include path");
        std::fs::copy(source.join(name), work.join(name)).expect("copies an include");
    }
    let file = work.join("manifest.json");
    super::files::write_json(&file, &manifest);
    file
}

/// A tiny image standing for `entry`: one per Dockerfile and platform, so an entry listed under several images
/// is one digest, as one build makes it.
pub fn image_for(entry: &PlatformEntry, seed: &str) -> TestImage {
    TestImage::new(
        &entry.os,
        entry.architecture(),
        entry.variant.as_deref(),
        &format!(
            "{seed} {} {}",
            entry.dockerfile,
            entry.os_version.as_deref().unwrap_or_default()
        ),
    )
}

/// Builds (pushes under `prefix` in staging) a tiny image for every declared platform `chosen` picks, and writes
/// one fragment per manifest image into `work/<name>/fragments`. Returns how many distinct images were pushed.
pub async fn build(
    manifest: &Manifest,
    staging: &str,
    prefix: &str,
    name: &str,
    work: &Path,
    chosen: impl Fn(&PlatformEntry) -> bool,
) -> usize {
    let public = manifest.registry.clone().unwrap_or_default();
    let client = Arc::new(RegistryClient::new(ClientSettings::default()).expect("client"));
    let store = RegistryStore::new(client, staging);
    let mut pushes: BTreeMap<(String, String), TestImage> = BTreeMap::new();
    for repo in &manifest.repos {
        for (index, image) in repo.images.iter().enumerate() {
            let entries: Vec<Value> = image
                .platforms
                .iter()
                .filter(|entry| chosen(entry))
                .map(|entry| {
                    let built = image_for(entry, name);
                    let fragment = json!({
                        "dockerfile": format!("{}/Dockerfile", entry.dockerfile),
                        "simpleTags": entry.tags.keys().collect::<Vec<_>>(),
                        "digest": format!("{public}/{}@{}", repo.name, built.digest()),
                        "osType": entry.os, "osVersion": entry.os_version, "architecture": entry.architecture(),
                        "variant": entry.variant, "created": "2026-12-01T00:00:00Z",
                        "commitUrl": format!("https://git.example/dotnet-docker/blob/{name}/{}", entry.dockerfile),
                    });
                    let repository = format!("{prefix}{}", repo.name);
                    pushes.insert((repository, built.digest().to_string()), built);
                    fragment
                })
                .collect();
            if !entries.is_empty() {
                let file = work.join(format!(
                    "{name}/fragments/{}-{index:03}.json",
                    repo.name.replace('/', "-")
                ));
                write_fragment(&file, &repo.name, entries);
            }
        }
    }
    let total = pushes.len();
    stream::iter(&pushes)
        .for_each_concurrent(16, |((repository, _), image)| {
            let store = &store;
            async move { image.push(store, repository, None).await }
        })
        .await;
    total
}
