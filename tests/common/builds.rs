//! What the builder tests share: a build context with a Dockerfile beside it, the request and push target the
//! build stage would give, and what a registry serves afterwards, read with skopeo.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use imagepipe::build::{BuildRequest, PushTarget};
use imagepipe::model::reference::Digest;
use imagepipe::store::Location;
use imagepipe::store::registry::{ClientSettings, RegistryClient, RegistryStore};
use serde_json::Value;
use tempfile::TempDir;

use super::commands::run;
use super::registry::Registry;
use super::{busybox, tools};

/// `SOURCE_DATE_EPOCH` of every test build: 2023-11-14T22:13:20Z.
pub const TIMESTAMP: u64 = 1_700_000_000;
pub const CREATED: &str = "2023-11-14T22:13:20Z";
/// The file the test Dockerfiles `COPY`.
pub const COPIED: &str = "file.txt";

/// A temp dir holding `context/file.txt` and `Dockerfile` (outside the context, as a pinned copy is).
pub struct Project {
    pub directory: TempDir,
}

impl Project {
    pub fn new(dockerfile: &str) -> Self {
        let directory = tempfile::tempdir().expect("temp dir");
        let context = directory.path().join("context");
        std::fs::create_dir_all(&context).expect("creates the context");
        std::fs::write(context.join(COPIED), "copied\n").expect("writes the copied file");
        std::fs::write(directory.path().join("Dockerfile"), dockerfile)
            .expect("writes the Dockerfile");
        Self { directory }
    }

    pub fn context(&self) -> PathBuf {
        self.directory.path().join("context")
    }

    pub fn dockerfile(&self) -> PathBuf {
        self.directory.path().join("Dockerfile")
    }

    /// The request for `platform`, with one build argument and one label.
    pub fn request(&self, platform: &str) -> BuildRequest {
        BuildRequest {
            context: self.context(),
            dockerfile: self.dockerfile(),
            declared_dockerfile: PathBuf::from("src/app/Dockerfile"),
            platform: platform.parse().expect("platform"),
            build_args: BTreeMap::from([("GREETING".to_owned(), "hi".to_owned())]),
            labels: BTreeMap::from([(
                "org.opencontainers.image.revision".to_owned(),
                "0123abc".to_owned(),
            )]),
            timestamp: TIMESTAMP,
            staged_bases: BTreeMap::new(),
        }
    }
}

/// A push to `repository:tag` of `location`; loopback registries are insecure.
pub fn target(location: &str, repository: &str, tag: &str) -> PushTarget {
    let location: Location = location.parse().expect("location");
    PushTarget {
        insecure: matches!(&location, Location::Registry(_)),
        location,
        repository: repository.to_owned(),
        tag: tag.to_owned(),
        client: Arc::new(RegistryClient::new(ClientSettings::default()).expect("client")),
    }
}

/// The manifest a plain HTTP registry serves for `reference` (`host/repo:tag`), as bytes.
pub fn served_manifest(reference: &str) -> Vec<u8> {
    skopeo_inspect(reference, &["--raw"])
}

/// The image config a plain HTTP registry serves for `reference`.
pub fn served_config(reference: &str) -> Value {
    let bytes = skopeo_inspect(reference, &["--config", "--raw"]);
    serde_json::from_slice(&bytes).expect("the config is JSON")
}

fn skopeo_inspect(reference: &str, what: &[&str]) -> Vec<u8> {
    run(Command::new(tools::skopeo())
        .args(["inspect", "--tls-verify=false"])
        .args(what)
        .arg(format!("docker://{reference}")))
    .stdout
}

/// The repository the busybox bases are pushed to.
pub const BASE_REPOSITORY: &str = "base/busybox";

/// Pushes the busybox base for `architecture` to `registry` by digest, and returns a Dockerfile that builds on it
/// (`RUN` with the build argument `GREETING`, and a `COPY`) and the base's digest.
pub async fn on_busybox(registry: &Registry, architecture: &str) -> (String, Digest) {
    let base = busybox::image(architecture);
    let client = target(&registry.host(), BASE_REPOSITORY, "base").client;
    base.push(
        &RegistryStore::new(client, &registry.host()),
        BASE_REPOSITORY,
        None,
    )
    .await;
    let dockerfile = format!(
        "FROM {host}/{BASE_REPOSITORY}@{digest}\n\
         ARG GREETING\n\
         RUN echo \"$GREETING\" > /hello && cat /hello\n\
         COPY {COPIED} /{COPIED}\n",
        host = registry.host(),
        digest = base.digest(),
    );
    (dockerfile, base.digest())
}
