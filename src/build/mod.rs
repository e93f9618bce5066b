//! Builders: each turns one Dockerfile for one platform into an image pushed to staging, and says which
//! digest it pushed. They know no stage and no CI host: the build stage decides what to build, rewrites `FROM`
//! lines that name images of the manifest to their staging digests, confirms each digest by reading it back,
//! and writes the fragment.
//!
//! - `native`: daemonless, for Dockerfiles without `RUN`; every architecture on any machine.
//! - `buildah`: `buildah build`, pushed to a run-unique tag with `--digestfile`.
//! - `buildx`: `docker buildx build`, pushed by digest, attestations kept (to the run-unique tag with buildx's
//!   `docker` driver, which cannot push by digest).
//!
//! [`detect`] says which of them `--builder auto` means on this machine; [`tool`] runs the external ones.

mod any;
pub mod buildah;
pub mod buildx;
pub mod context;
pub mod dependencies;
pub mod detect;
pub mod dockerfile;
pub mod native;
pub mod tool;

pub use any::AnyBuilder;
pub use context::context_digest;
pub use detect::BuilderChoice;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::model::platform::Platform;
use crate::model::reference::Digest;
use crate::store::registry::RegistryClient;
use crate::store::{Location, StoreError};

/// One image to build: one Dockerfile for one platform.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// The build context: the folder `COPY` and `ADD` sources are relative to.
    pub context: PathBuf,
    /// The Dockerfile to build, with `FROM` lines already pinned (see [`dockerfile::replace_from_images`]); it
    /// may live outside the context.
    pub dockerfile: PathBuf,
    /// The Dockerfile as the manifest names it, for messages.
    pub declared_dockerfile: PathBuf,
    pub platform: Platform,
    /// `ARG` values: the manifest's `buildArgs`, then `--build-arg`.
    pub build_args: BTreeMap<String, String>,
    /// Labels to set on the image (`org.opencontainers.image.revision`, `.source`, `.created`).
    pub labels: BTreeMap<String, String>,
    /// Seconds since the epoch for every timestamp the image holds (`SOURCE_DATE_EPOCH`), so that equal inputs
    /// give equal digests.
    pub timestamp: u64,
    /// Base images named in the pinned `FROM` lines that are in staging, by the exact text of the line: where a
    /// builder that reads stores itself finds them (an OCI layout cannot be named in a Dockerfile).
    pub staged_bases: BTreeMap<String, StagedImage>,
}

/// An image in a store, by digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedImage {
    pub location: Location,
    pub repository: String,
    pub digest: Digest,
}

/// Where a build is pushed.
#[derive(Clone)]
pub struct PushTarget {
    pub location: Location,
    /// The repository in staging, prefix included.
    pub repository: String,
    /// A tag unique to this run and leg, for builders that cannot push by digest.
    pub tag: String,
    /// The registry is plain HTTP or its certificate is not to be verified (loopback, `--insecure-registry`).
    pub insecure: bool,
    /// For builders that talk to registries themselves.
    pub client: Arc<RegistryClient>,
}

/// What a builder pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// The manifest pushed: an image manifest, or an index when the builder added attestations.
    pub digest: Digest,
    /// The base image's digest (`registry/repo@sha256:…`) where the builder knows it.
    pub base_image_digest: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Dockerfile(#[from] dockerfile::DockerfileError),
    /// The Dockerfile needs what this builder cannot do (a `RUN` for the native builder).
    #[error("`{file}` line {line}: {instruction} is not supported by the {builder} builder", file = .file.display())]
    Unsupported {
        file: PathBuf,
        line: usize,
        instruction: String,
        builder: &'static str,
        /// What can build it instead.
        hint: String,
    },
    /// The base image cannot be built on: its name is not a reference, it has no image for the platform, or it
    /// is an image for another platform.
    #[error("`{file}` line {line}: the base image `{image}` {problem}", file = .file.display())]
    BaseImage {
        file: PathBuf,
        line: usize,
        image: String,
        problem: String,
    },
    /// The builder cannot push to this kind of store (buildx to an OCI layout).
    #[error("the {builder} builder cannot push to `{location}`")]
    UnsupportedTarget {
        builder: &'static str,
        location: String,
        hint: String,
    },
    #[error("`{tool}` is not installed")]
    ToolMissing { tool: String, hint: String },
    /// An external builder failed; `output` is the end of what it printed.
    #[error("`{command}` exited with {status}: {output}")]
    ToolFailed {
        command: String,
        status: String,
        output: String,
    },
    #[error("`{tool}` said something unexpected: {message}")]
    ToolOutput { tool: String, message: String },
    #[error("reading `{path}`", path = .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl BuildError {
    /// What to do about it, where that helps.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Unsupported { hint, .. }
            | Self::UnsupportedTarget { hint, .. }
            | Self::ToolMissing { hint, .. } => Some(hint.clone()),
            _ => None,
        }
    }

    /// Whether the input is at fault (exit code 2) rather than the environment (1).
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            Self::Dockerfile(_)
                | Self::Unsupported { .. }
                | Self::UnsupportedTarget { .. }
                | Self::BaseImage { .. }
        )
    }
}
