//! Signing one digest in a store, the way cosign stores signatures, adding nothing a re-run already added.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use futures_util::stream::{self, StreamExt, TryStreamExt};

use super::format::{
    Payload, SignatureLayer, SubjectDescriptor, signature_layers, signature_objects,
};
use super::keys::{PublicKey, SigningKey};
use crate::model::reference::Digest;
use crate::store::{
    ErrorCode, ManifestReference, Store, StoreError, StoredManifest, media_type, our_digest,
    signature_tag,
};

/// Where signatures are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// The manifest at tag `sha256-<hex>.sig`, one layer per signature (cosign's default).
    Tag,
    /// A manifest of its own per signature, whose `subject` is the signed digest (OCI 1.1 referrers API).
    Referrer,
}

impl Storage {
    /// How image-info records the format of a signature stored this way.
    pub fn format(self) -> &'static str {
        match self {
            Self::Tag => "cosign-tag",
            Self::Referrer => "cosign-referrer",
        }
    }
}

/// What signing a digest did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The digest of the manifest holding the signature.
    pub signature_manifest: Digest,
    /// False when the digest already carried a valid signature by this key, and nothing was written.
    pub added: bool,
}

/// Rounds of merge-and-write for one digest before giving up: each round re-reads the tag, adds our signature
/// to what another signer wrote meanwhile, and writes it again.
const MERGE_ROUNDS: u32 = 8;

/// A signer replaces the `.sig` tag with what it read plus its own signature, and the registry keeps the last
/// write: a signer that read the tag before ours landed can replace it with a copy lacking ours. We write at
/// most this long after our read (else we read again), so any write that read before ours has landed this
/// long after ours, with margin for the write itself.
const WRITE_AFTER_READ: Duration = Duration::from_secs(1);

/// When to look again at the signatures a run added: once no write based on an older read can still land
/// (twice [`WRITE_AFTER_READ`]). A signature still there then stays, since every later write read it.
const SETTLE_AFTER: Duration = Duration::from_secs(2);

/// Checks of the added signatures, each after [`SETTLE_AFTER`], before giving up on one that keeps vanishing.
const SETTLE_ROUNDS: u32 = 5;

/// Digests read back at once when settling.
const CONCURRENT_CHECKS: usize = 32;

/// Why a digest could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Other signers kept replacing the `.sig` tag with copies that lacked our signature.
    #[error(
        "the signature of `{store}/{repository}@{digest}` was replaced by other signers writing `{tag}` \
         at the same time, {rounds} times over; it is not signed by this key"
    )]
    NotKept {
        store: String,
        repository: String,
        digest: Digest,
        tag: String,
        rounds: u32,
    },
}

/// A digest whose signature was added in this run, to be checked again once concurrent writes have landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added {
    /// The repository in the store.
    pub repository: String,
    /// The public repository the signature names.
    pub identity: String,
    pub digest: Digest,
}

/// Signs digests with one key in one store.
pub struct Signer<'a, S> {
    pub store: &'a S,
    pub key: &'a SigningKey,
    pub public_key: &'a PublicKey,
    pub storage: Storage,
}

impl<S: Store> Signer<'_, S> {
    /// Makes sure `digest` in `repository` of the store carries a signature by this key naming `identity`
    /// (the public repository, `registry/path`). Signatures by other keys are kept: the tag is re-read after
    /// each write, and ours merged in again until it is there. Another signer may still replace it with a copy
    /// read before ours landed: [`Signer::settle`] checks for that once such writes have landed.
    pub async fn sign(
        &self,
        repository: &str,
        identity: &str,
        digest: &Digest,
    ) -> Result<Signed, SignError> {
        let payload = Payload::new(identity, digest).to_bytes();
        let payload_digest = Digest::of(&payload);
        let mut payload_pushed = false;
        // Rounds of writing so far, and whether one of them stored our signature.
        let mut rounds = 0;
        let mut stored = false;
        loop {
            let read_at = Instant::now();
            let existing = self.existing(repository, digest).await?;
            if let Some(manifest_digest) = self.ours(&existing, &payload, &payload_digest) {
                return Ok(Signed {
                    signature_manifest: manifest_digest.clone(),
                    added: stored,
                });
            }
            if rounds == MERGE_ROUNDS {
                return Err(SignError::NotKept {
                    store: self.store.name(),
                    repository: repository.to_owned(),
                    digest: digest.clone(),
                    tag: signature_tag(digest),
                    rounds,
                });
            }
            let payload_present = existing
                .iter()
                .flat_map(|(_, layers)| layers)
                .any(|layer| layer.payload_digest == payload_digest);
            let payload_to_push =
                (!payload_present && !payload_pushed).then_some((&payload_digest, &payload));
            let layer = SignatureLayer {
                payload_digest: payload_digest.clone(),
                payload_size: payload.len() as u64,
                signature: BASE64.encode(self.key.sign(&payload)),
            };
            rounds += 1;
            let written = self
                .write(
                    repository,
                    digest,
                    existing,
                    layer,
                    payload_to_push,
                    read_at,
                )
                .await;
            payload_pushed |= payload_to_push.is_some() && written.is_ok();
            match written {
                Ok(Written::Stored(manifest_digest)) if self.storage == Storage::Referrer => {
                    // A referrer is a manifest of its own: no other signer's write can replace it.
                    return Ok(Signed {
                        signature_manifest: manifest_digest,
                        added: true,
                    });
                }
                Ok(Written::Stored(_)) => stored = true,
                Ok(Written::Skipped) => {}
                // distribution 2.8 rewrites a blob's link file in place when the blob is pushed again, so a
                // manifest naming a blob that another signer is pushing at that moment can be refused.
                Err(error) if is_concurrent_write(&error) && rounds < MERGE_ROUNDS => {
                    tracing::debug!("writing `{repository}@{digest}`'s signature: {error}; again");
                }
                Err(error) => return Err(error.into()),
            }
            tokio::time::sleep(backoff(rounds)).await;
        }
    }

    /// The manifest holding a valid signature by this key of `digest` naming `identity`, if the store has one;
    /// nothing is written.
    pub async fn signed_already(
        &self,
        repository: &str,
        identity: &str,
        digest: &Digest,
    ) -> Result<Option<Digest>, StoreError> {
        let payload = Payload::new(identity, digest).to_bytes();
        let existing = self.existing(repository, digest).await?;
        Ok(self
            .ours(&existing, &payload, &Digest::of(&payload))
            .cloned())
    }

    /// Checks each signature added in this run once no concurrent write based on an earlier read can still
    /// land, and signs again any digest whose signature another signer's write replaced; then checks those
    /// again. A signature present at such a check stays: every later write read it. Returns the digest of the
    /// manifest that holds each signature now. Only the `.sig` tag can lose a signature this way.
    pub async fn settle(&self, added: Vec<Added>) -> Result<Vec<(Added, Digest)>, SignError> {
        let mut settled = Vec::with_capacity(added.len());
        let mut pending = added;
        if self.storage != Storage::Tag {
            return Ok(settled);
        }
        for _ in 0..SETTLE_ROUNDS {
            if pending.is_empty() {
                break;
            }
            tokio::time::sleep(SETTLE_AFTER).await;
            let checked: Vec<(Added, Signed)> = stream::iter(pending)
                .map(|added| async move {
                    let signed = self
                        .sign(&added.repository, &added.identity, &added.digest)
                        .await?;
                    Ok::<_, SignError>((added, signed))
                })
                .buffer_unordered(CONCURRENT_CHECKS)
                .try_collect()
                .await?;
            pending = Vec::new();
            for (added, signed) in checked {
                if signed.added {
                    tracing::info!(
                        "the signature of `{}@{}` was replaced by another signer's write; added it again",
                        added.repository,
                        added.digest
                    );
                    pending.push(added);
                } else {
                    settled.push((added, signed.signature_manifest));
                }
            }
        }
        match pending.into_iter().next() {
            None => Ok(settled),
            Some(lost) => Err(SignError::NotKept {
                store: self.store.name(),
                tag: signature_tag(&lost.digest),
                repository: lost.repository,
                digest: lost.digest,
                rounds: SETTLE_ROUNDS,
            }),
        }
    }

    /// The manifest among `existing` holding a valid signature of `payload` by this key.
    fn ours<'m>(
        &self,
        existing: &'m [(Digest, Vec<SignatureLayer>)],
        payload: &[u8],
        payload_digest: &Digest,
    ) -> Option<&'m Digest> {
        existing
            .iter()
            .find(|(_, layers)| {
                layers.iter().any(|layer| {
                    layer.payload_digest == *payload_digest
                        && signature_of(layer)
                            .is_some_and(|signature| self.public_key.verifies(payload, &signature))
                })
            })
            .map(|(manifest_digest, _)| manifest_digest)
    }

    /// Writes our signature layer beside the `existing` ones (tag storage) or on its own (referrers), unless
    /// the read of `existing` is too old to write over (see [`WRITE_AFTER_READ`]).
    async fn write(
        &self,
        repository: &str,
        digest: &Digest,
        existing: Vec<(Digest, Vec<SignatureLayer>)>,
        layer: SignatureLayer,
        payload: Option<(&Digest, &bytes::Bytes)>,
        read_at: Instant,
    ) -> Result<Written, StoreError> {
        let (layers, subject) = match self.storage {
            // cosign appends to the one manifest at the tag, keeping other keys' signatures.
            Storage::Tag => {
                let mut layers: Vec<SignatureLayer> = existing
                    .into_iter()
                    .flat_map(|(_, layers)| layers)
                    .collect();
                layers.push(layer);
                (layers, None)
            }
            Storage::Referrer => (vec![layer], Some(self.subject(repository, digest).await?)),
        };
        let objects = signature_objects(&layers, subject.as_ref());
        // The payload (when not there yet) and the config are pushed side by side: two round trips, not four.
        let push_payload = async {
            match payload {
                Some((payload_digest, payload)) => {
                    self.store
                        .put_blob(repository, payload_digest, payload.clone())
                        .await
                }
                None => Ok(()),
            }
        };
        let config_digest = Digest::of(&objects.config);
        let push_config = self
            .store
            .put_blob(repository, &config_digest, objects.config.clone());
        futures_util::future::try_join(push_payload, push_config).await?;
        let manifest = StoredManifest {
            media_type: media_type::OCI_MANIFEST.to_owned(),
            bytes: objects.manifest,
        };
        let signature_manifest = manifest.digest();
        let tag = signature_tag(digest);
        let reference = match self.storage {
            Storage::Tag if read_at.elapsed() > WRITE_AFTER_READ => {
                tracing::debug!(
                    "`{repository}@{digest}`: the signatures read are too old to write over"
                );
                return Ok(Written::Skipped);
            }
            Storage::Tag => ManifestReference::Tag(&tag),
            Storage::Referrer => ManifestReference::Digest(&signature_manifest),
        };
        self.store
            .put_manifest(repository, reference, &manifest)
            .await?;
        Ok(Written::Stored(signature_manifest))
    }

    /// The signature manifests the digest already has, with their layers.
    async fn existing(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<Vec<(Digest, Vec<SignatureLayer>)>, StoreError> {
        let manifests = match self.storage {
            Storage::Tag => {
                let tag = signature_tag(digest);
                let found = self
                    .store
                    .get_manifest(repository, ManifestReference::Tag(&tag))
                    .await?;
                found.into_iter().collect::<Vec<_>>()
            }
            Storage::Referrer => {
                let mut found = Vec::new();
                for descriptor in self.store.signatures_of(repository, digest).await? {
                    let Some(signature) = our_digest(descriptor.digest()) else {
                        continue;
                    };
                    found.extend(
                        self.store
                            .get_manifest(repository, ManifestReference::Digest(&signature))
                            .await?,
                    );
                }
                found
            }
        };
        Ok(manifests
            .into_iter()
            .filter_map(|manifest| Some((manifest.digest(), signature_layers(&manifest.bytes)?)))
            .collect())
    }

    async fn subject(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<SubjectDescriptor, StoreError> {
        let descriptor = self
            .store
            .head_manifest(repository, ManifestReference::Digest(digest))
            .await?
            .ok_or_else(|| StoreError::NotFound {
                store: self.store.name(),
                reference: format!("{repository}@{digest}"),
            })?;
        Ok(SubjectDescriptor {
            media_type: descriptor.media_type().to_string(),
            size: descriptor.size(),
            digest: digest.clone(),
        })
    }
}

/// The DER signature of a layer, if its annotation is valid base64.
pub fn signature_of(layer: &SignatureLayer) -> Option<Vec<u8>> {
    BASE64.decode(layer.signature.as_bytes()).ok()
}

/// What a write did.
enum Written {
    /// The signature manifest was stored; its digest.
    Stored(Digest),
    /// Nothing was written: the read it was based on is too old.
    Skipped,
}

/// Whether a failed write is what distribution answers while another client pushes the same blobs: worth
/// another round rather than a failure.
fn is_concurrent_write(error: &StoreError) -> bool {
    matches!(
        error,
        StoreError::Status {
            code: Some(
                ErrorCode::DigestInvalid
                    | ErrorCode::ManifestBlobUnknown
                    | ErrorCode::BlobUnknown
                    | ErrorCode::BlobUploadUnknown
                    | ErrorCode::BlobUploadInvalid
            ),
            ..
        }
    )
}

/// A short random pause before reading again, growing with each round, so that two signers that collided do
/// not collide again in step.
fn backoff(round: u32) -> Duration {
    Duration::from_millis(fastrand::u64(10..=60) * u64::from(round))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use bytes::Bytes;

    use super::super::keys::KeySource;
    use super::super::test_keys::{COSIGN_KEY, COSIGN_PUB, PLAIN_P256, PLAIN_P256_PUB};
    use super::*;
    use crate::store::layout::LayoutStore;
    use crate::store::{BlobStream, Descriptor};

    const REPOSITORY: &str = "acme/app";
    const IDENTITY: &str = "registry.example.com/acme/app";

    fn digest() -> Digest {
        Digest::of(b"an image manifest")
    }

    fn keys() -> (SigningKey, PublicKey, SigningKey, PublicKey) {
        let source = KeySource::Environment("TEST".to_owned());
        (
            SigningKey::from_pem(PLAIN_P256, b"", &source).expect("ours"),
            PublicKey::from_pem(PLAIN_P256_PUB, &source).expect("ours"),
            SigningKey::from_pem(COSIGN_KEY, b"pw", &source).expect("theirs"),
            PublicKey::from_pem(COSIGN_PUB, &source).expect("theirs"),
        )
    }

    /// A layout store in which a rival signer, holding a read from before ours landed, replaces the `.sig`
    /// tag with its own signature alone right after each of our next `clobbers` writes to it.
    struct Rival {
        inner: LayoutStore,
        clobbers: Mutex<u32>,
        rival: StoredManifest,
    }

    impl Rival {
        async fn new(folder: &std::path::Path, theirs: &SigningKey, clobbers: u32) -> Self {
            let inner = LayoutStore::new(folder.to_owned());
            let payload = Payload::new(IDENTITY, &digest()).to_bytes();
            let layer = SignatureLayer {
                payload_digest: Digest::of(&payload),
                payload_size: payload.len() as u64,
                signature: BASE64.encode(theirs.sign(&payload)),
            };
            let objects = signature_objects(&[layer], None);
            for blob in [payload, objects.config.clone()] {
                inner
                    .put_blob(REPOSITORY, &Digest::of(&blob), blob)
                    .await
                    .expect("rival blobs");
            }
            Self {
                inner,
                clobbers: Mutex::new(clobbers),
                rival: StoredManifest {
                    media_type: media_type::OCI_MANIFEST.to_owned(),
                    bytes: objects.manifest,
                },
            }
        }

        /// The rival's stale write, landing now.
        async fn clobber(&self) {
            self.inner
                .put_manifest(
                    REPOSITORY,
                    ManifestReference::Tag(&signature_tag(&digest())),
                    &self.rival,
                )
                .await
                .expect("rival write");
        }

        /// The key ids of the valid signatures at the tag, by key.
        async fn signed_by(&self, keys: &[&PublicKey]) -> Vec<bool> {
            let manifest = self
                .inner
                .get_manifest(
                    REPOSITORY,
                    ManifestReference::Tag(&signature_tag(&digest())),
                )
                .await
                .expect("reads")
                .expect("tagged");
            let layers = signature_layers(&manifest.bytes).expect("signature layers");
            let payload = Payload::new(IDENTITY, &digest()).to_bytes();
            keys.iter()
                .map(|key| {
                    layers.iter().any(|layer| {
                        signature_of(layer)
                            .is_some_and(|signature| key.verifies(&payload, &signature))
                    })
                })
                .collect()
        }
    }

    impl Store for Rival {
        fn name(&self) -> String {
            self.inner.name()
        }

        async fn get_manifest(
            &self,
            repository: &str,
            reference: ManifestReference<'_>,
        ) -> Result<Option<StoredManifest>, StoreError> {
            self.inner.get_manifest(repository, reference).await
        }

        async fn head_manifest(
            &self,
            repository: &str,
            reference: ManifestReference<'_>,
        ) -> Result<Option<Descriptor>, StoreError> {
            self.inner.head_manifest(repository, reference).await
        }

        async fn put_manifest(
            &self,
            repository: &str,
            reference: ManifestReference<'_>,
            manifest: &StoredManifest,
        ) -> Result<Digest, StoreError> {
            let written = self
                .inner
                .put_manifest(repository, reference, manifest)
                .await?;
            let clobber = {
                let mut clobbers = self.clobbers.lock().expect("lock");
                let clobber = *clobbers > 0;
                *clobbers = clobbers.saturating_sub(1);
                clobber
            };
            if clobber {
                self.clobber().await;
            }
            Ok(written)
        }

        async fn blob_size(
            &self,
            repository: &str,
            digest: &Digest,
        ) -> Result<Option<u64>, StoreError> {
            self.inner.blob_size(repository, digest).await
        }

        async fn get_blob(&self, repository: &str, digest: &Digest) -> Result<Bytes, StoreError> {
            self.inner.get_blob(repository, digest).await
        }

        async fn put_blob(
            &self,
            repository: &str,
            digest: &Digest,
            bytes: Bytes,
        ) -> Result<(), StoreError> {
            self.inner.put_blob(repository, digest, bytes).await
        }

        async fn open_blob(
            &self,
            repository: &str,
            digest: &Digest,
        ) -> Result<BlobStream, StoreError> {
            self.inner.open_blob(repository, digest).await
        }

        async fn put_blob_stream(
            &self,
            repository: &str,
            digest: &Digest,
            blob: BlobStream,
        ) -> Result<(), StoreError> {
            self.inner.put_blob_stream(repository, digest, blob).await
        }

        async fn mount_blob(
            &self,
            repository: &str,
            from_repository: &str,
            digest: &Digest,
        ) -> Result<bool, StoreError> {
            self.inner
                .mount_blob(repository, from_repository, digest)
                .await
        }

        async fn list_tags(&self, repository: &str) -> Result<Vec<String>, StoreError> {
            self.inner.list_tags(repository).await
        }

        async fn has_referrers_api(&self, repository: &str) -> Result<bool, StoreError> {
            self.inner.has_referrers_api(repository).await
        }

        async fn signatures_of(
            &self,
            repository: &str,
            digest: &Digest,
        ) -> Result<Vec<Descriptor>, StoreError> {
            self.inner.signatures_of(repository, digest).await
        }
    }

    #[tokio::test]
    async fn a_signature_a_rival_write_replaced_is_merged_in_again() {
        let folder = tempfile::tempdir().expect("temp dir");
        let (ours, ours_public, theirs, theirs_public) = keys();
        let store = Rival::new(folder.path(), &theirs, MERGE_ROUNDS - 1).await;
        let signer = Signer {
            store: &store,
            key: &ours,
            public_key: &ours_public,
            storage: Storage::Tag,
        };
        let signed = signer
            .sign(REPOSITORY, IDENTITY, &digest())
            .await
            .expect("signs");
        assert!(signed.added);
        assert_eq!(
            store.signed_by(&[&ours_public, &theirs_public]).await,
            [true, true],
            "ours merged beside the rival's"
        );
        // A re-run finds it and writes nothing.
        let again = signer
            .sign(REPOSITORY, IDENTITY, &digest())
            .await
            .expect("signs");
        assert!(!again.added);
        assert_eq!(again.signature_manifest, signed.signature_manifest);
    }

    #[tokio::test]
    async fn a_signature_that_never_stays_is_an_error_naming_the_digest() {
        let folder = tempfile::tempdir().expect("temp dir");
        let (ours, ours_public, theirs, _) = keys();
        let store = Rival::new(folder.path(), &theirs, u32::MAX).await;
        let signer = Signer {
            store: &store,
            key: &ours,
            public_key: &ours_public,
            storage: Storage::Tag,
        };
        let error = signer
            .sign(REPOSITORY, IDENTITY, &digest())
            .await
            .expect_err("never kept");
        assert!(
            matches!(error, SignError::NotKept { rounds, .. } if rounds == MERGE_ROUNDS),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(message.contains(digest().as_str()), "{message}");
        assert!(message.contains(&signature_tag(&digest())), "{message}");
    }

    #[tokio::test]
    async fn settling_adds_again_what_a_late_rival_write_replaced() {
        let folder = tempfile::tempdir().expect("temp dir");
        let (ours, ours_public, theirs, theirs_public) = keys();
        let store = Rival::new(folder.path(), &theirs, 0).await;
        let signer = Signer {
            store: &store,
            key: &ours,
            public_key: &ours_public,
            storage: Storage::Tag,
        };
        assert!(
            signer
                .sign(REPOSITORY, IDENTITY, &digest())
                .await
                .expect("signs")
                .added
        );
        // The rival's write lands after ours was read back.
        store.clobber().await;
        assert_eq!(
            store.signed_by(&[&ours_public, &theirs_public]).await,
            [false, true]
        );
        let added = Added {
            repository: REPOSITORY.to_owned(),
            identity: IDENTITY.to_owned(),
            digest: digest(),
        };
        let settled = signer.settle(vec![added.clone()]).await.expect("settles");
        assert_eq!(settled.len(), 1);
        assert_eq!(settled[0].0, added);
        assert_eq!(
            store.signed_by(&[&ours_public, &theirs_public]).await,
            [true, true]
        );
    }

    #[test]
    fn only_what_distribution_answers_to_concurrent_pushes_is_tried_again() {
        let status = |code| StoreError::Status {
            method: "PUT".into(),
            url: "http://registry/v2/acme/app/manifests/sha256-0.sig".into(),
            status: 400,
            code,
            message: String::new(),
            attempts: 1,
        };
        assert!(is_concurrent_write(&status(Some(ErrorCode::DigestInvalid))));
        assert!(is_concurrent_write(&status(Some(
            ErrorCode::ManifestBlobUnknown
        ))));
        assert!(!is_concurrent_write(&status(Some(ErrorCode::Denied))));
        assert!(!is_concurrent_write(&status(Some(
            ErrorCode::ManifestInvalid
        ))));
        assert!(!is_concurrent_write(&status(None)));
    }
}
