//! `imagepipe record`: the fragment for an image another tool pushed, confirmed in a real registry and read
//! from the image's own config.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::images::{IMAGE_CREATED, TestImage};
use common::{Imagepipe, Ran, Registry, read_json};
use imagepipe::store::registry::{ClientSettings, RegistryClient, RegistryStore};
use serde_json::json;

fn write_manifest(folder: &Path) -> PathBuf {
    let manifest = json!({
        "registry": "registry.example.com",
        "repos": [{"id": "app", "name": "acme/app", "images": [
            {"productVersion": "1.0", "sharedTags": {"1.0": {}}, "platforms": [
                {"dockerfile": "src/amd64", "os": "linux", "osVersion": "bookworm", "tags": {"1.0-amd64": {}}},
                {"dockerfile": "src/arm64v8", "os": "linux", "osVersion": "bookworm", "architecture": "arm64", "variant": "v8", "tags": {"1.0-arm64v8": {}}}
            ]},
            {"productVersion": "1.0", "sharedTags": {"latest": {}}, "platforms": [
                {"dockerfile": "src/amd64", "os": "linux", "osVersion": "bookworm", "tags": {}}
            ]}
        ]}]
    });
    let file = folder.join("manifest.json");
    common::files::write_json(&file, &manifest);
    file
}

fn record(manifest: &Path, dockerfile: &str, digest: &str, staging: &str, output: &Path) -> Ran {
    Imagepipe::new()
        .arg("record")
        .arg("--manifest")
        .arg(manifest)
        .args([
            "--dockerfile",
            dockerfile,
            "--digest",
            digest,
            "--staging-registry",
            staging,
        ])
        .args(["--staging-prefix", "staging/42"])
        .arg("--output")
        .arg(output)
        .run()
}

#[tokio::test]
async fn an_image_pushed_by_another_tool_becomes_a_fragment_post_build_takes() {
    let registry = Registry::start();
    let folder = tempfile::tempdir().expect("temp dir");
    let manifest = write_manifest(folder.path());
    let client = Arc::new(RegistryClient::new(ClientSettings::default()).expect("client"));
    let store = RegistryStore::new(client, &registry.host());
    let amd64 = TestImage::new("linux", "amd64", None, "pushed elsewhere");
    amd64.push(&store, "staging/42/acme/app", None).await;
    let fragment = folder.path().join("fragments/amd64.attempt-1.json");

    record(
        &manifest,
        "src/amd64/Dockerfile",
        amd64.digest().as_str(),
        &registry.host(),
        &fragment,
    )
    .succeeded();
    let written = read_json(&fragment);
    let images = written["repos"][0]["images"].as_array().expect("images");
    assert_eq!(
        images.len(),
        2,
        "recorded under both images that declare it: {written}"
    );
    let platform = &images[0]["platforms"][0];
    assert_eq!(
        platform["digest"],
        format!("registry.example.com/acme/app@{}", amd64.digest())
    );
    assert_eq!(platform["dockerfile"], "src/amd64/Dockerfile");
    assert_eq!(platform["osType"], "Linux");
    assert_eq!(platform["created"], IMAGE_CREATED);
    assert_eq!(platform["layers"].as_array().map(Vec::len), Some(1));
    assert_eq!(written["pipeline"]["stages"][0]["stage"], "build");

    let info = common::stages::post_build(
        &manifest,
        &folder.path().join("fragments"),
        &folder.path().join("image-info.json"),
    );
    let merged = read_json(&info);
    assert_eq!(
        merged["repos"][0]["images"].as_array().map(Vec::len),
        Some(2),
        "{merged}"
    );
}

#[tokio::test]
async fn what_staging_lacks_or_the_manifest_does_not_declare_is_refused() {
    let registry = Registry::start();
    let folder = tempfile::tempdir().expect("temp dir");
    let manifest = write_manifest(folder.path());
    let client = Arc::new(RegistryClient::new(ClientSettings::default()).expect("client"));
    let store = RegistryStore::new(client, &registry.host());
    let arm64 = TestImage::new("linux", "arm64", Some("v8"), "pushed elsewhere");
    arm64.push(&store, "staging/42/acme/app", None).await;
    let output = folder.path().join("fragment.json");

    let missing = format!("sha256:{}", "4".repeat(64));
    let ran = record(&manifest, "src/amd64", &missing, &registry.host(), &output);
    assert_eq!(ran.code, Some(3), "{}", ran.stderr);
    assert!(ran.stderr.contains("is not in staging"), "{}", ran.stderr);

    let ran = record(
        &manifest,
        "src/other",
        arm64.digest().as_str(),
        &registry.host(),
        &output,
    );
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("`src/other` is not declared"),
        "{}",
        ran.stderr
    );

    // An arm64 image recorded for the amd64 Dockerfile: the config says what it is.
    let ran = record(
        &manifest,
        "src/amd64",
        arm64.digest().as_str(),
        &registry.host(),
        &output,
    );
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert!(ran.stderr.contains("linux/arm64/v8"), "{}", ran.stderr);
    assert!(!output.exists(), "no fragment written");
}
