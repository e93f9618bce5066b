//! `imagepipe publish` between two real registries, "staging" and "public": exact copies with signatures,
//! accepted by cosign and skopeo 1.18 on the public side with no identity remapping; safe re-runs; a target
//! that dies part-way.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::images::{TestImage, write_fragment};
use common::proxy::FaultProxy;
use common::verifiers::SignedIdentity;
use common::{Imagepipe, Ran, Registry, path, read_json, strings};
use imagepipe::model::reference::Digest;
use imagepipe::store::registry::{ClientSettings, RegistryClient, RegistryStore};
use imagepipe::store::{ManifestReference, Store, our_digest, signature_tag};
use serde_json::{Value, json};

const PREFIX: &str = "staging/9";
const PASSWORD: &str = "publish-key-pw";

/// A release run up to sign: `images` images of `acme/app-N`, two platforms each, in staging.
struct Release {
    staging: Registry,
    public: Registry,
    folder: tempfile::TempDir,
    info: PathBuf,
    public_key: PathBuf,
    private_key: PathBuf,
}

fn client() -> Arc<RegistryClient> {
    Arc::new(RegistryClient::new(ClientSettings::default()).expect("client"))
}

/// The binary with `arguments`, the key password in `COSIGN_PASSWORD`.
fn imagepipe(arguments: &[&str]) -> Ran {
    Imagepipe::new()
        .args(arguments)
        .env("COSIGN_PASSWORD", PASSWORD)
        .run()
}

fn succeed(arguments: &[&str]) -> String {
    let Ran { code, stderr, .. } = imagepipe(arguments);
    assert!(code == Some(0), "{arguments:?}: {stderr}");
    stderr
}

impl Release {
    async fn build(images: usize, sign: bool) -> Self {
        let staging = Registry::start();
        let public = Registry::start();
        let folder = tempfile::tempdir().expect("temp dir");
        let store = RegistryStore::new(client(), &staging.host());
        let mut declared = Vec::new();
        for image in 0..images {
            let repository = format!("acme/app-{image}");
            let amd64 = TestImage::new("linux", "amd64", None, &format!("publish-{image}-a"));
            let arm64 = TestImage::new("linux", "arm64", Some("v8"), &format!("publish-{image}-b"));
            let mut entries = Vec::new();
            for (built, dockerfile, tag) in [
                (&amd64, "src/amd64", "1.0-amd64"),
                (&arm64, "src/arm64v8", "1.0-arm64v8"),
            ] {
                built
                    .push(&store, &format!("{PREFIX}/{repository}"), None)
                    .await;
                entries.push(built.platform_entry(&public.host(), &repository, dockerfile, &[tag]));
            }
            write_fragment(
                &folder.path().join(format!("fragments/leg-{image:02}.json")),
                &repository,
                entries,
            );
            declared.push(json!({"name": repository, "images": [{"sharedTags": {"1.0": {}, "latest": {}}, "platforms": [
                {"dockerfile": "src/amd64", "os": "linux", "osVersion": "bookworm", "tags": {"1.0-amd64": {}}},
                {"dockerfile": "src/arm64v8", "os": "linux", "osVersion": "bookworm", "architecture": "arm64", "variant": "v8", "tags": {"1.0-arm64v8": {}}}
            ]}]}));
        }
        let manifest = folder.path().join("manifest.json");
        std::fs::write(
            &manifest,
            json!({"registry": public.host(), "repos": declared}).to_string(),
        )
        .expect("writes");
        let info = folder.path().join("image-info.json");
        let staging_flags = [
            "--staging-registry",
            &staging.host(),
            "--staging-prefix",
            PREFIX,
        ];
        succeed(&[
            "post-build",
            "--manifest",
            &path(&manifest),
            "--fragments",
            &path(&folder.path().join("fragments")),
            "--output",
            &path(&info),
        ]);
        let mut create = vec![
            "create-manifest",
            "--manifest",
            &path(&manifest),
            "--image-info",
            &path(&info),
        ]
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
        create.extend(staging_flags.iter().map(|flag| (*flag).to_owned()));
        succeed(&strings(&create));
        let key = folder.path().join("release");
        succeed(&["generate-key", "--output-prefix", &path(&key)]);
        let (private_key, public_key) = (key.with_extension("key"), key.with_extension("pub"));
        if sign {
            let mut signing = vec![
                "sign".to_owned(),
                "--image-info".into(),
                path(&info),
                "--key".into(),
                path(&private_key),
            ];
            signing.extend(staging_flags.iter().map(|flag| (*flag).to_owned()));
            succeed(&strings(&signing));
        }
        Self {
            staging,
            public,
            folder,
            info,
            public_key,
            private_key,
        }
    }

    fn publish_arguments(&self, output: &Path) -> Vec<String> {
        [
            "publish",
            "--image-info",
            &path(&self.info),
            "--staging-registry",
            &self.staging.host(),
            "--staging-prefix",
            PREFIX,
            "--output",
            &path(output),
        ]
        .iter()
        .map(|argument| (*argument).to_owned())
        .collect()
    }

    fn publish(&self, extra: &[&str]) -> (Option<i32>, String, String) {
        let mut arguments = self.publish_arguments(&self.folder.path().join("final.json"));
        arguments.extend(extra.iter().map(|argument| (*argument).to_owned()));
        imagepipe(&strings(&arguments)).into()
    }

    /// Every digest image-info records, by repository.
    fn digests(&self) -> Vec<(String, Digest)> {
        let info = read_json(&self.info);
        let mut digests = Vec::new();
        for repo in info["repos"].as_array().expect("repos") {
            let repository = repo["repo"].as_str().expect("repo").to_owned();
            for image in repo["images"].as_array().expect("images") {
                let mut references: Vec<&str> = image["platforms"]
                    .as_array()
                    .expect("platforms")
                    .iter()
                    .filter_map(|platform| platform["digest"].as_str())
                    .collect();
                references.extend(image["manifest"]["digest"].as_str());
                for reference in references {
                    let digest = reference
                        .rsplit_once('@')
                        .expect("@")
                        .1
                        .parse()
                        .expect("digest");
                    digests.push((repository.clone(), digest));
                }
            }
        }
        digests
    }
}

/// Every tag of `repository` in `store` points at a manifest whose children and blobs are all there.
async fn tags_point_at_complete_content(
    store: &RegistryStore,
    repository: &str,
) -> Result<usize, String> {
    let tags = store
        .list_tags(repository)
        .await
        .map_err(|error| error.to_string())?;
    for tag in &tags {
        let manifest = store
            .get_manifest(repository, ManifestReference::Tag(tag))
            .await
            .map_err(|error| error.to_string())?
            .ok_or_else(|| format!("`{repository}:{tag}` points at nothing"))?;
        complete(store, repository, &manifest.bytes)
            .await
            .map_err(|missing| format!("`{repository}:{tag}`: {missing}"))?;
    }
    Ok(tags.len())
}

async fn complete(store: &RegistryStore, repository: &str, manifest: &[u8]) -> Result<(), String> {
    let manifest: Value = serde_json::from_slice(manifest).map_err(|error| error.to_string())?;
    for child in manifest["manifests"].as_array().into_iter().flatten() {
        let digest: Digest = child["digest"]
            .as_str()
            .unwrap_or_default()
            .parse()
            .map_err(|_| "bad child digest".to_owned())?;
        let bytes = store
            .get_manifest(repository, ManifestReference::Digest(&digest))
            .await
            .map_err(|error| error.to_string())?
            .ok_or_else(|| format!("child {digest} is missing"))?;
        Box::pin(complete(store, repository, &bytes.bytes)).await?;
    }
    let blobs = manifest["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(std::iter::once(&manifest["config"]));
    for blob in blobs.filter(|blob| blob.is_object()) {
        let digest: Digest = blob["digest"]
            .as_str()
            .unwrap_or_default()
            .parse()
            .map_err(|_| "bad blob digest".to_owned())?;
        if store
            .blob_size(repository, &digest)
            .await
            .map_err(|error| error.to_string())?
            .is_none()
        {
            return Err(format!("blob {digest} is missing"));
        }
    }
    Ok(())
}

#[tokio::test]
async fn the_public_registry_gets_exact_copies_with_signatures_that_verify_there() {
    let release = Release::build(1, true).await;
    let (code, stdout, stderr) = release.publish(&[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout, "");
    let public = RegistryStore::new(client(), &release.public.host());
    let staging = RegistryStore::new(client(), &release.staging.host());
    for (repository, digest) in release.digests() {
        let copied = public
            .get_manifest(&repository, ManifestReference::Digest(&digest))
            .await
            .expect("reads")
            .expect("copied");
        let original = staging
            .get_manifest(
                &format!("{PREFIX}/{repository}"),
                ManifestReference::Digest(&digest),
            )
            .await
            .expect("reads")
            .expect("staged");
        assert_eq!(copied.bytes, original.bytes, "byte-identical");
        let tag = signature_tag(&digest);
        let signature = public
            .head_manifest(&repository, ManifestReference::Tag(&tag))
            .await
            .expect("reads")
            .expect("signature copied");
        let staged_signature = staging
            .head_manifest(
                &format!("{PREFIX}/{repository}"),
                ManifestReference::Tag(&tag),
            )
            .await
            .expect("reads")
            .expect("signed");
        assert_eq!(
            our_digest(signature.digest()),
            our_digest(staged_signature.digest())
        );

        let reference = format!("{}/{repository}@{digest}", release.public.host());
        let verified = Command::new(common::tools::cosign())
            .args([
                "verify",
                "--key",
                &path(&release.public_key),
                "--insecure-ignore-tlog=true",
                "--allow-http-registry",
                &reference,
            ])
            .output()
            .expect("cosign runs");
        assert_eq!(
            verified.status.code(),
            Some(0),
            "cosign verify {reference}: {}",
            String::from_utf8_lossy(&verified.stderr)
        );
    }
    for tag in ["1.0", "latest", "1.0-amd64", "1.0-arm64v8"] {
        assert!(
            public
                .head_manifest("acme/app-0", ManifestReference::Tag(tag))
                .await
                .expect("reads")
                .is_some(),
            "{tag}"
        );
    }
    assert_eq!(
        tags_point_at_complete_content(&public, "acme/app-0").await,
        Ok(4 + 3)
    );

    // skopeo 1.18 requiring the signature to name the repository pulled from, without remapping. (cosign-style
    // signatures name a repository without tag or digest, which skopeo's default rule, matchRepoDigestOrExact,
    // never accepts; matchRepository is the rule for them.)
    let index = release.digests().last().expect("index").1.clone();
    let copied = common::verifiers::skopeo_policy_copy(
        release.folder.path(),
        &release.public_key,
        &release.public.host(),
        SignedIdentity::PulledRepository,
        &format!("docker://{}/acme/app-0@{index}", release.public.host()),
    );
    assert!(
        copied.status.success(),
        "{}",
        String::from_utf8_lossy(&copied.stderr)
    );

    // imagepipe verify on the public registry, and the final image-info's ledger.
    let final_info = release.folder.path().join("final.json");
    Imagepipe::new()
        .args([
            "verify",
            "--image-info",
            &path(&final_info),
            "--key",
            &path(&release.public_key),
        ])
        .run()
        .succeeded();
    let recorded = read_json(&final_info);
    let stages: Vec<&str> = recorded["pipeline"]["stages"]
        .as_array()
        .expect("ledger")
        .iter()
        .filter_map(|stage| stage["stage"].as_str())
        .collect();
    assert_eq!(
        stages,
        ["post-build", "create-manifest", "sign", "publish", "verify"]
    );

    // A re-run copies nothing.
    let (code, _, stderr) = release.publish(&[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("0 objects copied (0 bytes)"), "{stderr}");
    assert!(stderr.contains("0 tags set"), "{stderr}");
}

#[tokio::test]
async fn a_dry_run_touches_nothing() {
    let release = Release::build(2, true).await;
    let (code, stdout, stderr) = release.publish(&["--dry-run"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stdout
            .lines()
            .filter(|line| line.starts_with("copy "))
            .count(),
        6,
        "{stdout}"
    );
    assert_eq!(
        stdout
            .lines()
            .filter(|line| line.starts_with("tag  "))
            .count(),
        8,
        "{stdout}"
    );
    let public = RegistryStore::new(client(), &release.public.host());
    for image in 0..2 {
        assert_eq!(
            public
                .list_tags(&format!("acme/app-{image}"))
                .await
                .expect("lists"),
            Vec::<String>::new()
        );
    }
    assert!(!release.folder.path().join("final.json").exists());
}

/// Asserts that the public registry holds none of `release`'s manifests and tags, and that no final image-info
/// was written: what a refusal must leave behind.
async fn nothing_published(release: &Release) {
    let public = RegistryStore::new(client(), &release.public.host());
    for (repository, digest) in release.digests() {
        assert_eq!(
            public
                .head_manifest(&repository, ManifestReference::Digest(&digest))
                .await
                .expect("reads"),
            None,
            "{repository}@{digest} was copied"
        );
        assert_eq!(
            public.list_tags(&repository).await.expect("lists"),
            Vec::<String>::new(),
            "{repository} was tagged"
        );
    }
    assert!(!release.folder.path().join("final.json").exists());
}

#[tokio::test]
async fn a_sign_entry_written_into_the_ledger_by_hand_publishes_nothing() {
    let release = Release::build(1, false).await;
    let mut info = read_json(&release.info);
    let stages = info["pipeline"]["stages"].as_array_mut().expect("ledger");
    stages.push(
        json!({"stage": "sign", "completed": "2030-01-01T00:00:00Z", "tool": "imagepipe 0.1.0"}),
    );
    std::fs::write(&release.info, info.to_string()).expect("writes");

    let (code, _, stderr) = release.publish(&[]);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("3 of 3 digests have no signature in staging"),
        "{stderr}"
    );
    for (_, digest) in release.digests() {
        assert!(stderr.contains(digest.as_str()), "{digest}: {stderr}");
    }
    assert!(stderr.contains("hint: "), "{stderr}");
    assert!(stderr.contains("--allow-unsigned"), "{stderr}");
    nothing_published(&release).await;
}

#[tokio::test]
async fn signature_records_without_signature_objects_in_staging_publish_nothing() {
    // Signed under staging/9; the same images (not their signatures) copied to staging/10, and one signature.
    let release = Release::build(1, true).await;
    let staging = RegistryStore::new(client(), &release.staging.host());
    let (from, to) = (
        format!("{PREFIX}/acme/app-0"),
        "staging/10/acme/app-0".to_owned(),
    );
    let copier = imagepipe::store::copy::Copier {
        source: &staging,
        from: &from,
        target: &staging,
        to: &to,
        same_store: true,
        listing: None,
        memory: None,
    };
    let digests = release.digests();
    for (_, digest) in &digests {
        copier.copy_manifest(digest).await.expect("copies");
    }
    let (_, signed) = &digests[0];
    copier.copy_signatures(signed).await.expect("copies");
    let info = read_json(&release.info);
    assert!(
        info["repos"][0]["images"][0]["platforms"][0]["signatures"][0]["digest"].is_string(),
        "image-info records the signatures: {info}"
    );

    let mut arguments = release.publish_arguments(&release.folder.path().join("final.json"));
    let prefix = arguments
        .iter()
        .position(|argument| argument == PREFIX)
        .expect("prefix flag");
    arguments[prefix] = "staging/10".to_owned();
    let Ran { code, stderr, .. } = imagepipe(&strings(&arguments));
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("2 of 3 digests have no signature in staging"),
        "{stderr}"
    );
    for (_, digest) in &digests[1..] {
        assert!(stderr.contains(digest.as_str()), "{digest}: {stderr}");
    }
    assert!(!stderr.contains(signed.as_str()), "{stderr}");
    nothing_published(&release).await;
}

#[tokio::test]
async fn unsigned_releases_are_refused_unless_allowed() {
    let release = Release::build(1, false).await;
    let (code, _, stderr) = release.publish(&[]);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("stage `publish` needs `sign` to have run first"),
        "{stderr}"
    );
    let (code, _, stderr) = release.publish(&["--require-verify"]);
    assert_eq!(code, Some(3), "{stderr}");
    let (code, _, stderr) = release.publish(&["--allow-unsigned"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("--allow-unsigned"), "{stderr}");
    let _ = &release.private_key;
}

/// Starts a publish of `release` to `target` (a proxy in front of the public registry), and once the proxy has
/// seen `requests` requests, runs `interrupt`; returns the publish's exit code and stderr.
fn publish_interrupted(
    release: &mut Release,
    proxy: &FaultProxy,
    arguments: &[String],
    requests: usize,
    interrupt: impl FnOnce(&mut Release),
) -> (Option<i32>, String) {
    let publishing = Imagepipe::new()
        .args(arguments)
        .command()
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runs");
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy.requests().len() < requests && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    interrupt(release);
    let output = publishing.wait_with_output().expect("ends");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The publish arguments of `release` with the proxy as target and two images at a time.
fn publish_through(release: &Release, proxy: &FaultProxy) -> Vec<String> {
    let mut arguments = release.publish_arguments(&release.folder.path().join("final.json"));
    arguments.extend([
        "--registry-override".to_owned(),
        proxy.host(),
        "--jobs".to_owned(),
        "2".to_owned(),
    ]);
    arguments
}

async fn tags_on_complete_content(public: &RegistryStore, images: usize) -> usize {
    let mut tags = 0;
    for image in 0..images {
        tags += tags_point_at_complete_content(public, &format!("acme/app-{image}"))
            .await
            .expect("complete content");
    }
    tags
}

/// What imagepipe guarantees when the network to the target fails part-way: no tag points at missing content
/// (content goes before tags), and a re-run completes. The connection is cut at the proxy, so the registry
/// itself never dies mid-write.
#[tokio::test]
async fn a_target_cut_off_part_way_leaves_no_tag_on_missing_content_and_a_re_run_completes() {
    let mut release = Release::build(20, true).await;
    let proxy = FaultProxy::start(&release.public.host(), "", Vec::new());
    let arguments = publish_through(&release, &proxy);
    let (code, stderr) = publish_interrupted(&mut release, &proxy, &arguments, 60, |_| proxy.cut());
    assert_eq!(
        code,
        Some(1),
        "the publish must fail once the target is cut off: {stderr}"
    );

    let public = RegistryStore::new(client(), &release.public.host());
    let tags_before = tags_on_complete_content(&public, 20).await;
    proxy.mend();
    imagepipe(&strings(&arguments)).succeeded();
    let tags_after = tags_on_complete_content(&public, 20).await;
    assert_eq!(
        tags_after,
        20 * (4 + 3),
        "every image tagged, with its signatures ({tags_before} tags after the cut)"
    );
}

/// A registry killed mid-publish may tear what it was writing at that moment, which no client can prevent; what
/// imagepipe guarantees is that a re-run after the restart converges on the complete, tagged release.
#[tokio::test]
async fn a_re_run_after_the_target_was_killed_part_way_converges() {
    let mut release = Release::build(20, true).await;
    let proxy = FaultProxy::start(&release.public.host(), "", Vec::new());
    let arguments = publish_through(&release, &proxy);
    let (code, stderr) = publish_interrupted(&mut release, &proxy, &arguments, 60, |release| {
        release.public.kill()
    });
    assert_eq!(
        code,
        Some(1),
        "the publish must fail once the target is gone: {stderr}"
    );

    release.public.restart();
    imagepipe(&strings(&arguments)).succeeded();
    let public = RegistryStore::new(client(), &release.public.host());
    assert_eq!(tags_on_complete_content(&public, 20).await, 20 * (4 + 3));
}
