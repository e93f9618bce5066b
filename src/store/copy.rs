//! Copying images between stores by digest: manifests byte for byte (so digests do not change), children before
//! the index that lists them, blobs before the manifest that needs them, and signatures with the image.

use std::collections::{HashMap, HashSet};
use std::ops::AddAssign;

use futures_util::future::try_join_all;
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use std::sync::Arc;

use tokio::sync::{Mutex, OnceCell};

use super::{
    ManifestReference, Store, StoreError, StoredManifest, blob_stream, media_type, our_digest,
    signature_tag,
};
use crate::model::reference::Digest;

/// What a copy moved and what it found already there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyStats {
    pub objects_copied: u64,
    pub objects_skipped: u64,
    pub bytes_copied: u64,
    pub bytes_skipped: u64,
}

impl AddAssign for CopyStats {
    fn add_assign(&mut self, other: Self) {
        self.objects_copied += other.objects_copied;
        self.objects_skipped += other.objects_skipped;
        self.bytes_copied += other.bytes_copied;
        self.bytes_skipped += other.bytes_skipped;
    }
}

impl std::iter::Sum for CopyStats {
    fn sum<I: Iterator<Item = Self>>(all: I) -> Self {
        all.fold(Self::default(), |mut total, one| {
            total += one;
            total
        })
    }
}

impl CopyStats {
    fn copied(bytes: u64) -> Self {
        Self {
            objects_copied: 1,
            bytes_copied: bytes,
            ..Self::default()
        }
    }

    /// One object found already there, of `bytes` bytes (0 where the size was not read).
    pub fn skipped(bytes: u64) -> Self {
        Self {
            objects_skipped: 1,
            bytes_skipped: bytes,
            ..Self::default()
        }
    }
}

/// Blobs up to this size are sent to a new repository without asking whether it has them: asking costs a round
/// trip, and sending one again costs about as much.
const SENT_WITHOUT_ASKING: u64 = 1024 * 1024;

/// The tags a target repository held when the stage began (one `tags/list`), so that a copy asks it less: a
/// tag not among them is absent, and a repository with none is new, so the manifests and small blobs a copy
/// writes there are taken as absent without asking (writing content-addressed bytes it had is harmless).
#[derive(Debug, Default)]
pub struct TargetListing {
    pub tags: HashSet<String>,
}

impl TargetListing {
    fn is_new(&self) -> bool {
        self.tags.is_empty()
    }
}

/// What the copies of one stage share: the manifests they read from the source (what a later tag needs,
/// without reading it again), and which objects are being copied to which repository, so that each is copied
/// once however many images hold it. Two copies of one blob at once are not only wasted: distribution 2.8
/// rewrites a blob's link while it is pushed again, and refuses a manifest naming it meanwhile.
#[derive(Default)]
pub struct CopyMemory {
    manifests: Mutex<HashMap<Digest, StoredManifest>>,
    copies: Mutex<HashMap<CopyTarget, Arc<OnceCell<()>>>>,
}

/// An object in a target repository: store name, repository, digest.
type CopyTarget = (String, String, Digest);

impl CopyMemory {
    /// The manifest `digest` as a copy read it from the source, if one did.
    pub async fn manifest(&self, digest: &Digest) -> Option<StoredManifest> {
        self.manifests.lock().await.get(digest).cloned()
    }

    async fn copy_of(&self, store: String, repository: &str, digest: &Digest) -> Arc<OnceCell<()>> {
        self.copies
            .lock()
            .await
            .entry((store, repository.to_owned(), digest.clone()))
            .or_default()
            .clone()
    }
}

/// Copies from one repository of a store to one repository of another (or the same) store.
pub struct Copier<'a, S, T> {
    pub source: &'a S,
    pub from: &'a str,
    pub target: &'a T,
    pub to: &'a str,
    /// Source and target are the same store, so blobs can be mounted instead of transferred.
    pub same_store: bool,
    /// What the target held when the stage began; `None` asks the target about everything.
    pub listing: Option<&'a TargetListing>,
    /// Shared with the stage's other copies, when it makes several at once.
    pub memory: Option<&'a CopyMemory>,
}

impl<S: Store, T: Store> Copier<'_, S, T> {
    /// Copies the manifest `digest` and everything it refers to. Anything the target already has is skipped;
    /// a manifest the target has is complete (registries refuse manifests whose content is missing).
    pub async fn copy_manifest(&self, digest: &Digest) -> Result<CopyStats, StoreError> {
        Ok(self.copy_manifest_listing(digest).await?.0)
    }

    /// Copies like [`Copier::copy_manifest`], and says which manifests an index it copied lists; `None` when the
    /// target had the manifest already (and so, registries guarantee, everything it lists).
    pub async fn copy_manifest_listing(
        &self,
        digest: &Digest,
    ) -> Result<(CopyStats, Option<Vec<Digest>>), StoreError> {
        let found = (CopyStats::skipped(0), None);
        self.once(digest, found, self.copy_manifest_listing_now(digest))
            .await
    }

    /// Runs `copy` unless another copy sharing this one's memory copies the same object to the same repository;
    /// then waits for that one instead, and answers `found`.
    async fn once<R>(
        &self,
        digest: &Digest,
        found: R,
        copy: impl Future<Output = Result<R, StoreError>>,
    ) -> Result<R, StoreError> {
        let Some(memory) = self.memory else {
            return copy.await;
        };
        let cell = memory.copy_of(self.target.name(), self.to, digest).await;
        let mut ours = None;
        cell.get_or_try_init(|| async {
            ours = Some(copy.await?);
            Ok::<_, StoreError>(())
        })
        .await?;
        Ok(ours.unwrap_or(found))
    }

    async fn copy_manifest_listing_now(
        &self,
        digest: &Digest,
    ) -> Result<(CopyStats, Option<Vec<Digest>>), StoreError> {
        if let Some(present) = self
            .target_manifest(ManifestReference::Digest(digest))
            .await?
        {
            return Ok((CopyStats::skipped(present.size()), None));
        }
        let manifest = self.fetch(digest).await?;
        if let Some(memory) = self.memory {
            memory
                .manifests
                .lock()
                .await
                .insert(digest.clone(), manifest.clone());
        }
        let listed = if media_type::is_index(&manifest.media_type) {
            let index: ImageIndex = parse(self, digest, &manifest)?;
            index
                .manifests()
                .iter()
                .filter_map(|child| our_digest(child.digest()))
                .collect()
        } else {
            Vec::new()
        };
        Ok((self.copy_content(digest, &manifest).await?, Some(listed)))
    }

    /// Copies what `manifest` (already read from the source) refers to, then the manifest itself, by digest.
    async fn copy_content(
        &self,
        digest: &Digest,
        manifest: &StoredManifest,
    ) -> Result<CopyStats, StoreError> {
        self.copy_content_as(digest, manifest, ManifestReference::Digest(digest))
            .await
    }

    /// Copies like [`Copier::copy_content`], writing the manifest under `reference`.
    async fn copy_content_as(
        &self,
        digest: &Digest,
        manifest: &StoredManifest,
        reference: ManifestReference<'_>,
    ) -> Result<CopyStats, StoreError> {
        let mut stats = if media_type::is_index(&manifest.media_type) {
            let index: ImageIndex = parse(self, digest, manifest)?;
            let children = index
                .manifests()
                .iter()
                .filter_map(|child| our_digest(child.digest()));
            let copies =
                children.map(|child| async move { Box::pin(self.copy_manifest(&child)).await });
            try_join_all(copies).await?.into_iter().sum()
        } else {
            let image: ImageManifest = parse(self, digest, manifest)?;
            let blobs = std::iter::once(image.config()).chain(image.layers().iter());
            let copies = blobs
                .filter_map(|blob| Some((our_digest(blob.digest())?, blob.size())))
                .map(|(blob, size)| async move { self.copy_blob(&blob, size).await });
            try_join_all(copies).await?.into_iter().sum()
        };
        self.target
            .put_manifest(self.to, reference, manifest)
            .await?;
        stats += CopyStats::copied(manifest.bytes.len() as u64);
        Ok(stats)
    }

    /// Copies the signatures of `digest`: the `sha256-<hex>.sig` manifest under its tag, and referrers where the
    /// source has the referrers API. When the target's tag already names the source's signature manifest,
    /// nothing else is asked.
    pub async fn copy_signatures(&self, digest: &Digest) -> Result<CopyStats, StoreError> {
        self.copy_signatures_known(digest, None).await
    }

    /// Copies like [`Copier::copy_signatures`], given the digest of the source's `.sig` manifest when it was
    /// read already: a target whose tag names it is then left alone without reading the source again.
    pub async fn copy_signatures_known(
        &self,
        digest: &Digest,
        source_signature: Option<&Digest>,
    ) -> Result<CopyStats, StoreError> {
        let mut stats = CopyStats::default();
        let tag = signature_tag(digest);
        let mut current = None;
        if let Some(known) = source_signature
            && !self.source.has_referrers_api(self.from).await?
        {
            let present = self.target_manifest(ManifestReference::Tag(&tag)).await?;
            if let Some(present) = &present
                && our_digest(present.digest()).as_ref() == Some(known)
            {
                return Ok(CopyStats::skipped(present.size()));
            }
            current = Some(present);
        }
        let tagged = self
            .source
            .get_manifest(self.from, ManifestReference::Tag(&tag))
            .await?;
        let tagged_digest = tagged.as_ref().map(StoredManifest::digest);
        if let (Some(manifest), Some(signature)) = (&tagged, &tagged_digest) {
            let current = match current {
                Some(current) => current,
                None => self.target_manifest(ManifestReference::Tag(&tag)).await?,
            };
            if current
                .and_then(|descriptor| our_digest(descriptor.digest()))
                .as_ref()
                == Some(signature)
            {
                stats += CopyStats::skipped(manifest.bytes.len() as u64);
            } else {
                // Written under its tag only: the tag is how it is found, and a PUT by tag stores it too.
                stats += self
                    .copy_content_as(signature, manifest, ManifestReference::Tag(&tag))
                    .await?;
            }
        }
        if self.source.has_referrers_api(self.from).await? {
            for referrer in self.source.signatures_of(self.from, digest).await? {
                match our_digest(referrer.digest()) {
                    Some(other) if Some(&other) != tagged_digest.as_ref() => {
                        stats += self.copy_manifest(&other).await?
                    }
                    _ => {}
                }
            }
        }
        Ok(stats)
    }

    /// What the target holds under `reference`; see [`absent_when_unreadable`].
    async fn target_manifest(
        &self,
        reference: ManifestReference<'_>,
    ) -> Result<Option<Descriptor>, StoreError> {
        if let Some(listing) = self.listing {
            let known_absent = match reference {
                ManifestReference::Tag(tag) => !listing.tags.contains(tag),
                ManifestReference::Digest(_) => listing.is_new(),
            };
            if known_absent {
                return Ok(None);
            }
        }
        absent_when_unreadable(self.target.head_manifest(self.to, reference).await)
    }

    /// Copies a blob of `size` bytes (as its descriptor says), unless the target has it: mounted within one
    /// store, streamed between two.
    pub async fn copy_blob(&self, digest: &Digest, size: u64) -> Result<CopyStats, StoreError> {
        self.once(
            digest,
            CopyStats::skipped(size),
            self.copy_blob_now(digest, size),
        )
        .await
    }

    async fn copy_blob_now(&self, digest: &Digest, size: u64) -> Result<CopyStats, StoreError> {
        let ask = size > SENT_WITHOUT_ASKING || !self.listing.is_some_and(TargetListing::is_new);
        if ask && absent_when_unreadable(self.target.blob_size(self.to, digest).await)?.is_some() {
            return Ok(CopyStats::skipped(size));
        }
        if self.same_store && self.target.mount_blob(self.to, self.from, digest).await? {
            return Ok(CopyStats::copied(size));
        }
        // Streamed: a layer is never held whole in memory.
        let blob = self.source.open_blob(self.from, digest).await?;
        let reference = format!("{}/{}@{digest}", self.source.name(), self.from);
        let blob = blob_stream::at_most(blob, size, reference);
        self.target.put_blob_stream(self.to, digest, blob).await?;
        Ok(CopyStats::copied(size))
    }

    async fn fetch(&self, digest: &Digest) -> Result<StoredManifest, StoreError> {
        self.source
            .get_manifest(self.from, ManifestReference::Digest(digest))
            .await?
            .ok_or_else(|| StoreError::NotFound {
                store: self.source.name(),
                reference: format!("{}@{digest}", self.from),
            })
    }
}

/// What a target says about an object it may hold, where a server error after every retry counts as "not
/// there": a registry killed while writing can leave an object it answers 500 for until it is written again, and
/// writing the same content-addressed bytes again is what repairs it.
pub fn absent_when_unreadable<T>(
    answer: Result<Option<T>, StoreError>,
) -> Result<Option<T>, StoreError> {
    match answer {
        Err(StoreError::Status {
            method,
            url,
            status,
            ..
        }) if method == "HEAD" && (500..600).contains(&status) => {
            tracing::warn!("{method} {url} kept answering {status}; writing the object again");
            Ok(None)
        }
        other => other,
    }
}

fn parse<S: Store, T: Store, M: serde::de::DeserializeOwned>(
    copier: &Copier<'_, S, T>,
    digest: &Digest,
    manifest: &StoredManifest,
) -> Result<M, StoreError> {
    serde_json::from_slice(&manifest.bytes).map_err(|source| StoreError::InvalidManifest {
        store: copier.source.name(),
        reference: format!("{}@{digest}", copier.from),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(method: &str, status: u16) -> StoreError {
        StoreError::Status {
            method: method.to_owned(),
            url: "http://127.0.0.1:1/v2/a/manifests/x".to_owned(),
            status,
            code: None,
            message: String::new(),
            attempts: 5,
        }
    }

    #[test]
    fn only_a_head_that_kept_failing_on_the_server_counts_as_absent() {
        assert!(matches!(
            absent_when_unreadable::<u64>(Err(status("HEAD", 500))),
            Ok(None)
        ));
        assert!(matches!(
            absent_when_unreadable::<u64>(Err(status("HEAD", 503))),
            Ok(None)
        ));
        assert!(absent_when_unreadable::<u64>(Err(status("HEAD", 401))).is_err());
        assert!(absent_when_unreadable::<u64>(Err(status("GET", 500))).is_err());
        assert!(matches!(
            absent_when_unreadable(Ok(Some(3u64))),
            Ok(Some(3))
        ));
    }
}
