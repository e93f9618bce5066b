//! The buildx builder: `docker buildx build`, pushed by digest, with the attestations buildx adds by default kept
//! (the result is then an index of the image and its provenance).
//!
//! It refuses to push to an OCI layout: buildx writes images to registries or to its own layout files only.
//!
//! Buildx's `docker` driver (the Docker engine's own BuildKit) can neither push by digest nor build several
//! platforms: with that driver the image is pushed to the run-unique tag instead, and the digest is read from
//! buildx's metadata file all the same. Insecure registries: the `docker` driver pushes through the engine,
//! which treats `127.0.0.0/8` as insecure and other hosts as the engine's `--insecure-registry` says; other
//! drivers are told `registry.insecure=true` for an insecure staging registry. Base images on insecure
//! registries other than loopback need the builder's own configuration (`buildkitd.toml`).
//!
//! The `docker` program is `IMAGEPIPE_DOCKER`, else `docker` on `PATH`.

use std::ffi::OsString;
use std::path::PathBuf;

use serde::Deserialize;

use super::tool::{self, Progress, ToolCommand, find_program};
use super::{BuildError, BuildRequest, Built, PushTarget};
use crate::model::reference::Digest;
use crate::store::Location;

const TOOL: &str = "docker buildx";
/// Names the `docker` program to run instead of the one on `PATH`.
pub const DOCKER_VARIABLE: &str = "IMAGEPIPE_DOCKER";
/// The build argument BuildKit takes every timestamp of the image from.
const SOURCE_DATE_EPOCH: &str = "SOURCE_DATE_EPOCH";

/// Which `docker` runs, against which engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildxSettings {
    pub docker: PathBuf,
    /// `DOCKER_HOST` for the engine; the process's own environment when `None`.
    pub docker_host: Option<String>,
    /// `DOCKER_CONFIG` (credentials and CLI plugins); the process's own environment when `None`.
    pub docker_config: Option<PathBuf>,
    /// `--network` for `RUN` instructions; buildx's default when `None`. An engine started without a bridge
    /// network (`--bridge=none`) needs `none`.
    pub network: Option<String>,
}

impl BuildxSettings {
    /// `docker` as `IMAGEPIPE_DOCKER` or `PATH` name it.
    pub fn from_environment() -> Self {
        Self::locate(
            std::env::var_os(DOCKER_VARIABLE),
            std::env::var_os("PATH").as_deref(),
        )
    }

    /// `docker` as the values of `IMAGEPIPE_DOCKER` and `PATH` name it: the first when set, else the program on
    /// `PATH`, else the bare name (which then fails as missing).
    pub fn locate(imagepipe_docker: Option<OsString>, path: Option<&std::ffi::OsStr>) -> Self {
        Self {
            docker: docker_program(imagepipe_docker, path),
            docker_host: None,
            docker_config: None,
            network: None,
        }
    }
}

/// The `docker` program that `IMAGEPIPE_DOCKER` or `PATH` name, or the bare name `docker`.
pub fn docker_program(
    imagepipe_docker: Option<OsString>,
    path: Option<&std::ffi::OsStr>,
) -> PathBuf {
    imagepipe_docker
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
        .or_else(|| find_program("docker", path))
        .unwrap_or_else(|| PathBuf::from("docker"))
}

/// Builds with `docker buildx`.
#[derive(Debug)]
pub struct BuildxBuilder {
    settings: BuildxSettings,
    /// The current builder's driver, asked once.
    driver: tokio::sync::OnceCell<Driver>,
}

/// Buildx's driver of the current builder.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Driver {
    /// The engine's own BuildKit: one platform, pushed to a tag.
    Docker,
    /// `docker-container`, `kubernetes`, `remote`: pushes by digest.
    Other(String),
}

/// The keys of buildx's `--metadata-file` this builder reads.
#[derive(Debug, Deserialize)]
struct Metadata {
    #[serde(rename = "containerimage.digest")]
    digest: Option<String>,
    #[serde(rename = "containerimage.descriptor")]
    descriptor: Option<MetadataDescriptor>,
}

#[derive(Debug, Deserialize)]
struct MetadataDescriptor {
    digest: String,
}

impl BuildxBuilder {
    pub fn new(settings: BuildxSettings) -> Self {
        Self {
            settings,
            driver: tokio::sync::OnceCell::new(),
        }
    }

    /// Builds `request` and pushes it to `target`: by digest, or under its tag with the `docker` driver.
    pub async fn build(
        &self,
        request: &BuildRequest,
        target: &PushTarget,
    ) -> Result<Built, BuildError> {
        let host = match &target.location {
            Location::Registry(host) => host,
            Location::Layout(_) => {
                return Err(BuildError::UnsupportedTarget {
                    builder: "buildx",
                    location: target.location.to_string(),
                    hint: "stage to a registry (`--staging-registry HOST[:PORT]`), or build with `--builder buildah` or `--builder native`"
                        .to_owned(),
                });
            }
        };
        let name = format!("{host}/{}", target.repository);
        let output = match self.driver().await? {
            Driver::Docker => format!("type=image,name={name}:{},push=true", target.tag),
            Driver::Other(_) => {
                let mut output = format!(
                    "type=image,name={name},push-by-digest=true,name-canonical=true,push=true"
                );
                if target.insecure {
                    output.push_str(",registry.insecure=true");
                }
                output
            }
        };

        let work = tempfile::tempdir().map_err(|source| BuildError::Io {
            path: std::env::temp_dir(),
            source,
        })?;
        let metadata_file = work.path().join("metadata.json");
        let mut build = self.command();
        build
            .args(["buildx", "build", "--progress=plain", "--platform"])
            .arg(request.platform.to_string())
            .arg("--file")
            .arg(&request.dockerfile)
            .args(tool::pairs("--build-arg", &request.build_args));
        if !request.build_args.contains_key(SOURCE_DATE_EPOCH) {
            build
                .arg("--build-arg")
                .arg(format!("{SOURCE_DATE_EPOCH}={}", request.timestamp));
        }
        build.args(tool::pairs("--label", &request.labels));
        if let Some(network) = &self.settings.network {
            build.arg("--network").arg(network);
        }
        build
            .arg("--output")
            .arg(output)
            .arg("--metadata-file")
            .arg(&metadata_file)
            .arg(&request.context);
        build.run().await?;

        Ok(Built {
            digest: read_metadata(&metadata_file).await?,
            base_image_digest: None,
        })
    }

    /// `docker` with the engine and config this builder was given.
    fn command(&self) -> ToolCommand {
        let mut command = ToolCommand::new("docker", &self.settings.docker);
        command.install_hint(format!(
            "`{}` was not found: install Docker with the buildx plugin, name the program in `{DOCKER_VARIABLE}`, or build with `--builder buildah`",
            self.settings.docker.display()
        ));
        if let Some(host) = &self.settings.docker_host {
            command.env("DOCKER_HOST", host);
        }
        if let Some(config) = &self.settings.docker_config {
            command.env("DOCKER_CONFIG", config);
        }
        command
    }

    async fn driver(&self) -> Result<&Driver, BuildError> {
        self.driver
            .get_or_try_init(|| async {
                let mut inspect = self.command();
                inspect
                    .args(["buildx", "inspect"])
                    .progress(Progress::Debug);
                let captured = inspect.output().await?;
                let driver =
                    parse_driver(&captured.stdout).ok_or_else(|| BuildError::ToolOutput {
                        tool: TOOL.to_owned(),
                        message: "`docker buildx inspect` names no `Driver:`".to_owned(),
                    })?;
                tracing::debug!("buildx builds with the `{driver:?}` driver");
                Ok(driver)
            })
            .await
    }
}

/// The `Driver:` line of `docker buildx inspect`.
fn parse_driver(inspect: &str) -> Option<Driver> {
    inspect.lines().find_map(|line| {
        let driver = line.trim().strip_prefix("Driver:")?.trim();
        Some(match driver {
            "docker" => Driver::Docker,
            other => Driver::Other(other.to_owned()),
        })
    })
}

/// `containerimage.digest` of buildx's metadata file, checked against `containerimage.descriptor` when both are
/// there.
async fn read_metadata(file: &std::path::Path) -> Result<Digest, BuildError> {
    let bytes = tokio::fs::read(file)
        .await
        .map_err(|source| BuildError::Io {
            path: file.to_owned(),
            source,
        })?;
    let problem = |message: String| BuildError::ToolOutput {
        tool: TOOL.to_owned(),
        message,
    };
    let metadata: Metadata = serde_json::from_slice(&bytes).map_err(|error| {
        problem(format!(
            "its metadata file is not what buildx writes: {error}"
        ))
    })?;
    let text = metadata
        .digest
        .ok_or_else(|| problem("its metadata file has no `containerimage.digest`".to_owned()))?;
    let digest: Digest = text.parse().map_err(|error| {
        problem(format!(
            "its metadata file's `containerimage.digest`: {error}"
        ))
    })?;
    if let Some(descriptor) = metadata.descriptor {
        if descriptor.digest != digest.as_str() {
            return Err(problem(format!(
                "its metadata file names two digests: `{digest}` and, in `containerimage.descriptor`, `{}`",
                descriptor.digest
            )));
        }
    }
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drivers_are_read_from_inspect() {
        let docker = "Name:   default\nDriver: docker\n\nNodes:\nName: default\n";
        assert_eq!(parse_driver(docker), Some(Driver::Docker));
        let container =
            "Name:          builder\nDriver:        docker-container\nLast Activity: 2024\n";
        assert_eq!(
            parse_driver(container),
            Some(Driver::Other("docker-container".to_owned()))
        );
        assert_eq!(parse_driver("Name: x\n"), None);
    }

    #[test]
    fn the_docker_program_comes_from_the_variable_then_the_path() {
        let folder = tempfile::tempdir().expect("temp dir");
        let fake = folder.path().join("docker");
        std::fs::write(&fake, "#!/bin/sh\n").expect("writes");
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let path = folder.path().as_os_str();
        assert_eq!(docker_program(None, Some(path)), fake);
        assert_eq!(
            docker_program(Some("/opt/docker".into()), Some(path)),
            PathBuf::from("/opt/docker")
        );
        assert_eq!(docker_program(Some("".into()), Some(path)), fake);
        assert_eq!(docker_program(None, None), PathBuf::from("docker"));
    }

    #[tokio::test]
    async fn metadata_digests_must_agree() {
        let folder = tempfile::tempdir().expect("temp dir");
        let file = folder.path().join("metadata.json");
        let digest = Digest::of(b"index");
        let other = Digest::of(b"other");
        let write = |value: serde_json::Value| {
            std::fs::write(&file, value.to_string()).expect("writes");
        };
        write(serde_json::json!({
            "containerimage.digest": digest.as_str(),
            "containerimage.descriptor": {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest.as_str(), "size": 1}
        }));
        assert_eq!(read_metadata(&file).await.expect("reads"), digest);
        write(serde_json::json!({
            "containerimage.digest": digest.as_str(),
            "containerimage.descriptor": {"digest": other.as_str()}
        }));
        let error = read_metadata(&file).await.expect_err("two digests");
        assert!(error.to_string().contains("two digests"), "{error}");
        write(serde_json::json!({"buildx.build.ref": "default/default/x"}));
        let error = read_metadata(&file).await.expect_err("no digest");
        assert!(
            error.to_string().contains("containerimage.digest"),
            "{error}"
        );
    }
}
