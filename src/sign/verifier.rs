//! Checking that a digest carries a valid signature by a key, whoever wrote it (imagepipe or cosign).

use std::fmt;

use super::format::{Payload, signature_layers};
use super::keys::PublicKey;
use super::signer::signature_of;
use crate::model::reference::Digest;
use crate::store::{ManifestReference, Store, StoreError, our_digest};

/// What a digest's signatures say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A signature by the key whose payload names this digest and repository.
    Valid { signature_manifest: Digest },
    /// No signature at all.
    Missing,
    /// Signatures exist, none valid for this key, digest and repository: why.
    Invalid { reason: String },
}

impl Verdict {
    pub fn is_valid(&self) -> bool {
        matches!(self, Self::Valid { .. })
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Valid { .. } => f.write_str("signed"),
            Self::Missing => f.write_str("no signature"),
            Self::Invalid { reason } => f.write_str(reason),
        }
    }
}

/// Checks the signatures of `digest` in `repository` of `store` (the `.sig` tag and referrers) against `key`;
/// the payload must name `identity` (`registry/path` of the public repository) and the digest.
pub async fn verify<S: Store>(
    store: &S,
    repository: &str,
    identity: &str,
    digest: &Digest,
    key: &PublicKey,
) -> Result<Verdict, StoreError> {
    let mut manifests = Vec::new();
    for descriptor in store.signatures_of(repository, digest).await? {
        let Some(signature) = our_digest(descriptor.digest()) else {
            continue;
        };
        manifests.extend(
            store
                .get_manifest(repository, ManifestReference::Digest(&signature))
                .await?,
        );
    }
    if manifests.is_empty() {
        return Ok(Verdict::Missing);
    }
    let mut reasons = Vec::new();
    for manifest in manifests {
        let Some(layers) = signature_layers(&manifest.bytes) else {
            continue;
        };
        for layer in layers {
            let payload = store.get_blob(repository, &layer.payload_digest).await?;
            let signed_by_key =
                signature_of(&layer).is_some_and(|signature| key.verifies(&payload, &signature));
            if !signed_by_key {
                continue;
            }
            match serde_json::from_slice::<Payload>(&payload) {
                Ok(payload) if payload.names(identity, digest) => {
                    return Ok(Verdict::Valid {
                        signature_manifest: manifest.digest(),
                    });
                }
                Ok(payload) => reasons.push(format!(
                    "signed by the key for `{}@{}`",
                    payload.critical.identity.docker_reference,
                    payload.critical.image.docker_manifest_digest
                )),
                Err(_) => reasons.push(
                    "signed by the key, but the payload is not a simple-signing payload".to_owned(),
                ),
            }
        }
    }
    let reason = reasons
        .into_iter()
        .next()
        .unwrap_or_else(|| format!("no signature by key {}", short_key_id(key)));
    Ok(Verdict::Invalid { reason })
}

fn short_key_id(key: &PublicKey) -> String {
    let id = key.key_id();
    id.get(..12).unwrap_or(&id).to_owned()
}
