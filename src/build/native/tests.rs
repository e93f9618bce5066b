//! Whole builds into OCI layout stores (no server): repeatability, the image's structure, and a staged base.
//! [`context`], [`files`] and [`request`] are shared with the unit tests of the other files.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;
use tempfile::TempDir;

use super::NativeBuilder;
use super::config::Files;
use crate::build::{BuildError, BuildRequest, Built, PushTarget, StagedImage};
use crate::store::layout::LayoutStore;
use crate::store::registry::{ClientSettings, RegistryClient};
use crate::store::{Location, ManifestReference, Store};

/// 2026-01-01T00:00:00Z.
pub(super) const TIMESTAMP: u64 = 1_767_225_600;

/// A build context holding `files` (path, contents, executable) and a `Dockerfile` with `dockerfile`.
pub(super) fn context(dockerfile: &str, files: &[(&str, &str, bool)]) -> TempDir {
    let folder = tempfile::tempdir().expect("temp dir");
    std::fs::write(folder.path().join("Dockerfile"), dockerfile).expect("writes");
    for (path, contents, executable) in files {
        let path = folder.path().join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("creates");
        std::fs::write(&path, contents).expect("writes");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = if *executable { 0o775 } else { 0o664 };
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        }
        #[cfg(not(unix))]
        let _ = executable;
    }
    folder
}

/// A plain `COPY` of `sources` to `destination` at line 2.
pub(super) fn files(sources: &[&str], destination: &str) -> Files {
    Files {
        line: 2,
        add: false,
        sources: sources.iter().map(|source| (*source).to_owned()).collect(),
        destination: destination.to_owned(),
    }
}

/// A request to build `context`'s Dockerfile for `platform`.
pub(super) fn request(context: &Path, platform: &str) -> BuildRequest {
    BuildRequest {
        context: context.to_owned(),
        dockerfile: context.join("Dockerfile"),
        declared_dockerfile: "src/app/Dockerfile".into(),
        platform: platform.parse().expect("platform"),
        build_args: BTreeMap::new(),
        labels: BTreeMap::from([(
            "org.opencontainers.image.revision".to_owned(),
            "abc123".to_owned(),
        )]),
        timestamp: TIMESTAMP,
        staged_bases: BTreeMap::new(),
    }
}

fn target(layout: &Path) -> PushTarget {
    PushTarget {
        location: Location::Layout(layout.to_owned()),
        repository: "staging/app".to_owned(),
        tag: "run-1-leg-1".to_owned(),
        insecure: false,
        client: Arc::new(RegistryClient::new(ClientSettings::default()).expect("client")),
    }
}

async fn build(request: &BuildRequest, layout: &Path) -> Result<Built, BuildError> {
    NativeBuilder.build(request, &target(layout)).await
}

/// The error building `folder`'s Dockerfile for linux/amd64 into a fresh layout gives, and whether the layout
/// was left empty.
async fn build_error(folder: &TempDir) -> (BuildError, bool) {
    let layout = tempfile::tempdir().expect("dir");
    let error = build(&request(folder.path(), "linux/amd64"), layout.path())
        .await
        .expect_err("the build fails");
    let empty = std::fs::read_dir(layout.path())
        .expect("lists")
        .next()
        .is_none();
    (error, empty)
}

/// The manifest, config and layer bytes of `built` in `layout`.
async fn contents(layout: &Path, built: &Built) -> (Value, Value, Vec<bytes::Bytes>) {
    let store = LayoutStore::new(layout.to_owned());
    let manifest = store
        .get_manifest("staging/app", ManifestReference::Digest(&built.digest))
        .await
        .expect("reads")
        .expect("pushed");
    let manifest: Value = serde_json::from_slice(&manifest.bytes).expect("JSON");
    let blob = |descriptor: &Value| -> crate::model::reference::Digest {
        descriptor["digest"]
            .as_str()
            .expect("digest")
            .parse()
            .expect("digest")
    };
    let config = store
        .get_blob("staging/app", &blob(&manifest["config"]))
        .await
        .expect("config");
    let mut layers = Vec::new();
    for layer in manifest["layers"].as_array().expect("layers") {
        layers.push(
            store
                .get_blob("staging/app", &blob(layer))
                .await
                .expect("layer"),
        );
    }
    let config = serde_json::from_slice(&config).expect("JSON");
    (manifest, config, layers)
}

const APP: &str = "FROM scratch\n\
    ARG VERSION=1.0\n\
    ENV APP_HOME=/srv/app VERSION=$VERSION\n\
    WORKDIR $APP_HOME\n\
    COPY bin/ bin/\n\
    COPY README.md .\n\
    LABEL org.example.version=$VERSION\n\
    EXPOSE 8080\n\
    USER 1000\n\
    ENTRYPOINT [\"/srv/app/bin/start\"]\n\
    CMD serve --port 8080\n";

fn app_files() -> Vec<(&'static str, &'static str, bool)> {
    vec![
        ("bin/start", "#!/bin/sh\necho start\n", true),
        ("bin/lib/util.sh", "util\n", false),
        ("README.md", "readme\n", false),
    ]
}

#[tokio::test]
async fn the_same_input_twice_gives_the_same_bytes() {
    let folder = context(APP, &app_files());
    let request = request(folder.path(), "linux/arm64/v8");
    let (first_layout, second_layout) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let first = build(&request, first_layout.path()).await.expect("builds");
    // The files are touched in between: their times must not matter.
    for (path, contents, _) in app_files() {
        std::fs::write(folder.path().join(path), contents).expect("rewrites");
    }
    let second = build(&request, second_layout.path()).await.expect("builds");
    assert_eq!(first, second);
    assert_eq!(
        contents(first_layout.path(), &first).await,
        contents(second_layout.path(), &second).await
    );
    assert_eq!(first.base_image_digest, None);

    let mut changed = request.clone();
    changed.timestamp += 1;
    let third = build(&changed, second_layout.path()).await.expect("builds");
    assert_ne!(third.digest, first.digest, "the timestamp is in the image");
}

#[tokio::test]
async fn the_config_says_what_the_instructions_said() {
    let folder = context(APP, &app_files());
    let mut request = request(folder.path(), "linux/arm/v7");
    request
        .build_args
        .insert("VERSION".to_owned(), "2.5".to_owned());
    let layout = tempfile::tempdir().expect("dir");
    let built = build(&request, layout.path()).await.expect("builds");
    let (manifest, config, layers) = contents(layout.path(), &built).await;

    assert_eq!(
        manifest["mediaType"],
        crate::store::media_type::OCI_MANIFEST
    );
    assert_eq!(layers.len(), 2, "one layer per COPY");
    assert_eq!(
        (
            config["os"].as_str(),
            config["architecture"].as_str(),
            config["variant"].as_str()
        ),
        (Some("linux"), Some("arm"), Some("v7"))
    );
    assert_eq!(config["created"], "2026-01-01T00:00:00Z");
    let runtime = &config["config"];
    assert_eq!(
        runtime["Env"],
        serde_json::json!([
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "APP_HOME=/srv/app",
            "VERSION=2.5"
        ])
    );
    assert_eq!(runtime["WorkingDir"], "/srv/app");
    assert_eq!(runtime["User"], "1000");
    assert_eq!(runtime["ExposedPorts"], serde_json::json!({"8080/tcp": {}}));
    assert_eq!(
        runtime["Entrypoint"],
        serde_json::json!(["/srv/app/bin/start"])
    );
    assert_eq!(
        runtime["Cmd"],
        serde_json::json!(["/bin/sh", "-c", "serve --port 8080"])
    );
    assert_eq!(
        runtime["Labels"],
        serde_json::json!({"org.example.version": "2.5", "org.opencontainers.image.revision": "abc123"})
    );
    let diff_ids = config["rootfs"]["diff_ids"].as_array().expect("diff_ids");
    assert_eq!(diff_ids.len(), 2);
    let history = config["history"].as_array().expect("history");
    let layered: Vec<&str> = history
        .iter()
        .filter(|entry| entry.get("empty_layer").is_none())
        .filter_map(|entry| entry["created_by"].as_str())
        .collect();
    assert_eq!(layered, ["COPY bin/ bin/", "COPY README.md ."]);
    assert_eq!(history.len(), 9, "every instruction but FROM and ARG");
    assert!(
        history
            .iter()
            .all(|entry| entry["created"] == "2026-01-01T00:00:00Z")
    );
}

#[tokio::test]
async fn a_staged_base_is_built_on_and_its_layers_copied() {
    let base_folder = context(
        "FROM scratch\nENV BASE=1\nCMD [\"/base\"]\nCOPY base.txt /\n",
        &[("base.txt", "base\n", false)],
    );
    let staging = tempfile::tempdir().expect("dir");
    let mut base_request = request(base_folder.path(), "linux/amd64");
    base_request.labels.clear();
    let mut base_target = target(staging.path());
    base_target.repository = "staging/base".to_owned();
    let base = NativeBuilder
        .build(&base_request, &base_target)
        .await
        .expect("base builds");

    let folder = context(
        "FROM registry.example.com/base:1\nENV APP=1\nENTRYPOINT [\"/app\"]\nCOPY app.txt /\n",
        &[("app.txt", "app\n", false)],
    );
    let mut request = request(folder.path(), "linux/amd64");
    request.staged_bases.insert(
        "registry.example.com/base:1".to_owned(),
        StagedImage {
            location: Location::Layout(staging.path().to_owned()),
            repository: "staging/base".to_owned(),
            digest: base.digest.clone(),
        },
    );
    let built = build(&request, staging.path()).await.expect("builds");
    assert_eq!(
        built.base_image_digest,
        Some(format!(
            "oci:{}/staging/base@{}",
            staging.path().display(),
            base.digest
        ))
    );
    let (manifest, config, layers) = contents(staging.path(), &built).await;
    assert_eq!(layers.len(), 2, "the base's layer, then ours");
    assert_eq!(manifest["layers"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        config["rootfs"]["diff_ids"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(
        config["config"]["Env"],
        serde_json::json!([
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "BASE=1",
            "APP=1"
        ])
    );
    assert_eq!(
        config["config"].get("Cmd"),
        None,
        "ENTRYPOINT resets the base's CMD"
    );
    assert_eq!(config["history"].as_array().map(Vec::len), Some(6));
}

#[tokio::test]
async fn what_cannot_be_built_is_refused_with_its_line_and_nothing_written() {
    // gzip's magic bytes: an archive `ADD` would unpack.
    let archive: (&str, &[u8]) = ("a.tar.gz", &[0x1f, 0x8b, 8, 0]);
    let ignore: (&str, &[u8]) = (".dockerignore", b"*.log\n");
    let cases = [
        ("FROM scratch\nCOPY a /a\nRUN echo hi\n", None, 3, "RUN"),
        (
            "FROM scratch\nCOPY --from=build /a /a\n",
            None,
            2,
            "COPY --from=build",
        ),
        ("FROM scratch\nHEALTHCHECK NONE\n", None, 2, "HEALTHCHECK"),
        (
            "FROM scratch\nADD https://example.com/a /a\n",
            None,
            2,
            "ADD of a URL",
        ),
        (
            "FROM scratch\nCOPY a /a\n",
            Some(ignore),
            2,
            "COPY with the ignore file",
        ),
        (
            "FROM scratch\nADD a.tar.gz /\n",
            Some(archive),
            2,
            "ADD of the local archive `a.tar.gz`",
        ),
    ];
    for (dockerfile, extra, line, instruction) in cases {
        let folder = context(dockerfile, &[("a", "a", false)]);
        if let Some(file) = extra {
            std::fs::write(folder.path().join(file.0), file.1).expect("writes");
        }
        let (error, empty) = build_error(&folder).await;
        match &error {
            BuildError::Unsupported {
                file,
                line: found,
                instruction: what,
                builder,
                hint,
            } => {
                assert_eq!(
                    (file.to_str(), *found, *builder),
                    (Some("src/app/Dockerfile"), line, "native"),
                    "{dockerfile}"
                );
                assert!(what.starts_with(instruction), "{dockerfile}: {what}");
                assert!(hint.contains("--builder buildah"), "{hint}");
            }
            other => panic!("{dockerfile}: {other}"),
        }
        assert!(error.is_invalid_input());
        assert!(empty, "nothing written for {dockerfile}");
    }
}

#[tokio::test]
async fn a_missing_source_names_the_line() {
    let folder = context("FROM scratch\nCOPY missing.txt /\n", &[]);
    let (error, empty) = build_error(&folder).await;
    let text = error.to_string();
    assert!(
        text.starts_with("`src/app/Dockerfile` line 2: `missing.txt` is not in the build context"),
        "{text}"
    );
    assert!(error.is_invalid_input());
    assert!(empty);
}
