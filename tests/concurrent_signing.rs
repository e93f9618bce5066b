//! Two `imagepipe sign` runs with different keys at once on the same staging (two pipelines, or a re-run that
//! overlaps the first): each adds its signature to the same `.sig` tags, and neither may lose the other's.
//! Issue #8 item 9.
//!
//! The guarantee is checked, not the timing: whatever the interleaving on a loaded machine, a signer that exits
//! 0 has its signature on every digest when both have finished, which our `verify` (every digest, each key) and
//! the real `cosign verify --key` (a sample) confirm.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use common::images::{TestImage, write_fragment};
use common::{Imagepipe, Registry, path, stages};
use imagepipe::model::reference::Digest;
use imagepipe::store::registry::{ClientSettings, RegistryClient, RegistryStore};
use serde_json::json;

const REPOSITORY: &str = "acme/many";
const PASSWORD: &str = "concurrent-31";
/// Enough digests that, on the code before the fix, the two signers overwrote each other's `.sig` tag on
/// some of them in most runs.
const DIGESTS: usize = 120;
/// Digests checked with cosign as well (each `cosign verify` takes about a second).
const COSIGN_SAMPLE: usize = 4;

#[tokio::test]
async fn concurrent_signers_with_different_keys_keep_each_others_signatures() {
    let staging = Registry::start();
    let folder = tempfile::tempdir().expect("temp dir");
    let folder = folder.path();
    let host = staging.host();
    let digests = push_images(&host).await;
    let info = signable_image_info(folder, &host, &digests);
    let keys = ["first", "second"].map(|name| key_pair(folder, name));

    // Both start together, each writing its own image-info, as two CI jobs would.
    let signers: Vec<_> = keys
        .iter()
        .enumerate()
        .map(|(index, (private_key, _))| {
            let output = folder.join(format!("signed-{index}.json"));
            let child = Imagepipe::new()
                .args(["sign", "--image-info", &path(&info), "--output"])
                .arg(&output)
                .args(["--key", &path(private_key), "--staging-registry", &host])
                .env("COSIGN_PASSWORD", PASSWORD)
                .command()
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("the binary starts");
            (child, output)
        })
        .collect();
    let finished: Vec<_> = signers
        .into_iter()
        .map(|(child, output)| (child.wait_with_output().expect("waits"), output))
        .collect();
    for (index, (ran, _)) in finished.iter().enumerate() {
        let stderr = String::from_utf8_lossy(&ran.stderr);
        // A signer may fail (exit 1, naming the digest) if it cannot get its signature to stick; it may never
        // claim success with a digest unsigned. With two signers it always gets there.
        assert_eq!(ran.status.code(), Some(0), "signer {index}: {stderr}");
        assert!(
            stderr.contains(&format!("{DIGESTS} new, 0 already signed")),
            "signer {index}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "signer {index}: {stderr}");
    }

    for ((_, output), (_, public_key)) in finished.iter().zip(&keys) {
        let report = Imagepipe::new()
            .args(["verify", "--image-info", &path(output), "--key"])
            .arg(public_key)
            .args(["--staging-registry", &host])
            .run();
        let lacking = report.stdout.matches("✗").count();
        assert_eq!(
            report.code,
            Some(0),
            "the signer with `{}` exited 0, yet {lacking} of {DIGESTS} digests lack its signature",
            public_key.display(),
        );
        assert_eq!(report.stdout, "", "a passing verify prints no report");
        assert!(
            report
                .stderr
                .contains(&format!(": {DIGESTS} signed, 0 failing")),
            "{}",
            report.stderr
        );
    }

    // The real cosign finds both signatures too, on the first digests (signed while both ran) and the last.
    let sample = digests[..COSIGN_SAMPLE / 2]
        .iter()
        .chain(&digests[DIGESTS - COSIGN_SAMPLE / 2..]);
    for digest in sample {
        let reference = format!("{host}/{REPOSITORY}@{digest}");
        for (_, public_key) in &keys {
            let verified = Command::new(common::tools::cosign())
                .args(["verify", "--key"])
                .arg(public_key)
                .args([
                    "--insecure-ignore-tlog=true",
                    "--allow-http-registry",
                    &reference,
                ])
                .env("HOME", folder)
                .output()
                .expect("cosign runs");
            assert!(
                verified.status.success(),
                "cosign verify --key {} {reference}: {}",
                public_key.display(),
                String::from_utf8_lossy(&verified.stderr)
            );
        }
    }
}

/// Pushes `DIGESTS` small images by digest, as build legs do, and returns their digests.
async fn push_images(host: &str) -> Vec<Digest> {
    let client = Arc::new(RegistryClient::new(ClientSettings::default()).expect("client"));
    let store = RegistryStore::new(client, host);
    let images: Vec<TestImage> = (0..DIGESTS)
        .map(|index| TestImage::new("linux", "amd64", None, &format!("concurrent-{index}")))
        .collect();
    for chunk in images.chunks(30) {
        futures_util::future::join_all(
            chunk
                .iter()
                .map(|image| image.push(&store, REPOSITORY, None)),
        )
        .await;
    }
    images.iter().map(TestImage::digest).collect()
}

/// Runs post-build and create-manifest on a manifest of one image per digest (no shared tags, so no index),
/// with staging as the public registry; returns the image-info sign reads.
fn signable_image_info(folder: &Path, host: &str, digests: &[Digest]) -> PathBuf {
    let images: Vec<_> = (0..digests.len())
        .map(|index| {
            json!({"platforms": [{"dockerfile": format!("src/{index}"), "os": "linux", "osVersion": "bookworm",
                "tags": {format!("{index}"): {}}}]})
        })
        .collect();
    let manifest = folder.join("manifest.json");
    let declaration = json!({"registry": host, "repos": [{"name": REPOSITORY, "images": images}]});
    std::fs::write(&manifest, declaration.to_string()).expect("writes");
    let fragments = folder.join("fragments");
    for (index, digest) in digests.iter().enumerate() {
        let entry = json!({
            "dockerfile": format!("src/{index}"),
            "simpleTags": [format!("{index}")],
            "digest": format!("{host}/{REPOSITORY}@{digest}"),
            "osType": "linux",
            "osVersion": "bookworm",
            "architecture": "amd64",
        });
        write_fragment(
            &fragments.join(format!("leg-{index}.json")),
            REPOSITORY,
            vec![entry],
        );
    }
    let info = stages::post_build(&manifest, &fragments, &folder.join("image-info.json"));
    stages::create_manifest(&manifest, &info, host)
        .run()
        .succeeded();
    info
}

/// `imagepipe generate-key` into `folder`: (private, public) paths.
fn key_pair(folder: &Path, name: &str) -> (PathBuf, PathBuf) {
    let prefix = folder.join(name);
    Imagepipe::new()
        .args(["generate-key", "--output-prefix", &path(&prefix)])
        .env("COSIGN_PASSWORD", PASSWORD)
        .run()
        .succeeded();
    (prefix.with_extension("key"), prefix.with_extension("pub"))
}
