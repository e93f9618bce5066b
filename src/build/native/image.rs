//! The image configuration and the OCI image manifest of a build: the base's layers and history, then one layer
//! and one history entry per `COPY`/`ADD` and one empty history entry per other instruction, every time the
//! request's timestamp.

use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use oci_spec::image::{Descriptor, ImageManifestBuilder, MediaType};
use serde_json::{Map, Value, json};

use super::base::BaseImage;
use super::config::Record;
use super::layer::Layer;
use crate::build::BuildRequest;
use crate::model::reference::Digest;
use crate::store::{StoredManifest, media_type, oci_digest};

/// Docker's media types for what OCI names otherwise; an OCI manifest lists the same layer bytes under the OCI
/// names.
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const DOCKER_FOREIGN_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// A built image, ready to push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Image {
    pub config: Bytes,
    pub config_digest: Digest,
    pub manifest: StoredManifest,
}

/// The configuration and manifest of the image `runtime` (the applied runtime configuration) and `layers` make
/// on top of `base`.
pub(super) fn assemble(
    request: &BuildRequest,
    base: Option<&BaseImage>,
    mut runtime: Map<String, Value>,
    records: &[Record],
    layers: &[Layer],
) -> Image {
    let created = created(request.timestamp);
    if !request.labels.is_empty() {
        let labels = runtime.entry("Labels").or_insert_with(|| json!({}));
        if !labels.is_object() {
            *labels = json!({});
        }
        if let Value::Object(labels) = labels {
            for (name, value) in &request.labels {
                labels.insert(name.clone(), Value::String(value.clone()));
            }
        }
    }

    let mut diff_ids = base.map(BaseImage::diff_ids).unwrap_or_default();
    diff_ids.extend(layers.iter().map(|layer| json!(layer.diff_id.as_str())));
    let mut history = base
        .and_then(|base| base.config.get("history"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for record in records {
        let mut entry = json!({"created": created, "created_by": record.created_by});
        if record.files.is_none() {
            entry["empty_layer"] = json!(true);
        }
        history.push(entry);
    }

    let platform = &request.platform;
    let mut config = json!({
        "created": created,
        "architecture": platform.architecture,
        "os": platform.os,
        "config": runtime,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    });
    if let Some(variant) = &platform.variant {
        config["variant"] = json!(variant);
    }
    // What a Linux base says of its OS beyond the name stays true of the image.
    for key in ["os.version", "os.features"] {
        if let Some(value) = base.and_then(|base| base.config.get(key)) {
            config[key] = value.clone();
        }
    }
    let config = Bytes::from(
        serde_json::to_vec(&config)
            .unwrap_or_else(|_| unreachable!("a JSON value with string keys always serializes")),
    );
    let config_digest = Digest::of(&config);

    let mut descriptors: Vec<Descriptor> = base
        .map(|base| base.layers.iter().map(oci_layer).collect())
        .unwrap_or_default();
    descriptors.extend(layers.iter().map(|layer| {
        Descriptor::new(
            MediaType::ImageLayerGzip,
            layer.blob.len() as u64,
            oci_digest(&layer.digest),
        )
    }));
    let manifest = ImageManifestBuilder::default()
        .schema_version(2_u32)
        .media_type(MediaType::ImageManifest)
        .config(Descriptor::new(
            MediaType::ImageConfig,
            config.len() as u64,
            oci_digest(&config_digest),
        ))
        .layers(descriptors)
        .build()
        .unwrap_or_else(|_| unreachable!("every required field of the manifest is set"));
    let bytes = serde_json::to_vec(&manifest)
        .unwrap_or_else(|_| unreachable!("a manifest always serializes"));
    Image {
        config,
        config_digest,
        manifest: StoredManifest {
            media_type: media_type::OCI_MANIFEST.to_owned(),
            bytes: Bytes::from(bytes),
        },
    }
}

/// `timestamp` as RFC 3339 in UTC, to the second.
fn created(timestamp: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(timestamp)).to_string()
}

/// A base layer's descriptor under its OCI media type.
fn oci_layer(descriptor: &Descriptor) -> Descriptor {
    let mut layer = descriptor.clone();
    match descriptor.media_type().to_string().as_str() {
        DOCKER_LAYER_GZIP => {
            layer.set_media_type(MediaType::ImageLayerGzip);
        }
        DOCKER_FOREIGN_LAYER_GZIP => {
            layer.set_media_type(MediaType::ImageLayerNonDistributableGzip);
        }
        _ => {}
    }
    layer
}
