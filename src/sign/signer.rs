//! Signing one digest in a store, the way cosign stores signatures, adding nothing a re-run already added.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::format::{
    Payload, SignatureLayer, SubjectDescriptor, signature_layers, signature_objects,
};
use super::keys::{PublicKey, SigningKey};
use crate::model::reference::Digest;
use crate::store::{
    ManifestReference, Store, StoreError, StoredManifest, media_type, our_digest, signature_tag,
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

/// Signs digests with one key in one store.
pub struct Signer<'a, S> {
    pub store: &'a S,
    pub key: &'a SigningKey,
    pub public_key: &'a PublicKey,
    pub storage: Storage,
}

impl<S: Store> Signer<'_, S> {
    /// Makes sure `digest` in `repository` of the store carries a signature by this key naming `identity`
    /// (the public repository, `registry/path`). Signatures by other keys are kept.
    pub async fn sign(
        &self,
        repository: &str,
        identity: &str,
        digest: &Digest,
    ) -> Result<Signed, StoreError> {
        let payload = Payload::new(identity, digest).to_bytes();
        let payload_digest = Digest::of(&payload);
        let existing = self.existing(repository, digest).await?;
        for (manifest_digest, layers) in &existing {
            let ours = layers.iter().any(|layer| {
                layer.payload_digest == payload_digest
                    && signature_of(layer)
                        .is_some_and(|signature| self.public_key.verifies(&payload, &signature))
            });
            if ours {
                return Ok(Signed {
                    signature_manifest: manifest_digest.clone(),
                    added: false,
                });
            }
        }
        let layer = SignatureLayer {
            payload_digest: payload_digest.clone(),
            payload_size: payload.len() as u64,
            signature: BASE64.encode(self.key.sign(&payload)),
        };
        let payload_present = existing
            .iter()
            .flat_map(|(_, layers)| layers)
            .any(|layer| layer.payload_digest == payload_digest);
        if !payload_present {
            self.store
                .put_blob(repository, &payload_digest, payload)
                .await?;
        }
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
        self.store
            .put_blob(
                repository,
                &Digest::of(&objects.config),
                objects.config.clone(),
            )
            .await?;
        let manifest = StoredManifest {
            media_type: media_type::OCI_MANIFEST.to_owned(),
            bytes: objects.manifest,
        };
        let signature_manifest = manifest.digest();
        let tag = signature_tag(digest);
        let reference = match self.storage {
            Storage::Tag => ManifestReference::Tag(&tag),
            Storage::Referrer => ManifestReference::Digest(&signature_manifest),
        };
        self.store
            .put_manifest(repository, reference, &manifest)
            .await?;
        Ok(Signed {
            signature_manifest,
            added: true,
        })
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
