//! A partial release keeps the published record whole: a full release is published, then a run rebuilds one
//! platform of three. The platforms carried over keep their published records exactly, the final image-info
//! holds every image, and publish-image-info commits the merged record.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::fake_github::{DEFAULT_BRANCH, FakeGitHub, REPOSITORY as GITHUB_REPOSITORY, TOKEN};
use common::images::{TestImage, write_fragment};
use common::{Imagepipe, Registry, read_json};
use imagepipe::store::registry::{ClientSettings, RegistryClient, RegistryStore};
use imagepipe::store::{ManifestReference, Store};
use serde_json::{Value, json};

const REPOSITORY: &str = "acme/app";
const PASSWORD: &str = "partial build password";
const PUBLISHED_PATH: &str = "published/image-info.json";

/// One image of three platforms under shared tags, and one image without shared tags.
fn write_manifest(folder: &Path, public: &str) -> PathBuf {
    let platform = |dockerfile: &str, architecture: &str, variant: Option<&str>, tag: &str| {
        let mut entry = json!({"dockerfile": dockerfile, "os": "linux", "osVersion": "bookworm",
            "architecture": architecture, "tags": {tag: {}}});
        if let Some(variant) = variant {
            entry["variant"] = variant.into();
        }
        entry
    };
    let manifest = json!({
        "registry": public,
        "repos": [{"id": "app", "name": REPOSITORY, "images": [
            {"productVersion": "1.0.0", "sharedTags": {"1.0": {}, "latest": {}}, "platforms": [
                platform("src/amd64", "amd64", None, "1.0-amd64"),
                platform("src/arm64v8", "arm64", Some("v8"), "1.0-arm64v8"),
                platform("src/arm32v7", "arm", Some("v7"), "1.0-arm32v7"),
            ]},
            {"productVersion": "1.0.0", "platforms": [platform("src/debug", "amd64", None, "1.0-debug")]}
        ]}]
    });
    let file = folder.join("manifest.json");
    common::files::write_json(&file, &manifest);
    file
}

/// One release: builds `built` (image, Dockerfile folder, tag) into `staging` under `prefix`, then runs every
/// stage to publish. Returns the image-info of the run (after sign) and the final image-info.
struct Release<'a> {
    folder: &'a Path,
    manifest: &'a Path,
    staging: &'a Registry,
    public: &'a Registry,
    key: &'a Path,
}

impl Release<'_> {
    async fn run(
        &self,
        name: &str,
        built: &[(&TestImage, &str, &str)],
        published: Option<&Path>,
    ) -> (PathBuf, PathBuf) {
        let work = self.folder.join(name);
        let prefix = format!("staging/{name}");
        let client = Arc::new(RegistryClient::new(ClientSettings::default()).expect("client"));
        let staged = RegistryStore::new(client, &self.staging.host());
        for (index, (image, dockerfile, tag)) in built.iter().enumerate() {
            image
                .push(&staged, &format!("{prefix}/{REPOSITORY}"), None)
                .await;
            let mut entry =
                image.platform_entry(&self.public.host(), REPOSITORY, dockerfile, &[tag]);
            // What only a build knows, which a carried-over platform must keep.
            entry["commitUrl"] =
                format!("https://git.example/acme/app/blob/{name}/{dockerfile}/Dockerfile").into();
            entry["baseImageDigest"] = format!("debian@sha256:{}", "b".repeat(64)).into();
            entry["created"] = format!("2026-11-{:02}T00:00:00Z", index + 1).into();
            write_fragment(
                &work.join(format!("fragments/leg-{index}.json")),
                REPOSITORY,
                vec![entry],
            );
        }
        let info = common::stages::post_build(
            self.manifest,
            &work.join("fragments"),
            &work.join("image-info.json"),
        );
        let staging = [
            "--staging-registry".to_owned(),
            self.staging.host(),
            "--staging-prefix".to_owned(),
            prefix,
        ];
        let with_published = |stage: Imagepipe| match published {
            Some(file) => stage.arg("--published-image-info").arg(file),
            None => stage,
        };
        with_published(common::stages::create_manifest(
            self.manifest,
            &info,
            &self.staging.host(),
        ))
        .args(&staging[2..])
        .run()
        .succeeded();
        Imagepipe::new()
            .arg("sign")
            .arg("--image-info")
            .arg(&info)
            .arg("--key")
            .arg(self.key)
            .args(&staging)
            .env("COSIGN_PASSWORD", PASSWORD)
            .run()
            .succeeded();
        let final_info = work.join("final-image-info.json");
        with_published(Imagepipe::new().arg("publish"))
            .arg("--image-info")
            .arg(&info)
            .arg("--manifest")
            .arg(self.manifest)
            .args(&staging)
            .arg("--output")
            .arg(&final_info)
            .run()
            .succeeded();
        (info, final_info)
    }
}

/// The platform records of image `image`, by architecture.
fn platform(info: &Value, image: usize, architecture: &str) -> Value {
    info["repos"][0]["images"][image]["platforms"]
        .as_array()
        .expect("platforms")
        .iter()
        .find(|platform| platform["architecture"] == architecture)
        .unwrap_or_else(|| panic!("no {architecture} platform in image {image}: {info}"))
        .clone()
}

#[tokio::test]
async fn a_partial_release_keeps_the_published_record_whole() {
    let staging = Registry::start();
    let public = Registry::start();
    let folder = tempfile::tempdir().expect("temp dir");
    let manifest = write_manifest(folder.path(), &public.host());
    let key = common::stages::generate_key(&folder.path().join("cosign"), PASSWORD);
    let release = Release {
        folder: folder.path(),
        manifest: &manifest,
        staging: &staging,
        public: &public,
        key: &key,
    };
    let amd64 = TestImage::new("linux", "amd64", None, "first");
    let arm64 = TestImage::new("linux", "arm64", Some("v8"), "first");
    let arm32 = TestImage::new("linux", "arm", Some("v7"), "first");
    let debug = TestImage::new("linux", "amd64", None, "debug");
    let (_, first) = release
        .run(
            "first",
            &[
                (&amd64, "src/amd64", "1.0-amd64"),
                (&arm64, "src/arm64v8", "1.0-arm64v8"),
                (&arm32, "src/arm32v7", "1.0-arm32v7"),
                (&debug, "src/debug", "1.0-debug"),
            ],
            None,
        )
        .await;
    let first = read_json(&first);
    assert_eq!(
        platform(&first, 0, "arm32")["dockerfile"],
        "src/arm32v7/Dockerfile"
    );

    // The second release rebuilds amd64 alone.
    let amd64_again = TestImage::new("linux", "amd64", None, "second");
    let published = folder.path().join("published-image-info.json");
    std::fs::copy(
        folder.path().join("first/final-image-info.json"),
        &published,
    )
    .expect("copies");
    let (run_info, second) = release
        .run(
            "second",
            &[(&amd64_again, "src/amd64", "1.0-amd64")],
            Some(&published),
        )
        .await;

    let carried = read_json(&run_info);
    assert_eq!(
        platform(&carried, 0, "arm64")["isUnchanged"],
        true,
        "marked in the run's own record"
    );
    let second_json = read_json(&second);
    let images = second_json["repos"][0]["images"]
        .as_array()
        .expect("images");
    assert_eq!(
        images.len(),
        2,
        "the final record holds every image: {second_json}"
    );
    for architecture in ["arm64", "arm32"] {
        assert_eq!(
            platform(&second_json, 0, architecture),
            platform(&first, 0, architecture),
            "{architecture} keeps its published record exactly"
        );
    }
    assert_eq!(
        images[1], first["repos"][0]["images"][1],
        "the image not rebuilt is kept as published"
    );
    let rebuilt = platform(&second_json, 0, "amd64");
    assert_eq!(
        rebuilt["digest"],
        format!("{}/{REPOSITORY}@{}", public.host(), amd64_again.digest())
    );
    assert_eq!(rebuilt["dockerfile"], "src/amd64/Dockerfile");
    let index = second_json["repos"][0]["images"][0]["manifest"]["digest"]
        .as_str()
        .expect("an index");
    assert_ne!(
        Some(index),
        first["repos"][0]["images"][0]["manifest"]["digest"].as_str()
    );
    let client = Arc::new(RegistryClient::new(ClientSettings::default()).expect("client"));
    let latest = RegistryStore::new(client, &public.host())
        .head_manifest(REPOSITORY, ManifestReference::Tag("latest"))
        .await
        .expect("reads")
        .expect("latest is published");
    assert!(
        index.ends_with(&latest.digest().to_string()),
        "`latest` is the new index"
    );

    // publish-image-info merges into what is committed: here the first release's record, and a final file
    // written without the published record, as a user who forgot the flag would have.
    let github = FakeGitHub::start();
    github.put_file(
        DEFAULT_BRANCH,
        PUBLISHED_PATH,
        &std::fs::read(&published).expect("reads"),
    );
    let forgotten = folder.path().join("second/final-without-record.json");
    Imagepipe::new()
        .arg("publish")
        .arg("--image-info")
        .arg(&run_info)
        .args([
            "--staging-registry",
            &staging.host(),
            "--staging-prefix",
            "staging/second",
        ])
        .arg("--output")
        .arg(&forgotten)
        .run()
        .succeeded();
    assert_eq!(
        read_json(&forgotten)["repos"][0]["images"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let commit = |file: &Path| {
        Imagepipe::new()
            .env("GITHUB_TOKEN", TOKEN)
            .arg("publish-image-info")
            .arg("--image-info")
            .arg(file)
            .arg("--manifest")
            .arg(&manifest)
            .args(["--repo", GITHUB_REPOSITORY, "--path", PUBLISHED_PATH])
            .args(["--api-url", &github.url])
            .run()
            .succeeded();
    };
    commit(&forgotten);
    let committed: Value = serde_json::from_slice(
        &github
            .file(DEFAULT_BRANCH, PUBLISHED_PATH)
            .expect("committed"),
    )
    .expect("JSON");
    assert_eq!(
        committed["repos"], second_json["repos"],
        "the committed record is the merged one"
    );

    // Committing the merged file: once to replace the ledger of the forgotten one, then nothing more.
    commit(&second);
    assert_eq!(
        github
            .file(DEFAULT_BRANCH, PUBLISHED_PATH)
            .expect("committed"),
        std::fs::read(&second).expect("reads"),
        "merging the merged record into its own base gives it back byte for byte"
    );
    let commits = github.puts().len();
    commit(&second);
    assert_eq!(
        github.puts().len(),
        commits,
        "unchanged content makes no commit"
    );
}
