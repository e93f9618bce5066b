//! `imagepipe run` and `imagepipe build` on `examples/hello`: built with the native builder, published to real
//! registries, and checked with cosign and skopeo 1.18.

mod common;

use std::path::Path;

use common::verifiers::SignedIdentity;
use common::{Imagepipe, Registry, read_json};
use serde_json::Value;

const HELLO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/hello/manifest.json");
const PASSWORD: &str = "run password";

/// Every digest reference of an image-info, as written.
fn digests(info: &Value) -> Vec<String> {
    let mut digests = Vec::new();
    for repo in info["repos"].as_array().into_iter().flatten() {
        for image in repo["images"].as_array().into_iter().flatten() {
            digests.extend(image["manifest"]["digest"].as_str().map(str::to_owned));
            for platform in image["platforms"].as_array().into_iter().flatten() {
                digests.extend(platform["digest"].as_str().map(str::to_owned));
            }
        }
    }
    digests
}

#[test]
fn a_run_on_registries_publishes_what_cosign_and_skopeo_accept() {
    let staging = Registry::start();
    let public = Registry::start();
    let work = tempfile::tempdir().expect("temp dir");
    let key = common::stages::generate_key(&work.path().join("release"), PASSWORD);
    Imagepipe::new()
        .args(["run", "--manifest", HELLO, "--builder", "native", "--work"])
        .arg(work.path().join("run"))
        .args(["--staging", &staging.host(), "--public", &public.host()])
        .arg("--key")
        .arg(&key)
        .env("COSIGN_PASSWORD", PASSWORD)
        .run()
        .succeeded();

    let published = read_json(&work.path().join("run/final-image-info.json"));
    let references = digests(&published);
    assert_eq!(
        references.len(),
        8,
        "6 platforms and 2 indexes: {published}"
    );
    let public_key = key.with_extension("pub");
    for reference in &references {
        assert!(reference.starts_with(&public.host()), "{reference}");
        assert_eq!(
            common::verifiers::cosign_verify(&public_key, reference),
            Some(0),
            "cosign verify {reference}"
        );
    }
    for repository in ["hello/base", "hello/app"] {
        let copied = common::verifiers::skopeo_policy_copy(
            work.path(),
            &public_key,
            &format!("{}/{repository}", public.host()),
            SignedIdentity::Repository(&format!("registry.example.com/{repository}")),
            &format!("docker://{}/{repository}:latest", public.host()),
        );
        assert!(
            copied.status.success(),
            "skopeo copy --all of {repository}: {}",
            String::from_utf8_lossy(&copied.stderr)
        );
    }
    // The app is built on the base of the same run.
    let app = &published["repos"][0]["images"][0]["platforms"][0];
    let base_digests = digests(&serde_json::json!({"repos": [published["repos"][1].clone()]}));
    let base = app["baseImageDigest"]
        .as_str()
        .expect("a base image digest");
    let base_hex = base
        .rsplit_once('@')
        .map(|(_, digest)| digest)
        .unwrap_or_default();
    assert!(
        base_digests.iter().any(|digest| digest.ends_with(base_hex)),
        "{base} is a base built in this run"
    );
}

#[test]
fn the_same_sources_build_the_same_digests() {
    let work = tempfile::tempdir().expect("temp dir");
    let build = |name: &str| {
        Imagepipe::new()
            .args(["build", "--manifest", HELLO, "--builder", "native"])
            .arg("--staging-registry")
            .arg(format!(
                "oci:{}",
                work.path().join(name).join("staging").display()
            ))
            .arg("--fragments")
            .arg(work.path().join(name).join("fragments"))
            .env("SOURCE_DATE_EPOCH", "1767225600")
            .run()
            .succeeded();
        let mut all = Vec::new();
        let fragments = work.path().join(name).join("fragments");
        let mut files: Vec<_> = std::fs::read_dir(&fragments)
            .expect("fragments")
            .map(|entry| entry.expect("entry").path())
            .collect();
        files.sort();
        assert_eq!(files.len(), 3, "one fragment per leg");
        for file in files {
            all.extend(digests(&read_json(&file)));
        }
        all
    };
    let first = build("first");
    assert_eq!(first.len(), 6, "{first:?}");
    assert_eq!(first, build("second"));
}

#[test]
fn a_run_line_is_refused_by_the_native_builder_naming_file_and_line() {
    let folder = tempfile::tempdir().expect("temp dir");
    let dockerfile = folder.path().join("src/tool/Dockerfile");
    std::fs::create_dir_all(dockerfile.parent().expect("folder")).expect("creates");
    std::fs::write(
        &dockerfile,
        "FROM scratch\nCOPY Dockerfile /x\nRUN echo hi\n",
    )
    .expect("writes");
    let manifest = folder.path().join("manifest.json");
    common::files::write_json(
        &manifest,
        &serde_json::json!({"registry": "registry.example.com", "repos": [{"id": "tool", "name": "acme/tool",
            "images": [{"platforms": [{"dockerfile": "src/tool", "os": "linux", "osVersion": "scratch",
                "tags": {"1": {}}}]}]}]}),
    );
    let ran = Imagepipe::new()
        .arg("build")
        .arg("--manifest")
        .arg(&manifest)
        .args(["--builder", "native"])
        .arg("--staging-registry")
        .arg(format!("oci:{}", folder.path().join("staging").display()))
        .arg("--fragments")
        .arg(folder.path().join("fragments"))
        .run();
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    let errors = common::error_lines(&ran.stderr);
    assert_eq!(errors.len(), 1, "{}", ran.stderr);
    assert!(
        errors[0].contains("src/tool/Dockerfile` line 3") && errors[0].contains("RUN"),
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("--builder buildah"), "{}", ran.stderr);
    assert!(
        !Path::new(&folder.path().join("fragments")).exists(),
        "no fragment written"
    );
}
