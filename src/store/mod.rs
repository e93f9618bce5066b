//! Stores of manifests and blobs: an OCI Distribution registry over HTTP(S), or an OCI image layout folder
//! (`oci:DIR`, the embedded default that needs no server). Stages see only the [`Store`] trait.

pub mod blob_stream;
pub mod copy;
mod error;
pub mod layout;
mod location;
pub mod registry;

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::future::Future;

use bytes::Bytes;
use futures_util::stream::{self, StreamExt};

pub use blob_stream::BlobStream;
pub use error::{ErrorCode, StoreError};
pub use location::{Location, staging_repository};
pub use oci_spec::image::{Descriptor, MediaType};

use crate::model::reference::Digest;

/// Media types this product reads and writes.
pub mod media_type {
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

    /// Whether a manifest of this media type lists other manifests.
    pub fn is_index(media_type: &str) -> bool {
        media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
    }

    /// Every manifest media type, for `Accept` headers.
    pub const MANIFESTS: &[&str] = &[
        OCI_INDEX,
        OCI_MANIFEST,
        DOCKER_MANIFEST_LIST,
        DOCKER_MANIFEST,
    ];
}

/// How an index lists an attestation manifest (BuildKit's provenance and SBOM, as `buildx imagetools create`
/// keeps them): platform `unknown/unknown`, annotated with the image it describes.
pub mod attestation {
    /// The annotation naming what kind of reference the entry is.
    pub const REFERENCE_TYPE: &str = "vnd.docker.reference.type";
    /// Its value for an attestation manifest.
    pub const ATTESTATION_MANIFEST: &str = "attestation-manifest";
    /// The annotation naming the digest of the image the attestation describes.
    pub const REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";
    /// The os and architecture an attestation's entry declares.
    pub const UNKNOWN: &str = "unknown";
}

/// A manifest exactly as stored: its bytes are what was hashed, so they are pushed and copied unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredManifest {
    pub media_type: String,
    pub bytes: Bytes,
}

impl StoredManifest {
    pub fn digest(&self) -> Digest {
        Digest::of(&self.bytes)
    }

    /// The descriptor another manifest uses to point at this one.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(
            MediaType::from(self.media_type.as_str()),
            self.bytes.len() as u64,
            oci_digest(&self.digest()),
        )
    }
}

/// What names a manifest within a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestReference<'a> {
    Tag(&'a str),
    Digest(&'a Digest),
}

impl fmt::Display for ManifestReference<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tag(tag) => f.write_str(tag),
            Self::Digest(digest) => write!(f, "{digest}"),
        }
    }
}

/// The tag cosign stores a digest's signatures under: `sha256-<hex>.sig`.
pub fn signature_tag(digest: &Digest) -> String {
    format!("sha256-{}.sig", digest.hex())
}

/// The tags of each of `repositories` in `store`, one `tags/list` each, `at_once` at a time: what a stage reads
/// instead of asking about tags one by one. Each repository comes with its own answer, so that a caller decides
/// whether a listing that failed stops it or only makes it ask more.
pub async fn tag_sets<S: Store>(
    store: &S,
    repositories: BTreeSet<String>,
    at_once: usize,
) -> Vec<(String, Result<HashSet<String>, StoreError>)> {
    stream::iter(repositories)
        .map(|repository| async move {
            let tags = store.list_tags(&repository).await;
            (repository, tags.map(|tags| tags.into_iter().collect()))
        })
        .buffer_unordered(at_once.max(1))
        .collect()
        .await
}

/// Our digest as oci-spec's; both are validated `sha256:<hex>`, so the conversion cannot fail in practice.
pub fn oci_digest(digest: &Digest) -> oci_spec::image::Digest {
    digest
        .as_str()
        .parse()
        .unwrap_or_else(|_| unreachable!("`{digest}` was validated as sha256"))
}

/// oci-spec's digest as ours; `None` for algorithms other than sha256.
pub fn our_digest(digest: &oci_spec::image::Digest) -> Option<Digest> {
    digest.to_string().parse().ok()
}

/// A store of manifests and blobs, addressed by repository path (`acme/app`) within the store.
///
/// Methods return `Send` futures so that stages can run many operations at once. "Not found" is `Ok(None)` (or
/// `false`) where a caller decides what it means, and an error where it is always one.
pub trait Store: Send + Sync {
    /// How the store is named in messages: `127.0.0.1:5000` or `oci:/path`.
    fn name(&self) -> String;

    /// The manifest's exact bytes and media type.
    fn get_manifest(
        &self,
        repository: &str,
        reference: ManifestReference<'_>,
    ) -> impl Future<Output = Result<Option<StoredManifest>, StoreError>> + Send;

    /// The manifest's descriptor (media type, size, digest) without its body: resolves a tag.
    fn head_manifest(
        &self,
        repository: &str,
        reference: ManifestReference<'_>,
    ) -> impl Future<Output = Result<Option<Descriptor>, StoreError>> + Send;

    /// Stores a manifest under a tag, or under its digest when `reference` is its digest.
    fn put_manifest(
        &self,
        repository: &str,
        reference: ManifestReference<'_>,
        manifest: &StoredManifest,
    ) -> impl Future<Output = Result<Digest, StoreError>> + Send;

    /// The blob's size, if the repository has it.
    fn blob_size(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;

    /// The blob's bytes, checked against the digest.
    fn get_blob(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> impl Future<Output = Result<Bytes, StoreError>> + Send;

    /// Stores a blob; the store checks it against the digest.
    fn put_blob(
        &self,
        repository: &str,
        digest: &Digest,
        bytes: Bytes,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The blob as a stream of chunks, checked against the digest as they pass.
    fn open_blob(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> impl Future<Output = Result<BlobStream, StoreError>> + Send;

    /// Stores a blob from a stream, holding at most one upload chunk in memory; the store checks the digest.
    fn put_blob_stream(
        &self,
        repository: &str,
        digest: &Digest,
        blob: BlobStream,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Makes a blob of `from_repository` in the same store available in `repository` without transferring it.
    /// `false` when the store could not, and the caller must upload.
    fn mount_blob(
        &self,
        repository: &str,
        from_repository: &str,
        digest: &Digest,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The repository's tags; empty for a repository that does not exist.
    fn list_tags(
        &self,
        repository: &str,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// Whether the store has the OCI 1.1 referrers API.
    fn has_referrers_api(
        &self,
        repository: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The signature manifests of a digest: its referrers when the store has the referrers API, else the
    /// manifest at its `sha256-<hex>.sig` tag (if any).
    fn signatures_of(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> impl Future<Output = Result<Vec<Descriptor>, StoreError>> + Send;
}

/// The store a location names: what stages hold, so that one code path serves registries and layouts.
#[derive(Clone)]
pub enum AnyStore {
    Registry(registry::RegistryStore),
    Layout(layout::LayoutStore),
}

impl AnyStore {
    /// Opens the store at `location`; registries share the process's one client.
    pub fn open(location: &Location, client: &std::sync::Arc<registry::RegistryClient>) -> Self {
        match location {
            Location::Registry(host) => {
                Self::Registry(registry::RegistryStore::new(client.clone(), host))
            }
            Location::Layout(folder) => Self::Layout(layout::LayoutStore::new(folder.clone())),
        }
    }
}

/// Forwards each [`Store`] method to the store inside.
macro_rules! forward {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            AnyStore::Registry($store) => $call,
            AnyStore::Layout($store) => $call,
        }
    };
}

impl Store for AnyStore {
    fn name(&self) -> String {
        forward!(self, store => store.name())
    }

    async fn get_manifest(
        &self,
        repository: &str,
        reference: ManifestReference<'_>,
    ) -> Result<Option<StoredManifest>, StoreError> {
        forward!(self, store => store.get_manifest(repository, reference).await)
    }

    async fn head_manifest(
        &self,
        repository: &str,
        reference: ManifestReference<'_>,
    ) -> Result<Option<Descriptor>, StoreError> {
        forward!(self, store => store.head_manifest(repository, reference).await)
    }

    async fn put_manifest(
        &self,
        repository: &str,
        reference: ManifestReference<'_>,
        manifest: &StoredManifest,
    ) -> Result<Digest, StoreError> {
        forward!(self, store => store.put_manifest(repository, reference, manifest).await)
    }

    async fn blob_size(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<Option<u64>, StoreError> {
        forward!(self, store => store.blob_size(repository, digest).await)
    }

    async fn get_blob(&self, repository: &str, digest: &Digest) -> Result<Bytes, StoreError> {
        forward!(self, store => store.get_blob(repository, digest).await)
    }

    async fn put_blob(
        &self,
        repository: &str,
        digest: &Digest,
        bytes: Bytes,
    ) -> Result<(), StoreError> {
        forward!(self, store => store.put_blob(repository, digest, bytes).await)
    }

    async fn open_blob(&self, repository: &str, digest: &Digest) -> Result<BlobStream, StoreError> {
        forward!(self, store => store.open_blob(repository, digest).await)
    }

    async fn put_blob_stream(
        &self,
        repository: &str,
        digest: &Digest,
        blob: BlobStream,
    ) -> Result<(), StoreError> {
        forward!(self, store => store.put_blob_stream(repository, digest, blob).await)
    }

    async fn mount_blob(
        &self,
        repository: &str,
        from_repository: &str,
        digest: &Digest,
    ) -> Result<bool, StoreError> {
        forward!(self, store => store.mount_blob(repository, from_repository, digest).await)
    }

    async fn list_tags(&self, repository: &str) -> Result<Vec<String>, StoreError> {
        forward!(self, store => store.list_tags(repository).await)
    }

    async fn has_referrers_api(&self, repository: &str) -> Result<bool, StoreError> {
        forward!(self, store => store.has_referrers_api(repository).await)
    }

    async fn signatures_of(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<Vec<Descriptor>, StoreError> {
        forward!(self, store => store.signatures_of(repository, digest).await)
    }
}
