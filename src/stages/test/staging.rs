//! Reading what staging holds: each object the checks need, read once, with what is absent or malformed kept
//! as a finding for the judge rather than an error.

use std::collections::{BTreeSet, HashMap};

use anyhow::Context;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use serde::Deserialize;

use crate::model::platform::{Platform, canonical_architecture, canonical_os};
use crate::model::reference::Digest;
use crate::store::{
    AnyStore, ManifestReference, Store, StoreError, attestation, media_type, our_digest,
};

/// Objects read from staging at once; each is one or two small requests, which the client bounds on its own.
const CONCURRENT_CHECKS: usize = 8;

/// An object to read from staging.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Probe {
    Image { repository: String, digest: Digest },
    Index { repository: String, digest: Digest },
    Tag { repository: String, tag: String },
}

/// What staging holds for a probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Found {
    Missing,
    /// Present but not what it should be: why.
    Invalid(String),
    /// A platform image, with the platform its config names.
    Image(Platform),
    /// An index, with its entries in order.
    Index(Vec<IndexEntry>),
    /// A tag, with the digest it points at.
    Tagged(Digest),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct IndexEntry {
    pub(super) digest: String,
    pub(super) platform: Option<Platform>,
    /// For an attestation manifest: the image it is annotated to describe.
    pub(super) attests: Option<String>,
}

/// The parts of an image manifest the checks read.
#[derive(Deserialize)]
struct ImageBody {
    config: DescriptorBody,
}

#[derive(Deserialize)]
struct DescriptorBody {
    digest: String,
    #[serde(default)]
    platform: Option<PlatformBody>,
    #[serde(default)]
    annotations: HashMap<String, String>,
}

impl DescriptorBody {
    /// The image an attestation entry describes; `None` for any other entry.
    fn attests(&mut self) -> Option<String> {
        let kind = self.annotations.get(attestation::REFERENCE_TYPE)?;
        if kind != attestation::ATTESTATION_MANIFEST {
            return None;
        }
        Some(
            self.annotations
                .remove(attestation::REFERENCE_DIGEST)
                .unwrap_or_default(),
        )
    }
}

#[derive(Deserialize)]
struct IndexBody {
    manifests: Vec<DescriptorBody>,
}

/// The platform fields of an image config or an index entry.
#[derive(Deserialize)]
struct PlatformBody {
    architecture: String,
    os: String,
    #[serde(default)]
    variant: Option<String>,
}

impl From<PlatformBody> for Platform {
    fn from(body: PlatformBody) -> Self {
        Platform {
            os: canonical_os(&body.os),
            architecture: canonical_architecture(&body.architecture),
            variant: body.variant.filter(|variant| !variant.is_empty()),
        }
    }
}

/// Reads every probe from `store`, a few at a time.
pub(super) async fn read_all(
    store: &AnyStore,
    probes: BTreeSet<Probe>,
) -> anyhow::Result<HashMap<Probe, Found>> {
    stream::iter(probes)
        .map(|probe| async move {
            let found = observe(store, &probe).await?;
            Ok::<_, anyhow::Error>((probe, found))
        })
        .buffer_unordered(CONCURRENT_CHECKS)
        .try_collect()
        .await
}

/// Reads what staging holds for `probe`. What is absent or malformed is a finding; a store that cannot
/// answer is an error.
async fn observe(store: &AnyStore, probe: &Probe) -> anyhow::Result<Found> {
    match probe {
        Probe::Tag { repository, tag } => {
            let descriptor = store
                .head_manifest(repository, ManifestReference::Tag(tag))
                .await
                .with_context(|| format!("resolving `{}/{repository}:{tag}`", store.name()))?;
            Ok(match descriptor {
                None => Found::Missing,
                Some(descriptor) => match our_digest(descriptor.digest()) {
                    Some(digest) => Found::Tagged(digest),
                    None => Found::Invalid(format!(
                        "points at `{}`, which is not a sha256 digest",
                        descriptor.digest()
                    )),
                },
            })
        }
        Probe::Image { repository, digest } => read_image(store, repository, digest)
            .await
            .with_context(|| format!("reading `{}/{repository}@{digest}`", store.name())),
        Probe::Index { repository, digest } => read_index(store, repository, digest)
            .await
            .with_context(|| format!("reading `{}/{repository}@{digest}`", store.name())),
    }
}

async fn read_image(
    store: &AnyStore,
    repository: &str,
    digest: &Digest,
) -> Result<Found, StoreError> {
    let Some(manifest) = store
        .get_manifest(repository, ManifestReference::Digest(digest))
        .await?
    else {
        return Ok(Found::Missing);
    };
    if media_type::is_index(&manifest.media_type) {
        return Ok(Found::Invalid(format!(
            "is an index (`{}`), where image-info records a platform image",
            manifest.media_type
        )));
    }
    let body: ImageBody = match serde_json::from_slice(&manifest.bytes) {
        Ok(body) => body,
        Err(error) => {
            return Ok(Found::Invalid(format!("is not an image manifest: {error}")));
        }
    };
    let Ok(config_digest) = body.config.digest.parse::<Digest>() else {
        return Ok(Found::Invalid(format!(
            "has config digest `{}`, which is not a sha256 digest",
            body.config.digest
        )));
    };
    let config = match store.get_blob(repository, &config_digest).await {
        Ok(config) => config,
        Err(StoreError::NotFound { .. }) => {
            return Ok(Found::Invalid(format!(
                "its config `{config_digest}` is not in staging"
            )));
        }
        Err(error) => return Err(error),
    };
    Ok(match serde_json::from_slice::<PlatformBody>(&config) {
        Ok(platform) => Found::Image(platform.into()),
        Err(_) => Found::Invalid(format!(
            "its config `{config_digest}` names no os and architecture"
        )),
    })
}

async fn read_index(
    store: &AnyStore,
    repository: &str,
    digest: &Digest,
) -> Result<Found, StoreError> {
    let Some(manifest) = store
        .get_manifest(repository, ManifestReference::Digest(digest))
        .await?
    else {
        return Ok(Found::Missing);
    };
    if !media_type::is_index(&manifest.media_type) {
        return Ok(Found::Invalid(format!(
            "is not an index but `{}`",
            manifest.media_type
        )));
    }
    Ok(match serde_json::from_slice::<IndexBody>(&manifest.bytes) {
        Ok(body) => Found::Index(
            body.manifests
                .into_iter()
                .map(|mut entry| IndexEntry {
                    attests: entry.attests(),
                    digest: entry.digest,
                    platform: entry.platform.map(Platform::from),
                })
                .collect(),
        ),
        Err(error) => Found::Invalid(format!("is not a valid index: {error}")),
    })
}
