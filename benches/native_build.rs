//! Benchmark: 50 COPY-only Dockerfiles (`FROM scratch`, three `COPY`s of 12 files, about 450 KB each) built and
//! pushed to one real registry by the native builder, and by `buildah build` + `buildah push` (vfs storage,
//! chroot isolation, private `--root`/`--runroot`) in the same run. Both work one image at a time; the native
//! builder also re-runs once more, when the registry already has every blob.
//!
//! Run: `cargo bench --bench native_build` (needs `scripts/install-test-deps.sh`). Prints figures only.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use imagepipe::build::native::NativeBuilder;
use imagepipe::build::{BuildRequest, PushTarget};
use imagepipe::store::Location;
use imagepipe::store::registry::{ClientSettings, RegistryClient};

const IMAGES: usize = 50;
const SMALL_FILES: usize = 10;
const SMALL_FILE_BYTES: usize = 16 * 1024;
const LARGE_FILE_BYTES: usize = 256 * 1024;
/// 2026-01-01T00:00:00Z.
const TIMESTAMP: u64 = 1_767_225_600;
const DOCKERFILE: &str = "FROM scratch\n\
    COPY app/ /opt/app/\n\
    COPY data.bin /opt/app/data/\n\
    COPY settings.json /etc/app/settings.json\n\
    ENV APP_HOME=/opt/app\n\
    ENTRYPOINT [\"/opt/app/file-0\"]\n";

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let registry = common::Registry::start();
    let host = registry.host();
    let folder = tempfile::tempdir().expect("temp dir");
    let contexts: Vec<PathBuf> = (0..IMAGES)
        .map(|image| write_context(folder.path(), image))
        .collect();
    let megabytes = contexts
        .iter()
        .map(|context| folder_bytes(context))
        .sum::<u64>() as f64
        / 1e6;

    let client = Arc::new(RegistryClient::new(ClientSettings::default()).expect("client"));
    let (native, digests) = runtime.block_on(native_builds(&contexts, &host, &client, "first"));
    let (rerun, again) = runtime.block_on(native_builds(&contexts, &host, &client, "rerun"));
    assert_eq!(digests, again, "the same inputs gave other digests");
    let buildah = buildah_builds(folder.path(), &contexts, &host);

    println!(
        "native build: {IMAGES} COPY-only Dockerfiles (3 COPY, {} files, {megabytes:.1} MB in all), pushed to one registry",
        SMALL_FILES + 2
    );
    println!(
        "  native builder              {:>8.2} s  {:>7.1} ms per image",
        native.as_secs_f64(),
        ms(native) / IMAGES as f64
    );
    println!(
        "  native, blobs present       {:>8.2} s  {:>7.1} ms per image (same {IMAGES} digests)",
        rerun.as_secs_f64(),
        ms(rerun) / IMAGES as f64
    );
    println!(
        "  buildah build + push        {:>8.2} s  {:>7.1} ms per image",
        buildah.as_secs_f64(),
        ms(buildah) / IMAGES as f64
    );
    println!(
        "  ratio buildah / native: {:.1}",
        buildah.as_secs_f64() / native.as_secs_f64()
    );
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// A context of its own for image `image`: the Dockerfile, `app/` with small files, a larger `data.bin` and a
/// settings file, contents varying by image so no two layers are equal.
fn write_context(root: &Path, image: usize) -> PathBuf {
    let context = root.join(format!("image-{image:02}"));
    std::fs::create_dir_all(context.join("app")).expect("creates");
    std::fs::write(context.join("Dockerfile"), DOCKERFILE).expect("writes");
    let mut random = fastrand::Rng::with_seed(image as u64);
    let mut bytes =
        |length: usize| -> Vec<u8> { (0..length).map(|_| random.alphanumeric() as u8).collect() };
    for file in 0..SMALL_FILES {
        std::fs::write(
            context.join(format!("app/file-{file}")),
            bytes(SMALL_FILE_BYTES),
        )
        .expect("writes");
    }
    std::fs::write(context.join("data.bin"), bytes(LARGE_FILE_BYTES)).expect("writes");
    std::fs::write(
        context.join("settings.json"),
        format!("{{\"image\": {image}}}\n"),
    )
    .expect("writes");
    context
}

fn folder_bytes(folder: &Path) -> u64 {
    std::fs::read_dir(folder)
        .expect("lists")
        .map(|entry| {
            let entry = entry.expect("entry");
            let metadata = entry.metadata().expect("metadata");
            if metadata.is_dir() {
                folder_bytes(&entry.path())
            } else {
                metadata.len()
            }
        })
        .sum()
}

/// Builds every context with the native builder, one after the other; returns the time and the digests.
async fn native_builds(
    contexts: &[PathBuf],
    host: &str,
    client: &Arc<RegistryClient>,
    run: &str,
) -> (Duration, Vec<String>) {
    let started = Instant::now();
    let mut digests = Vec::new();
    for (image, context) in contexts.iter().enumerate() {
        let request = BuildRequest {
            context: context.clone(),
            dockerfile: context.join("Dockerfile"),
            declared_dockerfile: context.join("Dockerfile"),
            platform: "linux/amd64".parse().expect("platform"),
            build_args: BTreeMap::new(),
            labels: BTreeMap::new(),
            timestamp: TIMESTAMP,
            staged_bases: BTreeMap::new(),
        };
        let target = PushTarget {
            location: Location::Registry(host.to_owned()),
            repository: format!("bench/native-{image:02}"),
            tag: format!("{run}-{image:02}"),
            insecure: true,
            client: client.clone(),
        };
        let built = NativeBuilder
            .build(&request, &target)
            .await
            .unwrap_or_else(|error| panic!("image {image}: {error}"));
        digests.push(built.digest.to_string());
    }
    (started.elapsed(), digests)
}

/// `buildah build` then `buildah push` of every context, one after the other, to the same registry.
fn buildah_builds(folder: &Path, contexts: &[PathBuf], host: &str) -> Duration {
    let buildah = common::tools::buildah();
    let storage = tempfile::tempdir_in(folder).expect("buildah storage");
    let run = |arguments: &[&str]| {
        common::commands::run(common::tools::buildah_in(&buildah, storage.path()).args(arguments));
    };
    let timestamp = TIMESTAMP.to_string();
    let started = Instant::now();
    for (image, context) in contexts.iter().enumerate() {
        let local = format!("localhost/bench/buildah-{image:02}:latest");
        let context_text = context.to_string_lossy();
        run(&[
            "build",
            "--quiet",
            "--timestamp",
            &timestamp,
            "--tag",
            &local,
            &context_text,
        ]);
        let digest_file = context.join("buildah.digest");
        run(&[
            "push",
            "--quiet",
            "--tls-verify=false",
            "--digestfile",
            &digest_file.to_string_lossy(),
            &local,
            &format!("docker://{host}/bench/buildah-{image:02}:first-{image:02}"),
        ]);
    }
    started.elapsed()
}
