//! `imagepipe post-build` run as a CI host runs it: the real binary, files on disk, the host's environment.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{Imagepipe, Ran, read_json};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");

fn post_build(fragments: &Path, output: &Path) -> Imagepipe {
    Imagepipe::new()
        .arg("post-build")
        .arg("--manifest")
        .arg(Path::new(EXAMPLES).join("post-build/manifest.json"))
        .arg("--fragments")
        .arg(fragments)
        .arg("--output")
        .arg(output)
}

/// The digest a fragment of the example records for `dockerfile`.
fn example_digest(fragment: &str, dockerfile: &str) -> String {
    let fragment = read_json(&example_fragments().join(fragment));
    let platforms = fragment["repos"][0]["images"][0]["platforms"]
        .as_array()
        .expect("platforms")
        .clone();
    let platform = platforms
        .iter()
        .find(|platform| platform["dockerfile"] == dockerfile)
        .expect("declared");
    platform["digest"]
        .as_str()
        .expect("digest")
        .rsplit_once('@')
        .expect("@")
        .1
        .to_owned()
}

fn example_fragments() -> PathBuf {
    Path::new(EXAMPLES).join("post-build/fragments")
}

/// A fragments folder holding copies of the example's fragments plus `extra` (name, content).
fn fragments_with(extra: &[(&str, Value)]) -> tempfile::TempDir {
    let folder = tempfile::tempdir().expect("temp dir");
    for entry in fs::read_dir(example_fragments()).expect("lists") {
        let path = entry.expect("entry").path();
        fs::copy(&path, folder.path().join(path.file_name().expect("name"))).expect("copies");
    }
    for (name, content) in extra {
        fs::write(folder.path().join(name), content.to_string()).expect("writes");
    }
    folder
}

fn platform(dockerfile: &str, architecture: &str, digest_fill: &str) -> Value {
    serde_json::json!({
        "dockerfile": dockerfile,
        "digest": format!("registry.example.com/acme/app@sha256:{}", digest_fill.repeat(64 / digest_fill.len())),
        "osType": "Linux",
        "osVersion": "bookworm",
        "architecture": architecture,
        "simpleTags": ["1.4.2-amd64"]
    })
}

fn fragment(platforms: Vec<Value>) -> Value {
    serde_json::json!({
        "schemaVersion": "2.0",
        "repos": [{"repo": "acme/app", "images": [{"productVersion": "1.4.2", "platforms": platforms}]}]
    })
}

#[test]
fn merges_the_example_with_the_latest_attempt_of_each_leg() {
    let folder = tempfile::tempdir().expect("temp dir");
    let output = folder.path().join("out/image-info.json");
    let Ran {
        code,
        stdout,
        stderr,
    } = post_build(&example_fragments(), &output).run();
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout, "", "a terminal run prints no data on stdout");
    assert!(
        stderr.contains("merged 2 fragments (1 superseded)"),
        "{stderr}"
    );

    let info = read_json(&output);
    assert_eq!(info["schemaVersion"], "2.0");
    let images = info["repos"][0]["images"].as_array().expect("images");
    assert_eq!(images.len(), 2);
    let platforms: Vec<&Value> = images
        .iter()
        .flat_map(|image| image["platforms"].as_array().expect("platforms"))
        .collect();
    assert_eq!(platforms.len(), 3);
    let arm64 = platforms
        .iter()
        .find(|platform| platform["architecture"] == "arm64")
        .expect("arm64 is there");
    assert!(
        arm64["digest"]
            .as_str()
            .is_some_and(|digest| digest.ends_with(&example_digest(
                "linux-arm64.attempt-2.json",
                "src/app/arm64v8/Dockerfile"
            ))),
        "the second attempt's digest wins: {arm64}"
    );
    let stages: Vec<&str> = info["pipeline"]["stages"]
        .as_array()
        .expect("ledger")
        .iter()
        .filter_map(|entry| entry["stage"].as_str())
        .collect();
    assert_eq!(stages, ["post-build"]);
    let leftovers: Vec<_> = fs::read_dir(output.parent().expect("folder"))
        .expect("lists")
        .collect();
    assert_eq!(leftovers.len(), 1, "only the output, no temporary file");
}

#[test]
fn github_actions_gets_outputs_and_a_summary() {
    let folder = tempfile::tempdir().expect("temp dir");
    let output = folder.path().join("image-info.json");
    let outputs = folder.path().join("github-output");
    let summary = folder.path().join("github-summary");
    let Ran {
        code,
        stdout,
        stderr,
    } = post_build(&example_fragments(), &output)
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_OUTPUT", &outputs)
        .env("GITHUB_STEP_SUMMARY", &summary)
        .env("GITHUB_RUN_ID", "4242")
        .env("GITHUB_RUN_ATTEMPT", "2")
        .run();
    assert_eq!(code, Some(0), "{stderr}{stdout}");
    let sha256 = format!("{:x}", Sha256::digest(fs::read(&output).expect("output")));
    assert_eq!(
        common::github_outputs::lines(&outputs),
        format!(
            "image-info={}\nimage-info-sha256={sha256}\nstage=post-build\n",
            output.display()
        )
    );
    let table = fs::read_to_string(&summary).expect("summary written");
    assert!(
        table.contains(&format!(
            "| `acme/app` | linux/arm64/v8 | `{}` | `1.4.2-arm64v8` | 0 |",
            &example_digest("linux-arm64.attempt-2.json", "src/app/arm64v8/Dockerfile")[..19]
        )),
        "{table}"
    );
    let record = &read_json(&output)["pipeline"]["stages"][0];
    assert_eq!(
        (record["runId"].as_str(), record["attempt"].as_u64()),
        (Some("4242"), Some(2))
    );
}

#[test]
fn azure_pipelines_gets_output_variables() {
    let folder = tempfile::tempdir().expect("temp dir");
    let output = folder.path().join("image-info.json");
    let Ran {
        code,
        stdout,
        stderr,
    } = post_build(&example_fragments(), &output)
        .env("TF_BUILD", "True")
        .env("AGENT_TEMPDIRECTORY", folder.path())
        .run();
    assert_eq!(code, Some(0), "{stderr}{stdout}");
    let sha256 = format!("{:x}", Sha256::digest(fs::read(&output).expect("output")));
    assert!(
        stdout.contains(&format!(
            "##vso[task.setvariable variable=imageInfoSha256;isoutput=true]{sha256}\n"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("##vso[task.setvariable variable=stage;isoutput=true]post-build\n"),
        "{stdout}"
    );
    assert!(stdout.contains("##vso[task.uploadsummary]"), "{stdout}");
}

#[test]
fn conflicting_digests_fail_naming_both_files_and_write_nothing() {
    let folder = tempfile::tempdir().expect("temp dir");
    let output = folder.path().join("image-info.json");
    fs::write(&output, "previous run\n").expect("writes");
    let conflict = Path::new(EXAMPLES).join("conflict/fragments");
    let Ran { code, stderr, .. } = post_build(&conflict, &output).run();
    assert_eq!(code, Some(2), "{stderr}");
    for expected in [
        "linux-amd64.json",
        "linux-amd64-rebuilt.json",
        "sha256:6d3a4e1f0c8b2a9e7f5d3c1b0a9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f10",
        "sha256:7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e",
    ] {
        assert!(stderr.contains(expected), "missing {expected}: {stderr}");
    }
    assert_eq!(
        fs::read_to_string(&output).expect("still there"),
        "previous run\n"
    );
}

#[test]
fn conflicts_become_github_error_annotations() {
    let folder = tempfile::tempdir().expect("temp dir");
    let conflict = Path::new(EXAMPLES).join("conflict/fragments");
    let Ran { code, stdout, .. } = post_build(&conflict, &folder.path().join("out.json"))
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_OUTPUT", folder.path().join("outputs"))
        .run();
    assert_eq!(code, Some(2));
    assert!(
        stdout.starts_with("::error::merging the fragments in"),
        "{stdout}"
    );
    assert!(
        !folder.path().join("outputs").exists(),
        "no outputs for a failed stage"
    );
}

#[test]
fn a_platform_the_manifest_does_not_declare_is_refused() {
    let undeclared = fragment(vec![platform("src/app/s390x/Dockerfile", "s390x", "5")]);
    let folder = fragments_with(&[("linux-s390x.json", undeclared)]);
    let output = folder.path().join("out/image-info.json");
    let Ran { code, stderr, .. } = post_build(folder.path(), &output).run();
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("linux-s390x.json` at `repos[0].images[0].platforms[0]`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("src/app/s390x (linux/s390x, bookworm) of `acme/app` is not declared"),
        "{stderr}"
    );
    assert!(!output.exists());
}

#[test]
fn a_retried_leg_with_the_same_digest_merges() {
    let same = fragment(vec![platform(
        "src/app/amd64/Dockerfile",
        "amd64",
        example_digest("linux-amd64.json", "src/app/amd64/Dockerfile")
            .trim_start_matches("sha256:"),
    )]);
    let folder = fragments_with(&[("linux-amd64-again.json", same)]);
    let output = folder.path().join("out/image-info.json");
    let Ran { code, stderr, .. } = post_build(folder.path(), &output).run();
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn an_empty_folder_is_refused_with_a_hint() {
    let folder = tempfile::tempdir().expect("temp dir");
    let output = folder.path().join("image-info.json");
    let Ran { code, stderr, .. } = post_build(folder.path(), &output).run();
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("holds no fragments (`*.json` files)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: point `--fragments` at the folder"),
        "{stderr}"
    );
}

#[test]
fn a_broken_fragment_names_its_file_and_path() {
    let mut broken = fragment(vec![platform("src/app/amd64/Dockerfile", "amd64", "a")]);
    broken["repos"][0]["images"][0]["platforms"][0]["simpleTags"] = serde_json::json!("1.4.2");
    let folder = fragments_with(&[("broken.json", broken)]);
    let Ran { code, stderr, .. } = post_build(folder.path(), &folder.path().join("out.json")).run();
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("broken.json` at `repos[0].images[0].platforms[0].simpleTags`: found string \"1.4.2\", expected a sequence"), "{stderr}");
}

#[test]
fn flags_also_come_from_the_environment() {
    let folder = tempfile::tempdir().expect("temp dir");
    let output = folder.path().join("image-info.json");
    let Ran { code, stderr, .. } = Imagepipe::new()
        .arg("post-build")
        .env(
            "IMAGEPIPE_MANIFEST",
            Path::new(EXAMPLES).join("post-build/manifest.json"),
        )
        .env("IMAGEPIPE_FRAGMENTS", example_fragments())
        .env("IMAGEPIPE_OUTPUT", &output)
        .run();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(output.exists());
}

#[test]
fn a_fragment_naming_a_hostile_repository_is_refused() {
    let mut hostile = fragment(vec![platform("src/app/amd64/Dockerfile", "amd64", "a")]);
    let digest = format!(
        "registry.example.com/ACME/../../v2/x?y#z@sha256:{}",
        "a".repeat(64)
    );
    hostile["repos"][0]["images"][0]["platforms"][0]["digest"] = digest.clone().into();
    let folder = fragments_with(&[("hostile.json", hostile)]);
    let output = folder.path().join("out.json");
    let Ran { code, stderr, .. } = post_build(folder.path(), &output).run();
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("hostile.json` at `repos[0].images[0].platforms[0].digest`: found"),
        "{stderr}"
    );
    assert!(stderr.contains("ACME/../../v2/x?y#z"), "{stderr}");
    assert!(!output.exists());
}

#[test]
fn a_fragment_naming_another_registry_than_the_manifest_is_refused() {
    let mut foreign = fragment(vec![platform("src/app/amd64/Dockerfile", "amd64", "a")]);
    let digest = format!("evil.example.net/acme/app@sha256:{}", "a".repeat(64));
    foreign["repos"][0]["images"][0]["platforms"][0]["digest"] = digest.into();
    let folder = tempfile::tempdir().expect("temp dir");
    fs::write(folder.path().join("foreign.json"), foreign.to_string()).expect("writes");
    let output = folder.path().join("out.json");
    let Ran { code, stderr, .. } = post_build(folder.path(), &output).run();
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("foreign.json` at `repos[0].images[0].platforms[0].digest`: found"),
        "{stderr}"
    );
    assert!(stderr.contains("registry.example.com"), "{stderr}");
    assert!(!output.exists());
}
