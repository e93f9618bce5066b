//! The native builder: builds a Dockerfile without `RUN` with no daemon and no emulator, for any platform on any
//! machine, by writing the image itself: the base image's layers as they are, one reproducible layer per
//! `COPY`/`ADD`, and a configuration the other instructions set.
//!
//! It refuses, naming the file and line, what it cannot build as Docker would: `RUN` and the other instructions
//! that need a running container or are not listed in [`instructions`], `COPY --from`, `--chmod`, `--chown` to
//! anyone but root, URLs, here-documents, `ADD` of a local archive (Docker would unpack it), and a context with a
//! `.dockerignore` (its rules are not applied here). Equal requests give byte-equal layers, configuration and
//! manifest, so the same digest.
//!
//! - `instructions`: the Dockerfile read into a recipe, refusals included; `words`: quoting and `$VARIABLES`.
//! - `base`: the base image found and read.
//! - `config`: the recipe applied to the runtime configuration.
//! - `sources`: what each `COPY`/`ADD` takes from the context; `layer`: those files as a gzip tar.
//! - `image`: the configuration and manifest.
//!
//! Each layer is built whole in memory (compressed), so a `COPY` of gigabytes needs that much memory.

mod base;
mod config;
mod image;
mod instructions;
mod layer;
mod sources;
mod words;

use std::path::PathBuf;

use bytes::Bytes;
use futures_util::future::try_join_all;

use self::base::BaseImage;
use self::config::Record;
use self::image::Image;
use self::instructions::{Action, unsupported};
use self::layer::Layer;
use self::sources::LayerError;
use super::{BuildError, BuildRequest, Built, PushTarget};
use crate::model::reference::Digest;
use crate::store::copy::Copier;
use crate::store::{AnyStore, ManifestReference, Store, StoreError, our_digest};

/// Builds Dockerfiles without `RUN` by writing images directly to the target store.
#[derive(Debug, Clone, Copy, Default)]
pub struct NativeBuilder;

impl NativeBuilder {
    /// Builds `request` and pushes the image to `target`, by digest and under `target.tag`.
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
        let recipe = instructions::read(&text, request)?;
        let first_copy = recipe
            .steps
            .iter()
            .find(|step| matches!(step.action, Action::Copy(_)));
        if let Some(step) = first_copy {
            if let Some(ignore) = sources::ignore_file(&request.context, &request.dockerfile) {
                let what = format!("COPY with the ignore file `{}`", ignore.display());
                return Err(unsupported(request, step.line, what));
            }
        }
        let base = base::resolve(&recipe, request, &target.client).await?;
        let mut runtime = base
            .as_ref()
            .map_or_else(config::scratch, BaseImage::runtime_config);
        let records = config::apply(&recipe, request, &mut runtime)?;
        let layers = build_layers(request, &records).await?;
        let image = image::assemble(request, base.as_ref(), runtime, &records, &layers);
        let digest = push(target, base.as_ref(), &layers, &image).await?;
        Ok(Built {
            digest,
            base_image_digest: base.as_ref().map(BaseImage::reference),
        })
    }
}

/// The layers of every `COPY`/`ADD` in `records`, in order, built in parallel off the runtime's threads.
async fn build_layers(
    request: &BuildRequest,
    records: &[Record],
) -> Result<Vec<Layer>, BuildError> {
    let builds = records
        .iter()
        .filter_map(|record| record.files.clone())
        .map(|files| {
            let context = request.context.clone();
            let timestamp = request.timestamp;
            async move {
                let line = files.line;
                let built =
                    tokio::task::spawn_blocking(move || layer::build(&context, &files, timestamp))
                        .await;
                match built {
                    Ok(result) => result.map_err(|error| layer_error(request, line, error)),
                    Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
                    Err(error) => Err(BuildError::Io {
                        path: request.context.clone(),
                        source: std::io::Error::other(error),
                    }),
                }
            }
        });
    try_join_all(builds).await
}

fn layer_error(request: &BuildRequest, line: usize, error: LayerError) -> BuildError {
    match error {
        LayerError::Io { path, source } => BuildError::Io { path, source },
        LayerError::NotFound { source } => instructions::syntax(
            &request.declared_dockerfile,
            line,
            format!(
                "`{source}` is not in the build context `{}`",
                request.context.display()
            ),
        ),
        LayerError::Archive { path } => unsupported(
            request,
            line,
            format!(
                "ADD of the local archive `{}` (Docker would unpack it; COPY keeps it as it is)",
                relative(request, path).display()
            ),
        ),
    }
}

fn relative(request: &BuildRequest, path: PathBuf) -> PathBuf {
    match path.strip_prefix(&request.context) {
        Ok(inside) => inside.to_owned(),
        Err(_) => path,
    }
}

/// Pushes what the target repository lacks: the base's layers (mounted or copied from the base's store), the new
/// layers and the configuration; then the manifest by digest and under the target's tag.
async fn push(
    target: &PushTarget,
    base: Option<&BaseImage>,
    layers: &[Layer],
    image: &Image,
) -> Result<Digest, BuildError> {
    let store = AnyStore::open(&target.location, &target.client);
    let repository = target.repository.as_str();
    if let Some(base) = base {
        let copier = Copier {
            source: &base.store,
            from: &base.repository,
            target: &store,
            to: repository,
            same_store: base.location == target.location,
            listing: None,
            memory: None,
        };
        let copies = base
            .layers
            .iter()
            // A non-distributable layer is fetched from its URLs by whoever pulls the image.
            .filter(|layer| layer.urls().as_ref().is_none_or(Vec::is_empty))
            .filter_map(|layer| Some((our_digest(layer.digest())?, layer.size())))
            .map(|(digest, size)| {
                let copier = &copier;
                async move { copier.copy_blob(&digest, size).await }
            });
        try_join_all(copies).await?;
    }
    let blobs = layers
        .iter()
        .map(|layer| (&layer.digest, &layer.blob))
        .chain(std::iter::once((&image.config_digest, &image.config)))
        .map(|(digest, blob)| put_missing(&store, repository, digest, blob));
    try_join_all(blobs).await?;
    let digest = image.manifest.digest();
    store
        .put_manifest(
            repository,
            ManifestReference::Digest(&digest),
            &image.manifest,
        )
        .await?;
    store
        .put_manifest(
            repository,
            ManifestReference::Tag(&target.tag),
            &image.manifest,
        )
        .await?;
    Ok(digest)
}

async fn put_missing(
    store: &AnyStore,
    repository: &str,
    digest: &Digest,
    blob: &Bytes,
) -> Result<(), StoreError> {
    if store.blob_size(repository, digest).await?.is_none() {
        store.put_blob(repository, digest, blob.clone()).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
