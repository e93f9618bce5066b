//! The buildah builder: `buildah build` into a storage of its own, then `buildah push --digestfile` to the
//! run-unique tag (buildah cannot push to `repo@digest` without `--disable-compression`, DESIGN.md §9).
//!
//! It refuses a Dockerfile whose base image is staged in an OCI layout: a `FROM` line cannot name a layout.
//!
//! Every call runs with `--storage-driver vfs` (buildah 1.28 ignores `STORAGE_DRIVER`) and chroot isolation
//! (`BUILDAH_ISOLATION=chroot` unless the environment chooses another), which need neither a kernel overlay nor
//! a container runtime. The storage is one temporary folder per builder, shared by its builds, so a base image
//! is pulled once per run. Base images on an insecure registry (loopback, or the insecure staging registry) are
//! pulled first with `--tls-verify=false`, so that the build itself keeps TLS verification for every other
//! registry; `buildah build` then finds them in the storage.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tempfile::TempDir;

use super::dockerfile::{self, FromLine};
use super::tool::{self, Captured, Progress, ToolCommand};
use super::{BuildError, BuildRequest, Built, PushTarget};
use crate::model::platform::Platform;
use crate::model::reference::Digest;
use crate::store::Location;
use crate::store::registry::credentials::docker_config_folder;
use crate::store::registry::is_loopback;

const TOOL: &str = "buildah";
/// Annotations buildah writes on the image it built (OCI image spec), naming the last stage's base.
const BASE_NAME_ANNOTATION: &str = "org.opencontainers.image.base.name";
const BASE_DIGEST_ANNOTATION: &str = "org.opencontainers.image.base.digest";

/// Where buildah comes from and what it is given.
#[derive(Debug, Clone)]
pub struct BuildahSettings {
    /// A path, or a name looked up on `PATH` when run.
    pub program: PathBuf,
    /// Where the builder's storage folder is made; the system's temp dir when `None`.
    pub storage_parent: Option<PathBuf>,
    /// Docker's config folder; buildah reads its `config.json` (`--authfile`) when there is one.
    pub docker_config: Option<PathBuf>,
}

impl BuildahSettings {
    /// `buildah` from `PATH`, storage in the temp dir, credentials from `DOCKER_CONFIG` or `~/.docker`.
    pub fn from_environment() -> Self {
        Self {
            program: PathBuf::from(TOOL),
            storage_parent: None,
            docker_config: docker_config_folder(),
        }
    }
}

/// Builds with buildah. One per process: its storage holds every base image pulled.
#[derive(Debug)]
pub struct BuildahBuilder {
    program: PathBuf,
    docker_config: Option<PathBuf>,
    /// `root/` and `runroot/` of buildah's storage, and each build's work files.
    storage: TempDir,
    /// buildah does not lock an OCI layout against another writer: pushes to layouts wait for each other.
    layout_pushes: tokio::sync::Mutex<()>,
}

impl BuildahBuilder {
    pub fn new(settings: BuildahSettings) -> Result<Self, BuildError> {
        let BuildahSettings {
            program,
            storage_parent,
            docker_config,
        } = settings;
        let parent = storage_parent.unwrap_or_else(std::env::temp_dir);
        let storage = tempfile::Builder::new()
            .prefix("imagepipe-buildah-")
            .tempdir_in(&parent)
            .map_err(|source| BuildError::Io {
                path: parent,
                source,
            })?;
        Ok(Self {
            program,
            docker_config,
            storage,
            layout_pushes: tokio::sync::Mutex::new(()),
        })
    }

    /// The folder holding buildah's storage.
    pub fn storage(&self) -> &Path {
        self.storage.path()
    }

    /// Builds `request` and pushes the image to `target` under its tag.
    pub async fn build(
        &self,
        request: &BuildRequest,
        target: &PushTarget,
    ) -> Result<Built, BuildError> {
        let text = tokio::fs::read_to_string(&request.dockerfile)
            .await
            .map_err(|source| BuildError::Io {
                path: request.dockerfile.clone(),
                source,
            })?;
        let lines =
            dockerfile::from_lines(&text, &request.declared_dockerfile, &request.build_args)?;
        refuse_layout_bases(request, &lines)?;
        for image in insecure_bases(&lines, target) {
            self.pull_insecure(&image, &request.platform).await?;
        }

        let local = local_name(target);
        let mut build = self.command();
        build
            .arg("build")
            .arg("--platform")
            .arg(request.platform.to_string())
            .arg("--timestamp")
            .arg(request.timestamp.to_string())
            .arg("-f")
            .arg(&request.dockerfile)
            .args(tool::pairs("--build-arg", &request.build_args))
            .args(tool::pairs("--label", &request.labels));
        self.add_auth_file(&mut build);
        build.arg("-t").arg(&local).arg(&request.context);
        build.run().await?;

        let built = async {
            let base_image_digest = self.base_image(&local).await?;
            let digest = self.push(&local, target).await?;
            Ok(Built {
                digest,
                base_image_digest,
            })
        }
        .await;
        self.remove(&local).await;
        built
    }

    /// `buildah` with the storage options every call takes.
    fn command(&self) -> ToolCommand {
        let mut command = ToolCommand::new(TOOL, &self.program);
        let storage = self.storage.path();
        command
            .install_hint(format!(
                "`{}` was not found: install the `buildah` package, or run `scripts/install-test-deps.sh` (as root, on Debian)",
                self.program.display()
            ))
            .args(["--storage-driver", "vfs", "--root"])
            .arg(storage.join("root"))
            .arg("--runroot")
            .arg(storage.join("runroot"));
        if std::env::var_os("BUILDAH_ISOLATION").is_none() {
            command.env("BUILDAH_ISOLATION", "chroot");
        }
        command
    }

    /// `--authfile` with Docker's `config.json`, which buildah reads, when there is one.
    fn add_auth_file(&self, command: &mut ToolCommand) {
        if let Some(file) = self
            .docker_config
            .as_ref()
            .map(|folder| folder.join("config.json"))
            .filter(|file| file.is_file())
        {
            command.arg("--authfile").arg(file);
        }
    }

    async fn pull_insecure(&self, image: &str, platform: &Platform) -> Result<(), BuildError> {
        let mut pull = self.command();
        pull.args([
            "pull",
            "--policy",
            "missing",
            "--tls-verify=false",
            "--platform",
        ])
        .arg(platform.to_string());
        self.add_auth_file(&mut pull);
        pull.arg(image).run().await
    }

    /// The base image of the last stage as `registry/repo@sha256:…`, from the annotations buildah wrote; `None`
    /// for an image built `FROM scratch`.
    async fn base_image(&self, local: &str) -> Result<Option<String>, BuildError> {
        let mut inspect = self.command();
        inspect
            .args(["inspect", "--type", "image"])
            .arg(local)
            .progress(Progress::Debug);
        // buildah 1.28's `--format` has no `json` function: the whole description is read instead.
        let Captured { stdout } = inspect.output().await?;
        let Inspected { annotations } =
            serde_json::from_str(&stdout).map_err(|error| BuildError::ToolOutput {
                tool: TOOL.to_owned(),
                message: format!(
                    "`buildah inspect {local}` is not what buildah 1.28 prints: {error}"
                ),
            })?;
        let annotations = annotations.unwrap_or_default();
        Ok(
            match (
                annotations.get(BASE_NAME_ANNOTATION),
                annotations.get(BASE_DIGEST_ANNOTATION),
            ) {
                (Some(name), Some(digest)) => Some(format!("{}@{digest}", repository_of(name))),
                _ => None,
            },
        )
    }

    async fn push(&self, local: &str, target: &PushTarget) -> Result<Digest, BuildError> {
        let work = tempfile::tempdir_in(self.storage.path()).map_err(|source| BuildError::Io {
            path: self.storage.path().to_owned(),
            source,
        })?;
        let digest_file = work.path().join("digest");
        let mut push = self.command();
        push.arg("push").arg("--digestfile").arg(&digest_file);
        let _layout_guard;
        let destination = match &target.location {
            Location::Registry(host) => {
                if target.insecure {
                    push.arg("--tls-verify=false");
                }
                self.add_auth_file(&mut push);
                format!("docker://{host}/{}:{}", target.repository, target.tag)
            }
            Location::Layout(folder) => {
                let layout = folder.join(&target.repository);
                tokio::fs::create_dir_all(&layout)
                    .await
                    .map_err(|source| BuildError::Io {
                        path: layout.clone(),
                        source,
                    })?;
                _layout_guard = self.layout_pushes.lock().await;
                format!("oci:{}:{}", layout.display(), target.tag)
            }
        };
        push.arg(local).arg(destination).run().await?;
        read_digest(&digest_file).await
    }

    /// Removes the built image from the storage; the base images stay for the next build. A failure costs only
    /// disk space, so it is not the build's failure.
    async fn remove(&self, local: &str) {
        let mut remove = self.command();
        remove.arg("rmi").arg(local).progress(Progress::Debug);
        if let Err(error) = remove.run().await {
            tracing::debug!("keeping `{local}` in buildah's storage: {error}");
        }
    }
}

/// The digest buildah wrote with `--digestfile`.
async fn read_digest(file: &Path) -> Result<Digest, BuildError> {
    let text = tokio::fs::read_to_string(file)
        .await
        .map_err(|source| BuildError::Io {
            path: file.to_owned(),
            source,
        })?;
    text.trim().parse().map_err(|error| BuildError::ToolOutput {
        tool: TOOL.to_owned(),
        message: format!("its digest file holds no digest: {error}"),
    })
}

/// The name the image has in buildah's storage between build and push.
fn local_name(target: &PushTarget) -> String {
    format!("localhost/imagepipe/{}:{}", target.repository, target.tag)
}

/// The part of `buildah inspect --type image` read here.
#[derive(Deserialize)]
struct Inspected {
    #[serde(rename = "ImageAnnotations", default)]
    annotations: Option<BTreeMap<String, String>>,
}

/// A base image staged in an OCI layout cannot be named in a `FROM` line that buildah reads.
fn refuse_layout_bases(request: &BuildRequest, lines: &[FromLine]) -> Result<(), BuildError> {
    for (image, staged) in &request.staged_bases {
        if let Location::Layout(_) = staged.location {
            let line = lines
                .iter()
                .find(|line| &line.image == image)
                .map_or(1, |line| line.line);
            return Err(BuildError::Unsupported {
                file: request.declared_dockerfile.clone(),
                line,
                instruction: format!(
                    "`FROM {image}`, a base image staged in `{}`,",
                    staged.location
                ),
                builder: TOOL,
                hint: "stage to a registry (`--staging-registry HOST[:PORT]`), or build with `--builder native`"
                    .to_owned(),
            });
        }
    }
    Ok(())
}

/// The base images of `lines` on registries that are plain HTTP or unverified: loopback hosts, and the
/// staging registry when it is insecure. Each once.
fn insecure_bases(lines: &[FromLine], target: &PushTarget) -> BTreeSet<String> {
    let insecure = |host: &str| {
        is_loopback(host)
            || (target.insecure
                && matches!(&target.location, Location::Registry(staging) if staging == host))
    };
    lines
        .iter()
        .filter(|line| !line.earlier_stage)
        .filter(|line| registry_of(&line.image).is_some_and(insecure))
        .map(|line| line.image.clone())
        .collect()
}

/// The registry an image reference names, the way Docker reads it: a first component with a `.` or `:`, or
/// `localhost`. `None` for Docker Hub's short names and `scratch`.
fn registry_of(image: &str) -> Option<&str> {
    let (first, _) = image.split_once('/')?;
    (first.contains(['.', ':']) || first == "localhost").then_some(first)
}

/// `registry/repo` of `registry/repo:tag` or `registry/repo@sha256:…`.
fn repository_of(name: &str) -> &str {
    let name = name.split_once('@').map_or(name, |(name, _)| name);
    match name.rfind(':') {
        Some(colon) if !name[colon..].contains('/') => &name[..colon],
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::build::StagedImage;
    use crate::store::registry::{ClientSettings, RegistryClient};

    fn target(location: &str, insecure: bool) -> PushTarget {
        PushTarget {
            location: location.parse().expect("location"),
            repository: "staging/1/acme/app".to_owned(),
            tag: "run-1-amd64".to_owned(),
            insecure,
            client: Arc::new(RegistryClient::new(ClientSettings::default()).expect("client")),
        }
    }

    fn lines(text: &str) -> Vec<FromLine> {
        dockerfile::from_lines(text, Path::new("Dockerfile"), &BTreeMap::new()).expect("parses")
    }

    #[test]
    fn registries_are_read_as_docker_reads_them() {
        let cases = [
            ("127.0.0.1:5000/base@sha256:00", Some("127.0.0.1:5000")),
            (
                "mcr.microsoft.com/dotnet/runtime:8.0",
                Some("mcr.microsoft.com"),
            ),
            ("localhost/app:1", Some("localhost")),
            ("library/debian:bookworm", None),
            ("debian", None),
            ("scratch", None),
        ];
        for (image, registry) in cases {
            assert_eq!(registry_of(image), registry, "{image}");
        }
    }

    #[test]
    fn base_names_lose_their_tag_or_digest() {
        let cases = [
            (
                "127.0.0.1:5000/base/busybox@sha256:ab",
                "127.0.0.1:5000/base/busybox",
            ),
            (
                "mcr.microsoft.com/dotnet/runtime:8.0",
                "mcr.microsoft.com/dotnet/runtime",
            ),
            ("127.0.0.1:5000/base", "127.0.0.1:5000/base"),
            ("docker.io/library/debian", "docker.io/library/debian"),
        ];
        for (name, repository) in cases {
            assert_eq!(repository_of(name), repository, "{name}");
        }
    }

    #[test]
    fn only_bases_on_insecure_registries_are_pulled_first() {
        let text = "FROM 127.0.0.1:5000/staging/1/base@sha256:aa AS build\n\
            FROM build\n\
            FROM registry.internal:5000/base:1\n\
            FROM mcr.microsoft.com/dotnet/runtime:8.0\n\
            FROM scratch\n";
        let secure = insecure_bases(&lines(text), &target("registry.internal:5000", false));
        assert_eq!(
            secure.into_iter().collect::<Vec<_>>(),
            ["127.0.0.1:5000/staging/1/base@sha256:aa"]
        );
        let insecure = insecure_bases(&lines(text), &target("registry.internal:5000", true));
        assert_eq!(
            insecure.into_iter().collect::<Vec<_>>(),
            [
                "127.0.0.1:5000/staging/1/base@sha256:aa",
                "registry.internal:5000/base:1"
            ]
        );
    }

    #[test]
    fn a_base_staged_in_a_layout_is_refused_at_its_line() {
        let digest = Digest::of(b"base");
        let image = format!("oci-staged/acme/base@{digest}");
        let text = format!("FROM scratch AS empty\nFROM {image}\nCOPY a /a\n");
        let request = BuildRequest {
            context: PathBuf::from("."),
            dockerfile: PathBuf::from("Dockerfile"),
            declared_dockerfile: PathBuf::from("src/app/Dockerfile"),
            platform: "linux/amd64".parse().expect("platform"),
            build_args: BTreeMap::new(),
            labels: BTreeMap::new(),
            timestamp: 0,
            staged_bases: BTreeMap::from([(
                image.clone(),
                StagedImage {
                    location: "oci:/tmp/staging".parse().expect("location"),
                    repository: "acme/base".to_owned(),
                    digest,
                },
            )]),
        };
        let error = refuse_layout_bases(&request, &lines(&text)).expect_err("refused");
        let message = error.to_string();
        assert!(
            message.starts_with("`src/app/Dockerfile` line 2: "),
            "{message}"
        );
        assert!(message.contains("buildah builder"), "{message}");
        assert!(error.is_invalid_input());
        assert!(
            error
                .hint()
                .is_some_and(|hint| hint.contains("--builder native"))
        );
    }

    #[test]
    fn local_names_are_unique_per_target() {
        assert_eq!(
            local_name(&target("127.0.0.1:5000", true)),
            "localhost/imagepipe/staging/1/acme/app:run-1-amd64"
        );
    }
}
