//! Benchmark: `imagepipe publish` of 100 images x 3 platforms with their signatures between two real
//! registries, against `skopeo copy --all --preserve-digests` per image (signatures copied through
//! `use-sigstore-attachments`) in the same run; the no-op re-run; and peak memory while publishing one image
//! with a 1 GiB layer, for both tools.
//!
//! Run: `cargo bench --bench publish` (needs `scripts/install-test-deps.sh`). Prints figures only.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::images::{TestImage, write_fragment};
use common::{Imagepipe, Ran};
use futures_util::stream;
use imagepipe::model::reference::Digest;
use imagepipe::store::registry::{ClientSettings, RegistryClient, RegistryStore};
use imagepipe::store::{BlobStream, ManifestReference, Store, StoredManifest, media_type};
use serde_json::json;

const IMAGES: usize = 100;
const PLATFORMS: [(&str, Option<&str>); 3] =
    [("amd64", None), ("arm64", Some("v8")), ("arm", Some("v7"))];
const PREFIX: &str = "staging/1";
const PASSWORD: &str = "bench";
const LARGE_LAYER: u64 = 1 << 30;
const CHUNK: usize = 1 << 20;

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let staging = common::Registry::start();
    let public = common::Registry::start();
    let peer = common::Registry::start();
    let folder = tempfile::tempdir().expect("temp dir");
    let info = runtime.block_on(prepare(folder.path(), &staging.host(), &public.host()));

    let publish = |target: &str, output: &Path| {
        let started = Instant::now();
        let log = imagepipe(&[
            "publish",
            "--image-info",
            &info,
            "--staging-registry",
            &staging.host(),
            "--staging-prefix",
            PREFIX,
            "--registry-override",
            target,
            "--output",
            &output.display().to_string(),
        ]);
        (
            started.elapsed(),
            log.lines().last().unwrap_or_default().to_owned(),
        )
    };
    let (first, first_log) = publish(&public.host(), &folder.path().join("final.json"));
    let (rerun, rerun_log) = publish(&public.host(), &folder.path().join("final.json"));

    let registries = folder.path().join("registries.d");
    std::fs::create_dir_all(&registries).expect("creates");
    let attachments: String = [staging.host(), peer.host()]
        .iter()
        .map(|host| format!("  {host}:\n    use-sigstore-attachments: true\n"))
        .collect();
    std::fs::write(
        registries.join("bench.yaml"),
        format!("docker:\n{attachments}"),
    )
    .expect("writes");
    let indexes = runtime.block_on(index_digests(&info));
    let started = Instant::now();
    for (repository, index) in &indexes {
        skopeo_copy(
            &registries,
            &format!("docker://{}/{PREFIX}/{repository}@{index}", staging.host()),
            &format!("docker://{}/{repository}:1.0", peer.host()),
        );
    }
    let skopeo = started.elapsed();

    println!(
        "publish: {IMAGES} images x {} platforms + index, each signed (4 signatures per image)",
        PLATFORMS.len()
    );
    println!(
        "  imagepipe publish              {:>7.2} s  ({first_log})",
        first.as_secs_f64()
    );
    println!(
        "  imagepipe publish, no-op re-run {:>6.2} s  ({rerun_log})",
        rerun.as_secs_f64()
    );
    println!(
        "  skopeo copy --all per image     {:>6.2} s  ({IMAGES} runs)",
        skopeo.as_secs_f64()
    );
    println!(
        "  ratio skopeo / imagepipe: {:.1}",
        skopeo.as_secs_f64() / first.as_secs_f64()
    );

    let large = runtime.block_on(large_image(folder.path(), &staging.host(), &public.host()));
    let imagepipe_memory = peak_memory(&[
        env!("CARGO_BIN_EXE_imagepipe"),
        "publish",
        "--image-info",
        &large,
        "--staging-registry",
        &staging.host(),
        "--staging-prefix",
        PREFIX,
        "--allow-unsigned",
        "--registry-override",
        &peer.host(),
        "--output",
        &folder.path().join("large-final.json").display().to_string(),
    ]);
    let large_index = runtime.block_on(index_digests(&large));
    let (repository, index) = &large_index[0];
    let skopeo_memory = peak_memory(&[
        &common::tools::skopeo().display().to_string(),
        "copy",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &format!("docker://{}/{PREFIX}/{repository}@{index}", staging.host()),
        &format!("docker://{}/large-by-skopeo:1.0", public.host()),
    ]);
    println!("peak memory publishing one image with a 1 GiB layer (maximum resident set size)");
    println!(
        "  imagepipe publish   {:>7.1} MiB ({:.1} s)",
        imagepipe_memory.0 as f64 / 1024.0,
        imagepipe_memory.1.as_secs_f64()
    );
    println!(
        "  skopeo copy         {:>7.1} MiB ({:.1} s)",
        skopeo_memory.0 as f64 / 1024.0,
        skopeo_memory.1.as_secs_f64()
    );
}

fn imagepipe(arguments: &[&str]) -> String {
    let Ran { code, stderr, .. } = Imagepipe::new()
        .args(arguments)
        .env("COSIGN_PASSWORD", PASSWORD)
        .run();
    assert!(code == Some(0), "{arguments:?}: {stderr}");
    stderr
}

fn skopeo_copy(registries: &Path, from: &str, to: &str) {
    let output = Command::new(common::tools::skopeo())
        .args([
            "copy",
            "--all",
            "--preserve-digests",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--registries.d",
        ])
        .arg(registries)
        .args([from, to])
        .output()
        .expect("skopeo runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs a command under GNU time; returns its maximum resident set size in KiB and its duration.
fn peak_memory(command: &[&str]) -> (u64, Duration) {
    let started = Instant::now();
    let output = Command::new("/usr/bin/time")
        .args(["-f", "peak-kib %M"])
        .args(command)
        .env("DOCKER_CONFIG", "/nonexistent")
        .output()
        .expect("time runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{command:?}: {stderr}");
    let kib = stderr
        .lines()
        .find_map(|line| line.strip_prefix("peak-kib ")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak memory in {stderr}"));
    (kib, started.elapsed())
}

/// The chain up to sign for `IMAGES` images; returns the image-info path.
async fn prepare(folder: &Path, staging: &str, public: &str) -> String {
    let store = RegistryStore::new(
        Arc::new(RegistryClient::new(ClientSettings::default()).expect("client")),
        staging,
    );
    let mut declared = Vec::new();
    for image in 0..IMAGES {
        let repository = format!("bench/app-{image:03}");
        let staged = format!("{PREFIX}/{repository}");
        let built: Vec<TestImage> = PLATFORMS
            .iter()
            .map(|(architecture, variant)| {
                TestImage::new("linux", architecture, *variant, &format!("publish-{image}"))
            })
            .collect();
        futures_util::future::join_all(
            built
                .iter()
                .map(|platform| platform.push(&store, &staged, None)),
        )
        .await;
        let entries = built
            .iter()
            .zip(PLATFORMS)
            .map(|(platform, (architecture, _))| {
                platform.platform_entry(
                    public,
                    &repository,
                    &format!("src/{architecture}"),
                    &[&format!("1.0-{architecture}")],
                )
            })
            .collect();
        write_fragment(
            &folder.join(format!("fragments/leg-{image:03}.json")),
            &repository,
            entries,
        );
        let platforms: Vec<_> = PLATFORMS
            .iter()
            .map(|(architecture, variant)| {
                let mut entry = json!({"dockerfile": format!("src/{architecture}"), "os": "linux", "osVersion": "bookworm",
                    "architecture": architecture, "tags": {format!("1.0-{architecture}"): {}}});
                if let Some(variant) = variant {
                    entry["variant"] = (*variant).into();
                }
                entry
            })
            .collect();
        declared.push(json!({"name": repository, "images": [{"sharedTags": {"1.0": {}}, "platforms": platforms}]}));
    }
    let manifest = folder.join("manifest.json").display().to_string();
    std::fs::write(
        &manifest,
        json!({"registry": public, "repos": declared}).to_string(),
    )
    .expect("writes");
    let info = folder.join("image-info.json").display().to_string();
    let fragments = folder.join("fragments").display().to_string();
    imagepipe(&[
        "post-build",
        "--manifest",
        &manifest,
        "--fragments",
        &fragments,
        "--output",
        &info,
    ]);
    imagepipe(&[
        "create-manifest",
        "--manifest",
        &manifest,
        "--image-info",
        &info,
        "--staging-registry",
        staging,
        "--staging-prefix",
        PREFIX,
    ]);
    let key = folder.join("bench").display().to_string();
    imagepipe(&["generate-key", "--output-prefix", &key]);
    imagepipe(&[
        "sign",
        "--image-info",
        &info,
        "--key",
        &format!("{key}.key"),
        "--staging-registry",
        staging,
        "--staging-prefix",
        PREFIX,
    ]);
    info
}

/// Each image's repository and index digest.
async fn index_digests(info: &str) -> Vec<(String, String)> {
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(info).expect("reads")).expect("JSON");
    info["repos"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|repo| {
            let reference = repo["images"][0]["manifest"]["digest"].as_str()?;
            Some((
                repo["repo"].as_str()?.to_owned(),
                reference.rsplit_once('@')?.1.to_owned(),
            ))
        })
        .collect()
}

/// One image whose only layer is 1 GiB, streamed into staging (never held in memory), with its index; returns
/// an image-info ready for publish (`--allow-unsigned`).
async fn large_image(folder: &Path, staging: &str, public: &str) -> String {
    let store = RegistryStore::new(
        Arc::new(RegistryClient::new(ClientSettings::default()).expect("client")),
        staging,
    );
    let repository = "bench/large";
    let staged = format!("{PREFIX}/{repository}");
    let chunk = |index: u64| Bytes::from(vec![(index % 251) as u8; CHUNK]);
    let chunks = LARGE_LAYER / CHUNK as u64;
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    for index in 0..chunks {
        sha2::Digest::update(&mut hasher, chunk(index));
    }
    let layer: Digest = format!("sha256:{:x}", sha2::Digest::finalize(hasher))
        .parse()
        .expect("digest");
    let layer_stream = BlobStream {
        size: Some(LARGE_LAYER),
        chunks: Box::pin(stream::iter((0..chunks).map(move |index| Ok(chunk(index))))),
    };
    store
        .put_blob_stream(&staged, &layer, layer_stream)
        .await
        .expect("uploads the layer");
    let config = Bytes::from(json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [layer.as_str()]}}).to_string());
    let config_digest = Digest::of(&config);
    store
        .put_blob(&staged, &config_digest, config.clone())
        .await
        .expect("uploads the config");
    let manifest = StoredManifest {
        media_type: media_type::OCI_MANIFEST.to_owned(),
        bytes: Bytes::from(
            json!({"schemaVersion": 2, "mediaType": media_type::OCI_MANIFEST,
                "config": {"mediaType": media_type::OCI_CONFIG, "digest": config_digest.as_str(), "size": config.len()},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.as_str(), "size": LARGE_LAYER}]})
            .to_string(),
        ),
    };
    let digest = manifest.digest();
    store
        .put_manifest(&staged, ManifestReference::Digest(&digest), &manifest)
        .await
        .expect("pushes");
    let index = StoredManifest {
        media_type: media_type::OCI_INDEX.to_owned(),
        bytes: Bytes::from(
            json!({"schemaVersion": 2, "mediaType": media_type::OCI_INDEX, "manifests": [{"mediaType": media_type::OCI_MANIFEST,
                "digest": digest.as_str(), "size": manifest.bytes.len(), "platform": {"architecture": "amd64", "os": "linux"}}]})
            .to_string(),
        ),
    };
    let index_digest = index.digest();
    store
        .put_manifest(&staged, ManifestReference::Tag("1.0"), &index)
        .await
        .expect("pushes");
    let stages = ["post-build", "create-manifest"]
        .map(|stage| json!({"stage": stage, "completed": "2026-11-29T00:00:00Z", "tool": "bench"}));
    let info = json!({"schemaVersion": "2.0", "repos": [{"repo": repository, "images": [{
        "manifest": {"digest": format!("{public}/{repository}@{index_digest}"), "sharedTags": ["1.0"]},
        "platforms": [{"dockerfile": "src/large", "digest": format!("{public}/{repository}@{digest}"), "osType": "Linux",
            "osVersion": "bookworm", "architecture": "amd64", "simpleTags": ["1.0-amd64"]}]}]}],
        "pipeline": {"stages": stages}});
    let file = folder.join("large.json");
    std::fs::write(&file, info.to_string()).expect("writes");
    file.display().to_string()
}
