//! The OCI layout store against the real skopeo (the system's 1.9): skopeo reads the layouts we write, byte for
//! byte, and we read the layouts skopeo writes.

mod common;

use std::path::Path;
use std::process::Command;

use bytes::Bytes;
use common::commands::run;
use common::tools;
use imagepipe::model::reference::Digest;
use imagepipe::store::layout::LayoutStore;
use imagepipe::store::{ManifestReference, Store, StoredManifest, media_type};
use serde_json::{Value, json};

const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A one-platform image and the index over it, as our pipeline writes them.
struct Image {
    layer: Bytes,
    config: Bytes,
    manifest: StoredManifest,
    index: StoredManifest,
}

/// The host's platform, so that skopeo copying the index without `--all` finds an image to pick.
fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "arm64",
        "x86" => "386",
        "x86_64" => "amd64",
        other => other,
    }
}

fn descriptor(media_type: &str, bytes: &[u8]) -> Value {
    json!({"mediaType": media_type, "digest": Digest::of(bytes).to_string(), "size": bytes.len()})
}

fn json_bytes(value: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(value).expect("JSON"))
}

fn image() -> Image {
    // An empty tar archive: two zero blocks.
    let layer = Bytes::from(vec![0_u8; 1024]);
    let architecture = host_architecture();
    let config = json_bytes(&json!({
        "architecture": architecture,
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [Digest::of(&layer).to_string()]},
    }));
    let manifest = json_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": descriptor(media_type::OCI_CONFIG, &config),
        "layers": [descriptor(OCI_LAYER, &layer)],
    }));
    let mut child = descriptor(media_type::OCI_MANIFEST, &manifest);
    child["platform"] = json!({"architecture": architecture, "os": "linux"});
    let index = json_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": [child],
    }));
    Image {
        layer,
        config,
        manifest: StoredManifest {
            media_type: media_type::OCI_MANIFEST.to_owned(),
            bytes: manifest,
        },
        index: StoredManifest {
            media_type: media_type::OCI_INDEX.to_owned(),
            bytes: index,
        },
    }
}

/// Writes the image to `repository`: blobs, the platform manifest by digest, the index under `tag`.
async fn write_image(store: &LayoutStore, repository: &str, tag: &str, image: &Image) {
    for blob in [&image.layer, &image.config] {
        store
            .put_blob(repository, &Digest::of(blob), blob.clone())
            .await
            .expect("put blob");
    }
    let manifest_digest = image.manifest.digest();
    store
        .put_manifest(
            repository,
            ManifestReference::Digest(&manifest_digest),
            &image.manifest,
        )
        .await
        .expect("put manifest");
    store
        .put_manifest(repository, ManifestReference::Tag(tag), &image.index)
        .await
        .expect("put index");
}

fn layout_reference(folder: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", folder.display())
}

fn skopeo(arguments: &[&str]) -> Vec<u8> {
    run(Command::new(tools::skopeo()).args(arguments)).stdout
}

fn index_json(folder: &Path) -> Value {
    let bytes = std::fs::read(folder.join("index.json")).expect("index.json");
    serde_json::from_slice(&bytes).expect("index.json is JSON")
}

#[tokio::test]
async fn skopeo_reads_our_layout_byte_for_byte() {
    let root = tempfile::tempdir().expect("temporary folder");
    let store = LayoutStore::new(root.path().to_owned());
    let image = image();
    write_image(&store, "acme/app", "1.0", &image).await;
    let app = root.path().join("acme/app");

    let raw = skopeo(&["inspect", "--raw", &layout_reference(&app, "1.0")]);
    assert_eq!(raw, image.index.bytes);

    // skopeo 1.9 has no `oci:DIR@DIGEST` references, so the platform manifest is reached through the index:
    // without `--all`, skopeo picks the host's platform from it and copies that image.
    let other = root.path().join("other");
    skopeo(&[
        "copy",
        &layout_reference(&app, "1.0"),
        &layout_reference(&other, "copied"),
    ]);
    let reader = LayoutStore::new(root.path().to_owned());
    let copied = reader
        .get_manifest("other", ManifestReference::Tag("copied"))
        .await
        .expect("read skopeo's copy")
        .expect("tag `copied`");
    // skopeo 1.9 gzips an uncompressed layer when it copies a single image into a layout, so its manifest is
    // not ours; the config (the image's identity) is, and every blob it wrote reads back verified.
    let copied: Value = serde_json::from_slice(&copied.bytes).expect("manifest JSON");
    assert_eq!(
        copied["config"]["digest"],
        Digest::of(&image.config).to_string()
    );
    for blob in [&copied["config"], &copied["layers"][0]] {
        let digest: Digest = blob["digest"]
            .as_str()
            .expect("digest")
            .parse()
            .expect("sha256");
        let bytes = reader.get_blob("other", &digest).await.expect("blob");
        assert_eq!(Some(bytes.len() as u64), blob["size"].as_u64());
    }
}

#[tokio::test]
async fn we_read_a_layout_skopeo_wrote() {
    let root = tempfile::tempdir().expect("temporary folder");
    let store = LayoutStore::new(root.path().to_owned());
    let image = image();
    write_image(&store, "acme/app", "1.0", &image).await;
    let app = root.path().join("acme/app");
    let copy = root.path().join("acme/copy");

    skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        &layout_reference(&app, "1.0"),
        &layout_reference(&copy, "v1"),
    ]);
    let raw = skopeo(&["inspect", "--raw", &layout_reference(&copy, "v1")]);
    let skopeo_digest = Digest::of(&raw);

    let head = store
        .head_manifest("acme/copy", ManifestReference::Tag("v1"))
        .await
        .expect("head")
        .expect("tag `v1`");
    assert_eq!(head.digest().to_string(), skopeo_digest.to_string());
    let index = store
        .get_manifest("acme/copy", ManifestReference::Tag("v1"))
        .await
        .expect("get")
        .expect("tag `v1`");
    assert_eq!(index.digest(), skopeo_digest);
    assert_eq!(index.media_type, media_type::OCI_INDEX);
    assert_eq!(
        index.bytes, image.index.bytes,
        "--preserve-digests copies the index unchanged"
    );

    let manifest = store
        .get_manifest(
            "acme/copy",
            ManifestReference::Digest(&image.manifest.digest()),
        )
        .await
        .expect("get child")
        .expect("child copied");
    assert_eq!(manifest, image.manifest);
    for blob in [&image.layer, &image.config] {
        let read = store
            .get_blob("acme/copy", &Digest::of(blob))
            .await
            .expect("blob");
        assert_eq!(&read, blob);
    }
    assert_eq!(store.list_tags("acme/copy").await.expect("tags"), ["v1"]);
}

#[tokio::test]
async fn skopeo_and_we_share_one_index_json() {
    let root = tempfile::tempdir().expect("temporary folder");
    let store = LayoutStore::new(root.path().to_owned());
    let image = image();
    write_image(&store, "acme/app", "1.0", &image).await;
    let app = root.path().join("acme/app");

    // skopeo adds a tag to our layout; we add one after it; each keeps the other's.
    skopeo(&[
        "copy",
        "--all",
        &layout_reference(&app, "1.0"),
        &layout_reference(&app, "from-skopeo"),
    ]);
    store
        .put_manifest("acme/app", ManifestReference::Tag("2.0"), &image.index)
        .await
        .expect("put");
    assert_eq!(
        store.list_tags("acme/app").await.expect("tags"),
        ["1.0", "2.0", "from-skopeo"]
    );
    for tag in ["1.0", "2.0", "from-skopeo"] {
        let raw = skopeo(&["inspect", "--raw", &layout_reference(&app, tag)]);
        assert_eq!(raw, image.index.bytes, "{tag}");
    }
    let tags: Vec<Value> = index_json(&app)["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|entry| entry["annotations"][REF_NAME].clone())
        .collect();
    assert!(tags.contains(&json!("from-skopeo")), "{tags:?}");
}
