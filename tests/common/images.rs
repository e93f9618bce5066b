//! Small platform images made in tests (a layer, a config naming the platform, a manifest), pushed by digest
//! the way a build leg pushes to staging, and the fragments that describe them.

use std::path::Path;

use bytes::Bytes;
use imagepipe::model::reference::Digest;
use imagepipe::store::{ManifestReference, Store, StoredManifest, media_type};
use serde_json::{Value, json};

/// A platform image made from `seed`: different seeds give different digests.
pub struct TestImage {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
    pub layer: Bytes,
    pub config: Bytes,
    pub manifest: StoredManifest,
}

/// When every test image says it was created, as builders record it.
pub const IMAGE_CREATED: &str = "2026-01-01T00:00:00Z";

impl TestImage {
    pub fn new(os: &str, architecture: &str, variant: Option<&str>, seed: &str) -> Self {
        let layer = Bytes::from(format!("layer of {os}/{architecture} {seed}"));
        Self::with_layer(os, architecture, variant, layer, json!({"config": {}}))
    }

    /// An image of one `layer` (an uncompressed tar where something unpacks it), whose config holds the fields
    /// of `fields` (`config`, `history`) besides the platform, `created` and `rootfs`, which are filled in.
    pub fn with_layer(
        os: &str,
        architecture: &str,
        variant: Option<&str>,
        layer: Bytes,
        fields: Value,
    ) -> Self {
        let layer_digest = Digest::of(&layer);
        let mut config = json!({
            "architecture": architecture,
            "os": os,
            "created": IMAGE_CREATED,
            "rootfs": {"type": "layers", "diff_ids": [layer_digest.as_str()]},
        });
        if let (Some(config), Value::Object(fields)) = (config.as_object_mut(), fields) {
            config.extend(fields);
        }
        if let Some(variant) = variant {
            config["variant"] = variant.into();
        }
        let config = Bytes::from(serde_json::to_vec(&config).expect("serializes"));
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_MANIFEST,
            "config": {"mediaType": media_type::OCI_CONFIG, "digest": Digest::of(&config).as_str(), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest.as_str(), "size": layer.len()}]
        });
        Self {
            os: os.to_owned(),
            architecture: architecture.to_owned(),
            variant: variant.map(str::to_owned),
            layer,
            config,
            manifest: StoredManifest {
                media_type: media_type::OCI_MANIFEST.to_owned(),
                bytes: Bytes::from(serde_json::to_vec(&manifest).expect("serializes")),
            },
        }
    }

    pub fn digest(&self) -> Digest {
        self.manifest.digest()
    }

    /// Pushes blobs and manifest by digest; with `tag`, tags it too.
    pub async fn push(&self, store: &impl Store, repository: &str, tag: Option<&str>) {
        for blob in [&self.layer, &self.config] {
            store
                .put_blob(repository, &Digest::of(blob), blob.clone())
                .await
                .expect("blob pushed");
        }
        let digest = self.digest();
        store
            .put_manifest(
                repository,
                ManifestReference::Digest(&digest),
                &self.manifest,
            )
            .await
            .expect("manifest pushed");
        if let Some(tag) = tag {
            store
                .put_manifest(repository, ManifestReference::Tag(tag), &self.manifest)
                .await
                .expect("manifest tagged");
        }
    }

    /// The image-info platform entry a build leg records for this image.
    pub fn platform_entry(
        &self,
        public: &str,
        repository: &str,
        dockerfile: &str,
        tags: &[&str],
    ) -> Value {
        let mut entry = json!({
            "dockerfile": dockerfile,
            "simpleTags": tags,
            "digest": format!("{public}/{repository}@{}", self.digest()),
            "osType": self.os,
            "osVersion": "bookworm",
            "architecture": self.architecture,
        });
        if let Some(variant) = &self.variant {
            entry["variant"] = variant.as_str().into();
        }
        entry
    }
}

/// Writes a fragment file holding one image with `platforms` of `repository`.
pub fn write_fragment(file: &Path, repository: &str, platforms: Vec<Value>) {
    let fragment = json!({
        "schemaVersion": "2.0",
        "repos": [{"repo": repository, "images": [{"platforms": platforms}]}]
    });
    std::fs::create_dir_all(file.parent().expect("folder")).expect("creates");
    std::fs::write(
        file,
        serde_json::to_vec_pretty(&fragment).expect("serializes"),
    )
    .expect("writes");
}
