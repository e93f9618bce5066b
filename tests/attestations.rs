//! A buildx build with provenance, end to end: each platform's result is BuildKit's index of the image and its
//! attestation manifest. Built by contract (a fake `docker` whose `buildx build` writes buildx's metadata file
//! for what the test pushed to staging as BuildKit would), then taken through every stage to a second real
//! registry, and checked with the real `cosign` and `skopeo`.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use common::images::TestImage;
use common::proxy::FaultProxy;
use common::verifiers::SignedIdentity;
use common::{Imagepipe, Registry, read_json};
use imagepipe::model::reference::Digest;
use imagepipe::store::registry::{ClientSettings, RegistryClient, RegistryStore};
use imagepipe::store::{ManifestReference, Store, StoredManifest, media_type};
use serde_json::{Value, json};
use tempfile::TempDir;

const REPOSITORY: &str = "acme/app";
const PASSWORD: &str = "attestation password";
const SHARED_TAGS: [&str; 2] = ["1.0", "latest"];
const IN_TOTO: &str = "application/vnd.in-toto+json";
const PROVENANCE: &str = "https://slsa.dev/provenance/v0.2";
const REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";
const REFERENCE_TYPE: &str = "vnd.docker.reference.type";

/// The declared platforms: Dockerfile folder, architecture, variant, simple tag, and the platform as buildx is
/// given it.
const DECLARED: [(&str, &str, Option<&str>, &str, &str); 2] = [
    ("src/amd64", "amd64", None, "1.0-amd64", "linux/amd64"),
    (
        "src/arm64v8",
        "arm64",
        Some("v8"),
        "1.0-arm64v8",
        "linux/arm64/v8",
    ),
];

/// Each call: its arguments one a line, then `----`. `buildx inspect` names the `docker-container` driver;
/// `buildx build` copies `metadata-<platform with dashes>.json` to its `--metadata-file`.
const FAKE_DOCKER: &str = r##"#!/bin/sh
here=$(dirname "$0")
{ for argument in "$@"; do printf '%s\n' "$argument"; done; echo ----; } >>"$here/calls"
case "$1 $2" in
"buildx inspect")
    printf 'Name:   builder\nDriver: docker-container\n\nNodes:\nName: builder0\n'
    ;;
"buildx build")
    platform=
    metadata=
    while [ $# -gt 0 ]; do
        case "$1" in
        --platform) platform=$2 ;;
        --metadata-file) metadata=$2 ;;
        esac
        shift
    done
    answer="$here/metadata-$(printf '%s' "$platform" | tr / -).json"
    if [ ! -e "$answer" ]; then
        echo "no build result for platform '$platform'" >&2
        exit 1
    fi
    cp "$answer" "$metadata"
    echo "#6 DONE 0.1s" >&2
    ;;
*)
    echo "unexpected: $*" >&2
    exit 2
    ;;
esac
"##;

/// What BuildKit pushes for one platform when it adds provenance: the image, an attestation manifest
/// describing it, and an index of both.
struct BuildKitResult {
    image: TestImage,
    attestation_blobs: [Bytes; 2],
    attestation: StoredManifest,
    index: StoredManifest,
}

impl BuildKitResult {
    fn new(staging: &str, platform: &str, image: TestImage) -> Self {
        let image_digest = image.digest();
        // The in-toto statement: what BuildKit's provenance says, reduced to its frame.
        let statement = json!({
            "_type": "https://in-toto.io/Statement/v0.1",
            "predicateType": PROVENANCE,
            "subject": [{
                "name": format!("pkg:docker/{staging}/{REPOSITORY}?platform={}", platform.replace('/', "%2F")),
                "digest": {"sha256": image_digest.as_str().trim_start_matches("sha256:")}
            }],
            "predicate": {"builder": {"id": ""}, "buildType": "https://mobyproject.org/buildkit@v1",
                "metadata": {"buildInvocationID": format!("invocation-{platform}")}}
        });
        let layer = Bytes::from(serde_json::to_vec(&statement).expect("serializes"));
        let layer_digest = Digest::of(&layer);
        // Only for compatibility: BuildKit's attestation config names no platform.
        let config = json!({
            "architecture": "unknown",
            "os": "unknown",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest.as_str()]}
        });
        let config = Bytes::from(serde_json::to_vec(&config).expect("serializes"));
        let attestation = json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_MANIFEST,
            "config": {"mediaType": media_type::OCI_CONFIG, "digest": Digest::of(&config).as_str(),
                "size": config.len()},
            "layers": [{"mediaType": IN_TOTO, "digest": layer_digest.as_str(), "size": layer.len(),
                "annotations": {"in-toto.io/predicate-type": PROVENANCE}}]
        });
        let attestation = oci_manifest(&attestation);
        let mut image_platform = json!({"architecture": image.architecture, "os": image.os});
        if let Some(variant) = &image.variant {
            image_platform["variant"] = variant.as_str().into();
        }
        let index = json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_INDEX,
            "manifests": [
                {"mediaType": media_type::OCI_MANIFEST, "digest": image_digest.as_str(),
                    "size": image.manifest.bytes.len(), "platform": image_platform},
                {"mediaType": media_type::OCI_MANIFEST, "digest": attestation.digest().as_str(),
                    "size": attestation.bytes.len(),
                    "annotations": {REFERENCE_DIGEST: image_digest.as_str(), REFERENCE_TYPE: "attestation-manifest"},
                    "platform": {"architecture": "unknown", "os": "unknown"}}
            ]
        });
        let index = StoredManifest {
            media_type: media_type::OCI_INDEX.to_owned(),
            bytes: Bytes::from(serde_json::to_vec(&index).expect("serializes")),
        };
        Self {
            image,
            attestation_blobs: [layer, config],
            attestation,
            index,
        }
    }

    /// Pushes everything by digest, children before the index (the registry refuses an index of missing
    /// children), as BuildKit pushes with `push-by-digest=true`.
    async fn push(&self, store: &RegistryStore) {
        self.image.push(store, REPOSITORY, None).await;
        for blob in &self.attestation_blobs {
            store
                .put_blob(REPOSITORY, &Digest::of(blob), blob.clone())
                .await
                .expect("attestation blob pushed");
        }
        for manifest in [&self.attestation, &self.index] {
            store
                .put_manifest(
                    REPOSITORY,
                    ManifestReference::Digest(&manifest.digest()),
                    manifest,
                )
                .await
                .expect("manifest pushed");
        }
    }

    /// buildx's `--metadata-file` for this build: the index is the result.
    fn metadata(&self) -> Value {
        json!({
            "buildx.build.ref": "builder/builder0/attestations",
            "containerimage.descriptor": {"mediaType": media_type::OCI_INDEX,
                "digest": self.index.digest().as_str(), "size": self.index.bytes.len()},
            "containerimage.digest": self.index.digest().as_str()
        })
    }
}

fn oci_manifest(manifest: &Value) -> StoredManifest {
    StoredManifest {
        media_type: media_type::OCI_MANIFEST.to_owned(),
        bytes: Bytes::from(serde_json::to_vec(manifest).expect("serializes")),
    }
}

/// A temp dir holding the fake `docker` and one metadata file per platform it can build.
struct FakeDocker {
    directory: TempDir,
}

impl FakeDocker {
    fn new() -> Self {
        let directory = tempfile::tempdir().expect("temp dir");
        let docker = directory.path().join("docker");
        std::fs::write(&docker, FAKE_DOCKER).expect("writes the fake docker");
        std::fs::set_permissions(&docker, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        Self { directory }
    }

    /// What `buildx build --platform platform` answers.
    fn answer(&self, platform: &str, metadata: &Value) {
        let file = format!("metadata-{}.json", platform.replace('/', "-"));
        common::files::write_json(&self.directory.path().join(file), metadata);
    }

    fn program(&self) -> PathBuf {
        self.directory.path().join("docker")
    }

    /// Every `buildx build` call so far, as its argument list.
    fn builds(&self) -> Vec<Vec<String>> {
        let text = std::fs::read_to_string(self.directory.path().join("calls")).unwrap_or_default();
        text.split_terminator("----\n")
            .map(|call| call.lines().map(str::to_owned).collect::<Vec<_>>())
            .filter(|call| call.starts_with(&["buildx".to_owned(), "build".to_owned()]))
            .collect()
    }
}

/// The manifest: one repository, one image of two platforms under shared tags, each platform built from its own
/// folder; `public` is the registry it publishes to.
fn write_project(folder: &Path, public: &str) -> PathBuf {
    let platforms: Vec<Value> = DECLARED
        .iter()
        .map(|(dockerfile, architecture, variant, tag, _)| {
            let source = folder.join(dockerfile);
            std::fs::create_dir_all(&source).expect("creates");
            std::fs::write(source.join("Dockerfile"), "FROM scratch\nCOPY file.txt /\n")
                .expect("writes");
            std::fs::write(source.join("file.txt"), format!("{architecture}\n")).expect("writes");
            let mut platform = json!({"dockerfile": dockerfile, "os": "linux", "osVersion": "scratch",
                "architecture": architecture, "tags": {*tag: {}}});
            if let Some(variant) = variant {
                platform["variant"] = (*variant).into();
            }
            platform
        })
        .collect();
    let shared: serde_json::Map<String, Value> = SHARED_TAGS
        .iter()
        .map(|tag| ((*tag).to_owned(), json!({})))
        .collect();
    let manifest = json!({
        "registry": public,
        "repos": [{"id": "app", "name": REPOSITORY, "images": [
            {"productVersion": "1.0.0", "sharedTags": shared, "platforms": platforms}
        ]}]
    });
    let file = folder.join("manifest.json");
    common::files::write_json(&file, &manifest);
    file
}

/// The legs `imagepipe matrix` plans, with the platform each builds.
fn legs(manifest: &Path) -> Vec<(String, String)> {
    let ran = Imagepipe::new()
        .args(["matrix", "--format", "github", "--manifest"])
        .arg(manifest)
        .run();
    ran.succeeded();
    let matrix: Value = serde_json::from_str(&ran.stdout).expect("the matrix is JSON");
    matrix["include"]
        .as_array()
        .expect("legs")
        .iter()
        .map(|leg| {
            (
                leg["leg"].as_str().expect("a leg name").to_owned(),
                leg["platform"].as_str().expect("a platform").to_owned(),
            )
        })
        .collect()
}

/// A release of two platforms built with provenance: staging, the public registry behind a proxy that counts
/// its writes, the project, the fake `docker`, and the key.
struct Release {
    staging: Registry,
    _public: Registry,
    public: FaultProxy,
    folder: TempDir,
    manifest: PathBuf,
    docker: FakeDocker,
    key: PathBuf,
    /// One result per platform of [`DECLARED`], in its order.
    results: Vec<BuildKitResult>,
}

impl Release {
    /// Everything up to the build: the results pushed to staging and the fake `docker` ready to report them.
    async fn prepare(with_attestations: bool) -> Self {
        let staging = Registry::start();
        let public_registry = Registry::start();
        let public = FaultProxy::start(&public_registry.host(), "", Vec::new());
        let folder = tempfile::tempdir().expect("temp dir");
        let manifest = write_project(folder.path(), &public.host());
        let docker = FakeDocker::new();
        let client = Arc::new(RegistryClient::new(ClientSettings::default()).expect("client"));
        let store = RegistryStore::new(client, &staging.host());
        let mut results = Vec::new();
        for (_, architecture, variant, _, platform) in DECLARED {
            let image = TestImage::new("linux", architecture, variant, "buildx");
            let result = BuildKitResult::new(&staging.host(), platform, image);
            if with_attestations {
                result.push(&store).await;
                docker.answer(platform, &result.metadata());
            } else {
                // Without attestations (`--provenance=false`) the result is the image itself.
                result.image.push(&store, REPOSITORY, None).await;
                docker.answer(
                    platform,
                    &json!({"containerimage.descriptor": {"mediaType": media_type::OCI_MANIFEST,
                        "digest": result.image.digest().as_str(), "size": result.image.manifest.bytes.len()},
                        "containerimage.digest": result.image.digest().as_str()}),
                );
            }
            results.push(result);
        }
        let key = common::stages::generate_key(&folder.path().join("release"), PASSWORD);
        Self {
            staging,
            _public: public_registry,
            public,
            folder,
            manifest,
            docker,
            key,
            results,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.folder.path().join(name)
    }

    fn info(&self) -> PathBuf {
        self.path("image-info.json")
    }

    fn public_key(&self) -> PathBuf {
        self.key.with_extension("pub")
    }

    /// `host/acme/app@digest` in the public registry.
    fn public_name(&self, digest: &Digest) -> String {
        format!("{}/{REPOSITORY}@{digest}", self.public.host())
    }

    /// A stage with staging, the key's password and the fake `docker` set.
    fn stage(&self, stage: &str) -> Imagepipe {
        Imagepipe::new()
            .arg(stage)
            .args(["--staging-registry", &self.staging.host()])
            .env("COSIGN_PASSWORD", PASSWORD)
            .env("IMAGEPIPE_DOCKER", self.docker.program())
    }

    /// One build per leg with buildx, then post-build.
    fn build(&self) {
        let legs = legs(&self.manifest);
        let planned: Vec<&str> = legs.iter().map(|(_, platform)| platform.as_str()).collect();
        let declared: Vec<&str> = DECLARED.iter().map(|declared| declared.4).collect();
        assert_eq!(planned, declared, "one leg per platform");
        for (leg, _) in &legs {
            self.stage("build")
                .arg("--manifest")
                .arg(&self.manifest)
                .args(["--leg", leg, "--builder", "buildx", "--fragments"])
                .arg(self.path("fragments"))
                .run()
                .succeeded();
        }
        let builds = self.docker.builds();
        assert_eq!(builds.len(), 2, "one buildx build per leg: {builds:#?}");
        for (build, platform) in builds.iter().zip(declared) {
            let given = |flag: &str| {
                build
                    .iter()
                    .position(|argument| argument == flag)
                    .and_then(|at| build.get(at + 1))
                    .map(String::as_str)
            };
            assert_eq!(given("--platform"), Some(platform), "{build:#?}");
            let output = given("--output").unwrap_or_default();
            assert!(
                output.starts_with(&format!(
                    "type=image,name={}/{REPOSITORY},push-by-digest=true,",
                    self.staging.host()
                )),
                "pushed by digest to the staging repository: {output}"
            );
        }
        common::stages::post_build(&self.manifest, &self.path("fragments"), &self.info());
    }

    fn create_manifest(&self) {
        common::stages::create_manifest(&self.manifest, &self.info(), &self.staging.host())
            .run()
            .succeeded();
    }

    /// Publish, returning the requests that wrote to the public registry.
    fn publish(&self) -> Vec<String> {
        let before = self.public.requests().len();
        self.stage("publish")
            .arg("--image-info")
            .arg(self.info())
            .arg("--require-verify")
            .arg("--output")
            .arg(self.path("final-image-info.json"))
            .run()
            .succeeded();
        self.public
            .requests()
            .into_iter()
            .skip(before)
            .filter(|request| {
                matches!(request.method.as_str(), "PUT" | "POST" | "PATCH" | "DELETE")
            })
            .map(|request| format!("{} {}", request.method, request.path))
            .collect()
    }
}

/// The platform records of the one image in `info`, in the order of [`DECLARED`].
fn platforms(info: &Value) -> Vec<Value> {
    let mut platforms = info["repos"][0]["images"][0]["platforms"]
        .as_array()
        .unwrap_or_else(|| panic!("no platforms: {info}"))
        .clone();
    let order = |platform: &Value| {
        DECLARED
            .iter()
            .position(|declared| platform["architecture"] == declared.1)
            .unwrap_or_else(|| panic!("an undeclared platform: {platform}"))
    };
    platforms.sort_by_key(order);
    assert_eq!(platforms.len(), 2, "{info}");
    platforms
}

/// The index served under `tag` in `host`, as JSON, and its digest.
fn served_index(host: &str, tag: &str) -> (Value, Digest) {
    let bytes = common::builds::served_manifest(&format!("{host}/{REPOSITORY}:{tag}"));
    let index = serde_json::from_slice(&bytes).expect("the index is JSON");
    (index, Digest::of(&bytes))
}

fn rows<'a>(report: &'a str, check: &str) -> Vec<&'a str> {
    let prefix = format!("| {check} |");
    report
        .lines()
        .filter(|line| line.starts_with(&prefix))
        .collect()
}

#[tokio::test]
async fn a_buildx_build_with_provenance_is_signed_and_published_with_its_attestations() {
    let release = Release::prepare(true).await;
    release.build();

    // post-build: each platform is the image in BuildKit's index, with its attestation beside it.
    let built = read_json(&release.info());
    for (platform, result) in platforms(&built).iter().zip(&release.results) {
        assert_eq!(
            platform["digest"],
            release.public_name(&result.image.digest()),
            "the image, not BuildKit's index `{}`: {platform}",
            result.index.digest()
        );
        assert_eq!(
            platform["attestation"],
            json!({"digest": release.public_name(&result.attestation.digest())}),
            "{platform}"
        );
    }

    release.create_manifest();
    // In staging, the shared tags name one index: both images, then both attestations.
    let (index, index_digest) = served_index(&release.staging.host(), "latest");
    let recorded =
        read_json(&release.info())["repos"][0]["images"][0]["manifest"]["digest"].clone();
    assert_eq!(recorded, release.public_name(&index_digest), "{recorded}");
    let entries = index["manifests"].as_array().expect("manifests");
    assert_eq!(
        entries.len(),
        4,
        "two images and two attestations: {index:#}"
    );
    for (entry, result) in entries[..2].iter().zip(&release.results) {
        let image = &result.image;
        let mut platform = json!({"architecture": image.architecture, "os": image.os});
        if let Some(variant) = &image.variant {
            platform["variant"] = variant.as_str().into();
        }
        assert_eq!(entry["digest"], image.digest().as_str(), "{index:#}");
        assert_eq!(entry["mediaType"], media_type::OCI_MANIFEST, "{index:#}");
        assert_eq!(entry["size"], image.manifest.bytes.len(), "{index:#}");
        assert_eq!(entry["platform"], platform, "{index:#}");
        assert!(
            entry["annotations"].get(REFERENCE_TYPE).is_none(),
            "{index:#}"
        );
    }
    let mut attested: Vec<&str> = Vec::new();
    for entry in &entries[2..] {
        let result = release
            .results
            .iter()
            .find(|result| entry["digest"] == result.attestation.digest().as_str())
            .unwrap_or_else(|| panic!("an attestation of a built image: {entry}"));
        assert_eq!(entry["mediaType"], media_type::OCI_MANIFEST, "{entry}");
        assert_eq!(entry["size"], result.attestation.bytes.len(), "{entry}");
        assert_eq!(
            entry["platform"],
            json!({"architecture": "unknown", "os": "unknown"}),
            "{entry}"
        );
        assert_eq!(
            entry["annotations"][REFERENCE_DIGEST],
            result.image.digest().as_str(),
            "{entry}"
        );
        assert_eq!(
            entry["annotations"][REFERENCE_TYPE], "attestation-manifest",
            "{entry}"
        );
        attested.push(result.image.architecture.as_str());
    }
    attested.sort_unstable();
    assert_eq!(attested, ["amd64", "arm64"], "one attestation per image");

    // sign: every digest, the attestations among them.
    release
        .stage("sign")
        .arg("--image-info")
        .arg(release.info())
        .arg("--key")
        .arg(&release.key)
        .arg("--manifest")
        .arg(&release.manifest)
        .run()
        .succeeded();
    let signed = read_json(&release.info());
    let mut references = Vec::new();
    for platform in platforms(&signed) {
        for record in [&platform, &platform["attestation"]] {
            assert!(
                record["signatures"]
                    .as_array()
                    .is_some_and(|all| !all.is_empty()),
                "signed: {platform}"
            );
            references.push(record["digest"].as_str().expect("a digest").to_owned());
        }
    }
    let manifest = &signed["repos"][0]["images"][0]["manifest"];
    assert!(
        manifest["signatures"]
            .as_array()
            .is_some_and(|all| !all.is_empty()),
        "{manifest}"
    );
    references.push(manifest["digest"].as_str().expect("a digest").to_owned());

    // verify in staging: five digests, the two attestations among them.
    let verified = release
        .stage("verify")
        .arg("--image-info")
        .arg(release.info())
        .arg("--key")
        .arg(release.public_key())
        .arg("--verbose")
        .run();
    verified.succeeded();
    assert_eq!(
        verified.stdout.matches("✓ signed").count(),
        5,
        "{}",
        verified.stdout
    );
    for result in &release.results {
        let attestation = result.attestation.digest().to_string();
        assert!(
            verified
                .stdout
                .lines()
                .any(|row| row.contains(&attestation) && row.contains("✓ signed")),
            "the attestation `{attestation}` is verified: {}",
            verified.stdout
        );
    }

    // test: the index is judged by its platforms, two, not by its four entries.
    let tested = release
        .stage("test")
        .arg("--manifest")
        .arg(&release.manifest)
        .arg("--image-info")
        .arg(release.info())
        .arg("--verbose")
        .run();
    tested.succeeded();
    let index_rows = rows(&tested.stdout, "index");
    assert_eq!(index_rows.len(), 1, "{}", tested.stdout);
    assert!(
        index_rows[0].contains("✓ passed: lists exactly the 2 platforms"),
        "{}",
        tested.stdout
    );
    assert_eq!(
        rows(&tested.stdout, "platform image").len(),
        2,
        "{}",
        tested.stdout
    );
    assert!(!tested.stdout.contains("✗"), "{}", tested.stdout);

    // publish, then check the public registry with the real tools.
    let written = release.publish();
    assert!(!written.is_empty(), "the first publish copies");
    let (published, published_digest) = served_index(&release.public.host(), "latest");
    assert_eq!(
        published_digest, index_digest,
        "the same index: {published:#}"
    );
    let public_key = release.public_key();
    assert_eq!(references.len(), 5, "{references:?}");
    for reference in &references {
        assert!(reference.starts_with(&release.public.host()), "{reference}");
        assert_eq!(
            common::verifiers::cosign_verify(&public_key, reference),
            Some(0),
            "cosign verify {reference}"
        );
    }
    let public_repository = format!("{}/{REPOSITORY}", release.public.host());
    let copied = common::verifiers::skopeo_policy_copy(
        release.folder.path(),
        &public_key,
        &public_repository,
        SignedIdentity::Repository(&public_repository),
        &format!("docker://{public_repository}:latest"),
    );
    assert!(
        copied.status.success(),
        "skopeo copy --all under a sigstoreSigned policy: {}",
        String::from_utf8_lossy(&copied.stderr)
    );
    // verify with no staging flags checks the public registry.
    let after_publish = Imagepipe::new()
        .arg("verify")
        .arg("--image-info")
        .arg(release.path("final-image-info.json"))
        .arg("--key")
        .arg(&public_key)
        .run();
    assert_eq!(after_publish.code, Some(0), "{}", after_publish.stderr);

    assert_eq!(
        release.publish(),
        Vec::<String>::new(),
        "publish again writes nothing"
    );
}

#[tokio::test]
async fn a_buildx_build_without_provenance_records_no_attestation() {
    let release = Release::prepare(false).await;
    release.build();
    let built = read_json(&release.info());
    for (platform, result) in platforms(&built).iter().zip(&release.results) {
        assert_eq!(
            platform["digest"],
            release.public_name(&result.image.digest()),
            "{platform}"
        );
        assert!(platform.get("attestation").is_none(), "{platform}");
    }
    release.create_manifest();
    let (index, _) = served_index(&release.staging.host(), "1.0");
    let entries = index["manifests"].as_array().expect("manifests");
    assert_eq!(entries.len(), 2, "the two images alone: {index:#}");
}
