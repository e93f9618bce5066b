//! The command line's contract: help texts, error messages, exit codes, and the committed JSON Schemas.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::Imagepipe;
use imagepipe::stages::schema::{Format, schema_text};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The binary with `arguments`, its help wrapped at 100 columns whatever the terminal.
fn imagepipe(arguments: &[&str]) -> (Option<i32>, String, String) {
    Imagepipe::new()
        .args(arguments)
        .env("COLUMNS", "100")
        .run()
        .into()
}

#[test]
fn help_texts() {
    for (name, arguments) in [
        ("help", &["--help"][..]),
        ("help_matrix", &["matrix", "--help"][..]),
        ("help_post_build", &["post-build", "--help"][..]),
        ("help_create_manifest", &["create-manifest", "--help"][..]),
        ("help_sign", &["sign", "--help"][..]),
        ("help_verify", &["verify", "--help"][..]),
        ("help_test", &["test", "--help"][..]),
        ("help_publish", &["publish", "--help"][..]),
        (
            "help_publish_image_info",
            &["publish-image-info", "--help"][..],
        ),
        ("help_validate", &["validate", "--help"][..]),
        ("help_schema", &["schema", "--help"][..]),
    ] {
        let (code, stdout, stderr) = imagepipe(arguments);
        assert_eq!(code, Some(0), "{stderr}");
        insta::assert_snapshot!(name, stdout);
    }
}

#[test]
fn usage_errors_exit_2() {
    let (code, _, stderr) = imagepipe(&["post-build", "--manifest", "m.json"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--fragments <DIR>"), "{stderr}");
    let (code, _, _) = imagepipe(&["validate"]);
    assert_eq!(code, Some(2));
    let (code, _, stderr) = imagepipe(&["validate", "--manifest", "m.json", "--var", "novalue"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("expected `NAME=VALUE`, found `novalue`"),
        "{stderr}"
    );
}

#[test]
fn validate_lists_every_problem_with_file_path_found_and_expected() {
    let folder = tempfile::tempdir().expect("temp dir");
    let manifest = folder.path().join("manifest.json");
    fs::write(
        &manifest,
        r#"{"registry": "registry.example.com", "includes": ["versions.json"], "repos": [{"name": "acme/app", "images": [
            {"sharedTags": {"$(version)": {}}, "platforms": [
                {"dockerfile": "src/amd64", "os": "linux", "tags": {"$(version)-amd64": {}}},
                {"dockerfile": "src/arm", "os": "linux", "architecture": "armhf", "tags": {"$(missing)": {}}}]}]}]}"#,
    )
    .expect("writes");
    fs::write(folder.path().join("versions.json"), r#"{"variables": {"version": "1.4"}, "repos": [
        {"name": "acme/app", "images": [{"platforms": [{"dockerfile": "src/win", "os": "windows", "variant": "v8"}]}]}]}"#)
    .expect("writes");
    let (code, stdout, stderr) =
        imagepipe(&["validate", "--manifest", manifest.to_str().expect("utf-8")]);
    assert_eq!(code, Some(2));
    assert_eq!(stdout, "");
    let folder_text = folder.path().display().to_string();
    insta::assert_snapshot!("validate_errors", stderr.replace(&folder_text, "[TEMP]"));
}

#[test]
fn validate_reports_json_syntax_with_line_and_column() {
    let folder = tempfile::tempdir().expect("temp dir");
    let info = folder.path().join("image-info.json");
    fs::write(
        &info,
        "{\n  \"schemaVersion\": \"2.0\",\n  \"repos\": [\n}\n",
    )
    .expect("writes");
    let (code, _, stderr) = imagepipe(&["validate", "--image-info", info.to_str().expect("utf-8")]);
    assert_eq!(code, Some(2));
    let folder_text = folder.path().display().to_string();
    insta::assert_snapshot!(
        "validate_syntax_error",
        stderr.replace(&folder_text, "[TEMP]")
    );
}

#[test]
fn a_missing_file_is_named() {
    let (code, _, stderr) =
        imagepipe(&["validate", "--image-info", "/nonexistent/image-info.json"]);
    assert_eq!(code, Some(2));
    assert_eq!(
        stderr,
        "error: cannot read `/nonexistent/image-info.json`: No such file or directory (os error 2)\n"
    );
}

#[test]
fn committed_schemas_match_the_types() {
    for (format, file) in [
        (Format::Manifest, "schema/manifest.schema.json"),
        (Format::ImageInfo, "schema/image-info.schema.json"),
    ] {
        let committed = fs::read(Path::new(ROOT).join(file)).expect("schema is committed");
        assert!(
            committed == schema_text(format),
            "`{file}` is out of date: run `cargo run -- schema {}` > {file}",
            if format == Format::Manifest {
                "manifest"
            } else {
                "image-info"
            }
        );
        let (code, stdout, _) = imagepipe(&[
            "schema",
            if format == Format::Manifest {
                "manifest"
            } else {
                "image-info"
            },
        ]);
        assert_eq!(code, Some(0));
        assert_eq!(stdout.as_bytes(), committed.as_slice());
    }
}

/// An independent validator (check-jsonschema, from the install script) accepts the real files and our output
/// under the committed schemas.
#[test]
fn real_files_and_our_output_satisfy_the_schemas() {
    let validator = common::commands::require("check-jsonschema");
    let folder = tempfile::tempdir().expect("temp dir");
    let merged = folder.path().join("image-info.json");
    let (code, _, stderr) = imagepipe(&[
        "post-build",
        "--manifest",
        &format!("{ROOT}/examples/post-build/manifest.json"),
        "--fragments",
        &format!("{ROOT}/examples/post-build/fragments"),
        "--output",
        merged.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, Some(0), "{stderr}");

    let mut image_infos = vec![merged.clone()];
    let mut manifests = vec![Path::new(ROOT).join("examples/post-build/manifest.json")];
    if let Some(data) = common::shared_data() {
        for entry in fs::read_dir(data.join("dotnet/versions")).expect("lists") {
            image_infos.push(entry.expect("entry").path());
        }
        for name in [
            "dotnet-docker/manifest.json",
            "dotnet-docker/manifest.versions.json",
            "docker-tools/manifest.json",
        ] {
            manifests.push(data.join("dotnet").join(name));
        }
    }
    for (schema, files) in [
        ("schema/image-info.schema.json", &image_infos),
        ("schema/manifest.schema.json", &manifests),
    ] {
        let output = Command::new(&validator)
            .arg("--schemafile")
            .arg(Path::new(ROOT).join(schema))
            .args(files.iter())
            .output()
            .expect("check-jsonschema runs");
        assert!(
            output.status.success(),
            "{schema}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    // And the schema is not vacuous: a platform without a digest is refused.
    let broken = folder.path().join("broken.json");
    fs::write(&broken, r#"{"schemaVersion": "2.0", "repos": [{"repo": "a", "images": [{"platforms": [{"dockerfile": "d", "osType": "Linux", "architecture": "amd64"}]}]}]}"#)
        .expect("writes");
    let refused = Command::new(&validator)
        .arg("--schemafile")
        .arg(Path::new(ROOT).join("schema/image-info.schema.json"))
        .arg(&broken)
        .output()
        .expect("check-jsonschema runs");
    assert!(!refused.status.success());
}

#[test]
fn repository_names_that_break_out_of_url_paths_are_invalid_input() {
    let folder = tempfile::tempdir().expect("temp dir");
    let digest = format!("sha256:{}", "1".repeat(64));
    let hostile = "ACME/../../v2/x?y#z";
    let cases = [
        (
            "digest",
            serde_json::json!({"schemaVersion": "2.0", "repos": [{"repo": "acme/app", "images": [{"platforms": [
                {"dockerfile": "d", "digest": format!("{hostile}@{digest}"), "osType": "Linux", "architecture": "amd64"}]}]}]}),
            "repos[0].images[0].platforms[0].digest",
        ),
        (
            "registry",
            serde_json::json!({"schemaVersion": "2.0", "repos": [{"repo": "acme/app", "images": [{"platforms": [
                {"dockerfile": "d", "digest": format!("evil.example.net:99999/acme/app@{digest}"), "osType": "Linux", "architecture": "amd64"}]}]}]}),
            "repos[0].images[0].platforms[0].digest",
        ),
        (
            "repo",
            serde_json::json!({"schemaVersion": "2.0", "repos": [{"repo": hostile, "images": []}]}),
            "repos[0].repo",
        ),
    ];
    for (name, content, json_path) in cases {
        let info = folder.path().join(format!("{name}.json"));
        fs::write(&info, content.to_string()).expect("writes");
        let (code, _, stderr) =
            imagepipe(&["validate", "--image-info", info.to_str().expect("utf-8")]);
        assert_eq!(code, Some(2), "{name}: {stderr}");
        let errors = common::error_lines(&stderr);
        assert_eq!(errors.len(), 1, "{name}: {stderr}");
        assert!(
            errors[0].contains(&format!("`{}` at `{json_path}`: found ", info.display())),
            "{name}: {stderr}"
        );
        assert!(errors[0].contains(", expected "), "{name}: {stderr}");
    }

    let manifest = folder.path().join("manifest.json");
    fs::write(
        &manifest,
        r#"{"registry": "evil.example.net/../v2", "repos": [{"name": "acme/app", "images": []}]}"#,
    )
    .expect("writes");
    let (code, _, stderr) =
        imagepipe(&["validate", "--manifest", manifest.to_str().expect("utf-8")]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "`{}` at `registry`: found `evil.example.net/../v2`",
            manifest.display()
        )),
        "{stderr}"
    );
}

#[test]
fn a_staging_prefix_that_is_not_a_repository_path_is_invalid_input() {
    let hostile = "../../v2/x?y#z";
    let staging = [
        "--staging-registry",
        "127.0.0.1:1",
        "--staging-prefix",
        hostile,
    ];
    let commands: [&[&str]; 5] = [
        &[
            "create-manifest",
            "--manifest",
            "m.json",
            "--image-info",
            "i.json",
        ],
        &["sign", "--image-info", "i.json", "--key", "k.key"],
        &["verify", "--image-info", "i.json", "--key", "k.pub"],
        &["test", "--manifest", "m.json", "--image-info", "i.json"],
        &["publish", "--image-info", "i.json", "--output", "o.json"],
    ];
    for command in commands {
        let arguments: Vec<&str> = command.iter().chain(&staging).copied().collect();
        let (code, _, stderr) = imagepipe(&arguments);
        assert_eq!(code, Some(2), "{command:?}: {stderr}");
        assert!(
            stderr.contains(&format!("`--staging-prefix` is `{hostile}`: expected")),
            "{command:?}: {stderr}"
        );
    }
}
