//! `imagepipe sign` and `verify` on the whole chain post-build → create-manifest → sign, with signatures
//! checked by the real cosign and skopeo 1.18, and theirs checked by us.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use common::images::{TestImage, write_fragment};
use common::verifiers::SignedIdentity;
use common::{Imagepipe, Registry, path, read_json, strings};
use imagepipe::model::reference::Digest;
use imagepipe::store::registry::{ClientSettings, RegistryClient, RegistryStore};
use imagepipe::store::{ManifestReference, Store, signature_tag};
use serde_json::{Value, json};

const REPOSITORY: &str = "acme/app";
const PASSWORD: &str = "key-password-31";

/// One run of the chain up to create-manifest: two platform images in staging, their index, image-info.
struct Chain {
    staging: Registry,
    folder: tempfile::TempDir,
    /// The staging prefix; empty when staging names are the public names.
    prefix: String,
    info: PathBuf,
    manifest: PathBuf,
    store: RegistryStore,
    platforms: Vec<Digest>,
}

impl Chain {
    /// With `public` None, the manifest names staging itself as the public registry (no prefix), so that
    /// signatures cosign writes for staging references name the same repository as ours.
    async fn start(public: Option<&str>) -> Self {
        let staging = Registry::start();
        let folder = tempfile::tempdir().expect("temp dir");
        let (public, prefix) = match public {
            Some(public) => (public.to_owned(), "staging/7".to_owned()),
            None => (staging.host(), String::new()),
        };
        let manifest = folder.path().join("manifest.json");
        let declaration = json!({"registry": public, "repos": [{"name": REPOSITORY, "images": [
        {"sharedTags": {"1.0": {}, "latest": {}}, "platforms": [
            {"dockerfile": "src/amd64", "os": "linux", "osVersion": "bookworm", "tags": {"1.0-amd64": {}}},
            {"dockerfile": "src/arm64v8", "os": "linux", "osVersion": "bookworm", "architecture": "arm64", "variant": "v8", "tags": {"1.0-arm64v8": {}}}
        ]}]}]});
        std::fs::write(&manifest, declaration.to_string()).expect("writes");
        let client = Arc::new(RegistryClient::new(ClientSettings::default()).expect("client"));
        let store = RegistryStore::new(client, &staging.host());
        let staged = staged_repository(&prefix);
        let amd64 = TestImage::new("linux", "amd64", None, "sign-a");
        let arm64 = TestImage::new("linux", "arm64", Some("v8"), "sign-b");
        for (index, (image, dockerfile, tag)) in [
            (&amd64, "src/amd64", "1.0-amd64"),
            (&arm64, "src/arm64v8", "1.0-arm64v8"),
        ]
        .iter()
        .enumerate()
        {
            image.push(&store, &staged, None).await;
            let entry = image.platform_entry(&public, REPOSITORY, dockerfile, &[tag]);
            write_fragment(
                &folder.path().join(format!("fragments/leg-{index}.json")),
                REPOSITORY,
                vec![entry],
            );
        }
        let info = folder.path().join("image-info.json");
        let mut chain = Self {
            staging,
            folder,
            prefix,
            info,
            manifest,
            store,
            platforms: vec![amd64.digest(), arm64.digest()],
        };
        chain.succeed(&[
            "post-build",
            "--manifest",
            &path(&chain.manifest),
            "--fragments",
            &path(&chain.folder.path().join("fragments")),
            "--output",
            &path(&chain.info),
        ]);
        chain.info = chain.folder.path().join("image-info.json");
        chain
    }

    fn staged(&self) -> String {
        staged_repository(&self.prefix)
    }

    fn staging_arguments(&self) -> Vec<String> {
        let mut arguments = vec!["--staging-registry".to_owned(), self.staging.host()];
        if !self.prefix.is_empty() {
            arguments.extend(["--staging-prefix".to_owned(), self.prefix.clone()]);
        }
        arguments
    }

    fn create_manifest(&self) {
        let mut arguments = vec![
            "create-manifest".to_owned(),
            "--manifest".into(),
            path(&self.manifest),
            "--image-info".into(),
            path(&self.info),
        ];
        arguments.extend(self.staging_arguments());
        self.succeed(&strings(&arguments));
    }

    /// Writes a key pair with `imagepipe generate-key` and returns (private, public) paths.
    fn key_pair(&self, name: &str) -> (PathBuf, PathBuf) {
        let prefix = self.folder.path().join(name);
        self.succeed(&["generate-key", "--output-prefix", &path(&prefix)]);
        (prefix.with_extension("key"), prefix.with_extension("pub"))
    }

    /// `stage` (`sign` or `verify`) of image-info with `key`, in staging.
    fn key_stage_arguments(&self, stage: &str, key: &Path) -> Vec<String> {
        let mut arguments = vec![
            stage.to_owned(),
            "--image-info".into(),
            path(&self.info),
            "--key".into(),
            path(key),
        ];
        arguments.extend(self.staging_arguments());
        arguments
    }

    fn sign_arguments(&self, key: &Path) -> Vec<String> {
        self.key_stage_arguments("sign", key)
    }

    /// `imagepipe verify` with `public_key` in staging, then `extra` arguments.
    fn verify_arguments(&self, public_key: &Path, extra: &[&str]) -> Vec<String> {
        let mut arguments = self.key_stage_arguments("verify", public_key);
        arguments.extend(extra.iter().map(|argument| (*argument).to_owned()));
        arguments
    }

    /// The binary with `arguments`, the key password in `COSIGN_PASSWORD`.
    fn run(&self, arguments: &[&str]) -> (Option<i32>, String, String) {
        Imagepipe::new()
            .args(arguments)
            .env("COSIGN_PASSWORD", PASSWORD)
            .run()
            .into()
    }

    fn succeed(&self, arguments: &[&str]) -> String {
        let (code, stdout, stderr) = self.run(arguments);
        assert_eq!(code, Some(0), "{arguments:?}: {stderr}");
        stdout
    }

    /// Every digest image-info records: the platforms' and the index's.
    fn digests(&self) -> Vec<Digest> {
        let info = read_json(&self.info);
        let image = &info["repos"][0]["images"][0];
        let mut digests: Vec<String> = image["platforms"]
            .as_array()
            .expect("platforms")
            .iter()
            .filter_map(|platform| platform["digest"].as_str().map(str::to_owned))
            .collect();
        digests.extend(image["manifest"]["digest"].as_str().map(str::to_owned));
        digests
            .iter()
            .map(|reference| {
                reference
                    .rsplit_once('@')
                    .expect("@")
                    .1
                    .parse()
                    .expect("digest")
            })
            .collect()
    }

    /// How many signature layers the `.sig` manifests of all digests hold.
    async fn signature_layers(&self) -> usize {
        let mut layers = 0;
        for digest in self.digests() {
            let tag = signature_tag(&digest);
            if let Some(manifest) = self
                .store
                .get_manifest(&self.staged(), ManifestReference::Tag(&tag))
                .await
                .expect("reads")
            {
                let manifest: Value = serde_json::from_slice(&manifest.bytes).expect("JSON");
                layers += manifest["layers"].as_array().map_or(0, Vec::len);
            }
        }
        layers
    }

    /// `cosign verify --key` of a digest in staging: its exit code.
    fn cosign_verify(&self, public_key: &Path, digest: &Digest) -> Option<i32> {
        let reference = format!("{}/{}@{digest}", self.staging.host(), self.staged());
        cosign(&[
            "verify",
            "--key",
            &path(public_key),
            "--insecure-ignore-tlog=true",
            "--allow-http-registry",
            &reference,
        ])
        .status
        .code()
    }
}

fn staged_repository(prefix: &str) -> String {
    if prefix.is_empty() {
        REPOSITORY.to_owned()
    } else {
        format!("{prefix}/{REPOSITORY}")
    }
}

fn cosign(arguments: &[&str]) -> Output {
    Command::new(common::tools::cosign())
        .args(arguments)
        .env("COSIGN_PASSWORD", PASSWORD)
        .env("COSIGN_YES", "true")
        .output()
        .expect("cosign runs")
}

#[tokio::test]
async fn every_digest_is_signed_and_cosign_and_skopeo_accept_them() {
    let chain = Chain::start(Some("registry.example.com")).await;
    chain.create_manifest();
    let (private_key, public_key) = chain.key_pair("release");
    let stdout = chain.succeed(&strings(&chain.sign_arguments(&private_key)));
    assert_eq!(stdout, "");
    let digests = chain.digests();
    assert_eq!(digests.len(), 3, "two platform images and the index");
    assert_eq!(chain.signature_layers().await, 3);

    let info = read_json(&chain.info);
    let image = &info["repos"][0]["images"][0];
    assert_eq!(
        image["manifest"]["signatures"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(image["manifest"]["signatures"][0]["format"], "cosign-tag");
    let stages: Vec<&str> = info["pipeline"]["stages"]
        .as_array()
        .expect("ledger")
        .iter()
        .filter_map(|stage| stage["stage"].as_str())
        .collect();
    assert_eq!(stages, ["post-build", "create-manifest", "sign"]);

    // cosign checks each digest; it does not compare the signed identity with where it pulls from.
    for digest in &digests {
        assert_eq!(
            chain.cosign_verify(&public_key, digest),
            Some(0),
            "cosign verify {digest}"
        );
    }
    // skopeo checks every platform image, under a policy that wants signatures naming the public repository
    // for what it pulls from staging.
    let pulled = format!("{}/{}", chain.staging.host(), chain.staged());
    let copied = common::verifiers::skopeo_policy_copy(
        chain.folder.path(),
        &public_key,
        &pulled,
        SignedIdentity::Repository("registry.example.com/acme/app"),
        &format!("docker://{pulled}@{}", digests[2]),
    );
    assert!(
        copied.status.success(),
        "{}",
        String::from_utf8_lossy(&copied.stderr)
    );

    // By default a passing verify prints no report, only its summary line; `--verbose` prints every row.
    let (code, report, stderr) = chain.run(&strings(&chain.verify_arguments(&public_key, &[])));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(report, "");
    assert!(
        stderr.contains("verified 3 digests against key ")
            && stderr.contains(": 3 signed, 0 failing"),
        "{stderr}"
    );
    let report = chain.succeed(&strings(
        &chain.verify_arguments(&public_key, &["--verbose"]),
    ));
    assert!(
        report.starts_with("| digest | signature |\n|---|---|\n"),
        "{report}"
    );
    assert_eq!(report.lines().count(), 5, "{report}");
    assert_eq!(report.matches("✓ signed").count(), 3, "{report}");

    // The same content copied unsigned into another repository is refused by both.
    let unsigned = "unsigned/acme/app";
    for digest in &chain.platforms {
        let copier = imagepipe::store::copy::Copier {
            source: &chain.store,
            from: &chain.staged(),
            target: &chain.store,
            to: unsigned,
            same_store: true,
            listing: None,
            memory: None,
        };
        copier.copy_manifest(digest).await.expect("copies");
    }
    let index = digests.last().expect("index");
    imagepipe::store::copy::Copier {
        source: &chain.store,
        from: &chain.staged(),
        target: &chain.store,
        to: unsigned,
        same_store: true,
        listing: None,
        memory: None,
    }
    .copy_manifest(index)
    .await
    .expect("copies");
    let manifest = chain
        .store
        .get_manifest(unsigned, ManifestReference::Digest(index))
        .await
        .expect("reads")
        .expect("copied");
    chain
        .store
        .put_manifest(unsigned, ManifestReference::Tag("latest"), &manifest)
        .await
        .expect("tags");
    let reference = format!("{}/{unsigned}@{index}", chain.staging.host());
    let refused = cosign(&[
        "verify",
        "--key",
        &path(&public_key),
        "--insecure-ignore-tlog=true",
        "--allow-http-registry",
        &reference,
    ]);
    assert_ne!(
        refused.status.code(),
        Some(0),
        "cosign accepted an unsigned index"
    );
    let pulled_unsigned = format!("{}/{unsigned}", chain.staging.host());
    let refused = common::verifiers::skopeo_policy_copy(
        chain.folder.path(),
        &public_key,
        &pulled_unsigned,
        SignedIdentity::Repository("registry.example.com/acme/app"),
        &format!("docker://{pulled_unsigned}@{index}"),
    );
    assert!(!refused.status.success(), "skopeo accepted unsigned images");
}

#[tokio::test]
async fn signing_before_create_manifest_is_refused_and_writes_nothing() {
    let chain = Chain::start(Some("registry.example.com")).await;
    let (private_key, _) = chain.key_pair("release");
    let before = std::fs::read(&chain.info).expect("reads");
    let (code, _, stderr) = chain.run(&strings(&chain.sign_arguments(&private_key)));
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("stage `sign` needs `create-manifest` to have run first"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: run `imagepipe create-manifest`"),
        "{stderr}"
    );
    assert_eq!(
        chain.store.list_tags(&chain.staged()).await.expect("lists"),
        Vec::<String>::new(),
        "no signature was pushed"
    );
    assert_eq!(std::fs::read(&chain.info).expect("reads"), before);
}

#[tokio::test]
async fn re_signing_adds_nothing_and_other_keys_signatures_are_kept() {
    let chain = Chain::start(None).await;
    chain.create_manifest();
    let (ours, ours_public) = chain.key_pair("ours");
    let (theirs, theirs_public) = chain.key_pair("theirs");

    // Someone signed with another key first, with cosign.
    let host = chain.staging.host();
    for digest in chain.digests() {
        let reference = format!("{host}/{}@{digest}", chain.staged());
        let signed = cosign(&[
            "sign",
            "--key",
            &path(&theirs),
            "--tlog-upload=false",
            "--allow-http-registry",
            &reference,
        ]);
        assert!(
            signed.status.success(),
            "{}",
            String::from_utf8_lossy(&signed.stderr)
        );
    }
    assert_eq!(chain.signature_layers().await, 3);

    let (_, _, stderr) = chain.run(&strings(&chain.sign_arguments(&ours)));
    assert!(
        stderr.contains("3 digests signed with key") && stderr.contains("3 new, 0 already signed"),
        "{stderr}"
    );
    assert_eq!(
        chain.signature_layers().await,
        6,
        "ours added beside theirs"
    );
    let (_, _, stderr) = chain.run(&strings(&chain.sign_arguments(&ours)));
    assert!(stderr.contains("0 new, 3 already signed"), "{stderr}");
    assert_eq!(chain.signature_layers().await, 6, "a re-run adds nothing");

    for digest in chain.digests() {
        assert_eq!(chain.cosign_verify(&ours_public, &digest), Some(0));
        assert_eq!(chain.cosign_verify(&theirs_public, &digest), Some(0));
    }
    // cosign's signatures are recognised by imagepipe verify.
    let report = chain.succeed(&strings(
        &chain.verify_arguments(&theirs_public, &["--verbose"]),
    ));
    assert_eq!(report.matches("✓ signed").count(), 3, "{report}");
}

#[tokio::test]
async fn verify_lists_every_digest_without_a_valid_signature() {
    let chain = Chain::start(Some("registry.example.com")).await;
    chain.create_manifest();
    let (private_key, _) = chain.key_pair("release");
    let (_, other_public) = chain.key_pair("other");
    chain.succeed(&strings(&chain.sign_arguments(&private_key)));
    let (code, stdout, stderr) = chain.run(&strings(&chain.verify_arguments(&other_public, &[])));
    assert_eq!(code, Some(3), "{stderr}");
    assert_eq!(stdout.lines().count(), 5, "{stdout}");
    assert_eq!(stdout.matches("✗").count(), 3, "{stdout}");
    assert!(
        stderr.contains("3 of 3 digests lack a valid signature"),
        "{stderr}"
    );
    for digest in chain.digests() {
        assert!(stderr.contains(digest.as_str()), "{stderr}");
    }
}

#[tokio::test]
async fn verify_prints_only_the_failing_digests_unless_verbose() {
    let chain = Chain::start(Some("registry.example.com")).await;
    chain.create_manifest();
    let (private_key, public_key) = chain.key_pair("release");
    chain.succeed(&strings(&chain.sign_arguments(&private_key)));
    // The first platform's record swapped for an image in staging that nobody signed.
    let unsigned = TestImage::new("linux", "amd64", None, "never-signed");
    unsigned.push(&chain.store, &chain.staged(), None).await;
    let mut info = read_json(&chain.info);
    let platform = &mut info["repos"][0]["images"][0]["platforms"][0]["digest"];
    let recorded = platform.as_str().expect("digest").to_owned();
    let (name, _) = recorded.rsplit_once('@').expect("@");
    let swapped = format!("{name}@{}", unsigned.digest());
    *platform = swapped.clone().into();
    std::fs::write(&chain.info, info.to_string()).expect("writes");

    let (code, stdout, stderr) = chain.run(&strings(&chain.verify_arguments(&public_key, &[])));
    assert_eq!(code, Some(3), "{stderr}");
    assert_eq!(
        stdout,
        format!("| digest | signature |\n|---|---|\n| `{swapped}` | ✗ no signature |\n")
    );
    // The error line is the summary; nothing else is logged (the bad-input corpus holds every refusal to this).
    let errors = common::error_lines(&stderr);
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains("1 of 3 digests lack a valid signature"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 2, "an error and a hint: {stderr}");

    let (code, stdout, stderr) = chain.run(&strings(
        &chain.verify_arguments(&public_key, &["--verbose"]),
    ));
    assert_eq!(code, Some(3), "{stderr}");
    assert_eq!(stdout.lines().count(), 5, "{stdout}");
    assert_eq!(stdout.matches("✓ signed").count(), 2, "{stdout}");
    assert_eq!(stdout.matches("✗ no signature").count(), 1, "{stdout}");

    // Under GitHub Actions the step summary has every row, while stdout keeps to the failing one.
    let summary = chain.folder.path().join("github-summary.md");
    let ran = Imagepipe::new()
        .args(chain.verify_arguments(&public_key, &[]))
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .run();
    assert_eq!(ran.code, Some(3), "{}", ran.stderr);
    let summary = std::fs::read_to_string(&summary).expect("the summary is written");
    assert!(summary.starts_with("### imagepipe verify\n"), "{summary}");
    assert_eq!(summary.matches("✓ signed").count(), 2, "{summary}");
    assert_eq!(summary.matches("✗ no signature").count(), 1, "{summary}");
    assert!(!ran.stdout.contains("✓ signed"), "{}", ran.stdout);
    assert_eq!(
        ran.stdout.matches("✗ no signature").count(),
        1,
        "{}",
        ran.stdout
    );
}

#[tokio::test]
async fn key_problems_are_one_clear_line_without_key_material() {
    let chain = Chain::start(Some("registry.example.com")).await;
    chain.create_manifest();
    let (private_key, public_key) = chain.key_pair("release");
    let key_text = std::fs::read_to_string(&private_key).expect("reads");
    let secret_lines: Vec<&str> = key_text
        .lines()
        .filter(|line| !line.starts_with("-----") && line.len() > 20)
        .collect();

    let wrong = Imagepipe::new()
        .args(chain.sign_arguments(&private_key))
        .env("COSIGN_PASSWORD", "not-the-password")
        .run();
    let missing = chain.run(&strings(
        &chain.sign_arguments(&chain.folder.path().join("absent.key")),
    ));
    let public = chain.run(&strings(&chain.sign_arguments(&public_key)));
    let cases = [
        ("wrong password", wrong.code, wrong.stderr, "wrong password"),
        ("missing file", missing.0, missing.2, "absent.key"),
        ("public key", public.0, public.2, "public key"),
    ];
    for (case, code, stderr, expected) in cases {
        assert_eq!(code, Some(2), "{case}: {stderr}");
        let errors = common::error_lines(&stderr);
        assert_eq!(errors.len(), 1, "{case}: {stderr}");
        assert!(
            errors[0].to_lowercase().contains(expected),
            "{case}: {stderr}"
        );
        assert!(
            !stderr.contains("not-the-password") && !stderr.contains(PASSWORD),
            "{case}: {stderr}"
        );
        for line in &secret_lines {
            assert!(!stderr.contains(line), "{case}: key material in {stderr}");
        }
    }
    assert_eq!(chain.signature_layers().await, 0);
}

#[tokio::test]
async fn referrers_mode_needs_the_referrers_api() {
    let chain = Chain::start(Some("registry.example.com")).await;
    chain.create_manifest();
    let (private_key, _) = chain.key_pair("release");
    let mut referrers = chain.sign_arguments(&private_key);
    referrers.extend(["--signature-mode".to_owned(), "referrers".to_owned()]);
    let (code, _, stderr) = chain.run(&strings(&referrers));
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("has no referrers API"), "{stderr}");
    assert!(
        stderr.contains("hint: use `--signature-mode tag`"),
        "{stderr}"
    );
    assert_eq!(chain.signature_layers().await, 0);

    // `auto` falls back to the `.sig` tag on a registry without the API (distribution 2.8).
    let mut auto = chain.sign_arguments(&private_key);
    auto.extend(["--signature-mode".to_owned(), "auto".to_owned()]);
    chain.succeed(&strings(&auto));
    assert_eq!(chain.signature_layers().await, 3);
}

/// Every tag of the staging repository under `prefix`.
async fn tags_under(chain: &Chain, prefix: &str) -> Vec<String> {
    chain
        .store
        .list_tags(&staged_repository(prefix))
        .await
        .expect("lists")
}

#[tokio::test]
async fn signing_a_staging_prefix_that_holds_none_of_the_digests_is_refused_naming_them_all() {
    let chain = Chain::start(Some("registry.example.com")).await;
    chain.create_manifest();
    let (private_key, _) = chain.key_pair("release");
    let before = std::fs::read(&chain.info).expect("reads");
    let mut arguments = chain.sign_arguments(&private_key);
    let prefix = arguments
        .iter()
        .position(|argument| *argument == chain.prefix)
        .expect("prefix flag");
    arguments[prefix] = "staging/8".to_owned();
    let (code, _, stderr) = chain.run(&strings(&arguments));
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("3 of 3 digests are not in staging"),
        "{stderr}"
    );
    for digest in chain.digests() {
        assert!(stderr.contains(digest.as_str()), "{digest}: {stderr}");
    }
    assert!(
        stderr.contains("hint: ") && stderr.contains("--staging-prefix"),
        "{stderr}"
    );
    assert_eq!(tags_under(&chain, "staging/8").await, Vec::<String>::new());
    assert_eq!(std::fs::read(&chain.info).expect("reads"), before);
}

#[tokio::test]
async fn one_digest_missing_from_staging_means_nothing_is_signed() {
    let chain = Chain::start(Some("registry.example.com")).await;
    chain.create_manifest();
    let (private_key, _) = chain.key_pair("release");
    let absent = Digest::of(b"never pushed");
    let mut info = read_json(&chain.info);
    let platform = &mut info["repos"][0]["images"][0]["platforms"][0]["digest"];
    let recorded = platform.as_str().expect("digest").to_owned();
    let (name, _) = recorded.rsplit_once('@').expect("@");
    *platform = format!("{name}@{absent}").into();
    std::fs::write(&chain.info, info.to_string()).expect("writes");

    let (code, _, stderr) = chain.run(&strings(&chain.sign_arguments(&private_key)));
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("1 of 3 digests are not in staging"),
        "{stderr}"
    );
    assert!(stderr.contains(absent.as_str()), "{stderr}");
    assert_eq!(chain.signature_layers().await, 0, "nothing was signed");
}

#[tokio::test]
async fn a_digest_renamed_to_another_repository_is_invalid_input_and_not_signed() {
    let chain = Chain::start(Some("registry.example.com")).await;
    chain.create_manifest();
    let (private_key, _) = chain.key_pair("release");
    let original = std::fs::read(&chain.info).expect("reads");
    let rename = |name: &str| {
        let mut info: Value = serde_json::from_slice(&original).expect("JSON");
        let platform = &mut info["repos"][0]["images"][0]["platforms"][0]["digest"];
        let recorded = platform.as_str().expect("digest").to_owned();
        let (_, digest) = recorded.rsplit_once('@').expect("@");
        *platform = format!("{name}@{digest}").into();
        std::fs::write(&chain.info, info.to_string()).expect("writes");
        format!("{name}@{digest}")
    };
    for (name, found) in [
        ("evil.example.net/other/thing", "repository `other/thing`"),
        ("evil.example.net/acme/app", "registry `evil.example.net`"),
    ] {
        let reference = rename(name);
        let (code, _, stderr) = chain.run(&["validate", "--image-info", &path(&chain.info)]);
        assert_eq!(code, Some(2), "{name}: {stderr}");
        let errors = common::error_lines(&stderr);
        assert_eq!(errors.len(), 1, "{name}: {stderr}");
        for part in [
            path(&chain.info).as_str(),
            "repos[0].images[0].platforms[0].digest",
            found,
            &reference,
        ] {
            assert!(errors[0].contains(part), "{name}: `{part}` in {stderr}");
        }
        let (code, _, stderr) = chain.run(&strings(&chain.sign_arguments(&private_key)));
        assert_eq!(code, Some(2), "{name}: {stderr}");
        assert_eq!(chain.signature_layers().await, 0, "{name}: nothing signed");
    }

    // Every digest renamed to another registry agrees with itself; the manifest knows the public registry.
    let renamed = String::from_utf8(original)
        .expect("UTF-8")
        .replace("registry.example.com/", "evil.example.net/");
    std::fs::write(&chain.info, renamed).expect("writes");
    let mut arguments = chain.sign_arguments(&private_key);
    arguments.extend(["--manifest".to_owned(), path(&chain.manifest)]);
    let (code, _, stderr) = chain.run(&strings(&arguments));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("evil.example.net"), "{stderr}");
    assert!(stderr.contains("registry.example.com"), "{stderr}");
    assert_eq!(chain.signature_layers().await, 0, "nothing signed");
}
