//! Benchmark: the structure of the real dotnet-docker manifest (7 repos, 262 images, 601 platforms) with tiny
//! images on two real registries: every stage after the build, each re-run counted in write requests, then a
//! partial release that rebuilds the `8.0` Dockerfiles and carries the rest over from the published record.
//!
//! Run: `cargo bench --bench real_manifest` (needs `scripts/install-test-deps.sh` and `../shared/data`).
//! Prints figures only.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use common::Imagepipe;
use common::proxy::FaultProxy;
use common::real_manifest::{build, copy_manifest};
use imagepipe::model::manifest::Manifest;
use serde_json::Value;

const PASSWORD: &str = "bench password";
/// The partial release rebuilds the amd64 Dockerfiles under an `8.0` folder; their images take the other
/// platforms from the public registry.
const REBUILT: &str = "/8.0/";

fn main() {
    let Some(data) = common::shared_data() else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let staging = common::Registry::start();
    let public = common::Registry::start();
    let staging_proxy = FaultProxy::start(&staging.host(), "", Vec::new());
    let public_proxy = FaultProxy::start(&public.host(), "", Vec::new());
    let folder = tempfile::tempdir().expect("temp dir");
    let work = folder.path();
    let manifest_file = copy_manifest(
        &data.join("dotnet/dotnet-docker"),
        work,
        &public_proxy.host(),
    );
    let manifest =
        imagepipe::inputs::load_manifest(&manifest_file, &BTreeMap::new()).expect("loads");
    let key = common::stages::generate_key(&work.join("cosign"), PASSWORD);
    let bench = Bench {
        manifest: &manifest_file,
        staging: staging_proxy.host(),
        key: &key,
    };

    let built = runtime.block_on(build(&manifest, &staging.host(), "", "full", work, |_| {
        true
    }));
    let info = bench.post_build(work, "full", "full");
    println!(
        "real manifest structure: {} images, {built} platform images pushed to staging",
        count_images(&manifest)
    );
    let row = |name: &str, proxy: &FaultProxy, stage: Imagepipe| {
        let before = proxy.requests().len();
        let started = Instant::now();
        let ran = stage.env("COSIGN_PASSWORD", PASSWORD).run();
        let elapsed = started.elapsed();
        ran.succeeded();
        let requests = &proxy.requests()[before..];
        let writes = requests
            .iter()
            .filter(|request| {
                matches!(request.method.as_str(), "PUT" | "POST" | "PATCH" | "DELETE")
            })
            .count();
        println!(
            "  {name:<44} {:>7.2} s  {:>6} requests  {:>5} writes",
            elapsed.as_secs_f64(),
            requests.len(),
            writes
        );
    };
    row(
        "create-manifest",
        &staging_proxy,
        bench.create_manifest(&info, None),
    );
    row(
        "create-manifest again",
        &staging_proxy,
        bench.create_manifest(&info, None),
    );
    row("sign", &staging_proxy, bench.sign(&info));
    row(
        "create-manifest after sign",
        &staging_proxy,
        bench.create_manifest(&info, None),
    );
    let again = bench.post_build(work, "full", "full-again");
    row(
        "create-manifest after a new post-build",
        &staging_proxy,
        bench.create_manifest(&again, None),
    );
    let published = work.join("published-image-info.json");
    row(
        "publish",
        &public_proxy,
        bench.publish(&info, "", &published, None),
    );
    row(
        "publish again",
        &public_proxy,
        bench.publish(&info, "", &published, None),
    );

    let rebuilt = runtime.block_on(build(
        &manifest,
        &staging.host(),
        "staging/partial/",
        "partial",
        work,
        |entry| entry.dockerfile.contains(REBUILT) && entry.architecture() == "amd64",
    ));
    let partial = bench.post_build(work, "partial", "partial");
    println!(
        "partial release: {rebuilt} platform images rebuilt (amd64 Dockerfiles under `{REBUILT}`)"
    );
    let prefix = "staging/partial";
    row(
        "create-manifest --published-image-info",
        &staging_proxy,
        bench
            .create_manifest(&partial, Some(&published))
            .args(["--staging-prefix", prefix]),
    );
    let imported = common::read_json(&partial)["repos"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|repo| repo["images"].as_array().cloned().unwrap_or_default())
        .flat_map(|image| image["platforms"].as_array().cloned().unwrap_or_default())
        .filter(|platform| platform["isUnchanged"] == true)
        .count();
    println!("  {imported} platforms not rebuilt were imported with their published records");
    row(
        "sign",
        &staging_proxy,
        bench.sign(&partial).args(["--staging-prefix", prefix]),
    );
    let final_info = work.join("final-image-info.json");
    row(
        "publish --published-image-info",
        &public_proxy,
        bench.publish(&partial, prefix, &final_info, Some(&published)),
    );
    let (before, after) = (
        common::read_json(&published),
        common::read_json(&final_info),
    );
    let (kept, total) = carried_over(&before, &after);
    println!(
        "  final image-info: {} images (published: {}); {kept} of {total} published platform records kept byte for byte",
        images_in(&after),
        images_in(&before)
    );
}

/// The stages as this benchmark runs them.
struct Bench<'a> {
    manifest: &'a Path,
    staging: String,
    key: &'a Path,
}

impl Bench<'_> {
    /// post-build of the fragments of build `built`, into `<output>/image-info.json`.
    fn post_build(&self, work: &Path, built: &str, output: &str) -> PathBuf {
        common::stages::post_build(
            self.manifest,
            &work.join(format!("{built}/fragments")),
            &work.join(format!("{output}/image-info.json")),
        )
    }

    fn create_manifest(&self, info: &Path, published: Option<&Path>) -> Imagepipe {
        let stage = common::stages::create_manifest(self.manifest, info, &self.staging);
        match published {
            Some(file) => stage.arg("--published-image-info").arg(file),
            None => stage,
        }
    }

    fn sign(&self, info: &Path) -> Imagepipe {
        Imagepipe::new()
            .arg("sign")
            .arg("--image-info")
            .arg(info)
            .arg("--key")
            .arg(self.key)
            .args(["--staging-registry", &self.staging])
    }

    fn publish(
        &self,
        info: &Path,
        prefix: &str,
        output: &Path,
        published: Option<&Path>,
    ) -> Imagepipe {
        let mut stage = Imagepipe::new()
            .arg("publish")
            .arg("--image-info")
            .arg(info)
            .args(["--staging-registry", &self.staging])
            .arg("--output")
            .arg(output);
        if !prefix.is_empty() {
            stage = stage.args(["--staging-prefix", prefix]);
        }
        match published {
            Some(file) => stage
                .arg("--published-image-info")
                .arg(file)
                .arg("--manifest")
                .arg(self.manifest),
            None => stage,
        }
    }
}

fn count_images(manifest: &Manifest) -> usize {
    manifest.repos.iter().map(|repo| repo.images.len()).sum()
}

fn images_in(info: &Value) -> usize {
    info["repos"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|repo| repo["images"].as_array().map_or(0, Vec::len))
        .sum()
}

/// How many platform records of `before` appear unchanged in `after`.
fn carried_over(before: &Value, after: &Value) -> (usize, usize) {
    let records = |info: &Value| -> Vec<String> {
        info["repos"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|repo| repo["images"].as_array().cloned().unwrap_or_default())
            .flat_map(|image| image["platforms"].as_array().cloned().unwrap_or_default())
            .map(|platform| platform.to_string())
            .collect()
    };
    let after: BTreeSet<String> = records(after).into_iter().collect();
    let before = records(before);
    let kept = before
        .iter()
        .filter(|record| after.contains(*record))
        .count();
    (kept, before.len())
}
