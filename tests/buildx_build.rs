//! The buildx builder by contract, against a fake `docker` that records its arguments and writes buildx's
//! metadata file; and for real against a Docker engine started here (dockerd 20.10 with buildx 0.13's `docker`
//! driver), where the machine allows one.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use common::Registry;
use common::builds::{Project, on_busybox, served_config, served_manifest, target};
use common::docker_engine::DockerEngine;
use imagepipe::build::buildx::{BuildxBuilder, BuildxSettings};
use imagepipe::build::{BuildError, Built};
use imagepipe::model::reference::Digest;
use imagepipe::store::media_type;
use serde_json::json;
use tempfile::TempDir;

const REPOSITORY: &str = "staging/1/acme/app";
const STAGING: &str = "127.0.0.1:5000";

/// Each call: its arguments one a line, `DOCKER_HOST=…`, then `----`. `buildx inspect` names the driver in
/// `driver`; `buildx build` copies `metadata.json` to its `--metadata-file`, or fails when `fail` exists.
const FAKE_DOCKER: &str = r##"#!/bin/sh
here=$(dirname "$0")
{ for argument in "$@"; do printf '%s\n' "$argument"; done; echo "DOCKER_HOST=$DOCKER_HOST"; echo ----; } >>"$here/calls"
case "$1 $2" in
"buildx inspect")
    printf 'Name:   default\nDriver: %s\n\nNodes:\nName: default\n' "$(cat "$here/driver")"
    ;;
"buildx build")
    if [ -e "$here/fail" ]; then
        echo "#5 ERROR: failed to solve: the fake build failed" >&2
        exit 1
    fi
    while [ $# -gt 0 ]; do
        if [ "$1" = --metadata-file ]; then cp "$here/metadata.json" "$2"; fi
        shift
    done
    echo "#6 DONE 0.1s" >&2
    ;;
*)
    echo "unexpected: $*" >&2
    exit 2
    ;;
esac
"##;

/// A temp dir holding the fake `docker`, first on the `PATH` the builder is given.
struct FakeDocker {
    directory: TempDir,
}

impl FakeDocker {
    fn new(driver: &str) -> Self {
        let directory = tempfile::tempdir().expect("temp dir");
        let docker = directory.path().join("docker");
        std::fs::write(&docker, FAKE_DOCKER).expect("writes the fake docker");
        std::fs::set_permissions(&docker, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::write(directory.path().join("driver"), driver).expect("writes the driver");
        Self { directory }
    }

    /// buildx's metadata for a build whose result is `digest` of `media_type`.
    fn answer(&self, digest: &Digest, media_type: &str) {
        let metadata = json!({
            "buildx.build.ref": "builder/builder0/xyz",
            "containerimage.descriptor": {"mediaType": media_type, "digest": digest.as_str(), "size": 1609},
            "containerimage.digest": digest.as_str()
        });
        std::fs::write(self.path("metadata.json"), metadata.to_string()).expect("writes metadata");
    }

    fn path(&self, name: &str) -> PathBuf {
        self.directory.path().join(name)
    }

    /// The builder that finds this `docker` first on `PATH`.
    fn builder(&self) -> BuildxBuilder {
        let system = std::env::var_os("PATH").unwrap_or_default();
        let mut folders = vec![self.directory.path().to_owned()];
        folders.extend(std::env::split_paths(&system));
        let path = std::env::join_paths(folders).expect("joins PATH");
        let mut settings = BuildxSettings::locate(None, Some(&path));
        assert_eq!(settings.docker, self.path("docker"), "found on PATH");
        settings.docker_host = Some("unix:///run/fake.sock".to_owned());
        BuildxBuilder::new(settings)
    }

    /// Every call so far, as its argument list (the `DOCKER_HOST=` line last).
    fn calls(&self) -> Vec<Vec<String>> {
        let text = std::fs::read_to_string(self.path("calls")).unwrap_or_default();
        text.split_terminator("----\n")
            .map(|call| call.lines().map(str::to_owned).collect())
            .collect()
    }
}

fn arguments(build: &[String]) -> Vec<&str> {
    build.iter().map(String::as_str).collect()
}

/// What `buildx build` is given for `platform`, up to `--output`.
fn expected_start<'a>(project: &'a Project, platform: &'a str) -> Vec<String> {
    [
        "buildx",
        "build",
        "--progress=plain",
        "--platform",
        platform,
        "--file",
    ]
    .into_iter()
    .map(str::to_owned)
    .chain([
        project.dockerfile().display().to_string(),
        "--build-arg".to_owned(),
        "GREETING=hi".to_owned(),
        "--build-arg".to_owned(),
        format!("SOURCE_DATE_EPOCH={}", common::builds::TIMESTAMP),
        "--label".to_owned(),
        "org.opencontainers.image.revision=0123abc".to_owned(),
        "--output".to_owned(),
    ])
    .collect()
}

#[tokio::test]
async fn pushes_by_digest_for_each_platform_and_keeps_provenance() {
    let fake = FakeDocker::new("docker-container");
    let project = Project::new("FROM scratch\nCOPY file.txt /\n");
    let builder = fake.builder();
    let mut built = Vec::new();
    for (platform, seed) in [("linux/amd64", "a"), ("linux/arm64/v8", "b")] {
        // With attestations, each platform's result is an index of the image and its provenance.
        let index = Digest::of(seed.as_bytes());
        fake.answer(&index, media_type::OCI_INDEX);
        let result = builder
            .build(
                &project.request(platform),
                &target(STAGING, REPOSITORY, "run-1-leg"),
            )
            .await
            .unwrap_or_else(|error| panic!("{platform}: {error}"));
        assert_eq!(
            result,
            Built {
                digest: index,
                base_image_digest: None
            }
        );
        built.push(platform);
    }

    let calls = fake.calls();
    assert_eq!(
        calls.len(),
        3,
        "one inspect, then one build per platform: {calls:#?}"
    );
    assert_eq!(
        arguments(&calls[0]),
        ["buildx", "inspect", "DOCKER_HOST=unix:///run/fake.sock"]
    );
    for (call, platform) in calls[1..].iter().zip(built) {
        let mut expected = expected_start(&project, platform);
        expected.extend([
            format!("type=image,name={STAGING}/{REPOSITORY},push-by-digest=true,name-canonical=true,push=true,registry.insecure=true"),
            "--metadata-file".to_owned(),
        ]);
        assert_eq!(call[..expected.len()], expected[..], "{call:#?}");
        assert!(call[expected.len()].ends_with("metadata.json"), "{call:#?}");
        assert_eq!(
            call[expected.len() + 1..],
            [
                project.context().display().to_string(),
                "DOCKER_HOST=unix:///run/fake.sock".to_owned()
            ]
        );
        assert!(
            !call
                .iter()
                .any(|argument| argument.starts_with("--provenance")
                    || argument.starts_with("--attest")
                    || argument.starts_with("--sbom")),
            "buildx's default attestations are kept: {call:#?}"
        );
    }
}

#[tokio::test]
async fn the_docker_driver_pushes_to_the_tag() {
    let fake = FakeDocker::new("docker");
    let digest = Digest::of(b"image");
    fake.answer(&digest, media_type::DOCKER_MANIFEST);
    let project = Project::new("FROM scratch\nCOPY file.txt /\n");
    let mut secure = target("registry.example.com", REPOSITORY, "run-1-amd64");
    secure.insecure = false;
    let built = fake
        .builder()
        .build(&project.request("linux/amd64"), &secure)
        .await
        .expect("builds");
    assert_eq!(built.digest, digest);
    let calls = fake.calls();
    let build = &calls[1];
    let mut expected = expected_start(&project, "linux/amd64");
    expected.push(format!(
        "type=image,name=registry.example.com/{REPOSITORY}:run-1-amd64,push=true"
    ));
    assert_eq!(build[..expected.len()], expected[..], "{build:#?}");
    assert!(
        !build
            .iter()
            .any(|argument| argument.contains("push-by-digest")),
        "{build:#?}"
    );
}

#[tokio::test]
async fn a_build_argument_for_the_timestamp_is_not_given_twice() {
    let fake = FakeDocker::new("docker-container");
    fake.answer(&Digest::of(b"x"), media_type::OCI_INDEX);
    let project = Project::new("FROM scratch\n");
    let mut request = project.request("linux/amd64");
    request.build_args = BTreeMap::from([("SOURCE_DATE_EPOCH".to_owned(), "7".to_owned())]);
    fake.builder()
        .build(&request, &target(STAGING, REPOSITORY, "t"))
        .await
        .expect("builds");
    let build = &fake.calls()[1];
    let epochs: Vec<&String> = build
        .iter()
        .filter(|argument| argument.starts_with("SOURCE_DATE_EPOCH="))
        .collect();
    assert_eq!(epochs, ["SOURCE_DATE_EPOCH=7"]);
}

#[tokio::test]
async fn a_failed_build_reports_the_end_of_its_output() {
    let fake = FakeDocker::new("docker-container");
    std::fs::write(fake.path("fail"), "").expect("writes");
    let project = Project::new("FROM scratch\n");
    let error = fake
        .builder()
        .build(
            &project.request("linux/amd64"),
            &target(STAGING, REPOSITORY, "t"),
        )
        .await
        .expect_err("fails");
    let BuildError::ToolFailed {
        command,
        status,
        output,
    } = &error
    else {
        panic!("{error:?}");
    };
    assert!(
        command.contains(" buildx build --progress=plain "),
        "{command}"
    );
    assert_eq!(status, "exit code 1");
    assert!(output.contains("the fake build failed"), "{output}");
}

#[tokio::test]
async fn an_oci_layout_is_refused_before_docker_runs() {
    let fake = FakeDocker::new("docker-container");
    let project = Project::new("FROM scratch\n");
    let error = fake
        .builder()
        .build(
            &project.request("linux/amd64"),
            &target("oci:/tmp/staging", REPOSITORY, "t"),
        )
        .await
        .expect_err("refused");
    assert!(
        matches!(error, BuildError::UnsupportedTarget { .. }),
        "{error:?}"
    );
    assert!(error.is_invalid_input());
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn a_missing_docker_names_what_to_install() {
    let settings = BuildxSettings::locate(
        Some("/nonexistent/docker".into()),
        Some(Path::new("/usr/bin").as_os_str()),
    );
    let project = Project::new("FROM scratch\n");
    let error = BuildxBuilder::new(settings)
        .build(
            &project.request("linux/amd64"),
            &target(STAGING, REPOSITORY, "t"),
        )
        .await
        .expect_err("no docker");
    assert!(matches!(error, BuildError::ToolMissing { .. }), "{error:?}");
    assert!(
        error
            .hint()
            .is_some_and(|hint| hint.contains("IMAGEPIPE_DOCKER")),
        "{error:?}"
    );
}

/// For real, where this machine can run a Docker engine: buildx's `docker` driver builds `RUN` and `COPY` on a
/// busybox base pulled by digest from a loopback registry, and pushes to the tag.
#[tokio::test]
async fn builds_with_a_real_docker_engine() {
    let engine = match DockerEngine::start() {
        Ok(engine) => engine,
        Err(why) => {
            eprintln!(
                "\n!!!!!!!!\n!!! builds_with_a_real_docker_engine did NOT build: no Docker engine could start on \
                 this machine.\n!!! {why}\n!!! The buildx contract tests still ran.\n!!!!!!!!\n"
            );
            return;
        }
    };
    let registry = Registry::start();
    let (dockerfile, _) = on_busybox(&registry, "amd64").await;
    let project = Project::new(&dockerfile);
    let push = target(&registry.host(), REPOSITORY, "run-1-amd64");
    let builder = BuildxBuilder::new(BuildxSettings {
        docker: common::tools::docker(),
        docker_host: Some(engine.host()),
        docker_config: Some(engine.docker_config()),
        // The engine has no bridge network (`--bridge=none`): RUN needs `none`.
        network: Some("none".to_owned()),
    });
    let built = builder
        .build(&project.request("linux/amd64"), &push)
        .await
        .unwrap_or_else(|error| {
            panic!("{error}\nthe engine's log:\n{}", engine.log());
        });

    let reference = format!("{}/{REPOSITORY}:run-1-amd64", registry.host());
    assert_eq!(
        Digest::of(&served_manifest(&reference)),
        built.digest,
        "the digest from buildx's metadata is the one served under the tag"
    );
    let config = served_config(&reference);
    assert_eq!(config["architecture"], "amd64", "{config}");
    assert_eq!(
        config["config"]["Labels"]["org.opencontainers.image.revision"], "0123abc",
        "{config}"
    );
    let history = config["history"].to_string();
    assert!(
        history.contains("echo"),
        "the RUN is in the history: {history}"
    );
}
