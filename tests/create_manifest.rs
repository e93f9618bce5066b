//! `imagepipe create-manifest` against real registries and OCI layouts, checked with skopeo.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use common::images::{TestImage, write_fragment};
use common::proxy::{Fault, FaultProxy};
use common::{Imagepipe, Ran, Registry, read_json, strings};
use imagepipe::store::registry::{ClientSettings, CredentialSource, RegistryClient, RegistryStore};
use imagepipe::store::{Store, layout::LayoutStore};
use serde_json::{Value, json};

const REPOSITORY: &str = "acme/app";

/// A manifest for `acme/app` with one image of two platforms under the shared tags `1.0` and `latest`, and one
/// image without shared tags.
fn write_manifest(folder: &Path, public: &str) -> PathBuf {
    let manifest = json!({
        "registry": public,
        "repos": [{"id": "app", "name": REPOSITORY, "images": [
            {"productVersion": "1.0", "sharedTags": {"1.0": {}, "latest": {}}, "platforms": [
                {"dockerfile": "src/amd64", "os": "linux", "osVersion": "bookworm", "tags": {"1.0-amd64": {}}},
                {"dockerfile": "src/arm64v8", "os": "linux", "osVersion": "bookworm", "architecture": "arm64", "variant": "v8", "tags": {"1.0-arm64v8": {}}}
            ]},
            {"productVersion": "1.0", "platforms": [
                {"dockerfile": "src/debug", "os": "linux", "osVersion": "bookworm", "tags": {"1.0-debug": {}}}
            ]}
        ]}]
    });
    let file = folder.join("manifest.json");
    common::files::write_json(&file, &manifest);
    file
}

fn images() -> (TestImage, TestImage, TestImage) {
    (
        TestImage::new("linux", "amd64", None, "a"),
        TestImage::new("linux", "arm64", Some("v8"), "b"),
        TestImage::new("linux", "amd64", None, "debug"),
    )
}

fn client() -> Arc<RegistryClient> {
    Arc::new(RegistryClient::new(ClientSettings::default()).expect("client"))
}

fn imagepipe(arguments: &[&str]) -> (Option<i32>, String, String) {
    Imagepipe::new().args(arguments).run().into()
}

/// Writes the fragments of a build that rebuilt `built`, runs post-build, and returns the image-info path.
fn post_build(
    folder: &Path,
    manifest: &Path,
    public: &str,
    built: &[(&TestImage, &str, &str)],
) -> PathBuf {
    let fragments = folder.join("fragments");
    for (index, (image, dockerfile, tag)) in built.iter().enumerate() {
        let entry = image.platform_entry(public, REPOSITORY, dockerfile, &[tag]);
        write_fragment(
            &fragments.join(format!("leg-{index}.json")),
            REPOSITORY,
            vec![entry],
        );
    }
    let output = folder.join("image-info.json");
    let (code, _, stderr) = imagepipe(&[
        "post-build",
        "--manifest",
        manifest.to_str().expect("utf-8"),
        "--fragments",
        fragments.to_str().expect("utf-8"),
        "--output",
        output.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    output
}

/// The partial-build scenario: the manifest names `public` as the public registry, and only amd64 was
/// rebuilt and pushed to `staging`. Returns the manifest, the image-info and the two images.
async fn only_amd64_rebuilt(
    folder: &Path,
    staging: &str,
    public: &str,
) -> (PathBuf, PathBuf, TestImage, TestImage) {
    let manifest = write_manifest(folder, public);
    let (amd64, arm64, _) = images();
    let staged = RegistryStore::new(client(), staging);
    amd64.push(&staged, REPOSITORY, None).await;
    let info = post_build(
        folder,
        &manifest,
        public,
        &[(&amd64, "src/amd64", "1.0-amd64")],
    );
    (manifest, info, amd64, arm64)
}

/// What the usual scenario starts from: amd64 and arm64 built and pushed to `repository` of `store`, their
/// fragments merged by post-build. Returns the manifest, the image-info and the two images.
async fn both_platforms_built(
    folder: &Path,
    store: &impl Store,
    repository: &str,
    public: &str,
) -> (PathBuf, PathBuf, TestImage, TestImage) {
    let manifest = write_manifest(folder, public);
    let (amd64, arm64, _) = images();
    for image in [&amd64, &arm64] {
        image.push(store, repository, None).await;
    }
    let built = [
        (&amd64, "src/amd64", "1.0-amd64"),
        (&arm64, "src/arm64v8", "1.0-arm64v8"),
    ];
    let info = post_build(folder, &manifest, public, &built);
    (manifest, info, amd64, arm64)
}

fn skopeo_raw(reference: &str) -> Vec<u8> {
    let output = common::commands::run(Command::new(common::tools::skopeo()).args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        reference,
    ]));
    output.stdout
}

#[tokio::test]
async fn indexes_list_exactly_the_declared_platforms() {
    let staging = Registry::start();
    let folder = tempfile::tempdir().expect("temp dir");
    let public = "registry.example.com";
    let manifest = write_manifest(folder.path(), public);
    let (amd64, arm64, debug) = images();
    let store = RegistryStore::new(client(), &staging.host());
    for image in [&amd64, &arm64, &debug] {
        image
            .push(&store, &format!("staging/1/{REPOSITORY}"), None)
            .await;
    }
    let info = post_build(
        folder.path(),
        &manifest,
        public,
        &[
            (&amd64, "src/amd64", "1.0-amd64"),
            (&arm64, "src/arm64v8", "1.0-arm64v8"),
            (&debug, "src/debug", "1.0-debug"),
        ],
    );

    let arguments = [
        "create-manifest",
        "--manifest",
        manifest.to_str().expect("utf-8"),
        "--image-info",
        info.to_str().expect("utf-8"),
        "--staging-registry",
        &staging.host(),
        "--staging-prefix",
        "staging/1/",
    ];
    let (code, _, stderr) = imagepipe(&arguments);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("index 1 of 1: staging/1/acme/app:1.0"),
        "{stderr}"
    );

    let recorded = read_json(&info);
    let images = recorded["repos"][0]["images"].as_array().expect("images");
    let with_index: Vec<&Value> = images
        .iter()
        .filter(|image| image.get("manifest").is_some())
        .collect();
    assert_eq!(
        with_index.len(),
        1,
        "only the image with shared tags has an index"
    );
    let index_reference = with_index[0]["manifest"]["digest"]
        .as_str()
        .expect("digest");
    let digest = index_reference
        .strip_prefix(&format!("{public}/{REPOSITORY}@"))
        .expect("public name");
    assert_eq!(
        with_index[0]["manifest"]["sharedTags"],
        json!(["1.0", "latest"])
    );
    let stages: Vec<&str> = recorded["pipeline"]["stages"]
        .as_array()
        .expect("ledger")
        .iter()
        .filter_map(|stage| stage["stage"].as_str())
        .collect();
    assert_eq!(stages, ["post-build", "create-manifest"]);

    for tag in ["1.0", "latest"] {
        let bytes = skopeo_raw(&format!(
            "docker://{}/staging/1/{REPOSITORY}:{tag}",
            staging.host()
        ));
        assert_eq!(
            imagepipe::model::reference::Digest::of(&bytes).as_str(),
            digest,
            "{tag}"
        );
        let index: Value = serde_json::from_slice(&bytes).expect("JSON");
        assert_eq!(
            index["mediaType"],
            "application/vnd.oci.image.index.v1+json"
        );
        let children: Vec<(String, String)> = index["manifests"]
            .as_array()
            .expect("manifests")
            .iter()
            .map(|child| {
                let platform = &child["platform"];
                let name = format!(
                    "{}/{}{}",
                    platform["os"].as_str().unwrap_or_default(),
                    platform["architecture"].as_str().unwrap_or_default(),
                    platform["variant"]
                        .as_str()
                        .map(|variant| format!("/{variant}"))
                        .unwrap_or_default()
                );
                (
                    name,
                    child["digest"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            children,
            [
                ("linux/amd64".to_owned(), amd64.digest().to_string()),
                ("linux/arm64/v8".to_owned(), arm64.digest().to_string())
            ]
        );
    }

    // A re-run pushes nothing and yields the same digest.
    let (code, _, stderr) = imagepipe(&arguments);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("(0 pushed, 1 unchanged; 0 tags pushed)"),
        "{stderr}"
    );
    assert_eq!(
        read_json(&info)["repos"][0]["images"],
        recorded["repos"][0]["images"]
    );
}

/// The arguments of create-manifest for a scenario folder.
/// Runs create-manifest with nothing but its required flags.
fn create_manifest(manifest: &Path, info: &Path, staging: &str) -> (Option<i32>, String, String) {
    imagepipe(&strings(&create_manifest_arguments(
        manifest, info, staging,
    )))
}

fn create_manifest_arguments(manifest: &Path, info: &Path, staging: &str) -> Vec<String> {
    [
        "create-manifest",
        "--manifest",
        manifest.to_str().expect("utf-8"),
        "--image-info",
        info.to_str().expect("utf-8"),
        "--staging-registry",
        staging,
    ]
    .iter()
    .map(|argument| (*argument).to_owned())
    .collect()
}

fn recorded_index(info: &Path) -> Value {
    let recorded = read_json(info);
    let images = recorded["repos"][0]["images"]
        .as_array()
        .expect("images")
        .clone();
    images
        .into_iter()
        .find_map(|image| image.get("manifest").cloned())
        .expect("an index is recorded")
}

#[tokio::test]
async fn a_tls_registry_with_credentials_from_docker_config() {
    let staging = Registry::start_tls_with_htpasswd("ci-user", "correct-horse-battery");
    let folder = tempfile::tempdir().expect("temp dir");
    let docker_config = staging.docker_config_dir();
    let settings = ClientSettings {
        ca_certificates: vec![staging.ca_cert().to_owned()],
        credentials: CredentialSource::with_docker_config(docker_config.clone()),
        ..ClientSettings::default()
    };
    let store = RegistryStore::new(
        Arc::new(RegistryClient::new(settings).expect("client")),
        &staging.host(),
    );
    let (manifest, info, _, _) =
        both_platforms_built(folder.path(), &store, REPOSITORY, "registry.example.com").await;
    let mut arguments = create_manifest_arguments(&manifest, &info, &staging.host());
    arguments.extend([
        "--ca-cert".to_owned(),
        staging.ca_cert().display().to_string(),
    ]);
    let config = docker_config.display().to_string();
    let Ran { code, stderr, .. } = Imagepipe::new()
        .args(&arguments)
        .env("DOCKER_CONFIG", &config)
        .run();
    assert_eq!(code, Some(0), "{stderr}");
    let digest = recorded_index(&info)["digest"]
        .as_str()
        .expect("digest")
        .rsplit_once('@')
        .expect("@")
        .1
        .to_owned();
    let pushed = store
        .head_manifest(
            REPOSITORY,
            imagepipe::store::ManifestReference::Tag("latest"),
        )
        .await
        .expect("reads")
        .expect("tagged");
    assert_eq!(pushed.digest().to_string(), digest);

    // The same with the password on standard input.
    let mut explicit = arguments.clone();
    explicit.extend([
        "--username".to_owned(),
        "ci-user".to_owned(),
        "--password-stdin".to_owned(),
    ]);
    let Ran { code, stderr, .. } = Imagepipe::new()
        .args(&explicit)
        .stdin("correct-horse-battery\n")
        .run();
    assert_eq!(code, Some(0), "{stderr}");

    // A wrong password: one clear line, exit 1, and the password nowhere in the output, even with every
    // debug line logged.
    let wrong = folder.path().join("wrong-config");
    common::Credentials::new("ci-user", "wrong-staple-42")
        .write_docker_config(&wrong, &staging.host());
    let wrong_config = wrong.display().to_string();
    let mut verbose = arguments.clone();
    verbose.push("--verbose".to_owned());
    let Ran {
        code,
        stdout,
        stderr,
    } = Imagepipe::new()
        .args(&verbose)
        .env("DOCKER_CONFIG", &wrong_config)
        .run();
    assert_eq!(code, Some(1), "{stderr}");
    let errors = common::error_lines(&stderr);
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains("refused the credentials of `ci-user`"),
        "{stderr}"
    );
    for secret in ["wrong-staple-42", "correct-horse-battery"] {
        assert!(
            !stderr.contains(secret) && !stdout.contains(secret),
            "a password leaked: {stderr}"
        );
    }
    let mut explicit_verbose = explicit.clone();
    explicit_verbose.push("--verbose".to_owned());
    let Ran {
        code,
        stdout,
        stderr,
    } = Imagepipe::new()
        .args(&explicit_verbose)
        .stdin("wrong-staple-42\n")
        .run();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(!stderr.contains("wrong-staple-42"), "{stderr}");
    assert!(!stdout.contains("wrong-staple-42"), "{stdout}");
}

#[tokio::test]
async fn an_oci_layout_as_staging() {
    let folder = tempfile::tempdir().expect("temp dir");
    let layout = folder.path().join("staging");
    let store = LayoutStore::new(layout.clone());
    let (manifest, info, _, _) =
        both_platforms_built(folder.path(), &store, REPOSITORY, "registry.example.com").await;
    let staging = format!("oci:{}", layout.display());
    let arguments = create_manifest_arguments(&manifest, &info, &staging);
    let (code, _, stderr) = imagepipe(&strings(&arguments));
    assert_eq!(code, Some(0), "{stderr}");
    let digest = recorded_index(&info)["digest"]
        .as_str()
        .expect("digest")
        .rsplit_once('@')
        .expect("@")
        .1
        .to_owned();
    for tag in ["1.0", "latest"] {
        let bytes = skopeo_raw(&format!("oci:{}/{REPOSITORY}:{tag}", layout.display()));
        assert_eq!(
            imagepipe::model::reference::Digest::of(&bytes).to_string(),
            digest,
            "{tag}"
        );
    }
}

/// A signature-like manifest under the cosign tag of `digest`, to see signatures travel with an image.
async fn push_signature(
    store: &impl Store,
    repository: &str,
    digest: &imagepipe::model::reference::Digest,
) -> imagepipe::model::reference::Digest {
    let signature = TestImage::new("linux", "amd64", None, &format!("signature of {digest}"));
    signature
        .push(
            store,
            repository,
            Some(&imagepipe::store::signature_tag(digest)),
        )
        .await;
    signature.digest()
}

#[tokio::test]
async fn a_platform_not_rebuilt_comes_from_the_public_registry_with_its_signature() {
    let staging = Registry::start();
    let public = Registry::start();
    let folder = tempfile::tempdir().expect("temp dir");
    let (manifest, info, amd64, arm64) =
        only_amd64_rebuilt(folder.path(), &staging.host(), &public.host()).await;
    let published = RegistryStore::new(client(), &public.host());
    arm64
        .push(&published, REPOSITORY, Some("1.0-arm64v8"))
        .await;
    let signature = push_signature(&published, REPOSITORY, &arm64.digest()).await;
    let staged = RegistryStore::new(client(), &staging.host());

    let (code, _, stderr) = create_manifest(&manifest, &info, &staging.host());
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("took 1 platform not rebuilt in this run"),
        "{stderr}"
    );

    let index = skopeo_raw(&format!("docker://{}/{REPOSITORY}:latest", staging.host()));
    let index: Value = serde_json::from_slice(&index).expect("JSON");
    let children: Vec<&str> = index["manifests"]
        .as_array()
        .expect("children")
        .iter()
        .filter_map(|child| child["digest"].as_str())
        .collect();
    assert_eq!(
        children,
        [amd64.digest().as_str(), arm64.digest().as_str()],
        "the index is complete"
    );
    let recorded = read_json(&info);
    let platforms = recorded["repos"][0]["images"]
        .as_array()
        .expect("images")
        .iter()
        .flat_map(|image| image["platforms"].as_array().expect("platforms").clone())
        .collect::<Vec<_>>();
    let imported = platforms
        .iter()
        .find(|platform| platform["architecture"] == "arm64")
        .expect("arm64 recorded");
    assert_eq!(imported["isUnchanged"], true);
    assert_eq!(
        imported["digest"],
        format!("{}/{REPOSITORY}@{}", public.host(), arm64.digest())
    );
    // The record takes the form of the rebuilt platforms beside it, and what the image says about itself.
    let rebuilt = platforms
        .iter()
        .find(|platform| platform["architecture"] == "amd64")
        .expect("amd64 recorded");
    assert_eq!(rebuilt["dockerfile"], "src/amd64/Dockerfile");
    assert_eq!(imported["dockerfile"], "src/arm64v8/Dockerfile");
    assert_eq!(imported["osType"], "Linux");
    assert_eq!(imported["osType"], rebuilt["osType"]);
    assert_eq!(imported["variant"], "v8");
    assert_eq!(imported["simpleTags"], json!(["1.0-arm64v8"]));
    assert_eq!(imported["created"], common::images::IMAGE_CREATED);
    assert_eq!(
        imported["layers"].as_array().map(Vec::len),
        Some(1),
        "{imported}"
    );
    assert!(imported.get("baseImageDigest").is_none());
    assert!(
        stderr.contains("`baseImageDigest` and `commitUrl` cannot be known"),
        "{stderr}"
    );
    let copied_signature = staged
        .head_manifest(
            REPOSITORY,
            imagepipe::store::ManifestReference::Tag(&imagepipe::store::signature_tag(
                &arm64.digest(),
            )),
        )
        .await
        .expect("reads")
        .expect("the signature came along");
    assert_eq!(copied_signature.digest().to_string(), signature.to_string());
}

#[tokio::test]
async fn a_published_record_the_registry_contradicts_is_refused_before_anything_is_pushed() {
    let staging = Registry::start();
    let public = Registry::start();
    let folder = tempfile::tempdir().expect("temp dir");
    let (manifest, info, _, arm64) =
        only_amd64_rebuilt(folder.path(), &staging.host(), &public.host()).await;
    arm64
        .push(
            &RegistryStore::new(client(), &public.host()),
            REPOSITORY,
            Some("1.0-arm64v8"),
        )
        .await;
    let stale = format!("{}/{REPOSITORY}@sha256:{}", public.host(), "e".repeat(64));
    let published = folder.path().join("published.json");
    std::fs::write(
        &published,
        json!({"schemaVersion": "2.0", "repos": [{"repo": REPOSITORY, "images": [{"productVersion": "1.0",
            "platforms": [{"dockerfile": "src/arm64v8/Dockerfile", "simpleTags": ["1.0-arm64v8"], "digest": stale,
                "osType": "Linux", "osVersion": "bookworm", "architecture": "arm64"}]}]}]})
        .to_string(),
    )
    .expect("writes");
    let before = std::fs::read(&info).expect("reads");

    let Ran { code, stderr, .. } =
        common::stages::create_manifest(&manifest, &info, &staging.host())
            .arg("--published-image-info")
            .arg(&published)
            .run();
    assert_eq!(code, Some(3), "{stderr}");
    let errors = common::error_lines(&stderr);
    assert!(
        errors[0].contains("does not record what the public registry serves for 1 platform")
            && errors[0].contains(&stale)
            && errors[0].contains(arm64.digest().as_str()),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(&info).expect("reads"),
        before,
        "nothing written"
    );
    let latest = RegistryStore::new(client(), &staging.host())
        .head_manifest(
            REPOSITORY,
            imagepipe::store::ManifestReference::Tag("latest"),
        )
        .await
        .expect("reads");
    assert!(latest.is_none(), "no index pushed");
}

#[tokio::test]
async fn an_unreachable_public_registry_is_named_with_the_platforms_being_imported() {
    let staging = Registry::start();
    let mut public = Registry::start();
    let folder = tempfile::tempdir().expect("temp dir");
    let (manifest, info, _, _) =
        only_amd64_rebuilt(folder.path(), &staging.host(), &public.host()).await;
    public.kill();
    let before = std::fs::read(&info).expect("reads");

    let (code, _, stderr) = create_manifest(&manifest, &info, &staging.host());
    assert_eq!(code, Some(1), "{stderr}");
    let errors = common::error_lines(&stderr);
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains(&format!(
            "importing 1 platform not rebuilt in this run from {}: `acme/app` src/arm64v8",
            public.host()
        )),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(&info).expect("reads"),
        before,
        "nothing written"
    );
}

#[tokio::test]
async fn a_missing_platform_refuses_before_any_shared_tag_is_pushed() {
    let staging = Registry::start();
    let public = Registry::start();
    let folder = tempfile::tempdir().expect("temp dir");
    let (manifest, info, _, _) =
        only_amd64_rebuilt(folder.path(), &staging.host(), &public.host()).await;
    let staged = RegistryStore::new(client(), &staging.host());
    let before = std::fs::read(&info).expect("reads");

    let (code, _, stderr) = create_manifest(&manifest, &info, &staging.host());
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("a shared tag would miss 1 declared platform"),
        "{stderr}"
    );
    assert!(
        stderr.contains("src/arm64v8 (linux/arm64/v8, bookworm)"),
        "{stderr}"
    );
    assert!(stderr.contains("tag `1.0-arm64v8` not in"), "{stderr}");
    for tag in ["1.0", "latest"] {
        let pushed = staged
            .head_manifest(REPOSITORY, imagepipe::store::ManifestReference::Tag(tag))
            .await
            .expect("reads");
        assert!(pushed.is_none(), "nothing may be pushed under `{tag}`");
    }
    assert_eq!(
        std::fs::read(&info).expect("reads"),
        before,
        "image-info is untouched"
    );
}

#[tokio::test]
async fn refuses_image_info_that_post_build_did_not_write() {
    let folder = tempfile::tempdir().expect("temp dir");
    let manifest = write_manifest(folder.path(), "registry.example.com");
    let info = folder.path().join("image-info.json");
    std::fs::write(&info, r#"{"schemaVersion": "2.0", "repos": []}"#).expect("writes");
    let staging = format!("oci:{}", folder.path().join("staging").display());
    let (code, _, stderr) = create_manifest(&manifest, &info, &staging);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("stage `create-manifest` needs `post-build` to have run first"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: run `imagepipe post-build`"),
        "{stderr}"
    );
}

#[tokio::test]
async fn docker_manifest_lists_on_request() {
    // In a registry: skopeo reads only OCI media types from an OCI layout's index.json.
    let staging = Registry::start();
    let folder = tempfile::tempdir().expect("temp dir");
    let store = RegistryStore::new(client(), &staging.host());
    let (manifest, info, _, _) =
        both_platforms_built(folder.path(), &store, REPOSITORY, "registry.example.com").await;
    let mut arguments = create_manifest_arguments(&manifest, &info, &staging.host());
    arguments.extend(["--media-type".to_owned(), "docker".to_owned()]);
    let (code, _, stderr) = imagepipe(&strings(&arguments));
    assert_eq!(code, Some(0), "{stderr}");
    let raw = skopeo_raw(&format!("docker://{}/{REPOSITORY}:1.0", staging.host()));
    let index: Value = serde_json::from_slice(&raw).expect("JSON");
    assert_eq!(
        index["mediaType"],
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    assert_eq!(index["manifests"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn retries_through_503_429_and_a_reset_connection() {
    let staging = Registry::start();
    let folder = tempfile::tempdir().expect("temp dir");
    let store = RegistryStore::new(client(), &staging.host());
    let (manifest, info, _, _) =
        both_platforms_built(folder.path(), &store, REPOSITORY, "registry.example.com").await;
    let proxy = FaultProxy::start(
        &staging.host(),
        "/manifests/",
        vec![
            Fault::Status(503),
            Fault::TooManyRequests {
                retry_after_seconds: 1,
            },
            Fault::Reset,
        ],
    );
    let started = std::time::Instant::now();
    let (code, _, stderr) = create_manifest(&manifest, &info, &proxy.host());
    assert_eq!(code, Some(0), "{stderr}");
    let retries: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("retrying"))
        .collect();
    // Children are described side by side, so which request meets which fault, and the order of the log
    // lines, varies from run to run: each fault is retried once, whichever request it met.
    assert_eq!(retries.len(), 3, "{stderr}");
    let retried_after = |fault: &str| retries.iter().filter(|line| line.contains(fault)).count();
    assert_eq!(retried_after("after 503"), 1, "{stderr}");
    assert_eq!(retried_after("after 429"), 1, "{stderr}");
    assert!(
        retries
            .iter()
            .any(|line| line.contains("after 429") && line.contains("in 1.0 s")),
        "{stderr}"
    );
    assert_eq!(retried_after("after a broken connection"), 1, "{stderr}");
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "Retry-After was honoured"
    );
    let faults = proxy
        .requests()
        .iter()
        .filter(|request| request.fault)
        .count();
    assert_eq!(faults, 3);
    let pushed = store
        .head_manifest(
            REPOSITORY,
            imagepipe::store::ManifestReference::Tag("latest"),
        )
        .await
        .expect("reads");
    assert!(pushed.is_some());
}
