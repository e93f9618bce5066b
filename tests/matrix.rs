//! `imagepipe matrix`: legs from a manifest and its Dockerfiles as GitHub and Azure matrices, filters, the step
//! outputs, and the cache against a published image-info whose base images are in a real registry.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::images::TestImage;
use common::{Imagepipe, Ran, Registry, error_lines};
use imagepipe::build::context::context_digest;
use imagepipe::model::reference::Digest;
use imagepipe::store::registry::{ClientSettings, RegistryClient, RegistryStore};
use serde_json::{Value, json};

/// Where the images from elsewhere that `acme/base` is built from live, in the test's registry.
const UPSTREAM: &str = "upstream/debian";
const UPSTREAM_TAG: &str = "bookworm";

/// `(folder name, architecture, variant)` of the three platforms.
const PLATFORMS: [(&str, &str, Option<&str>); 3] = [
    ("amd64", "amd64", None),
    ("arm64v8", "arm64", Some("v8")),
    ("arm32v7", "arm", Some("v7")),
];

/// A manifest in a temp folder with its Dockerfiles: `acme/base` for three platforms, built from
/// `{registry}/upstream/debian:bookworm`, and `acme/app` built from it (by the platform's tag on amd64, by the
/// shared tag elsewhere).
struct Scene {
    folder: tempfile::TempDir,
    registry: String,
}

impl Scene {
    fn new(registry: &str) -> Self {
        let folder = tempfile::tempdir().expect("temp dir");
        let platform = |repo: &str, (name, architecture, variant): (&str, &str, Option<&str>)| {
            let mut entry = json!({
                "dockerfile": format!("{repo}/{name}"),
                "os": "linux",
                "osVersion": "bookworm",
                "architecture": architecture,
                "tags": {format!("1-{name}"): {}},
            });
            if let Some(variant) = variant {
                entry["variant"] = variant.into();
            }
            if repo == "app" {
                entry["buildArgs"] = json!({"REPO": "$(Repo:base)"});
            }
            entry
        };
        let manifest = json!({
            "registry": registry,
            "repos": [
                {"id": "base", "name": "acme/base", "images": [{"sharedTags": {"1": {}}, "platforms":
                    PLATFORMS.iter().map(|&entry| platform("base", entry)).collect::<Vec<_>>()}]},
                {"id": "app", "name": "acme/app", "images": [{"sharedTags": {"1": {}}, "platforms":
                    PLATFORMS.iter().map(|&entry| platform("app", entry)).collect::<Vec<_>>()}]},
            ]
        });
        common::files::write_json(&folder.path().join("manifest.json"), &manifest);
        let scene = Self {
            folder,
            registry: registry.to_owned(),
        };
        for (name, _, _) in PLATFORMS {
            scene.write(
                &format!("base/{name}/Dockerfile"),
                &format!("FROM {registry}/{UPSTREAM}:{UPSTREAM_TAG}\nCOPY hello /hello\n"),
            );
            scene.write(&format!("base/{name}/hello"), "hello\n");
            let from = if name == "amd64" {
                "$REPO:1-amd64"
            } else {
                "$REPO:1"
            };
            scene.write(
                &format!("app/{name}/Dockerfile"),
                &format!("ARG REPO=elsewhere.example/base\nFROM {from}\n"),
            );
        }
        scene
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.folder.path().join(relative)
    }

    fn write(&self, relative: &str, text: &str) {
        let file = self.path(relative);
        fs::create_dir_all(file.parent().expect("a folder")).expect("creates");
        fs::write(file, text).expect("writes");
    }

    fn manifest(&self) -> PathBuf {
        self.path("manifest.json")
    }

    fn matrix(&self, arguments: &[&str]) -> Imagepipe {
        Imagepipe::new()
            .args(["matrix", "--manifest"])
            .arg(self.manifest())
            .args(arguments)
    }

    /// A published image-info recording every platform as built from the folders as they are now, from
    /// `upstream` (the digest its tag had then).
    fn published(&self, upstream: &Digest) -> Value {
        let registry = &self.registry;
        let record = |repo: &str, (name, architecture, variant): (&str, &str, Option<&str>)| {
            let context = context_digest(&self.path(&format!("{repo}/{name}"))).expect("digest");
            let base = if repo == "base" {
                format!("{registry}/{UPSTREAM}@{upstream}")
            } else {
                format!(
                    "{registry}/acme/base@{}",
                    Digest::of(format!("base {name}").as_bytes())
                )
            };
            let mut record = json!({
                "dockerfile": format!("{repo}/{name}/Dockerfile"),
                "simpleTags": [format!("1-{name}")],
                "digest": format!("{registry}/acme/{repo}@{}", Digest::of(format!("{repo} {name}").as_bytes())),
                "baseImageDigest": base,
                "osType": "Linux",
                "osVersion": "bookworm",
                "architecture": architecture,
                "contextDigest": context.to_string(),
            });
            if let Some(variant) = variant {
                record["variant"] = variant.into();
            }
            record
        };
        let repo = |name: &str| {
            json!({"repo": format!("acme/{name}"), "images": [{"platforms":
                PLATFORMS.iter().map(|&entry| record(name, entry)).collect::<Vec<_>>()}]})
        };
        json!({"schemaVersion": "2.0", "repos": [repo("base"), repo("app")]})
    }
}

/// The legs of a GitHub matrix as `(leg, dockerfiles)`.
fn legs(matrix: &Value) -> Vec<(String, String)> {
    matrix["include"]
        .as_array()
        .expect("an include list")
        .iter()
        .map(|leg| {
            let text = |field: &str| leg[field].as_str().expect("a string").to_owned();
            (text("leg"), text("dockerfiles"))
        })
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(leg, dockerfiles)| ((*leg).to_owned(), (*dockerfiles).to_owned()))
        .collect()
}

fn stdout_json(ran: &Ran) -> Value {
    let first = ran.stdout.lines().next().unwrap_or_default();
    serde_json::from_str(first).unwrap_or_else(|error| panic!("{error}: {}", ran.stdout))
}

/// The outputs of a `GITHUB_OUTPUT` file, which must exist.
fn github_outputs(file: &Path) -> Vec<(String, String)> {
    assert!(file.exists(), "outputs written");
    common::github_outputs::read(file)
}

fn output<'a>(outputs: &'a [(String, String)], name: &str) -> &'a str {
    outputs
        .iter()
        .find(|(found, _)| found == name)
        .map(|(_, value)| value.as_str())
        .unwrap_or_else(|| panic!("no output `{name}` in {outputs:?}"))
}

#[test]
fn legs_build_a_base_with_its_dependents_on_each_platform() {
    let scene = Scene::new("registry.example");
    let outputs = scene.path("outputs");
    let summary = scene.path("summary.md");
    let ran = scene
        .matrix(&[])
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_OUTPUT", &outputs)
        .env("GITHUB_STEP_SUMMARY", &summary)
        .run();
    ran.succeeded();
    let matrix = stdout_json(&ran);
    assert_eq!(
        legs(&matrix),
        pairs(&[
            ("linux-bookworm-amd64-base", "base/amd64 app/amd64"),
            ("linux-bookworm-arm64v8-base", "base/arm64v8 app/arm64v8"),
            ("linux-bookworm-armv7-base", "base/arm32v7 app/arm32v7"),
        ])
    );
    assert_eq!(
        matrix["include"][2],
        json!({
            "leg": "linux-bookworm-armv7-base",
            "osType": "linux",
            "osVersion": "bookworm",
            "architecture": "arm",
            "variant": "v7",
            "platform": "linux/arm/v7",
            "dockerfiles": "base/arm32v7 app/arm32v7",
        })
    );
    let outputs = github_outputs(&outputs);
    let from_output: Value = serde_json::from_str(output(&outputs, "matrix")).expect("JSON");
    assert_eq!(from_output, matrix);
    assert_eq!(output(&outputs, "leg-count"), "3");
    assert_eq!(output(&outputs, "cached"), "[]");
    let summary = fs::read_to_string(summary).expect("summary written");
    assert!(summary.contains("3 legs building 6 platforms"), "{summary}");
    assert!(
        summary.contains("| `linux-bookworm-arm64v8-base` | linux/arm64/v8 | bookworm | `base/arm64v8` `app/arm64v8` |"),
        "{summary}"
    );
    assert!(
        ran.stderr.contains("planned 3 legs for 6 platforms in"),
        "{}",
        ran.stderr
    );
}

#[test]
fn azure_gets_configurations_by_leg_name_and_an_output_variable() {
    let scene = Scene::new("registry.example");
    let ran = scene
        .matrix(&["--architecture", "aarch64"])
        .env("TF_BUILD", "True")
        .env("AGENT_TEMPDIRECTORY", scene.folder.path())
        .run();
    ran.succeeded();
    let matrix = stdout_json(&ran);
    let expected = json!({"linux_bookworm_arm64v8_base": {
        "leg": "linux-bookworm-arm64v8-base",
        "osType": "linux",
        "osVersion": "bookworm",
        "architecture": "arm64",
        "variant": "v8",
        "platform": "linux/arm64/v8",
        "dockerfiles": "base/arm64v8 app/arm64v8",
    }});
    assert_eq!(matrix, expected);
    let command = format!(
        "##vso[task.setvariable variable=matrix;isoutput=true]{}",
        matrix
    );
    assert!(
        ran.stdout.lines().any(|line| line == command),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout
            .lines()
            .any(|line| line == "##vso[task.setvariable variable=legCount;isoutput=true]1"),
        "{}",
        ran.stdout
    );

    // `--format` wins over the host.
    let ran = scene
        .matrix(&["--format", "azure"])
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_OUTPUT", scene.path("outputs"));
    let matrix = stdout_json(&ran.run());
    assert_eq!(matrix.as_object().map(|legs| legs.len()), Some(3));
}

#[test]
fn filters_select_dockerfiles_and_bring_their_bases() {
    let scene = Scene::new("registry.example");
    let planned =
        |arguments: &[&str]| legs(&stdout_json(scene.matrix(arguments).run().succeeded()));
    assert_eq!(
        planned(&["--path", "app/arm*"]),
        pairs(&[
            ("linux-bookworm-arm64v8-base", "base/arm64v8 app/arm64v8"),
            ("linux-bookworm-armv7-base", "base/arm32v7 app/arm32v7"),
        ])
    );
    assert_eq!(
        planned(&["--path", "base/amd64 base/arm64v8"]),
        pairs(&[
            ("linux-bookworm-amd64-base", "base/amd64"),
            ("linux-bookworm-arm64v8-base", "base/arm64v8"),
        ])
    );
    assert_eq!(
        planned(&[
            "--os-type",
            "Linux",
            "--architecture",
            "arm32",
            "--os-version",
            "book*"
        ]),
        pairs(&[("linux-bookworm-armv7-base", "base/arm32v7 app/arm32v7")])
    );
    assert!(planned(&["--os-type", "windows"]).is_empty());
}

#[test]
fn a_missing_dockerfile_is_invalid_input() {
    let scene = Scene::new("registry.example");
    fs::remove_file(scene.path("app/arm64v8/Dockerfile")).expect("removes");
    let ran = scene.matrix(&[]).run();
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert_eq!(ran.stdout, "");
    let errors = error_lines(&ran.stderr);
    assert_eq!(errors.len(), 1, "{}", ran.stderr);
    assert!(
        errors[0].contains("manifest.json` declares the Dockerfile"),
        "{}",
        errors[0]
    );
    assert!(
        errors[0].contains("app/arm64v8/Dockerfile"),
        "{}",
        errors[0]
    );
}

#[test]
fn the_hello_example_builds_base_and_app_together_on_each_platform() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello/manifest.json");
    let ran = Imagepipe::new()
        .args(["matrix", "--manifest"])
        .arg(&manifest)
        .run();
    assert_eq!(
        legs(&stdout_json(ran.succeeded())),
        pairs(&[
            ("linux-scratch-amd64-base", "src/base src/app"),
            ("linux-scratch-arm64v8-base", "src/base src/app"),
            ("linux-scratch-armv7-base", "src/base src/app"),
        ])
    );
}

async fn push_upstream(registry: &Registry, seed: &str) -> Digest {
    let client = Arc::new(RegistryClient::new(ClientSettings::default()).expect("client"));
    let store = RegistryStore::new(client, &registry.host());
    let image = TestImage::new("linux", "amd64", None, seed);
    image.push(&store, UPSTREAM, Some(UPSTREAM_TAG)).await;
    image.digest()
}

#[tokio::test]
async fn what_is_unchanged_since_the_published_record_is_left_out() {
    let registry = Registry::start();
    let upstream = push_upstream(&registry, "first").await;
    let scene = Scene::new(&registry.host());
    let mut published = scene.published(&upstream);
    let published_file = scene.path("published.json");
    common::files::write_json(&published_file, &published);
    let published_arguments = ["--image-info", published_file.to_str().expect("utf-8")];
    let run = |scene: &Scene| {
        let outputs = scene.path("outputs");
        let _ = fs::remove_file(&outputs);
        let ran = scene
            .matrix(&published_arguments)
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_OUTPUT", &outputs)
            .run();
        ran.succeeded();
        (
            legs(&stdout_json(&ran)),
            github_outputs(&outputs),
            ran.stderr,
        )
    };

    let (planned, outputs, stderr) = run(&scene);
    assert_eq!(planned, pairs(&[]), "{stderr}");
    assert_eq!(output(&outputs, "leg-count"), "0");
    let cached: Value = serde_json::from_str(output(&outputs, "cached")).expect("JSON");
    assert_eq!(cached.as_array().map(Vec::len), Some(6), "{cached}");
    assert!(
        stderr.contains("left out 6 platforms unchanged since the published record"),
        "{stderr}"
    );

    // A changed Dockerfile: that platform's leg builds it, from the published base.
    scene.write(
        "app/amd64/Dockerfile",
        "ARG REPO\nFROM $REPO:1-amd64\nLABEL changed=yes\n",
    );
    let (planned, _, stderr) = run(&scene);
    assert_eq!(
        planned,
        pairs(&[("linux-bookworm-amd64-base", "app/amd64")]),
        "{stderr}"
    );

    // A changed base: rebuilt with what is built from it.
    scene.write("base/arm64v8/hello", "hello again\n");
    let (planned, _, _) = run(&scene);
    assert_eq!(
        planned,
        pairs(&[
            ("linux-bookworm-amd64-base", "app/amd64"),
            ("linux-bookworm-arm64v8-base", "base/arm64v8 app/arm64v8"),
        ])
    );

    // A record without a context digest was built by something that cannot tell: changed.
    let app = 1;
    let arm32v7 = 2;
    published["repos"][app]["images"][0]["platforms"][arm32v7]
        .as_object_mut()
        .expect("a record")
        .remove("contextDigest");
    common::files::write_json(&published_file, &published);
    let (planned, outputs, _) = run(&scene);
    assert_eq!(
        planned,
        pairs(&[
            ("linux-bookworm-amd64-base", "app/amd64"),
            ("linux-bookworm-arm64v8-base", "base/arm64v8 app/arm64v8"),
            ("linux-bookworm-armv7-base", "app/arm32v7"),
        ])
    );
    let cached: Value = serde_json::from_str(output(&outputs, "cached")).expect("JSON");
    assert_eq!(
        cached,
        json!([
            {"dockerfile": "base/amd64", "platform": "linux/amd64", "osVersion": "bookworm"},
            {"dockerfile": "base/arm32v7", "platform": "linux/arm/v7", "osVersion": "bookworm"},
        ])
    );

    // The base image's tag moved: every platform builds again.
    push_upstream(&registry, "second").await;
    let (planned, _, _) = run(&scene);
    assert_eq!(
        planned,
        pairs(&[
            ("linux-bookworm-amd64-base", "base/amd64 app/amd64"),
            ("linux-bookworm-arm64v8-base", "base/arm64v8 app/arm64v8"),
            ("linux-bookworm-armv7-base", "base/arm32v7 app/arm32v7"),
        ])
    );
}

/// The real manifest (601 platforms, Dockerfiles not included): planned without dependencies, every unit is
/// its own leg.
#[test]
fn the_real_manifest_plans_without_its_dockerfiles() {
    use imagepipe::model::dependencies::Dependencies;
    use imagepipe::model::legs::{Filters, plan_legs};

    let Some(data) = common::shared_data() else {
        return;
    };
    let file = data.join("dotnet/dotnet-docker/manifest.json");
    let manifest = imagepipe::inputs::load_manifest(&file, &Default::default()).expect("loads");
    let started = std::time::Instant::now();
    let legs = plan_legs(&manifest, &Dependencies::default(), &Filters::default());
    let elapsed = started.elapsed();
    eprintln!(
        "plan_legs on the real manifest, no dependencies: {} legs in {elapsed:.1?}",
        legs.len()
    );
    assert_eq!(legs.len(), 601);
    let names: std::collections::BTreeSet<&str> =
        legs.iter().map(|leg| leg.name.as_str()).collect();
    assert_eq!(names.len(), legs.len(), "names are unique");
    for name in names {
        assert!(
            name.len() <= 100
                && name
                    .bytes()
                    .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-'),
            "{name}"
        );
    }
    assert_eq!(legs[0].name, "linux-bookworm-slim-amd64-runtime-deps-8-0");
}

/// The real manifest with Dockerfiles written the way its own are (`ARG REPO` then `FROM $REPO:<tag>` of the
/// platform it is built from, chosen by folder), run through the binary.
#[test]
fn the_real_manifest_with_dockerfiles_like_its_own() {
    let Some(data) = common::shared_data() else {
        return;
    };
    let source = data.join("dotnet/dotnet-docker");
    let folder = tempfile::tempdir().expect("temp dir");
    for name in ["manifest.json", "manifest.versions.json"] {
        fs::copy(source.join(name), folder.path().join(name)).expect("copies");
    }
    let file = folder.path().join("manifest.json");
    let manifest = imagepipe::inputs::load_manifest(&file, &Default::default()).expect("loads");
    let mut with_base = 0;
    for repo in &manifest.repos {
        for entry in repo.images.iter().flat_map(|image| &image.platforms) {
            let base = entry
                .build_args
                .get("REPO")
                .and_then(|name| dotnet_base(&manifest, name, entry));
            let text = match base {
                Some(tag) => {
                    with_base += 1;
                    format!("ARG REPO\nFROM $REPO:{tag}\n")
                }
                None => "FROM scratch\n".to_owned(),
            };
            let dockerfile = folder.path().join(&entry.dockerfile).join("Dockerfile");
            fs::create_dir_all(dockerfile.parent().expect("a folder")).expect("creates");
            fs::write(dockerfile, text).expect("writes");
        }
    }
    let started = std::time::Instant::now();
    let ran = Imagepipe::new()
        .args(["matrix", "--manifest"])
        .arg(&file)
        .run();
    let elapsed = started.elapsed();
    ran.succeeded();
    let matrix = stdout_json(&ran);
    let legs = matrix["include"].as_array().expect("legs");
    let platforms: usize = legs
        .iter()
        .map(|leg| {
            leg["dockerfiles"]
                .as_str()
                .expect("text")
                .split(' ')
                .count()
        })
        .sum();
    eprintln!(
        "matrix on the real manifest with {with_base} of 601 Dockerfiles built FROM another: {} legs in {elapsed:.1?} (the whole command); {}",
        legs.len(),
        ran.stderr
            .lines()
            .find(|line| line.contains("planned"))
            .unwrap_or_default()
            .trim()
    );
    assert_eq!(platforms, 601, "every platform in one leg");
    // Each Dockerfile is built FROM at most one other, for the same platform: it joins that one's leg.
    assert_eq!(legs.len(), 601 - with_base);
}

/// The tag of the platform a dotnet Dockerfile of `entry` is built from, in the repository `name`
/// (`mcr.microsoft.com/dotnet/runtime`): same platform and OS version, the folder of the same product version
/// (`src/runtime/8.0/bookworm-slim/amd64` for `src/aspnet/8.0/bookworm-slim/amd64`), else none.
fn dotnet_base(
    manifest: &imagepipe::model::manifest::Manifest,
    name: &str,
    entry: &imagepipe::model::manifest::PlatformEntry,
) -> Option<String> {
    let registry = manifest.registry.as_deref();
    let repo = manifest
        .repos
        .iter()
        .find(|repo| repo.qualified_name(registry) == name)?;
    let parts: Vec<&str> = entry.dockerfile.split('/').collect();
    let identity = entry.identity();
    repo.images
        .iter()
        .flat_map(|image| &image.platforms)
        .filter(|candidate| {
            let other = candidate.identity();
            other != identity
                && (
                    other.os.as_str(),
                    other.os_version.as_str(),
                    other.architecture.as_str(),
                    &other.variant,
                ) == (
                    identity.os.as_str(),
                    identity.os_version.as_str(),
                    identity.architecture.as_str(),
                    &identity.variant,
                )
        })
        .find(|candidate| {
            let theirs: Vec<&str> = candidate.dockerfile.split('/').collect();
            theirs.len() == parts.len() && theirs.get(2) == parts.get(2)
        })
        .and_then(|candidate| candidate.tags.keys().next().cloned())
}
