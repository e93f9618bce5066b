//! `imagepipe ci step`, run the way the action's shim runs it: inputs as `INPUT_*` variables named the runner's
//! way, outputs read back from the host's files. The whole release of examples/hello on OCI layouts, step by
//! step, each stage fed the previous one's `image-info-sha256`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{Imagepipe, Ran};
use imagepipe::action::declaration;
use tempfile::TempDir;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const COSIGN_PASSWORD: &str = "s3cret-for-the-step-test";

/// A runner's step: its own output and summary files, in the job's working folder.
struct Runner {
    folder: TempDir,
    steps: usize,
}

/// One step's result: how it ended and the outputs it set.
struct Step {
    ran: Ran,
    outputs: BTreeMap<String, String>,
    summary: String,
}

impl Runner {
    fn new() -> Self {
        Self {
            folder: tempfile::tempdir().expect("temp dir"),
            steps: 0,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.folder.path().join(name)
    }

    /// Runs `ci step [stage]` with `inputs` set GitHub's way (`INPUT_` + the name uppercased, hyphens kept).
    fn github(&mut self, stage: Option<&str>, inputs: &[(&str, &str)]) -> Step {
        self.steps += 1;
        let output = self.path(&format!("output-{}", self.steps));
        let summary = self.path(&format!("summary-{}", self.steps));
        let mut command = Imagepipe::new()
            .args(["ci", "step"])
            .current_dir(self.folder.path())
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_OUTPUT", &output)
            .env("GITHUB_STEP_SUMMARY", &summary);
        if let Some(stage) = stage {
            command = command.arg(stage);
        }
        for (name, value) in inputs {
            command = command.env(format!("INPUT_{}", name.to_uppercase()), value);
        }
        let ran = command.run();
        Step {
            ran,
            outputs: read_github_outputs(&output),
            summary: std::fs::read_to_string(&summary).unwrap_or_default(),
        }
    }
}

fn read_github_outputs(file: &Path) -> BTreeMap<String, String> {
    common::github_outputs::read(file).into_iter().collect()
}

/// The outputs the declaration says `stage` sets.
fn declared_outputs(stage: &str) -> Vec<String> {
    let stages = declaration::stages();
    let declared = stages
        .iter()
        .find(|declared| declared.name == stage)
        .expect("declared");
    let mut names: Vec<String> = declared
        .outputs
        .iter()
        .map(|output| output.name.to_owned())
        .collect();
    names.sort();
    names
}

fn succeeded(stage: &str, step: &Step) {
    assert_eq!(
        step.ran.code,
        Some(0),
        "{stage}: {}\n{}",
        step.ran.stdout,
        step.ran.stderr
    );
    assert_eq!(
        step.outputs.keys().cloned().collect::<Vec<_>>(),
        declared_outputs(stage),
        "{stage} sets exactly the outputs it declares"
    );
    assert_eq!(step.outputs["stage"], stage);
}

fn borrowed(inputs: &[(String, String)]) -> Vec<(&str, &str)> {
    inputs
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect()
}

fn list(step: &Step, output: &str) -> Vec<String> {
    serde_json::from_str(&step.outputs[output]).expect("a JSON list")
}

#[test]
fn a_release_runs_step_by_step_from_github_inputs() {
    let manifest = Path::new(ROOT).join("examples/hello/manifest.json");
    let manifest = manifest.to_str().expect("UTF-8 path");
    let mut runner = Runner::new();
    let key = common::stages::generate_key(&runner.path("cosign"), COSIGN_PASSWORD);
    let key = key.to_str().expect("UTF-8 path").to_owned();
    let public_key = key.replace(".key", ".pub");
    let staging = "oci:staging";

    let build = runner.github(
        Some("build"),
        &[
            ("manifest", manifest),
            ("staging-registry", staging),
            ("builder", "native"),
            ("fragments", "fragments"),
        ],
    );
    succeeded("build", &build);

    let post_build = runner.github(
        Some("post-build"),
        &[
            ("manifest", manifest),
            ("fragments", &build.outputs["fragments"]),
            ("output", "image-info.json"),
        ],
    );
    succeeded("post-build", &post_build);
    std::fs::copy(
        runner.path("image-info.json"),
        runner.path("post-build.json"),
    )
    .expect("copy");

    let create_manifest = runner.github(
        Some("create-manifest"),
        &[
            ("manifest", manifest),
            ("image-info", &post_build.outputs["image-info"]),
            (
                "expect-image-info-sha256",
                &post_build.outputs["image-info-sha256"],
            ),
            ("staging-registry", staging),
        ],
    );
    succeeded("create-manifest", &create_manifest);
    let indexes = list(&create_manifest, "indexes");
    assert_eq!(indexes.len(), 2, "hello/base and hello/app: {indexes:?}");

    let sign_inputs = |image_info: &str, sha256: &str| {
        vec![
            ("image-info".to_owned(), image_info.to_owned()),
            ("expect-image-info-sha256".to_owned(), sha256.to_owned()),
            ("staging-registry".to_owned(), staging.to_owned()),
            ("key".to_owned(), key.clone()),
            ("cosign-password".to_owned(), COSIGN_PASSWORD.to_owned()),
        ]
    };
    let inputs = sign_inputs(
        &create_manifest.outputs["image-info"],
        &create_manifest.outputs["image-info-sha256"],
    );
    let sign = runner.github(Some("sign"), &borrowed(&inputs));
    succeeded("sign", &sign);
    assert_eq!(
        sign.ran.stdout.lines().next(),
        Some(format!("::add-mask::{COSIGN_PASSWORD}").as_str()),
        "the password is masked before anything else"
    );
    let signed = list(&sign, "signed");
    assert_eq!(
        signed.len(),
        8,
        "6 platform images and 2 indexes: {signed:?}"
    );
    for index in &indexes {
        assert!(signed.contains(index), "{index} is signed");
    }

    // The umbrella action: the stage comes as an input, and another stage's default is no mistake.
    let verify = runner.github(
        None,
        &[
            ("stage", "verify"),
            ("image-info", &sign.outputs["image-info"]),
            (
                "expect-image-info-sha256",
                &sign.outputs["image-info-sha256"],
            ),
            ("key", &public_key),
            ("staging-registry", staging),
            ("signature-mode", "tag"),
        ],
    );
    succeeded("verify", &verify);
    assert!(
        !verify.ran.stdout.contains("::warning::"),
        "{}",
        verify.ran.stdout
    );

    let test = runner.github(
        Some("test"),
        &[
            ("manifest", manifest),
            ("image-info", &verify.outputs["image-info"]),
            (
                "expect-image-info-sha256",
                &verify.outputs["image-info-sha256"],
            ),
            ("staging-registry", staging),
        ],
    );
    succeeded("test", &test);

    let publish = runner.github(
        Some("publish"),
        &[
            ("image-info", &test.outputs["image-info"]),
            (
                "expect-image-info-sha256",
                &test.outputs["image-info-sha256"],
            ),
            ("staging-registry", staging),
            ("registry-override", "oci:public"),
            ("output", "final.json"),
            ("require-verify", "true"),
        ],
    );
    succeeded("publish", &publish);
    let tags = list(&publish, "published-tags");
    assert!(
        tags.iter().any(|tag| tag.ends_with("hello/app:latest")),
        "{tags:?}"
    );
    assert!(
        publish.summary.contains("imagepipe publish"),
        "{}",
        publish.summary
    );

    // Nothing a step wrote holds the password but the mask command.
    for step in [
        &build,
        &post_build,
        &create_manifest,
        &sign,
        &verify,
        &test,
        &publish,
    ] {
        let stdout = step
            .ran
            .stdout
            .replace(&format!("::add-mask::{COSIGN_PASSWORD}"), "");
        for text in [&stdout, &step.ran.stderr, &step.summary] {
            assert!(!text.contains(COSIGN_PASSWORD), "{text}");
        }
        assert!(
            !step
                .outputs
                .values()
                .any(|value| value.contains(COSIGN_PASSWORD))
        );
    }

    // sign fed post-build's image-info: the ledger lacks create-manifest, a precondition (exit 3).
    let stale = sign_inputs(
        runner.path("post-build.json").to_str().expect("UTF-8"),
        &post_build.outputs["image-info-sha256"],
    );
    let refused = runner.github(Some("sign"), &borrowed(&stale));
    assert_eq!(refused.ran.code, Some(3), "{}", refused.ran.stderr);
    assert!(
        refused.ran.stdout.contains("::error"),
        "{}",
        refused.ran.stdout
    );

    // A file changed on the way between stages: refused beside the ledger check (exit 3).
    let changed = runner.github(
        Some("test"),
        &[
            ("manifest", manifest),
            ("image-info", &verify.outputs["image-info"]),
            (
                "expect-image-info-sha256",
                &sign.outputs["image-info-sha256"],
            ),
            ("staging-registry", staging),
        ],
    );
    assert_eq!(changed.ran.code, Some(3), "{}", changed.ran.stderr);
    assert!(
        changed.ran.stdout.contains("::error"),
        "{}",
        changed.ran.stdout
    );
}

#[test]
fn a_wrong_input_is_named_as_written_in_yaml() {
    let mut runner = Runner::new();
    let wrong = runner.github(
        Some("sign"),
        &[
            ("image-info", "image-info.json"),
            ("staging-registry", "oci:staging"),
            ("key", "cosign.key"),
            ("signature-mode", "tags"),
        ],
    );
    assert_eq!(wrong.ran.code, Some(2));
    assert_eq!(
        wrong.ran.stdout.trim(),
        "::error::input 'signature-mode': expected one of tag, referrers, auto, found 'tags'"
    );
    assert!(wrong.outputs.is_empty());

    let missing = runner.github(
        None,
        &[("stage", "sign"), ("image-info", "image-info.json")],
    );
    assert_eq!(missing.ran.code, Some(2));
    assert!(
        missing
            .ran
            .stdout
            .contains("inputs 'key', 'staging-registry' are required by the `sign` stage"),
        "{}",
        missing.ran.stdout
    );
}

#[test]
fn azure_names_its_inputs_without_hyphens() {
    let runner = Runner::new();
    let manifest = Path::new(ROOT).join("examples/hello/manifest.json");
    let ran = Imagepipe::new()
        .args(["ci", "step"])
        .current_dir(runner.folder.path())
        .env("TF_BUILD", "True")
        .env("AGENT_TEMPDIRECTORY", runner.folder.path())
        .env("INPUT_STAGE", "matrix")
        .env("INPUT_MANIFEST", &manifest)
        .env("INPUT_ARCHITECTURE", "arm64")
        .run();
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let matrix = ran
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix("##vso[task.setvariable variable=matrix;isoutput=true]"))
        .expect("the matrix output");
    let legs: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(matrix).expect("Azure's matrix object");
    assert!(!legs.is_empty());
    assert!(legs.keys().all(|leg| leg.contains("arm64")), "{legs:?}");
}
