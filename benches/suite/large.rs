//! Peak memory while publishing one image whose only layer is large (512 MiB by default): the layer is
//! streamed into staging (never held in memory here either), then imagepipe publish, skopeo copy and oras cp
//! each copy it through the proxies while GNU time reads their maximum resident set size.

use std::path::Path;

use bytes::Bytes;
use futures_util::stream;
use imagepipe::model::reference::Digest;
use imagepipe::store::{BlobStream, ManifestReference, Store, StoredManifest, media_type};
use serde_json::json;

use crate::common;
use crate::measure::{Network, Sample, measure, run_timed};
use crate::peers::Peers;
use crate::stage::{Stages, imagepipe};
use crate::workload::{PREFIX, store};

const CHUNK: usize = 1 << 20;
const REPOSITORY: &str = "bench/large";

pub struct LargeResults {
    pub imagepipe: Sample,
    pub skopeo: Sample,
    pub oras: Sample,
}

pub fn run(
    runtime: &tokio::runtime::Runtime,
    network: &Network<'_>,
    staging_direct: &str,
    peers: &Peers,
    mib: u64,
) -> LargeResults {
    let folder = &peers.folder;
    let (info, index) = runtime.block_on(push(folder, staging_direct, &network.public.host(), mib));
    let stages = Stages {
        manifest: String::new(),
        image_info: common::path(&info),
        key: String::new(),
        staging: network.staging.host(),
        prefix: PREFIX.to_owned(),
        output: common::path(&folder.join("large-final.json")),
    };
    let mut publish = stages.publish();
    publish.push("--allow-unsigned".to_owned());
    let imagepipe = imagepipe(network, &publish);
    let source = format!("{}/{PREFIX}/{REPOSITORY}@{index}", network.staging.host());
    let skopeo = measure(network, 1.0, || {
        let mut command = std::process::Command::new(common::tools::skopeo_1_18());
        command.args([
            "--insecure-policy",
            "copy",
            "--all",
            "--preserve-digests",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            &format!("docker://{source}"),
            &format!("docker://{}/skopeo/{REPOSITORY}:1.0", network.public.host()),
        ]);
        vec![run_timed(&command).1]
    });
    let oras = measure(network, 1.0, || {
        let mut command = std::process::Command::new(common::tools::oras());
        command.env("HOME", folder).args([
            "cp",
            "--from-plain-http",
            "--to-plain-http",
            &source,
            &format!("{}/oras/{REPOSITORY}:1.0", network.public.host()),
        ]);
        vec![run_timed(&command).1]
    });
    LargeResults {
        imagepipe,
        skopeo,
        oras,
    }
}

/// Pushes the image and its index into staging directly; returns an image-info ready for publish
/// (`--allow-unsigned`) and the index digest.
async fn push(
    folder: &Path,
    staging: &str,
    public: &str,
    mib: u64,
) -> (std::path::PathBuf, Digest) {
    let store = store(staging);
    let staged = format!("{PREFIX}/{REPOSITORY}");
    let size = mib * CHUNK as u64;
    let chunk = |index: u64| Bytes::from(vec![(index % 251) as u8; CHUNK]);
    let chunks = size / CHUNK as u64;
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    for index in 0..chunks {
        sha2::Digest::update(&mut hasher, chunk(index));
    }
    let layer: Digest = format!("sha256:{:x}", sha2::Digest::finalize(hasher))
        .parse()
        .expect("digest");
    let layer_stream = BlobStream {
        size: Some(size),
        chunks: Box::pin(stream::iter((0..chunks).map(move |index| Ok(chunk(index))))),
    };
    store
        .put_blob_stream(&staged, &layer, layer_stream)
        .await
        .expect("uploads the layer");
    let config = Bytes::from(json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [layer.as_str()]}}).to_string());
    let config_digest = Digest::of(&config);
    store
        .put_blob(&staged, &config_digest, config.clone())
        .await
        .expect("uploads the config");
    let manifest = StoredManifest {
        media_type: media_type::OCI_MANIFEST.to_owned(),
        bytes: Bytes::from(
            json!({"schemaVersion": 2, "mediaType": media_type::OCI_MANIFEST,
                "config": {"mediaType": media_type::OCI_CONFIG, "digest": config_digest.as_str(), "size": config.len()},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.as_str(), "size": size}]})
            .to_string(),
        ),
    };
    let digest = manifest.digest();
    store
        .put_manifest(&staged, ManifestReference::Digest(&digest), &manifest)
        .await
        .expect("pushes");
    let index = StoredManifest {
        media_type: media_type::OCI_INDEX.to_owned(),
        bytes: Bytes::from(
            json!({"schemaVersion": 2, "mediaType": media_type::OCI_INDEX, "manifests": [{"mediaType": media_type::OCI_MANIFEST,
                "digest": digest.as_str(), "size": manifest.bytes.len(), "platform": {"architecture": "amd64", "os": "linux"}}]})
            .to_string(),
        ),
    };
    let index_digest = index.digest();
    store
        .put_manifest(&staged, ManifestReference::Tag("1.0"), &index)
        .await
        .expect("pushes");
    let stages = ["post-build", "create-manifest"]
        .map(|stage| json!({"stage": stage, "completed": "2026-11-29T00:00:00Z", "tool": "bench"}));
    let info = json!({"schemaVersion": "2.0", "repos": [{"repo": REPOSITORY, "images": [{
        "manifest": {"digest": format!("{public}/{REPOSITORY}@{index_digest}"), "sharedTags": ["1.0"]},
        "platforms": [{"dockerfile": "src/large", "digest": format!("{public}/{REPOSITORY}@{digest}"), "osType": "Linux",
            "osVersion": "bookworm", "architecture": "amd64", "simpleTags": ["1.0-amd64"]}]}]}],
        "pipeline": {"stages": stages}});
    let file = folder.join("large.json");
    common::files::write_json(&file, &info);
    (file, index_digest)
}
