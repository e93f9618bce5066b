//! The builder a build uses, whichever it is: `--builder` resolved once, then one call per image.

use super::buildah::{BuildahBuilder, BuildahSettings};
use super::buildx::{BuildxBuilder, BuildxSettings};
use super::detect::{self, BuilderChoice, ResolvedBuilder};
use super::native::NativeBuilder;
use super::{BuildError, BuildRequest, Built, PushTarget};

pub enum AnyBuilder {
    Native(NativeBuilder),
    Buildah(BuildahBuilder),
    Buildx(BuildxBuilder),
}

impl AnyBuilder {
    /// The builder `choice` means here; `auto` asks Docker and looks for buildah without blocking the runtime.
    pub async fn resolve(choice: BuilderChoice) -> Result<Self, BuildError> {
        let resolved = tokio::task::spawn_blocking(move || detect::resolve(choice))
            .await
            .unwrap_or(ResolvedBuilder::Native);
        Ok(match resolved {
            ResolvedBuilder::Native => Self::Native(NativeBuilder),
            ResolvedBuilder::Buildah => {
                Self::Buildah(BuildahBuilder::new(BuildahSettings::from_environment())?)
            }
            ResolvedBuilder::Buildx => {
                Self::Buildx(BuildxBuilder::new(BuildxSettings::from_environment()))
            }
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Native(_) => "native",
            Self::Buildah(_) => "buildah",
            Self::Buildx(_) => "buildx",
        }
    }

    pub async fn build(
        &self,
        request: &BuildRequest,
        target: &PushTarget,
    ) -> Result<Built, BuildError> {
        match self {
            Self::Native(builder) => builder.build(request, target).await,
            Self::Buildah(builder) => builder.build(request, target).await,
            Self::Buildx(builder) => builder.build(request, target).await,
        }
    }
}
