//! The buildah builder for real: `RUN` and `COPY` on a busybox base pulled by digest from an insecure loopback
//! registry, for amd64 and for arm64 (through qemu-user-static and binfmt), pushed to a tag; the digest it
//! returns is the one the registry serves, checked with skopeo.

mod common;

use std::path::PathBuf;

use common::Registry;
use common::builds::{
    BASE_REPOSITORY, CREATED, Project, on_busybox, served_config, served_manifest, target,
};
use imagepipe::build::buildah::{BuildahBuilder, BuildahSettings};
use imagepipe::build::{BuildError, Built};
use imagepipe::model::reference::Digest;
use imagepipe::store::layout::LayoutStore;
use imagepipe::store::{ManifestReference, Store};
use serde_json::Value;

const REPOSITORY: &str = "staging/1/acme/app";

fn builder() -> BuildahBuilder {
    BuildahBuilder::new(BuildahSettings {
        program: common::tools::buildah(),
        storage_parent: None,
        docker_config: None,
    })
    .expect("buildah builder")
}

/// Checks what the registry serves under `tag` against what the builder returned.
fn assert_served(registry: &Registry, tag: &str, built: &Built, architecture: &str) -> Value {
    let reference = format!("{}/{REPOSITORY}:{tag}", registry.host());
    let manifest = served_manifest(&reference);
    assert_eq!(
        Digest::of(&manifest),
        built.digest,
        "the digest returned is not the one served under `{tag}`"
    );
    let manifest: Value = serde_json::from_slice(&manifest).expect("manifest JSON");
    // Without `--layers`, buildah commits every instruction of the Dockerfile into one layer.
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 2, "busybox, then RUN and COPY: {manifest}");
    let layer = layers[1]["digest"].as_str().expect("layer digest");
    assert_eq!(
        read_from_layer(&reference, layer, "hello"),
        "hi\n",
        "RUN ran, with the build argument"
    );
    assert_eq!(
        read_from_layer(&reference, layer, common::builds::COPIED),
        "copied\n"
    );
    let config = served_config(&reference);
    assert_eq!(config["architecture"], architecture, "{config}");
    assert_eq!(config["os"], "linux");
    assert_eq!(config["created"], CREATED, "--timestamp: {config}");
    assert_eq!(
        config["config"]["Labels"]["org.opencontainers.image.revision"], "0123abc",
        "{config}"
    );
    config
}

/// The file `name` of layer `digest` (gzip) of the image at `reference`.
fn read_from_layer(reference: &str, digest: &str, name: &str) -> String {
    let copy = tempfile::tempdir().expect("temp dir");
    common::commands::run(
        std::process::Command::new(common::tools::skopeo())
            .args(["copy", "--src-tls-verify=false"])
            .arg(format!("docker://{reference}"))
            .arg(format!("dir:{}", copy.path().display())),
    );
    let blob = copy.path().join(digest.trim_start_matches("sha256:"));
    let output = common::commands::run(
        std::process::Command::new("tar")
            .arg("-xzOf")
            .arg(&blob)
            .arg(name),
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn builds_amd64_and_arm64_with_run_on_a_base_pulled_by_digest() {
    let registry = Registry::start();
    let builder = builder();
    let mut legs = Vec::new();
    for architecture in ["amd64", "arm64"] {
        let (dockerfile, base) = on_busybox(&registry, architecture).await;
        legs.push((architecture, Project::new(&dockerfile), base));
    }

    // Both legs at once in one storage, as the build stage runs them.
    let builds = legs.iter().map(|(architecture, project, _)| {
        let target = target(
            &registry.host(),
            REPOSITORY,
            &format!("run-1-{architecture}"),
        );
        let request = project.request(&format!("linux/{architecture}"));
        let builder = &builder;
        async move { builder.build(&request, &target).await }
    });
    let results = futures_util::future::join_all(builds).await;

    for ((architecture, _, base), result) in legs.iter().zip(results) {
        let built = result.unwrap_or_else(|error| panic!("building {architecture}: {error}"));
        assert_served(
            &registry,
            &format!("run-1-{architecture}"),
            &built,
            architecture,
        );
        assert_eq!(
            built.base_image_digest,
            Some(format!("{}/{BASE_REPOSITORY}@{base}", registry.host())),
            "{architecture}"
        );
    }
}

#[tokio::test]
async fn equal_inputs_give_equal_digests() {
    let registry = Registry::start();
    let (dockerfile, _) = on_busybox(&registry, "amd64").await;
    let project = Project::new(&dockerfile);
    let builder = builder();
    let request = project.request("linux/amd64");
    let first = builder
        .build(
            &request,
            &target(&registry.host(), REPOSITORY, "run-1-amd64"),
        )
        .await
        .expect("first build");
    let second = builder
        .build(
            &request,
            &target(&registry.host(), REPOSITORY, "run-2-amd64"),
        )
        .await
        .expect("second build");
    assert_eq!(first, second);
    let config = assert_served(&registry, "run-2-amd64", &second, "amd64");
    let history = config["history"].to_string();
    assert!(
        history.contains("echo"),
        "the RUN is in the history: {history}"
    );
}

#[tokio::test]
async fn pushes_to_an_oci_layout_under_the_tag() {
    let registry = Registry::start();
    let (dockerfile, _) = on_busybox(&registry, "amd64").await;
    let project = Project::new(&dockerfile);
    let staging = tempfile::tempdir().expect("temp dir");
    let location = format!("oci:{}", staging.path().display());
    let built = builder()
        .build(
            &project.request("linux/amd64"),
            &target(&location, REPOSITORY, "run-1-amd64"),
        )
        .await
        .expect("builds");
    let layout = LayoutStore::new(staging.path().to_owned());
    let tagged = layout
        .head_manifest(REPOSITORY, ManifestReference::Tag("run-1-amd64"))
        .await
        .expect("reads the layout")
        .expect("the tag is in the layout");
    assert_eq!(tagged.digest().to_string(), built.digest.as_str());
}

#[tokio::test]
async fn a_failing_run_reports_the_end_of_the_output() {
    let registry = Registry::start();
    let (dockerfile, _) = on_busybox(&registry, "amd64").await;
    let project = Project::new(&format!(
        "{dockerfile}RUN echo the step that fails >&2 && exit 7\n"
    ));
    let error = builder()
        .build(
            &project.request("linux/amd64"),
            &target(&registry.host(), REPOSITORY, "run-1-amd64"),
        )
        .await
        .expect_err("the RUN exits with 7");
    let BuildError::ToolFailed {
        command, output, ..
    } = &error
    else {
        panic!("{error:?}");
    };
    assert!(
        command.contains(" build --platform linux/amd64 "),
        "{command}"
    );
    assert!(output.contains("the step that fails"), "{output}");
    let tags = std::process::Command::new(common::tools::skopeo())
        .args(["list-tags", "--tls-verify=false"])
        .arg(format!("docker://{}/{REPOSITORY}", registry.host()))
        .output()
        .expect("skopeo runs");
    assert!(
        !String::from_utf8_lossy(&tags.stdout).contains("run-1-amd64"),
        "nothing was pushed"
    );
}

#[tokio::test]
async fn a_missing_buildah_names_what_to_install() {
    let builder = BuildahBuilder::new(BuildahSettings {
        program: PathBuf::from("/nonexistent/buildah"),
        storage_parent: None,
        docker_config: None,
    })
    .expect("builder");
    let project = Project::new("FROM scratch\nCOPY file.txt /\n");
    let error = builder
        .build(
            &project.request("linux/amd64"),
            &target("127.0.0.1:1", REPOSITORY, "run-1-amd64"),
        )
        .await
        .expect_err("no buildah");
    assert!(matches!(error, BuildError::ToolMissing { .. }), "{error:?}");
    let hint = error.hint().expect("a hint");
    assert!(hint.contains("scripts/install-test-deps.sh"), "{hint}");
}
