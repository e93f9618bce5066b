//! The native builder through the library API against a real registry (distribution 2.8), its images read by the
//! real skopeo, GNU tar and buildah: every platform of a multi-platform base, repeatable digests, `FROM scratch`,
//! a staged base within the registry, an OCI layout target, an image buildah pulls (checking each layer against
//! its diff_id) and unpacks, the same files and runtime config as buildah makes of one Dockerfile, and `RUN`
//! refused.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use bytes::Bytes;
use common::commands::run;
use common::images::TestImage;
use common::tools;
use imagepipe::build::native::NativeBuilder;
use imagepipe::build::{BuildError, BuildRequest, Built, PushTarget, StagedImage};
use imagepipe::model::reference::Digest;
use imagepipe::store::registry::{ClientSettings, RegistryClient, RegistryStore};
use imagepipe::store::{Location, ManifestReference, Store, StoredManifest, media_type};
use serde_json::{Value, json};
use tempfile::TempDir;

/// 2026-01-01T00:00:00Z.
const TIMESTAMP: u64 = 1_767_225_600;
const PLATFORMS: [(&str, Option<&str>); 3] =
    [("amd64", None), ("arm64", Some("v8")), ("arm", Some("v7"))];

fn client() -> Arc<RegistryClient> {
    Arc::new(RegistryClient::new(ClientSettings::default()).expect("client"))
}

/// Pushes one test image per platform and an index over them, tagged `tag` in `repository`; returns the
/// platform images.
async fn push_base(host: &str, repository: &str, tag: &str) -> Vec<TestImage> {
    let store = RegistryStore::new(client(), host);
    let images: Vec<TestImage> = PLATFORMS
        .iter()
        .map(|(architecture, variant)| TestImage::new("linux", architecture, *variant, "base"))
        .collect();
    let mut children = Vec::new();
    for image in &images {
        image.push(&store, repository, None).await;
        let mut child = json!({
            "mediaType": media_type::OCI_MANIFEST,
            "digest": image.digest().as_str(),
            "size": image.manifest.bytes.len(),
            "platform": {"os": image.os, "architecture": image.architecture},
        });
        if let Some(variant) = &image.variant {
            child["platform"]["variant"] = json!(variant);
        }
        children.push(child);
    }
    let index =
        json!({"schemaVersion": 2, "mediaType": media_type::OCI_INDEX, "manifests": children});
    let index = StoredManifest {
        media_type: media_type::OCI_INDEX.to_owned(),
        bytes: Bytes::from(serde_json::to_vec(&index).expect("JSON")),
    };
    store
        .put_manifest(repository, ManifestReference::Tag(tag), &index)
        .await
        .expect("index pushed");
    images
}

/// A context with `dockerfile` and a small app: a script, a nested config file, a readme.
fn context(dockerfile: &str) -> TempDir {
    let folder = tempfile::tempdir().expect("temp dir");
    let write = |path: &str, contents: &str| {
        let path = folder.path().join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("creates");
        std::fs::write(path, contents).expect("writes");
    };
    write("Dockerfile", dockerfile);
    write("app/run", "#!/bin/sh\nexec echo hello\n");
    write("app/config/settings.json", "{\"debug\": false}\n");
    write("README.md", "the app\n");
    {
        use std::os::unix::fs::PermissionsExt as _;
        let run = folder.path().join("app/run");
        std::fs::set_permissions(run, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    folder
}

fn request(context: &Path, platform: &str) -> BuildRequest {
    BuildRequest {
        context: context.to_owned(),
        dockerfile: context.join("Dockerfile"),
        declared_dockerfile: "src/app/linux/Dockerfile".into(),
        platform: platform.parse().expect("platform"),
        build_args: BTreeMap::new(),
        labels: BTreeMap::from([(
            "org.opencontainers.image.source".to_owned(),
            "https://example.com/app".to_owned(),
        )]),
        timestamp: TIMESTAMP,
        staged_bases: BTreeMap::new(),
    }
}

fn registry_target(host: &str, repository: &str, tag: &str) -> PushTarget {
    PushTarget {
        location: Location::Registry(host.to_owned()),
        repository: repository.to_owned(),
        tag: tag.to_owned(),
        insecure: true,
        client: client(),
    }
}

/// Builds `context`'s Dockerfile for `platform` into `repository:tag` of the registry at `host`.
async fn build_into(
    context: &Path,
    platform: &str,
    host: &str,
    repository: &str,
    tag: &str,
) -> Result<Built, BuildError> {
    NativeBuilder
        .build(
            &request(context, platform),
            &registry_target(host, repository, tag),
        )
        .await
}

fn platform_text(architecture: &str, variant: Option<&str>) -> String {
    match variant {
        Some(variant) => format!("linux/{architecture}/{variant}"),
        None => format!("linux/{architecture}"),
    }
}

/// `skopeo inspect` (bookworm's 1.9) of `reference`, with `--config` for the image configuration.
fn skopeo_inspect(reference: &str, config: bool) -> Value {
    let mut command = Command::new(tools::skopeo());
    command.args(["inspect", "--tls-verify=false"]);
    if config {
        command.arg("--config");
    }
    let output = run(command.arg(reference));
    serde_json::from_slice(&output.stdout).expect("skopeo prints JSON")
}

const APP: &str = "FROM {BASE}\n\
    ARG CHANNEL=stable\n\
    ENV APP_HOME=/opt/app APP_CHANNEL=$CHANNEL\n\
    COPY app/ /opt/app/\n\
    COPY README.md /opt/app/\n\
    LABEL org.example.channel=$CHANNEL\n\
    ENTRYPOINT [\"/opt/app/run\"]\n";

#[tokio::test]
async fn every_platform_of_a_multi_platform_base_is_built_and_skopeo_reads_it() {
    let registry = common::Registry::start();
    let host = registry.host();
    let bases = push_base(&host, "base/runtime", "1.0").await;
    let folder = context(&APP.replace("{BASE}", &format!("{host}/base/runtime:1.0")));

    for ((architecture, variant), base) in PLATFORMS.iter().zip(&bases) {
        let platform = platform_text(architecture, *variant);
        let tag = format!("leg-{architecture}");
        let built = NativeBuilder
            .build(
                &request(folder.path(), &platform),
                &registry_target(&host, "native/app", &tag),
            )
            .await
            .unwrap_or_else(|error| panic!("{platform}: {error}"));
        assert_eq!(
            built.base_image_digest,
            Some(format!("{host}/base/runtime@{}", base.digest())),
            "{platform}: the platform's child of the base index"
        );

        let reference = format!("docker://{host}/native/app@{}", built.digest);
        let inspected = skopeo_inspect(&reference, false);
        assert_eq!(inspected["Architecture"], *architecture, "{platform}");
        assert_eq!(inspected["Os"], "linux", "{platform}");
        assert_eq!(
            inspected["Layers"].as_array().map(Vec::len),
            Some(3),
            "{platform}: the base's layer and one per COPY"
        );
        assert_eq!(
            inspected["Labels"],
            json!({"org.example.channel": "stable", "org.opencontainers.image.source": "https://example.com/app"})
        );
        assert_eq!(
            inspected["Env"],
            json!(["APP_HOME=/opt/app", "APP_CHANNEL=stable"])
        );
        let config = skopeo_inspect(&reference, true);
        assert_eq!(config["architecture"], *architecture, "{platform}");
        assert_eq!(config["variant"].as_str(), *variant, "{platform}");
        assert_eq!(config["created"], "2026-01-01T00:00:00Z");
        assert_eq!(config["config"]["Entrypoint"], json!(["/opt/app/run"]));
        assert_eq!(
            config["rootfs"]["diff_ids"].as_array().map(Vec::len),
            Some(3)
        );
        let tagged = skopeo_inspect(&format!("docker://{host}/native/app:{tag}"), false);
        assert_eq!(
            tagged["Digest"],
            built.digest.as_str(),
            "{platform}: the tag names the image"
        );
    }
}

#[tokio::test]
async fn the_same_input_twice_gives_the_same_digest() {
    let registry = common::Registry::start();
    let host = registry.host();
    push_base(&host, "base/runtime", "1.0").await;
    let folder = context(&APP.replace("{BASE}", &format!("{host}/base/runtime:1.0")));
    let request = request(folder.path(), "linux/arm64/v8");
    let first = NativeBuilder
        .build(&request, &registry_target(&host, "native/first", "a"))
        .await
        .expect("builds");
    // A fresh repository has none of the blobs: everything is pushed again and must come out the same.
    let second = NativeBuilder
        .build(&request, &registry_target(&host, "native/second", "b"))
        .await
        .expect("builds again");
    assert_eq!(first, second);
    let store = RegistryStore::new(client(), &host);
    let raw = |repository: &'static str, digest: Digest| {
        let store = store.clone();
        async move {
            store
                .get_manifest(repository, ManifestReference::Digest(&digest))
                .await
                .expect("reads")
                .expect("pushed")
                .bytes
        }
    };
    assert_eq!(
        raw("native/first", first.digest.clone()).await,
        raw("native/second", second.digest.clone()).await
    );
}

#[tokio::test]
async fn from_scratch_gives_layers_tar_reads_as_root_owned_at_the_timestamp() {
    let registry = common::Registry::start();
    let host = registry.host();
    let folder = context("FROM scratch\nCOPY app /app\nCMD [\"/app/run\"]\n");
    let built = build_into(
        folder.path(),
        "linux/amd64",
        &host,
        "native/scratch",
        "leg-1",
    )
    .await
    .expect("builds");
    assert_eq!(built.base_image_digest, None);
    let inspected = skopeo_inspect(
        &format!("docker://{host}/native/scratch@{}", built.digest),
        false,
    );
    assert_eq!(inspected["Architecture"], "amd64");
    let layers = inspected["Layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1);

    let digest: Digest = layers[0].as_str().expect("digest").parse().expect("sha256");
    let store = RegistryStore::new(client(), &host);
    let blob = store
        .get_blob("native/scratch", &digest)
        .await
        .expect("layer");
    let file = folder.path().join("layer.tar.gz");
    std::fs::write(&file, &blob).expect("writes");
    let listing = run(Command::new("tar")
        .args(["--list", "--verbose", "--numeric-owner", "--gzip", "--file"])
        .arg(&file)
        .env("TZ", "UTC"));
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    let lines: Vec<Vec<&str>> = listing
        .lines()
        .map(|line| line.split_whitespace().collect())
        .collect();
    let summary: Vec<(&str, &str, &str, &str, &str)> = lines
        .iter()
        .map(|fields| (fields[0], fields[1], fields[3], fields[4], fields[5]))
        .collect();
    assert_eq!(
        summary,
        [
            ("drwxr-xr-x", "0/0", "2026-01-01", "00:00", "app"),
            ("drwxr-xr-x", "0/0", "2026-01-01", "00:00", "app/config"),
            (
                "-rw-r--r--",
                "0/0",
                "2026-01-01",
                "00:00",
                "app/config/settings.json"
            ),
            ("-rwxr-xr-x", "0/0", "2026-01-01", "00:00", "app/run"),
        ],
        "{listing}"
    );
}

#[tokio::test]
async fn a_staged_base_in_the_same_registry_is_built_on_by_digest() {
    let registry = common::Registry::start();
    let host = registry.host();
    let bases = push_base(&host, "staging/base/runtime", "1.0").await;
    let folder = context("FROM mcr.example.com/base/runtime:1.0\nCOPY README.md /\n");
    let mut request = request(folder.path(), "linux/arm64");
    let index_digest = RegistryStore::new(client(), &host)
        .head_manifest("staging/base/runtime", ManifestReference::Tag("1.0"))
        .await
        .expect("head")
        .expect("tagged");
    request.staged_bases.insert(
        "mcr.example.com/base/runtime:1.0".to_owned(),
        StagedImage {
            location: Location::Registry(host.clone()),
            repository: "staging/base/runtime".to_owned(),
            digest: index_digest.digest().to_string().parse().expect("sha256"),
        },
    );
    let built = NativeBuilder
        .build(
            &request,
            &registry_target(&host, "staging/app", "leg-arm64"),
        )
        .await
        .expect("builds");
    assert_eq!(
        built.base_image_digest,
        Some(format!("{host}/staging/base/runtime@{}", bases[1].digest()))
    );
    let inspected = skopeo_inspect(
        &format!("docker://{host}/staging/app@{}", built.digest),
        false,
    );
    assert_eq!(inspected["Architecture"], "arm64");
    assert_eq!(inspected["Layers"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn a_layout_target_holds_the_image_and_the_bases_layers() {
    let registry = common::Registry::start();
    let host = registry.host();
    push_base(&host, "base/runtime", "1.0").await;
    let folder = context(&APP.replace("{BASE}", &format!("{host}/base/runtime:1.0")));
    let layout = tempfile::tempdir().expect("dir");
    let target = PushTarget {
        location: Location::Layout(layout.path().to_owned()),
        repository: "staging/app".to_owned(),
        tag: "leg-arm".to_owned(),
        insecure: false,
        client: client(),
    };
    let built: Built = NativeBuilder
        .build(&request(folder.path(), "linux/arm/v7"), &target)
        .await
        .expect("builds into the layout");
    let reference = format!(
        "oci:{}:leg-arm",
        layout.path().join("staging/app").display()
    );
    let inspected = skopeo_inspect(&reference, false);
    assert_eq!(inspected["Architecture"], "arm");
    assert_eq!(inspected["Digest"], built.digest.as_str());
    assert_eq!(inspected["Layers"].as_array().map(Vec::len), Some(3));
    assert_eq!(skopeo_inspect(&reference, true)["variant"], "v7");
}

#[tokio::test]
async fn run_is_refused_naming_the_file_and_line_and_nothing_is_pushed() {
    let registry = common::Registry::start();
    let host = registry.host();
    let folder = context("FROM scratch\nCOPY app /app\n\nRUN /app/run\n");
    let error = build_into(
        folder.path(),
        "linux/amd64",
        &host,
        "native/refused",
        "leg-1",
    )
    .await
    .expect_err("RUN cannot be built natively");
    assert!(
        matches!(error, BuildError::Unsupported { line: 4, .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "`src/app/linux/Dockerfile` line 4: RUN is not supported by the native builder"
    );
    assert_eq!(
        error.hint().as_deref(),
        Some("build it with `--builder buildah` or `--builder buildx`")
    );
    let tags = RegistryStore::new(client(), &host)
        .list_tags("native/refused")
        .await
        .expect("lists");
    assert!(tags.is_empty(), "{tags:?}");
}

/// buildah with private storage in `root`, as the design's notes say it runs here.
fn buildah(root: &Path, arguments: &[&str]) -> String {
    let output = run(tools::buildah_in(&tools::buildah(), root).args(arguments));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[tokio::test]
async fn buildah_pulls_an_image_built_on_a_native_base_and_finds_the_files() {
    let registry = common::Registry::start();
    let host = registry.host();
    let folder = context("FROM scratch\nCOPY app /app\nENV BASE=1\n");
    let base = build_into(folder.path(), "linux/amd64", &host, "native/base", "1")
        .await
        .expect("base builds");
    std::fs::write(
        folder.path().join("Dockerfile"),
        format!("FROM {host}/native/base:1\nWORKDIR /app\nCOPY README.md docs/\nCMD [\"./run\"]\n"),
    )
    .expect("writes");
    let built = build_into(folder.path(), "linux/amd64", &host, "native/app", "1")
        .await
        .expect("builds on the base");
    assert_eq!(
        built.base_image_digest,
        Some(format!("{host}/native/base@{}", base.digest))
    );

    // Pulling unpacks every layer and checks it against the config's diff_ids.
    let storage = tempfile::tempdir().expect("dir");
    let image = format!("{host}/native/app@{}", built.digest);
    let pulled = format!("docker://{image}");
    buildah(
        storage.path(),
        &["pull", "--quiet", "--tls-verify=false", &pulled],
    );
    let container = buildah(storage.path(), &["from", "--pull-never", &image]);
    let mounted = Path::new(&buildah(storage.path(), &["mount", &container])).to_owned();
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |path: &str| {
        std::fs::metadata(mounted.join(path))
            .unwrap_or_else(|error| panic!("{path}: {error}"))
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("app/run"), 0o755);
    assert_eq!(mode("app/config/settings.json"), 0o644);
    assert_eq!(
        std::fs::read_to_string(mounted.join("app/docs/README.md")).expect("copied"),
        "the app\n"
    );
    let inspected: Value = serde_json::from_str(&buildah(storage.path(), &["inspect", &container]))
        .expect("buildah prints JSON");
    let config = &inspected["OCIv1"]["config"];
    assert_eq!(config["WorkingDir"], "/app");
    assert_eq!(config["Cmd"], json!(["./run"]));
    assert!(
        config["Env"]
            .as_array()
            .is_some_and(|env| env.contains(&json!("BASE=1"))),
        "{config}"
    );
    buildah(storage.path(), &["rm", &container]);
}

/// Every path below `root` with what it is: `dir`, `link -> target`, or `file` with its execute bit and contents.
fn tree(root: &Path) -> BTreeMap<String, String> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut found = BTreeMap::new();
    let mut pending = vec![root.to_owned()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).expect("lists") {
            let path = entry.expect("entry").path();
            let metadata = std::fs::symlink_metadata(&path).expect("metadata");
            let what = if metadata.is_symlink() {
                format!(
                    "link -> {}",
                    std::fs::read_link(&path).expect("link").display()
                )
            } else if metadata.is_dir() {
                pending.push(path.clone());
                "dir".to_owned()
            } else {
                let executable = metadata.permissions().mode() & 0o111 != 0;
                let contents = std::fs::read_to_string(&path).expect("reads");
                format!("file executable={executable} {contents:?}")
            };
            let relative = path.strip_prefix(root).expect("below the root");
            found.insert(relative.display().to_string(), what);
        }
    }
    found
}

#[tokio::test]
async fn the_files_and_runtime_config_are_what_buildah_makes_of_the_same_dockerfile() {
    let registry = common::Registry::start();
    let host = registry.host();
    let folder = context(
        "FROM scratch\n\
         WORKDIR /srv\n\
         COPY app/ app/\n\
         COPY README.md .\n\
         COPY *.txt docs/\n\
         COPY app/config/settings.json /etc/app.json\n\
         COPY app /flat\n\
         ADD notes.txt /notes/\n\
         COPY app/run app/config /mixed/\n\
         ARG V=1\n\
         ENV A=$V B=\"x y\"\n\
         LABEL l=$V\n\
         EXPOSE 80 53/udp\n\
         USER 1000\n\
         STOPSIGNAL SIGINT\n\
         ENTRYPOINT [\"/e\"]\n\
         CMD run it\n",
    );
    for (name, contents) in [("notes.txt", "notes\n"), ("more.txt", "more\n")] {
        std::fs::write(folder.path().join(name), contents).expect("writes");
    }
    std::os::unix::fs::symlink("run", folder.path().join("app/start")).expect("links");
    let built = build_into(folder.path(), "linux/amd64", &host, "native/same", "1")
        .await
        .expect("builds");

    let storage = tempfile::tempdir().expect("dir");
    let context_text = folder.path().to_string_lossy();
    buildah(
        storage.path(),
        &[
            "build",
            "--quiet",
            "--timestamp",
            "0",
            "--tag",
            "localhost/peer:1",
            &context_text,
        ],
    );
    let image = format!("{host}/native/same@{}", built.digest);
    let pulled = format!("docker://{image}");
    buildah(
        storage.path(),
        &["pull", "--quiet", "--tls-verify=false", &pulled],
    );
    let (mut trees, mut configs) = (Vec::new(), Vec::new());
    for image in ["localhost/peer:1", image.as_str()] {
        let container = buildah(storage.path(), &["from", "--pull-never", image]);
        let mounted = buildah(storage.path(), &["mount", &container]);
        trees.push(tree(Path::new(&mounted)));
        buildah(storage.path(), &["rm", &container]);
        let inspected = buildah(storage.path(), &["inspect", "--type", "image", image]);
        let mut inspected: Value = serde_json::from_str(&inspected).expect("JSON");
        let config = inspected["OCIv1"]["config"].take();
        configs.push(config);
    }
    assert_eq!(trees[1], trees[0], "native (left) against buildah (right)");
    assert!(trees[0].contains_key("srv/docs/more.txt"), "{:?}", trees[0]);
    // buildah labels its images with its version; our request adds the source label.
    configs[0]["Labels"]["org.opencontainers.image.source"] = json!("https://example.com/app");
    if let Some(labels) = configs[0]["Labels"].as_object_mut() {
        labels.remove("io.buildah.version");
    }
    assert_eq!(
        configs[1], configs[0],
        "native (left) against buildah (right)"
    );
}
