//! Benchmark: `imagepipe sign` of 500 digests on a real registry, its no-op re-run, and `cosign sign --key` on
//! the same registry in the same run: one run per digest (measured on a sample, scaled) and one run given all
//! references at once.
//!
//! Run: `cargo bench --bench sign` (needs `scripts/install-test-deps.sh`). Prints figures only.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Imagepipe;
use common::images::TestImage;
use imagepipe::store::registry::{ClientSettings, RegistryClient, RegistryStore};
use serde_json::json;

const DIGESTS: usize = 500;
/// `cosign sign` runs timed one digest each; scaled to all digests.
const COSIGN_SAMPLE: usize = 25;
const PASSWORD: &str = "bench";

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let registry = common::Registry::start();
    let folder = tempfile::tempdir().expect("temp dir");
    let host = registry.host();
    let ours = runtime.block_on(push_images(&host, "bench/ours", 0));
    let theirs = runtime.block_on(push_images(&host, "bench/theirs", 1));
    write_image_info(folder.path(), &host, "bench/ours", &ours);

    let imagepipe = |arguments: &[&str]| {
        let ran = Imagepipe::new()
            .args(arguments)
            .env("COSIGN_PASSWORD", PASSWORD)
            .run();
        ran.succeeded();
        ran.stderr
    };
    let key = folder.path().join("bench");
    imagepipe(&[
        "generate-key",
        "--output-prefix",
        &key.display().to_string(),
    ]);
    let private_key = key.with_extension("key").display().to_string();
    let info = folder.path().join("image-info.json").display().to_string();
    let sign = [
        "sign",
        "--image-info",
        &info,
        "--key",
        &private_key,
        "--staging-registry",
        &host,
    ];

    let started = Instant::now();
    let log = imagepipe(&sign);
    let first = started.elapsed();
    let requests = request_count(&log);
    let started = Instant::now();
    let log = imagepipe(&sign);
    let rerun = started.elapsed();
    let rerun_requests = request_count(&log);

    let cosign = common::tools::cosign();
    let cosign_run = |references: &[String]| {
        let started = Instant::now();
        let output = Command::new(&cosign)
            .args([
                "sign",
                "--key",
                &private_key,
                "--tlog-upload=false",
                "--allow-http-registry",
                "--yes",
            ])
            .args(references)
            .env("COSIGN_PASSWORD", PASSWORD)
            .output()
            .expect("cosign runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        started.elapsed()
    };
    let references: Vec<String> = theirs
        .iter()
        .map(|image| format!("{host}/bench/theirs@{}", image.digest()))
        .collect();
    let sample: Duration = references[..COSIGN_SAMPLE]
        .iter()
        .map(|reference| cosign_run(std::slice::from_ref(reference)))
        .sum();
    let per_digest = sample / COSIGN_SAMPLE as u32;
    let scaled = per_digest * DIGESTS as u32;
    let all_at_once = cosign_run(&references[COSIGN_SAMPLE..]);
    let all_at_once_scaled = all_at_once.mul_f64(DIGESTS as f64 / (DIGESTS - COSIGN_SAMPLE) as f64);

    println!("sign: {DIGESTS} digests, one key, tag storage, same registry");
    println!(
        "  imagepipe sign                    {:>7.2} s  {requests} HTTP requests ({:.1} per digest)",
        first.as_secs_f64(),
        requests as f64 / DIGESTS as f64
    );
    println!(
        "  imagepipe sign, re-run (no-op)    {:>7.2} s  {rerun_requests} HTTP requests",
        rerun.as_secs_f64()
    );
    println!(
        "  cosign sign, one run per digest   {:>7.2} s  ({COSIGN_SAMPLE} runs measured, {:.0} ms each)",
        scaled.as_secs_f64(),
        per_digest.as_secs_f64() * 1e3
    );
    println!(
        "  cosign sign, all references in one run {:>7.2} s  ({} references measured, scaled)",
        all_at_once_scaled.as_secs_f64(),
        DIGESTS - COSIGN_SAMPLE
    );
    println!(
        "  ratio cosign per-digest runs / imagepipe: {:.1}",
        scaled.as_secs_f64() / first.as_secs_f64()
    );
    println!(
        "  ratio cosign one run / imagepipe:          {:.1}",
        all_at_once_scaled.as_secs_f64() / first.as_secs_f64()
    );
}

fn request_count(log: &str) -> u64 {
    log.lines()
        .find_map(|line| {
            line.split("; ")
                .nth(1)?
                .strip_suffix(" HTTP requests")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no request count in: {log}"))
}

async fn push_images(host: &str, repository: &str, seed: usize) -> Vec<TestImage> {
    let client = Arc::new(RegistryClient::new(ClientSettings::default()).expect("client"));
    let store = RegistryStore::new(client, host);
    let images: Vec<TestImage> = (0..DIGESTS)
        .map(|index| TestImage::new("linux", "amd64", None, &format!("{seed}-{index}")))
        .collect();
    for chunk in images.chunks(50) {
        futures_util::future::join_all(
            chunk
                .iter()
                .map(|image| image.push(&store, repository, None)),
        )
        .await;
    }
    images
}

/// An image-info as create-manifest leaves it: one image per digest (no shared tags, so no index), and a
/// ledger that lets sign run.
fn write_image_info(folder: &Path, host: &str, repository: &str, images: &[TestImage]) {
    let images: Vec<_> = images
        .iter()
        .enumerate()
        .map(|(index, image)| {
            json!({"platforms": [{"dockerfile": format!("src/{index}"), "digest": format!("{host}/{repository}@{}", image.digest()),
                "osType": "Linux", "osVersion": "bookworm", "architecture": "amd64"}]})
        })
        .collect();
    let stages = ["post-build", "create-manifest"]
        .map(|stage| json!({"stage": stage, "completed": "2026-11-29T00:00:00Z", "tool": "bench"}));
    let info = json!({"schemaVersion": "2.0", "repos": [{"repo": repository, "images": images}], "pipeline": {"stages": stages}});
    std::fs::write(folder.join("image-info.json"), info.to_string()).expect("writes");
}
