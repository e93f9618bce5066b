//! cosign's signature format: the simple-signing payload, and the OCI manifest at `sha256-<hex>.sig` that holds
//! one layer per signature. Field order and values follow what `cosign sign` writes, so the objects we write
//! are byte for byte the ones cosign would write for the same payload and signature.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::model::reference::Digest;
use crate::store::media_type;

/// The layer media type of a simple-signing payload.
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation holding the base64 DER signature of the payload.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The `critical.type` of a container image signature.
pub const SIGNATURE_TYPE: &str = "cosign container image signature";
/// The artifact type of a signature stored as an OCI 1.1 referrer.
pub const SIGNATURE_ARTIFACT_TYPE: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
/// The timestamp cosign writes into signature configs: none.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// The simple-signing payload: what a signature signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    pub critical: Critical,
    /// cosign writes `null` when there are no annotations.
    pub optional: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Critical {
    pub identity: Identity,
    pub image: SignedImage,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The repository the signature is for, with its registry: `registry.example.com/acme/app`.
    #[serde(rename = "docker-reference")]
    pub docker_reference: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedImage {
    #[serde(rename = "docker-manifest-digest")]
    pub docker_manifest_digest: String,
}

impl Payload {
    pub fn new(repository: &str, digest: &Digest) -> Self {
        Self {
            critical: Critical {
                identity: Identity {
                    docker_reference: repository.to_owned(),
                },
                image: SignedImage {
                    docker_manifest_digest: digest.to_string(),
                },
                kind: SIGNATURE_TYPE.to_owned(),
            },
            optional: None,
        }
    }

    /// The exact bytes that are signed and stored as the layer.
    pub fn to_bytes(&self) -> Bytes {
        // Plain structs of strings serialize infallibly.
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Whether this payload vouches for `digest` as an image of `repository`.
    pub fn names(&self, repository: &str, digest: &Digest) -> bool {
        self.critical.kind == SIGNATURE_TYPE
            && self.critical.image.docker_manifest_digest == digest.as_str()
            && self.critical.identity.docker_reference == repository
    }
}

/// One signature layer: the payload's digest and size, and the base64 signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureLayer {
    pub payload_digest: Digest,
    pub payload_size: u64,
    pub signature: String,
}

/// A descriptor in cosign's field order (mediaType, size, digest, annotations).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: String,
    size: u64,
    digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    annotations: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignatureManifest {
    schema_version: u32,
    media_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    artifact_type: Option<String>,
    config: Descriptor,
    layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subject: Option<Subject>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Subject {
    media_type: String,
    size: u64,
    digest: String,
}

/// The config blob of a signature manifest, as cosign writes it: no platform, zero timestamps, one history
/// entry and one diff id per signature layer.
#[derive(Serialize)]
struct SignatureConfig<'a> {
    architecture: &'a str,
    created: &'a str,
    history: Vec<History<'a>>,
    os: &'a str,
    rootfs: RootFilesystem,
    config: serde_json::Map<String, serde_json::Value>,
}

#[derive(Serialize)]
struct History<'a> {
    created: &'a str,
}

#[derive(Serialize)]
struct RootFilesystem {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: Vec<String>,
}

/// The objects to push for a signature manifest: its config blob and the manifest itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureObjects {
    pub config: Bytes,
    pub manifest: Bytes,
}

/// What a signed manifest points at, for storing signatures as OCI 1.1 referrers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectDescriptor {
    pub media_type: String,
    pub size: u64,
    pub digest: Digest,
}

/// Builds the signature manifest holding `layers`, in order; with `subject`, as a referrer of it.
pub fn signature_objects(
    layers: &[SignatureLayer],
    subject: Option<&SubjectDescriptor>,
) -> SignatureObjects {
    let config = SignatureConfig {
        architecture: "",
        created: ZERO_TIME,
        history: layers
            .iter()
            .map(|_| History { created: ZERO_TIME })
            .collect(),
        os: "",
        rootfs: RootFilesystem {
            kind: "layers",
            diff_ids: layers
                .iter()
                .map(|layer| layer.payload_digest.to_string())
                .collect(),
        },
        config: serde_json::Map::new(),
    };
    let config = Bytes::from(serde_json::to_vec(&config).unwrap_or_default());
    let manifest = SignatureManifest {
        schema_version: 2,
        media_type: media_type::OCI_MANIFEST.to_owned(),
        artifact_type: subject.map(|_| SIGNATURE_ARTIFACT_TYPE.to_owned()),
        config: Descriptor {
            media_type: media_type::OCI_CONFIG.to_owned(),
            size: config.len() as u64,
            digest: Digest::of(&config).to_string(),
            annotations: None,
        },
        layers: layers
            .iter()
            .map(|layer| Descriptor {
                media_type: SIMPLE_SIGNING_MEDIA_TYPE.to_owned(),
                size: layer.payload_size,
                digest: layer.payload_digest.to_string(),
                annotations: Some(
                    [(SIGNATURE_ANNOTATION.to_owned(), layer.signature.clone())].into(),
                ),
            })
            .collect(),
        subject: subject.map(|subject| Subject {
            media_type: subject.media_type.clone(),
            size: subject.size,
            digest: subject.digest.to_string(),
        }),
    };
    SignatureObjects {
        config,
        manifest: Bytes::from(serde_json::to_vec(&manifest).unwrap_or_default()),
    }
}

/// The signature layers of a signature manifest (layers without a signature annotation are skipped), or
/// `None` when the bytes are not a signature manifest.
pub fn signature_layers(manifest: &[u8]) -> Option<Vec<SignatureLayer>> {
    let manifest: SignatureManifest = serde_json::from_slice(manifest).ok()?;
    Some(
        manifest
            .layers
            .into_iter()
            .filter(|layer| layer.media_type == SIMPLE_SIGNING_MEDIA_TYPE)
            .filter_map(|layer| {
                let signature = layer.annotations?.remove(SIGNATURE_ANNOTATION)?;
                Some(SignatureLayer {
                    payload_digest: layer.digest.parse().ok()?,
                    payload_size: layer.size,
                    signature,
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:adb662347e2be37e043f1bb070971b309376481700fc6fe6f7987ac7cd8c7a30";

    #[test]
    fn payload_bytes_are_what_cosign_writes() {
        let digest: Digest = DIGEST.parse().expect("digest");
        let payload = Payload::new("127.0.0.1:5099/acme/x", &digest);
        // Written by cosign 2.5 `sign --key` for that reference.
        let cosign = r#"{"critical":{"identity":{"docker-reference":"127.0.0.1:5099/acme/x"},"image":{"docker-manifest-digest":"sha256:adb662347e2be37e043f1bb070971b309376481700fc6fe6f7987ac7cd8c7a30"},"type":"cosign container image signature"},"optional":null}"#;
        assert_eq!(payload.to_bytes(), cosign.as_bytes());
        assert!(payload.names("127.0.0.1:5099/acme/x", &digest));
        assert!(!payload.names("127.0.0.1:5099/acme/other", &digest));
        assert!(!payload.names("127.0.0.1:5099/acme/x", &Digest::of(b"other")));
    }

    #[test]
    fn signature_manifests_are_what_cosign_writes() {
        let layer = SignatureLayer {
            payload_digest: "sha256:b6d1b46bef007433b6b0e7da574a5a96bebd4f4110c11cc2bd79e05bb0d711af".parse().expect("digest"),
            payload_size: 237,
            signature: "MEUCIQDj0AoGxku8UWpI0u4z4BOjahTxUdGBjJNNrsIkLMuJowIgMF7b0SGjSYvACZY1CN9PYYn3D2ir0P/vmbBwkMogyR4=".into(),
        };
        let objects = signature_objects(std::slice::from_ref(&layer), None);
        // Both written by cosign 2.5 `sign --key` for one signature.
        let config = r#"{"architecture":"","created":"0001-01-01T00:00:00Z","history":[{"created":"0001-01-01T00:00:00Z"}],"os":"","rootfs":{"type":"layers","diff_ids":["sha256:b6d1b46bef007433b6b0e7da574a5a96bebd4f4110c11cc2bd79e05bb0d711af"]},"config":{}}"#;
        let manifest = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","size":233,"digest":"sha256:f2a89283f05c0a2dcf6f63ca2df435c1a7ee68f5bfecf1f3e58279d80b4cb327"},"layers":[{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","size":237,"digest":"sha256:b6d1b46bef007433b6b0e7da574a5a96bebd4f4110c11cc2bd79e05bb0d711af","annotations":{"dev.cosignproject.cosign/signature":"MEUCIQDj0AoGxku8UWpI0u4z4BOjahTxUdGBjJNNrsIkLMuJowIgMF7b0SGjSYvACZY1CN9PYYn3D2ir0P/vmbBwkMogyR4="}}]}"#;
        assert_eq!(objects.config, config.as_bytes());
        assert_eq!(objects.manifest, manifest.as_bytes());
        assert_eq!(signature_layers(&objects.manifest), Some(vec![layer]));
    }

    #[test]
    fn referrers_carry_a_subject_and_the_artifact_type() {
        let layer = SignatureLayer {
            payload_digest: Digest::of(b"payload"),
            payload_size: 7,
            signature: "c2lnbmF0dXJl".into(),
        };
        let subject = SubjectDescriptor {
            media_type: media_type::OCI_INDEX.into(),
            size: 100,
            digest: Digest::of(b"index"),
        };
        let objects = signature_objects(&[layer], Some(&subject));
        let manifest: serde_json::Value = serde_json::from_slice(&objects.manifest).expect("JSON");
        assert_eq!(manifest["artifactType"], SIGNATURE_ARTIFACT_TYPE);
        assert_eq!(manifest["subject"]["digest"], Digest::of(b"index").as_str());
        assert_eq!(signature_layers(b"not json"), None);
    }
}
