//! Benchmark: `imagepipe create-manifest` for 200 images of 3 platforms each against a real registry, its
//! HTTP request count per index against the minimum, a no-op re-run, and `buildah manifest` doing the same
//! work for a sample of the images in the same run.
//!
//! Run: `cargo bench --bench create_manifest` (needs `scripts/install-test-deps.sh`). Prints figures only.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Imagepipe;
use common::images::{TestImage, write_fragment};
use imagepipe::store::registry::{ClientSettings, RegistryClient, RegistryStore};
use serde_json::json;

const IMAGES: usize = 200;
const SHARED_TAGS: usize = 2;
const PLATFORMS: [(&str, Option<&str>); 3] =
    [("amd64", None), ("arm64", Some("v8")), ("arm", Some("v7"))];
/// Images `buildah manifest` builds indexes for; its time is scaled to all images.
const BUILDAH_SAMPLE: usize = 10;

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let registry = common::Registry::start();
    let folder = tempfile::tempdir().expect("temp dir");
    let host = registry.host();
    let images = runtime.block_on(prepare(folder.path(), &host));

    let info = folder.path().join("image-info.json");
    let (first, first_requests) = create_manifest(folder.path(), &info, &host);
    let (rerun, rerun_requests) = create_manifest(folder.path(), &info, &host);
    let children = IMAGES * PLATFORMS.len();
    let minimum_known = IMAGES * SHARED_TAGS;
    let minimum_reading = minimum_known + 2 * children;

    println!(
        "create-manifest: {IMAGES} images x {} platforms, {SHARED_TAGS} shared tags each",
        PLATFORMS.len()
    );
    println!(
        "  imagepipe create-manifest   {:>8.2} s  {:>6.1} ms per index",
        first.as_secs_f64(),
        ms(first) / IMAGES as f64
    );
    println!(
        "  HTTP requests               {first_requests:>8}  {:.2} per index; minimum {minimum_known} when children are \
         known ({:.2} per index), {minimum_reading} reading each child's manifest and config",
        first_requests as f64 / IMAGES as f64,
        minimum_known as f64 / IMAGES as f64
    );
    println!(
        "  no-op re-run                {:>8.2} s  {rerun_requests} HTTP requests",
        rerun.as_secs_f64()
    );

    match buildah_sample(folder.path(), &host, &images) {
        Some(sample) => {
            let scaled = sample.mul_f64(IMAGES as f64 / BUILDAH_SAMPLE as f64);
            println!(
                "  buildah manifest (create, add x{}, push x{SHARED_TAGS}) {BUILDAH_SAMPLE} images {:.2} s, scaled to {IMAGES}: {:.2} s",
                PLATFORMS.len(),
                sample.as_secs_f64(),
                scaled.as_secs_f64()
            );
            println!(
                "  ratio buildah / imagepipe: {:.1}",
                scaled.as_secs_f64() / first.as_secs_f64()
            );
        }
        None => println!("  buildah not found: no peer figure (scripts/install-test-deps.sh)"),
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// Pushes every platform image by digest, writes the manifest and one fragment per image, runs post-build.
async fn prepare(folder: &Path, host: &str) -> Vec<Vec<TestImage>> {
    let client = Arc::new(RegistryClient::new(ClientSettings::default()).expect("client"));
    let store = RegistryStore::new(client, host);
    let mut images = Vec::new();
    let mut declared = Vec::new();
    for image in 0..IMAGES {
        let version = format!("1.{image}");
        let built: Vec<TestImage> = PLATFORMS
            .iter()
            .map(|(architecture, variant)| {
                TestImage::new("linux", architecture, *variant, &version)
            })
            .collect();
        let pushes = built
            .iter()
            .map(|platform| platform.push(&store, "bench/app", None));
        futures_util::future::join_all(pushes).await;
        let platforms: Vec<_> = PLATFORMS
            .iter()
            .map(|(architecture, variant)| {
                let mut entry = json!({"dockerfile": format!("src/{version}/{architecture}"), "os": "linux",
                    "osVersion": "bookworm", "architecture": architecture, "tags": {format!("{version}-{architecture}"): {}}});
                if let Some(variant) = variant {
                    entry["variant"] = (*variant).into();
                }
                entry
            })
            .collect();
        declared.push(json!({"productVersion": version, "sharedTags": {version.clone(): {}, format!("{version}-bookworm"): {}},
            "platforms": platforms}));
        let entries = built
            .iter()
            .zip(PLATFORMS)
            .map(|(platform, (architecture, _))| {
                let dockerfile = format!("src/{version}/{architecture}");
                platform.platform_entry(
                    "registry.example.com",
                    "bench/app",
                    &dockerfile,
                    &[&format!("{version}-{architecture}")],
                )
            })
            .collect();
        write_fragment(
            &folder.join(format!("fragments/leg-{image:03}.json")),
            "bench/app",
            entries,
        );
        images.push(built);
    }
    let manifest = json!({"registry": "registry.example.com", "repos": [{"name": "bench/app", "images": declared}]});
    std::fs::write(folder.join("manifest.json"), manifest.to_string()).expect("writes");
    Imagepipe::new()
        .args(["post-build", "--manifest"])
        .arg(folder.join("manifest.json"))
        .arg("--fragments")
        .arg(folder.join("fragments"))
        .arg("--output")
        .arg(folder.join("image-info.json"))
        .run()
        .succeeded();
    images
}

/// Runs create-manifest; returns its time and the HTTP request count it reports.
fn create_manifest(folder: &Path, info: &Path, host: &str) -> (Duration, u64) {
    let started = Instant::now();
    let ran = Imagepipe::new()
        .args(["create-manifest", "--manifest"])
        .arg(folder.join("manifest.json"))
        .arg("--image-info")
        .arg(info)
        .args(["--staging-registry", host])
        .run();
    let elapsed = started.elapsed();
    let stderr = &ran.succeeded().stderr;
    let requests = stderr
        .lines()
        .find_map(|line| {
            line.split("; ")
                .nth(1)?
                .strip_suffix(" HTTP requests")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no request count in: {stderr}"));
    (elapsed, requests)
}

/// The same indexes for the first images with `buildah manifest`: create, add each platform by digest, push
/// under each shared tag.
fn buildah_sample(folder: &Path, host: &str, images: &[Vec<TestImage>]) -> Option<Duration> {
    let buildah = common::commands::find_on_path("buildah")?;
    let storage = folder.join("buildah");
    let run = |arguments: &[&str]| {
        let output = common::tools::buildah_in(&buildah, &storage)
            .args(arguments)
            .output()
            .expect("buildah runs");
        assert!(
            output.status.success(),
            "buildah {arguments:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let started = Instant::now();
    for (index, platforms) in images.iter().take(BUILDAH_SAMPLE).enumerate() {
        let list = format!("bench-list-{index}");
        run(&["manifest", "create", &list]);
        for platform in platforms {
            run(&[
                "manifest",
                "add",
                "--tls-verify=false",
                &list,
                &format!("docker://{host}/bench/app@{}", platform.digest()),
            ]);
        }
        for tag in [
            format!("buildah-{index}"),
            format!("buildah-{index}-bookworm"),
        ] {
            run(&[
                "manifest",
                "push",
                "--tls-verify=false",
                &list,
                &format!("docker://{host}/bench/app:{tag}"),
            ]);
        }
    }
    Some(started.elapsed())
}
