//! `imagepipe test` on the chain post-build → create-manifest, against a real registry: what passes, each kind
//! of difference between staging and image-info, and the user's test command.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use common::images::{TestImage, write_fragment};
use common::{Imagepipe, Registry, path, read_json, strings};
use imagepipe::model::reference::Digest;
use imagepipe::store::registry::{ClientSettings, RegistryClient, RegistryStore};
use imagepipe::store::{ManifestReference, Store, StoredManifest, media_type};
use serde_json::{Value, json};

const PUBLIC: &str = "registry.example.com";
const REPOSITORY: &str = "acme/app";
const PREFIX: &str = "staging/7";

/// The declared platforms: Dockerfile, architecture, variant, simple tag.
const DECLARED: [(&str, &str, Option<&str>, &str); 2] = [
    ("src/amd64", "amd64", None, "1.0-amd64"),
    ("src/arm64v8", "arm64", Some("v8"), "1.0-arm64v8"),
];

/// The chain up to post-build: two platform images pushed by digest to staging (under the prefix), their
/// fragments merged into image-info.
struct Chain {
    staging: Registry,
    folder: tempfile::TempDir,
    manifest: PathBuf,
    info: PathBuf,
    store: RegistryStore,
    /// The platform images, in the order of [`DECLARED`].
    images: Vec<TestImage>,
}

impl Chain {
    /// The usual build: each image's config names its declared platform.
    async fn start() -> Self {
        Self::start_with([
            TestImage::new("linux", "amd64", None, "test-a"),
            TestImage::new("linux", "arm64", Some("v8"), "test-b"),
        ])
        .await
    }

    /// A build of `images`, recorded in image-info as the declared platforms whatever their configs say.
    async fn start_with(images: [TestImage; 2]) -> Self {
        let staging = Registry::start();
        let folder = tempfile::tempdir().expect("temp dir");
        let manifest = folder.path().join("manifest.json");
        let platforms: Vec<Value> = DECLARED
            .iter()
            .map(|(dockerfile, architecture, variant, tag)| {
                let mut platform = json!({"dockerfile": dockerfile, "os": "linux", "osVersion": "bookworm",
                    "architecture": architecture, "tags": {*tag: {}}});
                if let Some(variant) = variant {
                    platform["variant"] = (*variant).into();
                }
                platform
            })
            .collect();
        let declaration = json!({"registry": PUBLIC, "repos": [{"name": REPOSITORY, "images": [
            {"sharedTags": {"1.0": {}, "latest": {}}, "platforms": platforms}
        ]}]});
        std::fs::write(&manifest, declaration.to_string()).expect("writes");
        let client = Arc::new(RegistryClient::new(ClientSettings::default()).expect("client"));
        let store = RegistryStore::new(client, &staging.host());
        for (index, (image, (dockerfile, architecture, variant, tag))) in
            images.iter().zip(DECLARED).enumerate()
        {
            image.push(&store, &staged(), None).await;
            let mut entry = image.platform_entry(PUBLIC, REPOSITORY, dockerfile, &[tag]);
            entry["architecture"] = architecture.into();
            match variant {
                Some(variant) => entry["variant"] = variant.into(),
                None => {
                    if let Some(entry) = entry.as_object_mut() {
                        entry.remove("variant");
                    }
                }
            }
            write_fragment(
                &folder.path().join(format!("fragments/leg-{index}.json")),
                REPOSITORY,
                vec![entry],
            );
        }
        let chain = Self {
            staging,
            manifest,
            info: folder.path().join("image-info.json"),
            folder,
            store,
            images: images.into(),
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
        chain
    }

    fn staging_arguments(&self) -> Vec<String> {
        vec![
            "--staging-registry".to_owned(),
            self.staging.host(),
            "--staging-prefix".to_owned(),
            PREFIX.to_owned(),
        ]
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

    /// `imagepipe test` with `extra` arguments: exit code, stdout, stderr.
    fn test(&self, extra: &[&str]) -> (Option<i32>, String, String) {
        self.test_with(extra, &[])
    }

    fn test_with(
        &self,
        extra: &[&str],
        environment: &[(&str, String)],
    ) -> (Option<i32>, String, String) {
        let mut arguments = vec![
            "test".to_owned(),
            "--manifest".into(),
            path(&self.manifest),
            "--image-info".into(),
            path(&self.info),
        ];
        arguments.extend(self.staging_arguments());
        arguments.extend(extra.iter().map(|argument| (*argument).to_owned()));
        self.run_with(&strings(&arguments), environment)
    }

    fn run(&self, arguments: &[&str]) -> (Option<i32>, String, String) {
        self.run_with(arguments, &[])
    }

    fn run_with(
        &self,
        arguments: &[&str],
        environment: &[(&str, String)],
    ) -> (Option<i32>, String, String) {
        Imagepipe::new()
            .args(arguments)
            .envs(environment.iter().map(|(name, value)| (name, value)))
            .run()
            .into()
    }

    fn succeed(&self, arguments: &[&str]) -> String {
        let (code, stdout, stderr) = self.run(arguments);
        assert_eq!(code, Some(0), "{arguments:?}: {stderr}");
        stdout
    }

    fn info(&self) -> Value {
        read_json(&self.info)
    }

    /// The index digest create-manifest recorded.
    fn index(&self) -> Digest {
        let info = self.info();
        let reference = info["repos"][0]["images"][0]["manifest"]["digest"]
            .as_str()
            .expect("an index is recorded");
        reference
            .rsplit_once('@')
            .expect("@")
            .1
            .parse()
            .expect("digest")
    }

    fn ledger(&self) -> Vec<String> {
        self.info()["pipeline"]["stages"]
            .as_array()
            .expect("ledger")
            .iter()
            .filter_map(|stage| stage["stage"].as_str().map(str::to_owned))
            .collect()
    }

    async fn tag(&self, tag: &str, manifest: &StoredManifest) {
        self.store
            .put_manifest(&staged(), ManifestReference::Tag(tag), manifest)
            .await
            .expect("tags");
    }
}

fn staged() -> String {
    format!("{PREFIX}/{REPOSITORY}")
}

/// The report's rows whose first cell is `check`.
fn rows<'a>(report: &'a str, check: &str) -> Vec<&'a str> {
    let prefix = format!("| {check} |");
    report
        .lines()
        .filter(|line| line.starts_with(&prefix))
        .collect()
}

/// The refusal's `error:` line.
fn error_line(stderr: &str) -> &str {
    stderr
        .lines()
        .find(|line| line.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line in {stderr}"))
}

#[tokio::test]
async fn a_good_staging_set_passes_and_the_ledger_gains_test() {
    let chain = Chain::start().await;
    chain.create_manifest();
    // One simple tag is in staging (as a build leg that tags would leave it), the other is not.
    chain.tag("1.0-amd64", &chain.images[0].manifest).await;

    // By default a passing test prints no report, only its summary line.
    let (code, report, stderr) = chain.test(&[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(report, "");
    assert!(
        stderr.contains(&format!(
            "ran 7 checks in {}: 6 passed, 1 skipped, 0 failed",
            chain.staging.host()
        )),
        "{stderr}"
    );
    assert_eq!(chain.ledger(), ["post-build", "create-manifest", "test"]);

    // `--verbose` prints a row for every check.
    let (code, report, stderr) = chain.test(&["--verbose"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        report.starts_with("| check | subject | result |\n|---|---|---|\n"),
        "{report}"
    );
    assert_eq!(report.lines().count(), 9, "{report}");
    let images = rows(&report, "platform image");
    assert_eq!(images.len(), 2, "{report}");
    for (row, image) in images.iter().zip(&chain.images) {
        assert!(row.contains(image.digest().as_str()), "{row}");
        assert!(row.contains("✓ passed"), "{row}");
    }
    assert!(images[1].contains("(linux/arm64/v8)"), "{report}");
    let index = rows(&report, "index");
    assert_eq!(index.len(), 1, "{report}");
    assert!(index[0].contains(chain.index().as_str()), "{report}");
    assert!(
        index[0].contains("✓ passed: lists exactly the 2 platforms"),
        "{report}"
    );
    let shared = rows(&report, "shared tag");
    assert_eq!(shared.len(), 2, "{report}");
    assert!(
        shared.iter().all(|row| row.contains("✓ passed")),
        "{report}"
    );
    let simple = rows(&report, "simple tag");
    assert_eq!(simple.len(), 2, "{report}");
    assert!(
        simple[0].contains("`acme/app:1.0-amd64`") && simple[0].contains("✓ passed"),
        "{report}"
    );
    assert!(
        simple[1].contains("`acme/app:1.0-arm64v8`")
            && simple[1].contains("– skipped: not in staging"),
        "{report}"
    );
    assert!(!report.contains("✗"), "{report}");
}

#[tokio::test]
async fn a_re_pointed_shared_tag_and_a_simple_tag_pointing_elsewhere_fail_together() {
    let chain = Chain::start().await;
    chain.create_manifest();
    let index = chain.index();
    let amd64 = &chain.images[0];
    chain.tag("latest", &amd64.manifest).await;
    chain.tag("1.0-arm64v8", &amd64.manifest).await;
    let before = std::fs::read(&chain.info).expect("reads");

    let (code, report, stderr) = chain.test(&[]);
    assert_eq!(code, Some(3), "{stderr}");
    let error = error_line(&stderr);
    assert!(
        error.contains("2 of 7 checks failed in 127.0.0.1:"),
        "{error}"
    );
    assert!(
        error.contains(&format!(
            "shared tag `acme/app:latest`: points at `{}` in staging, where image-info records the index `{index}`",
            amd64.digest()
        )),
        "{error}"
    );
    assert!(
        error.contains(&format!(
            "simple tag `acme/app:1.0-arm64v8`: points at `{}` in staging, where image-info records `{}`",
            amd64.digest(),
            chain.images[1].digest()
        )),
        "{error}"
    );
    assert!(
        stderr
            .contains("hint: staging must hold exactly what image-info records: re-run the build"),
        "{stderr}"
    );
    // The report lists the failed checks alone; with `--verbose`, every check.
    assert_eq!(report.lines().count(), 4, "{report}");
    assert_eq!(report.matches("✗ failed").count(), 2, "{report}");
    assert!(
        rows(&report, "shared tag")[0].contains("`acme/app:latest`")
            && rows(&report, "simple tag")[0].contains("`acme/app:1.0-arm64v8`"),
        "{report}"
    );
    let (code, report, stderr) = chain.test(&["--verbose"]);
    assert_eq!(code, Some(3), "{stderr}");
    assert_eq!(report.lines().count(), 9, "{report}");
    assert_eq!(report.matches("✗ failed").count(), 2, "{report}");
    assert!(
        rows(&report, "shared tag")
            .iter()
            .any(|row| row.contains("`acme/app:1.0`") && row.contains("✓ passed")),
        "{report}"
    );
    assert_eq!(
        std::fs::read(&chain.info).expect("reads"),
        before,
        "a failed test writes nothing"
    );
}

#[tokio::test]
async fn a_config_naming_another_architecture_fails() {
    let chain = Chain::start_with([
        TestImage::new("linux", "amd64", None, "arch-a"),
        TestImage::new("linux", "s390x", None, "arch-b"),
    ])
    .await;
    chain.create_manifest();
    let wrong = chain.images[1].digest();

    let (code, report, stderr) = chain.test(&[]);
    assert_eq!(code, Some(3), "{stderr}");
    let error = error_line(&stderr);
    assert!(error.contains("1 of 7 checks failed"), "{error}");
    assert!(
        error.contains(&format!(
            "platform image `acme/app@{wrong}` (linux/arm64/v8): its config says `linux/s390x`, where image-info records `linux/arm64/v8` and the manifest declares `linux/arm64/v8`"
        )),
        "{error}"
    );
    assert_eq!(
        rows(&report, "platform image"),
        [format!(
            "| platform image | `acme/app@{wrong}` (linux/arm64/v8) | ✗ failed: its config says `linux/s390x`, where image-info records `linux/arm64/v8` and the manifest declares `linux/arm64/v8` |"
        )],
        "{report}"
    );
    assert_eq!(report.lines().count(), 3, "only the failed check: {report}");
    assert_eq!(chain.ledger(), ["post-build", "create-manifest"]);
}

#[tokio::test]
async fn an_index_that_lacks_a_platform_fails() {
    let chain = Chain::start().await;
    chain.create_manifest();
    // An index of amd64 alone, recorded in image-info and pointed at by both shared tags.
    let amd64 = &chain.images[0];
    let partial = json!({"schemaVersion": 2, "mediaType": media_type::OCI_INDEX, "manifests": [{
        "mediaType": media_type::OCI_MANIFEST, "digest": amd64.digest().as_str(),
        "size": amd64.manifest.bytes.len(), "platform": {"os": "linux", "architecture": "amd64"}}]});
    let partial = StoredManifest {
        media_type: media_type::OCI_INDEX.to_owned(),
        bytes: Bytes::from(serde_json::to_vec(&partial).expect("serializes")),
    };
    for tag in ["1.0", "latest"] {
        chain.tag(tag, &partial).await;
    }
    let mut info = chain.info();
    info["repos"][0]["images"][0]["manifest"]["digest"] =
        format!("{PUBLIC}/{REPOSITORY}@{}", partial.digest()).into();
    std::fs::write(&chain.info, info.to_string()).expect("writes");

    let (code, _, stderr) = chain.test(&[]);
    assert_eq!(code, Some(3), "{stderr}");
    let error = error_line(&stderr);
    assert!(
        error.contains(&format!(
            "1 of 7 checks failed in {}: index `acme/app@{}`: lacks `{}` (linux/arm64/v8)",
            chain.staging.host(),
            partial.digest(),
            chain.images[1].digest()
        )),
        "{error}"
    );
}

#[tokio::test]
async fn the_command_runs_once_per_platform_with_its_image_in_the_environment() {
    let chain = Chain::start().await;
    chain.create_manifest();
    let lines = chain.folder.path().join("lines.txt");
    let skopeo = common::tools::skopeo();
    // Each line names what the command saw; skopeo pulls the manifest by the reference it was given, and the
    // command's own output stays off the report.
    let command = format!(
        r#"echo "$IMAGEPIPE_PLATFORM $IMAGEPIPE_IMAGE $IMAGEPIPE_REPO $IMAGEPIPE_TAGS" >> '{}' && '{}' inspect --raw --tls-verify=false "docker://$IMAGEPIPE_IMAGE" && echo command-output"#,
        path(&lines),
        path(&skopeo)
    );
    let (code, report, stderr) = chain.test(&["--command", &command]);
    assert_eq!(code, Some(0), "{stderr}");
    let written = std::fs::read_to_string(&lines).expect("the command wrote");
    let host = chain.staging.host();
    let expected: Vec<String> = chain
        .images
        .iter()
        .zip(DECLARED)
        .zip(["linux/amd64", "linux/arm64/v8"])
        .map(|((image, (_, _, _, tag)), platform)| {
            format!(
                "{platform} {host}/{}@{} {REPOSITORY} {tag}",
                staged(),
                image.digest()
            )
        })
        .collect();
    assert_eq!(written.lines().collect::<Vec<_>>(), expected);
    assert_eq!(report, "", "every check passed");
    assert!(
        stderr.contains(": 7 passed, 2 skipped, 0 failed"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("command-output").count(), 2, "{stderr}");
    assert_eq!(chain.ledger(), ["post-build", "create-manifest", "test"]);
}

#[tokio::test]
async fn a_command_failing_for_one_platform_fails_the_stage() {
    let chain = Chain::start().await;
    chain.create_manifest();
    let (code, report, stderr) = chain.test(&[
        "--command",
        r#"test "$IMAGEPIPE_PLATFORM" != linux/arm64/v8 || exit 4"#,
    ]);
    assert_eq!(code, Some(3), "{stderr}");
    let error = error_line(&stderr);
    assert!(
        error.contains(&format!(
            "1 of 9 checks failed in {}: test command `acme/app@{}` (linux/arm64/v8): ",
            chain.staging.host(),
            chain.images[1].digest()
        )) && error.contains("the command exited with 4"),
        "{error}"
    );
    let commands = rows(&report, "test command");
    assert_eq!(commands.len(), 1, "only the failed command: {report}");
    assert!(
        commands[0].contains("(linux/arm64/v8)") && commands[0].contains("✗ failed"),
        "{report}"
    );
    assert_eq!(report.lines().count(), 3, "{report}");
    assert!(
        stderr.contains("hint: the output of the test command for each image is in the log group"),
        "{stderr}"
    );
    assert_eq!(chain.ledger(), ["post-build", "create-manifest"]);
}

#[tokio::test]
async fn on_github_actions_each_command_is_a_log_group_and_the_report_is_in_the_summary() {
    let chain = Chain::start().await;
    chain.create_manifest();
    let outputs = chain.folder.path().join("github-output");
    let summary = chain.folder.path().join("github-summary.md");
    let environment = [
        ("GITHUB_ACTIONS", "true".to_owned()),
        ("GITHUB_OUTPUT", path(&outputs)),
        ("GITHUB_STEP_SUMMARY", path(&summary)),
    ];
    let (code, stdout, stderr) = chain.test_with(&["--command", "echo in-group >&2"], &environment);
    assert_eq!(code, Some(0), "{stderr}");
    let groups: Vec<&str> = stdout
        .lines()
        .filter(|line| line.starts_with("::group::") || line.starts_with("::endgroup::"))
        .collect();
    assert_eq!(groups.len(), 4, "{stdout}");
    assert!(
        groups[0].starts_with("::group::test `acme/app` linux/amd64 (")
            && groups[2].starts_with("::group::test `acme/app` linux/arm64/v8 ("),
        "{stdout}"
    );
    assert_eq!(stderr.matches("in-group").count(), 2, "{stderr}");
    let summary = std::fs::read_to_string(&summary).expect("the summary is written");
    assert!(summary.starts_with("### imagepipe test\n"), "{summary}");
    assert_eq!(summary.matches("✓ passed").count(), 7, "{summary}");
    assert!(
        !stdout.contains("✓ passed"),
        "the summary alone has every row: {stdout}"
    );
    let outputs = common::github_outputs::lines(&outputs);
    assert!(outputs.contains("stage=test"), "{outputs}");
    assert!(
        outputs.contains(&format!("image-info={}", path(&chain.info))),
        "{outputs}"
    );
}

#[tokio::test]
async fn image_info_straight_from_post_build_is_refused() {
    let chain = Chain::start().await;
    let before = std::fs::read(&chain.info).expect("reads");
    let (code, report, stderr) = chain.test(&[]);
    assert_eq!(code, Some(3), "{stderr}");
    assert_eq!(report, "");
    assert!(
        stderr.contains("stage `test` needs `create-manifest` to have run first"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: run `imagepipe create-manifest` on this image-info first"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&chain.info).expect("reads"), before);
}
